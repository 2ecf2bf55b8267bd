//! `ScaleOutInstance`: validation in the API's order, ClientToken
//! deduplication by the wall clock, and the flow that adds the nodes.

use super::*;

impl Engine {
    pub(super) fn scale_out(
        &mut self,
        p: &Params<'_>,
        now: DateTime<Utc>,
        wall: DateTime<Utc>,
        hooks: &mut Hooks<'_>,
    ) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let pay_mode = p.required_int("PayMode")?;
        let time_unit = p.required_str("TimeUnit")?;
        let time_span = p.required_int("TimeSpan")?;
        let token = p.str("ClientToken")?;
        let task = p.int("TaskCount")?;
        let core = p.int("CoreCount")?;
        validate_optional_fields(p)?;
        let tags = request_tags(p)?;
        let index = self.cluster_index(id)?;

        let (task_count, core_count) = match (task, core) {
            (Some(n), None) => (node_count(n, ApiError::InvalidTaskCount)?, 0),
            (None, Some(n)) => (0, node_count(n, ApiError::InvalidCoreCount)?),
            _ => return Err(ApiError::InvalidCountNum),
        };
        let unit_ok = match pay_mode {
            0 => time_unit == "s",
            1 => time_unit == "m",
            other => return Err(ApiError::InvalidPaymode(other)),
        };
        if !unit_ok {
            return Err(ApiError::InvalidTimeUnit {
                pay_mode,
                time_unit: time_unit.to_owned(),
            });
        }
        if time_span <= 0 {
            return Err(ApiError::InvalidTimeSpan(time_span));
        }
        if token.is_some_and(|t| t.is_empty() || t.len() > MAX_CLIENT_TOKEN_LEN) {
            return Err(ApiError::InvalidClientToken);
        }

        if self.flow_before_token
            && let Some(flow_id) = self.clusters[index].flow
        {
            return Err(ApiError::InstanceInProcess {
                instance_id: id.to_owned(),
                flow_id,
            });
        }
        let ttl = chrono::Duration::from_std(CLIENT_TOKEN_TTL).unwrap_or(chrono::Duration::MAX);
        self.tokens.retain(|_, r| wall - r.at <= ttl);
        if let Some(record) = token.and_then(|t| self.tokens.get(t)) {
            info!(message = "ClientToken replayed.", cluster = %id, flow_id = record.flow_id);
            return Ok(ActionOk {
                body: record.body.clone(),
                flow_id: Some(record.flow_id),
                deduplicated: true,
            });
        }

        let cluster = &self.clusters[index];
        if let Some(flow_id) = cluster.flow {
            return Err(ApiError::InstanceInProcess {
                instance_id: id.to_owned(),
                flow_id,
            });
        }

        let overrides = (hooks.flow_overrides)(id);
        let flow_id = self.next_flow_id;
        self.next_flow_id += 1;
        let cluster = &mut self.clusters[index];
        let duration = overrides
            .duration
            .or(cluster.flow_duration)
            .unwrap_or(self.default_duration);
        cluster.flow = Some(flow_id);
        cluster.status = STATUS_SCALING_OUT;
        cluster.flows_started += 1;
        self.flows.insert(
            flow_id,
            Flow {
                id: flow_id,
                instance_id: id.to_owned(),
                started: now,
                duration,
                fail: overrides.fail,
                kind: FlowKind::ScaleOut,
                task_count,
                core_count,
                tags,
                charge_type: pay_mode,
                remove: Vec::new(),
                state: FlowState::Running,
            },
        );
        info!(
            message = "Flow started.",
            cluster = %id,
            flow_id,
            task_count,
            core_count,
            duration_secs = duration.as_secs_f64(),
            fails = overrides.fail
        );

        let body = into_map(json!({
            "InstanceId": id,
            "DealNames": [format!("deal-{flow_id}")],
            "ClientToken": token,
            "FlowId": flow_id,
            "BillId": format!("bill-{}", uuid::Uuid::new_v4().simple()),
            "TraceId": uuid::Uuid::new_v4().to_string(),
        }));
        if let Some(t) = token {
            self.tokens.insert(
                t.to_owned(),
                TokenRecord {
                    body: body.clone(),
                    flow_id,
                    at: wall,
                },
            );
        }
        Ok(ActionOk {
            body,
            flow_id: Some(flow_id),
            deduplicated: false,
        })
    }
}

/// The request's `Tags` as pairs (already validated); `None` when it has
/// none or an empty list.
pub(super) fn request_tags(p: &Params<'_>) -> Result<Option<Vec<(String, String)>>, ApiError> {
    let Some(tags) = p.array("Tags")? else {
        return Ok(None);
    };
    let pairs: Vec<(String, String)> = tags
        .iter()
        .map(|t| {
            let text = |field: &str| {
                t.get(field)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            (text("TagKey"), text("TagValue"))
        })
        .collect();
    Ok((!pairs.is_empty()).then_some(pairs))
}
/// Checks a node count: 1 to 20.
pub(super) fn node_count(n: i64, too_many: fn(i64) -> ApiError) -> Result<u32, ApiError> {
    if n <= 0 {
        return Err(ApiError::InvalidCount);
    }
    if n > MAX_NODES_PER_REQUEST {
        return Err(too_many(n));
    }
    u32::try_from(n).map_err(|_| too_many(n))
}
/// Checks the optional `ScaleOutInstance` fields that have rules of their own.
pub(super) fn validate_optional_fields(p: &Params<'_>) -> Result<(), ApiError> {
    if let Some(tags) = p.array("Tags")? {
        for tag in tags {
            let ok = tag.get("TagKey").is_some_and(Value::is_string)
                && tag.get("TagValue").is_none_or(Value::is_string);
            if !ok {
                return Err(ApiError::InvalidParameter(
                    "each of Tags must be an object with a string TagKey and TagValue".into(),
                ));
            }
        }
    }
    if p.array("DisasterRecoverGroupIds")?
        .is_some_and(|g| g.len() > 1)
    {
        return Err(ApiError::InvalidParameter(
            "DisasterRecoverGroupIds holds at most one item".into(),
        ));
    }
    let soft = p.array("SoftDeployInfo")?.is_some();
    let service = p.array("ServiceNodeInfo")?.is_some();
    let unnecessary = p.array("UnNecessaryNodeList")?.is_some();
    if (soft || service) && unnecessary {
        return Err(ApiError::InvalidParameter(
            "SoftDeployInfo and ServiceNodeInfo exclude UnNecessaryNodeList".into(),
        ));
    }
    p.int("RouterCount")?;
    Ok(())
}
