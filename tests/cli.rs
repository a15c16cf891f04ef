//! The operator's surface of the binary: `--help` (every setting, its variable and default,
//! the same text as the README), `--version` (with the commit), exit status 2 naming a bad flag
//! or variable, precedence flag > variable > `.env` > default, and `check-config` against the
//! simulator, a fake exchange with a wrong secret and an address that never answers.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{clean_env, FakeCoinDcx, API_KEY, API_SECRET, HUB_BIN};

/// Every setting: variable, flag, default as `--help` shows it (`None`: no default value, the
/// help says what empty means).
const SETTINGS: &[(&str, &str, Option<&str>)] = &[
    ("HUB_BIND", "--bind", Some("127.0.0.1:8000")),
    ("COINDCX_API_KEY", "--api-key", None),
    ("COINDCX_API_SECRET", "--api-secret", None),
    (
        "COINDCX_WS_URL",
        "--ws-url",
        Some("wss://stream.coindcx.com"),
    ),
    (
        "COINDCX_API_URL",
        "--api-url",
        Some("https://api.coindcx.com"),
    ),
    ("COINDCX_EIO", "--eio", Some("auto")),
    ("HUB_PNL", "--pnl", Some("1")),
    ("HUB_UPSTREAM_LINGER_MS", "--upstream-linger-ms", Some("0")),
    ("HUB_AUTH_TOKEN", "--auth-token", None),
    ("HUB_JWT_SECRET", "--jwt-secret", None),
    ("HUB_ALLOW_ANONYMOUS", "--allow-anonymous", Some("0")),
    ("HUB_ALLOWED_ORIGINS", "--allowed-origins", None),
    ("HUB_ALLOWED_HOSTS", "--allowed-hosts", None),
    ("HUB_MAX_CLIENTS", "--max-clients", Some("10000")),
    ("HUB_ACCOUNTS_FILE", "--accounts-file", None),
    (
        "HUB_MAX_CLIENTS_PER_USER",
        "--max-clients-per-user",
        Some("0"),
    ),
    ("HUB_MAX_CLIENTS_PER_IP", "--max-clients-per-ip", Some("0")),
    ("HUB_CLIENT_QUEUE", "--client-queue", Some("1024")),
    ("HUB_HISTORY", "--history", Some("10000")),
    ("HUB_WORKERS", "--workers", Some("1")),
    ("HUB_HISTORY_BYTES", "--history-bytes", Some("67108864")),
    (
        "HUB_UPSTREAM_QUEUE_BYTES",
        "--upstream-queue-bytes",
        Some("67108864"),
    ),
    ("HUB_SIM_BIND", "--sim-bind", Some("127.0.0.1:8010")),
    ("HUB_SIM_RATE", "--sim-rate", Some("2")),
    ("HUB_SIM_SEED", "--sim-seed", Some("42")),
    ("HUB_REDIS_URL", "--redis-url", None),
    ("HUB_REDIS_PREFIX", "--redis-prefix", Some("coindcx-hub")),
    ("HUB_INSTANCE_ID", "--instance-id", None),
    ("RUST_LOG", "--log", Some("info")),
];

/// A fresh directory (no `.env`) for one run.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coindcx-hub-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The hub binary with a newcomer's environment, run from `dir`.
fn hub(dir: &Path) -> Command {
    let mut cmd = Command::new(HUB_BIN);
    clean_env(&mut cmd, dir).env_remove("RUST_LOG");
    cmd
}

/// Runs `cmd` to the end, killing it after `limit` (a binary that ignored its arguments would
/// start serving instead of answering).
fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hub binary runs");
    // Drained by threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Bound for commands that answer at once (help, version, a bad value).
const QUICK: Duration = Duration::from_secs(30);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn help_text() -> String {
    let out = output_within(hub(&scratch("help")).arg("--help"), QUICK);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn help_lists_every_setting_with_its_variable_and_default() {
    let help = help_text();
    assert_eq!(
        help.matches("[env: ").count(),
        SETTINGS.len(),
        "a setting is missing from this test's table or from --help:\n{help}"
    );
    for (var, flag, default) in SETTINGS {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{flag} ")))
            .unwrap_or_else(|| panic!("no {flag} in --help:\n{help}"));
        assert!(line.contains(&format!("[env: {var}]")), "{line}");
        match default {
            Some(d) => assert!(line.contains(&format!("[default: {d}]")), "{line}"),
            None => assert!(
                line.contains("empty") || line.contains("Empty"),
                "{flag} has no default and does not say what empty means: {line}"
            ),
        }
    }
    assert!(help.contains("Precedence: flag, then environment variable, then .env"));
    assert!(help.contains("check-config"));
}

/// The README shows `--help` verbatim between two markers, so the two cannot drift.
#[test]
fn readme_shows_the_current_help() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start =
        "<!-- help:start (tests/cli.rs checks this block) -->\n```text\n$ coindcx-hub --help\n";
    let end = "```\n<!-- help:end -->";
    let from = readme
        .find(start)
        .expect("README has the help:start marker")
        + start.len();
    let to = from
        + readme[from..]
            .find(end)
            .expect("README has the help:end marker");
    assert_eq!(
        &readme[from..to],
        help_text(),
        "README.md's --help block is stale: paste the output of `coindcx-hub --help`"
    );
}

