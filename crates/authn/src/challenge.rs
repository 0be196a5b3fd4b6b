//! `WWW-Authenticate` values (RFC 6750 §3, MCP 2025-11-25 §Error Handling).

use crate::bearer::InvalidRequest;

fn quote(s: &str) -> String {
    // Parameter values are quoted-strings; drop what cannot appear in one.
    let clean: String = s
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    format!("\"{clean}\"")
}

fn scope_list(scopes: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for s in scopes {
        if !seen.contains(&s.as_str()) {
            seen.push(s);
        }
    }
    seen.join(" ")
}

/// 401 without credentials (AUTH-05): where the metadata is and which scopes to ask
/// for, and no `error` parameter (RFC 6750 says SHOULD NOT).
pub fn missing(resource_metadata: &str, scopes: &[String]) -> String {
    let mut v = format!("Bearer resource_metadata={}", quote(resource_metadata));
    if !scopes.is_empty() {
        v.push_str(&format!(", scope={}", quote(&scope_list(scopes))));
    }
    v
}

/// 401 for a token that failed validation (AUTH-06). The description is generic:
/// which check failed is for the log, not for the caller.
pub fn invalid_token(resource_metadata: &str) -> String {
    format!(
        "Bearer error=\"invalid_token\", error_description=\"the access token is not valid for this resource\", resource_metadata={}",
        quote(resource_metadata)
    )
}

/// 400 for malformed credentials (AUTH-10, AUTH-11).
pub fn invalid_request(resource_metadata: &str, why: InvalidRequest) -> String {
    format!(
        "Bearer error=\"invalid_request\", error_description={}, resource_metadata={}",
        quote(why.description()),
        quote(resource_metadata)
    )
}

/// 403 for a token that lacks scopes (AUTH-12). `scope` keeps the scopes the token
/// already has and adds the needed ones (AUTH-13), so one step-up suffices.
pub fn insufficient_scope(
    resource_metadata: &str,
    granted: &[String],
    needed: &[String],
) -> String {
    let all: Vec<String> = granted.iter().chain(needed).cloned().collect();
    format!(
        "Bearer error=\"insufficient_scope\", scope={}, resource_metadata={}, error_description=\"additional scope required\"",
        quote(&scope_list(&all)),
        quote(resource_metadata)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRM: &str = "https://gw.example.com/.well-known/oauth-protected-resource/mcp";

    #[test]
    fn auth_05_missing_credentials_challenge_has_no_error() {
        let v = missing(PRM, &["mcp:tools".into()]);
        assert_eq!(
            v,
            format!("Bearer resource_metadata=\"{PRM}\", scope=\"mcp:tools\"")
        );
        assert!(!v.contains("error="));
    }

    #[test]
    fn auth_12_13_step_up_keeps_granted_and_adds_needed() {
        let v = insufficient_scope(PRM, &["a".into(), "b".into()], &["b".into(), "c".into()]);
        assert!(v.contains("error=\"insufficient_scope\""));
        assert!(v.contains("scope=\"a b c\""), "{v}");
        assert!(v.contains(&format!("resource_metadata=\"{PRM}\"")));
    }

    #[test]
    fn quoting_cannot_break_out() {
        let v = missing("https://x/\"evil", &["a\"b".into()]);
        assert_eq!(v.matches('"').count(), 4, "{v}");
    }
}
