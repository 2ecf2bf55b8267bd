//! `ScaleOutCluster`: the newer scale-out, which names the node type, count,
//! instance type, zone and charge type (on-demand, spot or monthly).
//!
//! A body is checked first against the SDK's request model
//! ([`super::model`]: unknown keys, JSON types), then its rules
//! ([`validate`], which needs no cluster); then the cluster, the running
//! flow and ClientToken exactly as for `ScaleOutInstance`, and the stock of
//! the offering ([`super::stock`]) last. The flow it starts adds
//! nodes carrying the request's `Tags` and the offering.

use super::*;

use super::model::{SCALE_OUT_CLUSTER_REQUEST, check_fields};
use super::scale_out::{
    ScaleOutOrder, node_count, request_tags, validate_client_token,
    validate_disaster_recover_groups, validate_tags,
};
use super::stock::Offering;

/// A `ScaleOutCluster` request that passed [`validate`].
#[derive(Debug)]
pub(super) struct ClusterOrder<'a> {
    pub(super) instance_id: &'a str,
    /// One of the `CHARGE_*` names.
    pub(super) charge: &'a str,
    /// `NODE_FLAG_TASK` or `NODE_FLAG_CORE`.
    pub(super) flag: i64,
    /// 1 to [`MAX_NODES_PER_REQUEST`].
    pub(super) count: u32,
    pub(super) token: Option<&'a str>,
    pub(super) tags: Option<Vec<(String, String)>>,
    /// `ResourceSpec.InstanceType`; `None`: the cluster's.
    pub(super) instance_type: Option<&'a str>,
    /// `Zone`; `None`: the cluster's.
    pub(super) zone: Option<&'a str>,
    /// `EnableStartServiceFlag` (false when absent).
    pub(super) start_service: bool,
}

/// Everything about a `ScaleOutCluster` body that needs no cluster, in the
/// API's order: the model (`UnknownParameter`, `InvalidParameter`), the
/// required fields (`MissingParameter`), `InstanceChargeType`
/// (`InvalidParameter.InvalidPaymode`), `NodeFlag`
/// (`InvalidParameter.InvalidNodeType`; MASTER and ROUTER
/// `UnsupportedOperation`), SPOTPAID for TASK only
/// (`InvalidParameter.PayModeResourceNotMatch`), `NodeCount` 1 to 20
/// (`InvalidParameter.InvalidCount`, `.InvalidTaskCount`,
/// `.InvalidCoreCount`), `InstanceChargePrepaid` for PREPAID, the
/// ClientToken, `Tags`, `DisasterRecoverGroupIds`, a non-empty
/// `ResourceSpec.InstanceType` and `Zone`.
pub(super) fn validate(params: &Map<String, Value>) -> Result<ClusterOrder<'_>, ApiError> {
    check_fields(params, SCALE_OUT_CLUSTER_REQUEST, "")?;
    let p = Params(params);
    let instance_id = p.required_str("InstanceId")?;
    let charge = p.required_str("InstanceChargeType")?;
    let config = Params(p.required_object("ScaleOutNodeConfig")?);
    let node_flag = config
        .str("NodeFlag")?
        .ok_or_else(|| ApiError::MissingParameter("ScaleOutNodeConfig.NodeFlag".into()))?;
    let count = config
        .int("NodeCount")?
        .ok_or_else(|| ApiError::MissingParameter("ScaleOutNodeConfig.NodeCount".into()))?;

    if ![CHARGE_POSTPAID_BY_HOUR, CHARGE_SPOTPAID, CHARGE_PREPAID].contains(&charge) {
        return Err(ApiError::InvalidChargeType(charge.to_owned()));
    }
    let (flag, too_many): (i64, fn(i64) -> ApiError) = match node_flag {
        "TASK" => (NODE_FLAG_TASK, ApiError::InvalidTaskCount),
        "CORE" => (NODE_FLAG_CORE, ApiError::InvalidCoreCount),
        "MASTER" | "ROUTER" => return Err(ApiError::UnsupportedNodeFlag(node_flag.to_owned())),
        other => return Err(ApiError::InvalidNodeType(other.to_owned())),
    };
    if charge == CHARGE_SPOTPAID && flag != NODE_FLAG_TASK {
        return Err(ApiError::ChargeNodeMismatch {
            charge: charge.to_owned(),
            node_flag: node_flag.to_owned(),
        });
    }
    let count = node_count(count, too_many)?;
    if charge == CHARGE_PREPAID && p.get("InstanceChargePrepaid").is_none() {
        return Err(ApiError::MissingParameter("InstanceChargePrepaid".into()));
    }
    let token = p.str("ClientToken")?;
    validate_client_token(token)?;
    validate_tags(&p)?;
    validate_disaster_recover_groups(&p)?;
    let spec = p.get("ResourceSpec").and_then(Value::as_object).map(Params);
    let instance_type = match &spec {
        Some(spec) => {
            validate_tags(spec)?;
            spec.str("InstanceType")?
        }
        None => None,
    };
    if let Some(blank) = instance_type.filter(|t| t.trim().is_empty()) {
        return Err(ApiError::InvalidInstanceType(blank.to_owned()));
    }
    let zone = p.str("Zone")?;
    if let Some(blank) = zone.filter(|z| z.trim().is_empty()) {
        return Err(ApiError::InvalidZone(blank.to_owned()));
    }
    Ok(ClusterOrder {
        instance_id,
        charge,
        flag,
        count,
        token,
        tags: request_tags(&p)?,
        instance_type,
        zone,
        start_service: p.bool("EnableStartServiceFlag")?.unwrap_or(false),
    })
}

impl Engine {
    /// `ScaleOutCluster`: [`validate`], the cluster, then the order as
    /// `ScaleOutInstance` places it, refused when the offering's stock says so.
    pub(super) fn scale_out_cluster(
        &mut self,
        p: &Params<'_>,
        now: DateTime<Utc>,
        wall: DateTime<Utc>,
        hooks: &mut Hooks<'_>,
    ) -> Result<ActionOk, ApiError> {
        let order = validate(p.0)?;
        let index = self.cluster_index(order.instance_id)?;
        let cluster = &self.clusters[index];
        let offering = Offering {
            instance_type: order
                .instance_type
                .unwrap_or(&cluster.instance_type)
                .to_owned(),
            zone: order.zone.unwrap_or(&cluster.zone).to_owned(),
            charge: order.charge.to_owned(),
        };
        let refusal = offering.check(&self.stock).err();
        let mut template = SimNode::task()
            .with_instance_type(offering.instance_type)
            .in_zone(offering.zone)
            .with_instance_charge_type(offering.charge);
        template.tags = order.tags;
        let (task_count, core_count) = if order.flag == NODE_FLAG_TASK {
            (order.count, 0)
        } else {
            (0, order.count)
        };
        let order = ScaleOutOrder {
            token: order.token,
            task_count,
            core_count,
            template,
            start_service: order.start_service,
            refusal,
        };
        self.order_scale_out(index, order, now, wall, hooks)
    }
}
