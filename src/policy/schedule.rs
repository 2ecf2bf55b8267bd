//! Schedule windows: a cron expression in an IANA time zone opens a window
//! that lasts a duration or until an end expression fires.
//!
//! Fire times are computed with `croner` on `chrono-tz` zoned times, so a
//! daily 08:00 in Europe/Berlin is 07:00 UTC in winter and 06:00 UTC in
//! summer, with no drift after a daylight-saving change. (A scheduler that
//! captures a fixed UTC offset at creation would drift; this is why the daemon
//! evaluates windows here, on every tick, rather than through timers.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// How a window ends.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowEnd {
    /// A fixed length after each start.
    After(Duration),
    /// The next firing of this expression after the start.
    At(Box<Cron>),
}

/// A recurring window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// When windows open.
    pub start: Cron,
    /// The zone the expressions are read in.
    pub timezone: Tz,
    /// How windows close.
    pub end: WindowEnd,
    /// The last answer and the span of time over which it holds. Pure
    /// memoisation: the answer is a function of `now` alone.
    pub memo: Memo,
}

/// A span of time over which [`Window::open_since`] gives one answer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    open_since: Option<DateTime<Utc>>,
}

/// Memoised fire-time arithmetic (croner searches cost microseconds).
#[derive(Debug, Default)]
pub struct Memo(std::sync::Mutex<Option<Span>>);

impl Memo {
    fn get(&self) -> Option<Span> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn set(&self, span: Span) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(span);
    }
}

impl Clone for Memo {
    fn clone(&self) -> Self {
        Memo(std::sync::Mutex::new(self.get()))
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A schedule's `cron` or `end` is not a cron expression croner accepts.
#[derive(Debug, thiserror::Error)]
#[error("{expr:?} is not a cron expression ({source}); write e.g. \"0 0 8 * * Mon-Fri\"")]
pub struct CronError {
    /// The expression as written.
    pub expr: String,
    /// What croner found wrong with it.
    #[source]
    pub source: croner::errors::CronError,
}

/// Parses a cron expression with 6 fields (seconds first) or 5 (seconds 0).
/// Day-of-month and day-of-week combine with OR, as in classic cron.
pub fn parse_cron(expr: &str) -> Result<Cron, CronError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|source| CronError {
            expr: expr.to_string(),
            source,
        })
}

/// How far back an end-expression window may have opened.
const MAX_LOOKBACK: chrono::Duration = chrono::Duration::days(8);

impl Window {
    /// A window opening on `start` in `timezone` and closing as `end` says.
    pub fn new(start: Cron, timezone: Tz, end: WindowEnd) -> Self {
        Self {
            start,
            timezone,
            end,
            memo: Memo::default(),
        }
    }

    /// The start of the window open at `now`, if one is.
    pub(crate) fn open_since(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if let Some(span) = self.memo.get()
            && span.from <= now
            && now < span.until
        {
            return span.open_since;
        }
        let (answer, span) = self.compute(now);
        if let Some(span) = span {
            self.memo.set(span);
        }
        answer
    }

