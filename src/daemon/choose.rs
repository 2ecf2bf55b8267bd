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

/// Picks up to `count` nodes of `cluster` by its scale-in rules. The node
/// list just read bounds the removal by `min_task_nodes` once more (a
/// capacity snapshot can be older than the last removal). An `Err` says why
/// nothing can be picked now: no node list, or no ResourceManager answer.
pub(crate) async fn choose(
    emr: &EmrClient,
    http: &reqwest::Client,
    cluster: &ClusterConfig,
    count: u32,
    yarn_timeout: Duration,
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
    let mut selection = select(
        &nodes,
        &cluster.scale_in.scope,
        yarn_state.as_ref(),
        &[],
        count,
    );
    let task_nodes = nodes.iter().filter(|n| n.flag == Some(3)).count();
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
