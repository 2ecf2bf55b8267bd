//! The body each webhook format is sent, and DingTalk's request signature.
//! Pure: an event in, JSON out.
//!
//! - `json`: the event exactly as `/api/v1/history` shows it;
//! - `wecom`: `{"msgtype":"markdown","markdown":{"content":TEXT}}`;
//! - `dingtalk`: `{"msgtype":"markdown","markdown":{"title":TITLE,"text":TEXT}}`;
//! - `slack`: `{"text":TEXT}`.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::config::notify::WebhookFormat;
use crate::history::{Event, Kind};

/// What happened, in a few words.
fn headline(e: &Event) -> String {
    match e.kind {
        Kind::ScaleOut => format!("ordered {} node(s)", e.nodes.unwrap_or(0)),
        Kind::ScaleIn => format!("removing {} node(s)", e.nodes.unwrap_or(0)),
        Kind::Refused => format!("the API refused ({})", e.outcome),
        Kind::Breaker => "breaker open".into(),
        Kind::Conflict if e.outcome == "on" => "held by Tencent's auto-scaling".into(),
        Kind::Conflict => "no longer held by Tencent's auto-scaling".into(),
        Kind::Pause => "paused".into(),
        Kind::Resume => "resumed".into(),
        Kind::LostNodes => format!("lost {} node(s)", e.nodes.unwrap_or(0)),
    }
}

/// The message's title: `emr-autoscaler emr-xxxxxxxx: what happened`.
pub fn title(e: &Event) -> String {
    format!("emr-autoscaler {}: {}", e.instance_id, headline(e))
}

/// The message's markdown text: the title, the reason, then what is known
/// of the order.
pub fn text(e: &Event) -> String {
    let mut lines = vec![format!("**{}**", title(e)), String::new(), e.reason.clone()];
    lines.push(String::new());
    lines.push(format!("- kind: {}", e.kind));
    lines.push(format!("- outcome: {}", e.outcome));
    if let Some(n) = e.nodes {
        lines.push(format!("- nodes: {n}"));
    }
    if let Some(o) = &e.offering {
        lines.push(format!("- offering: {o}"));
    }
    if let Some(f) = e.flow_id {
        lines.push(format!("- flow: {f}"));
    }
    if let Some(t) = &e.client_token {
        lines.push(format!("- client token: {t}"));
    }
    lines.push(format!(
        "- at: {}",
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ));
    lines.join("\n")
}

/// The body `format` sends for `event`.
pub fn body(format: WebhookFormat, event: &Event) -> Value {
    match format {
        WebhookFormat::Json => serde_json::to_value(event).unwrap_or(Value::Null),
        WebhookFormat::Wecom => {
            json!({"msgtype": "markdown", "markdown": {"content": text(event)}})
        }
        WebhookFormat::Dingtalk => json!({
            "msgtype": "markdown",
            "markdown": {"title": title(event), "text": text(event)},
        }),
        WebhookFormat::Slack => json!({"text": text(event)}),
    }
}

/// DingTalk's signature of a request at `timestamp_ms`:
/// BASE64(HMAC-SHA256(secret, "MS\nsecret")), before URL encoding.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let message = format!("{timestamp_ms}\n{secret}");
    let mac = crate::tencent::sign::hmac(secret.as_bytes(), message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// `url` with DingTalk's `timestamp` and `sign` parameters appended (the
/// signature URL-encoded).
pub fn dingtalk_signed(url: &url::Url, secret: &str, timestamp_ms: i64) -> url::Url {
    let mut signed = url.clone();
    signed
        .query_pairs_mut()
        .append_pair("timestamp", &timestamp_ms.to_string())
        .append_pair("sign", &dingtalk_sign(secret, timestamp_ms));
    signed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Event {
        Event::new(
            chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            "emr-abc12345",
            Kind::ScaleOut,
            "accepted",
            "pending memory 120 GiB > 64 GiB for 2m: +4",
        )
        .nodes(4)
        .offering("default")
        .token(Some("tok".into()))
        .flow(Some(77))
    }

    #[test]
    fn each_format_has_the_contract_shape() {
        let e = order();
        assert_eq!(
            body(WebhookFormat::Json, &e),
            serde_json::to_value(&e).unwrap()
        );
        let wecom = body(WebhookFormat::Wecom, &e);
        assert_eq!(wecom["msgtype"], "markdown");
        assert_eq!(wecom["markdown"]["content"], text(&e));
        assert_eq!(wecom.as_object().unwrap().len(), 2);
        let ding = body(WebhookFormat::Dingtalk, &e);
        assert_eq!(
            ding["markdown"]["title"],
            "emr-autoscaler emr-abc12345: ordered 4 node(s)"
        );
        assert_eq!(ding["markdown"]["text"], text(&e));
        assert_eq!(body(WebhookFormat::Slack, &e), json!({"text": text(&e)}));
        expect_test::expect![[r#"
            **emr-autoscaler emr-abc12345: ordered 4 node(s)**

            pending memory 120 GiB > 64 GiB for 2m: +4

            - kind: scale_out
            - outcome: accepted
            - nodes: 4
            - offering: default
            - flow: 77
            - client token: tok
            - at: 2027-01-15T08:00:00Z"#]]
        .assert_eq(&text(&e));
    }

    #[test]
    fn the_dingtalk_signature_matches_a_value_computed_elsewhere() {
        // Computed with Python's hmac module and with `openssl dgst -sha256
        // -hmac SEC123 -binary | base64` over "1700000000000\nSEC123".
        assert_eq!(
            dingtalk_sign("SEC123", 1_700_000_000_000),
            "lkcPI1uoxBY1gUnCnnPH1Kkru0Hqjo7rFpA3haIVhEQ="
        );
    }

    #[test]
    fn the_dingtalk_signature_is_url_encoded_into_the_query() {
        let url = url::Url::parse("https://oapi.dingtalk.com/robot/send?access_token=abc").unwrap();
        let signed = dingtalk_signed(&url, "SEC123", 1_700_000_000_000);
        let pairs: Vec<(String, String)> = signed.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("access_token".into(), "abc".into()));
        assert_eq!(pairs[1], ("timestamp".into(), "1700000000000".into()));
        assert_eq!(pairs[2].1, dingtalk_sign("SEC123", 1_700_000_000_000));
        // Base64's '+', '/' and '=' never reach the query unencoded.
        let raw = signed.query().unwrap();
        let sign = raw.split("sign=").nth(1).unwrap();
        assert!(!sign.contains(['+', '/', '=']), "{sign}");
    }
}
