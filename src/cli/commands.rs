//! What each subcommand does, on top of the library: what it prints and
//! which exit code it ends with.
//!
//! Results go to stdout; logs and diagnostics to stderr.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use super::{DemoArgs, EX_CONFIG, PlanArgs, RunArgs, ScaleInArgs, ScaleOutArgs, SimArgs};
use crate::config::{self, ConfigError};
use crate::daemon::owners::{Ask, Reply};
use crate::tencent::ClientToken;
use crate::tencent::emr::{Action, ScaleOutInstanceRequest};

pub(super) fn report_config_error(e: &ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EX_CONFIG)
}

/// `run`: the daemon, until SIGTERM/SIGINT.
pub(crate) async fn run(args: RunArgs) -> ExitCode {
    let options = crate::daemon::RunOptions {
        config_path: args.config.config,
        reset_state: args.reset_state,
        ready_file: args.ready_file,
        credentials: None,
    };
    let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
    match crate::daemon::run_until_signalled(options, clock).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(crate::daemon::DaemonError::Config(e)) => report_config_error(&e),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `demo`: the self-contained simulation.
pub(crate) async fn demo(args: DemoArgs) -> ExitCode {
    let options = crate::demo::DemoOptions {
        config: args.config,
        speed: args.speed,
        duration: args.duration,
        seed: args.seed,
        plan_at: args.plan_at,
    };
    let mut out = std::io::stdout();
    match crate::demo::run(options, &mut out).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(crate::demo::DemoError::Config(e)) => report_config_error(&e),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `plan`: what the daemon would do now; exits 1 when a query fails.
pub(crate) async fn plan(args: PlanArgs) -> ExitCode {
    let config = match config::load(&args.config.config) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    let (plans, failures) = match crate::plan::evaluate(&config).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = crate::plan::print(&mut out, &plans, &failures, args.json) {
        eprintln!("error: cannot write the plan: {e}");
        return ExitCode::FAILURE;
    }
    for f in &failures {
        eprintln!("error: cluster {} rule {}: {}", f.cluster, f.rule, f.reason);
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `check`: prints every problem, or a one-line summary.
pub(crate) fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            for note in &c.notes {
                println!("note: {note}");
            }
            let mut invalid = Vec::new();
            for (i, w) in c.notify.webhooks.iter().enumerate() {
                match crate::webhook::check(w) {
                    Ok(()) => {}
                    Err(crate::webhook::FileProblem::Unreadable(e)) => {
                        println!(
                            "note: notify.webhooks[{i}]: {e}; the daemon must be able to read it"
                        );
                    }
                    Err(crate::webhook::FileProblem::Invalid(e)) => {
                        invalid.push(format!("notify.webhooks[{i}].url_file: {e}"));
                    }
                }
            }
            if !invalid.is_empty() {
                println!("{}: {} problem(s)", path.display(), invalid.len());
                for problem in &invalid {
                    println!("{problem}");
                }
                return ExitCode::from(EX_CONFIG);
            }
            println!("{}: OK ({} cluster(s))", path.display(), c.clusters.len());
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid { path, issues }) => {
            println!("{}: {} problem(s)", path.display(), issues.len());
            for issue in &issues {
                println!("{issue}");
            }
            ExitCode::from(EX_CONFIG)
        }
        Err(e) => report_config_error(&e),
    }
}

/// The configuration at `path`, when it is valid and names `instance_id`;
/// otherwise the error is printed and the exit code returned.
fn configured(path: &std::path::Path, instance_id: &str) -> Result<config::Config, ExitCode> {
    let config = config::load(path).map_err(|e| report_config_error(&e))?;
    if config.cluster(instance_id).is_none() {
        eprintln!(
            "error: {instance_id} is not configured in {}; configured: {}",
            path.display(),
            config
                .clusters
                .iter()
                .map(|c| c.instance_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Err(ExitCode::from(EX_CONFIG));
    }
    Ok(config)
}

/// `scale-out`: one manual order through the daemon's client path.
pub(crate) async fn scale_out(args: ScaleOutArgs) -> ExitCode {
    let config = match configured(&args.config.config, &args.instance_id) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(cluster) = config.cluster(&args.instance_id) else {
        return ExitCode::from(EX_CONFIG);
    };
    for (flag, value) in [
        ("--task-count", args.task_count),
        ("--core-count", args.core_count),
    ] {
        if let Some(n) = value
            && !(1..=20).contains(&n)
        {
            eprintln!(
                "error: {flag} {n} is outside 1..=20; one request adds 1 to 20 nodes. Nothing was sent."
            );
            return ExitCode::FAILURE;
        }
    }
    let request = ScaleOutInstanceRequest {
        task_count: args.task_count,
        core_count: args.core_count,
        ..cluster.scale_out.clone()
    };
    if let Err(e) = request.preflight() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let kind = if args.core_count.is_some() {
        crate::state::NodeKind::Core
    } else {
        crate::state::NodeKind::Task
    };
    let count = request.task_count.or(request.core_count).unwrap_or(0);
    if args.dry_run {
        let client = match crate::connect::Connections::new(&config, None)
            .and_then(|c| c.emr_quiet(&config))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        };
        let request = ScaleOutInstanceRequest {
            client_token: Some(ClientToken::generate().value),
            ..request
        };
        let mut shown = client.render(Action::ScaleOutInstance, &request).await;
        if let Some(body) = shown.body.as_object_mut()
            && body.contains_key("ClientToken")
        {
            body.insert("ClientToken".into(), "<redacted>".into());
        }
        return print_json(&serde_json::json!({ "DryRun": true, "Request": shown }));
    }
    let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
    let reply = match crate::daemon::manual::order(
        &config,
        &args.instance_id,
        Ask::ScaleOut { kind, count },
        clock,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_reply(&reply)
}

/// `sim`: serves the simulator until SIGINT or SIGTERM.
pub(crate) async fn sim(args: SimArgs) -> ExitCode {
    use crate::sim::{SimCluster, SimConfig, Simulator};
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "error: --listen {} is not a loopback address; the simulator serves loopback only",
            args.listen
        );
        return ExitCode::FAILURE;
    }
    let mut config = SimConfig {
        clusters: args
            .clusters
            .iter()
            .map(|id| SimCluster::new(id.clone()).with_task_nodes(args.task_nodes))
            .collect(),
        flow_duration: args.flow_duration,
        fault_probability: args.fault_probability,
        fault_seed: Some(args.fault_seed.unwrap_or_else(|| fastrand::u64(..))),
        ..SimConfig::default()
    };
    if let (Ok(id), Ok(key)) = (
        std::env::var("TENCENTCLOUD_SECRET_ID"),
        std::env::var("TENCENTCLOUD_SECRET_KEY"),
    ) {
        config.credentials = vec![(id, key)];
    }
    let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
    let handle = match Simulator::start_on(args.listen, config, clock).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        message = "Simulator listening.",
        endpoint = %handle.endpoint(),
        clusters = %args.clusters.join(","),
        fault_seed = ?args.fault_seed,
    );
    println!("{}", handle.endpoint());
    crate::shutdown::signal().await;
    handle.shutdown().await;
    ExitCode::SUCCESS
}

