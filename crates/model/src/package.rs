//! What the validator needs to know of packages: identifiers, capabilities and settings schemas.
//!
//! The descriptors themselves live with the package registry (`idlink-packages`); the model only
//! defines their shape, so configuration can be checked against packages without depending on
//! the code that runs them.

use std::fmt;

/// What a package can do, as the registry declares it without running anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub export: bool,
    pub fulfill: bool,
    pub incremental: bool,
    pub schema: bool,
}

/// Whether this build can run the package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Implemented (or being implemented) here: its settings are checked against its schema.
    Supported,
    /// Documented for Netwrix Identity Manager, known to `check`, but not runnable in this build:
    /// its settings are not checked and running it fails with a clear message.
    DocumentedOnly,
}

/// One package: a technology a connection can use.
#[derive(Debug)]
pub struct PackageInfo {
    /// e.g. `Usercube.CSV@0000001`.
    pub id: &'static str,
    /// e.g. `File/CSV`.
    pub display_name: &'static str,
    pub capabilities: Capabilities,
    pub availability: Availability,
    /// The settings a connection of this package takes in appsettings.agent.json.
    pub settings: &'static SettingsSchema,
}

/// The packages a configuration may name.
pub trait PackageCatalog {
    /// Exact, case-sensitive lookup by identifier.
    fn get(&self, id: &str) -> Option<&PackageInfo>;
    /// Every package, for suggestions and listings.
    fn all(&self) -> Box<dyn Iterator<Item = &PackageInfo> + '_>;
}

/// The settings a package takes: named fields plus constraints across fields.
#[derive(Debug)]
pub struct SettingsSchema {
    pub fields: &'static [Field],
    pub constraints: &'static [Constraint],
}

impl SettingsSchema {
    /// A package without settings.
    pub const EMPTY: SettingsSchema = SettingsSchema {
        fields: &[],
        constraints: &[],
    };

    /// Whether a connection of this package may have no settings entry at all: nothing is
    /// required, by a field or by a rule across fields.
    pub fn optional_as_a_whole(&self) -> bool {
        self.fields.iter().all(|f| !f.required) && self.constraints.is_empty()
    }

    /// Field lookup; setting names are case-insensitive, as in .NET configuration.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// One setting.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// Secured settings are secrets: never printed, and encrypted at rest.
    pub secured: bool,
    /// A file or folder path (relative to the settings file's folder) that must lie under
    /// `SourcesRootPaths`: `check` verifies it, as the package does before reading or writing.
    pub under_roots: bool,
    /// Says where the connection's secured values are sent (a server, a token endpoint, the
    /// program given them): an encrypted value is bound to these settings' values as they were
    /// when it was encrypted, and refused if they changed (see `idlink_secrets::Binding`).
    pub destination: bool,
    /// One line for messages and `--help`-like listings.
    pub doc: &'static str,
    /// Documented for Netwrix Identity Manager but without effect in idlink: why. Such a
    /// setting is accepted (its value still checked against its kind), never reported as
    /// unknown; `check -v` may say once per kind that it has no effect.
    pub no_effect: Option<&'static str>,
    /// Documented values idlink refuses, each with why (e.g. `AsAdLds` true, `AuthType`
    /// Negotiate): `check` reports them as errors and the package refuses them with the same
    /// reason, both from this table.
    pub refused: &'static [Refusal],
}

/// A documented value of a setting that idlink refuses, and why.
pub type Refusal = (&'static str, &'static str);

impl Field {
    pub const fn optional(name: &'static str, kind: Kind, doc: &'static str) -> Field {
        Field {
            name,
            kind,
            required: false,
            secured: false,
            under_roots: false,
            destination: false,
            doc,
            no_effect: None,
            refused: &[],
        }
    }

    pub const fn required(name: &'static str, kind: Kind, doc: &'static str) -> Field {
        Field {
            name,
            kind,
            required: true,
            secured: false,
            under_roots: false,
            destination: false,
            doc,
            no_effect: None,
            refused: &[],
        }
    }

