//! Cedar authorization for Palisade (OWASP MCP02/MCP07; AUTH-20, FEAT-06).
//!
//! [`Policies::parse`] reads a policy file and validates it, strictly, against the
//! shipped [`SCHEMA`]: a policy that names an unknown action, entity type or attribute
//! is refused with the place it is written. [`Policies::decide`] answers one request
//! — deny unless some policy permits and none forbids — and names the policies that
//! decided it (their `@id` annotation, or Cedar's `policyN`).
//!
//! Pure: no I/O. The gateway builds a [`Query`] per request; `palisade policy test`
//! builds one from its arguments.

#![forbid(unsafe_code)]

use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, EntityUid, PolicyId, PolicySet,
    Request, Schema, ValidationMode, Validator,
};
use serde_json::{Value, json};

/// The schema every policy is validated against (Cedar schema syntax).
pub const SCHEMA: &str = include_str!("palisade.cedarschema");

/// Why a policy file was refused, or a request could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file does not parse.
    #[error("the policies do not parse: {0}")]
    Parse(String),
    /// The file parses but does not fit the schema.
    #[error("the policies do not validate against the Palisade schema:\n{0}")]
    Invalid(String),
    /// The request could not be built (a bug, or a malformed argument).
    #[error("cannot evaluate: {0}")]
    Request(String),
}

/// What a policy decides about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A tool (`tools/call`, `tools/list`).
    Tool,
    /// A prompt (`prompts/get`, `prompts/list`).
    Prompt,
    /// A resource (`resources/read`, `resources/list`).
    Resource,
}

/// The caller.
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    /// The token's issuer (`local` when authentication is off).
    pub issuer: &'a str,
    /// The token's subject.
    pub subject: &'a str,
    /// Roles from the token.
    pub roles: &'a [String],
    /// Groups from the token.
    pub groups: &'a [String],
}

/// The tool, prompt or resource a request is about, with its operator-set
/// attributes.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// What it is.
    pub kind: Kind,
    /// The upstream that serves it.
    pub upstream: &'a str,
    /// The namespaced tool or prompt name, or the resource URI.
    pub name: &'a str,
    /// Operator-set risk (`normal` unless configured).
    pub risk: &'a str,
    /// Operator-set data class (`unclassified` unless configured).
    pub data_class: &'a str,
}

/// One authorization question.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// Who asks.
    pub caller: Caller<'a>,
    /// `tools/call`, `tools/list`, `prompts/get`, `prompts/list`, `resources/read` or
    /// `resources/list`.
    pub action: &'a str,
    /// About what.
    pub target: Target<'a>,
    /// The request context: `scopes`, `time`, `verdict`.
    pub context: Value,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allow: bool,
    /// The policies that decided it: the permits that allowed it, or the forbids that
    /// denied it; empty when nothing permitted it (deny by default).
    pub policies: Vec<String>,
    /// Errors met while evaluating (a policy that errors does not apply).
    pub errors: Vec<String>,
}

/// A validated policy set.
#[derive(Debug, Clone)]
pub struct Policies {
    set: PolicySet,
    schema: Schema,
}

fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(s, _)| s)
        .map_err(|e| PolicyError::Invalid(format!("the shipped schema: {e}")))
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, PolicyError> {
    EntityUid::from_str(&format!("Palisade::{kind}::{}", json!(id)))
        .map_err(|e| PolicyError::Request(e.to_string()))
}

impl Policies {
    /// Parses `text` (Cedar policy syntax) and validates it strictly against
    /// [`SCHEMA`].
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let set = PolicySet::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        let schema = schema()?;
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors: Vec<String> = result
                .validation_errors()
                .map(|e| format!("  policy {}: {e}", e.policy_id()))
                .collect();
            return Err(PolicyError::Invalid(errors.join("\n")));
        }
        Ok(Self { set, schema })
    }

    /// How many policies (and template links) the set holds.
    pub fn len(&self) -> usize {
        self.set.policies().count()
    }

    /// Whether the set is empty (which denies everything).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn name(&self, id: &PolicyId) -> String {
        self.set
            .policy(id)
            .and_then(|p| p.annotation("id"))
            .map_or_else(|| id.to_string(), str::to_owned)
    }

    /// Decides one request: allowed only if a policy permits it and none forbids it.
    pub fn decide(&self, q: &Query<'_>) -> Result<Decision, PolicyError> {
        let (kind, id_attr, id_value) = match q.target.kind {
            Kind::Tool => ("Tool", "name", q.target.name),
            Kind::Prompt => ("Prompt", "name", q.target.name),
            Kind::Resource => ("Resource", "uri", q.target.name),
        };
        let who = format!("{}|{}", q.caller.issuer, q.caller.subject);
        let parents: Vec<Value> = q
            .caller
            .roles
            .iter()
            .map(|r| json!({"type": "Palisade::Role", "id": r}))
            .chain(
                q.caller
                    .groups
                    .iter()
                    .map(|g| json!({"type": "Palisade::Group", "id": g})),
            )
            .collect();
        let mut entities = vec![
            json!({"uid": {"type": "Palisade::User", "id": who},
                   "attrs": {"issuer": q.caller.issuer, "subject": q.caller.subject},
                   "parents": parents}),
            json!({"uid": {"type": "Palisade::Upstream", "id": q.target.upstream},
                   "attrs": {"name": q.target.upstream, "risk": "normal", "data_class": "unclassified"},
                   "parents": []}),
        ];
        let mut attrs = json!({ id_attr: id_value });
        if q.target.kind == Kind::Tool {
            attrs["risk"] = json!(q.target.risk);
            attrs["data_class"] = json!(q.target.data_class);
        }
        entities.push(json!({
            "uid": {"type": format!("Palisade::{kind}"), "id": q.target.name},
            "attrs": attrs,
            "parents": [{"type": "Palisade::Upstream", "id": q.target.upstream}],
        }));
        for r in q.caller.roles {
            entities.push(
                json!({"uid": {"type": "Palisade::Role", "id": r}, "attrs": {}, "parents": []}),
            );
        }
        for g in q.caller.groups {
            entities.push(
                json!({"uid": {"type": "Palisade::Group", "id": g}, "attrs": {}, "parents": []}),
            );
        }
        let entities = Entities::from_json_value(Value::Array(entities), Some(&self.schema))
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let action = EntityUid::from_str(&format!("Palisade::Action::{}", json!(q.action)))
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let context = Context::from_json_value(q.context.clone(), Some((&self.schema, &action)))
            .map_err(|e| PolicyError::Request(format!("context: {e}")))?;
        let request = Request::new(
            uid("User", &who)?,
            action,
            uid(kind, q.target.name)?,
            context,
            Some(&self.schema),
        )
        .map_err(|e| PolicyError::Request(e.to_string()))?;
        let response = Authorizer::new().is_authorized(&request, &self.set, &entities);
        Ok(Decision {
            allow: response.decision() == CedarDecision::Allow,
            policies: response
                .diagnostics()
                .reason()
                .map(|id| self.name(id))
                .collect(),
            errors: response
                .diagnostics()
                .errors()
                .map(ToString::to_string)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests;
