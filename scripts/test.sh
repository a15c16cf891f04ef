#!/usr/bin/env bash
# Runs every check and test of coindcx-hub: formatting, clippy, the Rust test suite
# (unit + integration, against in-process fakes and the built-in simulator) and the
# headless-Chromium tests of the monitor page. Installs what is missing (chromium,
# redis-server, node modules) when it can, and starts a Redis where none answers.
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

step "redis on 127.0.0.1:6379 for the cluster tests"
# Cluster mode (HUB_REDIS_URL) is tested against a real Redis: src/cluster unit tests and
# tests/cluster.rs use the local one (each test under its own key prefix, deleted after); the
# Redis-restart test starts a redis-server of its own on a free port.
redis_ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]
  else
    # No client yet: ask with bash's /dev/tcp (RESP inline command).
    exec 3<>/dev/tcp/127.0.0.1/6379 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    local answer=""
    read -r -t 2 answer <&3 || true
    exec 3>&-
    [ "${answer%$'\r'}" = "+PONG" ]
  fi
}
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is not installed: sudo apt-get install -y redis-server" >&2
    exit 1
  fi
fi
if ! redis_ping; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 1 100); do redis_ping && break; sleep 0.1; done
  redis_ping || { echo "redis-server did not answer on 127.0.0.1:6379" >&2; exit 1; }
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
