//! Server-side TC3-HMAC-SHA256 verification.
//!
//! This is an independent implementation of the check the real API gateway
//! makes; it deliberately shares no code with the crate's client-side signer,
//! so a bug in one cannot hide a bug in the other. Only the signed-header set
//! `content-type;host` is supported, which is what the official SDKs send.
//!
//! [`Verifier::verify`] takes `now` as a parameter: the server passes its wall
//! clock (never the injected simulation clock), and unit tests pass a fixed
//! instant so the official vector can be checked.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The only signing algorithm the server accepts.
pub(crate) const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The service name in the credential scope.
pub(crate) const SERVICE: &str = "emr";
/// How far `X-TC-Timestamp` may be from the server's wall clock, in seconds.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

/// The parts of an HTTP request that the signature covers or depends on.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SignedParts<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `Content-Type` header, as sent.
    pub content_type: Option<&'a str>,
    /// The `Host` header (or the URI authority under HTTP/2).
    pub host: Option<&'a str>,
    /// The `X-TC-Timestamp` header.
    pub timestamp: Option<&'a str>,
    /// The `X-TC-Token` header.
    pub token: Option<&'a str>,
    /// The raw request body.
    pub body: &'a [u8],
}

/// Checks request signatures against a fixed set of credentials.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verifier {
    keys: HashMap<String, String>,
    required_token: Option<String>,
}

/// The pieces of a well-formed `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    secret_id: &'a str,
    date: &'a str,
    signature: &'a str,
}

impl Verifier {
    /// A verifier that knows the `(secret_id, secret_key)` pairs and, when
    /// `required_token` is set, demands that `X-TC-Token` equals it.
    pub(crate) fn new(credentials: &[(String, String)], required_token: Option<String>) -> Self {
        Self {
            keys: credentials.iter().cloned().collect(),
            required_token,
        }
    }

    /// Verifies the request as the API gateway would at wall-clock time `now`.
    /// Returns the caller's SecretId.
    pub(crate) fn verify(
        &self,
        parts: &SignedParts<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, ApiError> {
        let header = parts
            .authorization
            .ok_or_else(|| ApiError::InvalidAuthorization("the header is missing".into()))?;
        let auth = parse_authorization(header)?;
        let secret_key = self
            .keys
            .get(auth.secret_id)
            .ok_or_else(|| ApiError::SecretIdNotFound(auth.secret_id.to_owned()))?;

        let raw_ts = parts
            .timestamp
            .ok_or_else(|| ApiError::MissingParameter("X-TC-Timestamp".into()))?;
        let timestamp: i64 = raw_ts.trim().parse().map_err(|_| {
            ApiError::InvalidParameter(format!("X-TC-Timestamp {raw_ts:?} is not an integer"))
        })?;
        let server = now.timestamp();
        if timestamp.abs_diff(server) > MAX_SKEW_SECS.unsigned_abs() {
            return Err(ApiError::SignatureExpire { timestamp, server });
        }
        let date = utc_date(timestamp)
            .ok_or_else(|| ApiError::InvalidParameter("X-TC-Timestamp is out of range".into()))?;
        if auth.date != date {
            return Err(ApiError::SignatureFailure(format!(
                "credential date {} does not match the timestamp's UTC date {date}",
                auth.date
            )));
        }

        let expected = signature(
            secret_key,
            parts.content_type.unwrap_or_default(),
            parts.host.unwrap_or_default(),
            timestamp,
            &date,
            parts.body,
        );
        if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
            return Err(ApiError::SignatureFailure(
                "the signature does not match".into(),
            ));
        }

        if let Some(required) = &self.required_token {
            let sent = parts.token.unwrap_or_default();
            if !constant_time_eq(required.as_bytes(), sent.as_bytes()) {
                return Err(ApiError::TokenFailure);
            }
        }
        Ok(auth.secret_id.to_owned())
    }
}

