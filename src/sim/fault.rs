//! Fault injection.
//!
//! Faults come from two sources:
//! - a script: [`FaultPlan::push`] queues a fault for the next request of an
//!   action, optionally only for one cluster. Requests take the first queued
//!   fault that matches them (so each action/cluster pair is a FIFO queue);
//! - standing faults: [`FaultPlan::set_standing`] makes every request of an
//!   action (optionally only for one cluster) meet the same fault until it is
//!   cleared: a permission the account lacks, an action that is always slow.
//!   A queued fault for the same request goes first;
//! - chance: with a configured probability each admitted request draws a
//!   random fault from a seeded [`fastrand::Rng`], so a run is reproducible.
//!
//! [`Fault::SlowFlow`] and [`Fault::FailFlow`] do not disturb a request; they
//! change the next *flow* that a request of the action they were queued for
//! starts (on the given cluster, or any), and stay queued until one starts:
//! queued for `ScaleOutInstance` they change the next flow a
//! `ScaleOutInstance` starts, for `ScaleOutCluster` the next one a
//! `ScaleOutCluster` starts, for `TerminateClusterNodes` the next scale-in
//! flow.

use std::collections::VecDeque;
use std::time::Duration;

/// One thing that can go wrong with a request or a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Execute the request fully, then close the connection without sending
    /// a byte of the answer (under HTTP/2 this ends the whole connection).
    DropAfterExecute,
    /// Execute the request, then wait this long (real time) before answering.
    Delay(Duration),
    /// Answer with this HTTP status and an HTML body, without executing.
    /// Statuses outside 500..=599 are sent as 502.
    Http5xx(u16),
    /// Answer with this API error code, without executing.
    ApiError(String),
    /// The next flow started takes this long (simulation clock); for a
    /// scale-in flow this replaces `GraceDownTime`.
    SlowFlow(Duration),
    /// The next flow started fails when it ends: flow status -1. A failed
    /// scale-out leaves the cluster at status 302 with no new nodes; a failed
    /// scale-in puts it back to status 2 and keeps every node.
    FailFlow,
    /// Execute the request, then answer HTTP 200 with a body that is not
    /// JSON (a truncated document, still labelled `application/json`).
    Garbage,
    /// Execute the request, then answer `{"Response":{}}`.
    EmptyEnvelope,
    /// Execute a `DescribeInstances`, answering `"Config": null` for the
    /// matching cluster (or every listed cluster when no cluster was given).
    NullConfig,
}

impl Fault {
    /// Whether this fault changes a flow rather than a request.
    pub(crate) fn is_flow_fault(&self) -> bool {
        matches!(self, Self::SlowFlow(_) | Self::FailFlow)
    }
}

/// A queued fault and what it applies to.
#[derive(Debug, Clone)]
struct Scripted {
    action: String,
    cluster: Option<String>,
    fault: Fault,
}

/// Changes to apply to a flow about to start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlowOverrides {
    /// Replaces the cluster's provisioning duration.
    pub(crate) duration: Option<Duration>,
    /// The flow ends failed.
    pub(crate) fail: bool,
}

impl FlowOverrides {
    /// Adds a flow fault to the overrides; request faults are ignored.
    pub(crate) fn apply(&mut self, fault: &Fault) {
        match fault {
            Fault::SlowFlow(d) => self.duration = Some(*d),
            Fault::FailFlow => self.fail = true,
            _ => {}
        }
    }
}

/// Scripted and random faults.
#[derive(Debug)]
pub(crate) struct FaultPlan {
    requests: VecDeque<Scripted>,
    standing: Vec<Scripted>,
    flows: VecDeque<Scripted>,
    rng: fastrand::Rng,
    probability: f64,
    slow_flow: Duration,
}

impl FaultPlan {
    /// A plan drawing random faults with `probability` per request from an
    /// RNG seeded with `seed` (or an arbitrary seed). A random `SlowFlow`
    /// lasts `slow_flow`.
    pub(crate) fn new(seed: Option<u64>, probability: f64, slow_flow: Duration) -> Self {
        Self {
            requests: VecDeque::new(),
            standing: Vec::new(),
            flows: VecDeque::new(),
            rng: seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
            probability: if probability.is_finite() {
                probability.clamp(0.0, 1.0)
            } else {
                0.0
            },
            slow_flow,
        }
    }

