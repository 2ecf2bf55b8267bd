//! The command line: subcommands, their arguments, what each one prints and
//! its exit code. The only module that knows clap or `ExitCode`.
//!
//! Exit codes: 0 success, 78 (EX_CONFIG) invalid configuration, 1 anything else.

pub(crate) mod backtest;
pub(crate) mod commands;
pub(crate) mod generate;
pub(crate) mod operator;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_PATH;

/// Exit code for an invalid configuration (sysexits EX_CONFIG).
pub(crate) const EX_CONFIG: u8 = 78;

/// Keeps Tencent Cloud EMR clusters sized to their YARN load.
///
/// Reads load metrics from Prometheus, decides how many task nodes to add or
/// give back and why, and calls the EMR API's ScaleOutInstance (and, where
/// scale-in is enabled, TerminateClusterNodes with graceful decommission),
/// never more than 20 times a second per action and never twice for one
/// decision.
#[derive(Debug, Parser)]
#[command(name = "emr-autoscaler", version, about, long_about)]
pub(crate) struct Cli {
    /// Log format on stderr. The level comes from RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormat> for crate::telemetry::logging::Format {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Text => Self::Text,
            LogFormat::Json => Self::Json,
        }
    }
}

/// Parses the command line, sets up logging and runs the subcommand.
pub fn dispatch() -> ExitCode {
    use clap::Parser as _;
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let quiet = matches!(cli.command, Command::Demo(_));
    crate::telemetry::logging::init(cli.log_format.into(), if quiet { "warn" } else { "info" });
    match cli.command {
        Command::Check(args) => commands::check(&args.config),
        Command::Run(args) => daemon_runtime().block_on(commands::run(args)),
        Command::Demo(args) => runtime().block_on(commands::demo(args)),
        Command::Plan(args) => runtime().block_on(commands::plan(args)),
        Command::ScaleOut(args) => runtime().block_on(commands::scale_out(args)),
        Command::ScaleIn(args) => runtime().block_on(commands::scale_in(args)),
        Command::Sim(args) => runtime().block_on(commands::sim(args)),
        Command::Status(args) => runtime().block_on(operator::status(args)),
        Command::History(args) => runtime().block_on(operator::history(args)),
        Command::Pause(args) => runtime().block_on(operator::switch(args, true)),
        Command::Resume(args) => runtime().block_on(operator::switch(args, false)),
        Command::Generate(args) => commands::generate(&args),
        Command::Backtest(args) => runtime().block_on(commands::backtest(args)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// Worker threads of the daemon's runtime, at most.
const DAEMON_WORKERS: usize = 2;

/// The daemon's runtime: at most [`DAEMON_WORKERS`] worker threads, not one
/// per core. The daemon mostly waits on sockets and timers (500 clusters
/// take about 1% of a core), and every further worker is an idle thread with
/// its own stack and, under glibc, its own malloc arena: resident memory that
/// grows with the host's core count. `TOKIO_WORKER_THREADS`, when set,
/// still decides.
fn daemon_runtime() -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        builder.worker_threads(cores.min(DAEMON_WORKERS));
    }
    builder
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// The config file argument every subcommand shares.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConfigArg {
    /// Configuration file (TOML). EMR_AUTOSCALER__SECTION__KEY variables override it.
    #[arg(long, short = 'c', default_value = DEFAULT_PATH, value_name = "PATH")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon: evaluate every cluster each interval, scale out and,
    /// where enabled, scale in.
    ///
    /// Serves /metrics, /healthz, /readyz and /api/v1/status on daemon.listen.
    /// SIGHUP reloads the configuration (an invalid one is refused and the
    /// running one kept); SIGTERM or SIGINT stops gracefully.
    Run(RunArgs),
    /// A self-contained simulation: the real daemon loop on an accelerated
    /// clock against a simulated EMR API and synthetic YARN demand.
    ///
    /// Needs no config, no Prometheus and no credentials. Prints a timeline of
    /// demand, task nodes and decisions, and ends with a summary of nodes
    /// added, node-hours, unmet demand and API calls.
    Demo(DemoArgs),
    /// Evaluate every cluster once against live Prometheus and the EMR read
    /// APIs and print what the daemon would do now. Sends nothing.
    ///
    /// Sustain windows (`for`) are judged with range queries. Exits 1 when a
    /// query fails, naming the rule.
    Plan(PlanArgs),
    /// Validate a configuration file and print every problem with its key path.
    ///
    /// Exits 0 when the file is valid and 78 when it is not.
    Check(ConfigArg),
    /// Add nodes to one cluster by hand, through the daemon's own client,
    /// limiter and retry path.
    ///
    /// The request template comes from the [[clusters]] entry with this
    /// instance_id. Prints the API response as JSON on stdout.
    ScaleOut(ScaleOutArgs),
    /// Give task nodes back by hand, gracefully, through the daemon's own
    /// client, limiter and operation.
    ///
    /// The nodes are picked by the cluster's scale-in rules: only eligible
    /// task nodes (pay-as-you-go, destroyable, unprotected, not created by
    /// Tencent's own auto-scaling, carrying the owner tag with nodes =
    /// "ours"), newest first, or with a ResourceManager configured, idle
    /// nodes first and ApplicationMaster hosts last. Never below
    /// min_task_nodes. Prints the API response as JSON, with the nodes named.
    ScaleIn(ScaleInArgs),
    /// Show what the running daemon sees: one line per cluster with its task
    /// nodes, nodes in flight, last decision, and whether it is paused, its
    /// breaker open or held by Tencent's own auto-scaling.
    ///
    /// Finds the daemon at state_dir/admin.addr (with [ha], the leader).
    /// Exits 1 when no daemon answers.
    Status(StatusArgs),
    /// Show what the daemon did and why: orders, removals, refusals, breaker
    /// trips, conflicts, pauses, resumes and lost nodes, newest first.
    ///
    /// Asks the running daemon; when none answers, reads state_dir/history.jsonl
    /// (with [ha], etcd) directly.
    History(HistoryArgs),
    /// Pause one cluster in the running daemon: nothing is ordered or
    /// removed until `resume`. An operation in progress stops before its next
    /// chunk. Exits 1 when no daemon answers.
    Pause(SwitchArgs),
    /// Resume a paused cluster in the running daemon (and close its breaker).
    /// Exits 1 when no daemon answers.
    Resume(SwitchArgs),
    /// Serve a simulated EMR API on loopback, for trying configurations
    /// without a cloud account.
    ///
    /// It speaks the real wire protocol, checks TC3 signatures, deduplicates
    /// ClientTokens for 5 minutes and limits each action to 20 requests per
    /// second. Keys come from TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY
    /// when set; otherwise the built-in simulator keys are accepted
    /// (SecretId AKIDSIMULATOR00000000000000000000000, SecretKey
    /// simulator-secret-key-000000000000). Prints the endpoint on stdout and
    /// runs until SIGINT or SIGTERM.
    Sim(SimArgs),
    /// Write manual pages or a shell completion script into a directory, for
    /// packaging.
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
    /// Replay history through the policies on a simulated cluster, closed
    /// loop, and report nodes added, node-hours and unmet demand.
    ///
    /// Demand comes from --demand-query (Prometheus) or --input (CSV); each
    /// ordered node serves after --provisioning-delay. Rules with
    /// replay_signal see the simulated signal; other query rules see their
    /// recorded history and are reported as open loop. Writes timeline.csv,
    /// timeline.json, summary.json and chart.svg into --out and prints a
    /// summary table. Exits 0, 78 for an invalid configuration, 1 otherwise.
    Backtest(backtest::BacktestArgs),
}

/// Arguments of `status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the daemon's /api/v1/status JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// One cluster's events only (emr-xxxxxxxx).
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub limit: u64,
    /// Print {"events": [...]} as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `pause` and `resume`.
#[derive(Debug, Args)]
pub(crate) struct SwitchArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The cluster, as configured (emr-xxxxxxxx).
    #[arg(long, value_name = "ID")]
    pub instance_id: String,
}

