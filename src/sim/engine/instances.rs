//! `DescribeInstances`: the clusters' status and node counts, paged.

use super::*;

impl Engine {
    pub(super) fn describe_instances(
        &self,
        p: &Params<'_>,
        hooks: &Hooks<'_>,
    ) -> Result<ActionOk, ApiError> {
        let strategy = p.required_str("DisplayStrategy")?;
        if ![
            "clusterList",
            "monitorManage",
            "cloudResourceManage",
            "emrCloudManage",
        ]
        .contains(&strategy)
        {
            return Err(ApiError::InvalidParameter(format!(
                "DisplayStrategy {strategy:?} is not supported"
            )));
        }
        let ids = p.str_list("InstanceIds")?.unwrap_or_default();
        p.int("ProjectId")?;
        let (offset, limit) = p.page(10)?;

        let listed: Vec<&Cluster> = self
            .clusters
            .iter()
            .filter(|c| ids.is_empty() || ids.contains(&c.id))
            .collect();
        let items: Vec<Value> = listed
            .iter()
            .skip(offset)
            .take(limit)
            .map(|c| {
                let null = hooks
                    .null_config
                    .as_ref()
                    .is_some_and(|only| only.as_ref().is_none_or(|id| *id == c.id));
                let config = if null {
                    Value::Null
                } else {
                    json!({
                        "TaskNodeSize": c.count(NODE_FLAG_TASK),
                        "CoreNodeSize": c.count(NODE_FLAG_CORE),
                        "MasterNodeSize": c.count(NODE_FLAG_MASTER),
                        "CommonNodeSize": c.count(NODE_FLAG_COMMON),
                        "RouterNodeSize": 0,
                    })
                };
                json!({
                    "Id": c.serial,
                    "ClusterId": c.id,
                    "ClusterName": c.id,
                    "Status": c.status,
                    "StatusDesc": status_desc(c.status),
                    "ProjectId": 0,
                    "Zone": c.zone,
                    "AddTime": c.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                    "Config": config,
                })
            })
            .collect();
        Ok(ActionOk::plain(json!({
            "TotalCnt": listed.len(),
            "ClusterList": items,
            "Tags": [],
        })))
    }
}

/// The text the console shows for a status.
pub(super) fn status_desc(status: i64) -> &'static str {
    match status {
        STATUS_RUNNING => "running",
        STATUS_SCALING_OUT => "scaling out",
        STATUS_SCALING_IN => "scaling in",
        STATUS_SCALE_OUT_FAILED => "scale-out failed",
        _ => "unknown",
    }
}
