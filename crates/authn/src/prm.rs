//! OAuth 2.0 Protected Resource Metadata (RFC 9728) for the MCP endpoint.

use serde::Serialize;

use crate::canonical::CanonicalUri;

/// Scope names that would grant everything; never advertised (AUTH-04).
const OVERBROAD: [&str; 5] = ["*", "all", "full-access", "full_access", "admin:*"];

/// The document served at both well-known locations (AUTH-01..04).
#[derive(Debug, Clone, Serialize)]
pub struct ProtectedResourceMetadata {
    /// Identical to the canonical MCP URI (AUTH-03).
    pub resource: String,
    /// The configured authorization servers (issuers).
    pub authorization_servers: Vec<String>,
    /// The minimal baseline scopes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// Only the header method is supported (AUTH-10).
    pub bearer_methods_supported: Vec<&'static str>,
    /// A human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

/// An over-broad scope in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope `{0}` is over-broad; advertise minimal scopes")]
pub struct OverbroadScope(pub String);

impl ProtectedResourceMetadata {
    /// Builds the document; refuses over-broad scopes.
    pub fn new(
        resource: &CanonicalUri,
        authorization_servers: Vec<String>,
        scopes: Vec<String>,
    ) -> Result<Self, OverbroadScope> {
        if let Some(bad) = scopes
            .iter()
            .find(|s| OVERBROAD.contains(&s.to_ascii_lowercase().as_str()))
        {
            return Err(OverbroadScope(bad.clone()));
        }
        Ok(Self {
            resource: resource.as_str().to_owned(),
            authorization_servers,
            scopes_supported: scopes,
            bearer_methods_supported: vec!["header"],
            resource_name: Some("Palisade MCP gateway".to_owned()),
        })
    }

    /// The two well-known paths for an MCP endpoint path such as `/mcp` (AUTH-02):
    /// the path-inserted one and the root one.
    pub fn well_known_paths(endpoint_path: &str) -> [String; 2] {
        let p = endpoint_path.trim_end_matches('/');
        [
            format!("/.well-known/oauth-protected-resource{p}"),
            "/.well-known/oauth-protected-resource".to_owned(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_01_03_04_document_shape() {
        let me = CanonicalUri::parse("https://gw.example.com/mcp").unwrap();
        let d = ProtectedResourceMetadata::new(
            &me,
            vec!["https://idp.example.com".into()],
            vec!["mcp:tools".into()],
        )
        .unwrap();
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["resource"], "https://gw.example.com/mcp");
        assert_eq!(v["authorization_servers"][0], "https://idp.example.com");
        assert_eq!(v["bearer_methods_supported"][0], "header");
        assert!(ProtectedResourceMetadata::new(&me, vec![], vec!["*".into()]).is_err());
        assert!(ProtectedResourceMetadata::new(&me, vec![], vec!["Full-Access".into()]).is_err());
    }

    #[test]
    fn auth_02_both_well_known_paths() {
        assert_eq!(
            ProtectedResourceMetadata::well_known_paths("/mcp"),
            [
                "/.well-known/oauth-protected-resource/mcp".to_owned(),
                "/.well-known/oauth-protected-resource".to_owned()
            ]
        );
    }
}
