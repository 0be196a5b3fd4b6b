//! Alerts to a webhook (issue: monitoring): an answer withheld or a definition
//! blocked by inspection, a high-severity finding in what was passed on, a new or
//! changed definition quarantined (pin drift), a refused policy reload and a burst of
//! authentication failures. Each alert is a JSON POST signed with
//! HMAC-SHA256 over `<timestamp>.<body>` (headers `X-Palisade-Timestamp` and
//! `X-Palisade-Signature: sha256=<hex>`), so the receiver can check it came from this
//! gateway and is fresh. Alerts are derived from the audit events, queued (bounded)
//! and sent by one task with retries; a call never waits for one.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::hmac;
use palisade_audit::{Decision, Event};
use serde_json::json;
use tokio::sync::mpsc;

/// Alerts waiting to be sent at most.
const QUEUE: usize = 1000;
/// Attempts per alert.
const ATTEMPTS: u32 = 3;

/// The alerting side of the gateway.
pub(crate) struct Alerts {
    tx: mpsc::Sender<String>,
    threshold: usize,
    window: Duration,
    failures: Mutex<VecDeque<Instant>>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts").finish_non_exhaustive()
    }
}

/// The signature header value for `body` sent at `timestamp` (Unix seconds).
pub(crate) fn signature(key: &hmac::Key, timestamp: u64, body: &str) -> String {
    let tag = hmac::sign(key, format!("{timestamp}.{body}").as_bytes());
    format!("sha256={}", palisade_audit::key::hex(tag.as_ref()))
}

impl Alerts {
    /// Starts the sender. `secret` keys the HMAC.
    pub(crate) fn start(
        config: &palisade_config::Alerts,
        secret: &[u8],
        http: reqwest::Client,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let url = config.webhook.clone();
        tokio::spawn(async move {
            while let Some(body) = rx.recv().await {
                for attempt in 1..=ATTEMPTS {
                    let ts = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let sent = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-palisade-timestamp", ts.to_string())
                        .header("x-palisade-signature", signature(&key, ts, &body))
                        .body(body.clone())
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => break,
                        other => {
                            let why =
                                other.map_or_else(|e| e.to_string(), |r| r.status().to_string());
                            tracing::warn!(error = %why, attempt, "alert webhook did not take an alert");
                            if attempt < ATTEMPTS {
                                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                            }
                        }
                    }
                }
            }
        });
        Self {
            tx,
            threshold: config.auth_failures,
            window: config.auth_window,
            failures: Mutex::new(VecDeque::new()),
        }
    }

    /// Raises the alerts one audit event calls for.
    pub(crate) fn observe(&self, e: &Event) {
        let kind = match e {
            Event::Finding { action, .. } if action == "block" => "inspection_block",
            // Passed on (redacted, spotlighted, stripped or flagged), but bad enough
            // that someone should look.
            Event::Finding {
                severity: Some(s), ..
            } if s == "high" || s == "critical" => "high_severity_finding",
            Event::Pin { status, .. } if status == "quarantined" => "pin_drift",
            Event::Policy { outcome, .. } if outcome == "refused" => "policy_reload_refused",
            Event::Auth {
                decision: Decision::Deny,
                ..
            } => {
                if !self.auth_burst() {
                    return;
                }
                "auth_failures"
            }
            _ => return,
        };
        let body = json!({
            "alert": kind,
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "event": e,
        })
        .to_string();
        if self.tx.try_send(body).is_err() {
            tracing::warn!(alert = kind, "alert queue full: an alert was not sent");
        }
    }

    /// Counts one authentication failure; `true` when it completes a burst (and the
    /// count starts over, so one burst raises one alert).
    fn auth_burst(&self) -> bool {
        let now = Instant::now();
        let mut f = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while f
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            f.pop_front();
        }
        f.push_back(now);
        if f.len() >= self.threshold {
            f.clear();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// Alerts that raise into the returned queue; a burst is 3 failures a minute.
    fn alerts() -> (Alerts, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(10);
        let a = Alerts {
            tx,
            threshold: 3,
            window: Duration::from_secs(60),
            failures: Mutex::new(VecDeque::new()),
        };
        (a, rx)
    }

    #[test]
    fn a_burst_of_authentication_failures_raises_one_alert() {
        let (a, mut rx) = alerts();
        let deny = Event::Auth {
            decision: Decision::Deny,
            principal: None,
            client: None,
            peer: None,
            reason: Some("invalid_token".into()),
        };
        a.observe(&deny);
        a.observe(&deny);
        assert!(rx.try_recv().is_err(), "two are not a burst");
        a.observe(&deny);
        let body: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(body["alert"], "auth_failures");
        assert_eq!(body["event"]["reason"], "invalid_token");
        a.observe(&deny);
        assert!(rx.try_recv().is_err(), "the count starts over");
        // Successes raise nothing.
        a.observe(&Event::Auth {
            decision: Decision::Allow,
            principal: Some("i|s".into()),
            client: None,
            peer: None,
            reason: None,
        });
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_refused_policy_reload_raises_an_alert() {
        let (a, mut rx) = alerts();
        let policy = |outcome: &str| Event::Policy {
            outcome: outcome.into(),
            source: "p.cedar".into(),
            sha256: "ab".into(),
            policies: 2,
            error: None,
            trigger: "change".into(),
        };
        a.observe(&policy("reloaded"));
        assert!(rx.try_recv().is_err());
        a.observe(&policy("refused"));
        let body: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(body["alert"], "policy_reload_refused");
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_and_body() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let sig = signature(&key, 1_700_000_000, "{}");
        // HMAC-SHA256("k", "1700000000.{}"), computed independently.
        let expect = hmac::sign(&key, b"1700000000.{}");
        assert_eq!(
            sig,
            format!("sha256={}", palisade_audit::key::hex(expect.as_ref()))
        );
        assert!(
            hmac::verify(
                &key,
                b"1700000000.{}",
                &palisade_audit::key::unhex(&sig[7..]).unwrap()
            )
            .is_ok()
        );
    }
}
