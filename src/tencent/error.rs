//! Typed errors of the EMR API, and the class each one falls into.
//!
//! The class decides the behaviour (retry, wait for the flow, back off for a
//! long time, or give up) and is also the `result` label of
//! `emr_autoscaler_api_requests_total`, so it never carries free text.

use std::fmt;

use super::credentials::CredentialError;

/// How an outcome is handled. The names are the `result` metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// `RequestLimitExceeded*`: retry with backoff and jitter under the same token.
    Throttled,
    /// The cluster is in a flow, or the order already exists: never re-send under
    /// a new token; wait for the flow, reconcile, decide again.
    Busy,
    /// No machines of that type: long backoff for the cluster.
    SoldOut,
    /// The request is wrong: never retry; a configuration fault.
    Invalid,
    /// Credentials or permissions: never retry; readiness fails.
    Auth,
    /// The cluster or a named resource does not exist: never retry.
    NotFound,
    /// The service failed: retry with backoff under the same token.
    Internal,
    /// No answer, or a broken one: retry only under the same, young token.
    Transport,
    /// No answer in time: as `Transport`.
    Timeout,
}

impl ErrorClass {
    /// Every class, in label order.
    pub(crate) const ALL: [ErrorClass; 9] = [
        ErrorClass::Throttled,
        ErrorClass::Busy,
        ErrorClass::SoldOut,
        ErrorClass::Invalid,
        ErrorClass::Auth,
        ErrorClass::NotFound,
        ErrorClass::Internal,
        ErrorClass::Transport,
        ErrorClass::Timeout,
    ];

    /// The `result` label value.
    pub fn metric_label(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "throttled",
            ErrorClass::Busy => "busy",
            ErrorClass::SoldOut => "sold_out",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Auth => "auth",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Internal => "internal",
            ErrorClass::Transport => "transport",
            ErrorClass::Timeout => "timeout",
        }
    }

    /// Whether the client may try again, under the same ClientToken.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Throttled
                | ErrorClass::Internal
                | ErrorClass::Transport
                | ErrorClass::Timeout
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric_label())
    }
}

/// Maps an API error code to its class.
///
/// Covers every code of the ScaleOutInstance page, the per-action lists of the
/// current SDK and the common error codes. An unknown code is `Internal`:
/// retrying it is bounded and always keeps the ClientToken, so it cannot order twice.
pub(crate) fn classify(code: &str) -> ErrorClass {
    let head = code.split('.').next().unwrap_or(code);
    match (head, code) {
        (_, "ResourceInUse.InstanceInProcess" | "FailedOperation.DuplicateOrderNotAllowed") => {
            ErrorClass::Busy
        }
        ("RequestLimitExceeded", _) => ErrorClass::Throttled,
        ("ResourceInUse", _) => ErrorClass::Busy,
        ("ResourcesSoldOut" | "ResourceInsufficient", _) => ErrorClass::SoldOut,
        (
            "InvalidParameter"
            | "InvalidParameterValue"
            | "MissingParameter"
            | "UnknownParameter"
            | "UnsupportedOperation"
            | "InvalidAction"
            | "NoSuchVersion"
            | "UnsupportedRegion"
            | "UnsupportedProtocol"
            | "InvalidRequest"
            | "RequestSizeLimitExceeded"
            | "ResourceUnavailable"
            | "LimitExceeded"
            | "OperationDenied",
            _,
        ) => ErrorClass::Invalid,
        ("AuthFailure" | "UnauthorizedOperation", _) => ErrorClass::Auth,
        ("ResourceNotFound", _) => ErrorClass::NotFound,
        _ => ErrorClass::Internal,
    }
}