/// `.env.example` names every variable with its default.
#[test]
fn env_example_lists_every_setting() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
        .expect(".env.example");
    for (var, _, default) in SETTINGS {
        let line = format!("{var}={}", default.unwrap_or(""));
        assert!(
            example.lines().any(|l| l == line),
            ".env.example lacks the line {line:?}"
        );
    }
}

#[test]
fn version_prints_the_version_and_commit() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let expected = format!(
        "coindcx-hub {} (commit {commit})\n",
        env!("CARGO_PKG_VERSION")
    );
    for args in [&["--version"][..], &["-V"], &["version"]] {
        let out = output_within(hub(&scratch("version")).args(args), QUICK);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(text(&out.stdout), expected, "{args:?}");
    }
}

/// Variables, arguments, and the names stderr must mention.
type BadCase<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);

#[test]
fn a_bad_flag_or_variable_exits_2_naming_it() {
    let dir = scratch("bad");
    let cases: &[BadCase] = &[
        (&[("HUB_CLIENT_QUEUE", "0")], &[], &["HUB_CLIENT_QUEUE"]),
        (
            &[],
            &["--client-queue", "0"],
            &["HUB_CLIENT_QUEUE", "--client-queue"],
        ),
        (
            &[("HUB_CLIENT_QUEUE", "8")],
            &["--client-queue=abc"],
            &["HUB_CLIENT_QUEUE"],
        ),
        (&[("COINDCX_WS_URL", "ftp://x")], &[], &["COINDCX_WS_URL"]),
        (&[], &["--eio", "5"], &["COINDCX_EIO", "--eio"]),
        (&[("HUB_SIM_RATE", "fast")], &[], &["HUB_SIM_RATE"]),
        (&[], &["--bind", "0.0.0.0:0"], &["HUB_BIND"]),
        (&[], &["--bind", "nowhere"], &["HUB_BIND"]),
        (&[], &["--api-key", "k"], &["COINDCX_API_SECRET"]),
        (
            &[],
            &["--allowed-hosts", "https://desk.example"],
            &["HUB_ALLOWED_HOSTS"],
        ),
        (&[], &["--no-such-flag"], &["--no-such-flag"]),
        (
            &[("HUB_HISTORY", "-1")],
            &["check-config"],
            &["HUB_HISTORY"],
        ),
    ];
    for (vars, args, named) in cases {
        let mut cmd = hub(&dir);
        cmd.args(*args);
        for (k, v) in *vars {
            cmd.env(k, v);
        }
        let out = output_within(&mut cmd, QUICK);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{vars:?} {args:?}: {stderr}");
        for name in *named {
            assert!(
                stderr.contains(name),
                "{vars:?} {args:?}: {name} not named: {stderr}"
            );
        }
    }
}

/// Runs `check-config` with `vars` from `dir`; returns its output and how long it took.
fn check_config(dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> (Output, Duration) {
    let mut cmd = hub(dir);
    cmd.arg("check-config").args(args).env("RUST_LOG", "off");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let started = Instant::now();
    // check-config bounds itself to ~15 s; this bound only stops a runaway.
    let out = output_within(&mut cmd, Duration::from_secs(60));
    (out, started.elapsed())
}

/// The line of one check (`REST signature`, `stream join`, ...).
fn check_line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| {
            l.trim_start()
                .get(6..)
                .is_some_and(|rest| rest.starts_with(name))
        })
        .unwrap_or_else(|| panic!("no {name:?} line:\n{stdout}"))
}

