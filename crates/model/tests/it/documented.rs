//! Configurations written the way the Netwrix Identity Manager 6.2 reference pages write them
//! (issue #9): each documented form is accepted, with a regression test named after it.

use idlink_model::{Rule, Severity};

use crate::support::*;

fn check_body(body: &str) -> idlink_model::Checked {
    check(&[("conf.xml", &file(body))], BASE_SETTINGS, &[])
}

/// No error and no warning (but the plain-text password `BASE_SETTINGS` carries on purpose).
fn clean(c: &idlink_model::Checked) {
    let bad: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| matches!(d.severity, Severity::Error | Severity::Warning))
        .filter(|d| d.rule != Rule::PlaintextSecret)
        .collect();
    assert!(bad.is_empty(), "{}", show(&c.diagnostics));
}

#[test]
fn regression_rtm_property_written_with_property_attribute_is_accepted() {
    let body = BASE.replace(
        r#"<ResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" />"#,
        r#"<LdapResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" DefaultObjectClass="inetOrgPerson">
  <Property Property="dn" IsDNProperty="true" />
  <Property Property="cn" IsRDNProperty="1" />
  <Property Identifier="cn" />
</LdapResourceTypeMapping>"#,
    );
    let c = check_body(&body);
    clean(&c);
    let m = &c.config.resource_type_mappings[0];
    let ids: Vec<_> = m.properties.iter().map(|p| p.id.value.as_str()).collect();
    assert_eq!(ids, ["dn", "cn", "cn"]);
    assert!(
        m.properties[0]
            .attributes
            .iter()
            .any(|(n, v)| n == "IsDNProperty" && v.value == "true")
    );
    // A wrong property is still caught, whichever way it is written.
    let c = check_body(&BASE.replace(
        r#"<ResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" />"#,
        r#"<ResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP"><Property Property="nope" /></ResourceTypeMapping>"#,
    ));
    assert_eq!(
        errors(&c.diagnostics),
        [Rule::UnresolvedReference],
        "{}",
        show(&c.diagnostics)
    );
}

#[test]
fn regression_bindings_prefixed_with_an_entity_type_are_accepted_and_resolved() {
    let body = BASE.replace(
        r#"<ScalarRule Property="cn" Binding="Name" />"#,
        r#"<ScalarRule Property="cn" Binding="Person:Name" />"#,
    ) + r#"<ResourceCorrelationRule ResourceType="Account_Person" TargetBinding="Account:cn" SourceBinding="Person:Name" />
<ResourceCorrelationRule ResourceType="Account_Person" TargetBinding="cn" SourceBinding="User:Name" />"#;
    clean(&check_body(&body));

    // The prefix decides where the path is resolved: Person has no 'cn', Account has no 'Name'.
    let body = BASE.replace(
        r#"<ScalarRule Property="cn" Binding="Name" />"#,
        r#"<ScalarRule Property="cn" Binding="Person:cn" />"#,
    ) + r#"<ResourceCorrelationRule ResourceType="Account_Person" TargetBinding="Account:Name" SourceBinding="Person:Name" />"#;
    let c = check_body(&body);
    let msgs: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| (d.rule, d.message.clone()))
        .collect();
    assert_eq!(msgs.len(), 2, "{}", show(&c.diagnostics));
    assert!(msgs.iter().all(|(r, _)| *r == Rule::UnresolvedReference));
    assert!(
        msgs[0].1.contains("entity type 'Person' does not have"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].1.contains("entity type 'Account' does not have"),
        "{msgs:?}"
    );
}

