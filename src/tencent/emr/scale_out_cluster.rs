//! `ScaleOutCluster`: the newer scale-out action that takes the spec, the
//! zone, the subnet and the charge type per call. The request, its
//! pre-flight checks and the answer; field names from the SDK's
//! `ScaleOutClusterRequest`, `ScaleOutNodeConfig`, `NodeResourceSpec` and
//! `ScriptBootstrapActionConfig` models.

use serde::{Deserialize, Serialize};

use super::scale_out::{
    MAX_NODES_PER_REQUEST, PreExecuteFileSettings, ScaleOutInstanceRequest, Tag,
};
use super::{check_deployment, check_instance_id, refuse};
use crate::tencent::error::PreflightError;

/// `InstanceChargeType` of an on-demand node.
pub const CHARGE_ON_DEMAND: &str = "POSTPAID_BY_HOUR";
/// `InstanceChargeType` of a spot node (task nodes only).
pub const CHARGE_SPOT: &str = "SPOTPAID";

/// `ScaleOutNodeConfig`: which kind of node, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScaleOutNodeConfig {
    /// `TASK` (the only kind this product orders through ScaleOutCluster).
    pub node_flag: String,
    /// Nodes to add, 1..=20.
    pub node_count: u32,
}

/// `NodeResourceSpec`: the instance type of the new nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeResourceSpec {
    /// e.g. `SA5.2XLARGE32`.
    pub instance_type: String,
}

/// `ScriptBootstrapActionConfig`: a bootstrap script of ScaleOutCluster
/// (the template's `pre_executed_file_settings`, mapped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScriptBootstrapActionConfig {
    /// The script's COS URI.
    #[serde(rename = "CosFileURI", skip_serializing_if = "Option::is_none")]
    pub cos_file_uri: Option<String>,
    /// `resourceAfter`, `clusterAfter` or `clusterBefore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_moment: Option<String>,
    /// Script arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Script file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cos_file_name: Option<String>,
}

impl From<&PreExecuteFileSettings> for ScriptBootstrapActionConfig {
    fn from(s: &PreExecuteFileSettings) -> Self {
        ScriptBootstrapActionConfig {
            cos_file_uri: s.cos_file_uri.clone(),
            execution_moment: s.when_run.clone(),
            args: s.args.clone(),
            cos_file_name: s.cos_file_name.clone(),
        }
    }
}

/// The `ScaleOutCluster` request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScaleOutClusterRequest {
    /// `emr-` followed by 8 lowercase letters or digits.
    pub instance_id: String,
    /// [`CHARGE_ON_DEMAND`] or [`CHARGE_SPOT`].
    pub instance_charge_type: String,
    /// The kind and count of nodes.
    pub scale_out_node_config: ScaleOutNodeConfig,
    /// The instance type.
    pub resource_spec: NodeResourceSpec,
    /// Availability zone, e.g. `ap-guangzhou-6`; the cluster's by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Subnet; the cluster's by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// Tags for the new nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// Idempotency token, valid for 5 minutes at the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Start the services on the new nodes: always true (the API's default
    /// starts nothing, and a node without NodeManager gives YARN nothing).
    pub enable_start_service_flag: bool,
    /// Bootstrap scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_bootstrap_action_config: Option<Vec<ScriptBootstrapActionConfig>>,
    /// Services to deploy; goes with `ServiceNodeInfo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_deploy_info: Option<Vec<i64>>,
    /// Processes to start; goes with `SoftDeployInfo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_node_info: Option<Vec<i64>>,
    /// Spread placement groups; at most one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disaster_recover_group_ids: Option<Vec<String>>,
    /// YARN node label for the new nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yarn_node_label: Option<String>,
}

