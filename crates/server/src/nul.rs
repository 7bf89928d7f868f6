//! Requests holding a NUL character (U+0000) are refused with 400 before any handler runs: no
//! name, key or value the server keeps can hold one (a PostgreSQL store refuses it in text,
//! which turned a sign-in with `%00` in the name into a 500, unaudited and uncounted by the
//! rate limit). Looked for in the path and query (`%00`), and in form and JSON bodies (`%00`,
//! a raw NUL byte, or JSON's `\u0000` escape). Other bodies (agents' compressed tables) are
//! not read here, nor the agents' own requests (`/api/agent/…`): their results carry what
//! managed systems said, which a refusal would leave undelivered.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;

const REFUSED: &str = "a NUL character (U+0000) is not allowed in a request";

/// Whether `s` holds `%00`, the percent-encoding of NUL (a literal `%` is `%25`).
fn percent_nul(s: &[u8]) -> bool {
    memchr::memmem::find(s, b"%00").is_some()
}

/// Whether JSON text `s` holds a NUL: a raw byte, or a `\u0000` escape (a `u0000` after an odd
/// run of backslashes: `\\u0000` is a backslash, then text).
fn json_nul(s: &[u8]) -> bool {
    if memchr::memchr(0, s).is_some() {
        return true;
    }
    memchr::memmem::find_iter(s, b"u0000").any(|at| {
        let slashes = s[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        slashes % 2 == 1
    })
}

pub(crate) async fn middleware(request: Request, next: Next) -> Response {
    let refused = || AppError::BadRequest(REFUSED.into()).into_response();
    let uri = request.uri();
    if percent_nul(uri.path().as_bytes()) || uri.query().is_some_and(|q| percent_nul(q.as_bytes()))
    {
        return refused();
    }
    if uri.path().starts_with("/api/agent/") {
        return next.run(request).await;
    }
    let kind = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let json = match kind.as_deref() {
        Some("application/x-www-form-urlencoded") => false,
        Some(k) if k == "application/json" || k.ends_with("+json") => true,
        _ => return next.run(request).await,
    };
    let (parts, body) = request.into_parts();
    // The body limit layers outside this one bound what is read here.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            let status = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
            return (status, format!("the request body could not be read: {e}")).into_response();
        }
    };
    let nul = if json {
        json_nul(&bytes)
    } else {
        percent_nul(&bytes) || memchr::memchr(0, &bytes).is_some()
    };
    if nul {
        return refused();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(json_nul(br#"{"name":"a\u0000b"}"#));
        assert!(json_nul(br#"{"name":"a\\\u0000b"}"#));
        assert!(json_nul(b"{\"name\":\"a\0b\"}"));
        assert!(!json_nul(br#"{"name":"a\\u0000b"}"#));
        assert!(!json_nul(br#"{"name":"u0000"}"#));
        assert!(percent_nul(b"name=ad%00min&password=x"));
        assert!(!percent_nul(b"name=ad%200min"));
    }
}
