//! `Transformation`s of a connection (SPEC §2.1), applied to its staged tables after export and
//! before they are committed:
//!
//! - `ConcatColumns`: `Column` = the values of `InputColumn`..`InputColumn5` (multi-valued cells
//!   split on newlines) joined by `ConcatSeparator` (default: nothing), after `RemoveEmpty`,
//!   `RemoveDuplicates` and `SortValues` (case-insensitive). `Column` is replaced or appended.
//! - `TransformDate`: `Column` = `InputColumn` (default: `Column` itself) parsed with the .NET
//!   `DatePattern` (e.g. `dd/MM/yyyy`), plus `AddedDays`, written as RFC 3339 UTC; dates whose
//!   year falls outside `MinYear`..`MaxYear` become empty (a far-future "no end date" is no
//!   date). A value that does not match the pattern fails the export with its line.
//! - `WhereValue`: keeps only the rows whose `Column` (or `InputColumn`) satisfies
//!   `WhereOperator` (default `Equals`) against `WhereValue`; comparisons are case-sensitive.

use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use idlink_model::config::{Transformation, TransformationType, WhereOperator};
use idlink_packages::output::StagedTable;

use crate::EngineError;

/// Applies every transformation, in configuration order, to the staged table it names.
pub fn apply_all(
    transformations: &[Transformation],
    tables: &mut [StagedTable],
    staging: &Path,
) -> Result<(), EngineError> {
    for tr in transformations {
        let n = tables.len();
        let table = match &tr.table {
            Some(name) => tables
                .iter_mut()
                .find(|t| t.name.eq_ignore_ascii_case(&name.value)),
            None if n == 1 => tables.first_mut(),
            None => None,
        };
        let Some(table) = table else {
            let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
            let what = tr.table.as_ref().map_or_else(
                || "no Table".to_string(),
                |t| format!("table '{}'", t.value),
            );
            return Err(EngineError::Transform(format!(
                "{}: transformation names {what}, which this export did not write (it wrote: {})",
                tr.at,
                names.join(", ")
            )));
        };
        apply(tr, table, staging)?;
    }
    Ok(())
}

/// What one row becomes.
enum Plan {
    Concat {
        inputs: Vec<usize>,
        out: Option<usize>,
        separator: String,
        remove_empty: bool,
        dedup: bool,
        sort: bool,
    },
    Date {
        input: usize,
        out: Option<usize>,
        format: String,
        has_time: bool,
        shift: TimeDelta,
        min_year: i32,
        max_year: i32,
    },
    Where {
        column: usize,
        op: WhereOperator,
        value: String,
        regex: Option<regex::Regex>,
    },
}

