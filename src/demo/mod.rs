//! `emr-autoscaler demo`: the real daemon loop on an accelerated clock, against
//! the in-process EMR simulator and a Prometheus stand-in fed by synthetic
//! demand (the closed-loop replay model). No config, Prometheus or
//! credentials needed.
//!
//! The timeline and summary go to stdout; the daemon's own logs to stderr
//! (warnings only unless `RUST_LOG` says otherwise).

mod offerings;
pub mod prom;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use self::prom::Source;
use crate::clock::{Clock, ScaledClock, SharedClock};
use crate::config::{self, Config};
use crate::daemon::{self, Control, RunOptions};
use crate::replay::{Costs, Model, SyntheticDemand};
use crate::sim::{DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, SimCluster, SimConfig, Simulator};
use crate::tencent::Credentials;

/// The built-in policy: a capacity rule with scale-in.
pub(crate) const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// The previous built-in policy, which the demo's summary compares with.
pub(crate) const PREVIOUS_CONFIG: &str = include_str!("../../docs/demo-previous.toml");

/// Where simulated time starts: a Monday, midnight UTC.
const START: &str = "2026-11-02T00:00:00Z";

/// Options of `demo`.
#[derive(Debug, Clone)]
pub(crate) struct DemoOptions {
    /// The user's config, instead of the built-in policy.
    pub config: Option<PathBuf>,
    /// Simulated seconds per real second; default: `duration` in about 60 s.
    pub speed: Option<f64>,
    /// Simulated time to run.
    pub duration: Duration,
    /// Seed of the synthetic demand.
    pub seed: u64,
    /// Print what `plan` says this far into the day instead of running.
    pub plan_at: Option<Duration>,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Something could not start.
    #[error("{0}")]
    Setup(String),
    /// The daemon stopped with an error.
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
    /// The HTTP client that reads the daemon's status could not be built.
    #[error(transparent)]
    Http(#[from] crate::http::BuildError),
}

/// What the demo ends with.
#[derive(Debug, Clone, Default)]
pub(crate) struct DemoSummary {
    /// Per cluster costs.
    pub clusters: BTreeMap<String, Costs>,
    /// Requests the simulator received, by action.
    pub api_calls: BTreeMap<String, usize>,
    /// The policy replayed (pure replay model) next to another over the
    /// same demand: the previous demo policy for the built-in one, the same
    /// policy without scale-in for a user's policy that enables it.
    pub comparison: Option<Comparison>,
    /// Per cluster with offerings: (offering, node-hours, cost) from the
    /// run, `default` first.
    pub offerings: BTreeMap<String, Vec<(String, f64, Option<f64>)>>,
}

/// Two policies replayed over the demo's demand, side by side.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Comparison {
    /// What the first is.
    pub this_label: String,
    /// The policy the demo ran.
    pub this: crate::backtest::Summary,
    /// What the second is.
    pub other_label: String,
    /// The one it is compared with.
    pub other: crate::backtest::Summary,
}

impl Comparison {
    /// How much fewer node-hours the demo's policy bills, as a fraction of
    /// the other's.
    pub(crate) fn node_hours_saved(&self) -> f64 {
        saved(self.this.node_hours, self.other.node_hours)
    }

    /// How much less unmet demand (GiB·minutes) it leaves, as a fraction.
    pub(crate) fn unmet_saved(&self) -> f64 {
        saved(self.this.unmet_gib_minutes, self.other.unmet_gib_minutes)
    }
}

fn saved(this: f64, other: f64) -> f64 {
    if other > 0.0 { 1.0 - this / other } else { 0.0 }
}