/// A refusal before sending, named with the code the API itself would answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message} (refused before sending)")]
pub struct PreflightError {
    /// The API's own error code for this fault.
    pub code: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Everything that can go wrong with one EMR API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with `Response.Error`.
    #[error("{action} failed: {code}: {message} (RequestId {request_id})")]
    Api {
        /// The action called.
        action: &'static str,
        /// `Response.Error.Code`.
        code: String,
        /// `Response.Error.Message`.
        message: String,
        /// `Response.RequestId`, for Tencent Cloud support.
        request_id: String,
    },
    /// The server answered with an HTTP status other than 200.
    #[error("{action}: HTTP status {status}; body starts: {body:?}")]
    HttpStatus {
        /// The action called.
        action: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The first 512 bytes of the body.
        body: String,
    },
    /// The body is not JSON, or not the shape the action returns.
    #[error("{action}: malformed response ({reason}); body starts: {body:?}")]
    Malformed {
        /// The action called.
        action: &'static str,
        /// What the parser said.
        reason: String,
        /// The first 512 bytes of the body.
        body: String,
    },
    /// The envelope has neither a result nor an error.
    #[error("{action}: response has neither a result nor an error; body starts: {body:?}")]
    EmptyEnvelope {
        /// The action called.
        action: &'static str,
        /// The first 512 bytes of the body.
        body: String,
    },
    /// The connection failed or broke before a full answer arrived.
    #[error("{action}: transport error: {reason}")]
    Transport {
        /// The action called.
        action: &'static str,
        /// The cause, without secrets (URLs carry none).
        reason: String,
    },
    /// No full answer arrived within the request timeout.
    #[error(
        "{action}: no answer within tencent.request_timeout ({})",
        humantime::format_duration(*after)
    )]
    Timeout {
        /// The action called.
        action: &'static str,
        /// The timeout that expired (`tencent.request_timeout`).
        after: std::time::Duration,
    },
    /// The endpoint answered with a redirect. The EMR client follows none:
    /// a signed request and its session token go to the configured endpoint
    /// only.
    #[error(
        "{action}: the endpoint answered HTTP {status} redirecting to {location_host:?}; \
         redirects are never followed (set tencent.endpoint to the real API address)"
    )]
    Redirected {
        /// The action called.
        action: &'static str,
        /// The 3xx status.
        status: u16,
        /// The host the `Location` header named (empty when it had none).
        location_host: String,
    },
    /// The request was refused before sending.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// No credentials could be found or refreshed.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// With `[ha]`: this daemon does not (or no longer) hold the leader
    /// lease, so the attempt was not sent.
    #[error("{action}: not sent: {reason}")]
    Fenced {
        /// The action called.
        action: &'static str,
        /// Why leadership was not good enough.
        #[source]
        reason: super::client::SendRefused,
    },
    /// A retry would have used a ClientToken older than the server's dedup window
    /// allows; the outcome of the earlier attempts must be reconciled instead.
    #[error(
        "{action}: ClientToken {client_token} is older than {max_age:?}; not re-sent{}",
        last.as_ref().map(|l| format!(" (last error: {l})")).unwrap_or_default()
    )]
    TokenExpired {
        /// The action called.
        action: &'static str,
        /// The token that was used.
        client_token: String,
        /// The age limit.
        max_age: std::time::Duration,
        /// The last error seen before giving up, if any attempt was made.
        last: Option<Box<ApiError>>,
    },
}

impl ApiError {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Api { code, .. } => classify(code),
            ApiError::HttpStatus { status, .. } => match status {
                429 => ErrorClass::Throttled,
                401 | 403 => ErrorClass::Auth,
                400..=499 => ErrorClass::Invalid,
                _ => ErrorClass::Internal,
            },
            ApiError::Malformed { .. }
            | ApiError::EmptyEnvelope { .. }
            | ApiError::Transport { .. } => ErrorClass::Transport,
            ApiError::Timeout { .. } => ErrorClass::Timeout,
            ApiError::Redirected { .. } => ErrorClass::Internal,
            ApiError::Preflight(_) => ErrorClass::Invalid,
            ApiError::Credentials(_) => ErrorClass::Auth,
            ApiError::Fenced { .. } => ErrorClass::Transport,
            ApiError::TokenExpired { last, .. } => {
                last.as_ref().map_or(ErrorClass::Invalid, |l| l.class())
            }
        }
    }

    /// The API error code, when the API gave one (or the pre-flight code).
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Api { code, .. } => Some(code),
            ApiError::Preflight(p) => Some(p.code),
            ApiError::TokenExpired { last, .. } => last.as_ref().and_then(|l| l.code()),
            _ => None,
        }
    }

    /// The request id, when the API gave one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Api { request_id, .. } => Some(request_id),
            ApiError::TokenExpired { last, .. } => last.as_ref().and_then(|l| l.request_id()),
            _ => None,
        }
    }

    /// Whether nothing was sent at all, so the server cannot have acted.
    pub(crate) fn never_sent(&self) -> bool {
        matches!(
            self,
            ApiError::Preflight(_) | ApiError::Credentials(_) | ApiError::Fenced { .. }
        )
    }
}

