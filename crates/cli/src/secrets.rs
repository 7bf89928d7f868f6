//! `idlink keygen` and `idlink protect`: the agent's key pair, and encrypting secured settings
//! to it. Values are read from arguments or files and never printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use idlink_model::settings::ENCRYPTED_SETTINGS_FILE;
use idlink_secrets::{
    PathSegment, encrypt_value, parse_path, parse_recipient, path_to_string,
    protect_into_encrypted, write_identity,
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
    /// Values to encrypt: one ciphertext is printed per value, in order. Without --for they
    /// are bound to no setting (an agent started with --bound-secrets-only refuses them).
    #[arg(long, value_name = "VALUE", num_args = 1..)]
    values: Vec<String>,
    /// The secured setting the --values are for, as `check` names it (e.g.
    /// `Connections.Directory.Servers[0].Password`): each is bound to it and to where its
    /// connection sends it, as the configuration (--config, --settings) says now.
    #[arg(long = "for", value_name = "SETTING", requires = "values")]
    for_setting: Option<String>,
    /// An appsettings.agent.json whose secured settings to encrypt into
    /// appsettings.encrypted.agent.json beside it (or --out). Only secured values are written
    /// there; an existing encrypted file is updated in place: its values, comments and order
    /// are kept, each secured value is added or replaced, and no encrypted value is ever
    /// dropped. Each value is bound to its setting and to where its connection sends it (the
    /// server, token endpoint or script, as the settings say now): the agent refuses it
    /// elsewhere. The configuration is read from --config, or else from the file's folder.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// The encrypted settings file to write or update.
    #[arg(long, value_name = "FILE", requires = "file")]
    out: Option<PathBuf>,
    /// Has no effect, kept so older scripts still run: protect always merges into an existing
    /// encrypted file and never drops an encrypted value, so nothing needs forcing.
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
    // --force has no effect any more (see its help).
    let _ = args.force;
    let Some(file) = &args.file else {
        let binding = match &args.for_setting {
            Some(setting) => Some(binding_for(g, setting)?),
            None => None,
        };
        for v in &args.values {
            let sealed = match &binding {
                Some(b) => idlink_secrets::encrypt_bound(&recipient, b, v)?,
                None => encrypt_value(&recipient, v)?,
            };
            println!("{sealed}");
        }
        if let Some(b) = &binding {
            eprintln!("bound to {b}");
        }
        return Ok(ExitCode::SUCCESS);
    };
    // Which settings are secured depends on each connection's package: read the configuration,
    // from --config, or else from the settings file's own folder.
    let config = config_for(g, file);
    let checked = crate::check::load_with(&config, file)?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read '{}'", file.display()))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| sibling(file, ENCRYPTED_SETTINGS_FILE));
    let existing = match std::fs::read_to_string(&out) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", out.display())),
    };
    let registry = idlink_packages::Registry::new();
    let (merged, report) = protect_into_encrypted(&text, existing.as_deref(), &recipient, |path| {
        idlink_engine::secured::binding_of_path(&checked, &registry, path)
    })
    .with_context(|| {
        format!(
            "cannot protect the secured settings of '{}' into '{}'",
            file.display(),
            out.display()
        )
    })?;
    if existing.as_deref() != Some(merged.as_str()) {
        idlink_packages::output::write_atomic(&out, merged.as_bytes())
            .with_context(|| format!("cannot write '{}'", out.display()))?;
    }
    for p in &report.encrypted {
        let verb = if report.replaced.contains(p) {
            "replaced"
        } else {
            "added"
        };
        eprintln!("encrypted {} ({verb})", path_to_string(p));
    }
    for p in &report.not_strings {
        eprintln!(
            "warning: {} is secured but not a string; left as it is",
            path_to_string(p)
        );
    }
    for p in &report.not_encrypted {
        eprintln!(
            "warning: {} in '{}' is not encrypted, yet overrides '{}': remove it from '{}' \
             unless it is meant to",
            path_to_string(p),
            out.display(),
            file.display(),
            out.display()
        );
    }
    let action = if existing.is_none() {
        "wrote"
    } else if existing.as_deref() == Some(merged.as_str()) {
        "left unchanged"
    } else {
        "updated"
    };
    println!(
        "{action} {} ({} encrypted, {} kept as they were, {} already encrypted in {}){}",
        out.display(),
        report.encrypted.len(),
        report.kept.len(),
        report.already_encrypted.len(),
        file.display(),
        if report.encrypted.is_empty() {
            String::new()
        } else {
            format!("; now remove the plain values from {}", file.display())
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The configuration folder for `protect --file`: `--config` when the user gave one (it is not
/// the default `./conf`), else the settings file's folder when it holds configuration files
/// (as in `idlink check`'s plaintext-secret hint, which names only the settings file).
/// The binding of the secured setting named `setting` (`Connections.<id>.<path>`) in the
/// configuration of --config and --settings.
fn binding_for(g: &Global, setting: &str) -> anyhow::Result<idlink_secrets::Binding> {
    let path = parse_path(setting);
    if path_to_string(&path) != setting {
        anyhow::bail!(
            "--for {setting}: not a setting's path: keys separated by dots, indexes in brackets (e.g. Connections.Directory.Servers[0].Password)"
        );
    }
    let checked = crate::check::load(g)?;
    let registry = idlink_packages::Registry::new();
    let declared = matches!(&path[..], [PathSegment::Key(top), PathSegment::Key(id), _, ..]
        if top.eq_ignore_ascii_case("Connections") && checked.config.connection(id).is_some());
    if !declared {
        anyhow::bail!(
            "--for {setting}: name a setting of a declared connection, as Connections.<connection>.<setting> (e.g. Connections.Directory.Servers[0].Password)"
        );
    }
    idlink_engine::secured::binding_of_path(&checked, &registry, &path).ok_or_else(|| {
        anyhow::anyhow!(
            "--for {setting}: not a secured setting of its connection's package: only secured settings are encrypted"
        )
    })
}

fn config_for(g: &Global, settings: &Path) -> PathBuf {
    let folder = settings
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // The default of the global --config (main.rs).
    let default = g.config == Path::new("./conf");
    let holds_xml = || {
        std::fs::read_dir(&folder).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                e.path()
                    .extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("xml"))
            })
        })
    };
    if default && folder != g.config && holds_xml() {
        tracing::info!(config = %folder.display(), "configuration read from the settings file's folder");
        folder
    } else {
        g.config.clone()
    }
}

fn sibling(file: &Path, name: &str) -> PathBuf {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from(name), |p| p.join(name))
}