impl ScaleOutClusterRequest {
    /// `count` task nodes of `instance_type` (in `zone` and `subnet_id` when
    /// given) charged as `charge`, with the template's tags, scripts and
    /// deployment fields.
    pub fn task_nodes(
        template: &ScaleOutInstanceRequest,
        count: u32,
        (instance_type, charge): (&str, &str),
        (zone, subnet_id): (Option<&str>, Option<&str>),
    ) -> Self {
        ScaleOutClusterRequest {
            instance_id: template.instance_id.clone(),
            instance_charge_type: charge.to_string(),
            scale_out_node_config: ScaleOutNodeConfig {
                node_flag: "TASK".into(),
                node_count: count,
            },
            resource_spec: NodeResourceSpec {
                instance_type: instance_type.to_string(),
            },
            zone: zone.map(str::to_string),
            subnet_id: subnet_id.map(str::to_string),
            tags: template.tags.clone(),
            client_token: None,
            enable_start_service_flag: true,
            script_bootstrap_action_config: template
                .pre_executed_file_settings
                .as_ref()
                .map(|s| s.iter().map(ScriptBootstrapActionConfig::from).collect()),
            soft_deploy_info: template.soft_deploy_info.clone(),
            service_node_info: template.service_node_info.clone(),
            disaster_recover_group_ids: template.disaster_recover_group_ids.clone(),
            yarn_node_label: template.yarn_node_label.clone(),
        }
    }

    /// Refuses what the API would reject, with the API's own error names.
    pub(crate) fn preflight(&self) -> Result<(), PreflightError> {
        check_instance_id(&self.instance_id)?;
        if ![CHARGE_ON_DEMAND, CHARGE_SPOT].contains(&self.instance_charge_type.as_str()) {
            refuse(
                "InvalidParameter",
                format!(
                    "InstanceChargeType {:?} is not {CHARGE_ON_DEMAND} or {CHARGE_SPOT}",
                    self.instance_charge_type
                ),
            )?;
        }
        let n = self.scale_out_node_config.node_count;
        if !(1..=MAX_NODES_PER_REQUEST).contains(&n) {
            refuse(
                "InvalidParameter.InvalidCount",
                format!("NodeCount {n} is outside 1..={MAX_NODES_PER_REQUEST} per request"),
            )?;
        }
        if self.scale_out_node_config.node_flag != "TASK"
            && self.instance_charge_type == CHARGE_SPOT
        {
            refuse(
                "InvalidParameter",
                "SPOTPAID is allowed for TASK nodes only",
            )?;
        }
        if self.resource_spec.instance_type.trim().is_empty() {
            refuse(
                "InvalidParameter.InvalidInstanceType",
                "ResourceSpec.InstanceType is empty",
            )?;
        }
        check_deployment(
            (
                self.soft_deploy_info.is_some(),
                self.service_node_info.is_some(),
            ),
            self.disaster_recover_group_ids.as_ref().map_or(0, Vec::len),
        )
    }
}

/// The `ScaleOutCluster` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScaleOutClusterResponse {
    /// The cluster.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The token the server recorded; may be null.
    #[serde(default)]
    pub client_token: Option<String>,
    /// The flow that provisions the nodes.
    #[serde(default)]
    pub flow_id: Option<i64>,
    /// A trace id, when given.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// The request id.
    pub request_id: String,
}

impl From<ScaleOutClusterResponse> for super::scale_out::ScaleOutInstanceResponse {
    /// The answer in the older action's shape, which callers read (no
    /// DealNames or BillId: ScaleOutCluster gives none).
    fn from(r: ScaleOutClusterResponse) -> Self {
        super::scale_out::ScaleOutInstanceResponse {
            instance_id: r.instance_id,
            flow_id: r.flow_id,
            request_id: r.request_id,
            client_token: r.client_token,
            deal_names: None,
            bill_id: None,
            trace_id: r.trace_id,
        }
    }
}

