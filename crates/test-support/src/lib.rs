//! Launchers for real servers used by tests.
