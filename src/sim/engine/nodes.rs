//! `DescribeClusterNodes`: a cluster's node list, paged by index.

use super::*;

impl Engine {
    /// `DescribeClusterNodes`: `Offset` is a page index, `Limit` the page size.
    pub(super) fn describe_nodes(&self, p: &Params<'_>) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let flag = p.required_str("NodeFlag")?;
        let (page, limit) = p.page(NODES_PAGE_MAX)?;
        let c = &self.clusters[self.cluster_index(id)?];
        let wanted: &[i64] = match flag {
            "all" => &[
                NODE_FLAG_COMMON,
                NODE_FLAG_MASTER,
                NODE_FLAG_CORE,
                NODE_FLAG_TASK,
            ],
            "common" => &[NODE_FLAG_COMMON],
            "master" => &[NODE_FLAG_MASTER],
            "core" => &[NODE_FLAG_CORE],
            "task" => &[NODE_FLAG_TASK],
            "router" => &[],
            other => return Err(ApiError::InvalidNodeType(other.to_owned())),
        };
        let matching: Vec<&SimNode> = c
            .nodes
            .iter()
            .filter(|n| wanted.contains(&n.flag))
            .collect();
        let list: Vec<Value> = match page.checked_mul(limit) {
            Some(skip) => matching
                .iter()
                .skip(skip)
                .take(limit)
                .map(|n| n.to_json())
                .collect(),
            None => Vec::new(),
        };
        let mut tag_keys: Vec<&str> = Vec::new();
        for (key, _) in c.nodes.iter().filter_map(|n| n.tags.as_ref()).flatten() {
            if !tag_keys.contains(&key.as_str()) {
                tag_keys.push(key);
            }
        }
        let list = if list.is_empty() {
            Value::Null
        } else {
            Value::Array(list)
        };
        Ok(ActionOk::plain(json!({
            "TotalCnt": matching.len(),
            "NodeList": list,
            "TagKeys": tag_keys,
            "HardwareResourceTypeList": ["host"],
        })))
    }
}