    /// Queues a fault for the next request of `action` (and `cluster`, when given).
    /// Flow faults are queued for the next flow on `cluster` (or any cluster).
    pub(crate) fn push(&mut self, action: &str, cluster: Option<&str>, fault: Fault) {
        let item = Scripted {
            action: action.to_owned(),
            cluster: cluster.map(str::to_owned),
            fault,
        };
        if item.fault.is_flow_fault() {
            self.flows.push_back(item);
        } else {
            self.requests.push_back(item);
        }
    }

    /// Makes every request of `action` (naming `cluster`, when given) meet
    /// `fault` until cleared with `None`; replaces the standing fault of the
    /// same action and cluster. Flow faults cannot stand and are ignored.
    pub(crate) fn set_standing(
        &mut self,
        action: &str,
        cluster: Option<&str>,
        fault: Option<Fault>,
    ) {
        self.standing
            .retain(|s| !(s.action == action && s.cluster.as_deref() == cluster));
        if let Some(fault) = fault.filter(|f| !f.is_flow_fault()) {
            self.standing.push(Scripted {
                action: action.to_owned(),
                cluster: cluster.map(str::to_owned),
                fault,
            });
        }
    }

    /// Takes the request fault for a request of `action` touching `clusters`:
    /// the first matching queued one, else a matching standing one (one for
    /// the cluster before one for any cluster), else maybe a random one.
    /// Returns the fault and the cluster it was scripted for.
    pub(crate) fn next_request_fault(
        &mut self,
        action: &str,
        clusters: &[String],
    ) -> Option<(Fault, Option<String>)> {
        let position = self.requests.iter().position(|s| {
            s.action == action && s.cluster.as_ref().is_none_or(|c| clusters.contains(c))
        });
        if let Some(item) = position.and_then(|i| self.requests.remove(i)) {
            return Some((item.fault, item.cluster));
        }
        let standing = |for_cluster: bool| {
            self.standing.iter().find(|s| {
                s.action == action
                    && match &s.cluster {
                        Some(c) => for_cluster && clusters.contains(c),
                        None => !for_cluster,
                    }
            })
        };
        if let Some(item) = standing(true).or_else(|| standing(false)) {
            return Some((item.fault.clone(), item.cluster.clone()));
        }
        self.random(action).map(|f| (f, None))
    }

    /// Takes every queued flow fault that applies to a flow a request of
    /// `action` starts on `cluster` (at most one per kind, oldest first).
    pub(crate) fn take_flow_overrides(&mut self, action: &str, cluster: &str) -> FlowOverrides {
        let mut overrides = FlowOverrides::default();
        let mut taken_slow = false;
        let mut taken_fail = false;
        self.flows.retain(|s| {
            if s.action != action || s.cluster.as_deref().is_some_and(|c| c != cluster) {
                return true;
            }
            let taken = match s.fault {
                Fault::SlowFlow(_) => &mut taken_slow,
                Fault::FailFlow => &mut taken_fail,
                _ => return true,
            };
            if *taken {
                return true;
            }
            *taken = true;
            overrides.apply(&s.fault);
            false
        });
        overrides
    }

