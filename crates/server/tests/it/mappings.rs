//! The entity type mapping editor: Source only from refreshed schemas, nothing to save without
//! one, schema drift flagged, a save that edits only that element, administrators only.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::Fixture;

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of the `HR_Person` mapping element, and what is before and after it.
fn split_person(xml: &str) -> (&str, &str, &str) {
    let start = xml
        .find("<EntityTypeMapping Identifier=\"HR_Person\"")
        .expect("mapping");
    let end = start
        + xml[start..].find("</EntityTypeMapping>").expect("end")
        + "</EntityTypeMapping>".len();
    (&xml[..start], &xml[start..end], &xml[end..])
}

fn person_edit() -> serde_json::Value {
    json!({
        "connectionTable": "HRPeople",
        "properties": [
            { "property": "EmployeeId", "connectionColumn": "EmployeeId", "isPrimaryKey": true },
            { "property": "FirstName", "connectionColumn": "FirstName" },
            { "property": "LastName", "connectionColumn": "LastName" },
            { "property": "Email", "connectionColumn": "Email", "isUniqueKey": true },
        ],
    })
}

#[tokio::test]
async fn without_a_refreshed_schema_there_is_nothing_to_choose_nor_to_save() {
    let f = Fixture::new().await;
    let hr = f.conf().join("hr.xml");
    let before = read(&hr);
    let mut c = f.admin().await;
    let m = c
        .api(Method::GET, "/api/entity-type-mappings/HR_Person", None)
        .await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
    let m = m.json();
    assert_eq!(m["sources"], json!([]));
    assert_eq!(m["canSave"], false);
    assert!(
        m["message"]
            .as_str()
            .unwrap_or_default()
            .contains("refresh the schema"),
        "{m}"
    );
    let put = c
        .api(
            Method::PUT,
            "/api/entity-type-mappings/HR_Person",
            Some(person_edit()),
        )
        .await;
    assert_eq!(put.status, StatusCode::BAD_REQUEST, "{}", put.body);
    assert!(put.body.contains("refresh the schema"), "{}", put.body);
    assert_eq!(read(&hr), before);
    let page = c.get("/mappings/HR_Person").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"no-source\""), "{}", page.body);
    assert!(
        page.body
            .contains("<button type=\"submit\" id=\"save-mapping\" disabled>"),
        "{}",
        page.body
    );
    let source = &page.body[page.body.find("id=\"source\"").expect("source")..];
    let source = &source[..source.find("</select>").expect("end")];
    assert!(!source.contains("<option"), "nothing to choose: {source}");
}