/// The first 512 bytes of a body, as text, for error messages.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    const LIMIT: usize = 512;
    let cut = &body[..body.len().min(LIMIT)];
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code from the ScaleOutInstance page and the current SDK's
    /// per-action lists, with the common codes the client may meet.
    const TABLE: &[(&str, ErrorClass)] = &[
        ("FailedOperation", ErrorClass::Internal),
        (
            "FailedOperation.CheckIfSupportPodStretch",
            ErrorClass::Internal,
        ),
        ("FailedOperation.DuplicateOrderNotAllowed", ErrorClass::Busy),
        (
            "FailedOperation.GetCvmConfigQuotaFailed",
            ErrorClass::Internal,
        ),
        ("FailedOperation.GetCvmServerFailed", ErrorClass::Internal),
        ("FailedOperation.NotSupportPod", ErrorClass::Internal),
        ("FailedOperation.GetCamRoleFailed", ErrorClass::Internal),
        ("FailedOperation.GetCamServerFailed", ErrorClass::Internal),
        ("InternalError", ErrorClass::Internal),
        ("InternalError.AccountCgwError", ErrorClass::Internal),
        ("InternalError.CamCgwError", ErrorClass::Internal),
        ("InternalError.CamError", ErrorClass::Internal),
        ("InternalError.CbsCgwError", ErrorClass::Internal),
        ("InternalError.CbsError", ErrorClass::Internal),
        ("InternalError.CdbCgwError", ErrorClass::Internal),
        ("InternalError.CdbError", ErrorClass::Internal),
        ("InternalError.ConfigCgwError", ErrorClass::Internal),
        ("InternalError.CvmError", ErrorClass::Internal),
        ("InternalError.EKSError", ErrorClass::Internal),
        ("InternalError.KmsError", ErrorClass::Internal),
        ("InternalError.ProjectCgwError", ErrorClass::Internal),
        ("InternalError.SgError", ErrorClass::Internal),
        ("InternalError.TKEError", ErrorClass::Internal),
        ("InternalError.TagError", ErrorClass::Internal),
        ("InternalError.TradeCgwError", ErrorClass::Internal),
        ("InternalError.VpcCgwError", ErrorClass::Internal),
        ("InternalError.VpcError", ErrorClass::Internal),
        ("InternalError.WoodServerError", ErrorClass::Internal),
        ("InvalidParameter", ErrorClass::Invalid),
        (
            "InvalidParameter.AppIdResourceNotMatch",
            ErrorClass::Invalid,
        ),
        ("InvalidParameter.InvaildCoreCount", ErrorClass::Invalid),
        ("InvalidParameter.InvalidCoreCount", ErrorClass::Invalid),
        ("InvalidParameter.InvalidAppId", ErrorClass::Invalid),
        (
            "InvalidParameter.InvalidClickHouseCluster",
            ErrorClass::Invalid,
        ),
        ("InvalidParameter.InvalidClientToken", ErrorClass::Invalid),
        ("InvalidParameter.InvalidClusterId", ErrorClass::Invalid),
        ("InvalidParameter.InvalidCount", ErrorClass::Invalid),
        ("InvalidParameter.InvalidCountNum", ErrorClass::Invalid),
        (
            "InvalidParameter.InvalidCustomizedPodParam",
            ErrorClass::Invalid,
        ),
        ("InvalidParameter.InvalidEksInstance", ErrorClass::Invalid),
        ("InvalidParameter.InvalidInstanceName", ErrorClass::Invalid),
        ("InvalidParameter.InvalidJobFlow", ErrorClass::Invalid),
        ("InvalidParameter.InvalidPaymode", ErrorClass::Invalid),
        ("InvalidParameter.InvalidResourceSpec", ErrorClass::Invalid),
        (
            "InvalidParameter.InvalidSercurityGrpupId",
            ErrorClass::Invalid,
        ),
        (
            "InvalidParameter.InvalidServiceNodeInfo",
            ErrorClass::Invalid,
        ),
        (
            "InvalidParameter.InvalidSoftDeployInfo",
            ErrorClass::Invalid,
        ),
        ("InvalidParameter.InvalidTaskCount", ErrorClass::Invalid),
        ("InvalidParameter.InvalidTimeSpan", ErrorClass::Invalid),
        ("InvalidParameter.InvalidTimeUnit", ErrorClass::Invalid),
        ("InvalidParameter.InvalidTkeInstance", ErrorClass::Invalid),
        ("InvalidParameter.InvalidNodeType", ErrorClass::Invalid),
        ("InvalidParameter.InvalidResourceIds", ErrorClass::Invalid),
        (
            "InvalidParameterValue.InvalidTkeInstance",
            ErrorClass::Invalid,
        ),
        ("MissingParameter", ErrorClass::Invalid),
        ("UnknownParameter", ErrorClass::Invalid),
        ("UnsupportedOperation", ErrorClass::Invalid),
        ("ResourceInUse.InstanceInProcess", ErrorClass::Busy),
        ("ResourceInsufficient.DiskInsufficient", ErrorClass::SoldOut),
        (
            "ResourceInsufficient.InstanceInsufficient",
            ErrorClass::SoldOut,
        ),
        ("ResourceNotFound.ClusterNotFound", ErrorClass::NotFound),
        ("ResourceNotFound.InstanceNotFound", ErrorClass::NotFound),
        (
            "ResourceNotFound.TKEPreconditionNotFound",
            ErrorClass::NotFound,
        ),
        ("ResourceNotFound.TagsNotFound", ErrorClass::NotFound),
        ("ResourceNotFound.ResourceNotFound", ErrorClass::NotFound),
        (
            "ResourceUnavailable.ResourceSpecNotDefaultSpec",
            ErrorClass::Invalid,
        ),
        ("ResourcesSoldOut", ErrorClass::SoldOut),
        ("ResourcesSoldOut.", ErrorClass::SoldOut),
        ("ResourcesSoldOut.CbsSoldOut", ErrorClass::SoldOut),
        ("ResourcesSoldOut.CvmSoldOut", ErrorClass::SoldOut),
        ("UnauthorizedOperation.CheckCamAuth", ErrorClass::Auth),
        ("RequestLimitExceeded", ErrorClass::Throttled),
        (
            "RequestLimitExceeded.UinLimitExceeded",
            ErrorClass::Throttled,
        ),
        (
            "RequestLimitExceeded.IPLimitExceeded",
            ErrorClass::Throttled,
        ),
        (
            "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
            ErrorClass::Throttled,
        ),
        ("AuthFailure", ErrorClass::Auth),
        ("AuthFailure.SignatureExpire", ErrorClass::Auth),
        ("AuthFailure.SignatureFailure", ErrorClass::Auth),
        ("AuthFailure.SecretIdNotFound", ErrorClass::Auth),
        ("AuthFailure.TokenFailure", ErrorClass::Auth),
        ("AuthFailure.InvalidSecretId", ErrorClass::Auth),
        ("AuthFailure.UnauthorizedOperation", ErrorClass::Auth),
        ("ServiceUnavailable", ErrorClass::Internal),
        ("InvalidAction", ErrorClass::Invalid),
        ("NoSuchVersion", ErrorClass::Invalid),
        ("UnsupportedRegion", ErrorClass::Invalid),
        ("SomethingNew.NeverSeen", ErrorClass::Internal),
    ];

    #[test]
    fn every_documented_code_has_its_class() {
        let wrong: Vec<_> = TABLE
            .iter()
            .filter(|(code, want)| classify(code) != *want)
            .map(|(code, want)| format!("{code}: got {}, want {want}", classify(code)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn labels_are_distinct_and_only_some_classes_retry() {
        let labels: std::collections::BTreeSet<_> =
            ErrorClass::ALL.iter().map(|c| c.metric_label()).collect();
        assert_eq!(labels.len(), ErrorClass::ALL.len());
        let retry: Vec<_> = ErrorClass::ALL
            .iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(
            retry,
            [
                &ErrorClass::Throttled,
                &ErrorClass::Internal,
                &ErrorClass::Transport,
                &ErrorClass::Timeout
            ]
        );
    }

    #[test]
    fn api_errors_print_code_and_request_id() {
        let e = ApiError::Api {
            action: "ScaleOutInstance",
            code: "ResourcesSoldOut.CvmSoldOut".into(),
            message: "sold out".into(),
            request_id: "req-1".into(),
        };
        let shown = e.to_string();
        assert!(
            shown.contains("ResourcesSoldOut.CvmSoldOut") && shown.contains("req-1"),
            "{shown}"
        );
        assert_eq!(e.class(), ErrorClass::SoldOut);
    }

    #[test]
    fn excerpt_is_bounded_and_survives_split_utf8() {
        let body = "é".repeat(600);
        let ex = body_excerpt(body.as_bytes());
        assert!(ex.len() <= 512 + 3);
        assert!(body_excerpt(b"short") == "short");
    }
}
