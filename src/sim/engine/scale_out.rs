//! `ScaleOutInstance`: validation in the API's order; and what it shares
//! with `ScaleOutCluster`: ClientToken deduplication by the wall clock, the
//! busy check and the flow that adds the nodes.

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
        validate_client_token(token)?;

        let mut template = SimNode::task();
        template.charge_type = pay_mode;
        template.tags = tags;
        let order = ScaleOutOrder {
            token,
            task_count,
            core_count,
            template,
            start_service: false,
            refusal: None,
        };
        self.order_scale_out(index, order, now, wall, hooks)
    }

    /// The part of a scale-out both actions share, once the request is
    /// valid and its cluster found: the running flow (when checked before
    /// the token), the ClientToken (a replay answers the original again and
    /// starts nothing), the running flow, then `order.refusal`; only then the
    /// flow starts. Refused orders leave no token behind.
    pub(super) fn order_scale_out(
        &mut self,
        index: usize,
        order: ScaleOutOrder<'_>,
        now: DateTime<Utc>,
        wall: DateTime<Utc>,
        hooks: &mut Hooks<'_>,
    ) -> Result<ActionOk, ApiError> {
        let ScaleOutOrder {
            token,
            task_count,
            core_count,
            template,
            start_service,
            refusal,
        } = order;
        let id = self.clusters[index].id.clone();
        let busy = |flow_id| ApiError::InstanceInProcess {
            instance_id: id.clone(),
            flow_id,
        };
        if self.flow_before_token
            && let Some(flow_id) = self.clusters[index].flow
        {
            return Err(busy(flow_id));
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
        if let Some(flow_id) = self.clusters[index].flow {
            return Err(busy(flow_id));
        }
        if let Some(error) = refusal {
            return Err(error);
        }

        let overrides = (hooks.flow_overrides)(&id);
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
        info!(
            message = "Flow started.",
            cluster = %id,
            flow_id,
            task_count,
            core_count,
            instance_type = template.instance_type.as_deref().unwrap_or("-"),
            start_service,
            duration_secs = duration.as_secs_f64(),
            fails = overrides.fail
        );
        self.flows.insert(
            flow_id,
            Flow {
                id: flow_id,
                instance_id: id.clone(),
                started: now,
                duration,
                fail: overrides.fail,
                kind: FlowKind::ScaleOut,
                task_count,
                core_count,
                template,
                remove: Vec::new(),
                state: FlowState::Running,
            },
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

/// A valid scale-out order, as [`Engine::order_scale_out`] takes it.
pub(super) struct ScaleOutOrder<'a> {
    /// The request's ClientToken.
    pub(super) token: Option<&'a str>,
    /// Task nodes to add.
    pub(super) task_count: u32,
    /// Core nodes to add.
    pub(super) core_count: u32,
    /// The nodes to add, but for their Flag, ids and ApplyTime.
    pub(super) template: SimNode,
    /// `EnableStartServiceFlag` (logged; the ledger keeps it per request).
    pub(super) start_service: bool,
    /// Why the order cannot be filled (stock), answered only after the
    /// ClientToken and busy checks.
    pub(super) refusal: Option<ApiError>,
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
    validate_tags(p)?;
    validate_disaster_recover_groups(p)?;
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

/// Checks `Tags`: objects with a string `TagKey` (and `TagValue`).
pub(super) fn validate_tags(p: &Params<'_>) -> Result<(), ApiError> {
    for tag in p.array("Tags")?.into_iter().flatten() {
        let ok = tag.get("TagKey").is_some_and(Value::is_string)
            && tag.get("TagValue").is_none_or(Value::is_string);
        if !ok {
            return Err(ApiError::InvalidParameter(
                "each of Tags must be an object with a string TagKey and TagValue".into(),
            ));
        }
    }
    Ok(())
}

/// Checks `DisasterRecoverGroupIds`: at most one.
pub(super) fn validate_disaster_recover_groups(p: &Params<'_>) -> Result<(), ApiError> {
    if p.array("DisasterRecoverGroupIds")?
        .is_some_and(|g| g.len() > 1)
    {
        return Err(ApiError::InvalidParameter(
            "DisasterRecoverGroupIds holds at most one item".into(),
        ));
    }
    Ok(())
}

/// Checks a ClientToken: not empty, at most 64 characters.
pub(super) fn validate_client_token(token: Option<&str>) -> Result<(), ApiError> {
    if token.is_some_and(|t| t.is_empty() || t.len() > MAX_CLIENT_TOKEN_LEN) {
        return Err(ApiError::InvalidClientToken);
    }
    Ok(())
}
