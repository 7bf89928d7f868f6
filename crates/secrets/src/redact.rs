//! Scrubbing known secret values out of text (defence in depth for messages from drivers).

use crate::secret::REDACTED;

/// Values shorter than this many characters are not redacted: replacing every `a` or `42`
/// would mangle messages and hide nothing worth hiding.
pub const MIN_REDACTED_LEN: usize = 3;

/// Replaces every occurrence of each secret value in `text` with [`REDACTED`].
///
/// Values shorter than [`MIN_REDACTED_LEN`] characters are ignored. Occurrences that overlap
/// (of one value or of several) are replaced as one span, so no part of any secret is left
/// next to a replacement, and a secret that happens to occur inside `**REDACTED**` is not
/// re-replaced.
pub fn redact<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for secret in secrets {
        let secret = secret.as_ref();
        if secret.chars().count() < MIN_REDACTED_LEN {
            continue;
        }
        let mut from = 0;
        while let Some(found) = text[from..].find(secret) {
            let start = from + found;
            spans.push((start, start + secret.len()));
            // Next char boundary after `start`, so overlapping occurrences are found too.
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            if from >= text.len() {
                break;
            }
        }
    }
    if spans.is_empty() {
        return text.to_string();
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut iter = spans.into_iter().peekable();
    while let Some((start, mut end)) = iter.next() {
        while let Some(&(next_start, next_end)) = iter.peek() {
            if next_start > end {
                break;
            }
            end = end.max(next_end);
            iter.next();
        }
        out.push_str(&text[copied..start]);
        out.push_str(REDACTED);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence() {
        let t = "login failed for pw=Hunter22 (Hunter22)";
        assert_eq!(
            redact(t, &["Hunter22"]),
            "login failed for pw=**REDACTED** (**REDACTED**)"
        );
    }

    #[test]
    fn short_values_are_left() {
        assert_eq!(redact("a b ab", &["a", "ab", ""]), "a b ab");
        assert_eq!(redact("x abc", &["abc"]), "x **REDACTED**");
    }

    #[test]
    fn overlaps_are_merged() {
        assert_eq!(
            redact("abcd1234xyz!", &["abcd1234", "1234xyz"]),
            "**REDACTED**!"
        );
        assert_eq!(redact("ababab", &["abab"]), "**REDACTED**");
        assert_eq!(redact("xx REDACTED", &["REDACTED"]), "xx **REDACTED**");
    }

    #[test]
    fn unicode() {
        assert_eq!(redact("é: pässwörd.", &["pässwörd"]), "é: **REDACTED**.");
        assert_eq!(redact("ééééé", &["éééé"]), "**REDACTED**");
    }

    #[test]
    fn owned_strings() {
        let s = vec![String::from("tok-123456")];
        assert_eq!(redact("Bearer tok-123456", &s), "Bearer **REDACTED**");
    }
}
