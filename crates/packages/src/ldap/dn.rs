//! Distinguished names as RFC 4514 writes them: splitting off the RDN, reading its values,
//! and comparing DNs.

/// Splits `dn` at its first unescaped `,`: the RDN and the parent DN (empty for a top entry).
pub(crate) fn split(dn: &str) -> (&str, &str) {
    let bytes = dn.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'"' => quoted = !quoted,
            b',' | b';' if !quoted => return (dn[..i].trim(), dn[i + 1..].trim()),
            _ => {}
        }
        i += 1;
    }
    (dn.trim(), "")
}

/// The `attribute=value` pairs of an RDN (several when joined by `+`), values unescaped.
pub(crate) fn rdn_values(rdn: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let bytes = rdn.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'+' => {
                parts.push(&rdn[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&rdn[start.min(rdn.len())..]);
    parts
        .into_iter()
        .filter_map(|p| {
            let (a, v) = p.split_once('=')?;
            Some((a.trim().to_string(), unescape(v.trim())))
        })
        .collect()
}

/// Unescapes an RDN value: `\,` and `\2C` forms, and surrounding quotes.
pub(crate) fn unescape(value: &str) -> String {
    let v = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let bytes = v.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if i + 2 < bytes.len()
                && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
            {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            out.push(bytes[i + 1]);
            i += 2;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A comparable form: attribute names and values lowercased, spaces around separators
/// dropped, escapes resolved (good enough to tell whether two DNs name the same entry).
pub(crate) fn normalize(dn: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = dn.trim();
    while !rest.is_empty() {
        let (rdn, parent) = split(rest);
        let mut values: Vec<String> = rdn_values(rdn)
            .into_iter()
            .map(|(a, v)| format!("{}={}", a.to_ascii_lowercase(), v.to_lowercase()))
            .collect();
        values.sort();
        parts.push(values.join("+"));
        rest = parent;
    }
    parts.join(",")
}

/// Whether two DNs name the same entry.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a == b || normalize(a) == normalize(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_commas_stay_in_the_rdn() {
        let (rdn, parent) = split(r"cn=Smith\, John,ou=people,dc=example,dc=org");
        assert_eq!(rdn, r"cn=Smith\, John");
        assert_eq!(parent, "ou=people,dc=example,dc=org");
        assert_eq!(
            rdn_values(rdn),
            [("cn".to_string(), "Smith, John".to_string())]
        );
        assert_eq!(split("dc=org"), ("dc=org", ""));
    }

    #[test]
    fn values_unescape_and_dns_compare_loosely() {
        assert_eq!(unescape(r"Zo\C3\AB"), "Zoë");
        assert_eq!(
            rdn_values("cn=a+uid=b"),
            [("cn".into(), "a".into()), ("uid".into(), "b".into())]
        );
        assert!(same(
            r"CN=Smith\2C John, OU=People,dc=Example,dc=org",
            r"cn=smith\, john,ou=people,dc=example,dc=org"
        ));
        assert!(!same("cn=a,dc=x", "cn=b,dc=x"));
    }
}
