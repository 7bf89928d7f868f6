//! End-to-end tests of the `idlink` binary (one integration-test binary per crate).

mod agents;
mod broken;
mod check;
mod crash;
mod export;
mod fulfill;
mod hostile_ldap;
mod hostile_sql;
mod ldap;
mod provision;
mod schemas;
mod scim;
mod secrets;
mod serve;
mod support;
mod sync;
mod usability;