/// `backtest`: runs, prints the summary table; 78 when a configuration is
/// at fault.
pub(crate) async fn backtest(args: super::backtest::BacktestArgs) -> ExitCode {
    match crate::backtest::run(&args.options()).await {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_config() {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `generate`: writes the artifact and prints the paths written.
pub(crate) fn generate(args: &super::generate::GenerateArgs) -> ExitCode {
    match super::generate::write(args.what, &args.out_dir) {
        Ok(paths) => {
            let mut out = std::io::stdout().lock();
            for p in paths {
                let _ = writeln!(out, "{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: writing into {}: {e}", args.out_dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Prints an order's answer: the JSON on success, else the error with its
/// class, code and ids; 78 for an unknown cluster.
pub(super) fn print_reply(reply: &Reply) -> ExitCode {
    match reply.status {
        200 => print_json(&reply.body),
        status => {
            let field = |k: &str| {
                reply.body[k]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| "-".into())
            };
            eprintln!("error: {}", field("error"));
            // Under dry_run the answer carries the request that was not sent.
            if let Some(request) = reply.body.get("Request") {
                let _ = print_json(request);
            }
            if reply.body.get("class").is_some() {
                eprintln!(
                    "  class: {}  code: {}  request id: {}  client token: {}",
                    field("class"),
                    field("Code"),
                    field("RequestId"),
                    field("ClientToken")
                );
            }
            if status == 404 {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `scale-in`: one manual graceful removal through the daemon's path.
pub(crate) async fn scale_in(args: ScaleInArgs) -> ExitCode {
    let config = match configured(&args.config.config, &args.instance_id) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(cluster) = config.cluster(&args.instance_id) else {
        return ExitCode::from(EX_CONFIG);
    };
    let max = crate::daemon::admin::MAX_MANUAL_REMOVAL;
    if !(1..=max).contains(&args.count) {
        eprintln!(
            "error: --count {} is outside 1..={max}. Nothing was sent.",
            args.count
        );
        return ExitCode::FAILURE;
    }
    if args.dry_run {
        let client = match crate::connect::Connections::new(&config, None)
            .and_then(|c| c.emr_quiet(&config))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        };
        let listed = match client.task_nodes(&args.instance_id).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot read the node list: {e}");
                return ExitCode::FAILURE;
            }
        };
        let nodes: Vec<crate::policy::scale_in::Node> = listed
            .iter()
            .map(crate::policy::scale_in::Node::from)
            .collect();
        let selection =
            crate::policy::scale_in::select(&nodes, &cluster.scale_in.scope, None, &[], args.count);
        let request = crate::tencent::emr::TerminateClusterNodesRequest::graceful(
            &args.instance_id,
            selection.ids(),
            cluster.scale_in.grace_period,
        );
        let shown = client
            .render(crate::tencent::emr::Action::TerminateClusterNodes, &request)
            .await;
        let passed: Vec<serde_json::Value> = selection
            .passed_over
            .iter()
            .map(|(n, w)| serde_json::json!({"node": n, "why": w.to_string()}))
            .collect();
        return print_json(&serde_json::json!({
            "DryRun": true,
            "Request": shown,
            "Preflight": request.preflight().err().map(|e| e.to_string()),
            "PassedOver": passed,
            "Note": "without the ResourceManager: a running daemon with [clusters.yarn] also ranks by YARN",
        }));
    }
    let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
    match crate::daemon::manual::order(
        &config,
        &args.instance_id,
        Ask::ScaleIn { count: args.count },
        clock,
    )
    .await
    {
        Ok(reply) => print_reply(&reply),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn print_json(value: &serde_json::Value) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer_pretty(&mut out, value)
        .and_then(|_| writeln!(out).map_err(serde_json::Error::io))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the result: {e}");
            ExitCode::FAILURE
        }
    }
}
