//! `ScaleOutInstance`: the request, its pre-flight checks and the answer.

use serde::{Deserialize, Serialize};

use super::{check_deployment, check_instance_id, refuse};
use crate::tencent::error::PreflightError;

/// Most nodes of one kind one ScaleOutInstance request may add.
pub(crate) const MAX_NODES_PER_REQUEST: u32 = 20;

/// The values `HardwareResourceType` takes: CVM machines, TKE/EKS pods, and
/// fully managed nodes.
pub(crate) const HARDWARE_RESOURCE_TYPES: [&str; 3] = ["HOST", "POD", "MNode"];

/// A tag bound to the added nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// `TagKey`.
    #[serde(rename = "TagKey")]
    pub key: String,
    /// `TagValue`.
    #[serde(rename = "TagValue")]
    pub value: String,
}

/// A bootstrap script run on new nodes (`PreExecuteFileSettings`).
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreExecuteFileSettings {
    /// Script path in COS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Script arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// COS bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// COS region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// COS domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Execution order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_order: Option<i64>,
    /// `resourceAfter` or `clusterAfter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when_run: Option<String>,
    /// Script file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cos_file_name: Option<String>,
    /// Script URI.
    #[serde(rename = "CosFileURI", skip_serializing_if = "Option::is_none")]
    pub cos_file_uri: Option<String>,
    /// COS SecretId.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cos_secret_id: Option<String>,
    /// COS SecretKey. Never shown by `Debug`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cos_secret_key: Option<String>,
    /// COS AppId.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Remark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
}

impl std::fmt::Debug for PreExecuteFileSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreExecuteFileSettings")
            .field("path", &self.path)
            .field("cos_file_uri", &self.cos_file_uri)
            .field(
                "cos_secret_key",
                &self.cos_secret_key.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// The `ScaleOutInstance` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScaleOutInstanceRequest {
    /// `emr-` followed by 8 lowercase letters or digits.
    pub instance_id: String,
    /// 0 pay-as-you-go, 1 monthly.
    pub pay_mode: u8,
    /// `s` for PayMode 0, `m` for PayMode 1.
    pub time_unit: String,
    /// 3600 for PayMode 0; months for PayMode 1.
    pub time_span: u64,
    /// Idempotency token, valid for 5 minutes at the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Bootstrap scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_executed_file_settings: Option<Vec<PreExecuteFileSettings>>,
    /// Task nodes to add, 1..=20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_count: Option<u32>,
    /// Core nodes to add, 1..=20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_count: Option<u32>,
    /// Processes not needed on the new nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub un_necessary_node_list: Option<Vec<i64>>,
    /// Router nodes to add.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_count: Option<u32>,
    /// Services to deploy; goes with `ServiceNodeInfo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_deploy_info: Option<Vec<i64>>,
    /// Processes to start; goes with `SoftDeployInfo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_node_info: Option<Vec<i64>>,
    /// Spread placement groups; at most one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disaster_recover_group_ids: Option<Vec<String>>,
    /// Tags for the new nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// One of [`HARDWARE_RESOURCE_TYPES`]: `HOST`, `POD` or `MNode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_resource_type: Option<String>,
    /// YARN node label for the new nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yarn_node_label: Option<String>,
    /// Whether to start services after the scale-out: `"true"` or `"false"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_service_after_scale_out: Option<String>,
    /// Availability zone id; defaults to the cluster's primary zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<i64>,
    /// Subnet; defaults to the cluster's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// Preset configuration group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_out_service_conf_assign: Option<String>,
}

