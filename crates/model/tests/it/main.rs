//! Integration tests of the configuration model (one test binary per crate).

mod documented;
mod expressions;
mod fuzz;
mod loading;
mod rules;
mod support;
