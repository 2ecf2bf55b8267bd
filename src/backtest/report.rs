//! The backtest's outputs: `timeline.csv`, `timeline.json`, `summary.json`
//! and the summary table on stdout.

use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use super::BacktestError;
use super::engine::{ClusterRun, Grid, StepRecord, Summary};
use crate::replay::Model;

/// Every cluster's replay under one configuration.
#[derive(Debug, Clone)]
pub(crate) struct ConfigRun {
    /// The configuration file, as given.
    pub config: String,
    /// One run per cluster, in configuration order.
    pub clusters: Vec<ClusterRun>,
}

impl ConfigRun {
    /// All clusters together. Peak in flight is the most nodes in flight
    /// across clusters at one step.
    pub(crate) fn total(&self) -> Summary {
        let mut total = Summary::default();
        for c in &self.clusters {
            total.accumulate(&c.summary);
        }
        total.open_loop_rules = self
            .clusters
            .iter()
            .flat_map(|c| {
                c.summary
                    .open_loop_rules
                    .iter()
                    .map(move |r| format!("{}/{r}", c.instance_id))
            })
            .collect();
        let steps = self
            .clusters
            .iter()
            .map(|c| c.in_flight.len())
            .max()
            .unwrap_or(0);
        total.steps = steps;
        total.peak_in_flight = (0..steps)
            .map(|i| {
                self.clusters
                    .iter()
                    .map(|c| c.in_flight.get(i).copied().unwrap_or(0))
                    .fold(0u32, u32::saturating_add)
            })
            .max()
            .unwrap_or(0);
        total
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BacktestError + '_ {
    move |e| BacktestError::Io {
        what: format!("cannot write {}", path.display()),
        reason: e.to_string(),
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes `timeline.csv`: one row per cluster and step.
pub(crate) fn write_timeline_csv(path: &Path, run: &ConfigRun) -> Result<(), BacktestError> {
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::new(file);
    writeln!(
        w,
        "time,cluster,demand_mb,capacity_mb,running,in_flight,outcome,increment,removed,reason"
    )
    .map_err(io_err(path))?;
    for c in &run.clusters {
        for r in &c.timeline {
            writeln!(
                w,
                "{},{},{},{},{},{},{},{},{},{}",
                ts(r.time),
                csv_field(&c.instance_id),
                r.demand_mb.map(|d| d.to_string()).unwrap_or_default(),
                r.capacity_mb,
                r.running,
                r.in_flight,
                r.outcome.metric_label(),
                r.increment,
                r.removed,
                csv_field(&r.reason)
            )
            .map_err(io_err(path))?;
        }
    }
    w.flush().map_err(io_err(path))
}

/// A timeline row as written to JSON.
#[derive(serde::Serialize)]
struct JsonStep<'a> {
    time: String,
    cluster: &'a str,
    demand_mb: Option<f64>,
    capacity_mb: f64,
    running: u32,
    in_flight: u32,
    outcome: &'static str,
    increment: u32,
    removed: u32,
    reason: &'a str,
}

impl<'a> JsonStep<'a> {
    fn new(cluster: &'a str, r: &'a StepRecord) -> Self {
        Self {
            time: ts(r.time),
            cluster,
            demand_mb: r.demand_mb,
            capacity_mb: r.capacity_mb,
            running: r.running,
            in_flight: r.in_flight,
            outcome: r.outcome.metric_label(),
            increment: r.increment,
            removed: r.removed,
            reason: &r.reason,
        }
    }
}

/// Writes `timeline.json`: an array of step objects.
pub(crate) fn write_timeline_json(path: &Path, run: &ConfigRun) -> Result<(), BacktestError> {
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::new(file);
    let json_err = |e: serde_json::Error| BacktestError::Io {
        what: format!("cannot write {}", path.display()),
        reason: e.to_string(),
    };
    w.write_all(b"[").map_err(io_err(path))?;
    let mut first = true;
    for c in &run.clusters {
        for r in &c.timeline {
            if !first {
                w.write_all(b",").map_err(io_err(path))?;
            }
            first = false;
            w.write_all(b"\n  ").map_err(io_err(path))?;
            serde_json::to_writer(&mut w, &JsonStep::new(&c.instance_id, r)).map_err(json_err)?;
        }
    }
    w.write_all(b"\n]\n").map_err(io_err(path))?;
    w.flush().map_err(io_err(path))
}

/// The parameters of a backtest, for `summary.json`.
#[derive(Debug, Clone)]
pub(crate) struct Setup<'a> {
    /// The step grid.
    pub grid: Grid,
    /// The simulated cluster sizes.
    pub model: Model,
    /// Where demand came from (the file, or the query).
    pub demand_source: &'a str,
}

fn config_json(run: &ConfigRun) -> serde_json::Value {
    serde_json::json!({
        "config": run.config,
        "total": run.total(),
        "clusters": run.clusters.iter().map(|c| {
            let mut v = serde_json::to_value(&c.summary).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("cluster".into(), c.instance_id.clone().into());
                o.insert("orders".into(), serde_json::to_value(&c.chunks).unwrap_or_default());
            }
            v
        }).collect::<Vec<_>>(),
    })
}

