//! `[notify]`: webhooks that hear of every history event (or the kinds they
//! list), in the `json`, `wecom`, `dingtalk` or `slack` format. The URL is
//! a secret (WeCom, DingTalk and Slack URLs carry their keys): it lives in
//! `url_file`, is read by the daemon, and never appears in the config, the
//! logs, the status or a metric label.

use std::path::PathBuf;

use serde::Deserialize;

use super::Validator;
use super::raw::Field;
use crate::history::Kind;

/// `[notify]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawNotify {
    /// `[[notify.webhooks]]`
    pub webhooks: Vec<RawWebhook>,
}

/// `[[notify.webhooks]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawWebhook {
    /// The `webhook` metric label; default: its index.
    pub name: Field<String>,
    /// File holding the URL.
    pub url_file: Field<String>,
    /// `json`, `wecom`, `dingtalk` or `slack`.
    pub format: Field<String>,
    /// DingTalk robots with signing: file holding the secret.
    pub secret_file: Field<String>,
    /// Event kinds to send; default every kind.
    pub events: Field<Vec<String>>,
}

/// `[notify]`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotifyConfig {
    /// Every webhook, in order.
    pub webhooks: Vec<WebhookConfig>,
}

/// The body a webhook is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The event as `/api/v1/history` shows it.
    Json,
    /// A WeCom group robot's markdown message.
    Wecom,
    /// A DingTalk robot's markdown message.
    Dingtalk,
    /// A Slack incoming webhook's text.
    Slack,
}

impl WebhookFormat {
    const ALL: [(&'static str, WebhookFormat); 4] = [
        ("json", WebhookFormat::Json),
        ("wecom", WebhookFormat::Wecom),
        ("dingtalk", WebhookFormat::Dingtalk),
        ("slack", WebhookFormat::Slack),
    ];
}

/// One webhook, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Its name (the `webhook` label): as configured, or its index.
    pub name: String,
    /// The file holding its URL.
    pub url_file: PathBuf,
    /// Its body.
    pub format: WebhookFormat,
    /// DingTalk signing: the file holding the secret.
    pub secret_file: Option<PathBuf>,
    /// The kinds it hears of.
    pub events: Vec<Kind>,
}

impl Validator<'_> {
    pub(super) fn notify(&mut self, raw: RawNotify) -> NotifyConfig {
        let mut webhooks: Vec<WebhookConfig> = Vec::new();
        for (i, w) in raw.webhooks.into_iter().enumerate() {
            let at = format!("notify.webhooks[{i}]");
            let name = self
                .optional(&format!("{at}.name"), w.name)
                .unwrap_or_else(|| i.to_string());
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                self.issue(
                    &format!("{at}.name"),
                    format!(
                        "{name:?} must be letters, digits, '-', '_' or '.' (it is a metric label)"
                    ),
                );
            } else if let Some(j) = webhooks.iter().position(|o| o.name == name) {
                self.issue(
                    &format!("{at}.name"),
                    format!("{name:?} is already the name of notify.webhooks[{j}]"),
                );
            }
            let url_file = match w.url_file {
                Field::Missing => {
                    self.issue(
                        &format!("{at}.url_file"),
                        "required: the file that holds the webhook's URL (the URL is a secret: keep it out of the config)",
                    );
                    None
                }
                field => self.get(&format!("{at}.url_file"), field, None),
            }
            .map(PathBuf::from);
            let format = match self.get(&format!("{at}.format"), w.format, Some("json".into())) {
                Some(text) => match WebhookFormat::ALL.iter().find(|(n, _)| *n == text) {
                    Some((_, f)) => *f,
                    None => {
                        self.issue(
                            &format!("{at}.format"),
                            format!("{text:?} is not a format; use \"json\", \"wecom\", \"dingtalk\" or \"slack\""),
                        );
                        WebhookFormat::Json
                    }
                },
                None => WebhookFormat::Json,
            };
            let secret_file = self
                .optional(&format!("{at}.secret_file"), w.secret_file)
                .map(PathBuf::from);
            if secret_file.is_some() && format != WebhookFormat::Dingtalk {
                self.issue(
                    &format!("{at}.secret_file"),
                    "only DingTalk robots sign their requests; remove secret_file or set format = \"dingtalk\"",
                );
            }
            let events = match self.optional(&format!("{at}.events"), w.events) {
                None => Kind::ALL.to_vec(),
                Some(names) => {
                    let mut kinds = Vec::new();
                    for (k, n) in names.iter().enumerate() {
                        match Kind::parse(n) {
                            Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
                            Some(_) => {}
                            None => self.issue(
                                &format!("{at}.events[{k}]"),
                                format!(
                                    "{n:?} is not an event kind; use {}",
                                    Kind::ALL.map(Kind::label).join(", ")
                                ),
                            ),
                        }
                    }
                    if names.is_empty() {
                        self.issue(
                            &format!("{at}.events"),
                            "an empty list sends nothing; remove the webhook, or leave events out to send every kind",
                        );
                    }
                    kinds
                }
            };
            webhooks.push(WebhookConfig {
                name,
                url_file: url_file.unwrap_or_default(),
                format,
                secret_file,
                events,
            });
        }
        NotifyConfig { webhooks }
    }
}