/// Checks the billing fields alone; the config validation reuses it.
pub(crate) fn check_billing(
    pay_mode: u8,
    time_unit: &str,
    time_span: u64,
) -> Result<(), PreflightError> {
    match pay_mode {
        0 if time_unit != "s" => refuse(
            "InvalidParameter.InvalidTimeUnit",
            format!("PayMode 0 (pay-as-you-go) needs TimeUnit \"s\", not {time_unit:?}"),
        ),
        0 if time_span != 3600 => refuse(
            "InvalidParameter.InvalidTimeSpan",
            format!("PayMode 0 (pay-as-you-go) needs TimeSpan 3600, not {time_span}"),
        ),
        1 if time_unit != "m" => refuse(
            "InvalidParameter.InvalidTimeUnit",
            format!("PayMode 1 (monthly) needs TimeUnit \"m\", not {time_unit:?}"),
        ),
        1 if !(1..=36).contains(&time_span) => refuse(
            "InvalidParameter.InvalidTimeSpan",
            format!("PayMode 1 (monthly) needs TimeSpan in months, 1 to 36, not {time_span}"),
        ),
        0 | 1 => Ok(()),
        other => refuse(
            "InvalidParameter.InvalidPaymode",
            format!("PayMode must be 0 (pay-as-you-go) or 1 (monthly), not {other}"),
        ),
    }
}

impl ScaleOutInstanceRequest {
    /// Refuses what the API would reject, with the API's own error names.
    pub(crate) fn preflight(&self) -> Result<(), PreflightError> {
        check_instance_id(&self.instance_id)?;
        if let Some(h) = &self.hardware_resource_type
            && !HARDWARE_RESOURCE_TYPES.contains(&h.as_str())
        {
            refuse(
                "InvalidParameterValue",
                format!("HardwareResourceType {h:?} is not HOST, POD or MNode"),
            )?;
        }
        match (self.task_count, self.core_count) {
            (Some(_), Some(_)) => refuse(
                "InvalidParameter.InvalidCountNum",
                "one request adds task nodes or core nodes, never both",
            )?,
            (None, None) => refuse(
                "InvalidParameter.InvalidCount",
                "set TaskCount or CoreCount; the number of nodes must be greater than 0",
            )?,
            (Some(0), None) | (None, Some(0)) => refuse(
                "InvalidParameter.InvalidCount",
                "the number of nodes must be greater than 0",
            )?,
            (Some(n), None) if n > MAX_NODES_PER_REQUEST => refuse(
                "InvalidParameter.InvalidTaskCount",
                format!("TaskCount {n} exceeds {MAX_NODES_PER_REQUEST} per request"),
            )?,
            (None, Some(n)) if n > MAX_NODES_PER_REQUEST => refuse(
                "InvalidParameter.InvalidCoreCount",
                format!("CoreCount {n} exceeds {MAX_NODES_PER_REQUEST} per request"),
            )?,
            _ => {}
        }
        check_billing(self.pay_mode, &self.time_unit, self.time_span)?;
        let soft = self.soft_deploy_info.is_some() || self.service_node_info.is_some();
        if soft && self.un_necessary_node_list.is_some() {
            refuse(
                "InvalidParameter.InvalidSoftDeployInfo",
                "SoftDeployInfo/ServiceNodeInfo and UnNecessaryNodeList exclude each other",
            )?;
        }
        check_deployment(
            (
                self.soft_deploy_info.is_some(),
                self.service_node_info.is_some(),
            ),
            self.disaster_recover_group_ids.as_ref().map_or(0, Vec::len),
        )?;
        if let Some(v) = &self.start_service_after_scale_out
            && v != "true"
            && v != "false"
        {
            refuse(
                "InvalidParameter",
                format!("StartServiceAfterScaleOut must be \"true\" or \"false\", not {v:?}"),
            )?;
        }
        Ok(())
    }
}

/// The `ScaleOutInstance` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScaleOutInstanceResponse {
    /// The cluster\'s instance id (`emr-…`).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The flow that provisions the nodes.
    #[serde(default)]
    pub flow_id: Option<i64>,
    /// The request id.
    pub request_id: String,
    /// The token the server recorded; may be null.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Order numbers; may be null.
    #[serde(default)]
    pub deal_names: Option<Vec<String>>,
    /// Bill id.
    #[serde(default)]
    pub bill_id: Option<String>,
    /// Trace id.
    #[serde(default)]
    pub trace_id: Option<String>,
}
