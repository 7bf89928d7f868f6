//! `check` on idlink's expression language (docs/expressions.md): rule expressions parse, with
//! errors located at their attribute, and the paths they read resolve like Bindings.

use idlink_model::Rule;

use crate::support::*;

const RULE: &str = "<ScalarRule Property=\"cn\" Binding=\"Name\" />";

fn with_rule(rule: &str) -> (String, idlink_model::Checked) {
    let text = file(&BASE.replace(RULE, rule));
    let c = check(&[("conf.xml", &text)], BASE_SETTINGS, &[]);
    (text, c)
}

/// 1-based line and column (in characters) of the first `needle` in `text`.
fn position(text: &str, needle: &str) -> (u32, u32) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in text"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line as u32, col as u32)
}

/// BASE with `extra` top-level elements.
fn with_elements(extra: &str) -> (String, idlink_model::Checked) {
    let text = file(&format!("{BASE}{extra}"));
    let c = check(&[("conf.xml", &text)], BASE_SETTINGS, &[]);
    (text, c)
}

/// No error, and no diagnostic about rules or expressions (the base has a plain-text password
/// warning).
fn clean(c: &idlink_model::Checked) -> bool {
    !c.diagnostics.has_errors()
        && !c.diagnostics.iter().any(|d| {
            matches!(
                d.rule,
                Rule::Expression | Rule::CsharpExpression | Rule::OutOfScopeElement
            )
        })
}

fn errors_of(c: &idlink_model::Checked) -> Vec<&idlink_model::Diagnostic> {
    c.diagnostics.iter().filter(|d| d.is_error()).collect()
}

#[test]
fn a_bad_expression_is_reported_at_the_offending_character() {
    let (text, c) =
        with_rule("<ScalarRule Property=\"cn\" Expression=\"lower(Name) + lowr(Id)\" />");
    let errs = errors_of(&c);
    assert_eq!(errs.len(), 1, "{}", show(&c.diagnostics));
    let d = errs[0];
    assert_eq!(d.rule, Rule::Expression);
    let (line, column) = position(&text, "lowr(Id)"); // verbatim: the offending character itself
    assert_eq!(
        (d.at.file.as_ref(), d.at.line, d.at.column),
        ("conf.xml", line, column)
    );
    assert!(
        d.message
            .contains("scalar rule on 'cn' of resource type 'Account_Person'")
            && d.message.contains("at character 15")
            && d.message
                .contains("unknown function 'lowr'; did you mean 'lower'?"),
        "{d}"
    );
    let hint = d.hint.as_deref().unwrap_or_default();
    assert!(hint.contains("lower(Name) + ⟪here⟫lowr(Id)"), "{d}");
    assert!(
        d.to_string()
            .starts_with(&format!("conf.xml:{line}:{column}: error[expression]"))
    );
}

#[test]
fn every_kind_of_syntax_error_is_an_expression_error() {
    for (expr, says) in [
        ("lower(Name, Id)", "lower takes 1 argument, found 2"),
        ("'abc", "unterminated text"),
        ("Name Id", "expected '+'"),
        ("Name +", "ends where a value was expected"),
        ("substring(Name, 'x')", "whole number"),
        ("format_date(Name, 'multivaluedtext')", "not a date pattern"),
        ("format_date(Name, 'now')", "not a date pattern"),
    ] {
        let (_, c) = with_rule(&format!(
            "<ScalarRule Property=\"cn\" Expression=\"{expr}\" />"
        ));
        let errs = errors_of(&c);
        assert!(
            errs.len() == 1 && errs[0].rule == Rule::Expression && errs[0].message.contains(says),
            "{expr}: expected one expression error saying {says:?}:\n{}",
            show(&c.diagnostics)
        );
    }
}

#[test]
fn a_misspelt_property_in_an_expression_is_reported_like_a_binding() {
    let (text, c) =
        with_rule("<ScalarRule Property=\"cn\" Expression=\"lower(Nmae) + '@example.org'\" />");
    let errs = errors_of(&c);
    assert_eq!(errs.len(), 1, "{}", show(&c.diagnostics));
    let d = errs[0];
    assert_eq!(d.rule, Rule::UnresolvedReference);
    assert_eq!((d.at.line, d.at.column), position(&text, "Nmae"));
    assert!(
        d.message.contains("'Nmae'") && d.message.contains("entity type 'Person'"),
        "{d}"
    );
    assert!(
        d.hint
            .as_deref()
            .unwrap_or_default()
            .contains("did you mean 'Name'?"),
        "{d}"
    );
}

#[test]
fn good_expressions_pass() {
    for expr in [
        "lower(unaccent(Name)) + '.' + Id",
        "Person:Name",
        "if(Name, upper(substring(Name, 0, 1)), 'x') + coalesce(Id, 'none')",
        "format_date(Id, 'yyyy-MM-dd', 'yyyyMMdd')",
        "join(replace(trim(Name), ' ', ''), ',') + first(Id)",
        "ToLower(Name)",
    ] {
        let (_, c) = with_rule(&format!(
            "<ScalarRule Property=\"cn\" Expression=\"{expr}\" />"
        ));
        assert!(clean(&c), "{expr}:\n{}", show(&c.diagnostics));
    }
}

