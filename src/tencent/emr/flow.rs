//! `DescribeClusterFlowStatusDetail`: how a flow stands.

use serde::{Deserialize, Serialize};

/// `FlowParam` of `DescribeClusterFlowStatusDetail`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FlowParam {
    /// Always `FlowId`.
    #[serde(rename = "FKey")]
    pub key: &'static str,
    /// The flow id, as a string.
    #[serde(rename = "FValue")]
    pub value: String,
}

/// The `DescribeClusterFlowStatusDetail` request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeFlowRequest {
    pub instance_id: String,
    /// Which flow.
    pub flow_param: FlowParam,
}

impl DescribeFlowRequest {
    /// Asks for flow `flow_id` of `instance_id`.
    pub(crate) fn new(instance_id: &str, flow_id: i64) -> Self {
        Self {
            instance_id: instance_id.to_string(),
            flow_param: FlowParam {
                key: "FlowId",
                value: flow_id.to_string(),
            },
        }
    }
}

/// Where a flow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// 0 init or 1 running.
    Running,
    /// 2 done, or 3 done with skips.
    Done,
    /// -1 failed.
    Failed,
    /// -3 blocked.
    Blocked,
    /// Any other value.
    Unknown(i64),
}

impl FlowState {
    /// Maps `FlowTotalStatus`.
    pub(crate) fn from_code(code: i64) -> Self {
        match code {
            0 | 1 => FlowState::Running,
            2 | 3 => FlowState::Done,
            -1 => FlowState::Failed,
            -3 => FlowState::Blocked,
            other => FlowState::Unknown(other),
        }
    }
}

/// The `DescribeClusterFlowStatusDetail` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeFlowResponse {
    /// 0 init, 1 running, 2 done, 3 done with skips, -1 failed, -3 blocked.
    #[serde(default)]
    pub flow_total_status: Option<i64>,
    /// Progress, 0 to 1.
    #[serde(default)]
    pub flow_total_progress: Option<f64>,
    /// The request id.
    pub request_id: String,
}

impl DescribeFlowResponse {
    /// The flow's state; a missing status counts as unknown.
    pub fn state(&self) -> FlowState {
        self.flow_total_status
            .map_or(FlowState::Unknown(i64::MIN), FlowState::from_code)
    }
}