/// Replays every cluster of `config` over its demand from `start` to `end`
/// at 1-minute steps, from `min_task_nodes`, each policy changed by `tweak`.
fn replay_all(
    config: &Config,
    demand: &[SyntheticDemand],
    model: Model,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    sold_out: &[crate::backtest::SoldOut],
    tweak: impl Fn(&mut crate::policy::ClusterPolicy),
) -> crate::backtest::Summary {
    use crate::backtest::{ClusterInput, Detail, Grid, replay};
    let mut sum = crate::backtest::Summary::default();
    let Ok(grid) = Grid::new(start, end, Duration::from_secs(60)) else {
        return sum;
    };
    for (c, d) in config.clusters.iter().zip(demand) {
        let series: Vec<(DateTime<Utc>, f64)> = (0..grid.steps)
            .map(|i| (grid.at(i), d.at(grid.at(i))))
            .collect();
        let mut policy = c.policy();
        tweak(&mut policy);
        let input = ClusterInput {
            instance_id: &c.instance_id,
            policy: &policy,
            model,
            initial_task_nodes: c.min_task_nodes,
            demand: &series,
            history: &[],
            offerings: &crate::backtest::replay_offerings(c, sold_out),
            sold_out_backoff: config.daemon.sold_out_backoff,
        };
        sum.accumulate(&replay(&input, &grid, Detail::Summary).summary);
    }
    sum
}

