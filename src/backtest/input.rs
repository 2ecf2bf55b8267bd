//! Demand from a CSV file: `timestamp,demand_mb[,cluster]`.
//!
//! - Timestamps are RFC3339 (`2026-11-02T10:00:00Z`) or Unix seconds
//!   (`1793613600`, fractions allowed).
//! - `demand_mb` is a finite number, at least 0.
//! - The optional third column names the cluster a row is for; a row without
//!   it applies to every cluster.
//! - A header line is optional: a first line whose fields are neither a
//!   timestamp nor a number is taken as one.
//! - Empty lines and lines starting with `#` are skipped.
//!
//! Every other problem is an error naming the line, so a bad file never
//! replays as something it is not.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::BacktestError;

/// Demand points `(time, MB)` in time order.
pub(crate) type DemandSeries = Vec<(DateTime<Utc>, f64)>;

/// The demand rows of a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DemandTable {
    /// Rows without a cluster, in time order.
    pub all: DemandSeries,
    /// Rows per cluster, in time order.
    pub by_cluster: BTreeMap<String, DemandSeries>,
}

impl DemandTable {
    /// The series for `cluster`: its own rows merged with the rows for every
    /// cluster (at one instant, the cluster's own row wins). `None` when no
    /// row applies.
    pub(crate) fn for_cluster(&self, cluster: &str) -> Option<DemandSeries> {
        let own = self.by_cluster.get(cluster);
        if self.all.is_empty() && own.is_none_or(Vec::is_empty) {
            return None;
        }
        let mut out: DemandSeries = self.all.clone();
        if let Some(own) = own {
            out.extend(own.iter().copied());
            // Stable: at equal times the cluster's own row comes last and is held.
            out.sort_by_key(|p| p.0);
        }
        Some(out)
    }
}

/// Parses a timestamp: RFC3339 or Unix seconds.
pub(crate) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    let secs: f64 = text.parse().ok()?;
    if !secs.is_finite() {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round() as u32;
    if whole < i64::MIN as f64 || whole > i64::MAX as f64 {
        return None;
    }
    DateTime::from_timestamp(whole as i64, nanos.min(999_999_999))
}

fn field(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .trim()
}

/// Parses CSV text; `source` names it in errors.
pub(crate) fn parse(text: &str, source: &str) -> Result<DemandTable, BacktestError> {
    let mut table = DemandTable::default();
    let err = |line: usize, message: String| BacktestError::Input {
        file: source.to_string(),
        line,
        message,
    };
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(field).collect();
        let is_first = std::mem::replace(&mut first, false);
        if fields.len() < 2 || fields.len() > 3 {
            return Err(err(
                line_no,
                format!(
                    "{} field(s); expected timestamp,demand_mb[,cluster]",
                    fields.len()
                ),
            ));
        }
        let at = parse_timestamp(fields[0]);
        let demand = fields[1].parse::<f64>().ok();
        if is_first && at.is_none() && demand.is_none() {
            // A header.
            continue;
        }
        let Some(at) = at else {
            return Err(err(
                line_no,
                format!(
                    "{:?} is not a timestamp (RFC3339 like 2026-11-02T10:00:00Z, or Unix seconds)",
                    fields[0]
                ),
            ));
        };
        let demand = match demand {
            Some(d) if d.is_finite() && d >= 0.0 => d,
            Some(d) => {
                return Err(err(
                    line_no,
                    format!("demand_mb {d} must be a finite number, at least 0"),
                ));
            }
            None => {
                return Err(err(
                    line_no,
                    format!("demand_mb {:?} is not a number", fields[1]),
                ));
            }
        };
        match fields.get(2).copied().filter(|c| !c.is_empty()) {
            None => table.all.push((at, demand)),
            Some(c) => table
                .by_cluster
                .entry(c.to_string())
                .or_default()
                .push((at, demand)),
        }
    }
    if table.all.is_empty() && table.by_cluster.values().all(Vec::is_empty) {
        return Err(BacktestError::Input {
            file: source.to_string(),
            line: 0,
            message: "no demand rows".into(),
        });
    }
    table.all.sort_by_key(|p| p.0);
    for rows in table.by_cluster.values_mut() {
        rows.sort_by_key(|p| p.0);
    }
    Ok(table)
}

/// Reads and parses a CSV file.
pub(crate) fn read(path: &Path) -> Result<DemandTable, BacktestError> {
    let text = std::fs::read_to_string(path).map_err(|e| BacktestError::Io {
        what: format!("cannot read {}", path.display()),
        reason: e.to_string(),
    })?;
    parse(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_headers_and_clusters() {
        let t = parse(
            "timestamp,demand_mb,cluster\n\
             2026-11-02T10:01:00Z,20\n\
             1793613600,10\n\
             # comment\n\
             \n\
             2026-11-02T10:00:30+00:00, 15 ,emr-abc12345\n",
            "x.csv",
        )
        .unwrap();
        assert_eq!(t.all.len(), 2);
        assert_eq!(t.all[0].1, 10.0, "sorted by time");
        let c = t.for_cluster("emr-abc12345").unwrap();
        assert_eq!(
            c.iter().map(|p| p.1).collect::<Vec<_>>(),
            [10.0, 15.0, 20.0]
        );
        assert_eq!(t.for_cluster("emr-other000").unwrap().len(), 2);
    }

    #[test]
    fn bad_rows_name_their_line() {
        for (text, line, needle) in [
            ("1793613600,10\n1793613660,abc\n", 2, "not a number"),
            ("t,d\nyesterday,5\n", 2, "not a timestamp"),
            ("1793613600,10\n\n1793613660,-1\n", 3, "at least 0"),
            ("1793613600\n", 1, "field(s)"),
            ("1793613600,1,a,b\n", 1, "field(s)"),
            ("1793613600,NaN\n", 1, "finite"),
        ] {
            match parse(text, "d.csv") {
                Err(BacktestError::Input {
                    line: l, message, ..
                }) => {
                    assert_eq!(l, line, "{text:?}");
                    assert!(message.contains(needle), "{message}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(parse("timestamp,demand_mb\n", "e.csv").is_err());
    }

    #[test]
    fn unix_fractions() {
        let t = parse_timestamp("1793613600.5").unwrap();
        assert_eq!(t.timestamp_subsec_millis(), 500);
        assert!(parse_timestamp("1e400").is_none());
    }
}
