//! Package tests against real systems and files (one integration-test binary per crate).

mod csv;
mod documented_settings;
mod fulfill_database;
mod fulfill_to_file;
mod hostile_ldap;
mod ldap;
mod ldif;
mod scim;
mod scim_faults;
mod scripts;
mod sql;
