//! The shipped Grafana dashboard (`config/grafana-dashboard.json`) and
//! alerting rules (`config/alerts.yml`) may only use metrics the daemon
//! exports. The real `run` binary is started against the `sim` subcommand, its
//! `/metrics` is fetched, and every metric name the dashboard's queries and the
//! rules reference must be in that live exposition. The dashboard's queries
//! must also be valid PromQL, as `promtool` judges it.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // The test waits for real processes in real time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::daemon_proc::{BIN, Daemon, eventually_or};
use serde_json::Value;

const CLUSTER: &str = "emr-abc12345";
const SECRET_ID: &str = "AKIDSIMULATOR00000000000000000000000";
const SECRET_KEY: &str = "simulator-secret-key-000000000000";

/// Child processes, killed and reaped when the test ends, however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The families only a daemon with `[ha]` exports, named by the dashboard.
pub const HA_ONLY: [&str; 3] = [
    "emr_autoscaler_leader",
    "emr_autoscaler_leader_changes_total",
    "emr_autoscaler_ha_lease_errors_total",
];

/// The families only a capacity rule exports, from its first evaluation,
/// named by the dashboard; the capacity module checks them against a live
/// daemon with one.
pub const CAPACITY_ONLY: [&str; 4] = [
    "emr_autoscaler_rule_desired_task_nodes",
    "emr_autoscaler_rule_demand_growth_per_second",
    "emr_autoscaler_rule_headroom",
    "emr_autoscaler_rule_capacity",
];