#[tokio::test]
async fn after_a_refresh_a_mapping_is_saved_in_place_and_drift_is_flagged() {
    let f = Fixture::new().await;
    let hr = f.conf().join("hr.xml");
    let mut c = f.admin().await;
    let r = c
        .api(
            Method::POST,
            "/api/connections/HRPeople/refresh-schema",
            None,
        )
        .await;
    assert_eq!(r.json()["outcome"], "refreshed", "{}", r.body);
    let m = c
        .api(Method::GET, "/api/entity-type-mappings/HR_Person", None)
        .await
        .json();
    assert_eq!(m["canSave"], true);
    let people = m["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["table"] == "HRPeople")
        .expect("HRPeople offered");
    assert!(
        people["columns"]
            .as_array()
            .expect("columns")
            .contains(&json!("StartDate"))
    );
    assert_eq!(m["drift"], json!([]));
    // The page offers the table and its columns.
    let page = c.get("/mappings/HR_Person").await.body;
    assert!(page.contains("<option value=\"HRPeople\""), "{page}");
    assert!(
        page.contains("<option selected>StartDate</option>"),
        "{page}"
    );
    // A column that is not in the table is refused.
    let mut bad = person_edit();
    bad["properties"][1]["connectionColumn"] = json!("Nope");
    let r = c
        .api(
            Method::PUT,
            "/api/entity-type-mappings/HR_Person",
            Some(bad),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // StartDate unmapped: only that element changes.
    let before = read(&hr);
    let r = c
        .api(
            Method::PUT,
            "/api/entity-type-mappings/HR_Person",
            Some(person_edit()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["changes"], json!(["unmapped StartDate"]));
    let after = read(&hr);
    let (b0, b1, b2) = split_person(&before);
    let (a0, a1, a2) = split_person(&after);
    assert_eq!((a0, a2), (b0, b2), "outside the element, nothing changed");
    assert_eq!(
        a1,
        b1.replace(
            "\n    <Property Identifier=\"StartDate\" ConnectionColumn=\"StartDate\" Format=\"yyyy-MM-dd\" />",
            ""
        )
    );
    let audit = c.api(Method::GET, "/api/audit", None).await.body;
    assert!(
        audit.contains("edit-mapping") && audit.contains("unmapped StartDate"),
        "{audit}"
    );
    // Drift: the source loses a mapped column, and the next refresh says so.
    let csv = f.conf().join("data/hr_people.csv");
    let text = read(&csv).replacen(",Email", "", 1);
    std::fs::write(&csv, text).expect("write");
    let r = c
        .api(
            Method::POST,
            "/api/connections/HRPeople/refresh-schema",
            None,
        )
        .await;
    assert_eq!(r.json()["outcome"], "refreshed", "{}", r.body);
    let m = c
        .api(Method::GET, "/api/entity-type-mappings/HR_Person", None)
        .await
        .json();
    let drift = m["drift"].to_string();
    assert!(drift.contains("'Email'"), "{drift}");
    let list = c.get("/mappings").await.body;
    let row = &list[list.find("id=\"mapping-HR_Person\"").expect("row")..];
    let row = &row[..row.find("</tr>").expect("end")];
    assert!(
        row.contains("Schema drift") && row.contains("Email"),
        "{row}"
    );
    let page = c.get("/mappings/HR_Person").await.body;
    assert!(page.contains("id=\"drift\""), "{page}");
    assert!(page.contains("Email (not in the schema)"), "{page}");
}

#[tokio::test]
async fn the_mapping_form_saves_and_an_operator_cannot() {
    let f = Fixture::new().await;
    let hr = f.conf().join("hr.xml");
    let mut c = f.admin().await;
    c.api(
        Method::POST,
        "/api/connections/HRPeople/refresh-schema",
        None,
    )
    .await;
    let made = c
        .api(
            Method::POST,
            "/api/users",
            Some(json!({ "name": "olga", "password": "operator-password-1", "role": "operator" })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    let mut op = f.login("olga", "operator-password-1").await;
    let before = read(&hr);
    let r = op
        .api(
            Method::PUT,
            "/api/entity-type-mappings/HR_Person",
            Some(person_edit()),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let page = op.get("/mappings/HR_Person").await.body;
    assert!(!page.contains("id=\"save-mapping\""), "{page}");
    let csrf = op.csrf.clone();
    let r = op
        .post_form(
            "/mappings/HR_Person",
            &[("connectionTable", "HRPeople")],
            csrf.as_deref(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(read(&hr), before);
    // The administrator's form: FirstName now reads LastName's column... then back.
    let csrf = c.csrf.clone();
    let fields = [
        ("connectionTable", "HRPeople"),
        ("col.EmployeeId", "EmployeeId"),
        ("pk", "EmployeeId"),
        ("col.FirstName", "FirstName"),
        ("col.LastName", "LastName"),
        ("col.Email", "Email"),
        ("uk.Email", "on"),
        ("col.StartDate", "StartDate"),
        ("fmt.StartDate", "dd/MM/yyyy"),
        ("col.Organization", ""),
    ];
    let r = c
        .post_form("/mappings/HR_Person", &fields, csrf.as_deref())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Saved: changed StartDate."), "{}", r.body);
    assert_eq!(
        read(&hr),
        before.replace("Format=\"yyyy-MM-dd\"", "Format=\"dd/MM/yyyy\"")
    );
    // Without the CSRF token: refused.
    let r = c.post_form("/mappings/HR_Person", &fields, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
