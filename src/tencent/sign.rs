//! TC3-HMAC-SHA256 request signing.
//!
//! Pure functions over bytes: the caller supplies the timestamp (always the
//! wall clock, see [`crate::clock::wall_now`]) and the exact body bytes that
//! will be sent. Every intermediate value is returned so tests can compare
//! them with the official SDK's vector byte for byte.

use chrono::DateTime;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The signing algorithm's name, as it appears on the wire.
pub(crate) const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The headers covered by the signature, in canonical order.
pub(crate) const SIGNED_HEADERS: &str = "content-type;host";
/// The only content type this client sends.
pub(crate) const CONTENT_TYPE: &str = "application/json";

/// What a signature covers.
#[derive(Clone, Copy)]
pub struct SignInput<'a> {
    /// The public half of the key pair.
    pub secret_id: &'a str,
    /// The secret half. Never logged.
    pub secret_key: &'a str,
    /// The `Host` header value, with `:port` when the endpoint names one.
    pub host: &'a str,
    /// The service name, `emr`.
    pub service: &'a str,
    /// Unix seconds, from the wall clock.
    pub timestamp: i64,
    /// The exact request body bytes.
    pub body: &'a [u8],
}

/// Every intermediate value of a signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    /// The canonical request string.
    pub canonical_request: String,
    /// `<UTC date>/<service>/tc3_request`.
    pub credential_scope: String,
    /// The string that is signed.
    pub string_to_sign: String,
    /// The derived signing key. Secret material: not shown by `Debug`.
    pub signing_key: [u8; 32],
    /// Lowercase hex signature.
    pub signature: String,
    /// The complete `Authorization` header value.
    pub authorization: String,
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signature")
            .field("credential_scope", &self.credential_scope)
            .field("signing_key", &"<redacted>")
            .field("signature", &"<redacted>")
            .finish()
    }
}

/// Whether two secrets (tokens, proofs) are equal, in time that does not
/// depend on where they first differ.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 of `msg` under `key` (also the admin API's proof of the token).
pub(crate) fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Lowercase hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The UTC calendar date of a Unix timestamp, as `YYYY-MM-DD`.
pub(crate) fn utc_date(timestamp: i64) -> String {
    DateTime::from_timestamp(timestamp, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// Signs one request.
pub fn sign(input: &SignInput<'_>) -> Signature {
    let canonical_request = format!(
        "POST\n/\n\ncontent-type:{CONTENT_TYPE}\nhost:{}\n\n{SIGNED_HEADERS}\n{}",
        input.host,
        sha256_hex(input.body)
    );
    let date = utc_date(input.timestamp);
    let credential_scope = format!("{date}/{}/tc3_request", input.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{}",
        input.timestamp,
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(
        format!("TC3{}", input.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let k_service = hmac(&k_date, input.service.as_bytes());
    let signing_key = hmac(&k_service, b"tc3_request");
    let signature = hex::encode(hmac(&signing_key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{credential_scope}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}",
        input.secret_id
    );
    Signature {
        canonical_request,
        credential_scope,
        string_to_sign,
        signing_key,
        signature,
        authorization,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = include_str!("../../tests/data/tc3-vector.json");

    fn vector() -> serde_json::Value {
        serde_json::from_str(VECTOR).unwrap()
    }

    fn field<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a str {
        let mut cur = v;
        for p in path {
            cur = &cur[*p];
        }
        cur.as_str()
            .unwrap_or_else(|| panic!("vector has no {path:?}"))
    }

    fn sign_vector(v: &serde_json::Value) -> Signature {
        sign(&SignInput {
            secret_id: field(v, &["inputs", "secret_id"]),
            secret_key: field(v, &["inputs", "secret_key"]),
            host: field(v, &["inputs", "host"]),
            service: field(v, &["inputs", "service"]),
            timestamp: v["inputs"]["timestamp"].as_i64().unwrap(),
            body: field(v, &["body"]).as_bytes(),
        })
    }

    #[test]
    fn reproduces_the_official_sdk_vector_byte_for_byte() {
        let v = vector();
        let s = sign_vector(&v);
        assert_eq!(
            sha256_hex(field(&v, &["body"]).as_bytes()),
            field(&v, &["body_sha256"])
        );
        assert_eq!(s.canonical_request, field(&v, &["canonical_request"]));
        assert_eq!(
            sha256_hex(s.canonical_request.as_bytes()),
            field(&v, &["hashed_canonical_request"])
        );
        assert_eq!(s.credential_scope, field(&v, &["credential_scope"]));
        assert_eq!(s.string_to_sign, field(&v, &["string_to_sign"]));
        assert_eq!(hex::encode(s.signing_key), field(&v, &["signing_key_hex"]));
        assert_eq!(s.signature, field(&v, &["signature"]));
        assert_eq!(s.authorization, field(&v, &["authorization"]));
    }

    fn plain(host: &'static str, timestamp: i64) -> Signature {
        sign(&SignInput {
            secret_id: "id",
            secret_key: "key",
            host,
            service: "emr",
            timestamp,
            body: b"{}",
        })
    }

    #[test]
    fn host_with_port_is_signed_as_given() {
        let with_port = plain("127.0.0.1:8443", 1_700_000_000);
        assert!(
            with_port
                .canonical_request
                .contains("\nhost:127.0.0.1:8443\n"),
            "{}",
            with_port.canonical_request
        );
        let without_port = plain("127.0.0.1", 1_700_000_000);
        assert_ne!(with_port.signature, without_port.signature);
    }

    #[test]
    fn scope_date_is_the_utc_date_at_the_last_second_of_a_day() {
        // 2023-11-14T23:59:59Z; in UTC+8 (the API's home zone) it is already the 15th.
        let s = plain("emr.tencentcloudapi.com", 1_700_006_399);
        assert_eq!(s.credential_scope, "2023-11-14/emr/tc3_request");
        assert!(
            s.string_to_sign
                .starts_with("TC3-HMAC-SHA256\n1700006399\n2023-11-14/")
        );
        assert!(s.authorization.contains("/2023-11-14/emr/tc3_request,"));
        let next = plain("emr.tencentcloudapi.com", 1_700_006_400);
        assert_eq!(next.credential_scope, "2023-11-15/emr/tc3_request");
    }

    #[test]
    fn debug_hides_key_material() {
        let s = sign_vector(&vector());
        let shown = format!("{s:?}");
        assert!(!shown.contains(&s.signature));
        assert!(!shown.contains(&hex::encode(s.signing_key)));
    }
}
