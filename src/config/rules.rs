//! Validation of `[[clusters.rules]]` into policy rules, every problem with
//! its key path.

use std::sync::Arc;
use std::time::Duration;

use super::Validator;
use super::raw::{Field, RawRule};
use crate::policy::capacity::DEFAULT_TREND_WINDOW;
use crate::policy::schedule::parse_cron;
use crate::policy::{
    Amount, Bound, Capacity, Horizon, OnMissing, ReplaySignal, Rule, RuleKind, Sustain, TargetForm,
    Unit, Window, WindowEnd,
};

const COMMON: &[&str] = &[
    "name",
    "type",
    "cooldown",
    "max_value",
    "on_missing",
    "max_age",
    "unit",
    "replay_signal",
];
const THRESHOLD: &[&str] = &[
    "query",
    "above",
    "below",
    "for",
    "evaluations",
    "add",
    "add_percent",
    "remove",
];
const TARGET: &[&str] = &[
    "query",
    "target",
    "tolerance",
    "bootstrap",
    "per_node",
    "factor",
];
const CAPACITY: &[&str] = &[
    "query",
    "per_node",
    "reserved",
    "headroom",
    "trend_window",
    "trend_horizon",
];
const SCHEDULE: &[&str] = &[
    "cron",
    "timezone",
    "duration",
    "end",
    "floor_task_nodes",
    "add",
];

