//! Typed EMR actions (API version 2019-01-03) and their pre-flight checks.
//!
//! Field names use the API's casing; absent optional fields are left out of
//! the JSON. Responses are parsed leniently: unknown fields are ignored and the
//! documented nullable ones are `Option`.
//!
//! The wire types live one file per action beside this one; this file holds
//! [`Action`], the checks they share and the [`super::EmrClient`] methods
//! that send them.

mod flow;
mod instances;
mod nodes;
mod scale_out;
mod scale_out_cluster;
mod strategies;
mod terminate;
#[cfg(test)]
mod tests;

pub use flow::*;
pub(crate) use instances::*;
pub(crate) use nodes::*;
pub use scale_out::*;
pub use scale_out_cluster::*;
pub(crate) use strategies::*;
pub use terminate::*;

use super::error::PreflightError;

/// The API version every action here belongs to.
pub(crate) const VERSION: &str = "2019-01-03";
/// The service name used in signing and the default host.
pub(crate) const SERVICE: &str = "emr";

/// Whether `id` looks like an EMR instance id: `emr-` and 8 of `[a-z0-9]`.
pub(crate) fn is_valid_instance_id(id: &str) -> bool {
    id.strip_prefix("emr-").is_some_and(|rest| {
        rest.len() == 8
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

pub(super) fn refuse(code: &'static str, message: impl Into<String>) -> Result<(), PreflightError> {
    Err(PreflightError {
        code,
        message: message.into(),
    })
}

/// `InstanceId` is `emr-` and 8 lowercase letters or digits.
pub(super) fn check_instance_id(instance_id: &str) -> Result<(), PreflightError> {
    if is_valid_instance_id(instance_id) {
        return Ok(());
    }
    refuse(
        "InvalidParameter.InvalidClusterId",
        format!(
            "InstanceId {instance_id:?} is not of the form emr-xxxxxxxx (8 lowercase letters or digits)"
        ),
    )
}

/// `SoftDeployInfo` and `ServiceNodeInfo` go together, and
/// `DisasterRecoverGroupIds` holds one placement group at most.
pub(super) fn check_deployment(
    (soft_deploy_info, service_node_info): (bool, bool),
    placement_groups: usize,
) -> Result<(), PreflightError> {
    if soft_deploy_info != service_node_info {
        refuse(
            "InvalidParameter.InvalidServiceNodeInfo",
            "SoftDeployInfo and ServiceNodeInfo go together",
        )?;
    }
    if placement_groups > 1 {
        refuse(
            "InvalidParameter",
            "DisasterRecoverGroupIds holds at most 1 placement group",
        )?;
    }
    Ok(())
}

/// An EMR action this client calls. Each has its own rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Adds nodes.
    ScaleOutInstance,
    /// Adds task nodes of a given spec, zone and charge type.
    ScaleOutCluster,
    /// Removes task nodes, gracefully. Mutating, with no ClientToken.
    TerminateClusterNodes,
    /// Cluster status and sizes, batched.
    DescribeInstances,
    /// Progress of one flow.
    DescribeClusterFlowStatusDetail,
    /// Node lists.
    DescribeClusterNodes,
    /// The auto-scaling groups of Tencent's own auto-scaling.
    DescribeAutoScaleGroupGlobalConf,
    /// The strategies of Tencent's own auto-scaling.
    DescribeAutoScaleStrategies,
}

impl Action {
    /// Every action, in label order.
    pub(crate) const ALL: [Action; 8] = [
        Action::ScaleOutInstance,
        Action::ScaleOutCluster,
        Action::TerminateClusterNodes,
        Action::DescribeInstances,
        Action::DescribeClusterFlowStatusDetail,
        Action::DescribeClusterNodes,
        Action::DescribeAutoScaleGroupGlobalConf,
        Action::DescribeAutoScaleStrategies,
    ];

    /// The wire name, also the `action` metric label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::ScaleOutInstance => "ScaleOutInstance",
            Action::ScaleOutCluster => "ScaleOutCluster",
            Action::DescribeInstances => "DescribeInstances",
            Action::DescribeClusterFlowStatusDetail => "DescribeClusterFlowStatusDetail",
            Action::DescribeClusterNodes => "DescribeClusterNodes",
            Action::DescribeAutoScaleGroupGlobalConf => "DescribeAutoScaleGroupGlobalConf",
            Action::DescribeAutoScaleStrategies => "DescribeAutoScaleStrategies",
            Action::TerminateClusterNodes => "TerminateClusterNodes",
        }
    }

    /// Whether the action changes anything (and so needs a ClientToken to
    /// retry; TerminateClusterNodes has none, so it is never retried by the
    /// client: its operation re-sends the same node list instead).
    pub(crate) fn is_mutating(self) -> bool {
        matches!(
            self,
            Action::ScaleOutInstance | Action::ScaleOutCluster | Action::TerminateClusterNodes
        )
    }
}

impl super::EmrClient {
    /// Sends one ScaleOutInstance under `token`, after the pre-flight checks.
    ///
    /// The request's own `ClientToken` is replaced by `token`, which every
    /// retry reuses; nothing is re-sent once the token is 4.5 minutes old.
    pub async fn scale_out(
        &self,
        request: &ScaleOutInstanceRequest,
        token: &super::ClientToken,
    ) -> Result<ScaleOutInstanceResponse, super::ApiError> {
        let request = ScaleOutInstanceRequest {
            client_token: Some(token.value.clone()),
            ..request.clone()
        };
        request.preflight()?;
        self.call(Action::ScaleOutInstance, &request, Some(token))
            .await
    }