#[test]
fn check_config_passes_against_the_simulator_and_shows_precedence() {
    let dir = scratch("sim");
    // Precedence: HUB_HISTORY is a flag, a variable and in .env; HUB_CLIENT_QUEUE a variable
    // and in .env; HUB_MAX_CLIENTS only in .env; HUB_SIM_SEED nowhere.
    std::fs::write(
        dir.join(".env"),
        "HUB_HISTORY=7\nHUB_CLIENT_QUEUE=7\nHUB_MAX_CLIENTS=7\nHUB_AUTH_TOKEN=dotenv-token-123\n",
    )
    .unwrap();
    let (out, _) = check_config(
        &dir,
        &[("HUB_HISTORY", "6"), ("HUB_CLIENT_QUEUE", "6")],
        &["--history", "5"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let setting = |var: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{var} ")))
            .unwrap_or_else(|| panic!("{var} not printed:\n{stdout}"));
        line.split_whitespace().skip(2).map(String::from).collect()
    };
    assert_eq!(setting("HUB_HISTORY"), ["flag", "5"]);
    assert_eq!(setting("HUB_CLIENT_QUEUE"), ["environment", "6"]);
    assert_eq!(setting("HUB_MAX_CLIENTS"), ["environment", "7"]);
    assert_eq!(setting("HUB_SIM_SEED"), ["default", "42"]);
    assert_eq!(
        setting("HUB_AUTH_TOKEN").join(" "),
        "environment (set, 16 characters, masked)"
    );
    assert!(!stdout.contains("dotenv-token-123"), "{stdout}");
    assert!(
        stdout.contains("checking the built-in simulator"),
        "{stdout}"
    );
    for name in [
        "REST reachable",
        "clock skew",
        "REST signature",
        "stream connect",
        "stream join",
        "stream leave",
    ] {
        assert!(
            check_line(&stdout, name).trim_start().starts_with("ok "),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("check-config: all 6 checks passed"),
        "{stdout}"
    );
}

/// The futures wallets route of CoinDCX, checking the signature of the body like the exchange
/// (the in-process fake serves only the stream). Answers on 127.0.0.1; stops when dropped.
struct RestFake {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RestFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn rest_fake() -> RestFake {
    use axum::http::{HeaderMap, StatusCode};
    async fn wallets(headers: HeaderMap, body: axum::body::Bytes) -> (StatusCode, String) {
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        let expected = coindcx_hub::signing::sign(API_SECRET, &body);
        if header("x-auth-apikey") != API_KEY || header("x-auth-signature") != expected {
            let e = r#"{"code":401,"message":"Invalid credentials","status":"error"}"#;
            return (StatusCode::UNAUTHORIZED, e.into());
        }
        let w =
            r#"[{"id":"w1","currency_short_name":"USDT","balance":"1.5","locked_balance":"0"}]"#;
        (StatusCode::OK, w.into())
    }
    let app = axum::Router::new().route(
        "/exchange/v1/derivatives/futures/wallets",
        axum::routing::get(wallets),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    RestFake { addr, task }
}

/// Runs `check-config` against `fake` (stream) and `rest` (wallets) with `secret`.
async fn check_against_fake(fake: &FakeCoinDcx, rest: &RestFake, secret: &str) -> Output {
    let vars = [
        ("COINDCX_API_KEY", API_KEY.to_string()),
        ("COINDCX_API_SECRET", secret.to_string()),
        ("COINDCX_WS_URL", fake.url()),
        ("COINDCX_API_URL", format!("http://{}", rest.addr)),
    ];
    tokio::task::spawn_blocking(move || {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        check_config(&scratch("fake"), &vars, &[]).0
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_with_a_wrong_secret_fails_naming_the_signature() {
    let fake = FakeCoinDcx::start().await;
    let rest = rest_fake().await;
    let out = check_against_fake(&fake, &rest, "wrong-secret-4b1d").await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        check_line(&stdout, "REST signature")
            .contains("FAIL  REST signature   rejected: HTTP 401 \"Invalid credentials\""),
        "{stdout}"
    );
    let join = check_line(&stdout, "stream join");
    assert!(
        join.contains("FAIL") && join.contains("join signature or API key rejected"),
        "{stdout}"
    );
    assert!(
        check_line(&stdout, "stream connect").contains("ok "),
        "{stdout}"
    );
    assert!(
        check_line(&stdout, "REST reachable").contains("ok "),
        "{stdout}"
    );
    assert!(
        stdout.contains("check-config: 2 of 6 checks FAILED"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("wrong-secret-4b1d"),
        "the secret was printed: {stdout}"
    );
    assert_eq!(
        (fake.join_attempts(), fake.bad_joins(), fake.joins()),
        (1, 1, 0)
    );

    // The same fake with the right secret: everything passes, one join and one leave.
    let out = check_against_fake(&fake, &rest, API_SECRET).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("accepted (1 wallets)"), "{stdout}");
    assert_eq!((fake.joins(), fake.bad_joins()), (1, 1));
    assert!(
        common::wait_until(
            || fake.leaves() == 1 && fake.connected() == 0,
            Duration::from_secs(10)
        )
        .await,
        "leaves {} connected {}",
        fake.leaves(),
        fake.connected()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_against_an_address_that_never_answers_fails_within_its_bound() {
    // Accepts every connection and never writes a byte (a black-holed proxy).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let url = format!("http://{addr}");
    let (out, took) = tokio::task::spawn_blocking(move || {
        check_config(
            &scratch("blackhole"),
            &[
                ("COINDCX_API_KEY", API_KEY),
                ("COINDCX_API_SECRET", API_SECRET),
                ("COINDCX_WS_URL", &url),
                ("COINDCX_API_URL", &url),
            ],
            &[],
        )
    })
    .await
    .unwrap();
    holder.abort();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    // The check's own bound is 15 s; the rest is a loaded machine starting a process.
    assert!(took < Duration::from_secs(25), "took {took:?}:\n{stdout}");
    assert!(
        check_line(&stdout, "REST reachable").contains("FAIL")
            && stdout.contains("no answer within 10 s"),
        "{stdout}"
    );
    assert!(
        check_line(&stdout, "stream connect").contains("no Socket.IO connect within 9 s"),
        "{stdout}"
    );
    assert!(
        check_line(&stdout, "clock skew").contains("not checked"),
        "{stdout}"
    );
    assert!(
        stdout.contains("check-config: 6 of 6 checks FAILED"),
        "{stdout}"
    );
}