/// Arguments of `sim`.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Address to listen on; must be loopback. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Simulated clusters (emr-xxxxxxxx), comma separated or repeated.
    #[arg(
        long = "cluster",
        value_delimiter = ',',
        default_value = "emr-abc12345",
        value_name = "ID"
    )]
    pub clusters: Vec<String>,
    /// Task nodes each cluster starts with.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub task_nodes: u32,
    /// How long a scale-out flow takes to provision its nodes.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DUR")]
    pub flow_duration: std::time::Duration,
    /// Probability (0 to 1) that a request gets a random fault.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_probability: f64,
    /// Seed for random faults; printed when chosen at random.
    #[arg(long, value_name = "SEED")]
    pub fault_seed: Option<u64>,
}

/// Arguments of `plan`.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Run your own policies (the [[clusters]] rules of this file) against the
    /// synthetic demand instead of the built-in example. Rules read the
    /// simulated signal named by their `replay_signal`.
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Simulated seconds per real second (default: the whole run in about 60 s).
    #[arg(long, value_name = "X")]
    pub speed: Option<f64>,
    /// Simulated time to run.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration, value_name = "DUR")]
    pub duration: std::time::Duration,
    /// Seed of the synthetic demand's bursts.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Instead of running, print what `plan` says this far into the demo's
    /// day (e.g. 14h), against the simulator and the Prometheus stand-in:
    /// `plan` with your rules (--config) and no cloud account.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
    pub plan_at: Option<std::time::Duration>,
}

/// Arguments of `run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Move an unreadable state file aside (state.json.corrupt-<time>) and start
    /// with empty state, instead of refusing to start.
    #[arg(long)]
    pub reset_state: bool,
    /// Once the admin listener is bound, write its address (127.0.0.1:PORT)
    /// to this file, as one line, atomically (PATH.tmp, then rename).
    ///
    /// With `listen = "127.0.0.1:0"` the system picks the port; read it here.
    /// Wait for the file to appear to know the daemon serves /healthz.
    /// The daemon exits 1 if it cannot write the file.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// Arguments of `scale-in`.
#[derive(Debug, Args)]
pub(crate) struct ScaleInArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The cluster, as configured (emr-xxxxxxxx).
    #[arg(long, value_name = "ID")]
    pub instance_id: String,
    /// Task nodes to give back, 1 to 100.
    #[arg(long, value_name = "N")]
    pub count: u32,
    /// Pick the nodes and print the request (signature masked); send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `scale-out`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("count").required(true).args(["task_count", "core_count"])))]
pub(crate) struct ScaleOutArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The cluster, as configured (emr-xxxxxxxx).
    #[arg(long, value_name = "ID")]
    pub instance_id: String,
    /// Task nodes to add, 1 to 20.
    #[arg(long, value_name = "N")]
    pub task_count: Option<u32>,
    /// Core nodes to add, 1 to 20.
    #[arg(long, value_name = "N")]
    pub core_count: Option<u32>,
    /// Print the signed request (signature and token masked) and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}