/// The built-in policy next to the previous demo policy
/// (`docs/demo-previous.toml`) over the same demand.
pub(crate) fn compare_previous(
    config: &Config,
    demand: &[SyntheticDemand],
    model: Model,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Comparison, config::ConfigError> {
    let previous = load(PREVIOUS_CONFIG, &placeholders())?;
    Ok(Comparison {
        this_label: "capacity rule (the demo's policy)".into(),
        this: replay_all(config, demand, model, (start, end), &[], |_| {}),
        other_label: "previous demo policy".into(),
        other: replay_all(&previous, demand, model, (start, end), &[], |_| {}),
    })
}

/// A policy with scale-in next to the same policy without it; `None` when
/// no cluster enables scale-in.
pub(crate) fn compare_scale_in(
    config: &Config,
    demand: &[SyntheticDemand],
    model: Model,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<Comparison> {
    config
        .clusters
        .iter()
        .any(|c| c.scale_in.enabled)
        .then(|| Comparison {
            this_label: "with scale-in".into(),
            this: replay_all(config, demand, model, (start, end), &[], |_| {}),
            other_label: "without scale-in".into(),
            other: replay_all(config, demand, model, (start, end), &[], |p| {
                p.scale_in.enabled = false
            }),
        })
}

/// Stand-ins for what `demo` fills in itself, to load a policy on its own.
fn placeholders() -> [(&'static str, String); 3] {
    [
        ("TENCENT__ENDPOINT", "http://127.0.0.1:9".to_string()),
        ("PROMETHEUS__URL", "http://127.0.0.1:9".to_string()),
        ("DAEMON__LISTEN", "127.0.0.1:0".to_string()),
    ]
}

fn load(text: &str, overrides: &[(&str, String)]) -> Result<Config, config::ConfigError> {
    let env: HashMap<String, String> = overrides
        .iter()
        .map(|(k, v)| (format!("EMR_AUTOSCALER__{k}"), v.clone()))
        .collect();
    config::load_str(text, Some(env))
}

/// Each cluster's synthetic day, and which cluster and signal each rule
/// query stands for.
fn demand_sources(
    shape: &Config,
    seed: u64,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    model: Model,
) -> (
    Vec<Source>,
    HashMap<String, (usize, crate::policy::ReplaySignal)>,
) {
    let mut sources = Vec::new();
    let mut queries = HashMap::new();
    for (i, c) in shape.clusters.iter().enumerate() {
        sources.push(Source {
            instance_id: c.instance_id.clone(),
            demand: prom::Demand::Day(SyntheticDemand::new(
                seed + i as u64,
                start,
                end,
                24.0 * 1024.0,
                240.0 * 1024.0,
            )),
            model,
        });
        for r in &c.rules {
            if let (Some(q), Some(sig)) = (&r.query, r.replay_signal) {
                queries.insert(q.clone(), (i, sig));
            }
        }
    }
    (sources, queries)
}

/// `demo --plan-at`: what `plan` says at `at` into the demo's day, against
/// the simulator and the Prometheus stand-in: `plan` without a cloud
/// account or a Prometheus.
async fn plan_at(
    text: &str,
    shape: &Config,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    at: Duration,
    seed: u64,
    out: &mut (dyn Write + Send),
) -> Result<DemoSummary, DemoError> {
    let now =
        start + chrono::Duration::from_std(at).map_err(|e| DemoError::Setup(e.to_string()))?;
    if now >= end {
        return Err(DemoError::Setup(format!(
            "--plan-at {} is not within the demo's --duration",
            humantime::format_duration(at)
        )));
    }
    let clock: SharedClock = Arc::new(ScaledClock::new(now, 1.0));
    let model = Model::default();
    let sim = Simulator::start(
        SimConfig {
            clusters: shape
                .clusters
                .iter()
                .map(|c| SimCluster::new(c.instance_id.clone()).with_task_nodes(c.min_task_nodes))
                .collect(),
            flow_duration: model.provisioning_delay,
            ..SimConfig::default()
        },
        clock.clone(),
    )
    .await
    .map_err(|e| DemoError::Setup(format!("cannot start the EMR simulator: {e}")))?;
    let sim = Arc::new(sim);
    let (sources, queries) = demand_sources(shape, seed, (start, end), model);
    let prom_addr = prom::serve(clock, sim.clone(), sources, queries)
        .await
        .map_err(|e| DemoError::Setup(format!("cannot start the Prometheus stand-in: {e}")))?;
    let state_dir = tempfile::tempdir()
        .map_err(|e| DemoError::Setup(format!("cannot make a state directory: {e}")))?;
    let config = load(
        text,
        &[
            ("TENCENT__ENDPOINT", sim.endpoint()),
            ("TENCENT__METADATA_URL", "http://127.0.0.1:9".into()),
            ("PROMETHEUS__URL", format!("http://{prom_addr}")),
            ("DAEMON__LISTEN", "127.0.0.1:0".into()),
            ("DAEMON__STATE_DIR", state_dir.path().display().to_string()),
        ],
    )?;
    let credentials = Credentials::new(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, None);
    let (plans, failures) = crate::plan::evaluate_at(&config, now, Some(credentials))
        .await
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let _ = writeln!(
        out,
        "plan at {} of the demo's day, against the EMR simulator and a Prometheus stand-in \
         (synthetic demand, {} task node(s) at min_task_nodes); nothing leaves this machine\n",
        now.format("%a %H:%M UTC"),
        shape.clusters.iter().map(|c| c.min_task_nodes).sum::<u32>()
    );
    crate::plan::print(out, &plans, &failures, false)
        .map_err(|e| DemoError::Setup(format!("cannot print the plan: {e}")))?;
    Ok(DemoSummary::default())
}

fn gib(mb: f64) -> String {
    format!("{:.1} GiB", mb / 1024.0)
}

/// Runs the demo, printing the timeline to `out`.
pub(crate) async fn run(
    options: DemoOptions,
    out: &mut (dyn Write + Send),
) -> Result<DemoSummary, DemoError> {
    let text = match &options.config {
        Some(path) => std::fs::read_to_string(path).map_err(|e| config::ConfigError::Load {
            path: path.clone(),
            reason: e.to_string(),
        })?,
        None => DEMO_CONFIG.to_string(),
    };
    let placeholder = [
        ("TENCENT__ENDPOINT", "http://127.0.0.1:9".to_string()),
        ("PROMETHEUS__URL", "http://127.0.0.1:9".to_string()),
        ("DAEMON__LISTEN", "127.0.0.1:0".to_string()),
        ("DAEMON__ADMIN_TOKEN_FILE", String::new()),
    ];
    let shape = load(&text, &placeholder[..3])?;

    let start: DateTime<Utc> = DateTime::parse_from_rfc3339(START)
        .map_err(|e| DemoError::Setup(e.to_string()))?
        .to_utc();
    let end = start
        + chrono::Duration::from_std(options.duration)
            .map_err(|e| DemoError::Setup(e.to_string()))?;
    if let Some(at) = options.plan_at {
        return plan_at(&text, &shape, (start, end), at, options.seed, out).await;
    }
    let speed = options
        .speed
        .unwrap_or(options.duration.as_secs_f64() / 60.0)
        .max(1.0);
    let scaled = ScaledClock::new(start, speed);
    let clock: SharedClock = Arc::new(scaled.clone());
    let model = Model::default();

    let sim = Simulator::start(
        SimConfig {
            clusters: shape
                .clusters
                .iter()
                .map(|c| SimCluster::new(c.instance_id.clone()).with_task_nodes(c.min_task_nodes))
                .collect(),
            flow_duration: model.provisioning_delay,
            ..SimConfig::default()
        },
        clock.clone(),
    )
    .await
    .map_err(|e| DemoError::Setup(format!("cannot start the EMR simulator: {e}")))?;
    let sim = Arc::new(sim);

    let (sources, queries) = demand_sources(&shape, options.seed, (start, end), model);
    let open_loop: Vec<String> = shape
        .clusters
        .iter()
        .flat_map(|c| {
            c.rules
                .iter()
                .filter(|r| r.query.is_some() && r.replay_signal.is_none())
        })
        .map(|r| r.name.to_string())
        .collect();
    let demand: Vec<SyntheticDemand> = sources
        .iter()
        .filter_map(|s| match &s.demand {
            prom::Demand::Day(d) => Some(d.clone()),
            prom::Demand::Points(_) => None,
        })
        .collect();
    let prom_addr = prom::serve(clock.clone(), sim.clone(), sources, queries)
        .await
        .map_err(|e| DemoError::Setup(format!("cannot start the Prometheus stand-in: {e}")))?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| DemoError::Setup(format!("cannot bind the admin port: {e}")))?;
    let admin = listener
        .local_addr()
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let state_dir = tempfile::tempdir()
        .map_err(|e| DemoError::Setup(format!("cannot make a state directory: {e}")))?;
    let mut config = load(
        &text,
        &[
            ("TENCENT__ENDPOINT", sim.endpoint()),
            ("TENCENT__METADATA_URL", "http://127.0.0.1:9".into()),
            ("PROMETHEUS__URL", format!("http://{prom_addr}")),
            ("DAEMON__LISTEN", admin.to_string()),
            ("DAEMON__STATE_DIR", state_dir.path().display().to_string()),
        ],
    )?;

    let _ = writeln!(
        out,
        "emr-autoscaler demo: {} cluster(s), {} of simulated time at {:.0}x (about {:.0} s)",
        config.clusters.len(),
        humantime::format_duration(options.duration),
        speed,
        options.duration.as_secs_f64() / speed
    );
    let _ = writeln!(out, "  metrics: http://{admin}/metrics");
    let _ = writeln!(out, "  status:  http://{admin}/api/v1/status");
    // The demo orders from its own simulator: a dry run would serve nothing
    // and report all demand as unmet.
    let mut dry: Vec<String> = Vec::new();
    if std::mem::take(&mut config.daemon.dry_run) {
        dry.push("daemon.dry_run".into());
    }
    for c in &mut config.clusters {
        if std::mem::take(&mut c.dry_run) {
            dry.push(format!("{}'s dry_run", c.instance_id));
        }
    }
    if !dry.is_empty() {
        let _ = writeln!(
            out,
            "  note: dry_run is ignored in the demo, which orders from its own simulator ({})",
            dry.join(", ")
        );
    }
    if !open_loop.is_empty() {
        let _ = writeln!(
            out,
            "  note: rules without replay_signal get no data in the demo: {}",
            open_loop.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\n{:<10} {:<14} {:>10} {:>10} {:>6} {:>9}  last decision",
        "time (UTC)", "cluster", "demand", "capacity", "nodes", "in-flight"
    );

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let credentials = Credentials::new(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, None);
    let daemon_task = tokio::spawn(daemon::run(
        RunOptions {
            config_path: options
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from("<built-in demo policy>")),
            reset_state: false,
            ready_file: None,
            credentials: Some(credentials),
        },
        config.clone(),
        clock.clone(),
        listener,
        rx,
    ));

    let http = crate::http::http_client(Duration::from_secs(1), Duration::from_secs(2))?;
    let step = Duration::from_secs(60);
    let mut costs: BTreeMap<String, Costs> = config
        .clusters
        .iter()
        .map(|c| (c.instance_id.clone(), Costs::default()))
        .collect();
    // Every task node is billed: the ones the cluster starts with too.
    let mut billed: BTreeMap<String, u32> = config
        .clusters
        .iter()
        .map(|c| (c.instance_id.clone(), c.min_task_nodes))
        .collect();
    let mut seen_flows = 0usize;
    let mut seen_removals: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen_requests = 0usize;
    let mut books: BTreeMap<String, offerings::Book> = config
        .clusters
        .iter()
        .map(|c| {
            (
                c.instance_id.clone(),
                offerings::Book::new(c.min_task_nodes),
            )
        })
        .collect();
    let mut sold_out_hour =
        offerings::SoldOutHour::of(&config.clusters, start).filter(|h| h.from < end);
    let mut next_row = start;
    loop {
        let now = clock.now();
        if now >= end {
            break;
        }
        if daemon_task.is_finished() {
            break;
        }
        let stamp = format!("{}", now.format("%a %H:%M"));
        if let Some(hour) = sold_out_hour.as_mut()
            && let Some(line) = hour.follow(&sim, now)
        {
            let _ = writeln!(out, "{stamp:<10} {:<14} {line}", hour.cluster);
        }
        // New orders since the last step.
        let starts = sim.ledger().flow_starts();
        let ledger = sim.ledger();
        // Offerings that refused an order since the last step.
        let requests: Vec<&crate::sim::LedgerEntry> = ledger
            .entries()
            .iter()
            .filter(|e| e.action == "ScaleOutCluster")
            .collect();
        for e in requests.iter().skip(seen_requests) {
            let line = config
                .clusters
                .iter()
                .find(|c| e.instance_ids.first() == Some(&c.instance_id))
                .and_then(|c| offerings::refusal_line(c, e).map(|l| (c, l)));
            if let Some((c, line)) = line {
                let _ = writeln!(out, "{stamp:<10} {:<14} {line}", c.instance_id);
            }
        }
        seen_requests = requests.len();
        let removals: BTreeMap<String, Vec<Vec<String>>> = config
            .clusters
            .iter()
            .map(|c| (c.instance_id.clone(), ledger.terminations(&c.instance_id)))
            .collect();
        let new_removal = removals
            .iter()
            .any(|(id, r)| r.len() > seen_removals.get(id).copied().unwrap_or(0));
        let status = if starts.len() > seen_flows || new_removal || now >= next_row {
            fetch_status(&http, admin).await
        } else {
            None
        };
        for f in starts.iter().skip(seen_flows) {
            *billed.entry(f.instance_id.clone()).or_default() += f.task_count;
            let reason = status
                .as_ref()
                .and_then(|s| s.get(&f.instance_id).cloned())
                .map(|(_, _, (order, _))| order)
                .unwrap_or_default();
            let cluster = config.cluster(&f.instance_id);
            let through = ledger
                .entries()
                .iter()
                .find(|e| e.seq == f.seq)
                .zip(cluster)
                .filter(|(e, _)| e.action == "ScaleOutCluster")
                .map(|(e, c)| offerings::offering_of_request(c, e));
            if let Some(book) = books.get_mut(&f.instance_id) {
                book.ordered(
                    through
                        .as_deref()
                        .unwrap_or(crate::history::DEFAULT_OFFERING),
                    f.task_count,
                );
            }
            let _ = writeln!(
                out,
                "{:<10} {:<14} ordered +{}{} (flow {}): {reason}",
                stamp,
                f.instance_id,
                f.task_count,
                through.map_or_else(String::new, |o| format!(" through {o}")),
                f.flow_id
            );
        }
        seen_flows = starts.len();
        for (id, list) in &removals {
            let seen = seen_removals.entry(id.clone()).or_default();
            for nodes in list.iter().skip(*seen) {
                if let Some(book) = books.get_mut(id) {
                    book.removing(nodes);
                }
                let reason = status
                    .as_ref()
                    .and_then(|s| s.get(id).cloned())
                    .map(|(_, _, (_, removal))| removal)
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:<10} {:<14} removing -{} gracefully: {reason}",
                    format!("{}", now.format("%a %H:%M")),
                    id,
                    nodes.len()
                );
            }
            *seen = list.len();
        }
        for (i, c) in config.clusters.iter().enumerate() {
            let snapshot = sim.cluster(&c.instance_id);
            let running = snapshot.as_ref().map_or(0, |s| s.task_nodes);
            // Removed nodes are billed until their graceful flow ends.
            let removed = snapshot.as_ref().map_or(0, |s| s.nodes_removed) as u32;
            if let Some(book) = books.get_mut(&c.instance_id) {
                book.learn(c, &sim);
                book.drained(u64::from(removed));
                book.step(step);
            }
            let signals = model.signals(demand[i].at(now), running);
            if let Some(cost) = costs.get_mut(&c.instance_id) {
                cost.step(
                    &signals,
                    billed
                        .get(&c.instance_id)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(removed),
                    step,
                );
            }
            if now >= next_row {
                let (in_flight, decision, _) = status
                    .as_ref()
                    .and_then(|s| s.get(&c.instance_id).cloned())
                    .unwrap_or((0, "starting".into(), Default::default()));
                let _ = writeln!(
                    out,
                    "{:<10} {:<14} {:>10} {:>10} {:>6} {:>9}  {}",
                    format!("{}", now.format("%a %H:%M")),
                    c.instance_id,
                    gib(signals.demand_mb),
                    gib(signals.capacity_mb),
                    running,
                    in_flight,
                    decision
                );
            }
        }
        if now >= next_row {
            next_row += chrono::Duration::minutes(60);
        }
        tokio::time::sleep(scaled.real(step)).await;
    }
    let _ = tx.send(Control::Stop).await;
    let result = tokio::time::timeout(Duration::from_secs(12), daemon_task).await;
    let ledger = sim.ledger();
    let mut api_calls: BTreeMap<String, usize> = BTreeMap::new();
    for e in ledger.entries() {
        *api_calls.entry(e.action.clone()).or_default() += 1;
    }
    for (id, cost) in &mut costs {
        cost.nodes_added = ledger.nodes_ordered(id) as u32;
    }
    let comparison = if options.config.is_none() {
        Some(compare_previous(&config, &demand, model, start, end)?)
    } else {
        compare_scale_in(&config, &demand, model, start, end)
    };
    let summary = DemoSummary {
        clusters: costs,
        api_calls,
        comparison,
        offerings: config
            .clusters
            .iter()
            .filter(|c| !c.offerings.is_empty())
            .filter_map(|c| {
                books
                    .get(&c.instance_id)
                    .map(|b| (c.instance_id.clone(), b.figures(c)))
            })
            .collect(),
    };
    print_summary(out, &summary);
    match result {
        Ok(Ok(Ok(()))) => Ok(summary),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(e)) => Err(DemoError::Setup(format!("the daemon task failed: {e}"))),
        Err(_) => Err(DemoError::Setup(
            "the daemon did not stop within 12 s".into(),
        )),
    }
}