    /// Draws a random fault for `action`, or none. `TerminateClusterNodes`
    /// only ever draws a lost answer, a 5xx, `InternalError` or
    /// `RequestLimitExceeded` (never a flow fault).
    fn random(&mut self, action: &str) -> Option<Fault> {
        if self.probability <= 0.0 || self.rng.f64() >= self.probability {
            return None;
        }
        if action == "TerminateClusterNodes" {
            let mut kinds = vec![
                Fault::DropAfterExecute,
                Fault::Http5xx(502),
                Fault::Http5xx(503),
                Fault::ApiError("InternalError".into()),
                Fault::ApiError("RequestLimitExceeded".into()),
            ];
            let pick = self.rng.usize(..kinds.len());
            return Some(kinds.swap_remove(pick));
        }
        let mut kinds = vec![
            Fault::DropAfterExecute,
            Fault::Http5xx(502),
            Fault::Http5xx(503),
            Fault::ApiError("InternalError".into()),
            Fault::ApiError("RequestLimitExceeded".into()),
            Fault::Garbage,
            Fault::EmptyEnvelope,
        ];
        match action {
            "ScaleOutInstance" => kinds.extend([
                Fault::ApiError("ResourcesSoldOut.CvmSoldOut".into()),
                Fault::SlowFlow(self.slow_flow),
                Fault::FailFlow,
            ]),
            "ScaleOutCluster" => kinds.extend([
                Fault::ApiError("ResourcesSoldOut.CvmSoldOut".into()),
                Fault::ApiError("ResourceInsufficient.InstanceInsufficient".into()),
                Fault::SlowFlow(self.slow_flow),
                Fault::FailFlow,
            ]),
            "DescribeInstances" => kinds.push(Fault::NullConfig),
            _ => {}
        }
        let pick = self.rng.usize(..kinds.len());
        Some(kinds.swap_remove(pick))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn scripted_faults_match_action_and_cluster_in_order() {
        let mut plan = FaultPlan::new(Some(1), 0.0, Duration::ZERO);
        plan.push("ScaleOutInstance", Some("emr-bbbbbbbb"), Fault::Garbage);
        plan.push("ScaleOutInstance", None, Fault::DropAfterExecute);
        plan.push("ScaleOutInstance", None, Fault::EmptyEnvelope);
        let a = ids(&["emr-aaaaaaaa"]);
        let b = ids(&["emr-bbbbbbbb"]);
        assert_eq!(plan.next_request_fault("DescribeInstances", &a), None);
        assert_eq!(
            plan.next_request_fault("ScaleOutInstance", &a).map(|f| f.0),
            Some(Fault::DropAfterExecute)
        );
        assert_eq!(
            plan.next_request_fault("ScaleOutInstance", &b).map(|f| f.0),
            Some(Fault::Garbage)
        );
        assert_eq!(
            plan.next_request_fault("ScaleOutInstance", &b).map(|f| f.0),
            Some(Fault::EmptyEnvelope)
        );
        assert_eq!(plan.next_request_fault("ScaleOutInstance", &b), None);
    }

    #[test]
    fn a_standing_fault_meets_every_request_until_cleared() {
        let mut plan = FaultPlan::new(Some(1), 0.0, Duration::ZERO);
        let a = ids(&["emr-aaaaaaaa"]);
        let b = ids(&["emr-bbbbbbbb"]);
        let refused = Fault::ApiError("UnauthorizedOperation".into());
        let slow = Fault::Delay(Duration::from_secs(25));
        plan.set_standing("DescribeClusterFlowStatusDetail", None, Some(slow.clone()));
        plan.set_standing(
            "DescribeClusterFlowStatusDetail",
            Some("emr-aaaaaaaa"),
            Some(refused.clone()),
        );
        plan.set_standing("ScaleOutInstance", None, Some(Fault::FailFlow));
        plan.push("DescribeClusterFlowStatusDetail", None, Fault::Garbage);
        let next = |plan: &mut FaultPlan, action: &str, on: &[String]| {
            plan.next_request_fault(action, on).map(|f| f.0)
        };
        // A queued fault goes first; then the cluster's standing fault, for
        // as many requests as come, and any other cluster gets the general one.
        assert_eq!(
            next(&mut plan, "DescribeClusterFlowStatusDetail", &a),
            Some(Fault::Garbage)
        );
        for _ in 0..5 {
            assert_eq!(
                next(&mut plan, "DescribeClusterFlowStatusDetail", &a),
                Some(refused.clone())
            );
            assert_eq!(
                next(&mut plan, "DescribeClusterFlowStatusDetail", &b),
                Some(slow.clone())
            );
        }
        // A flow fault cannot stand; other actions are untouched.
        assert_eq!(next(&mut plan, "ScaleOutInstance", &a), None);
        assert_eq!(next(&mut plan, "DescribeInstances", &a), None);
        plan.set_standing(
            "DescribeClusterFlowStatusDetail",
            Some("emr-aaaaaaaa"),
            None,
        );
        assert_eq!(
            next(&mut plan, "DescribeClusterFlowStatusDetail", &a),
            Some(slow.clone())
        );
        plan.set_standing("DescribeClusterFlowStatusDetail", None, None);
        assert_eq!(next(&mut plan, "DescribeClusterFlowStatusDetail", &a), None);
    }

    #[test]
    fn flow_faults_wait_for_a_flow_on_their_cluster() {
        let mut plan = FaultPlan::new(Some(1), 0.0, Duration::ZERO);
        plan.push("ScaleOutInstance", Some("emr-bbbbbbbb"), Fault::FailFlow);
        plan.push(
            "ScaleOutInstance",
            None,
            Fault::SlowFlow(Duration::from_secs(7)),
        );
        plan.push(
            "ScaleOutInstance",
            None,
            Fault::SlowFlow(Duration::from_secs(9)),
        );
        assert_eq!(
            plan.next_request_fault("ScaleOutInstance", &ids(&["emr-bbbbbbbb"])),
            None
        );
        // A flow fault queued for one action does not touch another's flows.
        assert_eq!(
            plan.take_flow_overrides("TerminateClusterNodes", "emr-aaaaaaaa"),
            FlowOverrides::default()
        );
        let a = plan.take_flow_overrides("ScaleOutInstance", "emr-aaaaaaaa");
        assert_eq!(
            a,
            FlowOverrides {
                duration: Some(Duration::from_secs(7)),
                fail: false
            }
        );
        let b = plan.take_flow_overrides("ScaleOutInstance", "emr-bbbbbbbb");
        assert_eq!(
            b,
            FlowOverrides {
                duration: Some(Duration::from_secs(9)),
                fail: true
            }
        );
        assert_eq!(
            plan.take_flow_overrides("ScaleOutInstance", "emr-bbbbbbbb"),
            FlowOverrides::default()
        );
    }

    #[test]
    fn random_faults_are_reproducible_from_the_seed() {
        let draw = |seed| {
            let mut plan = FaultPlan::new(Some(seed), 0.5, Duration::from_secs(1));
            (0..50)
                .map(|_| {
                    plan.next_request_fault("ScaleOutInstance", &[])
                        .map(|f| f.0)
                })
                .collect::<Vec<_>>()
        };
        let first = draw(42);
        assert_eq!(first, draw(42));
        let faults = first.iter().filter(|f| f.is_some()).count();
        assert!(
            (10..=40).contains(&faults),
            "about half should fault, got {faults}"
        );
    }

    #[test]
    fn random_faults_for_terminate_are_never_flow_faults() {
        let mut plan = FaultPlan::new(Some(7), 1.0, Duration::from_secs(1));
        let allowed = [
            Fault::DropAfterExecute,
            Fault::Http5xx(502),
            Fault::Http5xx(503),
            Fault::ApiError("InternalError".into()),
            Fault::ApiError("RequestLimitExceeded".into()),
        ];
        let mut drawn = std::collections::HashSet::new();
        for _ in 0..200 {
            let fault = plan
                .next_request_fault("TerminateClusterNodes", &[])
                .map(|f| f.0)
                .expect("probability 1 always faults");
            assert!(allowed.contains(&fault), "{fault:?}");
            drawn.insert(format!("{fault:?}"));
        }
        assert_eq!(drawn.len(), allowed.len(), "every kind comes up");
    }

    #[test]
    fn random_faults_for_scale_out_cluster_include_short_stock_and_flow_faults() {
        let mut plan = FaultPlan::new(Some(11), 1.0, Duration::from_secs(1));
        let drawn: std::collections::HashSet<String> = (0..300)
            .filter_map(|_| plan.next_request_fault("ScaleOutCluster", &[]))
            .map(|f| format!("{:?}", f.0))
            .collect();
        for want in [
            "ApiError(\"ResourcesSoldOut.CvmSoldOut\")",
            "ApiError(\"ResourceInsufficient.InstanceInsufficient\")",
            "FailFlow",
            "SlowFlow(1s)",
        ] {
            assert!(drawn.contains(want), "{want} never drawn: {drawn:?}");
        }
        // A flow fault queued for one scale-out action waits for that action.
        plan.push("ScaleOutCluster", None, Fault::FailFlow);
        assert_eq!(
            plan.take_flow_overrides("ScaleOutInstance", "emr-aaaaaaaa"),
            FlowOverrides::default()
        );
        assert!(
            plan.take_flow_overrides("ScaleOutCluster", "emr-aaaaaaaa")
                .fail
        );
    }

    #[test]
    fn zero_probability_never_faults() {
        let mut plan = FaultPlan::new(None, 0.0, Duration::ZERO);
        assert!((0..100).all(|_| plan.next_request_fault("DescribeInstances", &[]).is_none()));
    }
}