    /// The answer at `now`, and the span over which it stays the same.
    fn compute(&self, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<Span>) {
        let local = now.with_timezone(&self.timezone);
        let next_start = self
            .start
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc));
        let start = self
            .start
            .find_previous_occurrence(&local, true)
            .ok()
            .filter(|s| local - *s <= MAX_LOOKBACK);
        let end = start.as_ref().and_then(|start| match &self.end {
            WindowEnd::After(d) => start.checked_add_signed(chrono::Duration::from_std(*d).ok()?),
            WindowEnd::At(cron) => cron.find_next_occurrence(start, false).ok(),
        });
        match (start, end) {
            (Some(start), Some(end)) if local < end => {
                let since = start.with_timezone(&Utc);
                let end = end.with_timezone(&Utc);
                let until = next_start.map_or(end, |n| n.min(end));
                (
                    Some(since),
                    Some(Span {
                        from: since,
                        until,
                        open_since: Some(since),
                    }),
                )
            }
            (_, end) => {
                let from = end.map_or(now, |e| e.with_timezone(&Utc).min(now));
                let span = next_start.map(|until| Span {
                    from,
                    until,
                    open_since: None,
                });
                (None, span)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn berlin(start: &str, end: WindowEnd) -> Window {
        Window::new(
            parse_cron(start).unwrap(),
            "Europe/Berlin".parse().unwrap(),
            end,
        )
    }

    #[test]
    fn daily_window_follows_local_time_across_both_dst_switches() {
        let w = berlin("0 0 8 * * *", WindowEnd::After(Duration::from_secs(3600)));
        // Winter (CET, UTC+1): 08:00 local is 07:00 UTC.
        assert_eq!(
            w.open_since(utc("2026-03-28T07:30:00Z")),
            Some(utc("2026-03-28T07:00:00Z"))
        );
        assert_eq!(w.open_since(utc("2026-03-28T06:59:59Z")), None);
        // Spring forward on 2026-03-29 02:00 -> 03:00; 08:00 CEST is 06:00 UTC.
        assert_eq!(
            w.open_since(utc("2026-03-29T06:00:00Z")),
            Some(utc("2026-03-29T06:00:00Z"))
        );
        assert_eq!(
            w.open_since(utc("2026-03-29T06:59:59Z")),
            Some(utc("2026-03-29T06:00:00Z"))
        );
        assert_eq!(w.open_since(utc("2026-03-29T07:00:00Z")), None);
        assert_eq!(
            w.open_since(utc("2026-03-30T06:10:00Z")),
            Some(utc("2026-03-30T06:00:00Z"))
        );
        // Fall back on 2026-10-25 03:00 -> 02:00; 08:00 CET is 07:00 UTC again.
        assert_eq!(
            w.open_since(utc("2026-10-24T06:30:00Z")),
            Some(utc("2026-10-24T06:00:00Z"))
        );
        assert_eq!(w.open_since(utc("2026-10-25T06:30:00Z")), None);
        assert_eq!(
            w.open_since(utc("2026-10-25T07:30:00Z")),
            Some(utc("2026-10-25T07:00:00Z"))
        );
    }

    #[test]
    fn end_expression_closes_the_window_in_local_time() {
        let w = berlin(
            "0 0 8 * * Mon-Fri",
            WindowEnd::At(Box::new(parse_cron("0 0 18 * * *").unwrap())),
        );
        // Friday 2026-10-23, 17:59 CEST = 15:59 UTC: open. 18:00 CEST: closed.
        assert_eq!(
            w.open_since(utc("2026-10-23T15:59:00Z")),
            Some(utc("2026-10-23T06:00:00Z"))
        );
        assert_eq!(w.open_since(utc("2026-10-23T16:00:00Z")), None);
        // Saturday: closed all day.
        assert_eq!(w.open_since(utc("2026-10-24T10:00:00Z")), None);
        // Monday after fall back: 08:00 CET = 07:00 UTC.
        assert_eq!(
            w.open_since(utc("2026-10-26T07:00:00Z")),
            Some(utc("2026-10-26T07:00:00Z"))
        );
    }

    #[test]
    fn window_across_the_spring_gap_opens_at_the_first_valid_time() {
        // 02:30 does not exist in Berlin on 2026-03-29.
        let w = berlin(
            "0 30 2 * * *",
            WindowEnd::After(Duration::from_secs(2 * 3600)),
        );
        let got = w.open_since(utc("2026-03-29T02:00:00Z"));
        assert!(got.is_some(), "the window must not be skipped");
        assert!(w.open_since(utc("2026-03-28T01:45:00Z")).is_some());
    }

    #[test]
    fn five_and_six_fields() {
        assert!(parse_cron("0 8 * * *").is_ok());
        assert!(parse_cron("0 0 8 * * *").is_ok());
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every morning").is_err());
    }
}

#[cfg(test)]
mod memo_tests {
    use super::*;

    #[test]
    fn memoised_answers_match_fresh_ones_minute_by_minute_across_dst() {
        let w = Window::new(
            parse_cron("0 30 1-3 * * *").unwrap(),
            "Europe/Berlin".parse().unwrap(),
            WindowEnd::After(Duration::from_secs(50 * 60)),
        );
        let start = DateTime::parse_from_rfc3339("2026-03-28T20:00:00Z")
            .unwrap()
            .to_utc();
        for m in 0..(60 * 24 * 2) {
            let now = start + chrono::Duration::minutes(m);
            let fresh = Window::new(w.start.clone(), w.timezone, w.end.clone());
            assert_eq!(w.open_since(now), fresh.open_since(now), "at {now}");
        }
    }
}
