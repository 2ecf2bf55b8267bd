//! The hidden `generate` subcommand: manual pages and shell completions,
//! rendered from the same clap definitions as `--help`, for packages to
//! install.
//!
//! `emr-autoscaler generate man --out-dir DIR` writes `emr-autoscaler.1` and
//! one page per visible subcommand (`emr-autoscaler-run.1`, ...);
//! `generate bash|zsh|fish --out-dir DIR` writes `emr-autoscaler.bash`,
//! `_emr-autoscaler` or `emr-autoscaler.fish`; `generate demand-week` writes
//! the synthetic week of demand `docs/demand-week.csv` holds. The paths
//! written are printed on stdout, one per line.

use std::io;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::Cli;

/// The installed name of the binary.
pub(crate) const BIN_NAME: &str = "emr-autoscaler";

/// What `generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Artifact {
    /// Manual pages: emr-autoscaler.1 and one page per subcommand.
    Man,
    /// The bash completion script (emr-autoscaler.bash).
    Bash,
    /// The zsh completion function (_emr-autoscaler).
    Zsh,
    /// The fish completion script (emr-autoscaler.fish).
    Fish,
    /// The synthetic week of YARN demand the README's capacity figures are
    /// judged on (demand-week.csv, as in docs/).
    DemandWeek,
}

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    pub what: Artifact,
    /// Directory to write into; created when missing.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

/// Writes `what` into `out_dir` (created when missing) and returns the files
/// written.
pub(crate) fn write(what: Artifact, out_dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir)?;
    let shell = match what {
        Artifact::Man => return man_pages(out_dir),
        Artifact::Bash => Shell::Bash,
        Artifact::Zsh => Shell::Zsh,
        Artifact::Fish => Shell::Fish,
        Artifact::DemandWeek => {
            use crate::replay::week;
            let start = chrono::DateTime::parse_from_rfc3339(week::START)
                .map_err(io::Error::other)?
                .to_utc();
            let path = out_dir.join("demand-week.csv");
            std::fs::write(&path, week::csv(&week::week(week::SEED, start)))?;
            return Ok(vec![path]);
        }
    };
    let mut cmd = visible_command();
    let path = clap_complete::generate_to(shell, &mut cmd, BIN_NAME, out_dir)?;
    if shell == Shell::Bash {
        let script = std::fs::read_to_string(&path)?;
        std::fs::write(&path, mend_bash(&script))?;
    }
    Ok(vec![path])
}

/// clap_complete names the subcommands' `case` labels after the binary with
/// its hyphen escaped once more than the `cmd` values they must match
/// (`emr__subcmd__autoscaler__subcmd__run` against
/// `emr__autoscaler__subcmd__run`), so no subcommand's options would ever
/// complete. The labels are written as the values.
fn mend_bash(script: &str) -> String {
    let escaped = BIN_NAME.replace('-', "__");
    let doubled = BIN_NAME.replace('-', "__subcmd__");
    script.replace(
        &format!("{doubled}__subcmd__"),
        &format!("{escaped}__subcmd__"),
    )
}

