//! ldif package tests: real LDIF files in temporary folders (and `tests/fixtures/ldif/`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use idlink_model::config::{KeyType, ValueType};
use idlink_packages::api::{
    Environment, ExportRequest, Instance, MappedTable, NoProgress, PackageError, Progress,
};
use idlink_packages::output::{ExportOutput, StagedTable};
use idlink_packages::paths::SourceRoots;
use serde_json::json;

const CONNECTION: &str = "Dir";

/// A settings folder with a `data` source root and a staging folder for the output.
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("data")).expect("mkdir data");
        std::fs::create_dir(dir.path().join("staging")).expect("mkdir staging");
        Folder { dir }
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `data/<name>` and returns the setting that names it.
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        std::fs::write(self.base().join("data").join(name), bytes).expect("write");
        format!("data/{name}")
    }

    /// Copies `tests/fixtures/ldif/directory.ldif` into `data/`.
    fn directory(&self) -> String {
        let fixture =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ldif/directory.ldif");
        self.file(
            "directory.ldif",
            std::fs::read(fixture).expect("read fixture"),
        )
    }

    fn env(&self, mapped_tables: Vec<MappedTable>) -> Environment {
        Environment {
            connection: CONNECTION.to_string(),
            base_dir: self.base().to_path_buf(),
            roots: SourceRoots::new(self.base(), &["data"]),
            mapped_tables,
        }
    }

    fn instance(&self, settings: serde_json::Value) -> Box<dyn Instance> {
        self.instance_mapped(settings, vec![])
            .expect("settings are valid")
    }

    fn instance_mapped(
        &self,
        settings: serde_json::Value,
        mapped: Vec<MappedTable>,
    ) -> Result<Box<dyn Instance>, PackageError> {
        idlink_packages::instantiate(&idlink_packages::ldif::LDIF, settings, self.env(mapped))
    }

    async fn export_with(
        &self,
        instance: &dyn Instance,
        progress: &dyn Progress,
    ) -> Result<Vec<StagedTable>, PackageError> {
        let mut out = ExportOutput::new(CONNECTION, &self.base().join("staging"));
        let request = ExportRequest {
            incremental: false,
            cookie: None,
            progress,
        };
        let outcome = instance
            .export()
            .expect("LDIF exports")
            .export(&request, &mut out)
            .await?;
        assert_eq!(outcome.cookie, None);
        assert!(!outcome.incremental);
        out.finish()
    }

    async fn export(&self, settings: serde_json::Value) -> Result<Tables, PackageError> {
        let instance = self.instance(settings);
        Ok(Tables(self.export_with(&*instance, &NoProgress).await?))
    }
}

/// The tables of one export.
struct Tables(Vec<StagedTable>);

impl Tables {
    fn names(&self) -> Vec<&str> {
        self.0.iter().map(|t| t.name.as_str()).collect()
    }

    fn text(&self, name: &str) -> String {
        let t = self
            .0
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no table {name} in {:?}", self.names()));
        std::fs::read_to_string(&t.path).expect("read table")
    }

    /// The table as CSV records (header included).
    fn rows(&self, name: &str) -> Vec<Vec<String>> {
        let text = self.text(name);
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.expect("csv").iter().map(str::to_string).collect())
            .collect()
    }
}

async fn export_err(folder: &Folder, settings: serde_json::Value) -> String {
    match folder.export(settings).await {
        Ok(t) => panic!("export must fail, wrote {:?}", t.names()),
        Err(e) => e.to_string(),
    }
}

#[derive(Default)]
struct Recorder {
    rows: Mutex<Vec<(String, u64)>>,
    phases: Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn rows(&self, table: &str, rows: u64) {
        self.rows
            .lock()
            .expect("lock")
            .push((table.to_string(), rows));
    }
    fn phase(&self, message: &str) {
        self.phases.lock().expect("lock").push(message.to_string());
    }
}

