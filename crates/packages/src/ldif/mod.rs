//! LDIF files: `Usercube.LDIF`.
//!
//! Exports the entries (content records) of an RFC 2849 file as SPEC §3 writes LDAP entries:
//! `<connection>_entries.csv` with `dn` and one column per attribute (attribute names ignore
//! case; options such as `cn;lang-fr` are separate attributes; several values share one cell,
//! sorted and newline-separated; binary values are base64), and one link table
//! `<connection>_<attribute>.csv` (`dn`, `<attribute>`; one row per value) per reference
//! attribute of [`settings::LINK_ATTRIBUTES`], which is then not a column. The file is
//! streamed: only the current record is held.
//!
//! Folder shape: `settings.rs` (settings and their checks), `parser.rs` (the streaming RFC 2849
//! reader), `schema.rs` (the first pass: attributes found), `export.rs` (the tables written).
//! The package has no fulfill.

mod export;
mod parser;
mod schema;
pub mod settings;

use std::path::PathBuf;

use async_trait::async_trait;
use idlink_model::package::{Availability, Capabilities, PackageInfo};

use self::export::Layout;
use self::parser::{Reader, Record};
use self::settings::LdifSettings;
use crate::api::{
    CheckConnection, ConnectionSchema, Environment, Export, ExportOutcome, ExportRequest, Instance,
    MappedTable, PackageError, Schema,
};
use crate::output::ExportOutput;

/// `Usercube.LDIF@0000001`: exports the entries of an LDIF file.
pub static LDIF: PackageInfo = PackageInfo {
    id: "Usercube.LDIF@0000001",
    display_name: "Directory/LDIF",
    capabilities: Capabilities {
        export: true,
        fulfill: false,
        incremental: false,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// Checks settings (without I/O) and returns the package ready to run. The file is resolved
/// and checked against `SourcesRootPaths` each time it is read.
pub fn instantiate(
    package: &PackageInfo,
    settings: serde_json::Value,
    env: Environment,
) -> Result<Box<dyn Instance>, PackageError> {
    debug_assert_eq!(package.id, LDIF.id);
    let settings = settings::parse(&env.connection, settings)?;
    Ok(Box::new(Ldif { settings, env }))
}

/// An LDIF connection: checked settings and its environment.
#[derive(Debug)]
struct Ldif {
    settings: LdifSettings,
    env: Environment,
}

impl Ldif {
    /// Resolves the file under the source roots and opens it.
    fn open(&self) -> Result<(PathBuf, Reader), PackageError> {
        let path = self.env.source_path(&self.settings.file)?;
        let reader = Reader::open(&path, &self.settings.file, self.settings.encoding)?
            .with_max_entry(self.settings.max_entry);
        Ok((path, reader))
    }

    /// The mapped `<connection>_entries` table, if the configuration maps one.
    fn mapped_entries(&self) -> Option<&MappedTable> {
        self.env.mapped_tables.iter().find(|t| {
            t.suffix
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("entries"))
        })
    }
}

impl Instance for Ldif {
    fn export(&self) -> Option<&dyn Export> {
        Some(self)
    }
    fn schema(&self) -> Option<&dyn Schema> {
        Some(self)
    }
    fn check_connection(&self) -> Option<&dyn CheckConnection> {
        Some(self)
    }
}

#[async_trait]
impl Export for Ldif {
    /// Always a complete export. The columns are `Attributes` if given, else those the mappings
    /// read from `<connection>_entries`, else every attribute of the file (found by a first
    /// pass over it, so memory stays flat).
    async fn export(
        &self,
        request: &ExportRequest<'_>,
        out: &mut ExportOutput,
    ) -> Result<ExportOutcome, PackageError> {
        let filter = self.settings.filter.as_ref();
        let layout = if let Some(list) = &self.settings.attributes {
            Layout::from_attributes(list)
        } else if let Some(entries) = self.mapped_entries() {
            Layout::from_mapping(entries, &self.env.mapped_tables)
        } else {
            request
                .progress
                .phase(&format!("scanning {} for attributes", self.settings.file));
            let (_, mut reader) = self.open()?;
            Layout::from_scan(&schema::scan(&mut reader, filter)?)
        };
        request
            .progress
            .phase(&format!("reading {}", self.settings.file));
        let (_, mut reader) = self.open()?;
        export::write(&mut reader, filter, &layout, out, request.progress)?;
        Ok(ExportOutcome {
            notes: Vec::new(),
            cookie: None,
            incremental: false,
        })
    }
}

#[async_trait]
impl Schema for Ldif {
    /// From a pass over the file: `<connection>_entries` with `dn` (primary key) and the
    /// attributes (`Attributes` if given, else all), plus the link tables.
    async fn schema(&self) -> Result<ConnectionSchema, PackageError> {
        let (_, mut reader) = self.open()?;
        let scan = schema::scan(&mut reader, self.settings.filter.as_ref())?;
        Ok(schema::schema(&self.env.connection, &self.settings, &scan))
    }
}

#[async_trait]
impl CheckConnection for Ldif {
    /// The file is readable under `SourcesRootPaths` and its first record parses.
    async fn check_connection(&self) -> Result<String, PackageError> {
        let (path, mut reader) = self.open()?;
        let mut rec = Record::default();
        if !reader.next_record(&mut rec)? {
            return Err(PackageError::Data {
                location: self.settings.file.clone(),
                message: "the file holds no entry (no record starting with `dn:`)".into(),
            });
        }
        Ok(format!(
            "readable: {}, first entry {}",
            path.display(),
            rec.dn
        ))
    }
}
