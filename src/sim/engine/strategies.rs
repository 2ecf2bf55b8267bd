//! `DescribeAutoScaleGroupGlobalConf` and `DescribeAutoScaleStrategies`:
//! Tencent's own auto-scaling, as the clusters were given it.

use super::*;

impl Engine {
    /// `DescribeAutoScaleGroupGlobalConf`: the groups of the cluster's strategies.
    pub(super) fn describe_groups(&self, p: &Params<'_>) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let c = &self.clusters[self.cluster_index(id)?];
        let groups = builtin::group_confs(&c.id, &c.strategies);
        Ok(ActionOk::plain(json!({
            "TotalCount": groups.len(),
            "GroupGlobalConfs": groups,
        })))
    }

    /// `DescribeAutoScaleStrategies`: every strategy, or those of `GroupId`.
    pub(super) fn describe_strategies(&self, p: &Params<'_>) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let group = p.int("GroupId")?;
        p.int("StrategyType")?;
        let c = &self.clusters[self.cluster_index(id)?];
        Ok(ActionOk::plain(json!({
            "LoadAutoScaleStrategies": builtin::strategies(&c.strategies, StrategyKind::Load, group),
            "TimeBasedAutoScaleStrategies": builtin::strategies(&c.strategies, StrategyKind::Time, group),
        })))
    }
}
