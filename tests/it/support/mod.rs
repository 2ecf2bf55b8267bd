//! Test fixtures: a scriptable fake of the EMR endpoint on loopback, speaking
//! just enough HTTP/1.1 to misbehave on purpose (drop the connection, stall,
//! answer garbage), helpers to build a client against it, and the reader of
//! one sample of a `/metrics` page.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests measure real, wall-clock time.
#![allow(dead_code)]

pub mod daemon_proc;
pub mod etcd;
pub mod fake_prom;
pub mod inproc;
pub mod real_prom;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emr_autoscaler::http::http_client;
use emr_autoscaler::tencent::client::ClientSettings;
use emr_autoscaler::tencent::limiter::Limiters;
use emr_autoscaler::tencent::sign::{SignInput, sign};
use emr_autoscaler::tencent::{CredentialChain, Credentials, EmrClient, NoObserver, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const SECRET_ID: &str = "AKIDtestPUBLIC0001";
pub const SECRET_KEY: &str = "test-secret-key-MUST-NOT-LEAK-42";
pub const TOKEN: &str = "session-token-MUST-NOT-LEAK-77";

/// The value of the first sample in a `/metrics` page `text` whose line
/// starts with `name_and_labels` (e.g. `name{cluster="a"}`).
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with `{"Response": value}`; `RequestId` is added.
    Ok(serde_json::Value),
    /// 200 with an API error.
    Error(&'static str),
    /// Any status and raw body.
    Raw(u16, String),
    /// Read the request, then close the connection without answering.
    Drop,
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
}

/// What the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: std::time::Instant,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the signature checked out against the Host header actually sent.
    pub signature_ok: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
pub struct FakeEmr {
    pub addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl FakeEmr {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeEmr {
            addr: listener.local_addr().unwrap(),
            script: Arc::default(),
            default: Arc::new(Mutex::new(Reply::Ok(serde_json::json!({})))),
            received: Arc::default(),
        };
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let f = f.clone();
                tokio::spawn(async move { f.serve(sock).await });
            }
        });
        fake
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers for the next requests, in order; then the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        loop {
            // Read one request (head + Content-Length body).
            let (head_len, headers, content_length) = loop {
                let mut tmp = [0u8; 4096];
                let mut hs = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut hs);
                if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let cl = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0usize);
                    break (n, headers, cl);
                }
                match sock.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            };
            while buf.len() < head_len + content_length {
                let mut tmp = [0u8; 4096];
                match sock.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            let body = buf[head_len..head_len + content_length].to_vec();
            buf.drain(..head_len + content_length);
            let rec = Received {
                at: std::time::Instant::now(),
                signature_ok: check_signature(&headers, &body),
                headers,
                body,
            };
            self.received.lock().unwrap().push(rec);
            let reply = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| self.default.lock().unwrap().clone());
            if !self.answer(&mut sock, reply).await {
                return;
            }
        }
    }

    async fn answer(&self, sock: &mut tokio::net::TcpStream, reply: Reply) -> bool {
        let (status, body) = match reply {
            Reply::Drop => return false,
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                return Box::pin(self.answer(sock, *inner)).await;
            }
            Reply::Ok(mut v) => {
                v["RequestId"] = "req-ok".into();
                (200, serde_json::json!({ "Response": v }).to_string())
            }
            Reply::Error(code) => (
                200,
                serde_json::json!({"Response": {"Error": {"Code": code, "Message": "scripted"}, "RequestId": "req-err"}})
                    .to_string(),
            ),
            Reply::Raw(status, body) => (status, body),
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes()).await.is_ok()
            && sock.write_all(body.as_bytes()).await.is_ok()
    }
}

fn check_signature(headers: &[(String, String)], body: &[u8]) -> bool {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let (Some(host), Some(ts), Some(auth)) =
        (get("host"), get("x-tc-timestamp"), get("authorization"))
    else {
        return false;
    };
    let Ok(ts) = ts.parse() else { return false };
    let expected = sign(&SignInput {
        secret_id: SECRET_ID,
        secret_key: SECRET_KEY,
        host,
        service: "emr",
        timestamp: ts,
        body,
    });
    expected.authorization == auth
}

/// Fast retries for tests.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(80),
    }
}

pub fn client_with(
    endpoint: &str,
    retry: RetryPolicy,
    token: Option<&str>,
    timeout: Duration,
) -> EmrClient {
    let http = http_client(Duration::from_secs(2), timeout).unwrap();
    let creds = CredentialChain::fixed(
        Credentials::new(SECRET_ID, SECRET_KEY, token.map(str::to_string)),
        http.clone(),
    );
    EmrClient::new(
        http,
        ClientSettings {
            endpoint: endpoint.parse().unwrap(),
            region: "ap-guangzhou".into(),
            language: None,
            request_timeout: timeout,
            retry,
        },
        Arc::new(creds),
        Arc::new(Limiters::new(std::num::NonZeroU32::new(20).unwrap())),
        Arc::new(NoObserver),
    )
    .unwrap()
}

pub fn client(fake: &FakeEmr, retry: RetryPolicy) -> EmrClient {
    client_with(&fake.endpoint(), retry, None, Duration::from_secs(5))
}
