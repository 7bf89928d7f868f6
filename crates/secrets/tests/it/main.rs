//! Integration tests of idlink-secrets (one test binary, modules by topic).

#![allow(clippy::unwrap_used)]

mod keys;
mod protect;
mod secret;
mod values;

/// Asserts that `message` contains neither `needle` nor any 16-character window of it.
pub fn assert_no_leak(message: &str, needle: &str) {
    assert!(
        !message.contains(needle),
        "message leaks a secret: {message}"
    );
    let chars: Vec<char> = needle.chars().collect();
    if chars.len() > 16 {
        for window in chars.windows(16) {
            let w: String = window.iter().collect();
            assert!(
                !message.contains(&w),
                "message leaks part of a secret ({w}): {message}"
            );
        }
    }
}
