#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of every crate.
# It installs what the tests need (today: the Rust toolchain's rustfmt and clippy; the
# real servers of later packages are added here as they arrive) and needs no network
# beyond the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then
  echo "cargo is missing: install Rust with rustup (https://rustup.rs) and run again" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