const ALICE: &str = "uid=alice,ou=People,dc=example,dc=com";
const BOB: &str = "uid=bob,ou=People,dc=example,dc=com";
const ZOE: &str = "cn=Zoë,ou=People,dc=example,dc=com";
const ZOE_NUNEZ: &str = "cn=Zoë Núñez,ou=People,dc=example,dc=com";

#[tokio::test]
async fn every_attribute_of_the_fixture_exports_byte_exactly() {
    let folder = Folder::new();
    let file = folder.directory();
    let tables = folder
        .export(json!({ "LDIFFile": file }))
        .await
        .expect("export");
    assert_eq!(
        tables.names(),
        ["Dir_entries", "Dir_manager", "Dir_member", "Dir_owner"]
    );
    // Columns: dn, then every attribute sorted case-insensitively (spelled as first seen), link
    // attributes left out; values sorted case-insensitively and joined by newlines; the folded
    // description unfolded; base64 text decoded; the binary jpegPhoto as base64.
    let expected = concat!(
        "dn,cn,cn;lang-fr,dc,description,jpegPhoto,mail,objectClass,ou,sn,uid\n",
        "\"dc=example,dc=com\",,,example,,,,\"domain\ntop\",,,\n",
        "\"ou=People,dc=example,dc=com\",,,,,,,organizationalUnit,People,,\n",
        "\"uid=alice,ou=People,dc=example,dc=com\",\"Alice\nalice\nAlice Martin\",Alice Martin (fr),,",
        "A description folded over two lines,/9j/4AAQSkZJRgAB,alice@example.com,",
        "\"inetOrgPerson\nperson\ntop\",,Martin,alice\n",
        "\"uid=bob,ou=People,dc=example,dc=com\",Bob Durand,,,\"Hello, world!\nSecond line\",,",
        "bob@example.com,\"inetOrgPerson\nPerson\",,Durand,bob\n",
        "\"cn=Zoë Núñez,ou=People,dc=example,dc=com\",Zoë Núñez,,,,,,person,,Núñez,\n",
        "\"cn=Zoë,ou=People,dc=example,dc=com\",Zoë,,,,,,PERSON,,Zoë,\n",
        "\"cn=Staff,ou=Groups,dc=example,dc=com\",Staff,,,,,,groupOfNames,,,\n",
    );
    assert_eq!(tables.text("Dir_entries"), expected);
    assert_eq!(
        tables.text("Dir_manager"),
        "dn,manager\n\"uid=alice,ou=People,dc=example,dc=com\",\"uid=bob,ou=People,dc=example,dc=com\"\n"
    );
    assert_eq!(
        tables.rows("Dir_member"),
        [
            vec!["dn", "member"],
            vec!["cn=Staff,ou=Groups,dc=example,dc=com", ZOE_NUNEZ],
            vec!["cn=Staff,ou=Groups,dc=example,dc=com", ZOE],
            vec!["cn=Staff,ou=Groups,dc=example,dc=com", ALICE],
            vec!["cn=Staff,ou=Groups,dc=example,dc=com", BOB],
        ]
    );
    assert_eq!(tables.rows("Dir_owner").len(), 2);
}

