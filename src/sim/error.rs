//! Errors of the simulated EMR API.
//!
//! [`ApiError`] is what the simulator answers inside the `Response.Error`
//! envelope: each variant maps to one Tencent Cloud error code through
//! [`ApiError::code`], and its `Display` text becomes the `Message`.
//! [`BodyRejection`] is the same answer as plain data, for checking a body
//! without a simulator. [`StartError`] is what starting the simulator
//! itself can fail with.

use std::net::SocketAddr;

/// An API-level error, answered with HTTP 200 and `{"Response":{"Error":{..}}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The `Authorization` header (or a header it depends on) is missing or malformed.
    #[error("The Authorization header is invalid: {0}.")]
    InvalidAuthorization(String),
    /// The signature does not match the one recomputed by the server.
    #[error("The provided credentials could not be validated: {0}.")]
    SignatureFailure(String),
    /// The SecretId in the credential scope is not known.
    #[error("The SecretId {0} is not found.")]
    SecretIdNotFound(String),
    /// `X-TC-Timestamp` is too far from the server's wall clock.
    #[error(
        "The signature expired: timestamp {timestamp} is more than 300 s from server time {server}."
    )]
    SignatureExpire {
        /// The timestamp the client sent.
        timestamp: i64,
        /// The server's wall clock, in Unix seconds.
        server: i64,
    },
    /// `X-TC-Token` does not match the required security token.
    #[error("The security token is missing or invalid.")]
    TokenFailure,
    /// A required common or action parameter is absent.
    #[error("The parameter {0} is missing.")]
    MissingParameter(String),
    /// The action is not one the simulator serves.
    #[error("The action {0} is invalid or not supported.")]
    InvalidAction(String),
    /// The version is not `2019-01-03`.
    #[error("The version {0} does not exist.")]
    NoSuchVersion(String),
    /// The body or a parameter is malformed.
    #[error("Invalid parameter: {0}.")]
    InvalidParameter(String),
    /// The cluster does not exist.
    #[error("The instance {0} was not found.")]
    ClusterNotFound(String),
    /// Neither or both of `TaskCount` and `CoreCount` were given.
    #[error("An individual scale-out request only applies to task nodes or core nodes.")]
    InvalidCountNum,
    /// The node count is not greater than 0.
    #[error("The number of nodes for scale-out must be greater than 0.")]
    InvalidCount,
    /// `TaskCount` is above 20.
    #[error("The number of task nodes cannot exceed 20, got {0}.")]
    InvalidTaskCount(i64),
    /// `CoreCount` is above 20.
    #[error("The number of core nodes cannot exceed 20, got {0}.")]
    InvalidCoreCount(i64),
    /// `TimeUnit` does not go with `PayMode`.
    #[error("Invalid TimeUnit {time_unit:?} for PayMode {pay_mode}.")]
    InvalidTimeUnit {
        /// The PayMode sent.
        pay_mode: i64,
        /// The TimeUnit sent.
        time_unit: String,
    },
    /// `TimeSpan` is not positive.
    #[error("Invalid TimeSpan {0}.")]
    InvalidTimeSpan(i64),
    /// `PayMode` is neither 0 nor 1.
    #[error("Invalid PayMode {0}.")]
    InvalidPaymode(i64),
    /// `ClientToken` is empty or too long.
    #[error("Invalid ClientToken.")]
    InvalidClientToken,
    /// The flow does not exist on this cluster.
    #[error("The job flow {0} is invalid.")]
    InvalidJobFlow(String),
    /// `NodeFlag` is not a known node type.
    #[error("Invalid NodeFlag {0:?}.")]
    InvalidNodeType(String),
    /// A flow is already running on the cluster.
    #[error("The instance {instance_id} is under workflow {flow_id}.")]
    InstanceInProcess {
        /// The busy cluster.
        instance_id: String,
        /// The running flow.
        flow_id: u64,
    },
    /// The cluster is not running (status other than 2) and no flow runs on it.
    #[error("The instance {instance_id} is not running (status {status}).")]
    InstanceNotRunning { instance_id: String, status: i64 },
    /// A node named by `TerminateClusterNodes` is not listed in the cluster.
    #[error("The node {node} was not found in the instance {instance_id}.")]
    NodeNotFound {
        instance_id: String,
        /// The machine id asked for.
        node: String,
    },
    /// A node named by `TerminateClusterNodes` is not a task node.
    #[error("The node {node} has Flag {flag}; only task nodes (Flag 3) can be terminated.")]
    NodeNotTask {
        /// The machine id.
        node: String,
        /// Its `Flag`.
        flag: i64,
    },
    /// A node named by `TerminateClusterNodes` has `Destroyable` 0.
    #[error("The node {0} is not destroyable.")]
    NodeNotDestroyable(String),
    /// A node named by `TerminateClusterNodes` has instance protection on.
    #[error("The node {0} has termination protection on (DisableApiTermination).")]
    NodeProtected(String),
    /// A node named by `TerminateClusterNodes` is monthly (`ChargeType` 1).
    #[error(
        "The node {node} has ChargeType {charge_type}; only pay-as-you-go nodes can be terminated."
    )]
    NodePrepaid {
        /// The machine id.
        node: String,
        /// Its `ChargeType`.
        charge_type: i64,
    },
    /// The per-action request rate was exceeded.
    #[error("The request rate limit of action {0} was exceeded.")]
    RequestLimitExceeded(String),
    /// A body key the SDK's request model does not have (named with its
    /// path, e.g. `ResourceSpec.Foo` or `Tags.0.Foo`).
    #[error("The parameter {0} is not recognized.")]
    UnknownParameter(String),
    /// `InstanceChargeType` is not `PREPAID`, `POSTPAID_BY_HOUR` or `SPOTPAID`.
    #[error(
        "Invalid InstanceChargeType {0:?}; valid values are PREPAID, POSTPAID_BY_HOUR and SPOTPAID."
    )]
    InvalidChargeType(String),
    /// The charge type cannot buy this kind of node (`SPOTPAID` is for TASK only).
    #[error("InstanceChargeType {charge} is not supported for {node_flag} nodes.")]
    ChargeNodeMismatch {
        /// The `InstanceChargeType` sent.
        charge: String,
        /// The `ScaleOutNodeConfig.NodeFlag` sent.
        node_flag: String,
    },
    /// `ScaleOutNodeConfig.NodeFlag` names a node type the simulator does not add.
    #[error("Scaling out {0} nodes is not supported; only TASK and CORE nodes can be added.")]
    UnsupportedNodeFlag(String),
    /// `ResourceSpec.InstanceType` is empty.
    #[error("Invalid InstanceType {0:?}.")]
    InvalidInstanceType(String),
    /// `Zone` is empty.
    #[error("Invalid Zone {0:?}.")]
    InvalidZone(String),
    /// The offering is sold out.
    #[error("The instance type {instance_type} ({charge}) is sold out in {zone}.")]
    CvmSoldOut {
        /// `ResourceSpec.InstanceType`, or the cluster's default.
        instance_type: String,
        /// `Zone`, or the cluster's.
        zone: String,
        /// `InstanceChargeType`.
        charge: String,
    },
    /// The offering has too few instances left.
    #[error("Not enough {instance_type} ({charge}) instances are left in {zone}.")]
    InstanceInsufficient {
        /// `ResourceSpec.InstanceType`, or the cluster's default.
        instance_type: String,
        /// `Zone`, or the cluster's.
        zone: String,
        /// `InstanceChargeType`.
        charge: String,
    },
    /// An error injected by a test; the request was not executed.
    #[error("Injected fault.")]
    Injected(String),
}

