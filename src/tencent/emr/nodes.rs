//! `DescribeClusterNodes`: a cluster's node list, paged.

use serde::{Deserialize, Serialize};

use super::Tag;

/// The `DescribeClusterNodes` request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeClusterNodesRequest {
    pub instance_id: String,
    /// `task`, `core`, `all` …
    pub node_flag: String,
    /// The page number, from 0 (the SDK documents `Offset` as a page index).
    pub offset: u32,
    /// Page size, at most [`DESCRIBE_NODES_PAGE`].
    pub limit: u32,
}

/// Largest `DescribeClusterNodes` page.
pub(crate) const DESCRIBE_NODES_PAGE: u32 = 100;

/// Most pages read for one node list (10,000 nodes): a server that keeps
/// answering full pages cannot keep the caller reading for ever.
pub(crate) const DESCRIBE_NODES_MAX_PAGES: u32 = 100;

/// The `DescribeClusterNodes` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeClusterNodesResponse {
    /// Nodes matching the flag.
    #[serde(default)]
    pub total_cnt: Option<i64>,
    /// This page; may be null.
    #[serde(default)]
    pub node_list: Option<Vec<NodeHardwareInfo>>,
    /// The request id.
    pub request_id: String,
}

/// One node of `DescribeClusterNodes` (`NodeHardwareInfo`), the fields the
/// scale-in rules read. Every field may be absent or null; a node whose
/// fields are missing is never eligible for removal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeHardwareInfo {
    /// 0 common, 1 master, 2 core, 3 task.
    pub flag: Option<i64>,
    /// 1: created by Tencent's own auto-scaling.
    pub auto_flag: Option<i64>,
    /// 1: may be destroyed; 0: may not.
    pub destroyable: Option<i64>,
    /// Instance protection: true means the API refuses to terminate it.
    pub disable_api_termination: Option<bool>,
    /// 0 pay-as-you-go, 1 monthly.
    pub charge_type: Option<i64>,
    /// The machine id (`ins-…`), what `TerminateClusterNodes` names.
    pub order_no: Option<String>,
    /// The EMR resource id.
    pub emr_resource_id: Option<String>,
    /// Private IP, matched against YARN's node addresses.
    pub ip: Option<String>,
    /// When the node was bought, `YYYY-MM-DD HH:MM:SS`.
    pub apply_time: Option<String>,
    /// The node's tags; may be null.
    pub tags: Option<Vec<Tag>>,
    /// `host` or `pod`.
    pub hardware_resource_type: Option<String>,
}

impl From<&NodeHardwareInfo> for crate::policy::scale_in::Node {
    fn from(n: &NodeHardwareInfo) -> Self {
        Self {
            id: n.order_no.clone(),
            ip: n.ip.clone(),
            flag: n.flag,
            auto_flag: n.auto_flag,
            destroyable: n.destroyable,
            disable_api_termination: n.disable_api_termination,
            charge_type: n.charge_type,
            hardware: n.hardware_resource_type.clone(),
            apply_time: n.apply_time.clone(),
            tags: n.tags.as_ref().map(|tags| {
                tags.iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect()
            }),
        }
    }
}
