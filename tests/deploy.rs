//! The files an operator installs: the systemd unit passes `systemd-analyze verify` without a
//! word, and the Grafana dashboard names only series the hub really serves on `/metrics`.

mod common;

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/coindcx-hub.service");
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana-dashboard.json");

#[test]
fn service_unit_has_the_required_settings() {
    let unit = std::fs::read_to_string(UNIT).expect("deploy/coindcx-hub.service");
    let value = |key: &str| -> String {
        let found: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .collect();
        assert_eq!(found.len(), 1, "{key}= must appear once: {found:?}");
        found[0].trim().to_string()
    };
    assert_eq!(value("EnvironmentFile"), "/etc/coindcx-hub/env");
    assert_eq!(value("DynamicUser"), "yes");
    assert_eq!(value("NoNewPrivileges"), "yes");
    assert_eq!(value("ProtectSystem"), "strict");
    assert_eq!(value("Restart"), "on-failure");
    assert_eq!(value("KillSignal"), "SIGTERM");
    // The hub exits within 5 s of SIGTERM; systemd must wait at least that long, and not
    // forever.
    let stop = value("TimeoutStopSec");
    let secs: u64 = stop
        .strip_suffix('s')
        .unwrap_or(&stop)
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!((6..=30).contains(&secs), "TimeoutStopSec={stop}");
}

/// `systemd-analyze verify` exits 0 even on a bad value (it only warns), so the test requires
/// empty output. `ExecStart` must exist for it: the unit is verified with the test's binary in
/// place of `/usr/local/bin/coindcx-hub`, everything else byte for byte.
#[test]
fn service_unit_passes_systemd_analyze_verify_silently() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        // scripts/test.sh installs Debian's systemd package when it runs as root (as CI does).
        eprintln!(
            "SKIPPED: systemd-analyze is not installed (apt-get install systemd); \
             scripts/test.sh installs it when run as root"
        );
        return;
    }
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let exec_lines = unit.lines().filter(|l| l.starts_with("ExecStart=")).count();
    assert_eq!(exec_lines, 1);
    let patched: String = unit
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                format!("ExecStart={}\n", common::HUB_BIN)
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("coindcx-hub-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("coindcx-hub.service");
    std::fs::write(&path, patched).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said, "", "systemd-analyze verify complained");
    assert!(out.status.success());
}

/// PromQL words that are not series names (aggregations may be followed by `by`, not `(`).
const PROMQL_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Words whose parenthesised list holds label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The series names in one PromQL expression: identifiers that are not functions (followed by
/// `(`), not label names or values (inside `{...}` or after `by`/`without`), not a range
/// (`[5m]`) and not a keyword.
fn series_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut braces, mut brackets, mut quoted) = (0, 0, false);
    let mut grouping = false; // inside `by (...)`, `on (...)`, ...
    let mut last_word = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if quoted {
            if c == '\\' {
                i += 1;
            } else if c == '"' {
                quoted = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => quoted = true,
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            '(' if LABEL_LISTS.contains(&last_word.as_str()) => grouping = true,
            ')' if grouping => grouping = false,
            _ => {}
        }
        let starts_word = c.is_ascii_alphabetic() || c == '_' || c == ':';
        let after_ident = i > 0 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_');
        if starts_word && !after_ident && !(i > 0 && chars[i - 1] == '$') {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let is_function = next == Some(&'(');
            let is_name = braces == 0
                && brackets == 0
                && !grouping
                && !is_function
                && !PROMQL_WORDS.contains(&word.to_ascii_lowercase().as_str());
            if is_name {
                names.insert(word.clone());
            }
            last_word = word;
            continue;
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    names
}

/// Every series the dashboard names: panel queries and template-variable queries.
fn dashboard_series(dashboard: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let found = series_names(expr);
            assert!(!found.is_empty(), "no series in {expr:?}");
            names.extend(found);
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(def) = var["definition"].as_str() {
            // label_values(metric, label)
            if let Some(inner) = def.strip_prefix("label_values(") {
                names.extend(series_names(inner.split(',').next().unwrap_or_default()));
            }
        }
    }
    names
}

/// The series names in Prometheus text (histograms as `_bucket`, `_sum`, `_count`).
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

fn missing(dashboard: &Value, served: &BTreeSet<String>) -> Vec<String> {
    dashboard_series(dashboard)
        .into_iter()
        .filter(|n| !served.contains(n))
        .collect()
}

#[test]
fn promql_names_are_told_from_functions_labels_and_ranges() {
    let names = series_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(hub_x_bucket{job=~"$job",le!="a b"}[$__rate_interval]))) / on(job) hub_y offset 5m"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["hub_x_bucket", "hub_y"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_names_only_series_the_hub_exports() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).expect("dashboard file"))
            .expect("the dashboard is JSON");
    let names = dashboard_series(&dashboard);
    // What the issue asks the dashboard to show.
    for required in [
        "hub_clients",
        "hub_upstream_state",
        "hub_events_in_total",
        "hub_deliveries_total",
        "hub_exchange_to_send_seconds_bucket",
        "hub_client_closes_total",
    ] {
        assert!(
            names.contains(required),
            "the dashboard lacks {required}: {names:?}"
        );
    }

    let _ = env_logger::builder().is_test(true).try_init();
    let map: HashMap<&str, &str> = [
        ("HUB_BIND", "127.0.0.1:0"),
        ("HUB_SIM_BIND", "127.0.0.1:0"),
        ("HUB_SIM_RATE", "0"),
    ]
    .into_iter()
    .collect();
    let config = coindcx_hub::config::Config::from_lookup(|k| map.get(k).map(|v| v.to_string()))
        .expect("config");
    let hub = coindcx_hub::start(config).await.expect("hub starts");
    let (code, metrics) = common::http_get(hub.addr, "/metrics").await;
    hub.shutdown().await;
    assert_eq!(code, 200, "{metrics}");
    let served = exported(&metrics);
    assert_eq!(
        missing(&dashboard, &served),
        Vec::<String>::new(),
        "the dashboard names series the hub does not export"
    );

    // The same check catches a renamed series.
    let renamed: Value = serde_json::from_str(
        &serde_json::to_string(&dashboard)
            .unwrap()
            .replace("hub_deliveries_total", "hub_frames_out_total"),
    )
    .unwrap();
    assert_eq!(missing(&renamed, &served), ["hub_frames_out_total"]);
}
