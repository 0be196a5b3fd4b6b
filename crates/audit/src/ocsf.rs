//! Audit records as OCSF events (Open Cybersecurity Schema Framework 1.3), the shape
//! Microsoft Sentinel, Splunk and Elastic ingest without custom parsing.
//!
//! | record | OCSF class |
//! |---|---|
//! | `auth` | Authentication (3002), Logon |
//! | `session_open` / `session_close` | Authentication (3002), Logon / Logoff |
//! | `call`, `list` | API Activity (6003): Read for lists and reads, Other for calls |
//! | `finding`, a quarantined `pin` | Detection Finding (2004), Create |
//! | `egress` | Network Activity (4001), Open / Refuse |
//! | `refusals_counted` | the class of what it counts (3002 or 6003), with `count` |
//! | everything else | Base Event (0) |
//!
//! Every event carries the record's `seq` and hash in `metadata`, and the record's
//! event itself under `unmapped.palisade`, so nothing is lost in the mapping.

use serde_json::{Value, json};

/// OCSF `status_id`.
const SUCCESS: u8 = 1;
const FAILURE: u8 = 2;

/// Maps one record line to an OCSF event; `None` if the line is not a record.
pub fn from_record(line: &str, product_version: &str) -> Option<Value> {
    let r: Value = serde_json::from_str(line).ok()?;
    let e = r.get("event")?;
    let kind = e.get("type")?.as_str()?;
    let time = r
        .get("ts")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
    let denied = s("decision") == "deny";
    let status = if denied { FAILURE } else { SUCCESS };
    // (class_uid, category_uid, activity_id, severity_id, extra fields)
    let (class, category, activity, severity, mut out) = match kind {
        "auth" => (
            3002,
            3,
            1,
            if denied { 3 } else { 1 },
            json!({
                "status_id": status,
                "status_detail": e.get("reason"),
                "user": {"uid": e.get("principal")},
                "auth_protocol": "OAuth 2.0",
            }),
        ),
        "session_open" | "session_close" => (
            3002,
            3,
            if kind == "session_open" { 1 } else { 2 },
            1,
            json!({
                "status_id": SUCCESS,
                "user": {"uid": e.get("principal")},
                "session": {"uid": e.get("session")},
                "status_detail": e.get("reason"),
            }),
        ),
        "call" | "list" => {
            let method = s("method");
            let read = kind == "list" || method == "resources/read" || method == "prompts/get";
            (
                6003,
                6,
                if read { 2 } else { 99 },
                if denied { 3 } else { 1 },
                json!({
                    "status_id": status,
                    "status_detail": e.get("reason"),
                    "actor": {
                        "user": {"uid": e.get("principal")},
                        "session": {"uid": e.get("session")},
                    },
                    "api": {
                        "operation": method,
                        "service": {"name": e.get("upstream")},
                    },
                    "resources": e.get("target").map(|t| json!([{"name": t}])),
                }),
            )
        }
        "finding" => (
            2004,
            2,
            1,
            // The findings' own severity where the record has it (OCSF: 2 low … 5
            // critical); records of earlier builds by what was done.
            match s("severity") {
                "low" => 2,
                "medium" => 3,
                "high" => 4,
                "critical" => 5,
                _ if s("action") == "block" => 4,
                _ => 3,
            },
            json!({
                "finding_info": {
                    "title": format!("inspection: {}", rules(e)),
                    "types": e.get("rules"),
                    "uid": r.get("hash"),
                },
                "resources": [{"name": e.get("subject"), "type": e.get("location")}],
                "disposition": s("action"),
            }),
        ),
        "pin" if s("status") == "quarantined" => (
            2004,
            2,
            1,
            3,
            json!({
                "finding_info": {
                    "title": format!("{} definition new or changed: {}", s("kind"), s("name")),
                    "uid": r.get("hash"),
                },
                "resources": [{"name": e.get("name"), "type": e.get("kind")}],
                "disposition": "quarantined",
            }),
        ),
        "egress" => {
            // OCSF Network Activity: Open (1) or Refuse (5), outbound.
            let target = s("target");
            let (host, port) = target
                .rsplit_once(':')
                .map_or((target, None), |(h, p)| (h, p.parse::<u16>().ok()));
            (
                4001,
                4,
                if denied { 5 } else { 1 },
                if denied { 3 } else { 1 },
                json!({
                    "status_id": status,
                    "status_detail": e.get("reason"),
                    "connection_info": {"direction_id": 2},
                    "src_endpoint": {"name": e.get("upstream")},
                    "dst_endpoint": {
                        "hostname": host.trim_start_matches('[').trim_end_matches(']'),
                        "port": port,
                    },
                }),
            )
        }
        "refusals_counted" => {
            // The class of what was refused, with OCSF's `count` of events it stands for.
            let auth = s("of") == "auth";
            let (source_key, source) = if auth {
                ("src_endpoint", json!({"ip": e.get("source")}))
            } else {
                ("actor", json!({"user": {"uid": e.get("source")}}))
            };
            let mut out = json!({
                "status_id": FAILURE,
                "status_detail": e.get("reason"),
                "count": e.get("count"),
            });
            out[source_key] = source;
            if auth {
                (3002, 3, 1, 3, out)
            } else {
                (6003, 6, 99, 3, out)
            }
        }
        _ => (0, 0, 0, 1, json!({})),
    };
    let type_uid = class * 100 + activity;
    if let Some(o) = out.as_object_mut() {
        o.retain(|_, v| !v.is_null());
        o.insert("class_uid".into(), json!(class));
        o.insert("category_uid".into(), json!(category));
        o.insert("activity_id".into(), json!(activity));
        o.insert("type_uid".into(), json!(type_uid));
        o.insert("severity_id".into(), json!(severity));
        o.insert("time".into(), json!(time));
        o.insert(
            "metadata".into(),
            json!({
                "version": "1.3.0",
                "product": {"name": "Palisade", "vendor_name": "Palisade", "version": product_version},
                "log_name": "audit",
                "sequence": r.get("seq"),
                "uid": r.get("hash"),
            }),
        );
        o.insert("unmapped".into(), json!({"palisade": e}));
    }
    Some(out)
}

