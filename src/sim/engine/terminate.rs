//! `TerminateClusterNodes`: graceful removal of named task nodes, refused
//! for nodes that are not task nodes, not destroyable, protected or prepaid.

use super::*;

impl Engine {
    /// `TerminateClusterNodes`: validation, then busy, then every node
    /// listed, then every node removable; only then a scale-in flow starts.
    pub(super) fn terminate_nodes(
        &mut self,
        p: &Params<'_>,
        now: DateTime<Utc>,
        hooks: &mut Hooks<'_>,
    ) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let names = p
            .str_list("CvmInstanceIds")?
            .ok_or_else(|| ApiError::MissingParameter("CvmInstanceIds".into()))?;
        let flag = p.required_str("NodeFlag")?;
        let graceful = p.bool("GraceDownFlag")?.unwrap_or(false);
        let grace_time = p.int("GraceDownTime")?;
        if names.is_empty() {
            return Err(ApiError::InvalidParameter(
                "CvmInstanceIds must name at least one node".into(),
            ));
        }
        if let Some(blank) = names.iter().find(|n| n.trim().is_empty()) {
            return Err(ApiError::InvalidParameter(format!(
                "CvmInstanceIds holds an empty machine id {blank:?}"
            )));
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(ApiError::InvalidParameter(format!(
                    "CvmInstanceIds names {name} twice"
                )));
            }
        }
        if flag != TERMINATE_NODE_FLAG {
            return Err(ApiError::InvalidParameter(format!(
                "NodeFlag {flag:?} is not supported; only task nodes can be terminated (NodeFlag \"TASK\")"
            )));
        }
        let duration = if graceful {
            match grace_time {
                Some(t) if GRACE_DOWN_SECONDS.contains(&t) => Duration::from_secs(t.unsigned_abs()),
                other => {
                    let got = other.map_or_else(|| "none".to_owned(), |t| t.to_string());
                    return Err(ApiError::InvalidParameter(format!(
                        "GraceDownTime must be 60 to 1800 seconds when GraceDownFlag is true, got {got}"
                    )));
                }
            }
        } else {
            QUICK_SCALE_IN
        };
        let index = self.cluster_index(id)?;

        let cluster = &self.clusters[index];
        if let Some(flow_id) = cluster.flow {
            return Err(ApiError::InstanceInProcess {
                instance_id: id.to_owned(),
                flow_id,
            });
        }
        if cluster.status != STATUS_RUNNING {
            return Err(ApiError::InstanceNotRunning {
                instance_id: id.to_owned(),
                status: cluster.status,
            });
        }
        if let Some(missing) = names.iter().find(|n| cluster.node(n).is_none()) {
            return Err(ApiError::NodeNotFound {
                instance_id: id.to_owned(),
                node: missing.clone(),
            });
        }
        for node in names.iter().filter_map(|n| cluster.node(n)) {
            removable(node)?;
        }

        let overrides = (hooks.flow_overrides)(id);
        let duration = overrides.duration.unwrap_or(duration);
        let flow_id = self.next_flow_id;
        self.next_flow_id += 1;
        let cluster = &mut self.clusters[index];
        cluster.flow = Some(flow_id);
        cluster.status = STATUS_SCALING_IN;
        cluster.flows_started += 1;
        info!(
            message = "Scale-in flow started.",
            cluster = %id,
            flow_id,
            nodes = ?names,
            duration_secs = duration.as_secs_f64(),
            fails = overrides.fail
        );
        self.flows.insert(
            flow_id,
            Flow {
                id: flow_id,
                instance_id: id.to_owned(),
                started: now,
                duration,
                fail: overrides.fail,
                kind: FlowKind::ScaleIn,
                task_count: 0,
                core_count: 0,
                template: SimNode::task(),
                remove: names,
                state: FlowState::Running,
            },
        );
        Ok(ActionOk {
            body: into_map(json!({ "FlowId": flow_id })),
            flow_id: Some(flow_id),
            deduplicated: false,
        })
    }
}

/// Whether `TerminateClusterNodes` may remove `node`: a task node,
/// destroyable, without instance protection, pay-as-you-go (checked in
/// that order).
pub(super) fn removable(node: &SimNode) -> Result<(), ApiError> {
    if node.flag != NODE_FLAG_TASK {
        return Err(ApiError::NodeNotTask {
            node: node.order_no.clone(),
            flag: node.flag,
        });
    }
    if node.destroyable != 1 {
        return Err(ApiError::NodeNotDestroyable(node.order_no.clone()));
    }
    if node.disable_api_termination {
        return Err(ApiError::NodeProtected(node.order_no.clone()));
    }
    if node.charge_type != 0 {
        return Err(ApiError::NodePrepaid {
            node: node.order_no.clone(),
            charge_type: node.charge_type,
        });
    }
    Ok(())
}
