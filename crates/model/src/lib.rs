//! The idlink configuration model.
//!
//! Loading goes parse -> validate -> [`Model`]: the XML files of a configuration folder and
//! `appsettings.agent.json` are read into typed values that keep their file, line and column;
//! then every rule of SPEC §2.2 runs, and all problems come back together as [`Diagnostics`].

pub mod diag;
pub mod package;

pub use diag::{Diagnostic, Diagnostics, Loc, Rule, Severity, Sp};
pub mod config;
pub mod text;
pub mod xml;
pub mod settings;
