//! The configuration watcher: a change that passes check replaces the running configuration;
//! one that does not keeps the last valid one running and is shown with file:line:col.

use std::time::Duration;

use axum::http::{Method, StatusCode};

use crate::support::Fixture;

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn an_invalid_change_keeps_the_last_valid_configuration_running() {
    let f = Fixture::new().await;
    let stop = idlink_engine::CancellationToken::new();
    let first = idlink_server::running::fingerprint(f.state.paths());
    let watcher = tokio::spawn(idlink_server::running::watch(
        f.state.clone(),
        Duration::from_millis(50),
        first,
        stop.clone(),
    ));
    let hr = f.conf().join("hr.xml");
    let original = std::fs::read_to_string(&hr).expect("read");

    // An undeclared connector: refused, with its location.
    let broken = original.replacen(
        "Connector=\"HR\" Package=\"Usercube.CSV@0000001\"",
        "Connector=\"HRR\" Package=\"Usercube.CSV@0000001\"",
        1,
    );
    std::fs::write(&hr, &broken).expect("write");
    let state = f.state.clone();
    wait_for("the change to be refused", || {
        state.running().rejected.is_some()
    })
    .await;
    let running = f.state.running();
    let rejected = running.rejected.as_ref().expect("rejected");
    assert!(
        rejected
            .errors
            .iter()
            .any(|e| e.location.contains("hr.xml:11:") && e.message.contains("HRR")),
        "{:?}",
        rejected.errors
    );
    // The last valid configuration still runs.
    let mut c = f.admin().await;
    let r = c.api(Method::GET, "/api/connectors/HR", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["connections"].as_array().map(Vec::len), Some(3));
    let conf = c.api(Method::GET, "/api/configuration", None).await.json();
    assert_eq!(conf["running"], true);
    assert!(
        conf["rejected"]["errors"][0]["location"]
            .as_str()
            .is_some_and(|l| l.contains("hr.xml:")),
        "{conf}"
    );
    let page = c.get("/configuration").await.body;
    assert!(page.contains("hr.xml:11:"), "{page}");
    assert!(
        c.get("/").await.body.contains("does not pass check"),
        "the banner"
    );

    // A valid change runs.
    let renamed = original.replacen(
        "DisplayName_L1=\"Human resources\"",
        "DisplayName_L1=\"People\"",
        1,
    );
    std::fs::write(&hr, &renamed).expect("write");
    wait_for("the valid change to run", || {
        state.running().rejected.is_none()
    })
    .await;
    let r = c.api(Method::GET, "/api/connectors/HR", None).await.json();
    assert_eq!(r["name"], "People");
    let log = f.state.store().audit_log(10).await.expect("reads");
    assert!(
        log.iter()
            .any(|e| e.actor == "system" && e.detail.contains("does not pass check"))
    );
    assert!(
        log.iter()
            .any(|e| e.actor == "system" && e.detail.contains("runs now"))
    );

    stop.cancel();
    watcher.await.expect("the watcher ends");
}
