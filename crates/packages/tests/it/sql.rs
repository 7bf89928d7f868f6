//! sql package tests.