/// The command line without its hidden subcommands: the completion
/// generators would otherwise offer them.
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new(BIN_NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(full.is_subcommand_required_set())
        .arg_required_else_help(full.is_arg_required_else_help_set());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    for arg in full.get_arguments() {
        cmd = cmd.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

/// The main page, with the sections clap knows nothing about, then a page per
/// visible subcommand.
fn man_pages(out_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let main = out_dir.join(format!("{BIN_NAME}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    page.extend_from_slice(MAIN_PAGE_EXTRA.as_bytes());
    std::fs::write(&main, page)?;
    let mut written = vec![main];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(clap_mangen::Man::new(sub.clone()).generate_to(out_dir)?);
    }
    Ok(written)
}

/// Sections appended to `emr-autoscaler(1)`, in roff.
const MAIN_PAGE_EXTRA: &str = r#".SH RULES
Each \fB[[clusters.rules]]\fR has a \fBtype\fR:
.TP
.B capacity
Sizes the cluster from demand (YARN allocated plus pending memory): \fIdesired\fR = ceil((\fIdemand\fR + max(\fBheadroom\fR, \fBtrend_horizon\fR \(mu \fIgrowth\fR) \- \fBreserved\fR) / \fBper_node\fR), where \fIgrowth\fR is the demand's slope over \fBtrend_window\fR (default 3m) and \fBtrend_horizon\fR defaults to "auto", twice the cluster's median scale-out time. Orders the difference once demand plus the larger of \fBheadroom\fR and half the look-ahead (one scale-out of growth) outgrows the running and in-flight task nodes and, with scale-in on, gives back nodes once the largest desired count of the stabilization window allows. The recommended rule.
.TP
.B target
Holds a value at a target (ratio form, \fBtarget\fR) or sizes to pending work (demand form, \fBper_node\fR).
.TP
.B threshold
Adds (or with \fBremove\fR gives back) nodes when a value stays past \fBabove\fR or \fBbelow\fR \fBfor\fR a while.
.TP
.B schedule
Holds a floor of task nodes while a cron window is open.
.PP
\fBcheck\fR validates every key with its path; config/example.toml documents them.
.SH "EXIT STATUS"
.TP
.B 0
Success; also a graceful stop of \fBrun\fR on SIGTERM or SIGINT.
.TP
.B 78
The configuration is invalid (EX_CONFIG). \fBcheck\fR prints every problem with its key path.
.TP
.B 1
Any other failure.
.SH ENVIRONMENT
.TP
.B EMR_AUTOSCALER__SECTION__KEY
Overrides a configuration key, e.g. \fBEMR_AUTOSCALER__TENCENT__ENDPOINT\fR replaces \fB[tencent] endpoint\fR.
.TP
.BR TENCENTCLOUD_SECRET_ID ", " TENCENTCLOUD_SECRET_KEY ", " TENCENTCLOUD_TOKEN
API keys, tried first; the token only for temporary keys.
.TP
.B CREDENTIALS_DIRECTORY
Set by systemd; the files \fBtencentcloud\-secret\-id\fR, \fBtencentcloud\-secret\-key\fR and \fBtencentcloud\-token\fR in it are tried next.
.TP
.B RUST_LOG
Log level and filters (default: info). Logs go to stderr.
.SH FILES
.TP
.I /etc/emr\-autoscaler/config.toml
The default configuration file.
.TP
.I /var/lib/emr\-autoscaler/state.json
Durable state: cooldowns, budgets, orders in flight, pause and breaker state.
.TP
.IR ~/.tencentcloud/credentials ", " /etc/tencentcloud/credentials
INI profiles with \fBsecret_id\fR and \fBsecret_key\fR under \fB[default]\fR, tried after the environment and systemd credentials; the CVM instance role comes last.
.TP
.I /usr/share/emr\-autoscaler/
Prometheus alerting rules (alerts.yml) and a Grafana dashboard (grafana\-dashboard.json).
.SH "SEE ALSO"
.BR systemd.exec (5),
.BR systemd\-creds (1)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_cover_the_visible_subcommands_only() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(Artifact::Man, &dir.path().join("man")).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "emr-autoscaler.1");
        for sub in ["run", "check", "scale-out", "scale-in", "sim"] {
            assert!(
                names.contains(&format!("emr-autoscaler-{sub}.1")),
                "{names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.contains("generate")), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let main = std::fs::read_to_string(&written[0]).unwrap();
        assert!(main.contains(".TH emr-autoscaler 1"), "{main}");
        for section in ["EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO", "check"] {
            assert!(main.contains(section), "{section} missing:\n{main}");
        }
        assert!(!main.contains("generate"), "{main}");
    }

    /// Bash's own completion function, sourced from the written script,
    /// completes a subcommand's option.
    #[test]
    fn bash_completes_a_subcommands_options() {
        let dir = tempfile::tempdir().unwrap();
        let script = write(Artifact::Bash, dir.path()).unwrap().remove(0);
        let complete = |words: &str| {
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "source '{}'; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                     _emr__autoscaler emr-autoscaler \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
                     printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                    script.display()
                ))
                .output()
                .expect("bash runs");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(complete("emr-autoscaler backtest --f").trim(), "--from");
        let scale_in = complete("emr-autoscaler scale-in --inst");
        assert_eq!(scale_in.trim(), "--instance-id", "{scale_in}");
    }

    #[test]
    fn completions_are_written_under_their_conventional_names() {
        let dir = tempfile::tempdir().unwrap();
        for (what, name) in [
            (Artifact::Bash, "emr-autoscaler.bash"),
            (Artifact::Zsh, "_emr-autoscaler"),
            (Artifact::Fish, "emr-autoscaler.fish"),
        ] {
            let written = write(what, dir.path()).unwrap();
            assert_eq!(written, vec![dir.path().join(name)]);
            let text = std::fs::read_to_string(&written[0]).unwrap();
            assert!(text.contains("scale-out"), "{name}: {text}");
            for word in ["instance-id", "reset-state", "log-format"] {
                assert!(text.contains(word), "{name} lacks {word}: {text}");
            }
            assert!(!text.contains("generate"), "{name}: {text}");
        }
    }
}