#[tokio::test]
async fn filter_keeps_entries_with_one_of_the_values_ignoring_case() {
    let folder = Folder::new();
    let file = folder.directory();
    let tables = folder
        .export(json!({
            "LDIFFile": file,
            "FilterAttribute": "objectClass",
            "FilterValues": ["person", "groupOfNames"],
        }))
        .await
        .expect("export");
    let dns: Vec<String> = tables
        .rows("Dir_entries")
        .into_iter()
        .skip(1)
        .map(|r| r[0].clone())
        .collect();
    // `objectclass: Person` and `objectClass: PERSON` match `person`; the domain and the
    // organizational unit are left out, and so are their attributes (`dc`, `ou`).
    assert_eq!(
        dns,
        [
            ALICE,
            BOB,
            ZOE_NUNEZ,
            ZOE,
            "cn=Staff,ou=Groups,dc=example,dc=com"
        ]
    );
    assert_eq!(
        tables.rows("Dir_entries")[0],
        [
            "dn",
            "cn",
            "cn;lang-fr",
            "description",
            "jpegPhoto",
            "mail",
            "objectClass",
            "sn",
            "uid"
        ]
    );

    // The documentation's form: one string, values separated by spaces.
    let tables = folder
        .export(json!({
            "LDIFFile": file,
            "FilterAttribute": "OBJECTCLASS",
            "FilterValues": "organizationalunit domain",
        }))
        .await
        .expect("export");
    assert_eq!(
        tables.text("Dir_entries"),
        concat!(
            "dn,dc,objectClass,ou\n",
            "\"dc=example,dc=com\",example,\"domain\ntop\",\n",
            "\"ou=People,dc=example,dc=com\",,organizationalUnit,People\n",
        )
    );
    assert_eq!(tables.names(), ["Dir_entries"]);
}

#[tokio::test]
async fn attributes_select_columns_in_order_and_link_tables() {
    let folder = Folder::new();
    let file = folder.directory();
    let tables = folder
        .export(json!({
            "LDIFFile": file,
            "FilterAttribute": "objectClass",
            "FilterValues": ["inetOrgPerson", "groupOfNames"],
            "Attributes": ["dn", "UID", "mail", "Member", "cn;LANG-FR", "telephoneNumber"],
        }))
        .await
        .expect("export");
    assert_eq!(tables.names(), ["Dir_entries", "Dir_member"]);
    assert_eq!(
        tables.text("Dir_entries"),
        concat!(
            "dn,UID,mail,cn;LANG-FR,telephoneNumber\n",
            "\"uid=alice,ou=People,dc=example,dc=com\",alice,alice@example.com,Alice Martin (fr),\n",
            "\"uid=bob,ou=People,dc=example,dc=com\",bob,bob@example.com,,\n",
            "\"cn=Staff,ou=Groups,dc=example,dc=com\",,,,\n",
        )
    );
    assert_eq!(tables.rows("Dir_member").len(), 5);
    assert_eq!(tables.rows("Dir_member")[0], ["dn", "member"]);
}

#[tokio::test]
async fn mapped_tables_choose_the_columns_when_attributes_are_not_given() {
    let folder = Folder::new();
    let file = folder.directory();
    let mapped = vec![
        MappedTable {
            name: "Dir_entries".into(),
            suffix: Some("entries".into()),
            columns: vec!["dn".into(), "sn".into(), "cn".into()],
        },
        MappedTable {
            name: "Dir_member".into(),
            suffix: Some("member".into()),
            columns: vec!["dn".into(), "member".into()],
        },
    ];
    let instance = folder
        .instance_mapped(json!({ "LDIFFile": file }), mapped)
        .expect("instance");
    let progress = Recorder::default();
    let tables = Tables(
        folder
            .export_with(&*instance, &progress)
            .await
            .expect("export"),
    );
    assert_eq!(tables.names(), ["Dir_entries", "Dir_member"]);
    assert_eq!(tables.rows("Dir_entries")[0], ["dn", "cn", "sn"]);
    assert_eq!(tables.rows("Dir_entries").len(), 8);
    assert_eq!(tables.rows("Dir_member").len(), 5);
    // One pass only: the columns are known.
    let phases = progress.phases.lock().expect("lock").clone();
    assert_eq!(phases, ["reading data/directory.ldif"]);
}