    /// A documented setting idlink accepts without effect; `why` says why (one line).
    pub const fn no_effect(name: &'static str, kind: Kind, why: &'static str) -> Field {
        Field {
            name,
            kind,
            required: false,
            secured: false,
            under_roots: false,
            destination: false,
            doc: why,
            no_effect: Some(why),
            refused: &[],
        }
    }

    #[must_use]
    pub const fn secured(self) -> Field {
        Field {
            secured: true,
            ..self
        }
    }

    /// A setting that says where secured values are sent (see the `destination` field).
    #[must_use]
    pub const fn destination(self) -> Field {
        Field {
            destination: true,
            ..self
        }
    }

    /// Documented values idlink refuses, each with why.
    #[must_use]
    pub const fn refusing(self, refused: &'static [Refusal]) -> Field {
        Field { refused, ..self }
    }

    /// Why `value` is refused, when it is one of the refused values (compared
    /// case-insensitively, as .NET configuration reads values).
    pub fn refusal(&self, value: &str) -> Option<&'static str> {
        let value = value.trim();
        self.refused
            .iter()
            .find(|(v, _)| v.eq_ignore_ascii_case(value))
            .map(|(_, why)| *why)
    }

    /// Marks a path that must lie under `SourcesRootPaths`.
    #[must_use]
    pub const fn under_roots(self) -> Field {
        Field {
            under_roots: true,
            ..self
        }
    }
}

/// A check a package adds to a string value (e.g. a known encoding name). Returns why not.
pub type StringCheck = fn(&str) -> Result<(), String>;

/// The type of a setting's value. Values may be JSON scalars of that type or strings that parse
/// as it (environment overrides are always strings, as in .NET configuration).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    String,
    /// A string with an extra check.
    CheckedString(StringCheck),
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    /// One of the values (compared case-insensitively).
    Enum(&'static [&'static str]),
    /// An array of strings, or one string the package splits (as Netwrix documentation writes
    /// some lists: `"FilterValues": "user organizationalUnit"`).
    StringList,
    /// An array of objects of the given schema.
    ObjectList(&'static SettingsSchema),
    /// Free key-value pairs (string values).
    Map,
}

impl Kind {
    pub fn describe(&self) -> String {
        match self {
            Kind::String | Kind::CheckedString(_) => "a string".into(),
            Kind::Bool => "true or false".into(),
            Kind::Int { min, max } => format!("a whole number from {min} to {max}"),
            Kind::Enum(values) => format!("one of {}", values.join(", ")),
            Kind::StringList => "an array of strings (or one string)".into(),
            Kind::ObjectList(_) => "an array of objects".into(),
            Kind::Map => "an object of string values".into(),
        }
    }
}

/// A rule across fields.
#[derive(Debug, Clone, Copy)]
pub enum Constraint {
    /// At least one of these settings must be given.
    AtLeastOne(&'static [&'static str]),
    /// At most one of these settings may be given.
    AtMostOne(&'static [&'static str]),
    /// When the first setting has the given value (case-insensitive), the others are required.
    RequiresWhen {
        field: &'static str,
        equals: &'static str,
        then: &'static [&'static str],
    },
    /// The settings come in one of several documented shapes (e.g. the LDAP page's
    /// `Servers`/`Tables` and the OpenLDAP page's `Server`/`DistinguishedName`): fields of two
    /// shapes may not be given together. Each shape is named by its first field in messages.
    OneShapeOf(&'static [&'static [&'static str]]),
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::AtLeastOne(names) => {
                write!(f, "at least one of {} is required", names.join(", "))
            }
            Constraint::AtMostOne(names) => {
                write!(f, "only one of {} may be given", names.join(", "))
            }
            Constraint::RequiresWhen {
                field,
                equals,
                then,
            } => {
                write!(
                    f,
                    "{} is required when {field} is {equals}",
                    then.join(" and ")
                )
            }
            Constraint::OneShapeOf(shapes) => {
                let shapes: Vec<String> = shapes.iter().map(|s| s.join(", ")).collect();
                write!(
                    f,
                    "the settings take one of these shapes, not a mix: {}",
                    shapes.join(" | ")
                )
            }
        }
    }
}
