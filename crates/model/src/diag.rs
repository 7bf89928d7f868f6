//! Located diagnostics: every configuration problem carries the rule it breaks, where it is, and
//! how to fix it. Problems are collected, never thrown one at a time.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// A position in a source file: 1-based line and column (columns count characters).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl Loc {
    pub fn new(file: &Arc<str>, line: u32, column: u32) -> Self {
        Self {
            file: Arc::clone(file),
            line,
            column,
        }
    }

    /// A location that names only a file (or another source, such as an environment variable).
    pub fn file_only(file: impl Into<Arc<str>>) -> Self {
        Self {
            file: file.into(),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// A value together with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sp<T> {
    pub value: T,
    pub at: Loc,
}

impl<T> Sp<T> {
    pub fn new(value: T, at: Loc) -> Self {
        Self { value, at }
    }
}

impl Sp<String> {
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl<T: fmt::Display> fmt::Display for Sp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Shown with `-v` only: a documented item idlink accepts but does not act on.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $sev:ident; )*) => {
        /// Every rule a configuration is checked against. The id is stable: it names the
        /// `examples/broken/<id>` case and appears in text and JSON output.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Rule {
            $( $(#[$doc])* $variant, )*
        }

        impl Rule {
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];

            pub fn id(self) -> &'static str {
                match self { $(Rule::$variant => $id,)* }
            }

            /// The severity a diagnostic of this rule has.
            pub fn severity(self) -> Severity {
                match self { $(Rule::$variant => Severity::$sev,)* }
            }

            pub fn from_id(id: &str) -> Option<Rule> {
                match id { $($id => Some(Rule::$variant),)* _ => None }
            }
        }
    };
}