fn apply(tr: &Transformation, table: &mut StagedTable, staging: &Path) -> Result<(), EngineError> {
    let err = |m: String| EngineError::Transform(format!("{}: {m}", tr.at));
    let col = |name: &str| -> Result<usize, EngineError> {
        table.columns.iter().position(|c| c == name).ok_or_else(|| {
            err(format!(
                "table '{}' has no column '{name}' (columns: {})",
                table.name,
                table.columns.join(", ")
            ))
        })
    };
    let out_col = |name: Option<&str>| name.and_then(|n| table.columns.iter().position(|c| c == n));
    let column = tr.column.as_ref().map(|c| c.value.as_str());
    let plan = match tr.kind {
        TransformationType::ConcatColumns => {
            let Some(target) = column else {
                return Err(err("ConcatColumns needs Column, the column to write".into()));
            };
            if tr.input_columns.is_empty() {
                return Err(err(
                    "ConcatColumns needs InputColumn (and InputColumn2..5)".into()
                ));
            }
            let inputs = tr
                .input_columns
                .iter()
                .map(|c| col(&c.value))
                .collect::<Result<Vec<_>, _>>()?;
            Plan::Concat {
                inputs,
                out: out_col(Some(target)),
                separator: tr.concat_separator.clone().unwrap_or_default(),
                remove_empty: tr.remove_empty,
                dedup: tr.remove_duplicates,
                sort: tr.sort_values,
            }
        }
        TransformationType::TransformDate => {
            let Some(target) = column else {
                return Err(err("TransformDate needs Column, the column to write".into()));
            };
            let input = col(tr
                .input_columns
                .first()
                .map_or(target, |c| c.value.as_str()))?;
            let Some(pattern) = &tr.date_pattern else {
                return Err(err(
                    "TransformDate needs DatePattern, e.g. dd/MM/yyyy".into()
                ));
            };
            let (format, has_time) = dotnet_to_chrono(pattern).map_err(err)?;
            Plan::Date {
                input,
                out: out_col(Some(target)),
                format,
                has_time,
                // AddedDays may be fractional (-0.5); the model bounds it, so whole seconds fit.
                shift: TimeDelta::seconds((tr.added_days.unwrap_or(0.0) * 86_400.0).round() as i64),
                min_year: tr.min_year.unwrap_or(i32::MIN),
                max_year: tr.max_year.unwrap_or(i32::MAX),
            }
        }
        TransformationType::WhereValue => {
            let Some(name) = column.or(tr.input_columns.first().map(|c| c.value.as_str())) else {
                return Err(err("WhereValue needs Column, the column to test".into()));
            };
            let op = tr.where_operator.unwrap_or(WhereOperator::Equals);
            let value = tr.where_value.clone().unwrap_or_default();
            let regex = match op {
                WhereOperator::Regex => Some(
                    regex::Regex::new(&value)
                        .map_err(|e| err(format!("WhereValue is not a valid regex: {e}")))?,
                ),
                _ => None,
            };
            Plan::Where {
                column: col(name)?,
                op,
                value,
                regex,
            }
        }
    };
    let appended = match &plan {
        Plan::Concat { out: None, .. } | Plan::Date { out: None, .. } => column.map(str::to_string),
        _ => None,
    };
    let name = table.name.clone();
    let row_error = |line: u64, m: String| err(format!("table '{name}', line {line}: {m}"));
    rewrite(table, staging, appended, |line, record, out| {
        run(&plan, record, out).map_err(|m| row_error(line, m))
    })
    .map_err(|e| match e {
        RewriteError::Engine(e) => e,
        RewriteError::Io(path, e) => EngineError::io("rewrite", &path, e),
    })
}

/// Computes one output row; `Ok(false)` drops the row.
fn run(plan: &Plan, record: &csv::StringRecord, out: &mut Vec<String>) -> Result<bool, String> {
    out.clear();
    out.extend(record.iter().map(str::to_string));
    match plan {
        Plan::Concat {
            inputs,
            out: target,
            separator,
            remove_empty,
            dedup,
            sort,
        } => {
            let mut values: Vec<&str> = inputs
                .iter()
                .flat_map(|&i| record.get(i).unwrap_or("").split('\n'))
                .collect();
            if *remove_empty {
                values.retain(|v| !v.is_empty());
            }
            if *dedup {
                let mut seen = std::collections::HashSet::new();
                values.retain(|v| seen.insert(*v));
            }
            if *sort {
                values.sort_by_key(|v| v.to_lowercase());
            }
            set(out, *target, values.join(separator));
        }
        Plan::Date {
            input,
            out: target,
            format,
            has_time,
            shift,
            min_year,
            max_year,
        } => {
            let raw = record.get(*input).unwrap_or("").trim();
            let value = if raw.is_empty() {
                String::new()
            } else {
                let parsed = if *has_time {
                    NaiveDateTime::parse_from_str(raw, format)
                } else {
                    NaiveDate::parse_from_str(raw, format)
                        .map(|d| d.and_time(chrono::NaiveTime::MIN))
                }
                .map_err(|e| format!("'{raw}' does not match DatePattern ({e})"))?;
                let shifted = parsed
                    .checked_add_signed(*shift)
                    .ok_or_else(|| format!("'{raw}' shifted by AddedDays is out of range"))?;
                let year = chrono::Datelike::year(&shifted);
                if year < *min_year || year > *max_year {
                    String::new()
                } else {
                    shifted.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                }
            };
            set(out, *target, value);
        }
        Plan::Where {
            column,
            op,
            value,
            regex,
        } => {
            let cell = record.get(*column).unwrap_or("");
            let keep = match op {
                WhereOperator::Equals => cell == value,
                WhereOperator::NotEquals => cell != value,
                WhereOperator::Contains => cell.contains(value.as_str()),
                WhereOperator::NotContains => !cell.contains(value.as_str()),
                WhereOperator::StartsWith => cell.starts_with(value.as_str()),
                WhereOperator::EndsWith => cell.ends_with(value.as_str()),
                WhereOperator::Regex => regex.as_ref().is_some_and(|r| r.is_match(cell)),
            };
            return Ok(keep);
        }
    }
    Ok(true)
}

