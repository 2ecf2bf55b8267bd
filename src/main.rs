//! The `emr-autoscaler` binary: everything happens in [`emr_autoscaler::cli`].

fn main() -> std::process::ExitCode {
    emr_autoscaler::cli::dispatch()
}
