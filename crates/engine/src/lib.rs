//! The idlink engine.
