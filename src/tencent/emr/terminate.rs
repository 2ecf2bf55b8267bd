//! `TerminateClusterNodes`: the graceful removal of named task nodes and
//! its pre-flight checks.

use serde::{Deserialize, Serialize};

use super::{is_valid_instance_id, refuse};
use crate::tencent::error::PreflightError;

/// The node flag `TerminateClusterNodes` takes for task nodes; the only one
/// this product sends.
pub(crate) const TASK_NODE_FLAG: &str = "TASK";

/// The graceful decommission times the API accepts, in seconds.
pub(crate) const GRACE_DOWN_SECONDS: std::ops::RangeInclusive<u64> = 60..=1800;

/// The `TerminateClusterNodes` request: a graceful removal of named task
/// nodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminateClusterNodesRequest {
    /// The cluster\'s instance id (`emr-…`).
    pub instance_id: String,
    /// The nodes' machine ids (`OrderNo`).
    pub cvm_instance_ids: Vec<String>,
    /// Always [`TASK_NODE_FLAG`].
    pub node_flag: String,
    /// Graceful decommission; always true.
    pub grace_down_flag: bool,
    /// Seconds YARN may drain each node, 60 to 1800.
    pub grace_down_time: u64,
}

impl TerminateClusterNodesRequest {
    /// A graceful removal of `nodes` (machine ids) from `instance_id`.
    pub fn graceful(instance_id: &str, nodes: Vec<String>, grace: std::time::Duration) -> Self {
        Self {
            instance_id: instance_id.to_string(),
            cvm_instance_ids: nodes,
            node_flag: TASK_NODE_FLAG.to_string(),
            grace_down_flag: true,
            grace_down_time: grace.as_secs(),
        }
    }

    /// Refuses what the API would reject, and what this product never
    /// sends: an empty or repeated list, a node flag other than TASK, a
    /// removal without graceful decommission, a grace time outside 60..1800 s.
    pub(crate) fn preflight(&self) -> Result<(), PreflightError> {
        if !is_valid_instance_id(&self.instance_id) {
            refuse(
                "InvalidParameter.InvalidClusterId",
                format!(
                    "InstanceId {:?} is not of the form emr-xxxxxxxx (8 lowercase letters or digits)",
                    self.instance_id
                ),
            )?;
        }
        if self.cvm_instance_ids.is_empty() {
            refuse(
                "InvalidParameter.InvalidCvmInstanceIds",
                "CvmInstanceIds is empty; name at least one node to remove",
            )?;
        }
        if let Some(bad) = self.cvm_instance_ids.iter().find(|id| id.trim().is_empty()) {
            refuse(
                "InvalidParameter.InvalidCvmInstanceIds",
                format!("CvmInstanceIds holds an empty machine id {bad:?}"),
            )?;
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.cvm_instance_ids.iter().find(|id| !seen.insert(*id)) {
            refuse(
                "InvalidParameter.InvalidCvmInstanceIds",
                format!("CvmInstanceIds names {dup} twice"),
            )?;
        }
        if self.node_flag != TASK_NODE_FLAG {
            refuse(
                "InvalidParameter.InvalidNodeFlag",
                format!(
                    "NodeFlag {:?}: only task nodes are ever removed (NodeFlag \"TASK\")",
                    self.node_flag
                ),
            )?;
        }
        if !self.grace_down_flag {
            refuse(
                "InvalidParameter.InvalidGraceDownFlag",
                "GraceDownFlag must be true: nodes are always decommissioned gracefully",
            )?;
        }
        if !GRACE_DOWN_SECONDS.contains(&self.grace_down_time) {
            refuse(
                "InvalidParameter.InvalidGraceDownTime",
                format!(
                    "GraceDownTime {} s is outside 60 to 1800 s",
                    self.grace_down_time
                ),
            )?;
        }
        Ok(())
    }
}

/// The `TerminateClusterNodes` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminateClusterNodesResponse {
    /// The decommission flow.
    #[serde(default)]
    pub flow_id: Option<i64>,
    /// The request id.
    pub request_id: String,
}
