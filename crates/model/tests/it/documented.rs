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
        hint.contains(
            "Connection reference page (toolkit/xml-configuration/connectors/connection)"
        ) && hint.contains("idlink follows the reference")
            && hint.contains("rename it, e.g. 'HRPeople'"),
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
        hint.contains(
            "reference page (toolkit/xml-configuration/jobs/tasks/agent/preparesynchronizationtask)"
        ) && hint.contains("requires it")
            && hint.contains("idlink follows the reference")
            && hint.contains("SynchronizationMode=\"Complete\" (1)"),
        "{hint}"
    );
    // The numeric form of the reference's table is read.
    let c = check_body(&BASE.replace(
        r#"SynchronizationMode="Complete""#,
        r#"SynchronizationMode="2""#,
    ));
    clean(&c);
}

/// The `info[accepted-without-effect]` lines of a check, as `name on <element>` pairs.
fn without_effect(c: &idlink_model::Checked) -> Vec<String> {
    c.diagnostics
        .iter()
        .filter(|d| d.rule == Rule::AcceptedWithoutEffect)
        .map(|d| d.message.clone())
        .collect()
}

#[test]
fn regression_numeric_type_codes_of_columns_and_entity_properties_are_read() {
    use idlink_model::config::{PropertyType, ValueType};
    let body = BASE
        .replace(
            r#"<Column Identifier="Name" />
</ConnectionTable>
<Connector Identifier="Dir""#,
            r#"<Column Identifier="Name" ValueType="10" />
</ConnectionTable>
<Connector Identifier="Dir""#,
        )
        .replace(
            r#"<Property Identifier="Name" />"#,
            r#"<Property Identifier="Name" Type="Int16" /><Property Identifier="Manager" Type="12" /><Property Identifier="Photo" Type="1" />"#,
        );
    let c = check_body(&body);
    clean(&c);
    let table = &c.config.connection_tables[0];
    assert_eq!(table.columns[1].value_type, ValueType::Int16);
    let person = &c.config.entity_types[0];
    let types: Vec<_> = person.properties.iter().map(|p| p.ty).collect();
    assert_eq!(
        types,
        [
            PropertyType::String,
            PropertyType::Int16,
            PropertyType::ForeignKey,
            PropertyType::Bytes
        ]
    );
    // 11 is not a code of the entity type page.
    let c = check_body(&BASE.replace(
        r#"<Property Identifier="Name" />"#,
        r#"<Property Identifier="Name" Type="11" />"#,
    ));
    assert_eq!(errors(&c.diagnostics), [Rule::AttributeValue]);
}

#[test]
fn regression_association_mapping_thresholds_are_read_as_link_thresholds() {
    let body = BASE.replace(
        r#"<Property Identifier="Name" />
</EntityType>"#,
        r#"<Property Identifier="Name" />
  <Property Identifier="Manager" Type="ForeignKey" />
  <Property Identifier="Reports" Type="ForeignKey" />
</EntityType>
<EntityAssociation Identifier="Person_Manager" Property1="Person:Manager" Property2="Person:Reports" IsProperty2Collection="true" />
<EntityAssociationMapping Identifier="Person_Manager" Connector="HR" ConnectionTable="HRPeople" Column1="Manager" Column2="Id"
    EntityPropertyMapping1="Person:Id" EntityPropertyMapping2="Person:Id"
    MaximumInsertedLines="50" MaximumDeletedLines="40" MaxPercentageInsertedLines="3" MaxPercentageDeletedLines="2" C0="x" />"#,
    )
    .replace(
        r#"<Column Identifier="Name" />
</ConnectionTable>
<Connector Identifier="Dir""#,
        r#"<Column Identifier="Name" />
  <Column Identifier="Manager" />
</ConnectionTable>
<Connector Identifier="Dir""#,
    );
    let c = check_body(&body);
    clean(&c);
    let t = c.config.entity_association_mappings[0].thresholds;
    assert_eq!(t.max_link_inserted_lines, Some(50));
    assert_eq!(t.max_link_deleted_lines, Some(40));
    assert_eq!(t.max_link_percentage_inserted_lines, Some(3));
    assert_eq!(t.max_link_percentage_deleted_lines, Some(2));
    assert_eq!(t.max_inserted_lines, None);
    assert!(
        without_effect(&c).iter().any(|m| m.starts_with("C0 ")),
        "{}",
        show(&c.diagnostics)
    );
}

