//! The `emr-autoscaler` binary: parses the command line, sets up logging and
//! hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use emr_autoscaler::cli::{Cli, Command};
use emr_autoscaler::{commands, telemetry};

fn main() -> ExitCode {
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
    telemetry::logging::init(cli.log_format, if quiet { "warn" } else { "info" });
    match cli.command {
        Command::Check(args) => commands::check(&args.config),
        Command::Run(args) => runtime().block_on(commands::run(args)),
        Command::Demo(args) => runtime().block_on(commands::demo(args)),
        Command::Plan(args) => runtime().block_on(commands::plan(args)),
        Command::ScaleOut(args) => runtime().block_on(commands::scale_out(args)),
        Command::Sim(args) => runtime().block_on(commands::sim(args)),
        Command::Generate(args) => emr_autoscaler::generate::run(&args),
        Command::Backtest(args) => runtime().block_on(emr_autoscaler::backtest::command(args)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}
