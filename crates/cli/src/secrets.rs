//! `idlink keygen` and `idlink protect`: the agent's key pair, and encrypting secured settings
//! to it. Values are read from arguments or files and never printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use idlink_model::settings::ENCRYPTED_SETTINGS_FILE;
use idlink_secrets::{
    encrypt_value, parse_recipient, path_to_string, protect_jsonc_text, write_identity,
};

use crate::Global;

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the agent's private identity (mode 0600).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace an existing identity file (values encrypted to the old key become unreadable).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["values", "file"])))]
pub struct ProtectArgs {
    /// The agent's public key (age1..., printed by `idlink keygen`).
    #[arg(long, value_name = "PUBKEY")]
    recipient: String,
    /// Values to encrypt: one ciphertext is printed per value, in order.
    #[arg(long, value_name = "VALUE", num_args = 1..)]
    values: Vec<String>,
    /// An appsettings.agent.json whose secured settings to encrypt; writes
    /// appsettings.encrypted.agent.json beside it (or --out) with the same shape.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Where to write the encrypted settings.
    #[arg(long, value_name = "FILE", requires = "file")]
    out: Option<PathBuf>,
    /// Replace an existing encrypted settings file (values only in it are lost).
    #[arg(long, requires = "file")]
    force: bool,
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let (identity, _) = idlink_secrets::generate_identity();
    let recipient = write_identity(&args.out, &identity, args.force)?;
    eprintln!(
        "wrote the agent's private key to {} (mode 0600); keep it on the agent only",
        args.out.display()
    );
    println!("{recipient}");
    Ok(ExitCode::SUCCESS)
}

pub fn protect(g: &Global, args: &ProtectArgs) -> anyhow::Result<ExitCode> {
    let recipient = parse_recipient(&args.recipient)?;
    let Some(file) = &args.file else {
        for v in &args.values {
            println!("{}", encrypt_value(&recipient, v)?);
        }
        return Ok(ExitCode::SUCCESS);
    };
    // Which settings are secured depends on each connection's package: read the configuration.
    let checked = crate::check::load_with_settings(g, file)?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read '{}'", file.display()))?;
    let (protected, report) = protect_jsonc_text(&text, &recipient, |path| {
        idlink_engine::secured::is_secured_path(&checked, path)
    })?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| sibling(file, ENCRYPTED_SETTINGS_FILE));
    if out.exists() && !args.force {
        anyhow::bail!(
            "'{}' exists: it may hold values that are no longer in '{}'; pass --force to replace it",
            out.display(),
            file.display()
        );
    }
    idlink_packages::output::write_atomic(&out, protected.as_bytes())
        .with_context(|| format!("cannot write '{}'", out.display()))?;
    for p in &report.encrypted {
        eprintln!("encrypted {}", path_to_string(p));
    }
    for p in &report.not_strings {
        eprintln!(
            "warning: {} is secured but not a string; left as it is",
            path_to_string(p)
        );
    }
    println!(
        "wrote {} ({} encrypted, {} already encrypted); remove the plain values from {}",
        out.display(),
        report.encrypted.len(),
        report.already_encrypted.len(),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn sibling(file: &Path, name: &str) -> PathBuf {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from(name), |p| p.join(name))
}