impl Validator<'_> {
    fn positive_f64(&mut self, path: &str, field: Field<f64>) -> Option<f64> {
        let v = self.optional(path, field)?;
        if v.is_finite() && v > 0.0 {
            Some(v)
        } else {
            self.issue(path, format!("{v} must be above 0"));
            None
        }
    }

    fn add_count(&mut self, path: &str, field: Field<i64>) -> Option<u32> {
        let v = self.optional(path, field)?;
        match u32::try_from(v) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.issue(path, format!("{v} must be at least 1"));
                None
            }
        }
    }

    /// Validates the rules of the cluster at `at`; `min`/`max` are its bounds.
    pub(super) fn rules(&mut self, at: &str, raw: Vec<RawRule>, max_task_nodes: u32) -> Vec<Rule> {
        let mut out: Vec<Rule> = Vec::with_capacity(raw.len());
        let mut names: Vec<Option<String>> = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let at = format!("{at}.rules[{i}]");
            let name = match &r.name {
                Field::Value(n) => Some(n.clone()),
                _ => None,
            };
            if let Some(n) = &name
                && let Some(j) = names.iter().position(|o| o.as_ref() == Some(n))
            {
                self.issue(
                    &format!("{at}.name"),
                    format!("{n:?} is already the name of rules[{j}]"),
                );
            }
            names.push(name.clone());
            let before = self.issues.len();
            if let Some(rule) = self.rule(&at, r, max_task_nodes) {
                out.push(rule);
            }
            // Say which rule, by the name its author gave it.
            if let Some(n) = name.filter(|n| !n.is_empty()) {
                for issue in &mut self.issues[before..] {
                    issue.message = format!("rule {n:?}: {}", issue.message);
                }
            }
        }
        out
    }

    /// A capacity rule's parameters; `per_node` is required, the rest have
    /// the contract's defaults.
    fn capacity(
        &mut self,
        at: &str,
        per_node: Field<f64>,
        [reserved, headroom]: [Field<f64>; 2],
        trend_window: Field<String>,
        trend_horizon: Field<String>,
    ) -> Option<Capacity> {
        let p = |k: &str| format!("{at}.{k}");
        let per_node = match per_node {
            Field::Missing => {
                self.issue(
                    at,
                    "a capacity rule needs per_node: what one task node gives YARN, in the \
                     query's unit (e.g. 57344 for 56 GiB in MB)",
                );
                None
            }
            f => self.positive_f64(&p("per_node"), f),
        };
        let mut non_negative = |path: String, field: Field<f64>| {
            let v = self.optional(&path, field)?;
            if v.is_finite() && v >= 0.0 {
                Some(v)
            } else {
                self.issue(&path, format!("{v} must be 0 or more"));
                None
            }
        };
        let reserved = non_negative(p("reserved"), reserved);
        let headroom = non_negative(p("headroom"), headroom);
        let trend_window = self
            .opt_duration(&p("trend_window"), trend_window, super::spans::TREND)
            .unwrap_or(DEFAULT_TREND_WINDOW);
        let trend_horizon = match trend_horizon {
            Field::Value(v) if v == "auto" => Horizon::Auto,
            Field::Missing => Horizon::Auto,
            Field::Value(v) if humantime::parse_duration(&v).is_err() => {
                self.issue(
                    &p("trend_horizon"),
                    format!(
                        "{v:?} is neither \"auto\" nor a duration; write \"auto\" (twice the \
                         cluster's median scale-out time) or e.g. \"8m\" ({})",
                        super::spans::TREND
                    ),
                );
                Horizon::Auto
            }
            f => self
                .opt_duration(&p("trend_horizon"), f, super::spans::TREND)
                .map_or(Horizon::Auto, Horizon::Fixed),
        };
        let per_node = per_node?;
        Some(Capacity {
            per_node,
            reserved: reserved.unwrap_or(0.0),
            headroom: headroom.unwrap_or(per_node / 2.0),
            trend_window,
            trend_horizon,
        })
    }

    fn rule(&mut self, at: &str, r: RawRule, max_task_nodes: u32) -> Option<Rule> {
        let p = |k: &str| format!("{at}.{k}");
        let present = r.present();
        let name = self.get(&p("name"), r.name, None);
        if name.as_deref() == Some("") {
            self.issue(&p("name"), "must not be empty");
        }
        let kind = self.get(&p("type"), r.kind, None)?;
        let allowed: &[&str] = match kind.as_str() {
            "threshold" => THRESHOLD,
            "target" => TARGET,
            "schedule" => SCHEDULE,
            "capacity" => CAPACITY,
            other => {
                self.issue(
                    &p("type"),
                    format!(
                        "unknown rule type {other:?}; use threshold, target, capacity or schedule"
                    ),
                );
                return None;
            }
        };
        for key in present {
            if !COMMON.contains(&key) && !allowed.contains(&key) {
                self.issue(&p(key), format!("does not apply to a {kind} rule"));
            }
        }
        let cooldown = self.opt_duration(&p("cooldown"), r.cooldown, super::spans::COOLDOWN);
        if !matches!(r.max_age, Field::Missing) {
            self.issue(
                &p("max_age"),
                "is no longer supported: on the aggregated single-series queries rules need, \
                 timestamp() is the evaluation time, so it could never judge freshness. \
                 Remove it. Prometheus already drops series that stopped being scraped \
                 (they read as empty, which holds); for a stricter bound, write it into \
                 the query, e.g. `sum(x) and on() (time() - max(timestamp(x)) < 120)`",
            );
        }
        let on_missing = match self.optional(&p("on_missing"), r.on_missing).as_deref() {
            None | Some("hold") => OnMissing::Hold,
            Some("fail_open") => OnMissing::FailOpen,
            Some("floor") => OnMissing::Floor,
            Some(other) => {
                self.issue(
                    &p("on_missing"),
                    format!("{other:?} is not hold, fail_open or floor"),
                );
                OnMissing::Hold
            }
        };
        let unit = match self.optional(&p("unit"), r.unit).as_deref() {
            None | Some("plain") => Unit::Plain,
            Some("mb") => Unit::Megabytes,
            Some("ratio") => Unit::Ratio,
            Some(other) => {
                self.issue(&p("unit"), format!("{other:?} is not plain, mb or ratio"));
                Unit::Plain
            }
        };
        let replay_signal = match self
            .optional(&p("replay_signal"), r.replay_signal)
            .as_deref()
        {
            None => None,
            Some("pending_mb") => Some(ReplaySignal::PendingMb),
            Some("available_mb") => Some(ReplaySignal::AvailableMb),
            Some("utilisation") => Some(ReplaySignal::Utilisation),
            Some("demand_mb") => Some(ReplaySignal::DemandMb),
            Some(other) => {
                self.issue(
                    &p("replay_signal"),
                    format!("{other:?} is not pending_mb, available_mb, utilisation or demand_mb"),
                );
                None
            }
        };
        let query = if kind == "schedule" {
            None
        } else {
            let q = self.get(&p("query"), r.query, None);
            match q.as_deref() {
                Some(q) if q.trim().is_empty() => self.issue(&p("query"), "must not be empty"),
                Some(q) => {
                    if let Err(e) = super::promql::check(q) {
                        self.issue(&p("query"), e.to_string());
                    }
                }
                None => {}
            }
            q
        };
        let kind = match kind.as_str() {
            "capacity" => RuleKind::Capacity(self.capacity(
                at,
                r.per_node,
                [r.reserved, r.headroom],
                r.trend_window,
                r.trend_horizon,
            )?),
            "threshold" => {
                let above = self.optional(&p("above"), r.above);
                let below = self.optional(&p("below"), r.below);
                let bound = match (above, below) {
                    (Some(a), None) if a.is_finite() => Some(Bound::Above(a)),
                    (None, Some(b)) if b.is_finite() => Some(Bound::Below(b)),
                    (Some(_), Some(_)) => {
                        self.issue(&p("above"), "set either above or below, not both");
                        None
                    }
                    (None, None) => {
                        self.issue(at, "a threshold rule needs above or below");
                        None
                    }
                    _ => {
                        self.issue(&p("above"), "the bound must be a finite number");
                        None
                    }
                };
                let sustain_for =
                    self.opt_duration(&p("for"), r.sustain_for, super::spans::SUSTAIN);
                let evaluations = self.optional(&p("evaluations"), r.evaluations);
                let sustain = match (sustain_for, evaluations) {
                    (Some(d), None) => Some(Sustain::For(d)),
                    (None, Some(n)) if n >= 1 => Some(Sustain::Evaluations(n)),
                    (None, Some(_)) => {
                        self.issue(&p("evaluations"), "must be at least 1");
                        None
                    }
                    (Some(_), Some(_)) => {
                        self.issue(&p("for"), "set either for or evaluations, not both");
                        None
                    }
                    (None, None) => {
                        self.issue(at, "a threshold rule needs a sustain condition: for = \"1m\" or evaluations = N");
                        None
                    }
                };
                let add = self.add_count(&p("add"), r.add);
                let percent = self.positive_f64(&p("add_percent"), r.add_percent);
                let remove = self.add_count(&p("remove"), r.remove);
                let step = match (add, percent, remove) {
                    (Some(n), None, None) => Some(Amount::Add(n)),
                    (None, Some(pc), None) => Some(Amount::Percent(pc)),
                    (None, None, Some(n)) => Some(Amount::Remove(n)),
                    (None, None, None) => {
                        if !self.issues.iter().any(|i| {
                            i.path == p("add")
                                || i.path == p("add_percent")
                                || i.path == p("remove")
                        }) {
                            self.issue(
                                at,
                                "a threshold rule needs add = N or add_percent = P (scale out), \
                                 or remove = N (scale in)",
                            );
                        }
                        None
                    }
                    (_, _, Some(_)) => {
                        self.issue(
                            &p("remove"),
                            "a rule either adds or removes: set remove, or add/add_percent, not both",
                        );
                        None
                    }
                    _ => {
                        self.issue(&p("add"), "set either add or add_percent, not both");
                        None
                    }
                };
                RuleKind::Threshold {
                    bound: bound?,
                    sustain: sustain?,
                    step: step?,
                }
            }
            "target" => {
                let target = self.optional(&p("target"), r.target);
                let per_node = self.optional(&p("per_node"), r.per_node);
                let tolerance = self.optional(&p("tolerance"), r.tolerance).unwrap_or(0.1);
                if !(0.0..1.0).contains(&tolerance) {
                    self.issue(
                        &p("tolerance"),
                        format!("{tolerance} is outside 0 to 1 (default 0.1)"),
                    );
                }
                let factor = self.optional(&p("factor"), r.factor).unwrap_or(1.0);
                if !(factor.is_finite() && factor > 0.0) {
                    self.issue(
                        &p("factor"),
                        format!("{factor} must be above 0 (default 1.0)"),
                    );
                }
                let bootstrap = self.optional(&p("bootstrap"), r.bootstrap).unwrap_or(1);
                if bootstrap > max_task_nodes {
                    self.issue(
                        &p("bootstrap"),
                        format!("{bootstrap} is above max_task_nodes ({max_task_nodes})"),
                    );
                }
                let form = match (target, per_node) {
                    (Some(t), None) if t.is_finite() && t > 0.0 => Some(TargetForm::Ratio {
                        target: t,
                        tolerance,
                    }),
                    (Some(t), None) => {
                        self.issue(&p("target"), format!("{t} must be above 0"));
                        None
                    }
                    (None, Some(n)) if n.is_finite() && n > 0.0 => Some(TargetForm::Demand {
                        per_node: n,
                        factor,
                    }),
                    (None, Some(n)) => {
                        self.issue(&p("per_node"), format!("{n} must be above 0"));
                        None
                    }
                    (Some(_), Some(_)) => {
                        self.issue(
                            &p("target"),
                            "set target (ratio form) or per_node (demand form), not both",
                        );
                        None
                    }
                    (None, None) => {
                        self.issue(at, "a target rule needs target = V (ratio form) or per_node = N (demand form)");
                        None
                    }
                };
                RuleKind::Target {
                    form: form?,
                    bootstrap,
                }
            }
            _ => {
                let cron = self.get(&p("cron"), r.cron, None).and_then(|c| {
                    parse_cron(&c)
                        .map_err(|e| self.issue(&p("cron"), e.to_string()))
                        .ok()
                });
                let tz_text = self
                    .get(&p("timezone"), r.timezone, Some("UTC".into()))
                    .unwrap_or_default();
                let timezone = tz_text
                    .parse::<chrono_tz::Tz>()
                    .map_err(|_| {
                        self.issue(
                            &p("timezone"),
                            format!("{tz_text:?} is not an IANA time zone like Europe/Berlin"),
                        )
                    })
                    .ok();
                let duration = self.opt_duration(&p("duration"), r.duration, super::spans::WINDOW);
                let end = self.optional(&p("end"), r.end).and_then(|e| {
                    parse_cron(&e)
                        .map_err(|e| self.issue(&p("end"), e.to_string()))
                        .ok()
                });
                let window_end = match (duration, end) {
                    (Some(d), None) if !d.is_zero() && d <= Duration::from_secs(7 * 86400) => {
                        Some(WindowEnd::After(d))
                    }
                    (Some(_), None) => {
                        self.issue(&p("duration"), "must be more than 0s and at most 7 days");
                        None
                    }
                    (None, Some(c)) => Some(WindowEnd::At(Box::new(c))),
                    (Some(_), Some(_)) => {
                        self.issue(&p("duration"), "set either duration or end, not both");
                        None
                    }
                    (None, None) => {
                        if !self
                            .issues
                            .iter()
                            .any(|i| i.path == p("end") || i.path == p("duration"))
                        {
                            self.issue(
                                at,
                                "a schedule rule needs duration = \"2h\" or end = \"<cron>\"",
                            );
                        }
                        None
                    }
                };
                let floor = self.optional(&p("floor_task_nodes"), r.floor_task_nodes);
                if let Some(f) = floor
                    && f > max_task_nodes
                {
                    self.issue(
                        &p("floor_task_nodes"),
                        format!("{f} is above max_task_nodes ({max_task_nodes}); min above max"),
                    );
                }
                let add_once = self.add_count(&p("add"), r.add);
                if floor.is_none() && add_once.is_none() {
                    self.issue(at, "a schedule rule needs floor_task_nodes, add, or both");
                }
                RuleKind::Schedule {
                    window: Box::new(Window::new(cron?, timezone?, window_end?)),
                    floor_task_nodes: floor.unwrap_or(0),
                    add_once,
                }
            }
        };
        let max_value = self
            .positive_f64(&p("max_value"), r.max_value)
            .unwrap_or(crate::policy::DEFAULT_MAX_VALUE);
        Some(Rule {
            name: Arc::from(name?.as_str()),
            query,
            kind,
            cooldown,
            on_missing,
            unit,
            replay_signal,
            max_value,
        })
    }
}
