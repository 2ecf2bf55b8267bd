//! The `backtest` subcommand's arguments, and the replay options they
//! describe.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;

use super::ConfigArg;
use crate::backtest::BacktestOptions;
use crate::replay::Model;

fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|e| format!("{e}; write e.g. 2026-11-02T00:00:00Z"))
}

fn megabytes(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("must be a number of MB, at least 0".into()),
    }
}

fn positive_megabytes(text: &str) -> Result<f64, String> {
    match megabytes(text) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err("must be a number of MB above 0".into()),
    }
}

/// `NAME@FROM/TO`: an offering sold out from FROM to TO (RFC 3339).
fn sold_out(text: &str) -> Result<crate::backtest::SoldOut, String> {
    let shape = || {
        format!(
            "{text:?} is not NAME@FROM/TO, e.g. s5-gz6@2026-12-01T09:00:00Z/2026-12-01T10:00:00Z"
        )
    };
    let (name, window) = text.split_once('@').ok_or_else(shape)?;
    let (from, to) = window.split_once('/').ok_or_else(shape)?;
    let (from, to) = (rfc3339(from)?, rfc3339(to)?);
    if name.is_empty() {
        return Err(shape());
    }
    if to <= from {
        return Err(format!("{text:?}: the window ends before it starts"));
    }
    Ok(crate::backtest::SoldOut {
        offering: name.to_string(),
        from,
        to,
    })
}

/// Arguments of `backtest`.
///
/// Replays history through the configured policies on a simulated cluster,
/// closed loop: demand (YARN memory asked for, allocated plus pending) is
/// taken from Prometheus or a CSV file, capacity is simulated (base capacity
/// plus task nodes, each ordered node serving after the provisioning delay),
/// and a rule declared with `replay_signal` sees the simulated pending
/// memory, available memory, utilisation or demand. Any other rule with a
/// query sees its own recorded history and is reported as open loop. A
/// capacity rule's automatic trend_horizon is twice --provisioning-delay.
/// Pause, breaker and dry-run do not apply.
///
/// Writes timeline.csv, timeline.json, summary.json and chart.svg into
/// --out and prints a summary table on stdout.
#[derive(Debug, Args)]
pub(crate) struct BacktestArgs {
    #[command(flatten)]
    /// The configuration whose clusters and rules are replayed.
    pub config: ConfigArg,
    /// Start of the replayed window (RFC3339, e.g. 2026-11-02T00:00:00Z).
    #[arg(long, value_parser = rfc3339, value_name = "RFC3339")]
    pub from: DateTime<Utc>,
    /// End of the replayed window (RFC3339); the last step ends at or before it.
    #[arg(long, value_parser = rfc3339, value_name = "RFC3339")]
    pub to: DateTime<Utc>,
    /// Distance between evaluations, like the daemon's evaluation_interval
    /// (whole seconds). Sustain windows judge gaps against 2.5 × step.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, value_name = "DUR")]
    pub step: Duration,
    /// Demand from a CSV file instead of Prometheus: lines of
    /// `timestamp,demand_mb[,cluster]`, timestamps RFC3339 or Unix seconds,
    /// header optional. A row without a cluster applies to every cluster.
    /// Between rows the last value holds.
    #[arg(long, value_name = "FILE", conflicts_with = "demand_query")]
    pub input: Option<PathBuf>,
    /// PromQL for demand in MB, e.g.
    /// 'sum(yarn_allocated_mb{cluster="{cluster}"}) + sum(yarn_pending_mb{cluster="{cluster}"})'.
    /// `{cluster}` is replaced by each cluster's instance_id. Required unless
    /// --input is given. Prometheus is [prometheus] url of the config.
    #[arg(long, value_name = "PROMQL", required_unless_present = "input")]
    pub demand_query: Option<String>,
    /// Where the outputs go (created if missing; files are overwritten).
    #[arg(long, default_value = "./backtest-out", value_name = "DIR")]
    pub out: PathBuf,
    /// A second configuration to run the same demand through; both summaries
    /// are printed side by side and its outputs go to <out>/compare.
    #[arg(long, value_name = "PATH")]
    pub compare: Option<PathBuf>,
    /// Replay only these clusters (instance_id, comma separated or repeated).
    /// Default: every configured cluster.
    #[arg(long = "cluster", value_delimiter = ',', value_name = "ID")]
    pub clusters: Vec<String>,
    /// Memory the core nodes give YARN, MB.
    #[arg(long, default_value_t = Model::default().base_capacity_mb, value_parser = megabytes, value_name = "MB")]
    pub base_capacity_mb: f64,
    /// Memory one task node gives YARN, MB.
    #[arg(long, default_value_t = Model::default().node_memory_mb, value_parser = positive_megabytes, value_name = "MB")]
    pub node_memory_mb: f64,
    /// Time from a chunk's order to its nodes serving. Chunks of one
    /// operation follow each other, each one delay after the previous.
    #[arg(long, default_value = "4m", value_parser = humantime::parse_duration, value_name = "DUR")]
    pub provisioning_delay: Duration,
    /// Task nodes serving at --from. Default: each cluster's min_task_nodes.
    /// Node-hours count every billed task node, these included.
    #[arg(long, value_name = "N")]
    pub initial_task_nodes: Option<u32>,
    /// An offering sold out for a window: NAME@FROM/TO (RFC 3339), repeatable.
    /// Orders then go to the next offering, as the daemon's do.
    #[arg(long = "sold-out", value_parser = sold_out, value_name = "NAME@FROM/TO")]
    pub sold_out: Vec<crate::backtest::SoldOut>,
}

impl BacktestArgs {
    /// The replay these arguments describe.
    pub(crate) fn options(self) -> BacktestOptions {
        BacktestOptions {
            model: Model {
                base_capacity_mb: self.base_capacity_mb,
                node_memory_mb: self.node_memory_mb,
                provisioning_delay: self.provisioning_delay,
            },
            config: self.config.config,
            from: self.from,
            to: self.to,
            step: self.step,
            input: self.input,
            demand_query: self.demand_query,
            out: self.out,
            compare: self.compare,
            clusters: self.clusters,
            initial_task_nodes: self.initial_task_nodes,
            sold_out: self.sold_out,
        }
    }
}