async fn fetch_status(
    http: &reqwest::Client,
    admin: std::net::SocketAddr,
) -> Option<HashMap<String, (u32, String, (String, String))>> {
    let v: serde_json::Value = http
        .get(format!("http://{admin}/api/v1/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        v["clusters"]
            .as_array()?
            .iter()
            .filter_map(|c| {
                Some((
                    c["instance_id"].as_str()?.to_string(),
                    (
                        c["in_flight"].as_u64().unwrap_or(0) as u32,
                        format!(
                            "{}: {}",
                            c["outcome"].as_str().unwrap_or("-"),
                            c["last_decision"].as_str().unwrap_or("not evaluated yet")
                        ),
                        (
                            c["last_order"]["reason"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            c["last_selection"]["reason"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        ),
                    ),
                ))
            })
            .collect(),
    )
}

fn print_summary(out: &mut (dyn Write + Send), s: &DemoSummary) {
    let total = s.clusters.values().fold(Costs::default(), |mut acc, c| {
        acc.nodes_added += c.nodes_added;
        acc.node_hours += c.node_hours;
        acc.unmet_minutes += c.unmet_minutes;
        acc.unmet_gib_minutes += c.unmet_gib_minutes;
        acc
    });
    let _ = writeln!(out, "\nsummary");
    let _ = writeln!(out, "  nodes added: {}", total.nodes_added);
    let _ = writeln!(out, "  node-hours: {:.1}", total.node_hours);
    let _ = writeln!(
        out,
        "  unmet demand: {:.0} minutes, {:.1} GiB·minutes",
        total.unmet_minutes, total.unmet_gib_minutes
    );
    for (cluster, figures) in &s.offerings {
        let _ = writeln!(out, "  {cluster} per offering:");
        for (name, hours, cost) in figures {
            let _ = writeln!(
                out,
                "    {name:<14} {hours:>7.1} node-hours{}",
                cost.map_or_else(String::new, |c| format!(", cost {c:.2}"))
            );
        }
        let priced: Vec<f64> = figures.iter().filter_map(|f| f.2).collect();
        if !priced.is_empty() {
            let _ = writeln!(
                out,
                "    {:<14} {:>7}   cost {:.2}",
                "priced total",
                "",
                priced.iter().sum::<f64>()
            );
        }
    }
    let calls: Vec<String> = s
        .api_calls
        .iter()
        .map(|(a, n)| format!("{a} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "  API calls: {} ({})",
        s.api_calls.values().sum::<usize>(),
        calls.join(", ")
    );
    if let Some(c) = &s.comparison {
        let _ = writeln!(
            out,
            "  the same day replayed (pure replay model, every task node billed):"
        );
        let width = c.this_label.len().max(c.other_label.len()) + 1;
        for (label, sum) in [(&c.this_label, &c.this), (&c.other_label, &c.other)] {
            let _ = writeln!(
                out,
                "    {:<width$} {:>7.1} node-hours, {:>4.0} unmet minutes, {:>8.1} unmet GiB·minutes ({} added, {} given back)",
                format!("{label}:"),
                sum.node_hours,
                sum.unmet_minutes,
                sum.unmet_gib_minutes,
                sum.nodes_added,
                sum.nodes_removed
            );
        }
        let _ = writeln!(
            out,
            "    {} bills {:.0}% {} node-hours and leaves {:.0}% {} unmet demand than {}",
            c.this_label,
            c.node_hours_saved().abs() * 100.0,
            if c.node_hours_saved() >= 0.0 {
                "fewer"
            } else {
                "more"
            },
            c.unmet_saved().abs() * 100.0,
            if c.unmet_saved() >= 0.0 {
                "less"
            } else {
                "more"
            },
            c.other_label
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in capacity policy against the previous demo policy, over
    /// the demo's day for three seeds: fewer node-hours and less unmet
    /// demand each time.
    #[test]
    fn the_built_in_policy_beats_the_previous_one_on_both_counts() {
        let config = load(DEMO_CONFIG, &placeholders()).unwrap();
        let start = DateTime::parse_from_rfc3339(START).unwrap().to_utc();
        let end = start + chrono::Duration::days(1);
        for seed in [7, 8, 9] {
            let demand: Vec<SyntheticDemand> = (0..config.clusters.len())
                .map(|i| {
                    SyntheticDemand::new(seed + i as u64, start, end, 24.0 * 1024.0, 240.0 * 1024.0)
                })
                .collect();
            let c = compare_previous(&config, &demand, Model::default(), start, end).unwrap();
            eprintln!(
                "seed {seed}: capacity {:.1} h / {:.1} GiB·min, previous {:.1} h / {:.1} GiB·min",
                c.this.node_hours,
                c.this.unmet_gib_minutes,
                c.other.node_hours,
                c.other.unmet_gib_minutes
            );
            assert!(c.this.nodes_removed > 0, "{c:?}");
            assert!(c.node_hours_saved() > 0.0, "{c:?}");
            assert!(c.unmet_saved() > 0.0, "{c:?}");
        }
    }

    /// A user's policy with scale-in is compared with itself without.
    #[test]
    fn a_users_policy_is_compared_with_and_without_scale_in() {
        let config = load(PREVIOUS_CONFIG, &placeholders()).unwrap();
        let start = DateTime::parse_from_rfc3339(START).unwrap().to_utc();
        let end = start + chrono::Duration::days(1);
        let demand = vec![SyntheticDemand::new(
            7,
            start,
            end,
            24.0 * 1024.0,
            240.0 * 1024.0,
        )];
        let c = compare_scale_in(&config, &demand, Model::default(), start, end).unwrap();
        assert_eq!(c.other.nodes_removed, 0);
        assert!(c.this.nodes_removed > 0);
        assert!(c.node_hours_saved() > 0.3, "{c:?}");
    }
}