#[test]
fn regression_booleans_written_1_and_0_are_accepted() {
    let body = BASE
        .replace(
            r#"<ExportTask DisplayName_L1="Export" Connection="HRPeople" />"#,
            r#"<ExportTask DisplayName_L1="Export" Connection="HRPeople" ContinueOnError="1" IgnoreCookieFile="0" />"#,
        )
        .replace(
            r#"<Property Identifier="Id" ConnectionColumn="Id" IsPrimaryKey="true" />"#,
            r#"<Property Identifier="Id" ConnectionColumn="Id" IsPrimaryKey="1" />"#,
        )
        .replace(
            r#"SourceEntityType="Person" TargetEntityType="Account">"#,
            r#"SourceEntityType="Person" TargetEntityType="Account" AllowAdd="0" RemoveOrphans="1">"#,
        );
    let c = check_body(&body);
    clean(&c);
    let idlink_model::config::Task::Export(t) = c.config.job_tasks(&c.config.jobs[0])[0] else {
        panic!("first task is the export");
    };
    assert!(t.continue_on_error && !t.ignore_cookie_file);
    assert!(c.config.entity_type_mappings[0].properties[0].is_primary_key);
    let rt = &c.config.resource_types[0];
    assert!(!rt.allow_add && rt.remove_orphans && rt.allow_remove);

    // Anything else is still refused, and the message gives the four accepted forms.
    let c = check_body(&BASE.replace(r#"IsPrimaryKey="true""#, r#"IsPrimaryKey="yes""#));
    assert!(
        c.diagnostics
            .iter()
            .any(|d| d.rule == Rule::AttributeValue && d.message.contains("true, false, 1 or 0")),
        "{}",
        show(&c.diagnostics)
    );
}

#[test]
fn regression_connector_jobs_are_values_and_added_days_may_be_fractional() {
    use idlink_model::config::JobIntegrationRule;
    let body = BASE.replace(
        r#"<Connector Identifier="HR" DisplayName_L1="HR" Agent="Local" />"#,
        r#"<Connector Identifier="HR" DisplayName_L1="HR" Agent="Local" CompleteJob="1" IncrementalJob="OnlySynchronization" />"#,
    )
    .replace(
        r#"Package="Usercube.CSV@0000001" />"#,
        r#"Package="Usercube.CSV@0000001"><Transformation Type="TransformDate" Column="Start" DatePattern="dd/MM/yyyy" AddedDays="-0.5" /></Connection>"#,
    );
    let c = check_body(&body);
    clean(&c);
    let hr = c.config.connector("HR").expect("HR");
    assert_eq!(hr.complete_job, JobIntegrationRule::NotUsed);
    assert_eq!(hr.incremental_job, JobIntegrationRule::OnlySynchronization);
    assert_eq!(
        c.config.connector("Dir").expect("Dir").complete_job,
        JobIntegrationRule::Used
    );
    assert_eq!(
        c.config.connections[0].transformations[0].added_days,
        Some(-0.5)
    );

    // Not a job reference any more, and not a free text either; AddedDays stays a bounded number.
    let body = BASE
        .replace(r#"DisplayName_L1="HR" Agent="Local""#, r#"DisplayName_L1="HR" Agent="Local" CompleteJob="Daily""#)
        .replace(
            r#"Package="Usercube.CSV@0000001" />"#,
            r#"Package="Usercube.CSV@0000001"><Transformation Type="TransformDate" Column="Start" DatePattern="dd/MM/yyyy" AddedDays="1e300" /></Connection>"#,
        );
    let c = check_body(&body);
    let msgs: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.clone())
        .collect();
    assert_eq!(msgs.len(), 2, "{}", show(&c.diagnostics));
    assert!(
        msgs.iter()
            .any(|m| m.contains("CompleteJob") && m.contains("NotUsed")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("AddedDays") && m.contains("fractional")),
        "{msgs:?}"
    );
}

/// `BASE` with its job replaced by `job`.
fn with_job(job: &str) -> String {
    let start = BASE.find("<Job ").expect("BASE has a job");
    let end = BASE.find("</Job>").expect("BASE has a job") + "</Job>".len();
    format!("{}{job}{}", &BASE[..start], &BASE[end..])
}

const STANDALONE_TASKS: &str = r#"
<ExportTask Identifier="HR_Export" DisplayName_L1="HR export" Agent="Local" Connection="HRPeople" OpenIdClient="Job" ContinueOnError="1" />
<PrepareSynchronizationTask Identifier="HR_Prepare" DisplayName_L1="HR prepare" Agent="Local" Connector="HR" SynchronizationMode="Complete">
  <TaskDependsOnTask ParentTask="HR_Export" />
</PrepareSynchronizationTask>
<SynchronizeTask Identifier="HR_Sync" DisplayName_L1="HR sync" Connector="HR">
  <TaskDependsOnTask ParentTask="HR_Prepare" />
</SynchronizeTask>
<GenerateProvisioningOrdersTask Identifier="Dir_Orders" DisplayName_L1="Orders">
  <TaskResourceType ResourceType="Account_Person" />
</GenerateProvisioningOrdersTask>
<FulfillTask Identifier="Dir_Fulfill" DisplayName_L1="Fulfill"><TaskResourceType ResourceType="Account_Person" /></FulfillTask>
"#;

fn order(c: &idlink_model::Checked, job: usize) -> Vec<String> {
    c.config
        .ordered_job_tasks(&c.config.jobs[job])
        .expect("no cycle")
        .iter()
        .map(|t| t.label().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn regression_standalone_tasks_steps_and_task_dependencies_are_read_and_ordered() {
    // Steps written in an order the dependencies contradict; an inline task with a parent.
    let body = with_job(
        r#"<Job Identifier="Daily" DisplayName_L1="Daily" CronTabExpression="0 5 * * *">
  <Step Identifier="HR_Sync" />
  <Step Identifier="HR_Prepare" Level="1" />
  <Step Identifier="HR_Export" />
  <Step Identifier="Dir_Orders" />
  <FulfillTask Identifier="Inline_Fulfill" DisplayName_L1="Fulfill now">
    <TaskDependsOnTask ParentTask="Dir_Orders" />
    <TaskResourceType ResourceType="Account_Person" />
  </FulfillTask>
</Job>"#,
    ) + STANDALONE_TASKS;
    let c = check_body(&body);
    clean(&c);
    assert_eq!(c.config.tasks.len(), 5);
    assert_eq!(c.config.jobs[0].steps.len(), 5);
    assert_eq!(
        order(&c, 0),
        [
            "HR_Export",
            "HR_Prepare",
            "HR_Sync",
            "Dir_Orders",
            "Inline_Fulfill"
        ]
    );
    let Some(idlink_model::config::Task::GenerateProvisioningOrders(g)) =
        c.config.task("Dir_Orders")
    else {
        panic!("Dir_Orders is a GenerateProvisioningOrdersTask");
    };
    assert_eq!(g.resource_types[0].value, "Account_Person");
}

#[test]
fn regression_task_dependency_cycle_is_an_error_and_unknown_parent_is_unresolved() {
    let body = with_job(
        r#"<Job Identifier="Daily" DisplayName_L1="Daily">
  <ExportTask Identifier="A" DisplayName_L1="A" Connection="HRPeople"><TaskDependsOnTask ParentTask="B" /></ExportTask>
  <SynchronizeTask Identifier="B" Connector="HR"><TaskDependsOnTask ParentTask="A" /></SynchronizeTask>
  <SynchronizeTask Identifier="C" Connector="HR"><TaskDependsOnTask ParentTask="Nowhere" /></SynchronizeTask>
</Job>"#,
    );
    let c = check_body(&body);
    let mut rules = errors(&c.diagnostics);
    rules.sort();
    assert_eq!(
        rules,
        [Rule::UnresolvedReference, Rule::TaskCycle],
        "{}",
        show(&c.diagnostics)
    );
    let cycle = c
        .diagnostics
        .iter()
        .find(|d| d.rule == Rule::TaskCycle)
        .expect("cycle");
    assert!(
        cycle.message.contains("'A', 'B'") && cycle.message.contains("cycle"),
        "{}",
        cycle.message
    );
    assert!(c.config.ordered_job_tasks(&c.config.jobs[0]).is_err());
}

#[test]
fn regression_step_naming_an_undeclared_task_warns_about_scaffoldings() {
    let body = with_job(
        r#"<Job Identifier="Daily" DisplayName_L1="Daily">
  <Step Identifier="HR_Export" />
  <Step Identifier="AD_Synchronization" />
  <Step Identifier="AD_ApplyRoleMappings" />
  <BuildRoleModelTask Identifier="Inline_Roles" DisplayName_L1="Roles" />
</Job>
<BuildRoleModelTask Identifier="AD_ApplyRoleMappings" Connector="AD" DisplayName_L1="AD roles" />"#,
    ) + STANDALONE_TASKS;
    let c = check_body(&body);
    assert!(
        errors(&c.diagnostics).is_empty(),
        "{}",
        show(&c.diagnostics)
    );
    let steps: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.rule == Rule::UndeclaredStep)
        .collect();
    assert_eq!(steps.len(), 1, "{}", show(&c.diagnostics));
    assert!(
        steps[0].message.contains("'AD_Synchronization'")
            && steps[0].message.contains("scaffolding")
    );
    // The out-of-scope task kind is skipped once (one warning for the kind), not taken for a typo.
    let skipped: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.rule == Rule::OutOfScopeElement)
        .collect();
    assert_eq!(skipped.len(), 1, "{}", show(&c.diagnostics));
    assert!(
        skipped[0].message.contains("BuildRoleModelTask")
            && skipped[0].message.contains("2 elements")
    );
    assert_eq!(order(&c, 0), ["HR_Export"]);
}

#[test]
fn regression_documented_attributes_are_accepted_without_effect_not_unknown() {
    let body = with_job(
        r#"<Job Identifier="Daily" DisplayName_L1="Daily" CronTabExpression="0 5 * * *" LogLevel="2" CronTimeZone="0" UserStartDenied="1">
  <ExportTask Identifier="E" DisplayName_L1="E" Agent="Local" OpenIdClient="Job" Connection="HRPeople" InitMode="0" />
  <PrepareSynchronizationTask Identifier="P" Connector="HR" SynchronizationMode="Complete" OpenIdClient="Job" Type="Changes" Level="1" />
  <SynchronizeTask Identifier="S" Connector="HR" Orphans="1" />
  <FulfillTask Identifier="F" DisplayName_L1="F" Connector="Dir" IgnoreHistorization="true" Dirty="0" />
</Job>"#,
    )
    .replace(
        r#"<ResourceType Identifier="Account_Person" SourceEntityType="Person" TargetEntityType="Account">
  <ScalarRule Property="cn" Binding="Name" />"#,
        r#"<ResourceType Identifier="Account_Person" SourceEntityType="Person" TargetEntityType="Account" Policy="Default" Type="Account" DependsOn="Other" P0="true" R1V="false" MaximumInsertPercent="20">
  <ScalarRule Property="cn" Binding="Name" Policy="Default" TimeOffsetReference="Around" TimeOffsetBeforeReference="-10080" TimeOffsetAfterReference="43200" ComparisonType="CaseInsensitive" />"#,
    ) + r#"<ResourceCorrelationRule ResourceType="Account_Person" Policy="Default" SourceMatchedConfidenceLevel="80" TargetBinding="cn" TargetExpression="ToLower" SourceBinding="Name" SourceExpression="ToLower" />"#;
    let c = check_body(&body);
    clean(&c);
    let infos: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.rule == Rule::AcceptedWithoutEffect)
        .collect();
    assert!(infos.iter().all(|d| d.severity == Severity::Info));
    let names: Vec<&str> = infos
        .iter()
        .map(|d| d.message.split(' ').next().unwrap_or(""))
        .collect();
    for attr in [
        "LogLevel",
        "CronTimeZone",
        "UserStartDenied",
        "OpenIdClient",
        "InitMode",
        "Type",
        "Level",
        "Policy",
        "DependsOn",
        "P0",
        "R1V",
        "TimeOffsetReference",
        "TimeOffsetBeforeReference",
        "TimeOffsetAfterReference",
        "ComparisonType",
        "SourceMatchedConfidenceLevel",
    ] {
        assert!(
            names.contains(&attr),
            "{attr} missing: {}",
            show(&c.diagnostics)
        );
    }
    // One line per attribute and reason, whatever number of elements carry it.
    let policy: Vec<_> = infos
        .iter()
        .filter(|d| d.message.starts_with("Policy "))
        .collect();
    assert_eq!(policy.len(), 1, "{}", show(&c.diagnostics));
    let hint = policy[0].hint.as_deref().unwrap_or("");
    assert!(
        hint.contains("<ResourceType>")
            && hint.contains("<ScalarRule>")
            && hint.contains("<ResourceCorrelationRule>"),
        "{hint}"
    );
    // Read, not just accepted: the job page's casing, the percentage alias, the expressions.
    assert!(c.config.jobs[0].crontab.is_some());
    assert_eq!(
        c.config.resource_types[0].thresholds.max_percentage_added,
        Some(20)
    );
    let r = &c.config.resource_correlation_rules[0];
    assert_eq!(
        r.target_expression.as_ref().map(|t| t.value.as_str()),
        Some("ToLower")
    );
    assert_eq!(
        r.source_expression.as_ref().map(|t| t.value.as_str()),
        Some("ToLower")
    );

    // What is not documented stays unknown, with its suggestion.
    let c = check_body(&BASE.replace(
        r#"<SynchronizeTask Connector="HR" />"#,
        r#"<SynchronizeTask Connector="HR" OpenIdClien="Job" />"#,
    ));
    let unknown: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.rule == Rule::UnknownAttribute)
        .collect();
    assert_eq!(unknown.len(), 1, "{}", show(&c.diagnostics));
    assert!(
        unknown[0]
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("OpenIdClient"),
        "{}",
        show(&c.diagnostics)
    );
}

