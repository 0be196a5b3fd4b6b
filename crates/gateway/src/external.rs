//! An external prompt-injection detector, asked over HTTPS about the answers the
//! built-in rules let through: Azure AI Content Safety Prompt Shields, or a generic
//! webhook. It has a deadline, and the operator chooses whether a failure withholds the
//! answer (fail-closed) or lets it pass (fail-open).

use std::time::Duration;

use palisade_config::{External, ExternalKind, OnExternalError};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};

/// The largest detector response read.
const MAX_RESPONSE: usize = 1024 * 1024;
/// Prompt Shields takes at most this many documents and characters per request.
const SHIELD_DOCS: usize = 5;
const SHIELD_CHARS: usize = 10_000;

/// A configured external detector.
#[derive(Debug)]
pub(crate) struct ExternalDetector {
    kind: ExternalKind,
    url: reqwest::Url,
    key: Option<(HeaderName, HeaderValue)>,
    timeout: Duration,
    pub(crate) on_error: OnExternalError,
    client: reqwest::Client,
}

impl ExternalDetector {
    pub(crate) fn new(
        cfg: &External,
        key: Option<&[u8]>,
        client: reqwest::Client,
    ) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(&cfg.url).map_err(|e| format!("inspection.external.url: {e}"))?;
        let key = match key {
            None => None,
            Some(k) => {
                let name = HeaderName::from_bytes(cfg.header.as_bytes())
                    .map_err(|_| "inspection.external.header is not a header name")?;
                let prefixed;
                let bytes = if cfg.kind == ExternalKind::Webhook && cfg.header == "authorization" {
                    prefixed = [b"Bearer ".as_slice(), k].concat();
                    prefixed.as_slice()
                } else {
                    k
                };
                let mut value = HeaderValue::from_bytes(bytes)
                    .map_err(|_| "the detector key is not a header value")?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        Ok(Self {
            kind: cfg.kind,
            url,
            key,
            timeout: cfg.timeout,
            on_error: cfg.on_error,
            client,
        })
    }

    /// Whether the detector finds an attack in `texts`. `Err` when it cannot say.
    pub(crate) async fn check(&self, texts: &[&str], source: &str) -> Result<bool, String> {
        let fut = async {
            match self.kind {
                ExternalKind::Webhook => {
                    let v = self
                        .post(&json!({"texts": texts, "source": source}))
                        .await?;
                    v.get("malicious")
                        .and_then(Value::as_bool)
                        .ok_or_else(|| "the webhook's answer has no boolean `malicious`".to_owned())
                }
                ExternalKind::PromptShields => {
                    for batch in shield_batches(texts) {
                        let v = self
                            .post(&json!({"userPrompt": "", "documents": batch}))
                            .await?;
                        let docs = v
                            .get("documentsAnalysis")
                            .and_then(Value::as_array)
                            .ok_or("the Prompt Shields answer has no documentsAnalysis")?;
                        let hit = docs.iter().any(|d| {
                            d.get("attackDetected").and_then(Value::as_bool) == Some(true)
                        }) || v.pointer("/userPromptAnalysis/attackDetected")
                            == Some(&Value::Bool(true));
                        if hit {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                }
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }

    async fn post(&self, body: &Value) -> Result<Value, String> {
        let mut req = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some((name, value)) = &self.key {
            req = req.header(name.clone(), value.clone());
        }
        let mut resp = req.send().await.map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the detector answered {}", resp.status()));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if buf.len() + chunk.len() > MAX_RESPONSE {
                return Err("the detector's answer is too large".into());
            }
            buf.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&buf).map_err(|e| format!("the detector's answer is not JSON: {e}"))
    }
}

/// The texts cut into Prompt Shields requests: at most 5 documents and 10,000
/// characters per request.
fn shield_batches<'a>(texts: &[&'a str]) -> Vec<Vec<&'a str>> {
    let mut out: Vec<Vec<&'a str>> = vec![Vec::new()];
    let mut chars = 0;
    for t in texts {
        let mut rest: &'a str = t;
        while !rest.is_empty() {
            let room = SHIELD_CHARS - chars;
            let cut = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
            let (piece, tail) = rest.split_at(cut);
            if let Some(b) = out.last_mut() {
                b.push(piece);
            }
            chars += piece.chars().count();
            rest = tail;
            let full = out.last().is_some_and(|b| b.len() >= SHIELD_DOCS) || chars >= SHIELD_CHARS;
            if full {
                out.push(Vec::new());
                chars = 0;
            }
        }
    }
    out.retain(|b| !b.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_prompt_shields_limits() {
        let long = "a".repeat(25_000);
        let texts = [long.as_str(), "b", "c"];
        let b = shield_batches(&texts);
        assert!(b.iter().all(|x| x.len() <= SHIELD_DOCS));
        assert!(
            b.iter()
                .all(|x| x.iter().map(|t| t.chars().count()).sum::<usize>() <= SHIELD_CHARS)
        );
        let total: usize = b.iter().flatten().map(|t| t.len()).sum();
        assert_eq!(total, 25_002, "nothing is dropped");
        let seven: Vec<&str> = vec!["x"; 7];
        assert_eq!(shield_batches(&seven).len(), 2);
    }
}
