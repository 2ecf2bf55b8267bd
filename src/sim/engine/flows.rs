//! `DescribeClusterFlowStatusDetail`: a flow's status and progress.

use super::*;

impl Engine {
    pub(super) fn flow_status(
        &self,
        p: &Params<'_>,
        now: DateTime<Utc>,
    ) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let param = p.required_object("FlowParam")?;
        let fp = Params(param);
        let key = fp.required_str("FKey")?;
        let value = fp.required_str("FValue")?;
        p.bool("NeedExtraDetail")?;
        if key != "FlowId" {
            return Err(ApiError::InvalidParameter(format!(
                "FlowParam.FKey {key:?} is not supported"
            )));
        }
        self.cluster_index(id)?;
        let flow = value
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|fid| self.flows.get(&fid))
            .filter(|f| f.instance_id == id)
            .ok_or_else(|| ApiError::InvalidJobFlow(value.to_owned()))?;
        let (status, progress) = flow.status(now);
        let name = match flow.kind {
            FlowKind::ScaleIn => "Terminate Task Nodes",
            FlowKind::ScaleOut if flow.task_count > 0 => "Scale Out Task",
            FlowKind::ScaleOut => "Scale Out Core",
        };
        Ok(ActionOk::plain(json!({
            "StageDetails": null,
            "FlowDesc": null,
            "FlowName": name,
            "FlowTotalProgress": progress,
            "FlowTotalStatus": status,
            "FlowExtraDetail": null,
        })))
    }
}
