//! Prometheus metrics, served on the admin listener (`/metrics`, OpenMetrics text).
//!
//! Most figures are counted from the audit events themselves (`Metrics::observe`),
//! so a decision is counted exactly when it is recorded: requests decided by kind and
//! outcome, denials by reason, findings by rule, pin quarantines, authentication
//! outcomes, sessions. Upstream latency is measured around each forwarded request.
//! Every label takes values from a bounded set (methods, reasons, rule IDs, upstream
//! names); never a principal, a tool argument or a URI.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use palisade_audit::{Decision, Event};

#[cfg(test)]
mod tests {
    #[test]
    fn method_labels_are_a_bounded_set() {
        assert_eq!(super::bounded_method("tools/call"), "tools/call");
        assert_eq!(super::bounded_method("made/up/1"), "other");
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    method: String,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    status: u16,
}

/// The gateway's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    denials: Family<ReasonLabels, Counter>,
    findings: Family<RuleLabels, Counter>,
    auth: Family<OutcomeLabels, Counter>,
    pins_quarantined: Counter,
    policy_loads: Family<OutcomeLabels, Counter>,
    sessions_opened: Counter,
    sessions: Gauge,
    upstream_seconds: Family<UpstreamLabels, Histogram>,
    http_answers: Family<HttpLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("palisade");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Calls, reads and lists decided, by method and outcome",
            decisions.clone(),
        );
        let denials = Family::<ReasonLabels, Counter>::default();
        registry.register("denials", "Requests refused, by reason", denials.clone());
        let findings = Family::<RuleLabels, Counter>::default();
        registry.register(
            "inspection_findings",
            "Inspection findings in upstream answers and definitions, by rule and action",
            findings.clone(),
        );
        let auth = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "authentications",
            "Bearer token checks, by outcome",
            auth.clone(),
        );
        let pins_quarantined = Counter::default();
        registry.register(
            "pins_quarantined",
            "New or changed definitions withheld until approved",
            pins_quarantined.clone(),
        );
        let policy_loads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "policy_loads",
            "Policy files loaded, reloaded, or refused (the last good set stayed)",
            policy_loads.clone(),
        );
        let sessions_opened = Counter::default();
        registry.register(
            "sessions_opened",
            "Sessions opened",
            sessions_opened.clone(),
        );
        let sessions = Gauge::default();
        registry.register("sessions", "Live sessions", sessions.clone());
        let upstream_seconds = Family::<UpstreamLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
        });
        registry.register(
            "upstream_request_seconds",
            "Time from forwarding a request to its upstream's answer",
            upstream_seconds.clone(),
        );
        let http_answers = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_answers",
            "Answers of the MCP endpoint, by HTTP method and status (refusals at the edge \
             — 400, 401, 403, 404, 413, 429 — included)",
            http_answers.clone(),
        );
        Self {
            registry,
            http_answers,
            decisions,
            denials,
            findings,
            auth,
            pins_quarantined,
            policy_loads,
            sessions_opened,
            sessions,
            upstream_seconds,
        }
    }
}

/// A method name as a label: the MCP methods the gateway answers, anything else
/// `other` — a client may send any name, and labels must stay a bounded set.
fn bounded_method(method: &str) -> &str {
    const KNOWN: [&str; 13] = [
        "tools/call",
        "tools/list",
        "prompts/get",
        "prompts/list",
        "resources/read",
        "resources/list",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
        "ping",
        "initialize",
    ];
    KNOWN
        .iter()
        .copied()
        .find(|k| *k == method)
        .unwrap_or("other")
}

fn decision(d: Decision) -> String {
    match d {
        Decision::Allow => "allow".into(),
        Decision::Deny => "deny".into(),
    }
}

impl Metrics {
    /// Counts one answer of the MCP endpoint.
    pub(crate) fn http_answer(&self, method: &axum::http::Method, status: u16) {
        let method = match *method {
            axum::http::Method::GET => "GET",
            axum::http::Method::POST => "POST",
            axum::http::Method::DELETE => "DELETE",
            _ => "other",
        };
        self.http_answers
            .get_or_create(&HttpLabels { method, status })
            .inc();
    }

    /// Counts what one audit event says.
    pub(crate) fn observe(&self, e: &Event) {
        match e {
            Event::Call {
                method,
                decision: d,
                reason,
                ..
            } => self.call(method, *d, reason.as_deref()),
            Event::List { method, .. } => {
                self.decisions
                    .get_or_create(&DecisionLabels {
                        method: bounded_method(method).to_owned(),
                        decision: "allow".into(),
                    })
                    .inc();
            }
            Event::Auth { decision: d, .. } => {
                self.auth
                    .get_or_create(&OutcomeLabels {
                        outcome: decision(*d),
                    })
                    .inc();
                if *d == Decision::Deny {
                    self.denials
                        .get_or_create(&ReasonLabels {
                            reason: "authentication".into(),
                        })
                        .inc();
                }
            }
            Event::Finding { rules, action, .. } => {
                for rule in rules {
                    self.findings
                        .get_or_create(&RuleLabels {
                            rule: rule.clone(),
                            action: action.clone(),
                        })
                        .inc();
                }
            }
            Event::Pin { status, .. } if status == "quarantined" => {
                self.pins_quarantined.inc();
            }
            Event::SessionOpen { .. } => {
                self.sessions_opened.inc();
            }
            Event::Policy { outcome, .. } => {
                self.policy_loads
                    .get_or_create(&OutcomeLabels {
                        outcome: outcome.clone(),
                    })
                    .inc();
            }
            _ => {}
        }
    }

    /// Counts one call, read or prompt decision.
    pub(crate) fn call(&self, method: &str, d: Decision, reason: Option<&str>) {
        self.decisions
            .get_or_create(&DecisionLabels {
                method: bounded_method(method).to_owned(),
                decision: decision(d),
            })
            .inc();
        if let Some(r) = reason {
            // Reasons are the gateway's own fixed texts; a step-up names a scope from
            // the policy file, which the label leaves out.
            let r = if r.starts_with("insufficient scope") {
                "insufficient scope"
            } else {
                r
            };
            self.denials
                .get_or_create(&ReasonLabels {
                    reason: r.to_owned(),
                })
                .inc();
        }
    }

    /// Records how long upstream `name` took to answer.
    pub(crate) fn upstream_latency(&self, name: &str, seconds: f64) {
        self.upstream_seconds
            .get_or_create(&UpstreamLabels {
                upstream: name.to_owned(),
            })
            .observe(seconds);
    }

    /// The OpenMetrics text, with the live session count.
    pub(crate) fn render(&self, sessions: usize) -> String {
        self.sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
