//! idlink packages: the technologies a connection can use.
//!
//! The [`Registry`] lists every package identifier documented for Netwrix Identity Manager
//! 6.2 (Usercube), with what each can do ([`Capabilities`](idlink_model::package::Capabilities))
//! and whether this build can run it. Packages this build implements are
//! [`Supported`](idlink_model::package::Availability::Supported) and carry the schema of their
//! settings in `appsettings.agent.json`; the others are known to `check` but not runnable.
//!
//! Each implemented family has its own folder: `mod.rs` declares its packages, `settings.rs` the
//! settings they take. Everything here is `static` data: nothing is built at lookup time.

pub mod api;
pub mod output;
pub mod paths;
pub mod registry;

pub mod csv;
pub mod custom;
pub mod fulfill_database;
pub mod fulfill_to_file;
pub mod ldap;
pub mod ldif;
pub mod manual;
pub mod scim;
pub mod script;
pub mod sql;

pub use api::{Environment, Instance, PackageError};
pub use registry::{Registry, instantiate};