/// Parses `TC3-HMAC-SHA256 Credential=<id>/<date>/emr/tc3_request,
/// SignedHeaders=content-type;host, Signature=<hex>`.
fn parse_authorization(header: &str) -> Result<Authorization<'_>, ApiError> {
    let invalid = |what: &str| ApiError::InvalidAuthorization(what.to_owned());
    let rest = header
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| invalid("the algorithm is not TC3-HMAC-SHA256"))?;
    if !rest.starts_with(char::is_whitespace) {
        return Err(invalid("the algorithm is not followed by a space"));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for item in rest.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or_else(|| invalid("an item is not key=value"))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(invalid("it has an unknown item")),
        };
        if slot.replace(value).is_some() {
            return Err(invalid("an item is repeated"));
        }
    }
    let credential = credential.ok_or_else(|| invalid("Credential is missing"))?;
    let signed_headers = signed_headers.ok_or_else(|| invalid("SignedHeaders is missing"))?;
    let signature = signature.ok_or_else(|| invalid("Signature is missing"))?;

    let mut scope = credential.split('/');
    let (Some(secret_id), Some(date), Some(service), Some(terminator), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(invalid(
            "Credential is not <id>/<date>/<service>/tc3_request",
        ));
    };
    if secret_id.is_empty() {
        return Err(invalid("the SecretId is empty"));
    }
    if service != SERVICE || terminator != "tc3_request" {
        return Err(invalid(
            "the credential scope is not <date>/emr/tc3_request",
        ));
    }
    if !signed_headers.eq_ignore_ascii_case("content-type;host") {
        return Err(invalid("SignedHeaders must be content-type;host"));
    }
    Ok(Authorization {
        secret_id,
        date,
        signature,
    })
}

/// The UTC calendar date of a Unix timestamp, as `YYYY-MM-DD`.
fn utc_date(timestamp: i64) -> Option<String> {
    DateTime::from_timestamp(timestamp, 0).map(|t| t.format("%Y-%m-%d").to_string())
}

/// The lowercase hex TC3 signature of a POST / request with the given parts.
pub(crate) fn signature(
    secret_key: &str,
    content_type: &str,
    host: &str,
    timestamp: i64,
    date: &str,
    body: &[u8],
) -> String {
    let canonical = format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
        content_type.trim(),
        host.trim(),
        hex::encode(Sha256::digest(body))
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{timestamp}\n{date}/{SERVICE}/tc3_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, SERVICE.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes()))
}

