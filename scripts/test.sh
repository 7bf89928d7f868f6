#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of every crate.
# It installs what the tests need: rustfmt and clippy, and the real servers the package tests
# start privately on 127.0.0.1 (PostgreSQL, MariaDB, OpenLDAP's slapd) and Chromium with its
# WebDriver (the web UI's tests) from Debian's packages
# when they are missing, and PyPI's scim2-server in a virtual environment
# ($IDLINK_SCIM2_VENV, default /var/cache/idlink/scim2-venv) and robotframework in another
# ($IDLINK_ROBOT_VENV, default /var/cache/idlink/robot-venv). It needs no network beyond the
# package registries.
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
need python3 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
need curl || missing+=(curl)
# The web UI's browser tests (crates/server/tests/it/browser.rs) drive headless Chromium.
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# The SCIM service the SCIM tests run against (the tests install it too when it is missing,
# but one install here keeps parallel test binaries from waiting on each other).
scim_venv=${IDLINK_SCIM2_VENV:-/var/cache/idlink/scim2-venv}
if [ ! -x "$scim_venv/bin/scim2-server" ]; then
  echo "== installing scim2-server into $scim_venv"
  mkdir -p "$(dirname "$scim_venv")"
  python3 -m venv "$scim_venv"
  "$scim_venv/bin/pip" install --quiet 'scim2-server[cursor]'
fi
export IDLINK_SCIM2_VENV="$scim_venv"

# Robot Framework, for the Robot Framework script package's test (installed the same way).
robot_venv=${IDLINK_ROBOT_VENV:-/var/cache/idlink/robot-venv}
if [ ! -x "$robot_venv/bin/robot" ]; then
  echo "== installing robotframework into $robot_venv"
  mkdir -p "$(dirname "$robot_venv")"
  python3 -m venv "$robot_venv"
  "$robot_venv/bin/pip" install --quiet robotframework
fi
export IDLINK_ROBOT_VENV="$robot_venv"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
