//! The ledger: every request the simulator received, in arrival order.
//!
//! Tests read it through [`SimHandle::ledger`](super::SimHandle::ledger) to
//! check what the client really sent (pacing, tokens, retries) and what the
//! server did with it, independently of what the client believes happened.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fault::Fault;
use super::limit;

/// The action that starts scale-out flows.
const SCALE_OUT: &str = "ScaleOutInstance";
/// The newer action that starts scale-out flows.
const SCALE_OUT_CLUSTER: &str = "ScaleOutCluster";
/// The action that starts scale-in flows.
const TERMINATE: &str = "TerminateClusterNodes";

/// What the simulator did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Still being handled.
    Pending,
    /// Executed successfully. For `ScaleOutInstance` and `ScaleOutCluster`,
    /// `flow_id` is the flow it started or, when `deduplicated`, the flow of
    /// the original request whose ClientToken it repeated (no new flow, no
    /// new nodes). For `TerminateClusterNodes`, the scale-in flow it started.
    Ok {
        /// The FlowId answered, for the scale-outs and `TerminateClusterNodes`.
        flow_id: Option<u64>,
        /// The answer was replayed from an earlier request with the same ClientToken.
        deduplicated: bool,
    },
    /// Rejected with this API error code (authentication, validation, rate
    /// limit, busy cluster, ...). Nothing changed.
    Error {
        /// The error code answered.
        code: String,
    },
    /// Not executed: answered with an injected API error.
    InjectedError {
        /// The injected code.
        code: String,
    },
    /// Not executed: answered with an injected HTTP error status.
    InjectedHttp {
        /// The HTTP status sent.
        status: u16,
    },
}

/// One received request.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    /// Position in arrival order, from 0.
    pub seq: u64,
    /// Wall-clock arrival time.
    pub arrived_at: DateTime<Utc>,
    /// Arrival time on a monotonic clock, from the simulator's start.
    pub since_start: Duration,
    /// `X-TC-Action`, or empty when missing.
    pub action: String,
    /// `X-TC-Region`, when sent.
    pub region: Option<String>,
    /// The caller's SecretId, once the signature verified.
    pub secret_id: Option<String>,
    /// The parsed JSON body (`Null` when it was not JSON).
    pub params: Value,
    /// `ClientToken` from the body, when present.
    pub client_token: Option<String>,
    /// The clusters the request names (`InstanceId` or `InstanceIds`).
    pub instance_ids: Vec<String>,
    /// The fault applied to this request, if any.
    pub fault: Option<Fault>,
    /// What happened.
    pub outcome: Handled,
}

impl LedgerEntry {
    /// Whether the client got no answer at all (the connection was dropped).
    pub fn dropped(&self) -> bool {
        self.fault == Some(Fault::DropAfterExecute)
    }

    /// The flow this request started, if it started one: a scale-out
    /// (replays do not count) or a scale-in.
    pub fn started_flow(&self) -> Option<u64> {
        match self.outcome {
            Handled::Ok {
                flow_id: Some(id),
                deduplicated: false,
            } if self.is_scale_out() || self.action == TERMINATE => Some(id),
            _ => None,
        }
    }

    /// Whether the body asked to start the services on the new nodes
    /// (`ScaleOutCluster`'s `EnableStartServiceFlag` is `true`).
    pub fn start_service(&self) -> bool {
        self.params.get("EnableStartServiceFlag") == Some(&Value::Bool(true))
    }

    /// Whether this is a `ScaleOutInstance` or a `ScaleOutCluster`.
    fn is_scale_out(&self) -> bool {
        self.action == SCALE_OUT || self.action == SCALE_OUT_CLUSTER
    }

    /// The task and core nodes the body orders: `TaskCount` and `CoreCount`,
    /// or `ScaleOutNodeConfig`'s `NodeCount` for its `NodeFlag` (`TASK`,
    /// `CORE`). Zero for what is absent or not a count.
    fn ordered(&self) -> (u32, u32) {
        if self.action != SCALE_OUT_CLUSTER {
            return (self.count("TaskCount"), self.count("CoreCount"));
        }
        let config = self.params.get("ScaleOutNodeConfig");
        let count = config
            .and_then(|c| c.get("NodeCount"))
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0);
        match config
            .and_then(|c| c.get("NodeFlag"))
            .and_then(Value::as_str)
        {
            Some("TASK") => (count, 0),
            Some("CORE") => (0, count),
            _ => (0, 0),
        }
    }

    /// The `CvmInstanceIds` strings of the body (empty when absent).
    pub(crate) fn cvm_instance_ids(&self) -> Vec<String> {
        self.params
            .get("CvmInstanceIds")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether this is a `TerminateClusterNodes` on `cluster` that started a flow.
    fn started_scale_in_on(&self, cluster: &str) -> bool {
        self.action == TERMINATE
            && self.started_flow().is_some()
            && self.instance_ids.first().is_some_and(|c| c == cluster)
    }

    /// The API error code answered or injected, if any.
    pub fn error_code(&self) -> Option<&str> {
        match &self.outcome {
            Handled::Error { code } | Handled::InjectedError { code } => Some(code),
            _ => None,
        }
    }

    /// An integer body field, e.g. `TaskCount`; 0 when absent or not a count.
    fn count(&self, field: &str) -> u32 {
        self.params
            .get(field)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    }
}