fn set(out: &mut Vec<String>, target: Option<usize>, value: String) {
    match target {
        Some(i) => out[i] = value,
        None => out.push(value),
    }
}

enum RewriteError {
    Engine(EngineError),
    Io(std::path::PathBuf, std::io::Error),
}

impl From<EngineError> for RewriteError {
    fn from(e: EngineError) -> Self {
        RewriteError::Engine(e)
    }
}

/// Streams the table through `f` into a new staged file, then replaces it.
fn rewrite(
    table: &mut StagedTable,
    staging: &Path,
    appended: Option<String>,
    mut f: impl FnMut(u64, &csv::StringRecord, &mut Vec<String>) -> Result<bool, EngineError>,
) -> Result<(), RewriteError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| RewriteError::Io(p, e)
    };
    let csv_io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: csv::Error| RewriteError::Io(p, std::io::Error::other(e.to_string()))
    };
    let mut reader = csv::ReaderBuilder::new()
        .from_path(&table.path)
        .map_err(csv_io(&table.path))?;
    let tmp = tempfile::NamedTempFile::new_in(staging).map_err(io(staging))?;
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::with_capacity(256 * 1024, tmp));
    let mut columns = table.columns.clone();
    if let Some(c) = appended {
        columns.push(c);
    }
    writer.write_record(&columns).map_err(csv_io(&table.path))?;
    let mut record = csv::StringRecord::new();
    let mut row = Vec::new();
    let mut rows = 0;
    let mut line = 1;
    while reader
        .read_record(&mut record)
        .map_err(csv_io(&table.path))?
    {
        line += 1;
        if f(line, &record, &mut row)? {
            writer.write_record(&row).map_err(csv_io(&table.path))?;
            rows += 1;
        }
    }
    let buf = writer
        .into_inner()
        .map_err(|e| RewriteError::Io(table.path.clone(), std::io::Error::other(e.to_string())))?;
    let tmp = buf
        .into_inner()
        .map_err(|e| RewriteError::Io(table.path.clone(), e.into_error()))?;
    tmp.as_file().sync_all().map_err(io(&table.path))?;
    let bytes = tmp.as_file().metadata().map_err(io(&table.path))?.len();
    tmp.persist(&table.path)
        .map_err(|e| RewriteError::Io(table.path.clone(), e.error))?;
    table.columns = columns;
    table.rows = rows;
    table.bytes = bytes;
    Ok(())
}

