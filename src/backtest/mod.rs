//! `backtest`: closed-loop replay of history through the same policy code the
//! daemon runs, with a report and a chart.
//!
//! Demand comes from Prometheus (`--demand-query`, range queries chunked
//! under the 11,000-points limit) or from a CSV file (`--input`). The replay
//! itself ([`engine::replay`]) is pure: it follows DESIGN.md's replay model
//! with [`crate::replay::Model`] and [`crate::replay::Costs`], and judges
//! every rule through [`crate::policy::decide`] with the daemon's sample
//! histories and `max_gap`.
//!
//! Exit codes: 0 success, 78 invalid configuration (either file, or a
//! cluster it does not have), 1 anything else (bad CSV line, Prometheus
//! failure naming the query, unwritable output).

pub(crate) mod chart;
pub(crate) mod engine;
pub(crate) mod input;
pub(crate) mod report;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use engine::{
    ClusterInput, ClusterRun, Detail, Grid, OfferingFigures, ReplayOffering, RuleMode, StepRecord,
    Summary, replay, rule_modes,
};
pub(crate) use report::ConfigRun;

use crate::config::{self, ClusterConfig, Config, ConfigError};
use crate::policy::Sample;
use crate::prom::Prometheus;

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// A configuration file is invalid or unreadable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--cluster` names a cluster the configuration does not have, or the
    /// compared configuration lacks a replayed cluster.
    #[error("{cluster} is not configured in {config}; configured: {configured}")]
    UnknownCluster {
        /// The cluster\'s instance id (`emr-…`).
        cluster: String,
        /// The configuration file.
        config: String,
        /// The clusters it has.
        configured: String,
    },
    /// The arguments do not describe a replay.
    #[error("{0}")]
    Args(String),
    /// A bad line in the demand file.
    #[error("{}", input_text(file, *line, message))]
    Input {
        /// The file.
        file: String,
        /// The 1-based line; 0 for the file as a whole.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No demand sample applies to a cluster.
    #[error("no demand for {cluster} from {from}")]
    NoDemand {
        /// The cluster\'s instance id (`emr-…`).
        cluster: String,
        /// The file or query.
        from: String,
    },
    /// A Prometheus range query failed.
    #[error("Prometheus query {query:?} failed: {reason}")]
    Prometheus {
        /// The PromQL.
        query: String,
        /// Why.
        reason: String,
    },
    /// Prometheus for the range queries could not be set up.
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    /// The chart could not be drawn or written.
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
    /// Reading or writing a file failed.
    #[error("{what}: {reason}")]
    Io {
        /// What was attempted.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

fn input_text(file: &str, line: usize, message: &str) -> String {
    if line == 0 {
        format!("{file}: {message}")
    } else {
        format!("{file} line {line}: {message}")
    }
}

impl BacktestError {
    /// Whether a configuration is at fault (an invalid file, or a cluster it
    /// does not have), rather than the input, Prometheus or the output.
    pub(crate) fn is_config(&self) -> bool {
        matches!(
            self,
            BacktestError::Config(_) | BacktestError::UnknownCluster { .. }
        )
    }
}

/// A progress bar on stderr that appears only once the work has taken more
/// than a second (and only on a terminal: indicatif hides it otherwise).
struct Progress {
    bar: ProgressBar,
    shown: bool,
}

impl Progress {
    const SCALE: u64 = 1000;

    fn new(units: usize) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(units as u64 * Self::SCALE),
            ProgressDrawTarget::hidden(),
        );
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {percent:>3}% {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Self { bar, shown: false }
    }

    /// Unit `unit` is `done` of `total` through.
    fn set(&mut self, message: &'static str, unit: usize, done: i64, total: i64) {
        if !self.shown && self.bar.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        let frac = if total > 0 {
            (done.clamp(0, total) as f64 / total as f64 * Self::SCALE as f64) as u64
        } else {
            Self::SCALE
        };
        self.bar.set_message(message);
        self.bar.set_position(unit as u64 * Self::SCALE + frac);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The replayed clusters of one configuration, with their recorded histories.
struct Plan<'a> {
    path: String,
    clusters: Vec<&'a ClusterConfig>,
}

fn select<'a>(
    config: &'a Config,
    path: &Path,
    ids: &[String],
) -> Result<Vec<&'a ClusterConfig>, BacktestError> {
    let configured = || {
        config
            .clusters
            .iter()
            .map(|c| c.instance_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    ids.iter()
        .map(|id| {
            config
                .cluster(id)
                .ok_or_else(|| BacktestError::UnknownCluster {
                    cluster: id.clone(),
                    config: path.display().to_string(),
                    configured: configured(),
                })
        })
        .collect()
}

async fn fetch(
    prom: &Prometheus,
    query: &str,
    grid: &Grid,
    progress: &mut Progress,
    unit: usize,
) -> Result<Vec<Sample>, BacktestError> {
    let last = grid.at(grid.steps - 1);
    prom.range(query, grid.from, last, grid.step, |done, total| {
        progress.set("querying", unit, done, total)
    })
    .await
    .map_err(|e| BacktestError::Prometheus {
        query: query.to_string(),
        reason: e.to_string(),
    })
}

/// What one backtest replays, and where its outputs go.
#[derive(Debug, Clone)]
pub(crate) struct BacktestOptions {
    /// The configuration whose clusters and rules are replayed.
    pub config: PathBuf,
    /// Start of the replayed window.
    pub from: DateTime<Utc>,
    /// End of the replayed window; the last step ends at or before it.
    pub to: DateTime<Utc>,
    /// Distance between evaluations.
    pub step: Duration,
    /// Demand from this CSV file instead of Prometheus.
    pub input: Option<PathBuf>,
    /// PromQL for demand in MB, `{cluster}` replaced by each instance_id.
    pub demand_query: Option<String>,
    /// Where the outputs go.
    pub out: PathBuf,
    /// A second configuration replayed on the same demand.
    pub compare: Option<PathBuf>,
    /// Only these clusters; empty means every configured one.
    pub clusters: Vec<String>,
    /// The simulated cluster.
    pub model: crate::replay::Model,
    /// Task nodes serving at `from`; default each cluster's min_task_nodes.
    pub initial_task_nodes: Option<u32>,
    /// Offerings sold out for a while (`--sold-out NAME@FROM/TO`).
    pub sold_out: Vec<SoldOut>,
}

/// An offering sold out from `from` to `to` in a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoldOut {
    /// The offering's name.
    pub offering: String,
    /// Start of the window.
    pub from: DateTime<Utc>,
    /// End of the window (excluded).
    pub to: DateTime<Utc>,
}

/// The offerings of `cluster` as a replay sees them, with the windows of
/// `sold_out` that name them.
pub fn replay_offerings(
    cluster: &config::ClusterConfig,
    sold_out: &[SoldOut],
) -> Vec<engine::ReplayOffering> {
    cluster
        .offerings
        .iter()
        .map(|o| engine::ReplayOffering {
            name: o.name.clone(),
            price_per_hour: o.price_per_hour,
            sold_out: sold_out
                .iter()
                .filter(|w| w.offering == o.name)
                .map(|w| (w.from, w.to))
                .collect(),
        })
        .collect()
}

/// Runs the backtest `args` describe; returns the summary table.
pub(crate) async fn run(args: &BacktestOptions) -> Result<String, BacktestError> {
    let config = config::load(&args.config)?;
    let other = match &args.compare {
        Some(p) => Some((config::load(p)?, p)),
        None => None,
    };
    let ids: Vec<String> = if args.clusters.is_empty() {
        config
            .clusters
            .iter()
            .map(|c| c.instance_id.clone())
            .collect()
    } else {
        args.clusters.clone()
    };
    let mut plans = vec![Plan {
        path: args.config.display().to_string(),
        clusters: select(&config, &args.config, &ids)?,
    }];
    let offered: Vec<&str> = config
        .clusters
        .iter()
        .filter(|c| ids.contains(&c.instance_id))
        .flat_map(|c| c.offerings.iter().map(|o| o.name.as_str()))
        .collect();
    if let Some(w) = args
        .sold_out
        .iter()
        .find(|w| !offered.contains(&w.offering.as_str()))
    {
        return Err(BacktestError::Args(format!(
            "--sold-out names {:?}, which no replayed cluster offers (offerings: {})",
            w.offering,
            if offered.is_empty() {
                "none configured".to_string()
            } else {
                offered.join(", ")
            }
        )));
    }
    if let Some((other, path)) = &other {
        plans.push(Plan {
            path: path.display().to_string(),
            clusters: select(other, path, &ids)?,
        });
    }
    let grid = Grid::new(args.from, args.to, args.step)?;
    let model = args.model;

    // Everything Prometheus must answer: demand queries and open-loop rules.
    let mut queries: Vec<String> = Vec::new();
    let mut want = |q: &str| {
        if !queries.iter().any(|x| x == q) {
            queries.push(q.to_string());
        }
    };
    let demand_query = |id: &str| {
        args.demand_query
            .as_ref()
            .map(|q| q.replace("{cluster}", id))
    };
    if args.input.is_none() {
        for id in &ids {
            if let Some(q) = demand_query(id) {
                want(&q);
            }
        }
    }
    for plan in &plans {
        for c in &plan.clusters {
            for mode in rule_modes(&c.policy()) {
                if let RuleMode::Open(q) = mode {
                    want(&q);
                }
            }
        }
    }
    let mut progress = Progress::new(queries.len() + plans.len());
    let mut answers: HashMap<String, Vec<Sample>> = HashMap::new();
    if !queries.is_empty() {
        let prom = crate::connect::history_prometheus(&config)?;
        for (i, q) in queries.iter().enumerate() {
            tracing::debug!(message = "Range query.", query = %q);
            let samples = fetch(&prom, q, &grid, &mut progress, i).await?;
            answers.insert(q.clone(), samples);
        }
    }

    // Demand per cluster.
    let mut demand: HashMap<String, Vec<(DateTime<Utc>, f64)>> = HashMap::new();
    let demand_source;
    if let Some(path) = &args.input {
        let table = input::read(path)?;
        for unknown in table
            .by_cluster
            .keys()
            .filter(|k| !config.clusters.iter().any(|c| &c.instance_id == *k))
        {
            tracing::warn!(message = "Demand rows for a cluster that is not configured are ignored.", cluster = %unknown, file = %path.display());
        }
        for id in &ids {
            let series = table
                .for_cluster(id)
                .ok_or_else(|| BacktestError::NoDemand {
                    cluster: id.clone(),
                    from: path.display().to_string(),
                })?;
            demand.insert(id.clone(), series);
        }
        demand_source = path.display().to_string();
    } else {
        for id in &ids {
            let q = demand_query(id).unwrap_or_default();
            let series: Vec<(DateTime<Utc>, f64)> = answers
                .get(&q)
                .map(|s| {
                    s.iter()
                        .filter_map(|s| s.value.value().map(|v| (s.at, v.max(0.0))))
                        .collect()
                })
                .unwrap_or_default();
            if series.is_empty() {
                return Err(BacktestError::NoDemand {
                    cluster: id.clone(),
                    from: format!("query {q:?} (no data between --from and --to)"),
                });
            }
            demand.insert(id.clone(), series);
        }
        demand_source = args.demand_query.clone().unwrap_or_default();
    }

    // Replay.
    let mut runs = Vec::with_capacity(plans.len());
    for (p, plan) in plans.iter().enumerate() {
        let mut clusters = Vec::with_capacity(plan.clusters.len());
        for (k, c) in plan.clusters.iter().enumerate() {
            progress.set(
                "replaying",
                queries.len() + p,
                k as i64,
                plan.clusters.len() as i64,
            );
            let policy = c.policy();
            warn_capacity_mismatch(&c.instance_id, &policy, &model);
            let history: Vec<Option<Vec<Sample>>> = rule_modes(&policy)
                .into_iter()
                .map(|m| match m {
                    RuleMode::Open(q) => answers.get(&q).cloned(),
                    _ => None,
                })
                .collect();
            let series = demand.get(&c.instance_id).map(Vec::as_slice).unwrap_or(&[]);
            let input = ClusterInput {
                instance_id: &c.instance_id,
                policy: &policy,
                model,
                initial_task_nodes: args.initial_task_nodes.unwrap_or(c.min_task_nodes),
                demand: series,
                history: &history,
                offerings: &replay_offerings(c, &args.sold_out),
                sold_out_backoff: config.daemon.sold_out_backoff,
            };
            clusters.push(replay(&input, &grid, Detail::Full));
        }
        runs.push(ConfigRun {
            config: plan.path.clone(),
            clusters,
        });
    }
    progress.finish();

    // Outputs.
    let setup = report::Setup {
        grid,
        model,
        demand_source: &demand_source,
    };
    write_outputs(&args.out, &setup, &runs[0], runs.get(1))?;
    if let Some(other) = runs.get(1) {
        write_outputs(&args.out.join("compare"), &setup, other, None)?;
    }
    tracing::info!(message = "Backtest written.", out = %args.out.display());
    Ok(report::table(&grid, &runs.iter().collect::<Vec<_>>()))
}

/// A capacity rule sized for another cluster than the replayed one: its
/// `reserved` against `--base-capacity-mb`, its `per_node` against
/// `--node-memory-mb`. The replay still runs; the figures then say what the
/// rule would do on the simulated cluster.
fn warn_capacity_mismatch(
    cluster: &str,
    policy: &crate::policy::ClusterPolicy,
    model: &crate::replay::Model,
) {
    for rule in &policy.rules {
        let crate::policy::RuleKind::Capacity(c) = &rule.kind else {
            continue;
        };
        if rule.replay_signal != Some(crate::policy::ReplaySignal::DemandMb) {
            continue;
        }
        if (c.reserved - model.base_capacity_mb).abs() > 0.5 {
            tracing::warn!(message = "A capacity rule's reserved differs from the replay's --base-capacity-mb.", cluster = %cluster, rule = %rule.name, reserved = c.reserved, base_capacity_mb = model.base_capacity_mb);
        }
        if (c.per_node - model.node_memory_mb).abs() > 0.5 {
            tracing::warn!(message = "A capacity rule's per_node differs from the replay's --node-memory-mb.", cluster = %cluster, rule = %rule.name, per_node = c.per_node, node_memory_mb = model.node_memory_mb);
        }
    }
}

fn write_outputs(
    dir: &Path,
    setup: &report::Setup<'_>,
    run: &ConfigRun,
    compare: Option<&ConfigRun>,
) -> Result<(), BacktestError> {
    std::fs::create_dir_all(dir).map_err(|e| BacktestError::Io {
        what: format!("cannot create {}", dir.display()),
        reason: e.to_string(),
    })?;
    report::write_timeline_csv(&dir.join("timeline.csv"), run)?;
    report::write_timeline_json(&dir.join("timeline.json"), run)?;
    report::write_summary(&dir.join("summary.json"), setup, run, compare)?;
    let title = match compare {
        Some(other) => format!(
            "backtest of {} against {}: demand vs serving capacity",
            run.config, other.config
        ),
        None => format!("backtest of {}: demand vs serving capacity", run.config),
    };
    chart::write(
        &dir.join("chart.svg"),
        &setup.grid,
        &title,
        &run.clusters,
        compare.map(|c| (c.config.as_str(), c.clusters.as_slice())),
    )?;
    Ok(())
}
