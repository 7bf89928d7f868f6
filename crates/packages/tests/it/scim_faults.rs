//! SCIM faults, injected by a proxy in front of the real scim2-server: 429 with Retry-After,
//! 503, 500, a 400, a server too slow for TimeOut, malformed JSON, a repeating page, a
//! `totalResults` that keeps growing, a cursor given back unchanged, a 2 GB Content-Length
//! and a body without end. Each must end the run with a clear error (or succeed after a
//! retry), never loop nor buffer without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use idlink_packages::api::{ErrorKind, OrderState};
use idlink_test_support::scim::Request;
use idlink_test_support::{Fault, FaultProxy};
use serde_json::json;

use super::scim::{SERVER, export, fulfill, instance, mapped, orders, rows, settings};

/// A proxy to the shared server applying `rule` to requests for `/v2/Users` listings only.
fn on_user_pages(rule: impl Fn(&Request, usize) -> Fault + Send + Sync + 'static) -> FaultProxy {
    let pages = AtomicUsize::new(0);
    FaultProxy::start(
        SERVER.port(),
        Box::new(move |r: &Request, _| {
            if r.method == "GET" && r.target.contains("/v2/Users?") {
                let n = pages.fetch_add(1, Ordering::SeqCst);
                rule(r, n)
            } else {
                Fault::Forward
            }
        }),
    )
}

fn page(total: u64, start: u64, ids: &[String]) -> String {
    let resources: Vec<_> = ids
        .iter()
        .map(|id| json!({"id": id, "userName": format!("u-{id}")}))
        .collect();
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
           "totalResults": total, "startIndex": start, "itemsPerPage": ids.len(),
           "Resources": resources})
    .to_string()
}

#[tokio::test]
async fn scim_429_with_retry_after_is_waited_for_then_the_export_goes_on() {
    let t = SERVER.tenant();
    super::scim::bulk_users(&t, "r", 30);
    let proxy = on_user_pages(|_, n| {
        if n < 2 {
            Fault::Respond {
                status: 429,
                headers: vec![("Retry-After".into(), "1".into())],
                body: b"{\"detail\": \"slow down\"}".to_vec(),
            }
        } else {
            Fault::Forward
        }
    });
    let mut s = settings(&proxy.url(&t));
    s["PageSize"] = json!(10);
    let i = instance(s, vec![mapped("Users", &["userName"])]);
    let start = Instant::now();
    let (_, tables) = export(&*i, None).await.expect("export after the retries");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(rows(&tables["SCIMExport_Users"]).len(), 31);
    let first_pages = proxy
        .requests()
        .iter()
        .filter(|r| r.contains("startIndex=1&"))
        .count();
    assert_eq!(
        first_pages,
        3,
        "two 429s, then the page: {:?}",
        proxy.requests()
    );
}

#[tokio::test]
async fn scim_a_retry_after_longer_than_idlink_waits_fails_at_once() {
    let t = SERVER.tenant();
    let proxy = on_user_pages(|_, _| Fault::Respond {
        status: 503,
        headers: vec![("Retry-After".into(), "3600".into())],
        body: Vec::new(),
    });
    let i = instance(
        settings(&proxy.url(&t)),
        vec![mapped("Users", &["userName"])],
    );
    let start = Instant::now();
    let e = export(&*i, None).await.expect_err("gives up");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("come back in 3600 s"), "{e}");
}

