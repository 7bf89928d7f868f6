//! Refresh schema: one table, `<connection>`, whose String columns are the header's names.

use async_trait::async_trait;

use super::Csv;
use super::source::{Table, locate};
use crate::api::{ColumnSchema, ConnectionSchema, PackageError, Schema, TableSchema};

#[async_trait]
impl Schema for Csv {
    /// Reads only the header of `Path` (or of `PathIncremental` when there is no `Path`), after
    /// `NumberOfLinesToSkip` lines; columns without a header are left out, as exports drop them.
    async fn schema(&self) -> Result<ConnectionSchema, PackageError> {
        let spec = self
            .settings
            .path
            .as_ref()
            .or(self.settings.path_incremental.as_ref())
            .ok_or_else(|| PackageError::Settings {
                connection: self.env.connection.clone(),
                path: "Path".into(),
                message: "no file to read the header from".into(),
            })?;
        let source = locate(&self.env, spec)?;
        let table = Table::open(&source, &self.settings)?;
        Ok(ConnectionSchema {
            tables: vec![TableSchema {
                name: self.env.connection.clone(),
                columns: table.header.into_iter().map(ColumnSchema::string).collect(),
            }],
        })
    }
}
