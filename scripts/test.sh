#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of every crate.
# It installs what the tests need: rustfmt and clippy, and the real servers the package tests
# start privately on 127.0.0.1 (PostgreSQL, MariaDB, OpenLDAP's slapd) from Debian's packages
# when they are missing. It needs no network beyond the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then
  echo "cargo is missing: install Rust with rustup (https://rustup.rs) and run again" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# Debian packages that provide the servers and tools the tests run.
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
need mariadbd || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
need mariadb || missing+=(mariadb-client)
need iconv || missing+=(libc-bin)
[ -x /usr/sbin/slapd ] || missing+=(slapd)
need ldapsearch || missing+=(ldap-utils)
need openssl || missing+=(openssl)
need curl || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
