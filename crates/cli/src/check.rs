//! `idlink check` and `idlink packages`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use idlink_model::package::{Availability, PackageCatalog};
use idlink_model::{Checked, Diagnostic, SettingsSource};
use idlink_packages::Registry;
use serde::Serialize;

use crate::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Loads and checks; exit 0 when valid, 1 when not. I/O errors that leave nothing to check
/// come back as `Err` (exit 2).
pub fn run(rt: &tokio::runtime::Runtime, g: &Global, args: &Args) -> anyhow::Result<ExitCode> {
    let mut checked = load(g)?;
    // What each package finds wrong in its settings, without touching any system.
    for d in idlink_engine::check::check_packages(&checked, &Registry::new(), &g.config) {
        checked.diagnostics.push(d);
    }
    // Mapped tables and columns against the stored schema snapshots, when there is a store
    // (none is created for this).
    if let Some(store) = crate::store::open_existing(rt, g)? {
        let states = rt.block_on(store.schema_states())?;
        idlink_engine::check::check_snapshots(&mut checked, &states);
        rt.block_on(store.close());
    }
    checked.diagnostics.sort();
    let out = std::io::stdout().lock();
    match args.format {
        Format::Text => print_text(out, &checked, g.quiet, g.verbose > 0),
        Format::Json => print_json(out, &checked),
    }
    .context("cannot write the report")?;
    Ok(if checked.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The configuration and agent settings the global options point at, checked.
pub fn load(g: &Global) -> anyhow::Result<Checked> {
    let default_settings = g.config.join("appsettings.agent.json");
    load_from(
        g,
        SettingsSource {
            path: g.settings.as_deref().unwrap_or(&default_settings),
            explicit: g.settings.is_some(),
        },
    )
}

/// A configuration folder with a given settings file.
pub fn load_with(config: &std::path::Path, settings: &std::path::Path) -> anyhow::Result<Checked> {
    load_dir(
        config,
        SettingsSource {
            path: settings,
            explicit: true,
        },
    )
}

fn load_from(g: &Global, settings: SettingsSource<'_>) -> anyhow::Result<Checked> {
    load_dir(&g.config, settings)
}

fn load_dir(config: &std::path::Path, settings: SettingsSource<'_>) -> anyhow::Result<Checked> {
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let checked = idlink_model::load_and_check(config, settings, env, &Registry::new())?;
    tracing::info!(
        files = checked.config.files.len(),
        diagnostics = checked.diagnostics.len(),
        "configuration checked"
    );
    Ok(checked)
}

fn print_text(
    mut out: impl Write,
    checked: &Checked,
    quiet: bool,
    verbose: bool,
) -> std::io::Result<()> {
    // Info lines (documented items accepted without effect) only with -v.
    for d in checked
        .diagnostics
        .iter()
        .filter(|d| !quiet || d.is_error())
        .filter(|d| verbose || d.severity != idlink_model::Severity::Info)
    {
        writeln!(out, "{d}")?;
    }
    let verdict = if checked.is_valid() {
        "valid"
    } else {
        "invalid"
    };
    writeln!(out, "{verdict}: {}", checked.summary())
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    summary: idlink_model::Summary,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    rule: &'static str,
    severity: idlink_model::Severity,
    file: &'a str,
    line: u32,
    column: u32,
    message: &'a str,
    hint: Option<&'a str>,
}

impl<'a> From<&'a Diagnostic> for JsonDiagnostic<'a> {
    fn from(d: &'a Diagnostic) -> Self {
        JsonDiagnostic {
            rule: d.rule.id(),
            severity: d.severity,
            file: &d.at.file,
            line: d.at.line,
            column: d.at.column,
            message: &d.message,
            hint: d.hint.as_deref(),
        }
    }
}

fn print_json(mut out: impl Write, checked: &Checked) -> std::io::Result<()> {
    let report = JsonReport {
        valid: checked.is_valid(),
        summary: checked.summary(),
        diagnostics: checked
            .diagnostics
            .iter()
            .map(JsonDiagnostic::from)
            .collect(),
    };
    serde_json::to_writer_pretty(&mut out, &report)?;
    writeln!(out)
}

/// `idlink packages`: one line per package.
pub fn packages() -> anyhow::Result<ExitCode> {
    let registry = Registry::new();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<46} {:<32} {:<7} {:<8} {:<12} {:<7} status",
        "identifier", "display name", "export", "fulfill", "incremental", "schema"
    )?;
    for p in registry.all() {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let c = p.capabilities;
        let status = match p.availability {
            Availability::Supported => "supported",
            Availability::DocumentedOnly => "not available in this build",
        };
        writeln!(
            out,
            "{:<46} {:<32} {:<7} {:<8} {:<12} {:<7} {status}",
            p.id,
            p.display_name,
            yn(c.export),
            yn(c.fulfill),
            yn(c.incremental),
            yn(c.schema)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