impl ApiError {
    /// The Tencent Cloud error code, e.g. `ResourceInUse.InstanceInProcess`.
    pub(crate) fn code(&self) -> &str {
        match self {
            Self::InvalidAuthorization(_) => "AuthFailure.InvalidAuthorization",
            Self::SignatureFailure(_) => "AuthFailure.SignatureFailure",
            Self::SecretIdNotFound(_) => "AuthFailure.SecretIdNotFound",
            Self::SignatureExpire { .. } => "AuthFailure.SignatureExpire",
            Self::TokenFailure => "AuthFailure.TokenFailure",
            Self::MissingParameter(_) => "MissingParameter",
            Self::InvalidAction(_) => "InvalidAction",
            Self::NoSuchVersion(_) => "NoSuchVersion",
            Self::InvalidParameter(_) => "InvalidParameter",
            Self::ClusterNotFound(_) => "ResourceNotFound.ClusterNotFound",
            Self::InvalidCountNum => "InvalidParameter.InvalidCountNum",
            Self::InvalidCount => "InvalidParameter.InvalidCount",
            Self::InvalidTaskCount(_) => "InvalidParameter.InvalidTaskCount",
            Self::InvalidCoreCount(_) => "InvalidParameter.InvalidCoreCount",
            Self::InvalidTimeUnit { .. } => "InvalidParameter.InvalidTimeUnit",
            Self::InvalidTimeSpan(_) => "InvalidParameter.InvalidTimeSpan",
            Self::InvalidPaymode(_) => "InvalidParameter.InvalidPaymode",
            Self::InvalidClientToken => "InvalidParameter.InvalidClientToken",
            Self::InvalidJobFlow(_) => "InvalidParameter.InvalidJobFlow",
            Self::InvalidNodeType(_) => "InvalidParameter.InvalidNodeType",
            Self::InstanceInProcess { .. } => "ResourceInUse.InstanceInProcess",
            Self::InstanceNotRunning { .. } => "ResourceInUse.InstanceInProcess",
            Self::NodeNotFound { .. } => "ResourceNotFound.InstanceNotFound",
            Self::NodeNotTask { .. } => "InvalidParameter.InvalidNodeType",
            Self::NodeNotDestroyable(_) => "InvalidParameter.NodeNotDestroyable",
            Self::NodeProtected(_) => "InvalidParameter.TerminationProtected",
            Self::NodePrepaid { .. } => "InvalidParameter.PrepaidNode",
            Self::RequestLimitExceeded(_) => "RequestLimitExceeded",
            Self::UnknownParameter(_) => "UnknownParameter",
            Self::InvalidChargeType(_) => "InvalidParameter.InvalidPaymode",
            Self::ChargeNodeMismatch { .. } => "InvalidParameter.PayModeResourceNotMatch",
            Self::UnsupportedNodeFlag(_) => "UnsupportedOperation",
            Self::InvalidInstanceType(_) => "InvalidParameter.InvalidInstanceType",
            Self::InvalidZone(_) => "InvalidParameter.InvalidZone",
            Self::CvmSoldOut { .. } => "ResourcesSoldOut.CvmSoldOut",
            Self::InstanceInsufficient { .. } => "ResourceInsufficient.InstanceInsufficient",
            Self::Injected(code) => code,
        }
    }
}

/// Why a `ScaleOutCluster` body would be refused before anything is
/// looked up: the API error code and message the simulator would answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct BodyRejection {
    /// The error code, e.g. `UnknownParameter`.
    pub code: String,
    /// The error message, naming the parameter.
    pub message: String,
}

impl From<ApiError> for BodyRejection {
    fn from(error: ApiError) -> Self {
        Self {
            code: error.code().to_owned(),
            message: error.to_string(),
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The [`SimConfig`](super::SimConfig) is inconsistent.
    #[error("invalid simulator config: {0}")]
    Config(String),
    /// The listening socket could not be bound.
    #[error("cannot bind the simulator to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("simulator server failed: {0}")]
    Serve(#[source] std::io::Error),
}
