//! The etcd client proper: etcd's JSON gateway (`/v3/...`, served by every
//! etcd member on its client port) over reqwest.
//!
//! The gateway maps the gRPC API onto JSON: keys and values are base64,
//! 64-bit integers (lease IDs, TTLs, revisions) are JSON strings, and fields
//! at their default value are left out (a failed transaction has no
//! `succeeded`, a range that found nothing has no `kvs`, the keep-alive of a
//! lost lease has no `TTL`). Keep-alive answers arrive wrapped in
//! `{"result": ...}`. Every request carries `Grpc-Metadata-hasleader: true`,
//! which the gateway passes on as gRPC's require-leader metadata: a member
//! cut off from its quorum refuses at once (503, "no leader") instead of
//! serving stale reads or waiting out its own election timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
use url::Url;

use super::{Campaign, EtcdError, Fence, Lease, Value};
use crate::config::ha::HaConfig;

/// The largest answer read. etcd refuses requests above 1.5 MiB, and every
/// read here is of one key or of one page of history events.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The gRPC status etcd gives an expired or unknown auth token.
const UNAUTHENTICATED: i64 = 16;

/// An etcd client over the JSON gateway of each member. A call that fails on
/// one member is tried on the next, within its time budget, and the member
/// that answered is used first from then on. With a user, each member's
/// auth token is fetched on first use and again when the member refuses it.
#[derive(Clone)]
pub struct Etcd {
    endpoints: Vec<Url>,
    http: reqwest::Client,
    timeout: Duration,
    user: Option<Arc<(String, SecretString)>>,
    /// One auth token per member: etcd's simple tokens are member-local.
    tokens: Arc<Vec<std::sync::Mutex<Option<SecretString>>>>,
    current: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("timeout", &self.timeout)
            .field("user", &self.user.as_ref().map(|u| u.0.as_str()))
            .finish_non_exhaustive()
    }
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, EtcdError> {
    crate::files::read_capped(path, crate::files::MAX_SECRET_BYTES)
        .map_err(|e| EtcdError::Setup(format!("cannot read ha.{what} {}: {e}", path.display())))
}

/// A 64-bit integer of the gateway's JSON: a string, a number, or absent (0).
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Option::<Int>::deserialize(d)? {
        None => Ok(0),
        Some(Int::Number(n)) => Ok(n),
        Some(Int::Text(s)) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// Bytes of the gateway's JSON: base64, or absent (empty).
fn bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(s) => BASE64.decode(s).map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Default, Deserialize)]
struct Header {
    #[serde(default, deserialize_with = "int64")]
    revision: i64,
}

#[derive(Debug, Deserialize)]
struct KeyValue {
    #[serde(default, deserialize_with = "bytes")]
    key: Vec<u8>,
    #[serde(default, deserialize_with = "int64")]
    create_revision: i64,
    #[serde(default, deserialize_with = "bytes")]
    value: Vec<u8>,
    #[serde(default, deserialize_with = "int64")]
    lease: i64,
}

#[derive(Debug, Default, Deserialize)]
struct Range {
    #[serde(default)]
    kvs: Vec<KeyValue>,
    #[serde(default, deserialize_with = "int64")]
    count: i64,
}

#[derive(Debug, Default, Deserialize)]
struct Deleted {
    #[serde(default, deserialize_with = "int64")]
    deleted: i64,
}

#[derive(Debug, Deserialize)]
struct OpResponse {
    #[serde(default)]
    response_range: Option<Range>,
}

#[derive(Debug, Deserialize)]
struct TxnAnswer {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<OpResponse>,
}

impl TxnAnswer {
    /// The first key a range in the transaction found.
    fn first_kv(self) -> Option<KeyValue> {
        self.responses
            .into_iter()
            .filter_map(|r| r.response_range)
            .find_map(|r| r.kvs.into_iter().next())
    }
}

#[derive(Debug, Deserialize)]
struct LeaseAnswer {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    ttl: i64,
}

#[derive(Debug, Deserialize)]
struct KeepAliveAnswer {
    result: LeaseAnswer,
}

#[derive(Debug, Deserialize)]
struct Token {
    token: String,
}

/// An error answer: `{"error", "message", "code"}`, or from a streaming
/// call `{"error": {"message", "grpc_code", ...}}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    error: Option<Json>,
}