#[test]
fn regression_step_names_its_task_with_task_as_the_job_table_writes_it() {
    let body = BASE.replace(
        r#"<Job Identifier="Daily" DisplayName_L1="Daily" CrontabExpression="0 5 * * *">"#,
        r#"<ExportTask Identifier="ExportHR" DisplayName_L1="Export HR" Connection="HRPeople" />
<Job Identifier="Steps" DisplayName_L1="Steps"><Step Task="ExportHR" Level="1" /><Step Identifier="ExportHR" /></Job>
<Job Identifier="Daily" DisplayName_L1="Daily" CrontabExpression="0 5 * * *">"#,
    );
    let c = check_body(&body);
    clean(&c);
    let steps = c.config.job_tasks(&c.config.jobs[0]);
    assert_eq!(steps.len(), 2);
    // Neither: an error naming both forms.
    let c = check_body(&body.replace(r#"<Step Task="ExportHR" Level="1" />"#, "<Step />"));
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.rule == Rule::MissingAttribute)
        .expect("reported");
    assert!(d.message.contains("Task"), "{d}");
    assert!(
        d.hint.as_deref().unwrap_or("").contains("Identifier="),
        "{d}"
    );
}

#[test]
fn regression_navigation_rule_deny_is_refused_and_dimension_criteria_are_without_effect() {
    let rule = |attrs: &str| {
        BASE.replace(
            r#"<ScalarRule Property="cn" Binding="Name" />"#,
            &format!(
                r#"<ScalarRule Property="cn" Binding="Name" SingleRole="Staff" />
  <NavigationRule Property="cn" Resource="cn=staff" {attrs} />"#
            ),
        )
    };
    let c = check_body(&rule(
        r#"D0="France" L0="true" D127="x" IsDenied="0" Policy="Default""#,
    ));
    clean(&c);
    let infos = without_effect(&c);
    for attr in ["D0 ", "L0 ", "D127 ", "SingleRole ", "Policy "] {
        assert!(
            infos.iter().any(|m| m.starts_with(attr)),
            "{attr}: {}",
            show(&c.diagnostics)
        );
    }
    let c = check_body(&rule(r#"IsDenied="true""#));
    let refused: Vec<_> = c.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert_eq!(refused.len(), 1, "{}", show(&c.diagnostics));
    assert_eq!(refused[0].rule, Rule::AttributeValue);
    assert!(
        refused[0].message.contains("is refused")
            && refused[0].message.contains("does not implement deny rules"),
        "{}",
        refused[0]
    );
    // Not a dimension: still unknown.
    let c = check_body(&rule(r#"D128x="1""#));
    assert!(
        c.diagnostics
            .iter()
            .any(|d| d.rule == Rule::UnknownAttribute && d.message.contains("D128x")),
        "{}",
        show(&c.diagnostics)
    );
}

#[test]
fn regression_typed_mappings_read_their_documented_attributes_and_warn_on_others() {
    let body = BASE.replace(
        r#"<ResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" />"#,
        r#"<LdapResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" DefaultObjectClass="inetOrgPerson"
    RDNAttributeIdentifier="cn" UsePermissiveModify="true" UseTreeDelete="false" PasswordResetSetting="Default">
  <Property Property="dn" IsDNProperty="true" IsParentProperty="false" />
  <Property Property="cn" MultiValueSeparator=";" DataSourceBacklinkColumnName="member" IsUserAccountControlProperty="false" />
</LdapResourceTypeMapping>"#,
    );
    let c = check_body(&body);
    clean(&c);
    let m = &c.config.resource_type_mappings[0];
    assert_eq!(
        m.attribute("DefaultObjectClass").map(|t| t.value.as_str()),
        Some("inetOrgPerson")
    );
    let infos = without_effect(&c);
    for attr in [
        "RDNAttributeIdentifier ",
        "UsePermissiveModify ",
        "UseTreeDelete ",
        "PasswordResetSetting ",
        "IsDNProperty ",
        "IsParentProperty ",
        "MultiValueSeparator ",
        "DataSourceBacklinkColumnName ",
        "IsUserAccountControlProperty ",
    ] {
        assert!(
            infos.iter().any(|m| m.starts_with(attr)),
            "{attr}: {}",
            show(&c.diagnostics)
        );
    }
    // A misspelt attribute of a typed mapping is no longer kept silently.
    let c = check_body(&body.replace("UseTreeDelete=", "UseTreeDelet="));
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
            .contains("UseTreeDelete"),
        "{}",
        unknown[0]
    );
    // The generic mapping still keeps any attribute for the package.
    clean(&check_body(&BASE.replace(
        r#"<ResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" />"#,
        r#"<ResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" AnyVariant="x" />"#,
    )));
}

#[test]
fn regression_documented_resource_type_children_are_skipped_saying_why() {
    let body = BASE.replace(
        r#"<ScalarRule Property="cn" Binding="Name" />"#,
        r#"<ScalarRule Property="cn" Binding="Name" />
  <TypeRule Policy="Default" D0="Marketing" />
  <TypeRule Policy="Default" />
  <QueryRule Property="cn" Policy="Default" TargetBinding="Account:dn" SourceExpression="C#:r:return null;" />"#,
    );
    let c = check_body(&body);
    assert!(
        errors(&c.diagnostics).is_empty(),
        "{}",
        show(&c.diagnostics)
    );
    let skipped: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.rule == Rule::OutOfScopeElement)
        .map(|d| d.message.clone())
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped.iter().any(|m| m.contains("<TypeRule>")
            && m.contains("type rules assign resource types")
            && m.contains("2 elements")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|m| m.contains("<QueryRule>") && m.contains("query rules")),
        "{skipped:?}"
    );
}

#[test]
fn regression_documented_items_of_metadata_and_tasks_are_accepted_without_effect() {
    let body = BASE
        .replace(
            r#"<Agent Identifier="Local" />"#,
            r#"<Agent Identifier="Local" State="1" />"#,
        )
        .replace(
            r#"<EntityType Identifier="Person">
  <Property Identifier="Id" />"#,
            r#"<EntityType Identifier="Person" LicenseTag="Premium" TableName="x">
  <Property Identifier="Id" GroupByProperty="Name" HistoryPrecision="5" FlexibleComparisonExpression="x" Language="en" NeutralProperty="Name" />"#,
        )
        .replace(
            r#"<ConnectionTable Connection="HRPeople" Identifier="HRPeople">
  <Column Identifier="Id" />"#,
            r#"<ConnectionTable Connection="HRPeople" Identifier="HRPeople" Path="schemas/hr">
  <Column Identifier="Id" ForeignColumn="3" Path="person" ValueLength="40" />"#,
        )
        .replace(
            r#"<EntityTypeMapping Identifier="Person" Connector="HR" ConnectionTable="HRPeople">"#,
            r#"<EntityTypeMapping Identifier="Person" Connector="HR" ConnectionTable="HRPeople" C0="user">"#,
        )
        .replace(
            r#"<GenerateProvisioningOrdersTask ResourceTypes="Account_Person" />"#,
            r#"<GenerateProvisioningOrdersTask ResourceTypes="Account_Person" BatchInsertSize="100" BatchSelectSize="100" ForceProvisioning="true" />"#,
        );
    let c = check_body(&body);
    clean(&c);
    let infos = without_effect(&c);
    for attr in [
        "State ",
        "LicenseTag ",
        "TableName ",
        "GroupByProperty ",
        "HistoryPrecision ",
        "FlexibleComparisonExpression ",
        "Language ",
        "NeutralProperty ",
        "Path ",
        "ForeignColumn ",
        "ValueLength ",
        "C0 ",
        "BatchInsertSize ",
        "BatchSelectSize ",
        "ForceProvisioning ",
    ] {
        assert!(
            infos.iter().any(|m| m.starts_with(attr)),
            "{attr}: {}",
            show(&c.diagnostics)
        );
    }
}

/// What the conformance document is made from does not depend on the attributes a fixture
/// writes: every item the loader asks for at an element it reaches is recorded.
#[test]
fn regression_loader_records_items_of_reached_elements_even_when_not_written() {
    use idlink_model::xml::{Status, record_attributes};
    let ((), reads) = record_attributes(|| {
        let mut loader = idlink_model::xml::Loader::default();
        loader.add_file(
            "c.xml",
            file(r#"<Connector Identifier="A" DisplayName_L1="A" /><Job Identifier="J" />"#)
                .as_bytes(),
        );
        let _ = loader.finish();
    });
    let connector = &reads["Connector"];
    for item in [
        "MaximumDeletedLines",
        "CompleteJob",
        "IsDeactivated",
        "Agent",
    ] {
        assert!(
            matches!(connector[item].status, Status::Used(_)),
            "{item}: {connector:?}"
        );
    }
    let job = &reads["Job"];
    assert!(matches!(job["LogLevel"].status, Status::WithoutEffect(_)));
    assert!(matches!(job["<Step>"].status, Status::Used(_)));
    assert!(matches!(
        job["<BuildRoleModelTask>"].status,
        Status::Skipped(_)
    ));
    let family = &job["DisplayName_L1 … DisplayName_L16"];
    assert!(family.matches("DisplayName_L1 … DisplayName_L16", "DisplayName_L16"));
    assert!(!family.matches("DisplayName_L1 … DisplayName_L16", "DisplayName_L17"));
    // Elements not reached are not recorded.
    assert!(!reads.contains_key("ResourceType"));
}

#[test]
fn regression_job_children_idlink_does_not_run_are_skipped_saying_why() {
    let body = BASE.replace(
        r#"<SynchronizeTask Connector="HR" />"#,
        r#"<SynchronizeTask Connector="HR" />
  <BuildRoleModelTask Identifier="AD_ApplyRoleMappings" Connector="HR" DisplayName_L1="Roles" />
  <UpdateClassificationTaskOverride Identifier="UpdateClassification" Dirty="1" />"#,
    );
    let c = check_body(&body);
    assert!(
        errors(&c.diagnostics).is_empty(),
        "{}",
        show(&c.diagnostics)
    );
    let skipped: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.rule == Rule::OutOfScopeElement)
        .map(|d| d.message.clone())
        .collect();
    assert!(
        skipped
            .iter()
            .any(|m| m.contains("<BuildRoleModelTask>") && m.contains("which idlink does not run")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|m| m.contains("<UpdateClassificationTaskOverride>")
                && m.contains("a task override changes")),
        "{skipped:?}"
    );
    // The job keeps the tasks it can run.
    assert_eq!(c.config.job_tasks(&c.config.jobs[0]).len(), 5);
}