#[tokio::test]
async fn multivalued_cells_and_link_rows_are_sorted_and_deduplicated() {
    let folder = Folder::new();
    let file = folder.file(
        "groups.ldif",
        concat!(
            "dn: cn=G,dc=x\n",
            "objectClass: groupOfUniqueNames\n",
            "description: b\n",
            "description: B\n",
            "description: a\n",
            "description: a\n",
            "description: C\n",
            "uniqueMember: uid=b,dc=x\n",
            "uniqueMember: UID=A,dc=x\n",
            "uniqueMember: uid=a,dc=x\n",
            "uniqueMember: uid=b,dc=x\n",
            "seeAlso: cn=H,dc=x\n",
        ),
    );
    let tables = folder
        .export(json!({ "LDIFFile": file }))
        .await
        .expect("export");
    assert_eq!(
        tables.text("Dir_entries"),
        "dn,description,objectClass\n\"cn=G,dc=x\",\"a\nB\nb\nC\",groupOfUniqueNames\n"
    );
    assert_eq!(
        tables.text("Dir_uniqueMember"),
        "dn,uniqueMember\n\"cn=G,dc=x\",\"UID=A,dc=x\"\n\"cn=G,dc=x\",\"uid=a,dc=x\"\n\"cn=G,dc=x\",\"uid=b,dc=x\"\n"
    );
    assert_eq!(
        tables.text("Dir_seeAlso"),
        "dn,seeAlso\n\"cn=G,dc=x\",\"cn=H,dc=x\"\n"
    );
}

#[tokio::test]
async fn latin1_utf16_and_wrong_encodings() {
    let folder = Folder::new();
    // "Zoë" in Windows-1252 / ISO-8859-1: ë is the single byte 0xEB.
    let latin1 = folder.file("latin1.ldif", b"dn: cn=Zo\xeb,dc=x\ncn: Zo\xeb\n");
    for name in ["ISO-8859-1", "latin1", "Windows-1252"] {
        let tables = folder
            .export(json!({ "LDIFFile": latin1, "LdifEncoding": name }))
            .await
            .expect("export");
        assert_eq!(tables.text("Dir_entries"), "dn,cn\n\"cn=Zoë,dc=x\",Zoë\n");
    }
    let e = export_err(&folder, json!({ "LDIFFile": latin1 })).await;
    assert!(
        e.starts_with("data/latin1.ldif:1: invalid UTF-8") && e.contains("LdifEncoding"),
        "{e}"
    );

    let mut utf16 = vec![0xff, 0xfe];
    for unit in "dn: cn=Zoë,dc=x\r\ncn: Zoë\r\n".encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    let utf16 = folder.file("utf16.ldif", utf16);
    let tables = folder
        .export(json!({ "LDIFFile": utf16, "LdifEncoding": "Unicode" }))
        .await
        .expect("export");
    assert_eq!(tables.text("Dir_entries"), "dn,cn\n\"cn=Zoë,dc=x\",Zoë\n");

    let e = folder
        .instance_mapped(
            json!({ "LDIFFile": utf16, "LdifEncoding": "EBCDIC" }),
            vec![],
        )
        .err()
        .expect("unknown encoding")
        .to_string();
    assert!(
        e.contains("setting LdifEncoding") && e.contains("Latin1"),
        "{e}"
    );
}

#[tokio::test]
async fn url_values_are_refused_naming_the_line() {
    let folder = Folder::new();
    let file = folder.file(
        "url.ldif",
        "version: 1\n\ndn: cn=A,dc=x\ncn: A\njpegPhoto:< file:///etc/passwd\n",
    );
    let e = export_err(&folder, json!({ "LDIFFile": file })).await;
    assert!(
        e.starts_with("data/url.ldif:5: URL values are not supported; inline the value"),
        "{e}"
    );
}

