//! Package tests against real systems and files (one integration-test binary per crate).

mod csv;
mod ldif;
mod sql;
