//! The demo's offerings: one simulated sold-out hour of the first offering
//! (the daemon falls back to the next one, and the timeline says so), and
//! node-hours and cost per offering, kept from the simulator's nodes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::ClusterConfig;
use crate::history::DEFAULT_OFFERING;
use crate::sim::{LedgerEntry, SimHandle};

/// When the sold-out hour starts, from the start of the day.
pub(crate) const SOLD_OUT_AFTER: Duration = Duration::from_secs(9 * 3600);
/// How long it lasts.
pub(crate) const SOLD_OUT_FOR: Duration = Duration::from_secs(3600);

/// The sold-out hour of the first cluster's first offering, when it has
/// offerings.
#[derive(Debug, Clone)]
pub(crate) struct SoldOutHour {
    /// The cluster.
    pub cluster: String,
    /// The offering, its spec and zone.
    pub offering: String,
    instance_type: String,
    zone: Option<String>,
    /// The window.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// 0 before, 1 during, 2 after.
    phase: u8,
}

impl SoldOutHour {
    /// The hour for `clusters`, starting [`SOLD_OUT_AFTER`] into the day.
    pub(crate) fn of(clusters: &[ClusterConfig], start: DateTime<Utc>) -> Option<SoldOutHour> {
        let c = clusters.iter().find(|c| !c.offerings.is_empty())?;
        let o = &c.offerings[0];
        let from = start + chrono::Duration::from_std(SOLD_OUT_AFTER).ok()?;
        Some(SoldOutHour {
            cluster: c.instance_id.clone(),
            offering: o.name.clone(),
            instance_type: o.instance_type.clone(),
            zone: o.zone.clone(),
            from,
            to: from + chrono::Duration::from_std(SOLD_OUT_FOR).ok()?,
            phase: 0,
        })
    }

    /// Switches the simulator's stock at the window's edges; returns the
    /// timeline line to print when it did.
    pub(crate) fn follow(&mut self, sim: &SimHandle, now: DateTime<Utc>) -> Option<String> {
        let sold_out = now >= self.from && now < self.to;
        let phase = if now < self.from {
            0
        } else if sold_out {
            1
        } else {
            2
        };
        if phase == self.phase {
            return None;
        }
        self.phase = phase;
        sim.set_sold_out(&self.instance_type, self.zone.as_deref(), None, sold_out);
        Some(if sold_out {
            format!(
                "{} sold out (simulated) until {}",
                self.offering,
                self.to.format("%H:%M")
            )
        } else {
            format!("{} in stock again", self.offering)
        })
    }
}

/// The offering a request or a node with `instance_type` in `zone` went
/// through: the first configured one that matches, else `default`.
fn offering_of(cluster: &ClusterConfig, instance_type: Option<&str>, zone: Option<&str>) -> String {
    cluster
        .offerings
        .iter()
        .find(|o| {
            Some(o.instance_type.as_str()) == instance_type
                && o.zone.as_deref().is_none_or(|z| Some(z) == zone)
        })
        .map_or_else(|| DEFAULT_OFFERING.to_string(), |o| o.name.clone())
}

/// The timeline line of a ScaleOutCluster the simulator refused.
pub(crate) fn refusal_line(cluster: &ClusterConfig, e: &LedgerEntry) -> Option<String> {
    let code = e.error_code()?;
    if e.action != "ScaleOutCluster" {
        return None;
    }
    let offering = offering_of(
        cluster,
        e.params["ResourceSpec"]["InstanceType"].as_str(),
        e.params["Zone"].as_str(),
    );
    Some(format!(
        "{offering} refused {} node(s) ({code}): the same order goes to the next offering",
        e.params["ScaleOutNodeConfig"]["NodeCount"]
    ))
}

/// The offering a ScaleOutCluster (or ScaleOutInstance: `default`) went
/// through.
pub(crate) fn offering_of_request(cluster: &ClusterConfig, e: &LedgerEntry) -> String {
    offering_of(
        cluster,
        e.params["ResourceSpec"]["InstanceType"].as_str(),
        e.params["Zone"].as_str(),
    )
}

/// Node-hours per offering of one cluster, kept like its total: nodes are
/// billed from their order until their removal has drained.
#[derive(Debug, Default)]
pub(crate) struct Book {
    billed: BTreeMap<String, u32>,
    hours: BTreeMap<String, f64>,
    /// Node id -> offering, for every node ever listed.
    owner: HashMap<String, String>,
    /// Removed nodes not drained yet, in removal order.
    draining: VecDeque<String>,
    drained: u64,
}

impl Book {
    /// A book starting with `initial` task nodes of the cluster's own spec.
    pub(crate) fn new(initial: u32) -> Book {
        let mut b = Book::default();
        b.billed.insert(DEFAULT_OFFERING.into(), initial);
        b
    }

    /// An order of `nodes` through `offering` started.
    pub(crate) fn ordered(&mut self, offering: &str, nodes: u32) {
        *self.billed.entry(offering.to_string()).or_default() += nodes;
    }

    /// Learns which offering each listed node came from.
    pub(crate) fn learn(&mut self, cluster: &ClusterConfig, sim: &SimHandle) {
        for n in sim.nodes(&cluster.instance_id).unwrap_or_default() {
            if n.order_no.is_empty() || self.owner.contains_key(&n.order_no) {
                continue;
            }
            let offering = offering_of(cluster, n.instance_type.as_deref(), n.zone.as_deref());
            self.owner.insert(n.order_no.clone(), offering);
        }
    }

    /// A removal of these nodes was sent.
    pub(crate) fn removing(&mut self, nodes: &[String]) {
        for id in nodes {
            let o = self
                .owner
                .get(id)
                .cloned()
                .unwrap_or_else(|| DEFAULT_OFFERING.to_string());
            self.draining.push_back(o);
        }
    }

    /// `drained` nodes of removals in all have stopped billing.
    pub(crate) fn drained(&mut self, drained: u64) {
        while self.drained < drained {
            self.drained += 1;
            if let Some(o) = self.draining.pop_front()
                && let Some(b) = self.billed.get_mut(&o)
            {
                *b = b.saturating_sub(1);
            }
        }
    }

    /// Bills one step.
    pub(crate) fn step(&mut self, step: Duration) {
        let hours = step.as_secs_f64() / 3600.0;
        for (o, n) in &self.billed {
            *self.hours.entry(o.clone()).or_default() += f64::from(*n) * hours;
        }
    }

    /// (offering, node-hours, cost) in configuration order, `default` first.
    pub(crate) fn figures(&self, cluster: &ClusterConfig) -> Vec<(String, f64, Option<f64>)> {
        std::iter::once((DEFAULT_OFFERING.to_string(), None))
            .chain(
                cluster
                    .offerings
                    .iter()
                    .map(|o| (o.name.clone(), o.price_per_hour)),
            )
            .map(|(name, price)| {
                let h = self.hours.get(&name).copied().unwrap_or(0.0);
                (name, h, price.map(|p| p * h))
            })
            .collect()
    }
}
