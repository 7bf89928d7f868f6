//! `examples/broken/<rule-id>`: one small configuration per error rule, valid but for one
//! deliberate mistake. `idlink check` must report that rule, and only that rule among errors, at
//! the place the case's `EXPECT` file names (`<file>:<line>:<column>`, relative to the case).

use std::collections::BTreeSet;
use std::path::Path;

use idlink_model::{Rule, Severity};
use serde_json::Value;

use crate::support::{idlink, repo_root};

/// Where a case's diagnostic must be reported.
struct Expect {
    /// Relative to the case folder, e.g. `hr.xml`.
    file: String,
    line: u64,
    column: u64,
}

impl Expect {
    fn read(case_dir: &Path) -> Result<Self, String> {
        let path = case_dir.join("EXPECT");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let lines: Vec<&str> = text.lines().collect();
        let [line] = lines.as_slice() else {
            return Err(format!(
                "EXPECT must hold exactly one line <file>:<line>:<column>, not {} lines",
                lines.len()
            ));
        };
        let bad = || format!("EXPECT line {line:?} is not <file>:<line>:<column>");
        let mut parts = line.trim().rsplitn(3, ':');
        let column = parts.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let line_no = parts.next().and_then(|l| l.parse().ok()).ok_or_else(bad)?;
        let file = parts.next().filter(|f| !f.is_empty()).ok_or_else(bad)?;
        Ok(Expect {
            file: file.to_string(),
            line: line_no,
            column,
        })
    }
}

/// The ids of every rule whose diagnostics are errors.
fn error_rule_ids() -> BTreeSet<String> {
    Rule::ALL
        .iter()
        .filter(|r| r.severity() == Severity::Error)
        .map(|r| r.id().to_string())
        .collect()
}

/// The folders under `examples/broken`.
fn case_folders(broken: &Path) -> BTreeSet<String> {
    std::fs::read_dir(broken)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", broken.display()))
        .map(|entry| entry.expect("folder entry"))
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Everything wrong with one case; empty when it behaves.
fn check_case(id: &str) -> Vec<String> {
    let case_dir = repo_root().join("examples/broken").join(id);
    let expect = match Expect::read(&case_dir) {
        Ok(e) => e,
        Err(why) => return vec![why],
    };
    let config = format!("examples/broken/{id}");
    let file = format!("{config}/{}", expect.file);
    let mut problems = Vec::new();

    // JSON: the expected diagnostic is there, and no error of another rule.
    let out = idlink()
        .args(["check", "--config", &config, "--format", "json"])
        .output()
        .expect("run idlink check --format json");
    if out.status.code() != Some(1) {
        problems.push(format!(
            "--format json exited with {:?}, not 1 (stderr: {})",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    match serde_json::from_slice::<Value>(&out.stdout) {
        Err(e) => problems.push(format!(
            "--format json printed no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stdout).trim()
        )),
        Ok(report) => {
            let diagnostics = report["diagnostics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let summary = |d: &Value| {
                format!(
                    "{}:{}:{}: {}[{}]: {}",
                    d["file"].as_str().unwrap_or("?"),
                    d["line"],
                    d["column"],
                    d["severity"].as_str().unwrap_or("?"),
                    d["rule"].as_str().unwrap_or("?"),
                    d["message"].as_str().unwrap_or("?"),
                )
            };
            let found = diagnostics.iter().any(|d| {
                d["rule"] == id
                    && d["file"] == file.as_str()
                    && d["line"] == expect.line
                    && d["column"] == expect.column
            });
            if !found {
                let of_rule: Vec<String> = diagnostics
                    .iter()
                    .filter(|d| d["rule"] == id)
                    .map(summary)
                    .collect();
                problems.push(format!(
                    "no {id} diagnostic at {file}:{}:{} (diagnostics of this rule: [{}])",
                    expect.line,
                    expect.column,
                    of_rule.join("; ")
                ));
            }
            for d in diagnostics
                .iter()
                .filter(|d| d["severity"] == "error" && d["rule"] != id)
            {
                problems.push(format!("unexpected error of another rule: {}", summary(d)));
            }
        }
    }

    // Text: `file:line:col: error[id]: message`, then the indented hint.
    let out = idlink()
        .args(["check", "--config", &config])
        .output()
        .expect("run idlink check");
    if out.status.code() != Some(1) {
        problems.push(format!(
            "text format exited with {:?}, not 1",
            out.status.code()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let head = format!("{file}:{}:{}: error[{id}]:", expect.line, expect.column);
    match lines.iter().position(|l| l.starts_with(&head)) {
        None => problems.push(format!(
            "text format has no line starting with {head:?}:\n{}",
            stdout.trim_end()
        )),
        Some(i) => {
            // The hint comes after the message, before the next diagnostic or the verdict.
            let hint = lines[i + 1..]
                .iter()
                .take_while(|l| {
                    !l.starts_with("examples/")
                        && !l.starts_with("valid:")
                        && !l.starts_with("invalid:")
                })
                .any(|l| l.starts_with("    hint: "));
            if !hint {
                problems.push(format!(
                    "text format: no \"    hint: \" line follows {head:?}:\n{}",
                    stdout.trim_end()
                ));
            }
        }
    }
    problems
}

#[test]
fn every_error_rule_has_a_broken_example_reported_where_expected() {
    let broken = repo_root().join("examples/broken");
    let folders = case_folders(&broken);
    let rules = error_rule_ids();
    let mut failures = Vec::new();
    for id in rules.difference(&folders) {
        failures.push(format!(
            "{id}: error rule without an examples/broken/{id} case"
        ));
    }
    for id in folders.difference(&rules) {
        failures.push(format!(
            "{id}: examples/broken/{id} does not name an error rule"
        ));
    }
    for id in folders.intersection(&rules) {
        for why in check_case(id) {
            failures.push(format!("{id}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) with examples/broken:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
