//! ldif package tests.
