//! `[[clusters.scale_out.offerings]]`: the instance specs, zones and charge
//! types a cluster accepts for its task nodes, in order of preference, and
//! `on_demand_floor`. With offerings every task-node order is a
//! `ScaleOutCluster` through the first offering available; without them
//! nothing changes (`ScaleOutInstance` with the cluster's default spec).
//!
//! The offerings of one cluster must give YARN the same memory and cores:
//! the rules (a capacity rule's `per_node` above all) count nodes, not specs.

use serde::Deserialize;

use super::Validator;
use super::raw::Field;

/// One offering as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawOffering {
    /// The `offering` metric label; unique in the cluster.
    pub name: Field<String>,
    /// `ResourceSpec.InstanceType`.
    pub instance_type: Field<String>,
    /// `on_demand` or `spot`.
    pub charge: Field<String>,
    /// `Zone`.
    pub zone: Field<String>,
    /// `SubnetId`.
    pub subnet_id: Field<String>,
    /// For reports only.
    pub price_per_hour: Field<f64>,
}

/// How an offering's nodes are billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Pay-as-you-go (`POSTPAID_BY_HOUR`).
    OnDemand,
    /// Spot (`SPOTPAID`): cheaper, and the cloud may take the node back.
    Spot,
}

impl Charge {
    /// The `InstanceChargeType` value.
    pub fn wire(self) -> &'static str {
        match self {
            Charge::OnDemand => crate::tencent::emr::CHARGE_ON_DEMAND,
            Charge::Spot => crate::tencent::emr::CHARGE_SPOT,
        }
    }

    /// As written in the config.
    pub fn label(self) -> &'static str {
        match self {
            Charge::OnDemand => "on_demand",
            Charge::Spot => "spot",
        }
    }
}

/// One offering, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Offering {
    /// Its name: the `offering` label, in history and in `plan`.
    pub name: String,
    /// `ResourceSpec.InstanceType`.
    pub instance_type: String,
    /// On demand or spot.
    pub charge: Charge,
    /// `Zone`; the cluster's when unset.
    pub zone: Option<String>,
    /// `SubnetId`; the cluster's when unset.
    pub subnet_id: Option<String>,
    /// Price per node-hour, for reports.
    pub price_per_hour: Option<f64>,
}

impl Validator<'_> {
    /// Validates the offerings of the cluster at `at` (its
    /// `[clusters.scale_out]` path) and its `on_demand_floor`.
    pub(super) fn offerings(
        &mut self,
        at: &str,
        raw: Vec<RawOffering>,
        floor: Field<u32>,
        max_task_nodes: Option<u32>,
    ) -> (Vec<Offering>, u32) {
        let mut offerings: Vec<Offering> = Vec::new();
        for (i, o) in raw.into_iter().enumerate() {
            let p = |k: &str| format!("{at}.offerings[{i}].{k}");
            let name = self.get(&p("name"), o.name, None).unwrap_or_default();
            if !name.is_empty()
                && !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                self.issue(
                    &p("name"),
                    format!(
                        "{name:?} must be letters, digits, '-', '_' or '.' (it is a metric label)"
                    ),
                );
            }
            if name == crate::history::DEFAULT_OFFERING {
                self.issue(
                    &p("name"),
                    "\"default\" names orders through the cluster's own spec; choose another name",
                );
            }
            if let Some(j) = offerings
                .iter()
                .position(|x| x.name == name && !name.is_empty())
            {
                self.issue(
                    &p("name"),
                    format!("{name:?} is already the name of offerings[{j}]"),
                );
            }
            let instance_type = self
                .get(&p("instance_type"), o.instance_type, None)
                .unwrap_or_default();
            if instance_type.trim().is_empty()
                && self.issues.iter().all(|x| x.path != p("instance_type"))
            {
                self.issue(
                    &p("instance_type"),
                    "must not be empty; e.g. \"S5.2XLARGE32\"",
                );
            }
            let charge = match self
                .get(&p("charge"), o.charge, Some("on_demand".into()))
                .as_deref()
            {
                Some("on_demand") | None => Charge::OnDemand,
                Some("spot") => Charge::Spot,
                Some(other) => {
                    self.issue(
                        &p("charge"),
                        format!("{other:?} is not a charge; use \"on_demand\" (POSTPAID_BY_HOUR) or \"spot\" (SPOTPAID)"),
                    );
                    Charge::OnDemand
                }
            };
            let price_per_hour = self.optional(&p("price_per_hour"), o.price_per_hour);
            if price_per_hour.is_some_and(|x| !x.is_finite() || x < 0.0) {
                self.issue(&p("price_per_hour"), "must be a price of 0 or more");
            }
            offerings.push(Offering {
                name,
                instance_type,
                charge,
                zone: self.optional(&p("zone"), o.zone),
                subnet_id: self.optional(&p("subnet_id"), o.subnet_id),
                price_per_hour,
            });
        }
        let floor_at = format!("{at}.on_demand_floor");
        let on_demand_floor = self.get(&floor_at, floor, Some(0)).unwrap_or(0);
        if on_demand_floor > 0 {
            if offerings.is_empty() {
                self.issue(
                    &floor_at,
                    "on_demand_floor applies to offerings; without [[clusters.scale_out.offerings]] every node is on demand already",
                );
            } else if !offerings.iter().any(|o| o.charge == Charge::OnDemand) {
                self.issue(
                    &floor_at,
                    "needs at least one offering with charge = \"on_demand\" to keep that many nodes on demand",
                );
            }
            if let Some(max) = max_task_nodes
                && on_demand_floor > max
            {
                self.issue(
                    &floor_at,
                    format!("{on_demand_floor} is above max_task_nodes ({max})"),
                );
            }
        }
        (offerings, on_demand_floor)
    }
}