#[tokio::test]
async fn scim_a_500_fails_the_export_saying_a_retry_may_help() {
    let t = SERVER.tenant();
    let proxy = on_user_pages(|_, _| Fault::json(500, r#"{"detail": "database on fire"}"#));
    let i = instance(
        settings(&proxy.url(&t)),
        vec![mapped("Users", &["userName"])],
    );
    let e = export(&*i, None).await.expect_err("500");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("connection 'SCIMExport'")
            && text.contains(&format!("GET /{t}/v2/Users?startIndex=1"))
            && text.contains("500 Internal Server Error: database on fire")
            && text.contains("a retry may help"),
        "{text}"
    );
    // 500 is not retried.
    assert_eq!(
        proxy
            .requests()
            .iter()
            .filter(|r| r.contains("/v2/Users?"))
            .count(),
        1
    );
}

#[tokio::test]
async fn scim_a_server_slower_than_timeout_fails_within_it() {
    let t = SERVER.tenant();
    let proxy = on_user_pages(|_, _| Fault::Delay(Duration::from_secs(30)));
    let mut s = settings(&proxy.url(&t));
    s["TimeOut"] = json!(1);
    let i = instance(s, vec![mapped("Users", &["userName"])]);
    let start = Instant::now();
    let e = export(&*i, None).await.expect_err("timeout");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("within TimeOut (1 s)"), "{e}");
}

#[tokio::test]
async fn scim_malformed_json_is_a_data_error_naming_the_request() {
    let t = SERVER.tenant();
    let proxy =
        on_user_pages(|_, _| Fault::json(200, r#"{"totalResults": 3, "Resources": [{"id": "#));
    let i = instance(
        settings(&proxy.url(&t)),
        vec![mapped("Users", &["userName"])],
    );
    let e = export(&*i, None).await.expect_err("malformed");
    assert_eq!(e.kind(), ErrorKind::Data, "{e}");
    assert!(
        e.to_string().contains("is not valid JSON") && e.to_string().contains("/v2/Users?"),
        "{e}"
    );
}

#[tokio::test]
async fn scim_a_page_that_repeats_stops_the_export() {
    let t = SERVER.tenant();
    let ids: Vec<String> = (0..10).map(|i| format!("same-{i}")).collect();
    let proxy = on_user_pages(move |r, _| {
        let start = r
            .query("startIndex")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        // Whatever startIndex asks, the same page, and far more to come.
        Fault::json(200, &page(1_000_000, start, &ids))
    });
    let mut s = settings(&proxy.url(&t));
    s["PageSize"] = json!(10);
    let i = instance(s, vec![mapped("Users", &["userName"])]);
    let e = export(&*i, None).await.expect_err("repeats");
    assert!(e.to_string().contains("repeats the previous one"), "{e}");
    let pages = proxy.requests().len();
    assert!(pages < 10, "{pages} requests");
}

#[tokio::test]
async fn scim_a_total_that_keeps_growing_cannot_make_the_export_endless() {
    let t = SERVER.tenant();
    let proxy = on_user_pages(move |r, _| {
        let start: u64 = r
            .query("startIndex")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        // Fresh resources on every page, and a totalResults always one page ahead.
        let ids: Vec<String> = (start..start + 100).map(|i| format!("n{i}")).collect();
        Fault::json(200, &page(start + 199, start, &ids))
    });
    let mut s = settings(&proxy.url(&t));
    s["PageSize"] = json!(100);
    let i = instance(s, vec![mapped("Users", &["userName"])]);
    let e = export(&*i, None).await.expect_err("endless");
    assert!(
        e.to_string()
            .contains("resources were read though the first page announced totalResults 200"),
        "{e}"
    );
    assert!(proxy.requests().len() < 30, "{}", proxy.requests().len());
}

#[tokio::test]
async fn scim_a_cursor_given_back_unchanged_stops_the_export() {
    let t = SERVER.tenant();
    let config = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true}, "pagination": {"cursor": true, "index": false}});
    let n = Arc::new(AtomicUsize::new(0));
    let proxy = FaultProxy::start(
        SERVER.port(),
        Box::new(move |r: &Request, _| {
            if r.target.ends_with("/v2/ServiceProviderConfig") {
                return Fault::json(200, &config.to_string());
            }
            if r.method == "GET" && r.target.contains("/v2/Users?") {
                let k = n.fetch_add(1, Ordering::SeqCst);
                let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                    "itemsPerPage": 1, "nextCursor": "again",
                    "Resources": [{"id": format!("c{k}"), "userName": "x"}]});
                return Fault::json(200, &body.to_string());
            }
            Fault::Forward
        }),
    );
    let i = instance(
        settings(&proxy.url(&t)),
        vec![mapped("Users", &["userName"])],
    );
    let e = export(&*i, None).await.expect_err("same cursor");
    assert!(e.to_string().contains("same nextCursor (again)"), "{e}");
}

