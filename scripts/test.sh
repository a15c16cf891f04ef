#!/usr/bin/env bash
# Runs every check and test of coindcx-hub: formatting, clippy, the Rust test suite
# (unit + integration, against in-process fakes and the built-in simulator) and the
# headless-Chromium tests of the monitor page. Installs what is missing (chromium,
# node modules) when it can.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "node socket.io 2 and 4 servers for the upstream tests"
# tests/fake-coindcx is a real socket.io server (the exchange runs socket.io; the in-process
# socketioxide fake behaves differently), run under node by the upstream life-cycle tests.
(cd tests/fake-coindcx && npm ci --no-audit --no-fund --silent)

step "systemd-analyze for the service unit test"
# tests/deploy.rs runs `systemd-analyze verify deploy/coindcx-hub.service` and requires silence;
# Debian ships the tool in its systemd package.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  else
    echo "systemd-analyze is not installed (sudo apt-get install -y systemd): tests/deploy.rs will skip the unit check" >&2
  fi
fi

step "cargo test (unit + integration)"
# Benches (criterion, harness = false) are built by clippy above and run with `cargo bench`.
cargo test --lib --bins --tests --examples -- --test-threads=2

if [ -f tests/browser/package.json ]; then
  step "browser tests (headless Chromium)"
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "chromium is not installed: sudo apt-get install -y chromium" >&2
      exit 1
    fi
  fi
  cargo build --release --quiet
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
  # HUB_BIN: real-hub.test.mjs spawns this binary (built-in simulator, free ports) and runs
  # the page against it; page.test.mjs keeps the mock-only cases. One file at a time.
  HUB_BIN="$PWD/target/release/coindcx-hub" node --test --test-concurrency=1 tests/browser/
fi
