//! csv package tests.