    /// As [`scale_out`](Self::scale_out), also returning how many attempts
    /// reached the network, for the "may have executed" judgement.
    pub async fn scale_out_counted(
        &self,
        request: &ScaleOutInstanceRequest,
        token: &super::ClientToken,
    ) -> (Result<ScaleOutInstanceResponse, super::ApiError>, u32) {
        let request = ScaleOutInstanceRequest {
            client_token: Some(token.value.clone()),
            ..request.clone()
        };
        if let Err(e) = request.preflight() {
            return (Err(e.into()), 0);
        }
        self.call_counted(Action::ScaleOutInstance, &request, Some(token))
            .await
    }

    /// Sends one ScaleOutCluster under `token`, after the pre-flight checks;
    /// also returns how many attempts reached the network. As
    /// [`scale_out_counted`](Self::scale_out_counted), every retry reuses the
    /// token and nothing is re-sent once it is 4.5 minutes old.
    pub async fn scale_out_cluster_counted(
        &self,
        request: &ScaleOutClusterRequest,
        token: &super::ClientToken,
    ) -> (Result<ScaleOutClusterResponse, super::ApiError>, u32) {
        let request = ScaleOutClusterRequest {
            client_token: Some(token.value.clone()),
            ..request.clone()
        };
        if let Err(e) = request.preflight() {
            return (Err(e.into()), 0);
        }
        self.call_counted(Action::ScaleOutCluster, &request, Some(token))
            .await
    }

    /// Describes many clusters, in batches of [`DESCRIBE_INSTANCES_BATCH`].
    /// Clusters the API does not know are absent from the result.
    pub async fn describe_instances(
        &self,
        ids: &[String],
    ) -> Result<Vec<ClusterInfo>, super::ApiError> {
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(DESCRIBE_INSTANCES_BATCH) {
            let resp: DescribeInstancesResponse = self
                .call(
                    Action::DescribeInstances,
                    &DescribeInstancesRequest::for_ids(batch),
                    None,
                )
                .await?;
            out.extend(resp.cluster_list.unwrap_or_default());
        }
        Ok(out)
    }

    /// Where flow `flow_id` of `instance_id` stands.
    pub async fn describe_flow(
        &self,
        instance_id: &str,
        flow_id: i64,
    ) -> Result<DescribeFlowResponse, super::ApiError> {
        self.call(
            Action::DescribeClusterFlowStatusDetail,
            &DescribeFlowRequest::new(instance_id, flow_id),
            None,
        )
        .await
    }

    /// Every task node of the cluster, page by page ([`DESCRIBE_NODES_PAGE`]
    /// per page, at most [`DESCRIBE_NODES_MAX_PAGES`] pages). Stops at
    /// `TotalCnt` nodes or at the first short page.
    pub async fn task_nodes(
        &self,
        instance_id: &str,
    ) -> Result<Vec<NodeHardwareInfo>, super::ApiError> {
        let mut nodes = Vec::new();
        for page in 0..DESCRIBE_NODES_MAX_PAGES {
            let resp: DescribeClusterNodesResponse = self
                .call(
                    Action::DescribeClusterNodes,
                    &DescribeClusterNodesRequest {
                        instance_id: instance_id.to_string(),
                        node_flag: "task".into(),
                        offset: page,
                        limit: DESCRIBE_NODES_PAGE,
                    },
                    None,
                )
                .await?;
            let list = resp.node_list.unwrap_or_default();
            let short = list.len() < DESCRIBE_NODES_PAGE as usize;
            nodes.extend(list);
            let total = resp.total_cnt.and_then(|t| usize::try_from(t).ok());
            if short || total.is_some_and(|t| nodes.len() >= t) {
                break;
            }
        }
        Ok(nodes)
    }

    /// Sends one graceful `TerminateClusterNodes`, after the pre-flight
    /// checks, once: the action has no ClientToken, so the client never
    /// retries it. Returns how many attempts reached the network (0 or 1).
    pub async fn terminate_nodes_counted(
        &self,
        request: &TerminateClusterNodesRequest,
    ) -> (Result<TerminateClusterNodesResponse, super::ApiError>, u32) {
        if let Err(e) = request.preflight() {
            return (Err(e.into()), 0);
        }
        self.call_counted(Action::TerminateClusterNodes, request, None)
            .await
    }

    /// What Tencent's own auto-scaling does on `instance_id`: the groups of
    /// `DescribeAutoScaleGroupGlobalConf`, then the strategies of each
    /// (`DescribeAutoScaleStrategies` with its `GroupId`), or of the cluster
    /// when it lists no group.
    pub async fn builtin_scaling(
        &self,
        instance_id: &str,
    ) -> Result<BuiltinScaling, super::ApiError> {
        let groups: DescribeAutoScaleGroupGlobalConfResponse = self
            .call(
                Action::DescribeAutoScaleGroupGlobalConf,
                &AutoScaleRequest {
                    instance_id: instance_id.to_string(),
                    group_id: None,
                },
                None,
            )
            .await?;
        let ids: Vec<Option<i64>> = groups
            .group_global_confs
            .unwrap_or_default()
            .into_iter()
            .filter_map(|g| g.group_global_conf.and_then(|c| c.id))
            .map(Some)
            .collect();
        let mut out = BuiltinScaling {
            groups: ids.len(),
            enabled: Vec::new(),
        };
        let asks = if ids.is_empty() { vec![None] } else { ids };
        for group_id in asks {
            let answer: DescribeAutoScaleStrategiesResponse = self
                .call(
                    Action::DescribeAutoScaleStrategies,
                    &AutoScaleRequest {
                        instance_id: instance_id.to_string(),
                        group_id,
                    },
                    None,
                )
                .await?;
            out.add(&answer);
        }
        Ok(out)
    }
}