rules! {
    /// A file cannot be read as XML (syntax, encoding, or a root other than `ConfigurationFile`).
    XmlSyntax = "xml-syntax", Error;
    /// An element idlink does not know, that looks like a misspelt in-scope element, or a child
    /// element in a place where it has no meaning.
    UnknownElement = "unknown-element", Error;
    /// A required attribute is absent or empty.
    MissingAttribute = "missing-attribute", Error;
    /// An attribute value of the wrong type or outside its allowed values.
    AttributeValue = "attribute-value", Error;
    /// SPEC 2.2 rule 1: the form of a connection identifier.
    ConnectionIdentifier = "connection-identifier", Error;
    /// SPEC 2.2 rule 1: identifiers are unique per kind (connections case-insensitively).
    DuplicateIdentifier = "duplicate-identifier", Error;
    /// SPEC 2.2 rule 2: a reference to an element that does not exist.
    UnresolvedReference = "unresolved-reference", Error;
    /// SPEC 2.2 rule 3: `Package` is not a known package identifier.
    UnknownPackage = "unknown-package", Error;
    /// SPEC 2.2 rule 3: the package cannot do what the element asks (export, fulfill).
    PackageCapability = "package-capability", Error;
    /// SPEC 2.2 rule 4: a connection without settings in appsettings.agent.json.
    MissingSettings = "missing-settings", Error;
    /// SPEC 2.2 rule 4: a required setting is missing.
    SettingRequired = "setting-required", Error;
    /// SPEC 2.2 rule 4: a setting of the wrong type or outside its allowed values.
    SettingValue = "setting-value", Error;
    /// appsettings.agent.json (or an environment override) is not valid JSON of the expected shape.
    JsonSyntax = "json-syntax", Error;
    /// SPEC 2.2 rule 5: a task's connection is missing or not allowed.
    TaskConnection = "task-connection", Error;
    /// SPEC 2.2 rule 6: an entity type mapping needs exactly one primary key and at most three unique keys.
    MappingKeys = "mapping-keys", Error;
    /// SPEC 2.2 rule 6: association mappings reference a primary or unique key.
    AssociationKey = "association-key", Error;
    /// SPEC 2.2 rule 7: a mapping's table is not a table of one of its connector's connections.
    MappingTable = "mapping-table", Error;
    /// SPEC 2.2 rule 7: a mapped column is absent from the table's refreshed schema.
    UnknownColumn = "unknown-column", Error;
    /// A job's `CrontabExpression` is not a valid five-field crontab expression.
    Crontab = "crontab", Error;
    /// A job's `TaskDependsOnTask` children form a cycle: no order runs every task after its parents.
    TaskCycle = "task-cycle", Error;
    /// An expression (a rule's `Expression`, a correlation rule's `SourceExpression` or
    /// `TargetExpression`) that is not one of idlink's expression language (docs/expressions.md).
    Expression = "expression", Error;
    /// A job's `<Step>` names a task that is not declared (it may come from a scaffolding).
    UndeclaredStep = "undeclared-step", Warning;
    /// A documented attribute idlink accepts without effect, with the reason (one line per
    /// attribute and element, shown with `-v`).
    AcceptedWithoutEffect = "accepted-without-effect", Info;
    /// An element outside idlink's scope, skipped (one warning per element kind).
    OutOfScopeElement = "out-of-scope-element", Warning;
    /// An attribute idlink does not know on this element.
    UnknownAttribute = "unknown-attribute", Warning;
    /// A setting key the package's settings schema does not know.
    UnknownSetting = "unknown-setting", Warning;
    /// Settings in appsettings.agent.json for a connection the configuration does not declare.
    UnknownConnectionSettings = "unknown-connection-settings", Warning;
    /// A documented package this build cannot run.
    PackageNotAvailable = "package-not-available", Warning;
    /// A mapping on a table whose schema has not been refreshed: its columns cannot be checked.
    SchemaNotRefreshed = "schema-not-refreshed", Warning;
    /// A mapped table or column is missing from the latest schema snapshot of its connection
    /// (SPEC §7: a refresh dropped what a mapping reads).
    SchemaDrift = "schema-drift", Warning;
    /// An expression written in C#, which idlink cannot run.
    CsharpExpression = "csharp-expression", Warning;
    /// A task names a connection whose matching side is turned off by `DeactivationExportFulfill`.
    DeactivatedSide = "deactivated-side", Warning;
    /// A secured setting (password, token, connection string) stored in plain text in
    /// appsettings.agent.json instead of encrypted with `idlink protect`.
    PlaintextSecret = "plaintext-secret", Warning;
    /// appsettings.encrypted.agent.json holds a setting that is not secured (it silently
    /// overrides appsettings.agent.json), or a secured value that is not encrypted.
    EncryptedSettings = "encrypted-settings", Warning;
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub rule: Rule,
    pub severity: Severity,
    pub at: Loc,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(rule: Rule, at: Loc, message: impl Into<String>) -> Self {
        Self {
            rule,
            severity: rule.severity(),
            at,
            message: message.into(),
            hint: None,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Appends a "did you mean" suggestion to the hint when one is close enough.
    #[must_use]
    pub fn did_you_mean<'a>(
        self,
        input: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        match did_you_mean(input, candidates) {
            Some(s) => {
                let hint = match self.hint.as_deref() {
                    Some(h) => format!("did you mean '{s}'? {h}"),
                    None => format!("did you mean '{s}'?"),
                };
                Diagnostic {
                    hint: Some(hint),
                    ..self
                }
            }
            None => self,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error[rule-id]: message`, then the hint on its own indented line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}[{}]: {}",
            self.at, self.severity, self.rule, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n    hint: {h}")?;
        }
        Ok(())
    }
}

/// The diagnostics of one run, in the order they were found until [`Diagnostics::sort`].
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// The diagnostic pushed last, to refine its hint.
    pub fn last_mut(&mut self) -> Option<&mut Diagnostic> {
        self.items.last_mut()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn errors(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }

    /// Keeps one `accepted-without-effect` line per attribute and reason (at the first place
    /// it was seen); its hint lists the elements that carry it and how often.
    pub fn fold_without_effect(&mut self) {
        // message -> (element, count) in first-seen order
        let mut seen: Vec<(String, Vec<(String, usize)>)> = Vec::new();
        for d in self
            .items
            .iter()
            .filter(|d| d.rule == Rule::AcceptedWithoutEffect)
        {
            let element = d.hint.clone().unwrap_or_default();
            let i = match seen.iter().position(|(m, _)| *m == d.message) {
                Some(i) => i,
                None => {
                    seen.push((d.message.clone(), Vec::new()));
                    seen.len() - 1
                }
            };
            let els = &mut seen[i].1;
            match els.iter_mut().find(|(e, _)| *e == element) {
                Some((_, n)) => *n += 1,
                None => els.push((element, 1)),
            }
        }
        let mut kept = std::collections::HashSet::new();
        self.items.retain_mut(|d| {
            if d.rule != Rule::AcceptedWithoutEffect {
                return true;
            }
            if !kept.insert(d.message.clone()) {
                return false;
            }
            if let Some((_, els)) = seen.iter().find(|(m, _)| *m == d.message) {
                let list: Vec<String> = els
                    .iter()
                    .map(|(e, n)| {
                        if *n > 1 {
                            format!("{e} ({n})")
                        } else {
                            e.clone()
                        }
                    })
                    .collect();
                d.hint = Some(format!("written on {}; nothing to change", list.join(", ")));
            }
            true
        });
    }

    /// Keeps the diagnostics `keep` says yes to (a later stage that knows more, such as the
    /// stored schema snapshots, replaces what an earlier one could only guess).
    pub fn retain(&mut self, keep: impl FnMut(&Diagnostic) -> bool) {
        self.items.retain(keep);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// Orders by file, line and column, so output is stable whatever order rules ran in.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            a.at.cmp(&b.at)
                .then(a.rule.cmp(&b.rule))
                .then(a.message.cmp(&b.message))
        });
        self.items.dedup();
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// The closest candidate to `input`, when it is close enough to be a likely typo.
/// Comparison ignores case, so `connectionstring` suggests `ConnectionString`.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = input.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (c, strsim::damerau_levenshtein(&lower, &c.to_lowercase())))
        .filter(|&(c, d)| {
            d <= (c.chars().count() / 3).clamp(1, 3) && !c.eq_ignore_ascii_case(input) || d == 0
        })
        .min_by_key(|&(_, d)| d)
        .map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Rule::ALL {
            assert!(seen.insert(r.id()), "duplicate id {}", r.id());
            assert_eq!(Rule::from_id(r.id()), Some(*r));
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("Conection", ["Connection", "Connector"]),
            Some("Connection")
        );
        assert_eq!(
            did_you_mean("connectionstring", ["ConnectionString"]),
            Some("ConnectionString")
        );
        assert_eq!(did_you_mean("Zebra", ["Connection", "Connector"]), None);
    }

    #[test]
    fn display_has_location_rule_and_hint() {
        let d = Diagnostic::new(Rule::MissingAttribute, Loc::file_only("a.xml"), "x").hint("do y");
        assert_eq!(
            d.to_string(),
            "a.xml: error[missing-attribute]: x\n    hint: do y"
        );
    }
}