#[tokio::test]
async fn malformed_records_name_their_line() {
    let folder = Folder::new();
    let cases: &[(&str, &str, &str)] = &[
        (
            "colon.ldif",
            "dn: cn=A,dc=x\ncn: A\n\ndn: cn=B,dc=x\ncn B\n",
            "data/colon.ldif:5: expected `attribute: value`",
        ),
        (
            "nodn.ldif",
            "dn: cn=A,dc=x\ncn: A\n\ncn: B\nsn: B\n",
            "data/nodn.ldif:4: a record must start with `dn:`",
        ),
        (
            "continuation.ldif",
            " cn=A,dc=x\n",
            "data/continuation.ldif:1: this line starts with a space",
        ),
        (
            "modify.ldif",
            "dn: cn=A,dc=x\ncn: A\n\ndn: cn=A,dc=x\nchangetype: modify\nreplace: cn\ncn: B\n",
            "data/modify.ldif:5: change records are not supported (changetype: modify)",
        ),
        (
            "base64.ldif",
            "dn: cn=A,dc=x\n# comment\ndescription:: not*base64\n",
            "data/base64.ldif:3: the base64 value of description is invalid",
        ),
    ];
    for (name, text, expected) in cases {
        let file = folder.file(name, text);
        let e = export_err(&folder, json!({ "LDIFFile": file })).await;
        assert!(e.starts_with(expected), "{name}: {e}");
        // The schema and the connection check read the same way.
        let instance = folder.instance(json!({ "LDIFFile": file }));
        let e = instance
            .schema()
            .expect("schema")
            .schema()
            .await
            .expect_err("schema must fail")
            .to_string();
        assert!(e.starts_with(expected), "{name}: {e}");
    }
}

#[tokio::test]
async fn paths_outside_the_source_roots_are_refused() {
    let folder = Folder::new();
    std::fs::write(folder.base().join("secret.ldif"), "dn: cn=A\n").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        folder.base().join("secret.ldif"),
        folder.base().join("data/link.ldif"),
    )
    .expect("symlink");
    let mut settings = vec!["secret.ldif", "data/../secret.ldif"];
    if cfg!(unix) {
        settings.push("data/link.ldif");
    }
    for file in settings {
        let e = export_err(&folder, json!({ "LDIFFile": file })).await;
        assert!(e.contains("outside SourcesRootPaths"), "{file}: {e}");
        let instance = folder.instance(json!({ "LDIFFile": file }));
        let e = instance
            .check_connection()
            .expect("check")
            .check_connection()
            .await
            .expect_err("outside")
            .to_string();
        assert!(e.contains("outside SourcesRootPaths"), "{file}: {e}");
    }
    // The staging folder holds no partial table.
    assert_eq!(
        std::fs::read_dir(folder.base().join("staging"))
            .expect("ls")
            .count(),
        0
    );
}

#[tokio::test]
async fn check_connection_reads_the_first_entry() {
    let folder = Folder::new();
    let file = folder.directory();
    let instance = folder.instance(json!({ "LDIFFile": file }));
    let message = instance
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect("reachable");
    let canonical = folder
        .base()
        .join("data/directory.ldif")
        .canonicalize()
        .expect("canonical");
    assert_eq!(
        message,
        format!(
            "readable: {}, first entry dc=example,dc=com",
            canonical.display()
        )
    );

    let empty = folder.file("empty.ldif", "# nothing\n\nversion: 1\n");
    let instance = folder.instance(json!({ "LDIFFile": empty }));
    let e = instance
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect_err("no entry")
        .to_string();
    assert!(e.contains("holds no entry"), "{e}");
    let missing = folder.instance(json!({ "LDIFFile": "data/missing.ldif" }));
    let e = missing
        .check_connection()
        .expect("check")
        .check_connection()
        .await
        .expect_err("missing")
        .to_string();
    assert!(e.contains("missing.ldif"), "{e}");
}