impl ErrorAnswer {
    fn message(&self) -> String {
        self.message
            .clone()
            .or_else(|| match &self.error {
                Some(Json::String(s)) => Some(s.clone()),
                Some(Json::Object(o)) => o.get("message").and_then(Json::as_str).map(String::from),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn code(&self) -> Option<i64> {
        self.code.or_else(|| {
            self.error
                .as_ref()
                .and_then(|e| e.get("grpc_code"))
                .and_then(Json::as_i64)
        })
    }
}

/// How one attempt on one member failed.
enum Failure {
    /// The member refused the auth token: fetch a new one and try again.
    Token,
    /// Anything else; the next member is tried.
    Other(EtcdError),
}

fn key(text: &str) -> String {
    BASE64.encode(text.as_bytes())
}

/// A compare on `key`'s create revision (0: the key does not exist).
fn created_at(key_text: &str, revision: i64) -> Json {
    json!({"key": key(key_text), "target": "CREATE", "result": "EQUAL",
           "create_revision": revision.to_string()})
}

fn put(key_text: &str, value: &[u8], lease: Option<i64>) -> Json {
    let mut put = json!({"key": key(key_text), "value": BASE64.encode(value)});
    if let Some(lease) = lease {
        put["lease"] = Json::String(lease.to_string());
    }
    json!({"request_put": put})
}

/// The end of the range of every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn range(key_text: &str) -> Json {
    json!({"request_range": {"key": key(key_text)}})
}

impl Etcd {
    /// A client for `config`'s endpoints; each attempt times out after
    /// `timeout`. The TLS and password files are read now (an unreadable
    /// one is [`EtcdError::Setup`]); nothing is dialled yet, so a daemon
    /// starts while etcd is down.
    pub fn new(config: &HaConfig, timeout: Duration) -> Result<Etcd, EtcdError> {
        let mut builder = crate::http::builder(timeout, timeout);
        if let Some(ca) = &config.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read(ca, "ca_file")?)
                .map_err(|e| EtcdError::Setup(format!("ha.ca_file {}: {e}", ca.display())))?;
            // Only this CA: the etcd members' certificates are not public ones.
            builder = builder.tls_certs_only(certs);
        }
        if let Some((cert, key)) = &config.client_identity {
            let mut pem = read(cert, "cert_file")?;
            pem.push(b'\n');
            pem.extend(read(key, "key_file")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                EtcdError::Setup(format!(
                    "ha.cert_file {} with ha.key_file {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| EtcdError::Setup(format!("cannot build the etcd client: {e}")))?;
        let user = match &config.user {
            Some((name, file)) => {
                let password = crate::files::read_secret(file).map_err(|e| {
                    EtcdError::Setup(format!(
                        "cannot read ha.password_file {}: {e}",
                        file.display()
                    ))
                })?;
                Some(Arc::new((name.clone(), SecretString::from(password))))
            }
            None => None,
        };
        let endpoints = config.etcd_endpoints.clone();
        let tokens = endpoints
            .iter()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        Ok(Etcd {
            endpoints,
            http,
            timeout,
            user,
            tokens: Arc::new(tokens),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn url(&self, i: usize, path: &str) -> Result<Url, EtcdError> {
        self.endpoints[i]
            .join(&format!("v3/{path}"))
            .map_err(|e| EtcdError::Setup(format!("{}: {e}", self.endpoints[i])))
    }

    /// One POST to member `i`, with its auth token when there is one.
    async fn post<T: DeserializeOwned>(
        &self,
        i: usize,
        path: &str,
        body: &Json,
        token: Option<&SecretString>,
    ) -> Result<T, Failure> {
        let mut request = self
            .http
            .post(self.url(i, path).map_err(Failure::Other)?)
            .header("Grpc-Metadata-hasleader", "true")
            .json(body);
        if let Some(token) = token {
            let mut value =
                reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                    Failure::Other(EtcdError::Unreachable(format!(
                        "{} gave an auth token that is not a valid header value",
                        self.endpoints[i]
                    )))
                })?;
            // Kept out of any Debug output of the request.
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let answer = request.send().await.map_err(|e| {
            Failure::Other(if e.is_timeout() {
                EtcdError::Timeout(self.timeout)
            } else {
                EtcdError::Unreachable(format!(
                    "{}: {}",
                    self.endpoints[i],
                    crate::http::error_chain(&e)
                ))
            })
        })?;
        let status = answer.status();
        let bytes = crate::http::read_capped(answer, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| Failure::Other(EtcdError::Unreachable(e.to_string())))?;
        if !status.is_success() {
            let error: ErrorAnswer = serde_json::from_slice(&bytes).unwrap_or_default();
            if token.is_some()
                && (status == reqwest::StatusCode::UNAUTHORIZED
                    || error.code() == Some(UNAUTHENTICATED))
            {
                return Err(Failure::Token);
            }
            // etcd with authentication on answers an anonymous call 400 "user
            // name is empty" (401 for some calls).
            let anonymous_refused = status == reqwest::StatusCode::UNAUTHORIZED
                || error.message().contains("user name is empty");
            let hint = if anonymous_refused && self.user.is_none() {
                " (etcd has authentication on: set ha.username and ha.password_file)"
            } else {
                ""
            };
            return Err(Failure::Other(EtcdError::Unreachable(format!(
                "{} answered {status}: {}{hint}",
                self.endpoints[i],
                error.message()
            ))));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Other(EtcdError::Unreachable(format!(
                "{} answered {path} with unexpected JSON: {e}",
                self.endpoints[i]
            )))
        })
    }

    /// Member `i`'s auth token, authenticating first when it has none.
    async fn token(&self, i: usize) -> Result<Option<SecretString>, EtcdError> {
        let Some(user) = &self.user else {
            return Ok(None);
        };
        if let Some(token) = self.tokens[i]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(Some(token));
        }
        let body = json!({"name": user.0, "password": user.1.expose_secret()});
        let token: Token = match self.post(i, "auth/authenticate", &body, None).await {
            Ok(t) => t,
            Err(Failure::Other(e)) => return Err(e),
            // Only a request that carried a token is refused for it.
            Err(Failure::Token) => {
                return Err(EtcdError::Unreachable(format!(
                    "{} refused to authenticate user {}",
                    self.endpoints[i], user.0
                )));
            }
        };
        let token = SecretString::from(token.token);
        *self.tokens[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        Ok(Some(token))
    }

    /// One call on member `i`: with a refused token, once more with a fresh one.
    async fn attempt<T: DeserializeOwned>(
        &self,
        i: usize,
        path: &str,
        body: &Json,
    ) -> Result<T, EtcdError> {
        for _ in 0..2 {
            let token = self.token(i).await?;
            match self.post(i, path, body, token.as_ref()).await {
                Ok(v) => return Ok(v),
                Err(Failure::Other(e)) => return Err(e),
                Err(Failure::Token) => {
                    *self.tokens[i].lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
        }
        Err(EtcdError::Unreachable(format!(
            "{} refused a fresh auth token for user {}",
            self.endpoints[i],
            self.user.as_ref().map_or("", |u| u.0.as_str())
        )))
    }

    /// Runs the call on the current member, then on each other member in
    /// turn while it fails. Every call here is safe to repeat: a put of the
    /// same value, a campaign that counts its own lease as won, a renewal.
    async fn call<T: DeserializeOwned>(&self, path: &str, body: Json) -> Result<T, EtcdError> {
        let n = self.endpoints.len().max(1);
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last = EtcdError::Unreachable("no etcd endpoint".into());
        for k in 0..self.endpoints.len() {
            let i = (first + k) % n;
            let attempt = tokio::time::timeout(self.timeout, self.attempt(i, path, &body));
            match attempt
                .await
                .unwrap_or(Err(EtcdError::Timeout(self.timeout)))
            {
                Ok(v) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => last = e,
            }
        }
        self.current.store((first + 1) % n, Ordering::Relaxed);
        Err(last)
    }

    async fn txn(
        &self,
        compare: Vec<Json>,
        success: Json,
        failure: Vec<Json>,
    ) -> Result<TxnAnswer, EtcdError> {
        self.call(
            "kv/txn",
            json!({"compare": compare, "success": [success], "failure": failure}),
        )
        .await
    }

    /// Grants a lease of `ttl` seconds.
    pub async fn grant(&self, ttl: i64) -> Result<Lease, EtcdError> {
        let r: LeaseAnswer = self
            .call("lease/grant", json!({"TTL": ttl.to_string()}))
            .await?;
        Ok(Lease {
            id: r.id,
            ttl: r.ttl,
        })
    }

    /// Renews `lease` once; returns the TTL etcd now grants (0: the lease is
    /// gone).
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        let r: KeepAliveAnswer = self
            .call("lease/keepalive", json!({"ID": lease.to_string()}))
            .await?;
        Ok(r.result.ttl)
    }

    /// Revokes `lease`: every key attached to it goes at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call::<Json>("lease/revoke", json!({"ID": lease.to_string()}))
            .await
            .map(|_| ())
    }

    /// Creates `key` = `value` under `lease` if nobody holds it; otherwise
    /// reports the holder. A key held by `lease` itself counts as won.
    pub async fn campaign(
        &self,
        key: &str,
        value: &[u8],
        lease: i64,
    ) -> Result<Campaign, EtcdError> {
        let r = self
            .txn(
                vec![created_at(key, 0)],
                put(key, value, Some(lease)),
                vec![range(key)],
            )
            .await?;
        if r.succeeded {
            return Ok(Campaign::Won(Fence {
                key: key.to_string(),
                revision: r.header.revision,
            }));
        }
        match r.first_kv() {
            Some(kv) if kv.lease == lease => Ok(Campaign::Won(Fence {
                key: key.to_string(),
                revision: kv.create_revision,
            })),
            Some(kv) => Ok(Campaign::Held {
                value: kv.value,
                lease: kv.lease,
            }),
            // Deleted between the compare and the read: try again next round.
            None => Err(EtcdError::Unreachable(
                "the leader key changed during the campaign".into(),
            )),
        }
    }

    /// Reads one key.
    pub async fn get(&self, key_text: &str) -> Result<Option<Value>, EtcdError> {
        let r: Range = self.call("kv/range", json!({"key": key(key_text)})).await?;
        Ok(r.kvs.into_iter().next().map(|kv| Value {
            bytes: kv.value,
            create_revision: kv.create_revision,
            lease: kv.lease,
        }))
    }

    /// Writes `key` = `value`, unconditionally (history events: facts that
    /// happened, each under a key of its own).
    pub async fn put(&self, key_text: &str, value: Vec<u8>) -> Result<(), EtcdError> {
        self.call::<Json>(
            "kv/put",
            json!({"key": key(key_text), "value": BASE64.encode(value)}),
        )
        .await
        .map(|_| ())
    }

    /// Up to `limit` keys starting with `prefix` (and, when given, sorting
    /// before `before`), newest key first, with their values.
    pub async fn scan(
        &self,
        prefix: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, EtcdError> {
        let end = before.map_or_else(|| prefix_end(prefix), |b| b.as_bytes().to_vec());
        let r: Range = self
            .call(
                "kv/range",
                json!({"key": key(prefix), "range_end": BASE64.encode(end),
                       "limit": limit.to_string(), "sort_order": "DESCEND", "sort_target": "KEY"}),
            )
            .await?;
        Ok(r.kvs
            .into_iter()
            .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.value))
            .collect())
    }

    /// How many keys start with `prefix`.
    pub async fn count(&self, prefix: &str) -> Result<usize, EtcdError> {
        let r: Range = self
            .call(
                "kv/range",
                json!({"key": key(prefix), "range_end": BASE64.encode(prefix_end(prefix)),
                       "count_only": true}),
            )
            .await?;
        Ok(usize::try_from(r.count).unwrap_or(0))
    }

    /// Deletes the `n` oldest (first sorting) keys starting with `prefix`;
    /// returns how many went.
    pub async fn trim_oldest(&self, prefix: &str, n: usize) -> Result<usize, EtcdError> {
        let r: Range = self
            .call(
                "kv/range",
                json!({"key": key(prefix), "range_end": BASE64.encode(prefix_end(prefix)),
                       "limit": n.to_string(), "sort_order": "ASCEND", "sort_target": "KEY",
                       "keys_only": true}),
            )
            .await?;
        let Some(last) = r.kvs.last() else {
            return Ok(0);
        };
        let mut end = last.key.clone();
        end.push(0);
        let d: Deleted = self
            .call(
                "kv/deleterange",
                json!({"key": key(prefix), "range_end": BASE64.encode(end)}),
            )
            .await?;
        Ok(usize::try_from(d.deleted).unwrap_or(0))
    }

    /// Writes `key` = `value` only while `fence` holds.
    pub async fn fenced_put(
        &self,
        fence: &Fence,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), EtcdError> {
        let r = self
            .txn(
                vec![created_at(&fence.key, fence.revision)],
                put(key, &value, None),
                Vec::new(),
            )
            .await?;
        if r.succeeded {
            Ok(())
        } else {
            Err(EtcdError::Fenced)
        }
    }

    /// Writes `key` = `value` only while `fence` holds and `key` does not
    /// exist yet; `Ok(false)` when it already did.
    pub async fn fenced_create(
        &self,
        fence: &Fence,
        key: &str,
        value: Vec<u8>,
    ) -> Result<bool, EtcdError> {
        let r = self
            .txn(
                vec![created_at(&fence.key, fence.revision), created_at(key, 0)],
                put(key, &value, None),
                vec![range(&fence.key)],
            )
            .await?;
        if r.succeeded {
            return Ok(true);
        }
        if r.first_kv()
            .is_some_and(|kv| kv.create_revision == fence.revision)
        {
            Ok(false)
        } else {
            Err(EtcdError::Fenced)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_json_mapping_is_read_as_etcd_writes_it() {
        // As etcd 3.4 answers: int64 as strings, defaults left out.
        let won: TxnAnswer = serde_json::from_str(
            r#"{"header":{"cluster_id":"1","revision":"42"},"succeeded":true,
                "responses":[{"response_put":{"header":{"revision":"42"}}}]}"#,
        )
        .unwrap();
        assert!(won.succeeded);
        assert_eq!(won.header.revision, 42);
        let lost: TxnAnswer = serde_json::from_str(
            r#"{"header":{"revision":"43"},"responses":[{"response_range":{"header":{},
                "kvs":[{"key":"L2s=","create_revision":"7","mod_revision":"7","version":"1",
                "value":"aGk=","lease":"7587869"}],"count":"1"}}]}"#,
        )
        .unwrap();
        assert!(!lost.succeeded);
        let kv = lost.first_kv().unwrap();
        assert_eq!(
            (kv.create_revision, kv.value.as_slice(), kv.lease),
            (7, &b"hi"[..], 7587869)
        );
        let empty: Range = serde_json::from_str(r#"{"header":{"revision":"3"}}"#).unwrap();
        assert!(empty.kvs.is_empty());
        let gone: KeepAliveAnswer =
            serde_json::from_str(r#"{"result":{"header":{},"ID":"12"}}"#).unwrap();
        assert_eq!((gone.result.id, gone.result.ttl), (12, 0));
        let bad: Result<LeaseAnswer, _> = serde_json::from_str(r#"{"ID":"twelve"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn errors_of_unary_and_streaming_calls_are_both_read() {
        let unary: ErrorAnswer = serde_json::from_str(
            r#"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#,
        )
        .unwrap();
        assert_eq!(
            (unary.message().as_str(), unary.code()),
            ("etcdserver: no leader", Some(14))
        );
        let stream: ErrorAnswer = serde_json::from_str(
            r#"{"error":{"grpc_code":16,"http_code":401,"message":"invalid auth token"}}"#,
        )
        .unwrap();
        assert_eq!(
            (stream.message().as_str(), stream.code()),
            ("invalid auth token", Some(16))
        );
    }

    #[test]
    fn the_debug_form_names_the_user_but_never_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hunter2-secret\n").unwrap();
        let config = HaConfig {
            etcd_endpoints: vec![Url::parse("http://127.0.0.1:2379").unwrap()],
            lease_ttl: Duration::from_secs(10),
            prefix: "/p/".into(),
            node_name: "a".into(),
            advertise_url: None,
            ca_file: None,
            client_identity: None,
            user: Some(("ops".into(), file)),
        };
        let etcd = Etcd::new(&config, Duration::from_secs(1)).unwrap();
        let shown = format!("{etcd:?}");
        assert!(
            shown.contains("ops") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
