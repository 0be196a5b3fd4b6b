//! Where a bearer token may come from (RFC 6750, as MCP 2025-11-25 narrows it).

use std::fmt;

/// A bearer token. Its `Debug` and `Display` never show it (AUTH-18).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token taken from somewhere already checked (tests, introspection).
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token text, for validation only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What the request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials at all: answer 401 with a challenge (AUTH-05).
    None,
    /// Exactly one well-formed bearer token in the `Authorization` header.
    Bearer(Token),
    /// Malformed or ambiguous credentials: answer 400 `invalid_request` (AUTH-11).
    Invalid(InvalidRequest),
}

/// Why credentials are malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// More than one `Authorization` header.
    DuplicateHeader,
    /// `Authorization` uses another scheme or is not valid text.
    NotBearer,
    /// `Bearer` with nothing, or with characters outside RFC 6750's b64token.
    MalformedToken,
    /// A token in the URI query (AUTH-10: never accepted).
    TokenInQuery,
    /// A token in the header and in the query or body: sent two ways.
    TokenSentTwice,
}

impl InvalidRequest {
    /// A description safe to show the client.
    pub fn description(self) -> &'static str {
        match self {
            Self::DuplicateHeader => "more than one Authorization header",
            Self::NotBearer => "the Authorization scheme must be Bearer",
            Self::MalformedToken => "malformed bearer token",
            Self::TokenInQuery => "access tokens are not accepted in the URI query",
            Self::TokenSentTwice => "the access token was sent more than one way",
        }
    }
}

fn is_b64token(s: &str) -> bool {
    // RFC 6750 §2.1: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Reads the credentials of a request from its `Authorization` header values and
/// its URI query. A token in the query is never accepted (AUTH-10).
pub fn extract<'a>(
    authorization: impl IntoIterator<Item = &'a [u8]>,
    query: Option<&str>,
) -> Credentials {
    let in_query = query.is_some_and(|q| {
        q.split('&').any(|kv| {
            kv.split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("access_token"))
        })
    });
    let mut values = authorization.into_iter();
    let first = values.next();
    if values.next().is_some() {
        return Credentials::Invalid(InvalidRequest::DuplicateHeader);
    }
    let Some(raw) = first else {
        return if in_query {
            Credentials::Invalid(InvalidRequest::TokenInQuery)
        } else {
            Credentials::None
        };
    };
    if in_query {
        return Credentials::Invalid(InvalidRequest::TokenSentTwice);
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return Credentials::Invalid(InvalidRequest::NotBearer);
    };
    let text = text.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Invalid(InvalidRequest::NotBearer);
    }
    let token = rest.trim_start_matches(' ');
    if !is_b64token(token) {
        return Credentials::Invalid(InvalidRequest::MalformedToken);
    }
    Credentials::Bearer(Token(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(h: &[&str], q: Option<&str>) -> Credentials {
        extract(h.iter().map(|s| s.as_bytes()), q)
    }

    #[test]
    fn a_single_bearer_header_is_the_only_way() {
        assert!(
            matches!(ex(&["Bearer abc.def-ghi_~+/=="], None), Credentials::Bearer(t) if t.expose() == "abc.def-ghi_~+/==")
        );
        assert!(matches!(ex(&["bearer abc"], None), Credentials::Bearer(_)));
        assert_eq!(ex(&[], None), Credentials::None);
    }

    #[test]
    fn auth_10_tokens_in_the_query_are_refused() {
        assert_eq!(
            ex(&[], Some("access_token=abc")),
            Credentials::Invalid(InvalidRequest::TokenInQuery)
        );
        assert_eq!(
            ex(&[], Some("a=1&ACCESS_TOKEN=abc")),
            Credentials::Invalid(InvalidRequest::TokenInQuery)
        );
        assert_eq!(ex(&[], Some("not_access_token=1")), Credentials::None);
    }

    #[test]
    fn auth_11_malformed_or_duplicated_credentials_are_invalid_requests() {
        assert_eq!(
            ex(&["Bearer a", "Bearer b"], None),
            Credentials::Invalid(InvalidRequest::DuplicateHeader)
        );
        assert_eq!(
            ex(&["Bearer "], None),
            Credentials::Invalid(InvalidRequest::MalformedToken)
        );
        assert_eq!(
            ex(&["Bearer"], None),
            Credentials::Invalid(InvalidRequest::MalformedToken)
        );
        assert_eq!(
            ex(&["Bearer a b"], None),
            Credentials::Invalid(InvalidRequest::MalformedToken)
        );
        assert_eq!(
            ex(&["Basic dXNlcjpwdw=="], None),
            Credentials::Invalid(InvalidRequest::NotBearer)
        );
        assert_eq!(
            ex(&["Bearer a"], Some("access_token=a")),
            Credentials::Invalid(InvalidRequest::TokenSentTwice)
        );
    }

    #[test]
    fn auth_18_tokens_never_print() {
        let Credentials::Bearer(t) = ex(&["Bearer secret-token-value"], None) else {
            panic!()
        };
        assert!(!format!("{t:?}").contains("secret"));
        assert!(!format!("{:?}", Credentials::Bearer(t)).contains("secret"));
    }
}