#[tokio::test]
async fn scim_a_2_gb_content_length_is_refused_before_reading() {
    let t = SERVER.tenant();
    let proxy = on_user_pages(|_, _| {
        Fault::Endless {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: application/scim+json\r\nContent-Length: 2147483648\r\n\r\n{\"Resources\": [".to_vec(),
    }
    });
    let i = instance(
        settings(&proxy.url(&t)),
        vec![mapped("Users", &["userName"])],
    );
    let start = Instant::now();
    let e = export(&*i, None).await.expect_err("too large");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let text = e.to_string();
    assert!(
        text.contains("announces 2147483648 bytes (Content-Length)")
            && text.contains("more than MaxMessageSize (16777216 bytes)"),
        "{text}"
    );
}

#[tokio::test]
async fn scim_a_body_without_end_stops_at_max_message_size() {
    let t = SERVER.tenant();
    let proxy = on_user_pages(|_, _| {
        Fault::Endless {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: application/scim+json\r\nConnection: close\r\n\r\n{\"Resources\": [".to_vec(),
    }
    });
    let mut s = settings(&proxy.url(&t));
    s["MaxMessageSize"] = json!(1_048_576);
    let i = instance(s, vec![mapped("Users", &["userName"])]);
    let e = export(&*i, None).await.expect_err("endless");
    assert!(
        e.to_string()
            .contains("goes on past that, more than MaxMessageSize (1048576 bytes)"),
        "{e}"
    );
}

#[tokio::test]
async fn scim_fulfill_retries_503_and_never_retries_a_400() {
    let t = SERVER.tenant();
    let posts = Arc::new(AtomicUsize::new(0));
    let seen = posts.clone();
    let proxy = FaultProxy::start(
        SERVER.port(),
        Box::new(move |r: &Request, _| {
            if r.method != "POST" || !r.target.ends_with("/v2/Users") {
                return Fault::Forward;
            }
            let body = String::from_utf8_lossy(&r.body).to_string();
            if body.contains("refused-user") {
                return Fault::json(
                    400,
                    r#"{"status": "400", "scimType": "invalidValue", "detail": "no such thing"}"#,
                );
            }
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return Fault::Respond {
                    status: 503,
                    headers: vec![("Retry-After".into(), "1".into())],
                    body: Vec::new(),
                };
            }
            Fault::Forward
        }),
    );
    let i = instance(settings(&proxy.url(&t)), Vec::new());
    let file = orders(json!({"ProvisioningOrdersList": [
        {"ChangeType": "Added", "ResourceType": {"Identifier": "SCIM_User"}, "Changes": {"userName": "retried-user"}},
    ]}));
    let r = fulfill(&*i, &file, false).await;
    assert_eq!(r[0].state, OrderState::Executed, "{:?}", r[0]);
    let file = orders(json!({"ProvisioningOrdersList": [
        {"ChangeType": "Added", "ResourceType": {"Identifier": "SCIM_User"}, "Changes": {"userName": "refused-user"}},
    ]}));
    let r = fulfill(&*i, &file, false).await;
    assert_eq!(r[0].state, OrderState::Errored);
    assert!(
        r[0].message
            .contains("400 Bad Request: no such thing (scimType invalidValue)"),
        "{:?}",
        r[0]
    );
    let refused = proxy
        .requests()
        .iter()
        .filter(|x| x.starts_with("POST") && x.ends_with("/v2/Users"))
        .count();
    // One 503 and its retry, then the 400 once.
    assert_eq!(refused, 3, "{:?}", proxy.requests());
}