/// HMAC-SHA256 of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length (long keys are hashed), so this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Compares two byte strings without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const HOST: &str = "emr.tencentcloudapi.com";
    const BODY: &str = r#"{"InstanceId":"emr-abc123","TimeUnit":"s","TimeSpan":3600,"PayMode":0,"TaskCount":2,"ClientToken":"tok-1"}"#;
    const SIG: &str = "ce12a68bcb2e18782054ef0ca13f1a2fb1abc5ce9546b0410f0c68d7a85d9f18";
    const TS: i64 = 1_700_000_000;

    fn verifier(token: Option<&str>) -> Verifier {
        Verifier::new(&[(ID.to_owned(), KEY.to_owned())], token.map(str::to_owned))
    }

    fn auth(id: &str, date: &str, sig: &str) -> String {
        format!(
            "TC3-HMAC-SHA256 Credential={id}/{date}/emr/tc3_request, SignedHeaders=content-type;host, Signature={sig}"
        )
    }

    fn parts<'a>(authorization: &'a str, ts: &'a str, body: &'a str) -> SignedParts<'a> {
        SignedParts {
            authorization: Some(authorization),
            content_type: Some("application/json"),
            host: Some(HOST),
            timestamp: Some(ts),
            token: None,
            body: body.as_bytes(),
        }
    }

    fn at(ts: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(ts, 0).expect("valid test timestamp")
    }

    #[test]
    fn official_vector_signature() {
        let sig = signature(
            KEY,
            "application/json",
            HOST,
            TS,
            "2023-11-14",
            BODY.as_bytes(),
        );
        assert_eq!(sig, SIG);
    }

    #[test]
    fn official_vector_verifies() {
        let header = auth(ID, "2023-11-14", SIG);
        let id = verifier(None).verify(&parts(&header, "1700000000", BODY), at(TS + 10));
        assert_eq!(id, Ok(ID.to_owned()));
    }

    #[test]
    fn rejections() {
        let good = auth(ID, "2023-11-14", SIG);
        let bad_sig = auth(ID, "2023-11-14", &SIG.replace('c', "d"));
        let unknown = auth("AKIDnobody", "2023-11-14", SIG);
        let wrong_date = auth(ID, "2023-11-15", SIG);
        let v = verifier(None);
        let now = at(TS);
        let code = |p: SignedParts<'_>, now| v.verify(&p, now).map_err(|e| e.code().to_owned());

        assert_eq!(
            code(parts(&bad_sig, "1700000000", BODY), now),
            Err("AuthFailure.SignatureFailure".into())
        );
        assert_eq!(
            code(parts(&good, "1700000000", "{}"), now),
            Err("AuthFailure.SignatureFailure".into())
        );
        assert_eq!(
            code(parts(&unknown, "1700000000", BODY), now),
            Err("AuthFailure.SecretIdNotFound".into())
        );
        assert_eq!(
            code(parts(&wrong_date, "1700000000", BODY), now),
            Err("AuthFailure.SignatureFailure".into())
        );
        assert_eq!(
            code(parts("garbage", "1700000000", BODY), now),
            Err("AuthFailure.InvalidAuthorization".into())
        );
        assert_eq!(
            code(parts(&good, "soon", BODY), now),
            Err("InvalidParameter".into())
        );
        let mut missing = parts(&good, "1700000000", BODY);
        missing.authorization = None;
        assert_eq!(
            code(missing, now),
            Err("AuthFailure.InvalidAuthorization".into())
        );
        let mut other_host = parts(&good, "1700000000", BODY);
        other_host.host = Some("127.0.0.1:8080");
        assert_eq!(
            code(other_host, now),
            Err("AuthFailure.SignatureFailure".into())
        );
    }

    #[test]
    fn timestamp_window_is_300_seconds_either_way() {
        let header = auth(ID, "2023-11-14", SIG);
        let v = verifier(None);
        let p = parts(&header, "1700000000", BODY);
        assert!(v.verify(&p, at(TS + 300)).is_ok());
        assert!(v.verify(&p, at(TS - 300)).is_ok());
        for now in [TS + 301, TS - 301, TS + 86_400] {
            let err = v.verify(&p, at(now)).map_err(|e| e.code().to_owned());
            assert_eq!(
                err,
                Err("AuthFailure.SignatureExpire".into()),
                "now = {now}"
            );
        }
    }

    #[test]
    fn required_token_must_match() {
        let header = auth(ID, "2023-11-14", SIG);
        let v = verifier(Some("sts-token"));
        let mut p = parts(&header, "1700000000", BODY);
        assert_eq!(v.verify(&p, at(TS)), Err(ApiError::TokenFailure));
        p.token = Some("other");
        assert_eq!(v.verify(&p, at(TS)), Err(ApiError::TokenFailure));
        p.token = Some("sts-token");
        assert!(v.verify(&p, at(TS)).is_ok());
    }

    #[test]
    fn authorization_parsing() {
        let header = auth(ID, "2023-11-14", SIG);
        let ok = parse_authorization(&header);
        assert_eq!(
            ok,
            Ok(Authorization {
                secret_id: ID,
                date: "2023-11-14",
                signature: SIG,
            })
        );
        for bad in [
            "",
            "TC3-HMAC-SHA256",
            "TC3-HMAC-SHA1 Credential=a/b/emr/tc3_request, SignedHeaders=content-type;host, Signature=x",
            "TC3-HMAC-SHA256 Credential=a/b/cvm/tc3_request, SignedHeaders=content-type;host, Signature=x",
            "TC3-HMAC-SHA256 Credential=a/b/emr, SignedHeaders=content-type;host, Signature=x",
            "TC3-HMAC-SHA256 Credential=a/b/emr/tc3_request, SignedHeaders=host, Signature=x",
            "TC3-HMAC-SHA256 Credential=a/b/emr/tc3_request, Signature=x",
            "TC3-HMAC-SHA256 Credential=a/b/emr/tc3_request, SignedHeaders=content-type;host, Signature=x, Signature=y",
            "TC3-HMAC-SHA256 Credential=/b/emr/tc3_request, SignedHeaders=content-type;host, Signature=x",
        ] {
            assert!(
                parse_authorization(bad).is_err(),
                "{bad:?} should not parse"
            );
        }
    }
}
