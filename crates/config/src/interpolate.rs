use crate::Env;

/// A `${…}` reference that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InterpolationError {
    /// `${NAME}` without a default, and `NAME` is not set.
    #[error("environment variable `{0}` is not set and has no default (write `${{{0}:-default}}`)")]
    Unset(String),
    /// `${` without a closing `}` or with an invalid name.
    #[error("malformed `${{…}}` reference: {0}")]
    Malformed(String),
}

/// Replaces `${NAME}` and `${NAME:-default}` in `s`; `$${` is a literal `${`.
///
/// `${NAME:-default}` uses the default when `NAME` is unset or empty, as in POSIX
/// shells. Values are inserted verbatim and never re-scanned.
pub fn interpolate(s: &str, env: &impl Env) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(InterpolationError::Malformed(format!("${{{body_start}")));
        };
        let body = &body_start[..end];
        let (name, default) = match body.find(":-") {
            Some(j) => (&body[..j], Some(&body[j + 2..])),
            None => (body, None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(InterpolationError::Malformed(format!("${{{body}}}")));
        }
        match (
            env(name).filter(|v| !v.is_empty() || default.is_none()),
            default,
        ) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(InterpolationError::Unset(name.to_owned())),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
