//! `DescribeAutoScaleGroupGlobalConf` and `DescribeAutoScaleStrategies`:
//! Tencent's own auto-scaling, read to stay out of its way.

use serde::{Deserialize, Serialize};

/// The `DescribeAutoScaleGroupGlobalConf` and `DescribeAutoScaleStrategies`
/// request: one cluster (and, for strategies, optionally one group).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AutoScaleRequest {
    pub instance_id: String,
    /// The auto-scaling group, for strategies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<i64>,
}

/// The part of `AutoScaleResourceConf` this product reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct AutoScaleGroup {
    /// The group id.
    pub id: Option<i64>,
    /// The group's name.
    pub group_name: Option<String>,
}

/// One `GroupGlobalConfs` item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct GroupGlobalConf {
    /// The group; may be null.
    pub group_global_conf: Option<AutoScaleGroup>,
}

/// The `DescribeAutoScaleGroupGlobalConf` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeAutoScaleGroupGlobalConfResponse {
    /// The cluster's auto-scaling groups; may be null.
    #[serde(default)]
    pub group_global_confs: Option<Vec<GroupGlobalConf>>,
    /// The request id.
    pub request_id: String,
}

/// One strategy of Tencent's own auto-scaling, load or time based: the
/// fields that say whether it is on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct AutoScaleStrategy {
    /// The strategy id.
    pub strategy_id: Option<i64>,
    pub strategy_name: Option<String>,
    /// Load: 1 on, 3 off. Time-based: 1 valid, 2 invalid, 3 paused.
    pub strategy_status: Option<i64>,
    /// 1 scale out, 2 scale in.
    pub scale_action: Option<i64>,
}

/// `StrategyStatus` of an enabled strategy, for both kinds.
pub(crate) const STRATEGY_ENABLED: i64 = 1;

/// The `DescribeAutoScaleStrategies` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeAutoScaleStrategiesResponse {
    /// Load-based strategies; may be null.
    #[serde(default)]
    pub load_auto_scale_strategies: Option<Vec<AutoScaleStrategy>>,
    /// Time-based strategies; may be null.
    #[serde(default)]
    pub time_based_auto_scale_strategies: Option<Vec<AutoScaleStrategy>>,
    /// The request id.
    pub request_id: String,
}

/// What Tencent's own auto-scaling of one cluster is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuiltinScaling {
    /// The groups listed.
    pub groups: usize,
    /// Enabled strategies, as `load:NAME` or `time:NAME` (id when unnamed).
    pub enabled: Vec<String>,
}

impl BuiltinScaling {
    /// Adds the enabled strategies of one `DescribeAutoScaleStrategies` answer.
    pub(crate) fn add(&mut self, answer: &DescribeAutoScaleStrategiesResponse) {
        for (kind, list) in [
            ("load", &answer.load_auto_scale_strategies),
            ("time", &answer.time_based_auto_scale_strategies),
        ] {
            for s in list.iter().flatten() {
                if s.strategy_status == Some(STRATEGY_ENABLED) {
                    let name = s
                        .strategy_name
                        .clone()
                        .filter(|n| !n.is_empty())
                        .or_else(|| s.strategy_id.map(|id| format!("#{id}")))
                        .unwrap_or_else(|| "unnamed".into());
                    let label = format!("{kind}:{name}");
                    if !self.enabled.contains(&label) {
                        self.enabled.push(label);
                    }
                }
            }
        }
    }

    /// Whether any strategy is on.
    pub fn is_active(&self) -> bool {
        !self.enabled.is_empty()
    }
}