fn rules(e: &Value) -> String {
    e.get("rules")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::chain::encode;
    use crate::event::{Decision, Event};

    fn line(e: &Event) -> String {
        encode(7, "2026-11-25T10:00:00.000Z", crate::chain::GENESIS, e)
            .unwrap()
            .0
    }

    #[test]
    fn obs_01_calls_auth_and_findings_map_to_their_ocsf_classes() {
        let call = Event::Call {
            session: "ab".into(),
            principal: "https://idp|alice".into(),
            client: Some("ide".into()),
            method: "tools/call".into(),
            upstream: Some("files".into()),
            target: "files__write".into(),
            arguments_hmac_sha256: None,
            arguments: None,
            decision: Decision::Deny,
            reason: Some("policy".into()),
            policies: vec!["no-writes".into()],
            approved_by: None,
        };
        let o = from_record(&line(&call), "1").unwrap();
        assert_eq!(o["class_uid"], 6003);
        assert_eq!(o["type_uid"], 600_399);
        assert_eq!(o["status_id"], 2);
        assert_eq!(o["actor"]["user"]["uid"], "https://idp|alice");
        assert_eq!(o["api"]["service"]["name"], "files");
        assert_eq!(o["time"], 1_795_600_800_000_u64);
        assert_eq!(o["metadata"]["sequence"], 7);
        assert_eq!(o["unmapped"]["palisade"]["target"], "files__write");

        let auth = Event::Auth {
            decision: Decision::Allow,
            principal: Some("iss|bob".into()),
            client: None,
            peer: None,
            reason: None,
        };
        let o = from_record(&line(&auth), "1").unwrap();
        assert_eq!(
            (o["class_uid"].clone(), o["status_id"].clone()),
            (json!(3002), json!(1))
        );
        assert!(o.get("status_detail").is_none(), "nulls are left out");

        let finding = Event::Finding {
            upstream: "web".into(),
            subject: "web__fetch".into(),
            location: "tools/call".into(),
            rules: vec!["INJ-OVERRIDE".into()],
            action: "block".into(),
            severity: None,
        };
        let o = from_record(&line(&finding), "1").unwrap();
        assert_eq!(o["class_uid"], 2004);
        assert_eq!(o["severity_id"], 4);
        let critical = Event::Finding {
            upstream: "web".into(),
            subject: "web__fetch".into(),
            location: "tools/call".into(),
            rules: vec!["SEC-PRIVATE-KEY".into()],
            action: "rewrite".into(),
            severity: Some("critical".into()),
        };
        assert_eq!(
            from_record(&line(&critical), "1").unwrap()["severity_id"],
            5
        );
        assert!(
            o["finding_info"]["title"]
                .as_str()
                .unwrap()
                .contains("INJ-OVERRIDE")
        );
        assert!(from_record("not json", "1").is_none());
    }

    #[test]
    fn obs_01_egress_decisions_map_to_network_activity() {
        let refused = Event::Egress {
            upstream: "box".into(),
            target: "169.254.169.254:80".into(),
            decision: Decision::Deny,
            reason: Some("not in allow_hosts".into()),
            addresses: Vec::new(),
        };
        let o = from_record(&line(&refused), "1").unwrap();
        assert_eq!(o["class_uid"], 4001);
        assert_eq!(o["type_uid"], 400_105, "Network Activity: Refuse");
        assert_eq!(o["dst_endpoint"]["hostname"], "169.254.169.254");
        assert_eq!(o["dst_endpoint"]["port"], 80);
        assert_eq!(o["src_endpoint"]["name"], "box");
        assert_eq!(o["status_detail"], "not in allow_hosts");
        let opened = Event::Egress {
            upstream: "box".into(),
            target: "[2001:db8::1]:443".into(),
            decision: Decision::Allow,
            reason: None,
            addresses: vec!["[2001:db8::1]:443".into()],
        };
        let o = from_record(&line(&opened), "1").unwrap();
        assert_eq!(o["type_uid"], 400_101, "Network Activity: Open");
        assert_eq!(o["dst_endpoint"]["hostname"], "2001:db8::1");
        assert_eq!(o["dst_endpoint"]["port"], 443);
    }

    #[test]
    fn obs_01_counted_refusals_map_to_the_class_of_what_they_count() {
        let counted = |of: &str, source: &str| Event::RefusalsCounted {
            of: of.into(),
            source: source.into(),
            reason: "invalid_token".into(),
            count: 4_321,
            window_seconds: 60,
        };
        let o = from_record(&line(&counted("auth", "203.0.113.9")), "1").unwrap();
        assert_eq!(o["type_uid"], 300_201, "Authentication: Logon");
        assert_eq!(o["status_id"], 2);
        assert_eq!(o["count"], 4_321);
        assert_eq!(o["src_endpoint"]["ip"], "203.0.113.9");
        let o = from_record(&line(&counted("call", "https://idp|mallory")), "1").unwrap();
        assert_eq!(o["type_uid"], 600_399, "API Activity: Other");
        assert_eq!(o["count"], 4_321);
        assert_eq!(o["actor"]["user"]["uid"], "https://idp|mallory");
    }
}