#[tokio::test]
async fn schema_reports_multivalued_binary_and_link_tables() {
    let folder = Folder::new();
    let file = folder.directory();
    let instance = folder.instance(json!({ "LDIFFile": file }));
    let schema = instance
        .schema()
        .expect("schema")
        .schema()
        .await
        .expect("schema");
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["Dir_entries", "Dir_manager", "Dir_member", "Dir_owner"]
    );
    let entries = &schema.tables[0];
    let column = |name: &str| {
        entries
            .columns
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    assert_eq!(entries.columns[0].name, "dn");
    assert_eq!(entries.columns[0].key, KeyType::Primary);
    assert!(column("cn").multivalued);
    assert!(column("objectClass").multivalued);
    assert!(!column("sn").multivalued);
    assert_eq!(column("jpegPhoto").value_type, ValueType::Binary);
    assert_eq!(column("description").value_type, ValueType::String);
    assert_eq!(entries.columns.len(), 11);
    let member = &schema.tables[2];
    let columns: Vec<&str> = member.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["dn", "member"]);
    assert!(member.columns.iter().all(|c| !c.multivalued));

    // With Attributes, the schema lists those.
    let instance = folder.instance(json!({
        "LDIFFile": file,
        "Attributes": ["sn", "owner", "jpegPhoto"],
    }));
    let schema = instance
        .schema()
        .expect("schema")
        .schema()
        .await
        .expect("schema");
    let columns: Vec<Vec<&str>> = schema
        .tables
        .iter()
        .map(|t| t.columns.iter().map(|c| c.name.as_str()).collect())
        .collect();
    assert_eq!(
        columns,
        [vec!["dn", "sn", "jpegPhoto"], vec!["dn", "owner"]]
    );
}

#[tokio::test]
async fn settings_are_checked_when_instantiated() {
    let folder = Folder::new();
    let bad = |settings: serde_json::Value| {
        folder
            .instance_mapped(settings, vec![])
            .err()
            .expect("invalid settings")
            .to_string()
    };
    let e = bad(json!({ "FilterAttribute": "objectClass" }));
    assert!(e.contains("LDIFFile"), "{e}");
    let e = bad(json!({ "LDIFFile": "data/a.ldif", "FilterAttribute": "objectClass" }));
    assert!(e.contains("setting FilterValues: is required"), "{e}");
    let e = bad(json!({ "LDIFFile": "data/a.ldif", "FilterValues": ["person"] }));
    assert!(e.contains("setting FilterAttribute: is required"), "{e}");
    let e = bad(json!({ "LDIFFile": "data/a.ldif", "Attributes": ["cn", "CN"] }));
    assert!(e.contains("Attributes[1]") && e.contains("twice"), "{e}");
    let e = bad(json!({ "LDIFFile": "data/a.ldif", "Attributes": ["given name"] }));
    assert!(e.contains("not an attribute name"), "{e}");
}

#[tokio::test]
async fn large_files_stream_and_report_progress() {
    let folder = Folder::new();
    let mut text = String::from("version: 1\n");
    for i in 0..25_000 {
        text.push_str(&format!(
            "\ndn: uid=u{i},ou=People,dc=x\nobjectClass: person\nuid: u{i}\nmemberOf: cn=g{},dc=x\n",
            i % 7
        ));
    }
    let file = folder.file("big.ldif", text);
    let instance = folder.instance(json!({ "LDIFFile": file }));
    let progress = Recorder::default();
    let tables = folder
        .export_with(&*instance, &progress)
        .await
        .expect("export");
    assert_eq!(tables[0].name, "Dir_entries");
    assert_eq!(tables[0].rows, 25_000);
    assert_eq!(tables[1].name, "Dir_memberOf");
    assert_eq!(tables[1].rows, 25_000);
    let rows = progress.rows.lock().expect("lock").clone();
    let entries: Vec<u64> = rows
        .iter()
        .filter(|(t, _)| t == "Dir_entries")
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(entries, [10_000, 10_000, 5_000]);
    let phases = progress.phases.lock().expect("lock").clone();
    assert_eq!(
        phases,
        [
            "scanning data/big.ldif for attributes",
            "reading data/big.ldif"
        ]
    );
}
