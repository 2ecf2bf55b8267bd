//! Choosing the nodes of a removal from the live cluster: its node list
//! (`DescribeClusterNodes`) and, when configured, its YARN ResourceManager,
//! through the pure `policy::scale_in::select`. The daemon's owners and
//! `plan` both choose here, so `plan` shows what the daemon would remove.

use std::time::Duration;

use crate::config::ClusterConfig;
use crate::policy::scale_in::{Ineligible, Node, Selection, select};
use crate::tencent::EmrClient;
use crate::yarn::Yarn;

/// Why no node can be picked now.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChooseError {
    /// `DescribeClusterNodes` failed.
    #[error("cannot read the node list: {0}")]
    NodeList(#[source] crate::tencent::ApiError),
    /// No ResourceManager answered.
    #[error("cannot read the YARN ResourceManager: {0}")]
    ResourceManager(#[source] crate::yarn::YarnError),
}

/// The machine ids of `cluster`'s task nodes known to be spot: those the
/// books (`node_offerings`) place on a spot offering.
pub(crate) fn spot_nodes(
    cluster: &ClusterConfig,
    node_offerings: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeSet<String> {
    node_offerings
        .iter()
        .filter(|(_, o)| {
            cluster
                .offerings
                .iter()
                .any(|x| x.name == **o && x.charge == crate::config::offerings::Charge::Spot)
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// `usable` offerings in the order an order tries them: while fewer than
/// `on_demand_floor` on-demand task nodes run (`running` less the booked
/// spot ones), on-demand offerings first. The daemon and `plan` both order
/// them here.
pub(crate) fn order_offerings(
    cluster: &ClusterConfig,
    node_offerings: &std::collections::BTreeMap<String, String>,
    running: u32,
    mut usable: Vec<String>,
) -> Vec<String> {
    use crate::config::offerings::Charge;
    if cluster.on_demand_floor == 0 {
        return usable;
    }
    let charge = |name: &str| {
        cluster
            .offerings
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.charge)
    };
    let spot = spot_nodes(cluster, node_offerings).len() as u32;
    if running.saturating_sub(spot) < cluster.on_demand_floor {
        usable.sort_by_key(|name| charge(name) != Some(Charge::OnDemand));
    }
    usable
}

/// Picks up to `count` nodes of `cluster` by its scale-in rules. The node
/// list just read bounds the removal by `min_task_nodes` once more (a
/// capacity snapshot can be older than the last removal), and by
/// `on_demand_floor`: of the nodes listed, those not in `spot` are on
/// demand, and no removal takes them below the floor (spot nodes further
/// down the order go instead); among candidates of equal standing, on-demand
/// nodes above the floor go first. An `Err` says why nothing can be picked now:
/// no node list, or no ResourceManager answer.
pub(crate) async fn choose(
    emr: &EmrClient,
    http: &reqwest::Client,
    cluster: &ClusterConfig,
    count: u32,
    yarn_timeout: Duration,
    spot: &std::collections::BTreeSet<String>,
) -> Result<Selection, ChooseError> {
    let listed = emr
        .task_nodes(&cluster.instance_id)
        .await
        .map_err(ChooseError::NodeList)?;
    let yarn_state = match &cluster.yarn {
        None => None,
        Some(y) => Some(
            Yarn::new(http.clone(), y.resourcemanager_urls.clone(), yarn_timeout)
                .state()
                .await
                .map_err(ChooseError::ResourceManager)?,
        ),
    };
    let nodes: Vec<Node> = listed.iter().map(Node::from).collect();
    let floor = cluster.on_demand_floor;
    let mut selection = select(
        &nodes,
        &cluster.scale_in.scope,
        yarn_state.as_ref(),
        &[],
        // With a floor, every eligible node in order: an on-demand node the
        // floor keeps leaves its place to the next one.
        if floor > 0 { u32::MAX } else { count },
    );
    let task_nodes = nodes.iter().filter(|n| n.flag == Some(3)).count();
    if floor > 0 {
        let is_spot = |id: &str| spot.contains(id);
        let mut on_demand = nodes
            .iter()
            .filter(|n| n.flag == Some(3) && n.id.as_deref().is_some_and(|i| !is_spot(i)))
            .count() as u32;
        // Among candidates of equal standing (the same ApplicationMaster and
        // container counts), on-demand nodes above the floor go before spot
        // ones; the order within each stays (newest first).
        let mut ordered = std::mem::take(&mut selection.chosen);
        ordered.sort_by_key(|c| (c.hosts_am, c.containers, is_spot(&c.id)));
        let mut kept = Vec::new();
        for c in ordered {
            if kept.len() as u32 >= count {
                selection.passed_over.push((c.id, Ineligible::NotNeeded));
            } else if is_spot(&c.id) {
                kept.push(c);
            } else if on_demand > floor {
                on_demand -= 1;
                kept.push(c);
            } else {
                selection
                    .passed_over
                    .push((c.id, Ineligible::OnDemandFloor));
            }
        }
        selection.shortfall = count.saturating_sub(kept.len() as u32);
        selection.chosen = kept;
    }
    let allowed = task_nodes.saturating_sub(cluster.min_task_nodes as usize);
    if selection.chosen.len() > allowed {
        let extra = selection.chosen.split_off(allowed);
        selection.shortfall += extra.len() as u32;
        selection
            .passed_over
            .extend(extra.into_iter().map(|c| (c.id, Ineligible::Floor)));
    }
    Ok(selection)
}
