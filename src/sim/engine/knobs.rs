//! What tests and the simulator's handle read and change directly: cluster
//! snapshots, node lists, counts, flows, per-cluster knobs, spot
//! reclamation and the CVM stock.

use super::*;

impl Engine {
    /// A snapshot of one cluster, after settling at `now`.
    pub(crate) fn cluster(&mut self, id: &str, now: DateTime<Utc>) -> Option<ClusterSnapshot> {
        self.settle(now);
        self.clusters
            .iter()
            .find(|c| c.id == id)
            .map(|c| ClusterSnapshot {
                instance_id: c.id.clone(),
                status: c.status,
                task_nodes: c.count(NODE_FLAG_TASK),
                core_nodes: c.count(NODE_FLAG_CORE),
                current_flow: c.flow,
                flows_started: c.flows_started,
                flows_failed: c.flows_failed,
                task_nodes_added: c.task_added,
                core_nodes_added: c.core_added,
                removing: c
                    .flow
                    .and_then(|f| self.flows.get(&f))
                    .map(|f| f.remove.clone())
                    .unwrap_or_default(),
                nodes_removed: c.removed,
            })
    }

    /// A cluster's node list, after settling at `now`.
    pub(crate) fn nodes(&mut self, id: &str, now: DateTime<Utc>) -> Option<Vec<SimNode>> {
        self.settle(now);
        self.clusters
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.nodes.clone())
    }

    /// Adds or drops nodes of `flag` until the cluster lists `n` of them.
    ///
    /// New nodes are untagged and otherwise as [`SimNode::task`], with
    /// ApplyTime one second apart up to `now`. Dropped nodes are untagged
    /// ones that no scale-in is removing, newest (last listed) first, then
    /// any others, newest first. False when the cluster does not exist.
    pub(crate) fn set_count(&mut self, id: &str, flag: i64, n: u32, now: DateTime<Utc>) -> bool {
        let Some(index) = self.clusters.iter().position(|c| c.id == id) else {
            return false;
        };
        let removing: Vec<String> = self.clusters[index]
            .flow
            .and_then(|f| self.flows.get(&f))
            .map(|f| f.remove.clone())
            .unwrap_or_default();
        let cluster = &mut self.clusters[index];
        let have = cluster.count(flag);
        if have < n {
            let missing = n - have;
            for i in 0..missing {
                let age = chrono::Duration::seconds(i64::from(missing - 1 - i));
                let mut node = SimNode::task().with_flag(flag);
                self.ids.fill(&mut node, now - age);
                cluster.nodes.push(node);
            }
            return true;
        }
        let mut excess = have - n;
        for pass in [true, false] {
            let mut i = cluster.nodes.len();
            while excess > 0 && i > 0 {
                i -= 1;
                let node = &cluster.nodes[i];
                let spare = node.untagged() && !removing.contains(&node.order_no);
                if node.flag == flag && (spare || !pass) {
                    cluster.nodes.remove(i);
                    excess -= 1;
                }
            }
        }
        true
    }

    /// Adds a node to a cluster (ids and ApplyTime filled in, `now` when
    /// unset). The node's machine id, or `None` when the cluster does not exist.
    pub(crate) fn add_node(
        &mut self,
        id: &str,
        mut node: SimNode,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let cluster = self.clusters.iter_mut().find(|c| c.id == id)?;
        self.ids.fill(&mut node, now);
        let order_no = node.order_no.clone();
        cluster.nodes.push(node);
        Some(order_no)
    }

    /// Changes one listed node in place; false when the cluster or node does
    /// not exist. Ids the change gives the node are reserved.
    pub(crate) fn update_node(
        &mut self,
        id: &str,
        order_no: &str,
        change: impl FnOnce(&mut SimNode),
    ) -> bool {
        let Some(node) = self
            .clusters
            .iter_mut()
            .find(|c| c.id == id)
            .and_then(|c| c.nodes.iter_mut().find(|n| n.order_no == order_no))
        else {
            return false;
        };
        change(node);
        self.ids.reserve(node);
        true
    }

    /// Removes a node from the list as if a person had (no flow, not counted
    /// as removed by scale-in). False when the cluster or node does not exist.
    pub(crate) fn node_gone(&mut self, id: &str, order_no: &str) -> bool {
        let Some(cluster) = self.clusters.iter_mut().find(|c| c.id == id) else {
            return false;
        };
        let before = cluster.nodes.len();
        cluster.nodes.retain(|n| n.order_no != order_no);
        cluster.nodes.len() < before
    }

    /// Removes up to `n` spot task nodes from the cluster at once (newest,
    /// that is last listed, first), after settling at `now`: no flow, not
    /// counted as removed by scale-in. How many went (0 when the cluster
    /// does not exist).
    pub(crate) fn reclaim_spot(&mut self, id: &str, n: u32, now: DateTime<Utc>) -> u32 {
        self.settle(now);
        let Some(cluster) = self.clusters.iter_mut().find(|c| c.id == id) else {
            return 0;
        };
        let mut left = n;
        let mut reclaimed = Vec::new();
        let mut i = cluster.nodes.len();
        while left > 0 && i > 0 {
            i -= 1;
            let node = &cluster.nodes[i];
            if node.flag == NODE_FLAG_TASK && node.is_spot() {
                reclaimed.push(cluster.nodes.remove(i).order_no);
                left -= 1;
            }
        }
        if !reclaimed.is_empty() {
            info!(message = "Spot nodes reclaimed.", cluster = %id, nodes = ?reclaimed);
        }
        n - left
    }

    /// Sets the stock of the offerings `rule` names for `ScaleOutCluster`
    /// (replacing a rule that names the same ones).
    pub(crate) fn set_stock(&mut self, rule: StockRule) {
        info!(
            message = "Stock set.",
            instance_type = %rule.instance_type,
            zone = rule.zone.as_deref().unwrap_or("*"),
            charge = rule.charge.as_deref().unwrap_or("*"),
            stock = ?rule.stock
        );
        stock::upsert(&mut self.stock, rule);
    }

    /// Every cluster id, in configuration order.
    pub(crate) fn cluster_ids(&self) -> Vec<String> {
        self.clusters.iter().map(|c| c.id.clone()).collect()
    }

    /// Changes a cluster in place; false when it does not exist.
    pub(crate) fn modify(&mut self, id: &str, change: impl FnOnce(&mut ClusterKnobs<'_>)) -> bool {
        let Some(c) = self.clusters.iter_mut().find(|c| c.id == id) else {
            return false;
        };
        change(&mut ClusterKnobs {
            flow_duration: &mut c.flow_duration,
            strategies: &mut c.strategies,
        });
        true
    }

    #[cfg(test)]
    /// A snapshot of one flow, after settling at `now`.
    pub(crate) fn flow(&mut self, flow_id: u64, now: DateTime<Utc>) -> Option<FlowSnapshot> {
        self.settle(now);
        self.flows.get(&flow_id).map(|f| f.snapshot(now))
    }
}
