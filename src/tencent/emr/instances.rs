//! `DescribeInstances`: clusters' status and node counts, in batches.

use serde::{Deserialize, Serialize};

/// The `DescribeInstances` request, in its cluster-list form.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeInstancesRequest {
    /// Always `clusterList`.
    pub display_strategy: &'static str,
    /// The clusters to describe.
    pub instance_ids: Vec<String>,
    /// -1: every project.
    pub project_id: i64,
    /// Paging offset.
    pub offset: u32,
    /// Page size.
    pub limit: u32,
}

/// Largest `DescribeInstances` page.
pub(crate) const DESCRIBE_INSTANCES_BATCH: usize = 100;

impl DescribeInstancesRequest {
    /// One batch of at most [`DESCRIBE_INSTANCES_BATCH`] ids.
    pub(crate) fn for_ids(ids: &[String]) -> Self {
        Self {
            display_strategy: "clusterList",
            instance_ids: ids.to_vec(),
            project_id: -1,
            offset: 0,
            limit: DESCRIBE_INSTANCES_BATCH as u32,
        }
    }
}

/// The part of `Config` the autoscaler reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterConfigInfo {
    /// Running task nodes.
    #[serde(default)]
    pub task_node_size: Option<i64>,
    /// Running core nodes.
    #[serde(default)]
    pub core_node_size: Option<i64>,
}

/// One `ClusterList` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterInfo {
    /// The `emr-…` id.
    pub cluster_id: String,
    /// 2 running, 4 scaling out, 302 scale-out failed, and others.
    #[serde(default)]
    pub status: Option<i64>,
    /// May be null.
    #[serde(default)]
    pub config: Option<ClusterConfigInfo>,
}

impl ClusterInfo {
    /// Running task nodes, when the API gave them.
    pub fn task_nodes(&self) -> Option<u32> {
        self.config
            .as_ref()
            .and_then(|c| c.task_node_size)
            .and_then(|n| u32::try_from(n).ok())
    }

    /// The status says a flow runs: neither running nor "scale-out failed"
    /// (after which the cluster takes new orders).
    pub(crate) fn in_flow(&self) -> bool {
        self.status
            .is_some_and(|s| s != status::RUNNING && s != status::SCALE_OUT_FAILED)
    }
}

/// Cluster status codes the autoscaler cares about.
pub(crate) mod status {
    /// Running.
    pub(crate) const RUNNING: i64 = 2;
    /// Scaling out.
    pub(crate) const SCALING_OUT: i64 = 4;
    /// Scale-out failed.
    pub(crate) const SCALE_OUT_FAILED: i64 = 302;
}

/// The `DescribeInstances` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeInstancesResponse {
    /// Matching clusters.
    #[serde(default)]
    pub total_cnt: Option<i64>,
    /// The clusters; may be null.
    #[serde(default)]
    pub cluster_list: Option<Vec<ClusterInfo>>,
    /// The request id.
    pub request_id: String,
}