/// Writes `summary.json`: the setup, the figures of `run` and, when given,
/// of the compared configuration.
pub(crate) fn write_summary(
    path: &Path,
    setup: &Setup<'_>,
    run: &ConfigRun,
    compare: Option<&ConfigRun>,
) -> Result<(), BacktestError> {
    let mut value = serde_json::json!({
        "from": ts(setup.grid.from),
        "to": ts(setup.grid.end()),
        "step_seconds": setup.grid.step.as_secs(),
        "node_hours_rule": "every billed task node: the initial ones from the start, ordered ones from their order, each until removed and its grace period has passed",
        "steps": setup.grid.steps,
        "demand": setup.demand_source,
        "model": {
            "base_capacity_mb": setup.model.base_capacity_mb,
            "node_memory_mb": setup.model.node_memory_mb,
            "provisioning_delay_seconds": setup.model.provisioning_delay.as_secs_f64(),
        },
    });
    if let (Some(o), serde_json::Value::Object(r)) = (value.as_object_mut(), config_json(run)) {
        o.extend(r);
        o.insert(
            "compare".into(),
            compare.map(config_json).unwrap_or(serde_json::Value::Null),
        );
    }
    let text = serde_json::to_string_pretty(&value).map_err(|e| BacktestError::Io {
        what: format!("cannot write {}", path.display()),
        reason: e.to_string(),
    })?;
    std::fs::write(path, text + "\n").map_err(io_err(path))
}

fn fmt_f(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

fn rows(s: &Summary) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = vec![
        ("nodes added".into(), s.nodes_added.to_string()),
        ("nodes removed".into(), s.nodes_removed.to_string()),
        ("node-hours".into(), fmt_f(s.node_hours, 2)),
        ("unmet minutes".into(), fmt_f(s.unmet_minutes, 1)),
        ("unmet GiB·minutes".into(), fmt_f(s.unmet_gib_minutes, 2)),
        ("peak in-flight nodes".into(), s.peak_in_flight.to_string()),
        ("API calls".into(), s.api_calls.to_string()),
        ("chunks".into(), s.chunks.to_string()),
        ("operations".into(), s.operations.to_string()),
        (
            "open-loop rules".into(),
            if s.open_loop_rules.is_empty() {
                "none".to_string()
            } else {
                s.open_loop_rules.join(", ")
            },
        ),
    ];
    // Per offering, once there is more than the cluster's own spec.
    if s.offerings.iter().any(|o| o.name != "default") {
        for o in &s.offerings {
            rows.push((format!("{}: node-hours", o.name), fmt_f(o.node_hours, 2)));
            rows.push((
                format!("{}: nodes added", o.name),
                o.nodes_added.to_string(),
            ));
            if o.refusals > 0 {
                rows.push((
                    format!("{}: sold-out refusals", o.name),
                    o.refusals.to_string(),
                ));
            }
        }
        let priced: Vec<_> = s
            .offerings
            .iter()
            .filter_map(|o| o.cost.map(|c| (o, c)))
            .collect();
        for (o, cost) in &priced {
            rows.push((format!("{}: cost", o.name), fmt_f(*cost, 2)));
        }
        if !priced.is_empty() {
            rows.push((
                "cost (priced offerings)".into(),
                fmt_f(priced.iter().map(|(_, c)| c).sum(), 2),
            ));
        }
    }
    rows
}

/// The summary table: one column per configuration; per cluster when there
/// are several, then all clusters together.
pub(crate) fn table(grid: &Grid, runs: &[&ConfigRun]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let clusters = runs.first().map_or(0, |r| r.clusters.len());
    let _ = writeln!(
        out,
        "backtest {} .. {}, step {}, {} steps, {} cluster(s)",
        ts(grid.from),
        ts(grid.end()),
        humantime::format_duration(grid.step),
        grid.steps,
        clusters
    );
    let mut scopes: Vec<(String, Vec<Summary>)> = Vec::new();
    if clusters > 1 {
        for i in 0..clusters {
            let name = runs[0].clusters[i].instance_id.clone();
            let sums = runs
                .iter()
                .map(|r| {
                    r.clusters
                        .get(i)
                        .map(|c| c.summary.clone())
                        .unwrap_or_default()
                })
                .collect();
            scopes.push((name, sums));
        }
    }
    scopes.push((
        if clusters > 1 {
            "all clusters".to_string()
        } else {
            runs.first()
                .and_then(|r| r.clusters.first())
                .map(|c| c.instance_id.clone())
                .unwrap_or_default()
        },
        runs.iter().map(|r| r.total()).collect(),
    ));
    let _ = writeln!(
        out,
        "(every billed task node counts in node-hours: the initial ones too, removed ones until drained)"
    );
    for (scope, sums) in scopes {
        let _ = writeln!(out);
        let table: Vec<Vec<(String, String)>> = sums.iter().map(rows).collect();
        // Every label any column has, in first-seen order: configurations
        // compared may list different offerings.
        let mut labels: Vec<&str> = Vec::new();
        for (l, _) in table.iter().flatten() {
            if !labels.contains(&l.as_str()) {
                labels.push(l);
            }
        }
        let label_width = labels
            .iter()
            .map(|l| l.chars().count() + 2)
            .max()
            .unwrap_or(0)
            .max(22);
        let headers: Vec<String> = runs.iter().map(|r| r.config.clone()).collect();
        let widths: Vec<usize> = (0..runs.len())
            .map(|j| {
                table[j]
                    .iter()
                    .map(|(_, v)| v.chars().count())
                    .chain(std::iter::once(headers[j].chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let _ = write!(out, "{:<label_width$}", scope);
        for (j, h) in headers.iter().enumerate() {
            let _ = write!(out, "  {:>w$}", h, w = widths[j]);
        }
        let _ = writeln!(out);
        for label in &labels {
            let _ = write!(out, "{label:<label_width$}");
            for (column, width) in table.iter().zip(&widths) {
                let value = column
                    .iter()
                    .find(|(l, _)| l == label)
                    .map_or("-", |(_, v)| v.as_str());
                let _ = write!(out, "  {value:>width$}");
            }
            let _ = writeln!(out);
        }
    }
    out
}
