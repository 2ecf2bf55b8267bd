//! CVM stock per offering, for `ScaleOutCluster`.
//!
//! An offering is an instance type in a zone bought one way
//! (`InstanceChargeType`). Tests mark offerings sold out or short with
//! rules; a rule names an instance type and, optionally, a zone and a charge
//! type (absent: any). The most specific rule matching an order decides
//! (type, zone and charge before type and zone or type and charge, before
//! type alone); between equally specific ones, the one set last. With no
//! matching rule the offering is available.

use super::*;

/// What a `ScaleOutCluster` for an offering meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stock {
    /// Orders go through.
    #[default]
    Available,
    /// Answered `ResourcesSoldOut.CvmSoldOut`, nothing executed.
    SoldOut,
    /// Answered `ResourceInsufficient.InstanceInsufficient`, nothing executed.
    Insufficient,
}

/// One offering: what a `ScaleOutCluster` order buys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Offering {
    /// `ResourceSpec.InstanceType`, or the cluster's.
    pub(super) instance_type: String,
    /// `Zone`, or the cluster's.
    pub(super) zone: String,
    /// `InstanceChargeType`.
    pub(super) charge: String,
}

impl Offering {
    /// `Ok` when the offering can be bought under `rules`, else the API's
    /// refusal.
    pub(super) fn check(&self, rules: &[StockRule]) -> Result<(), ApiError> {
        let decisive = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matches(self))
            .max_by_key(|(order, r)| (r.specificity(), *order))
            .map(|(_, r)| r.stock);
        match decisive.unwrap_or_default() {
            Stock::Available => Ok(()),
            Stock::SoldOut => Err(ApiError::CvmSoldOut {
                instance_type: self.instance_type.clone(),
                zone: self.zone.clone(),
                charge: self.charge.clone(),
            }),
            Stock::Insufficient => Err(ApiError::InstanceInsufficient {
                instance_type: self.instance_type.clone(),
                zone: self.zone.clone(),
                charge: self.charge.clone(),
            }),
        }
    }
}

/// The stock of the offerings a rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StockRule {
    pub(crate) instance_type: String,
    /// `None`: every zone.
    pub(crate) zone: Option<String>,
    /// `None`: every charge type.
    pub(crate) charge: Option<String>,
    pub(crate) stock: Stock,
}

impl StockRule {
    fn matches(&self, offering: &Offering) -> bool {
        self.instance_type == offering.instance_type
            && self.zone.as_ref().is_none_or(|z| *z == offering.zone)
            && self.charge.as_ref().is_none_or(|c| *c == offering.charge)
    }

    fn specificity(&self) -> usize {
        usize::from(self.zone.is_some()) + usize::from(self.charge.is_some())
    }

    fn same_offerings(&self, other: &StockRule) -> bool {
        self.instance_type == other.instance_type
            && self.zone == other.zone
            && self.charge == other.charge
    }
}

/// Sets a rule, replacing one that names the same offerings (it then counts
/// as set last).
pub(crate) fn upsert(rules: &mut Vec<StockRule>, rule: StockRule) {
    rules.retain(|r| !r.same_offerings(&rule));
    rules.push(rule);
}