#[test]
fn regression_documentation_contradictions_follow_the_reference_and_say_how_to_fix() {
    // A how-to's connection identifier with '_': the reference forbids it.
    let c = check(
        &[(
            "conf.xml",
            &file(&BASE.replace("\"HRPeople\"", "\"HR_People\"")),
        )],
        r#"{"Connections":{"HR_People":{"Path":"p.csv"},"DirLDAP":{"Servers":[{"Server":"s"}]}}}"#,
        &[],
    );
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.rule == Rule::ConnectionIdentifier)
        .expect("reported");
    let hint = d.hint.as_deref().unwrap_or("");
    assert!(
        hint.contains("Connection reference") && hint.contains("'HRPeople'"),
        "{hint}"
    );

    // A job example's PrepareSynchronizationTask without SynchronizationMode.
    let c = check_body(&BASE.replace(
        r#"<PrepareSynchronizationTask Connector="HR" SynchronizationMode="Complete" />"#,
        r#"<PrepareSynchronizationTask Connector="HR" />"#,
    ));
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.rule == Rule::MissingAttribute)
        .expect("reported");
    let hint = d.hint.as_deref().unwrap_or("");
    assert!(
        hint.contains("reference requires it") && hint.contains("SynchronizationMode=\"Complete\""),
        "{hint}"
    );
    // The numeric form of the reference's table is read.
    let c = check_body(&BASE.replace(
        r#"SynchronizationMode="Complete""#,
        r#"SynchronizationMode="2""#,
    ));
    clean(&c);
}