/// The families only a cluster with offerings exports, named by the
/// dashboard; the offerings module checks them against a live daemon with
/// offerings.
pub const OFFERINGS_ONLY: [&str; 2] = [
    "emr_autoscaler_offering_unavailable",
    "emr_autoscaler_offering_task_nodes",
];

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn dashboard() -> Value {
    let path = repo_file("config/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `expr` string anywhere in the dashboard.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The series selectors of the template variables' `label_values(SELECTOR, label)`
/// queries.
fn variable_selectors(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for var in d["templating"]["list"].as_array().unwrap() {
        let query = match &var["query"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o["query"].as_str().unwrap_or_default().to_owned(),
            _ => continue,
        };
        if let Some(args) = query
            .strip_prefix("label_values(")
            .and_then(|a| a.strip_suffix(')'))
        {
            let (selector, _label) = args.rsplit_once(',').unwrap_or((args, ""));
            out.push(selector.trim().to_owned());
        }
    }
    out
}

/// Index of the character after the one closing the bracket or quote that
/// opens at `start`; quotes inside brackets are honoured.
fn skip_balanced(chars: &[char], start: usize) -> usize {
    let open = chars[start];
    if matches!(open, '"' | '\'' | '`') {
        let mut i = start + 1;
        while i < chars.len() {
            match chars[i] {
                '\\' if open != '`' => i += 2,
                c if c == open => return i + 1,
                _ => i += 1,
            }
        }
        return chars.len();
    }
    let close = match open {
        '{' => '}',
        '[' => ']',
        _ => ')',
    };
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_balanced(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// The metric names a PromQL expression selects: identifiers that are not
/// functions, keywords, number literals, label names (in `{..}`, `by (..)`
/// and the like) or Grafana variables (`$cluster`, `$__rate_interval`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Keywords, number literals, and the aggregation operators, which may be
    // followed by `by (..)` rather than by their parenthesis.
    const WORDS: [&str; 21] = [
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
    let chars: Vec<char> = expr.chars().collect();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut label_list_next = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`' | '{' | '[') {
            i = skip_balanced(&chars, i);
        } else if c == '(' && label_list_next {
            label_list_next = false;
            i = skip_balanced(&chars, i);
        } else if c == '$' {
            i += 1;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) {
                label_list_next = next == Some('(');
            } else if WORDS.contains(&lower.as_str()) || next == Some('(') {
                // A keyword, a number literal, an aggregation or a function.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// What a `/metrics` page holds: each family's type, and every sample name.
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut types = BTreeMap::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    types.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                samples.insert(line[..end].to_owned());
            }
        }
        Exposition { types, samples }
    }

    /// Why `name` is not a series a query can select here, if it is not.
    fn problem(&self, name: &str) -> Option<String> {
        if !name.starts_with("emr_autoscaler_") {
            return Some("is not one of the daemon's metrics".into());
        }
        if let Some(kind) = self.types.get(name) {
            if kind == "histogram" || kind == "summary" {
                return Some(format!(
                    "is a {kind}: select its _bucket, _sum or _count series"
                ));
            }
        } else {
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                let kind = self.types.get(base)?;
                let fits = kind == "histogram" || (kind == "summary" && *suffix != "_bucket");
                fits.then_some(base)
            });
            if family.is_none() {
                return Some("is not exported".into());
            }
        }
        if !self.samples.contains(name) {
            return Some("has no sample in the live exposition".into());
        }
        None
    }
}

fn command(dir: &Path, log: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("HOME", dir)
        .env("RUST_LOG", "info")
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap());
    cmd
}

fn config(endpoint: &str, state_dir: &Path) -> String {
    format!(
        r#"[daemon]
evaluation_interval = "1s"
listen = "127.0.0.1:0"
state_dir = "{state}"

[prometheus]
url = "http://127.0.0.1:9"
timeout = "1s"

[tencent]
region = "ap-guangzhou"
endpoint = "{endpoint}"
metadata_url = "http://127.0.0.1:9"

[[clusters]]
instance_id = "{CLUSTER}"
max_task_nodes = 10
max_nodes_per_hour = 5

[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600

[[clusters.rules]]
name = "pending-memory"
type = "threshold"
query = 'sum(yarn_pending_memory_mb{{cluster="{CLUSTER}"}})'
above = 8192
for = "1m"
add = 2
"#,
        state = state_dir.display(),
    )
}

/// Starts the simulator and the daemon, and returns the daemon's first full
/// `/metrics` page.
async fn live_metrics(dir: &Path, children: &mut Children) -> (String, Daemon) {
    let mut sim = command(dir, "sim.log")
        .args(["sim", "--cluster", CLUSTER])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = sim.stdout.take().unwrap();
    children.0.push(sim);
    let mut endpoint = String::new();
    BufReader::new(stdout).read_line(&mut endpoint).unwrap();
    let endpoint = endpoint.trim().to_owned();
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "the simulator printed {endpoint:?}; its log:\n{}",
        std::fs::read_to_string(dir.join("sim.log")).unwrap_or_default()
    );

    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config(&endpoint, &dir.join("state"))).unwrap();
    let daemon = Daemon::start(&config_path, &dir.join("daemon.log"), dir);
    let page = || async {
        Some(daemon.get("/metrics").await)
            .filter(|(code, body)| *code == 200 && body.contains("emr_autoscaler_build_info"))
    };
    eventually_or(
        Duration::from_secs(30),
        "the daemon to serve /metrics",
        || daemon.log_text(),
        || async { page().await.is_some() },
    )
    .await;
    let (_, body) = page().await.unwrap();
    (body, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut children = Children(Vec::new());
    let (text, _daemon) = live_metrics(dir.path(), &mut children).await;
    let live = Exposition::parse(&text);

    let d = dashboard();
    let mut queries = Vec::new();
    exprs(&d, &mut queries);
    queries.extend(variable_selectors(&d));
    let mut referenced: BTreeMap<String, &str> = BTreeMap::new();
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "no metric in dashboard query {q:?}");
        for name in names {
            referenced.insert(name, "config/grafana-dashboard.json");
        }
    }
    for required in [
        "emr_autoscaler_rule_value",
        "emr_autoscaler_current_task_nodes",
        "emr_autoscaler_inflight_task_nodes",
        "emr_autoscaler_desired_task_nodes",
        "emr_autoscaler_decisions_total",
        "emr_autoscaler_api_requests_total",
        "emr_autoscaler_rate_limiter_wait_seconds_bucket",
    ] {
        assert!(
            referenced.contains_key(required),
            "the dashboard has no panel on {required}"
        );
    }

    // The rules file is YAML; every metric name in it has the daemon's prefix.
    let alerts = std::fs::read_to_string(repo_file("config/alerts.yml")).unwrap();
    let mut in_alerts = 0;
    for (at, _) in alerts.match_indices("emr_autoscaler_") {
        let name: String = alerts[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        referenced.insert(name, "config/alerts.yml");
        in_alerts += 1;
    }
    assert!(
        in_alerts >= 8,
        "config/alerts.yml names {in_alerts} metrics"
    );

    // The leadership families exist only with [ha]; the ha module checks them
    // against a live HA daemon. Everything else must be in this single-host
    // exposition.
    let problems: Vec<String> = referenced
        .iter()
        .filter(|(name, _)| !HA_ONLY.contains(&name.as_str()))
        .filter(|(name, _)| !CAPACITY_ONLY.contains(&name.as_str()))
        .filter(|(name, _)| !OFFERINGS_ONLY.contains(&name.as_str()))
        .filter_map(|(name, file)| live.problem(name).map(|p| format!("{file}: {name} {p}")))
        .collect();
    assert!(
        HA_ONLY.iter().all(|n| referenced.contains_key(*n)),
        "the dashboard shows the role: {HA_ONLY:?}"
    );
    assert!(
        CAPACITY_ONLY.iter().all(|n| referenced.contains_key(*n)),
        "the dashboard draws the capacity rules: {CAPACITY_ONLY:?}"
    );
    assert!(
        OFFERINGS_ONLY.iter().all(|n| referenced.contains_key(*n)),
        "the dashboard shows the offerings: {OFFERINGS_ONLY:?}"
    );
    for name in HA_ONLY {
        assert!(
            !live.types.contains_key(name),
            "{name} is exported without [ha]"
        );
    }
    assert!(
        problems.is_empty(),
        "{}\n\nlive exposition:\n{text}",
        problems.join("\n")
    );
    println!(
        "{} metric names checked against {} live families",
        referenced.len(),
        live.types.len()
    );
}

#[test]
fn dashboard_is_importable() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 30),
        "schemaVersion"
    );
    assert!(d["uid"].is_string() && d["title"].is_string());
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(var("cluster")["type"], "query");

    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut with_queries = 0;
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        for key in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            assert!(t["expr"].is_string() && t["refId"].is_string(), "{title}");
        }
        with_queries += 1;
    }
    assert!(with_queries >= 4, "{with_queries} panels with queries");
    // Orders and removals are annotations on every panel, from the metrics.
    let annotations = d["annotations"]["list"].as_array().unwrap();
    for family in [
        "emr_autoscaler_nodes_requested_total",
        "emr_autoscaler_nodes_removed_total",
        "emr_autoscaler_breaker_open",
    ] {
        let a = annotations
            .iter()
            .find(|a| a["expr"].as_str().is_some_and(|e| e.contains(family)))
            .unwrap_or_else(|| panic!("no annotation from {family}"));
        assert_eq!(a["datasource"]["uid"], "${datasource}");
        assert_eq!(a["enable"], true);
    }
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let mut queries = Vec::new();
    exprs(&dashboard(), &mut queries);
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, q) in queries.iter().enumerate() {
        let concrete = q
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*")
            .replace("$cluster", ".*");
        assert!(!concrete.contains('$'), "unknown variable in {q:?}");
        rules.push_str(&format!(
            "      - record: dashboard:query{n}\n        expr: {}\n",
            serde_json::to_string(&concrete).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect(
            "promtool is not on PATH: install Debian's `prometheus` package \
             (as root: apt-get install -y prometheus)",
        );
    assert!(
        out.status.success(),
        "promtool rejects a dashboard query:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metric_names_skips_functions_labels_and_variables() {
    let names = |q: &str| metric_names(q).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.95, sum by (action, le) (rate(a_bucket{instance=~"$instance", x="b{c}"}[$__rate_interval])))"#
        ),
        ["a_bucket"]
    );
    assert_eq!(
        names("sum(x) without (cluster) / on (job) group_left (version) y > bool 1e3"),
        ["x", "y"]
    );
    assert_eq!(
        names("clamp_min(a - time(), 0) and ignoring(window) b < +Inf or c offset 5m"),
        ["a", "b", "c"]
    );
    assert_eq!(names(r#"count(up{job="by"}) by (instance)"#), ["up"]);
}