/// A `ScaleOutInstance` or `ScaleOutCluster` that started a flow, as raw
/// data for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStart {
    /// The request's ledger position.
    pub seq: u64,
    /// Wall-clock arrival time.
    pub arrived_at: DateTime<Utc>,
    /// The cluster\'s instance id (`emr-…`).
    pub instance_id: String,
    /// The ClientToken it carried.
    pub client_token: Option<String>,
    /// The flow it started.
    pub flow_id: u64,
    /// Task nodes ordered.
    pub task_count: u32,
    /// Core nodes ordered.
    pub core_count: u32,
    /// The request's action, `ScaleOutInstance` or `ScaleOutCluster`.
    pub action: String,
    /// It asked to start the services on the new nodes
    /// (`EnableStartServiceFlag`).
    pub start_service: bool,
}

/// A snapshot of the ledger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    entries: Vec<LedgerEntry>,
}

impl Ledger {
    /// Wraps entries already in arrival order.
    pub(crate) fn new(entries: Vec<LedgerEntry>) -> Self {
        Self { entries }
    }

    /// Every entry, in arrival order.
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// The number of requests received.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no request was received.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries of one action, in arrival order.
    pub fn for_action<'a>(&'a self, action: &'a str) -> impl Iterator<Item = &'a LedgerEntry> + 'a {
        self.entries.iter().filter(move |e| e.action == action)
    }

    /// The largest number of `action` requests that arrived within any
    /// interval of length `window` (all arrivals, admitted or not).
    pub fn max_in_any_window(&self, action: &str, window: Duration) -> usize {
        let mut arrivals: Vec<Duration> = self.for_action(action).map(|e| e.since_start).collect();
        arrivals.sort_unstable();
        limit::max_in_any_window(&arrivals, window)
    }

    /// How many requests of `action` were answered (or injected) with `code`.
    pub fn count_code(&self, action: &str, code: &str) -> usize {
        self.for_action(action)
            .filter(|e| e.error_code() == Some(code))
            .count()
    }

    /// Every `ScaleOutInstance` and `ScaleOutCluster` that started a flow,
    /// in arrival order.
    pub fn flow_starts(&self) -> Vec<FlowStart> {
        self.entries
            .iter()
            .filter(|e| e.is_scale_out())
            .filter_map(|e| {
                let flow_id = e.started_flow()?;
                let (task_count, core_count) = e.ordered();
                Some(FlowStart {
                    seq: e.seq,
                    arrived_at: e.arrived_at,
                    instance_id: e.instance_ids.first().cloned().unwrap_or_default(),
                    client_token: e.client_token.clone(),
                    flow_id,
                    task_count,
                    core_count,
                    action: e.action.clone(),
                    start_service: e.start_service(),
                })
            })
            .collect()
    }

    /// How many scale-out flows were started on `cluster`.
    pub fn flows_started(&self, cluster: &str) -> usize {
        self.flow_starts()
            .iter()
            .filter(|f| f.instance_id == cluster)
            .count()
    }

    /// Task plus core nodes ordered on `cluster` by requests that started flows
    /// (whether or not those flows have finished, or succeeded).
    pub fn nodes_ordered(&self, cluster: &str) -> u64 {
        self.flow_starts()
            .iter()
            .filter(|f| f.instance_id == cluster)
            .map(|f| u64::from(f.task_count) + u64::from(f.core_count))
            .sum()
    }

    /// ClientTokens that started more than one flow (always a server bug;
    /// different tokens each starting a flow are not listed here).
    pub fn tokens_with_several_flows(&self) -> Vec<String> {
        let mut seen: Vec<&str> = Vec::new();
        let mut repeated: Vec<String> = Vec::new();
        let starts = self.flow_starts();
        for token in starts.iter().filter_map(|f| f.client_token.as_deref()) {
            if seen.contains(&token) {
                if !repeated.iter().any(|t| t == token) {
                    repeated.push(token.to_owned());
                }
            } else {
                seen.push(token);
            }
        }
        repeated
    }

    /// The `CvmInstanceIds` of every `TerminateClusterNodes` on `cluster`
    /// that started a flow, in arrival order (also those whose answer was
    /// lost, and whether or not their flow has ended or succeeded).
    pub fn terminations(&self, cluster: &str) -> Vec<Vec<String>> {
        self.entries
            .iter()
            .filter(|e| e.started_scale_in_on(cluster))
            .map(LedgerEntry::cvm_instance_ids)
            .collect()
    }

    /// Machine ids named by the `TerminateClusterNodes` requests on `cluster`
    /// that started a flow: what was ordered removed, as
    /// [`Ledger::nodes_ordered`] counts what was ordered added. What the
    /// finished flows really removed is
    /// [`ClusterSnapshot::nodes_removed`](super::ClusterSnapshot::nodes_removed).
    pub fn nodes_removed(&self, cluster: &str) -> u64 {
        self.terminations(cluster)
            .iter()
            .map(|ids| u64::try_from(ids.len()).unwrap_or(u64::MAX))
            .sum()
    }

    /// Machine ids named by more than one executed `TerminateClusterNodes`
    /// (one that started a flow), on any cluster, in the order their second
    /// naming arrived.
    pub fn nodes_terminated_twice(&self) -> Vec<String> {
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut twice: Vec<String> = Vec::new();
        for e in self.for_action(TERMINATE) {
            if e.started_flow().is_none() {
                continue;
            }
            let cluster = e.instance_ids.first().cloned().unwrap_or_default();
            for id in e.cvm_instance_ids() {
                let key = (cluster.clone(), id);
                if seen.contains(&key) {
                    if !twice.contains(&key.1) {
                        twice.push(key.1);
                    }
                } else {
                    seen.push(key);
                }
            }
        }
        twice
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(
        seq: u64,
        ms: u64,
        action: &str,
        token: Option<&str>,
        outcome: Handled,
    ) -> LedgerEntry {
        LedgerEntry {
            seq,
            arrived_at: DateTime::UNIX_EPOCH,
            since_start: Duration::from_millis(ms),
            action: action.to_owned(),
            region: None,
            secret_id: None,
            params: json!({"InstanceId": "emr-aaaaaaaa", "TaskCount": 3}),
            client_token: token.map(str::to_owned),
            instance_ids: vec!["emr-aaaaaaaa".to_owned()],
            fault: None,
            outcome,
        }
    }

    fn ok(flow: u64, dedup: bool) -> Handled {
        Handled::Ok {
            flow_id: Some(flow),
            deduplicated: dedup,
        }
    }

    #[test]
    fn helpers_summarise_flows_and_windows() {
        let busy = Handled::Error {
            code: "ResourceInUse.InstanceInProcess".into(),
        };
        let ledger = Ledger::new(vec![
            entry(0, 0, SCALE_OUT, Some("a"), ok(1, false)),
            entry(1, 100, SCALE_OUT, Some("a"), ok(1, true)),
            entry(2, 200, SCALE_OUT, Some("b"), busy),
            entry(3, 1500, SCALE_OUT, Some("c"), ok(2, false)),
            entry(
                4,
                1600,
                "DescribeInstances",
                None,
                Handled::Ok {
                    flow_id: None,
                    deduplicated: false,
                },
            ),
        ]);
        assert_eq!(ledger.flows_started("emr-aaaaaaaa"), 2);
        assert_eq!(ledger.nodes_ordered("emr-aaaaaaaa"), 6);
        assert_eq!(ledger.flows_started("emr-bbbbbbbb"), 0);
        assert_eq!(
            ledger.max_in_any_window(SCALE_OUT, Duration::from_secs(1)),
            3
        );
        assert_eq!(
            ledger.count_code(SCALE_OUT, "ResourceInUse.InstanceInProcess"),
            1
        );
        assert!(ledger.tokens_with_several_flows().is_empty());
        let starts = ledger.flow_starts();
        assert_eq!(starts.iter().map(|f| f.flow_id).collect::<Vec<_>>(), [1, 2]);
    }

    fn terminate(seq: u64, cluster: &str, ids: &[&str], outcome: Handled) -> LedgerEntry {
        LedgerEntry {
            seq,
            arrived_at: DateTime::UNIX_EPOCH,
            since_start: Duration::from_millis(seq),
            action: TERMINATE.to_owned(),
            region: None,
            secret_id: None,
            params: json!({"InstanceId": cluster, "CvmInstanceIds": ids, "NodeFlag": "TASK"}),
            client_token: None,
            instance_ids: vec![cluster.to_owned()],
            fault: None,
            outcome,
        }
    }

    #[test]
    fn scale_in_helpers_count_only_requests_that_started_flows() {
        let refused = Handled::Error {
            code: "ResourceNotFound.InstanceNotFound".into(),
        };
        let injected = Handled::InjectedHttp { status: 502 };
        let mut dropped = terminate(3, "emr-aaaaaaaa", &["ins-3"], ok(12, false));
        dropped.fault = Some(Fault::DropAfterExecute);
        let ledger = Ledger::new(vec![
            entry(0, 0, SCALE_OUT, Some("a"), ok(10, false)),
            terminate(1, "emr-aaaaaaaa", &["ins-1", "ins-2"], ok(11, false)),
            terminate(2, "emr-aaaaaaaa", &["ins-2"], refused),
            dropped,
            terminate(4, "emr-aaaaaaaa", &["ins-3", "ins-4"], ok(13, false)),
            terminate(5, "emr-aaaaaaaa", &["ins-1"], injected),
            terminate(6, "emr-bbbbbbbb", &["ins-9"], ok(14, false)),
        ]);
        assert_eq!(
            ledger.terminations("emr-aaaaaaaa"),
            [
                vec!["ins-1".to_owned(), "ins-2".to_owned()],
                vec!["ins-3".to_owned()],
                vec!["ins-3".to_owned(), "ins-4".to_owned()],
            ]
        );
        assert_eq!(ledger.nodes_removed("emr-aaaaaaaa"), 5);
        assert_eq!(ledger.nodes_removed("emr-bbbbbbbb"), 1);
        assert_eq!(ledger.nodes_terminated_twice(), ["ins-3"]);
        // Scale-in flows are not scale-out flow starts.
        assert_eq!(ledger.flows_started("emr-aaaaaaaa"), 1);
        assert_eq!(ledger.entries()[1].started_flow(), Some(11));
    }

    fn cluster_order(seq: u64, flag: &str, count: u64, outcome: Handled) -> LedgerEntry {
        let mut e = entry(seq, seq, SCALE_OUT_CLUSTER, Some("c"), outcome);
        e.params = json!({
            "InstanceId": "emr-aaaaaaaa",
            "InstanceChargeType": "SPOTPAID",
            "ScaleOutNodeConfig": {"NodeFlag": flag, "NodeCount": count},
            "EnableStartServiceFlag": seq == 1,
        });
        e
    }

    #[test]
    fn scale_out_cluster_orders_count_as_flow_starts() {
        let sold_out = Handled::Error {
            code: "ResourcesSoldOut.CvmSoldOut".into(),
        };
        let ledger = Ledger::new(vec![
            entry(0, 0, SCALE_OUT, Some("a"), ok(1, false)),
            cluster_order(1, "TASK", 4, ok(2, false)),
            cluster_order(2, "TASK", 4, ok(2, true)),
            cluster_order(3, "CORE", 2, ok(3, false)),
            cluster_order(4, "TASK", 9, sold_out),
        ]);
        let starts = ledger.flow_starts();
        assert_eq!(
            starts
                .iter()
                .map(|f| (
                    f.flow_id,
                    f.action.as_str(),
                    f.task_count,
                    f.core_count,
                    f.start_service
                ))
                .collect::<Vec<_>>(),
            [
                (1, SCALE_OUT, 3, 0, false),
                (2, SCALE_OUT_CLUSTER, 4, 0, true),
                (3, SCALE_OUT_CLUSTER, 0, 2, false),
            ]
        );
        assert_eq!(ledger.flows_started("emr-aaaaaaaa"), 3);
        assert_eq!(ledger.nodes_ordered("emr-aaaaaaaa"), 9);
        assert_eq!(ledger.entries()[2].started_flow(), None);
        assert!(ledger.entries()[1].start_service());
        assert!(!ledger.entries()[0].start_service());
        assert_eq!(ledger.tokens_with_several_flows(), ["c"]);
    }

    #[test]
    fn a_token_that_started_two_flows_is_reported() {
        let ledger = Ledger::new(vec![
            entry(0, 0, SCALE_OUT, Some("a"), ok(1, false)),
            entry(1, 10, SCALE_OUT, Some("a"), ok(2, false)),
            entry(2, 20, SCALE_OUT, Some("a"), ok(3, false)),
        ]);
        assert_eq!(ledger.tokens_with_several_flows(), ["a"]);
    }
}
