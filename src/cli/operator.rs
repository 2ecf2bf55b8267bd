//! `status`, `history`, `pause` and `resume`: what each prints for a person
//! (aligned tables) or for a script (`--json`), and its exit code.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::commands::{print_json, print_reply, report_config_error};
use super::{HistoryArgs, StatusArgs, SwitchArgs};
use crate::config;
use crate::daemon::operator::{self, Source};
use crate::history::{Event, Query};

/// Lays out rows (the first one the header) in columns two spaces apart;
/// the last column is not padded.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One line per cluster of `/api/v1/status`.
pub(crate) fn status_table(status: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut rows = vec![
        [
            "CLUSTER",
            "NODES",
            "IN FLIGHT",
            "PAUSED",
            "BREAKER",
            "CONFLICT",
            "LAST DECISION",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in status["clusters"].as_array().into_iter().flatten() {
        let conflict = c["not_ready"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["reason"] == "conflict");
        rows.push(vec![
            text(&c["instance_id"]),
            text(&c["current"]),
            text(&c["in_flight"]),
            yes(c["paused"].as_bool().unwrap_or(false)),
            if c["breaker"].is_null() {
                "-".into()
            } else {
                "open".into()
            },
            yes(conflict),
            text(&c["last_decision"]),
        ]);
    }
    let mut out = String::new();
    if let Some(ha) = status.get("ha") {
        let leader = &ha["leader"];
        let name = leader.get("node_name").unwrap_or(leader);
        let _ = writeln!(
            out,
            "role: {}  leader: {}{}",
            text(&ha["role"]),
            text(name),
            leader
                .get("advertise_url")
                .map_or_else(String::new, |u| format!(" at {}", text(u)))
        );
    }
    out.push_str(&columns(&rows));
    for c in status["clusters"].as_array().into_iter().flatten() {
        if let Some(why) = c["breaker"].as_str() {
            let _ = writeln!(out, "{}: breaker open: {why}", text(&c["instance_id"]));
        }
    }
    out
}

/// One line per event, newest first.
pub(crate) fn history_table(events: &[Event]) -> String {
    let mut rows = vec![
        [
            "AT", "CLUSTER", "KIND", "NODES", "OUTCOME", "FLOW", "REASON",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let dash = || "-".to_string();
    for e in events {
        rows.push(vec![
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.instance_id.clone(),
            e.kind.label().to_string(),
            e.nodes.map_or_else(dash, |n| n.to_string()),
            e.outcome.clone(),
            e.flow_id.map_or_else(dash, |f| f.to_string()),
            e.reason.clone(),
        ]);
    }
    columns(&rows)
}

/// `status`.
pub(crate) async fn status(args: StatusArgs) -> ExitCode {
    let config = match config::load(&args.config.config) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    match operator::status(&config).await {
        Ok(status) if args.json => print_json(&status),
        Ok(status) => {
            print!("{}", status_table(&status));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `history`.
pub(crate) async fn history(args: HistoryArgs) -> ExitCode {
    let config = match config::load(&args.config.config) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    let query = Query {
        cluster: args.instance_id,
        limit: usize::try_from(args.limit).ok(),
        since: None,
    };
    match operator::history(&config, &query).await {
        Ok((events, source)) => {
            if source == Source::Store {
                eprintln!("note: no daemon answers; read the history directly");
            }
            if args.json {
                print_json(&serde_json::json!({ "events": events }))
            } else {
                print!("{}", history_table(&events));
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `pause` (`pause = true`) and `resume`.
pub(crate) async fn switch(args: SwitchArgs, pause: bool) -> ExitCode {
    let config = match config::load(&args.config.config) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    if config.cluster(&args.instance_id).is_none() {
        eprintln!(
            "error: {} is not configured in {}",
            args.instance_id,
            args.config.config.display()
        );
        return ExitCode::from(super::EX_CONFIG);
    }
    match operator::switch(&config, &args.instance_id, pause).await {
        Ok(reply) => print_reply(&reply),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_has_a_line_per_cluster() {
        let status = serde_json::json!({
            "now": "2026-12-06T08:00:00Z",
            "clusters": [
                {"instance_id": "emr-abc12345", "current": 5, "in_flight": 2, "paused": false,
                 "breaker": null, "not_ready": [], "last_decision": "pending 120 GiB > 64 GiB: +2"},
                {"instance_id": "emr-def67890", "current": null, "in_flight": 0, "paused": true,
                 "breaker": "flow 12 outlived flow_timeout",
                 "not_ready": [{"reason": "conflict", "detail": "x"}], "last_decision": null},
            ]
        });
        expect_test::expect![[r#"
            CLUSTER       NODES  IN FLIGHT  PAUSED  BREAKER  CONFLICT  LAST DECISION
            emr-abc12345  5      2          no      -        no        pending 120 GiB > 64 GiB: +2
            emr-def67890  -      0          yes     open     yes       -
            emr-def67890: breaker open: flow 12 outlived flow_timeout
        "#]]
        .assert_eq(&status_table(&status));
    }

    #[test]
    fn the_history_table_is_newest_first_as_given() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let events = vec![
            Event::new(
                at,
                "emr-abc12345",
                crate::history::Kind::Pause,
                "paused",
                "by hand",
            ),
            Event::new(
                at,
                "emr-abc12345",
                crate::history::Kind::ScaleOut,
                "accepted",
                "load",
            )
            .nodes(4)
            .flow(Some(77)),
        ];
        expect_test::expect![[r#"
            AT                    CLUSTER       KIND       NODES  OUTCOME   FLOW  REASON
            2027-01-15T08:00:00Z  emr-abc12345  pause      -      paused    -     by hand
            2027-01-15T08:00:00Z  emr-abc12345  scale_out  4      accepted  77    load
        "#]]
        .assert_eq(&history_table(&events));
    }
}