#[test]
fn leading_spaces_and_multibyte_characters_keep_the_column_exact() {
    let (text, c) =
        with_rule("<ScalarRule Property=\"cn\" Expression=\"  'Éloïse ☃' + lowr(Id)\" />");
    let errs = errors_of(&c);
    assert_eq!(errs.len(), 1, "{}", show(&c.diagnostics));
    assert_eq!(
        (errs[0].at.line, errs[0].at.column),
        position(&text, "lowr(Id)")
    );
    assert!(errs[0].message.contains("at character 14"), "{}", errs[0]);
}

#[test]
fn an_expression_not_written_verbatim_is_reported_at_its_attribute() {
    // An entity reference (or a line break) in the value: columns in the value and in the
    // file differ, so the diagnostic points at the attribute and says where in the value.
    for rule in [
        "<ScalarRule Property=\"cn\" Expression=\"Name + &quot;x&quot; + lowr(Id)\" />",
        "<ScalarRule Property=\"cn\" Expression=\"Name +\n   lowr(Id)\" />",
    ] {
        let (text, c) = with_rule(rule);
        let errs = errors_of(&c);
        assert_eq!(errs.len(), 1, "{}", show(&c.diagnostics));
        assert_eq!(errs[0].rule, Rule::Expression);
        assert_eq!(
            (errs[0].at.line, errs[0].at.column),
            position(&text, "Expression="),
            "{rule}"
        );
        assert!(
            errs[0].message.contains("unknown function 'lowr'"),
            "{}",
            errs[0]
        );
    }
    // Misspelt properties are located the same way.
    let (text, c) = with_rule("<ScalarRule Property=\"cn\" Expression=\"&apos;x&apos; + Nmae\" />");
    let errs = errors_of(&c);
    assert_eq!(errs.len(), 1, "{}", show(&c.diagnostics));
    assert_eq!(
        (errs[0].at.line, errs[0].at.column),
        position(&text, "Expression=")
    );
}

#[test]
fn entities_in_the_attribute_are_part_of_the_expression() {
    let (_, c) =
        with_rule("<ScalarRule Property=\"cn\" Expression=\"Name + &quot; &amp; &quot; + Id\" />");
    assert!(clean(&c), "{}", show(&c.diagnostics));
}

#[test]
fn navigation_rules_are_checked_too() {
    let (_, c) = with_rule(&format!(
        "{RULE}<NavigationRule Property=\"cn\" Expression=\"'cn=' + Nam\" />"
    ));
    let errs = errors_of(&c);
    assert!(
        errs.len() == 1 && errs[0].rule == Rule::UnresolvedReference,
        "{}",
        show(&c.diagnostics)
    );
}

#[test]
fn csharp_expressions_keep_their_warning() {
    let (_, c) = with_rule(
        "<ScalarRule Property=\"cn\" Expression=\"C#:person:return person.Name + 'x';\" />",
    );
    assert!(!c.diagnostics.has_errors(), "{}", show(&c.diagnostics));
    assert!(
        c.diagnostics
            .iter()
            .any(|d| d.rule == Rule::CsharpExpression && d.message.contains("scalar rule on 'cn'")),
        "{}",
        show(&c.diagnostics)
    );
}

const CORRELATION: &str =
    "<ResourceCorrelationRule ResourceType=\"Account_Person\" TargetBinding=\"cn\" ";

#[test]
fn correlation_rules_name_functions_beside_bindings_and_expressions_alone() {
    let good = format!(
        "{CORRELATION}TargetExpression=\"ToLower\" SourceBinding=\"Name\" SourceExpression=\"unaccent\" />\
         {CORRELATION}SourceExpression=\"lower(unaccent(Name))\" />"
    );
    let (_, c) = with_elements(&good);
    assert!(clean(&c), "{}", show(&c.diagnostics));

    let bad = format!(
        "{CORRELATION}TargetExpression=\"ToLowr\" SourceBinding=\"Name\" SourceExpression=\"ToLower\" />"
    );
    let (text, c) = with_elements(&bad);
    let errs = errors_of(&c);
    assert_eq!(errs.len(), 1, "{}", show(&c.diagnostics));
    assert_eq!(errs[0].rule, Rule::Expression);
    assert_eq!(
        (errs[0].at.line, errs[0].at.column),
        position(&text, "ToLowr")
    );
    assert!(
        errs[0]
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("did you mean 'ToLower'?"),
        "{}",
        errs[0]
    );

    let alone = format!("{CORRELATION}SourceExpression=\"lower(Nme)\" />");
    let (_, c) = with_elements(&alone);
    let errs = errors_of(&c);
    assert!(
        errs.len() == 1 && errs[0].rule == Rule::UnresolvedReference,
        "{}",
        show(&c.diagnostics)
    );

    let function_alone = format!("{CORRELATION}SourceExpression=\"ToLower\" />");
    let (_, c) = with_elements(&function_alone);
    let errs = errors_of(&c);
    assert!(
        errs.len() == 1
            && errs[0].rule == Rule::Expression
            && errs[0].message.contains("no SourceBinding"),
        "{}",
        show(&c.diagnostics)
    );

    let csharp = format!(
        "{CORRELATION}SourceBinding=\"Name\" SourceExpression=\"C#:p:return p.ToLower();\" />"
    );
    let (_, c) = with_elements(&csharp);
    assert!(!c.diagnostics.has_errors(), "{}", show(&c.diagnostics));
    assert!(
        c.diagnostics
            .iter()
            .any(|d| d.rule == Rule::CsharpExpression)
    );
}