/// A .NET date pattern (`dd/MM/yyyy HH:mm:ss`) as a chrono format, and whether it has a time.
pub fn dotnet_to_chrono(pattern: &str) -> Result<(String, bool), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut has_time = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let token = match (c, n) {
            ('y', 4) => "%Y",
            ('y', 2) => "%y",
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', 4) => "%B",
            ('d', 1 | 2) => "%d",
            ('H', 1 | 2) => "%H",
            ('h', 1 | 2) => "%I",
            ('m', 1 | 2) => "%M",
            ('s', 1 | 2) => "%S",
            ('f', 1..=9) => "%f",
            ('t', 1 | 2) => "%p",
            ('y' | 'M' | 'd' | 'H' | 'h' | 'm' | 's' | 'f' | 't', _) => {
                return Err(format!(
                    "DatePattern '{pattern}': '{}' is not a supported token",
                    c.to_string().repeat(n)
                ));
            }
            ('%', _) => {
                for _ in 0..n {
                    out.push_str("%%");
                }
                i += n;
                continue;
            }
            _ => {
                out.extend(std::iter::repeat_n(c, n));
                i += n;
                continue;
            }
        };
        if matches!(c, 'H' | 'h' | 'm' | 's' | 'f' | 't') {
            has_time = true;
        }
        if c == 'f' {
            // chrono's %f reads nanoseconds after a '.'; .NET writes the dot itself.
            out.push_str("%f");
        } else {
            out.push_str(token);
        }
        i += n;
    }
    Ok((out, has_time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlink_model::diag::{Loc, Sp};

    fn loc() -> Loc {
        Loc::file_only("t.xml")
    }

    fn text(s: &str) -> Sp<String> {
        Sp::new(s.to_string(), loc())
    }

    fn tr(kind: TransformationType) -> Transformation {
        Transformation {
            at: loc(),
            kind,
            table: None,
            column: None,
            input_columns: vec![],
            concat_separator: None,
            remove_empty: false,
            remove_duplicates: false,
            sort_values: false,
            added_days: None,
            min_year: None,
            max_year: None,
            date_pattern: None,
            where_operator: None,
            where_value: None,
        }
    }

    fn staged(dir: &Path, text: &str) -> StagedTable {
        let path = dir.join("HR.csv");
        std::fs::write(&path, text).expect("write");
        let columns = text
            .lines()
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect();
        StagedTable {
            name: "HR".into(),
            path,
            columns,
            rows: 0,
            bytes: 0,
        }
    }

    #[test]
    fn concat_date_and_where() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tables = vec![staged(
            dir.path(),
            "id,first,last,start,kind\n1,Ada,Lovelace,01/03/2019,emp\n2,,Turing,15/01/9999,ext\n3,Grace,Hopper,,emp\n",
        )];
        let mut concat = tr(TransformationType::ConcatColumns);
        concat.column = Some(text("full"));
        concat.input_columns = vec![text("first"), text("last")];
        concat.concat_separator = Some(" ".into());
        concat.remove_empty = true;
        let mut date = tr(TransformationType::TransformDate);
        date.column = Some(text("start"));
        date.date_pattern = Some("dd/MM/yyyy".into());
        date.added_days = Some(1.0);
        date.max_year = Some(2100);
        let mut filter = tr(TransformationType::WhereValue);
        filter.column = Some(text("kind"));
        filter.where_value = Some("emp".into());
        apply_all(&[concat, date, filter], &mut tables, dir.path()).expect("applies");
        let out = std::fs::read_to_string(&tables[0].path).expect("read");
        assert_eq!(
            out,
            "id,first,last,start,kind,full\n1,Ada,Lovelace,2019-03-02T00:00:00Z,emp,Ada Lovelace\n3,Grace,Hopper,,emp,Grace Hopper\n"
        );
        assert_eq!(tables[0].rows, 2);
    }

    #[test]
    fn regression_transform_date_fractional_added_days_shift_by_hours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tables = vec![staged(dir.path(), "id,start\n1,01/03/2019\n")];
        let mut date = tr(TransformationType::TransformDate);
        date.column = Some(text("start"));
        date.date_pattern = Some("dd/MM/yyyy".into());
        date.added_days = Some(-0.5);
        apply_all(&[date], &mut tables, dir.path()).expect("applies");
        let out = std::fs::read_to_string(&tables[0].path).expect("read");
        assert_eq!(out, "id,start\n1,2019-02-28T12:00:00Z\n");
    }

    #[test]
    fn bad_dates_and_columns_are_located() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tables = vec![staged(dir.path(), "id,start\n1,2019-03-01\n")];
        let mut date = tr(TransformationType::TransformDate);
        date.column = Some(text("start"));
        date.date_pattern = Some("dd/MM/yyyy".into());
        let e = apply_all(&[date], &mut tables, dir.path())
            .expect_err("bad date")
            .to_string();
        assert!(e.contains("line 2") && e.contains("'2019-03-01'"), "{e}");
        let mut concat = tr(TransformationType::ConcatColumns);
        concat.column = Some(text("x"));
        concat.input_columns = vec![text("nope")];
        let e = apply_all(&[concat], &mut tables, dir.path())
            .expect_err("bad column")
            .to_string();
        assert!(e.contains("no column 'nope'"), "{e}");
    }

    #[test]
    fn dotnet_patterns() {
        assert_eq!(
            dotnet_to_chrono("dd/MM/yyyy"),
            Ok(("%d/%m/%Y".into(), false))
        );
        assert_eq!(
            dotnet_to_chrono("yyyy-MM-dd HH:mm:ss"),
            Ok(("%Y-%m-%d %H:%M:%S".into(), true))
        );
        assert!(dotnet_to_chrono("yyyyy").is_err());
    }
}
