//! Tencent's own auto-scaling, as the simulator reports it: the strategies a
//! test switches on and off, and the JSON of `DescribeAutoScaleGroupGlobalConf`
//! and `DescribeAutoScaleStrategies`.
//!
//! Groups are not configured on their own: every distinct `group_id` among a
//! cluster's strategies is one listed group (`Id` the group id, `GroupName`
//! `group-<id>`), in the order the groups first appeared.

use serde_json::{Value, json};

/// `StrategyStatus` of a load strategy that is on (and of a valid time-based one).
pub const STRATEGY_ON: i64 = 1;
/// `StrategyStatus` of a time-based strategy that is invalid.
pub const STRATEGY_INVALID: i64 = 2;
/// `StrategyStatus` of a load strategy that is off (or of a paused time-based one).
pub const STRATEGY_OFF: i64 = 3;

/// Which list a strategy is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    /// `LoadAutoScaleStrategies`: `StrategyStatus` 1 on, 3 off.
    Load,
    /// `TimeBasedAutoScaleStrategies`: 1 valid, 2 invalid, 3 paused.
    Time,
}

/// One strategy of Tencent's own auto-scaling on a simulated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinStrategy {
    /// Load or time based.
    pub kind: StrategyKind,
    /// The auto-scaling group (`GroupId`); `None` answers `"GroupId": null`
    /// and lists no group.
    pub group_id: Option<i64>,
    /// `StrategyId`; a strategy with the same id replaces this one.
    pub id: i64,
    /// `StrategyName`.
    pub name: String,
    /// `StrategyStatus` (see [`STRATEGY_ON`], [`STRATEGY_INVALID`], [`STRATEGY_OFF`]).
    pub status: i64,
}

impl BuiltinStrategy {
    /// A load strategy that is on, in no group.
    pub fn load(id: i64, name: impl Into<String>) -> Self {
        Self {
            kind: StrategyKind::Load,
            group_id: None,
            id,
            name: name.into(),
            status: STRATEGY_ON,
        }
    }

    /// A valid time-based strategy, in no group.
    pub fn time(id: i64, name: impl Into<String>) -> Self {
        Self {
            kind: StrategyKind::Time,
            ..Self::load(id, name)
        }
    }

    /// Puts the strategy in group `group_id`.
    pub fn in_group(mut self, group_id: i64) -> Self {
        self.group_id = Some(group_id);
        self
    }

    /// Sets `StrategyStatus`.
    pub fn with_status(mut self, status: i64) -> Self {
        self.status = status;
        self
    }

    /// The strategy's JSON item. `ScaleAction` is always 1 (scale out).
    fn to_json(&self) -> Value {
        json!({
            "StrategyId": self.id,
            "StrategyName": self.name,
            "StrategyStatus": self.status,
            "ScaleAction": 1,
            "GroupId": self.group_id,
            "Priority": 1,
        })
    }
}

/// Adds `strategy` to `list`, replacing the one with the same id.
pub(crate) fn upsert(list: &mut Vec<BuiltinStrategy>, strategy: BuiltinStrategy) {
    match list.iter_mut().find(|s| s.id == strategy.id) {
        Some(slot) => *slot = strategy,
        None => list.push(strategy),
    }
}

/// The `GroupGlobalConfs` items for a cluster's strategies.
pub(crate) fn group_confs(cluster_id: &str, list: &[BuiltinStrategy]) -> Vec<Value> {
    let mut ids: Vec<i64> = Vec::new();
    for g in list.iter().filter_map(|s| s.group_id) {
        if !ids.contains(&g) {
            ids.push(g);
        }
    }
    ids.iter()
        .map(|&id| {
            json!({
                "GroupGlobalConf": {
                    "Id": id,
                    "ClusterId": cluster_id,
                    "GroupName": format!("group-{id}"),
                    "ScaleLowerBound": 0,
                    "ScaleUpperBound": 20,
                    "GraceDownFlag": false,
                    "HardwareType": "HOST",
                    "PayMode": "postpay",
                    "GroupStatus": 0,
                },
                "CurrentNodes": 0,
                "CurrentPostPaidNodes": 0,
                "CurrentPrePaidNodes": 0,
            })
        })
        .collect()
}

/// The strategies of one kind (only those of `group`, when given).
pub(crate) fn strategies(
    list: &[BuiltinStrategy],
    kind: StrategyKind,
    group: Option<i64>,
) -> Vec<Value> {
    list.iter()
        .filter(|s| s.kind == kind && group.is_none_or(|g| s.group_id == Some(g)))
        .map(BuiltinStrategy::to_json)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_from_strategies_and_ids_replace() {
        let mut list = Vec::new();
        upsert(&mut list, BuiltinStrategy::load(1, "cpu").in_group(7));
        upsert(&mut list, BuiltinStrategy::time(2, "night").in_group(9));
        upsert(&mut list, BuiltinStrategy::load(3, "plain"));
        upsert(
            &mut list,
            BuiltinStrategy::load(1, "cpu")
                .in_group(7)
                .with_status(STRATEGY_OFF),
        );
        assert_eq!(list.len(), 3);
        let groups = group_confs("emr-aaaaaaaa", &list);
        let ids: Vec<&Value> = groups.iter().map(|g| &g["GroupGlobalConf"]["Id"]).collect();
        assert_eq!(ids, [&json!(7), &json!(9)]);
        assert_eq!(groups[0]["GroupGlobalConf"]["GroupName"], "group-7");
        let load = strategies(&list, StrategyKind::Load, None);
        assert_eq!(load.len(), 2);
        assert_eq!(load[0]["StrategyStatus"], STRATEGY_OFF);
        assert!(load[1]["GroupId"].is_null());
        assert_eq!(strategies(&list, StrategyKind::Load, Some(9)).len(), 0);
        let night = strategies(&list, StrategyKind::Time, Some(9));
        assert_eq!(night[0]["StrategyName"], "night");
    }
}