/// Whether a first-attempt refusal with `code` says this offering cannot be
/// had now (sold out, no such spec here, a zone or subnet that does not
/// fit): the decision moves on to the next offering.
pub fn refuses_offering(code: &str) -> bool {
    code.starts_with("ResourcesSoldOut")
        || matches!(
            code,
            "ResourceInsufficient.InstanceInsufficient"
                | "ResourceInsufficient.DiskInsufficient"
                | "ResourceNotFound.SpecNotFound"
                | "InvalidParameter.InvalidInstanceType"
                | "InvalidParameter.InvalidResourceSpec"
                | "InvalidParameter.InvalidZone"
                | "InvalidParameter.InvalidSubnetId"
                | "InvalidParameter.ZoneResourceNotMatch"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> ScaleOutInstanceRequest {
        ScaleOutInstanceRequest {
            instance_id: "emr-abc12345".into(),
            pay_mode: 0,
            time_unit: "s".into(),
            time_span: 3600,
            tags: Some(vec![Tag {
                key: "managed-by".into(),
                value: "emr-autoscaler".into(),
            }]),
            pre_executed_file_settings: Some(vec![PreExecuteFileSettings {
                cos_file_uri: Some("https://b.cos/x.sh".into()),
                when_run: Some("resourceAfter".into()),
                args: Some(vec!["-v".into()]),
                ..PreExecuteFileSettings::default()
            }]),
            ..ScaleOutInstanceRequest::default()
        }
    }

    #[test]
    fn the_body_has_the_sdk_field_names_and_starts_the_services() {
        let r = ScaleOutClusterRequest::task_nodes(
            &template(),
            3,
            ("SA5.2XLARGE32", CHARGE_SPOT),
            (Some("ap-guangzhou-6"), None),
        );
        r.preflight().unwrap();
        expect_test::expect![[r#"{"InstanceId":"emr-abc12345","InstanceChargeType":"SPOTPAID","ScaleOutNodeConfig":{"NodeFlag":"TASK","NodeCount":3},"ResourceSpec":{"InstanceType":"SA5.2XLARGE32"},"Zone":"ap-guangzhou-6","Tags":[{"TagKey":"managed-by","TagValue":"emr-autoscaler"}],"EnableStartServiceFlag":true,"ScriptBootstrapActionConfig":[{"CosFileURI":"https://b.cos/x.sh","ExecutionMoment":"resourceAfter","Args":["-v"]}]}"#]]
        .assert_eq(&serde_json::to_string(&r).unwrap());
    }

    #[test]
    fn preflight_refuses_what_the_api_would() {
        let ok = ScaleOutClusterRequest::task_nodes(
            &template(),
            1,
            ("S5.2XLARGE32", CHARGE_ON_DEMAND),
            (None, None),
        );
        ok.preflight().unwrap();
        let code = |r: ScaleOutClusterRequest| r.preflight().unwrap_err().code;
        let mut r = ok.clone();
        r.scale_out_node_config.node_count = 21;
        assert_eq!(code(r), "InvalidParameter.InvalidCount");
        let mut r = ok.clone();
        r.instance_charge_type = "PREPAID".into();
        assert_eq!(code(r), "InvalidParameter");
        let mut r = ok.clone();
        r.resource_spec.instance_type = " ".into();
        assert_eq!(code(r), "InvalidParameter.InvalidInstanceType");
        let mut r = ok.clone();
        r.scale_out_node_config.node_flag = "CORE".into();
        r.instance_charge_type = CHARGE_SPOT.into();
        assert_eq!(code(r), "InvalidParameter");
    }

    #[test]
    fn offering_refusals_are_the_contract_codes() {
        for code in [
            "ResourcesSoldOut.CvmSoldOut",
            "ResourcesSoldOut",
            "ResourceInsufficient.InstanceInsufficient",
            "ResourceInsufficient.DiskInsufficient",
            "ResourceNotFound.SpecNotFound",
            "InvalidParameter.InvalidInstanceType",
            "InvalidParameter.InvalidResourceSpec",
            "InvalidParameter.InvalidZone",
            "InvalidParameter.InvalidSubnetId",
            "InvalidParameter.ZoneResourceNotMatch",
        ] {
            assert!(refuses_offering(code), "{code}");
        }
        for code in [
            "InvalidParameter",
            "InternalError",
            "ResourceInUse.InstanceInProcess",
            "AuthFailure.SignatureFailure",
        ] {
            assert!(!refuses_offering(code), "{code}");
        }
    }
}
