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

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity,
    EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet, PrincipalConstraint, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};

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
/// attributes and its upstream's.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// What it is.
    pub kind: Kind,
    /// The upstream that serves it.
    pub upstream: &'a str,
    /// The namespaced tool or prompt name, or the resource URI.
    pub name: &'a str,
    /// Operator-set risk of the tool, prompt or resource (`normal` unless configured).
    pub risk: &'a str,
    /// Operator-set data class of the tool, prompt or resource (`unclassified` unless
    /// configured).
    pub data_class: &'a str,
    /// The upstream's risk.
    pub upstream_risk: &'a str,
    /// The upstream's data class.
    pub upstream_data_class: &'a str,
}

/// The request context policies see as `context`.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The access token's scopes (empty when authentication is off).
    pub scopes: &'a [String],
    /// Unix seconds at the gateway.
    pub time: i64,
    /// `clean`, or `flagged` when inspection found something in the target's
    /// definition that the operator's actions let through.
    pub verdict: &'a str,
    /// The OAuth client the token was issued to (`""` when unknown).
    pub client: &'a str,
    /// The caller's IP address as the gateway sees it (`""` when unknown).
    pub address: &'a str,
    /// The tools and prompts this session has been allowed to use so far
    /// (namespaced names), for policies about sequences (a send after a secret read).
    pub called: &'a [String],
    /// Seconds since the session was opened.
    pub session_seconds: i64,
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
    /// The request context.
    pub context: Facts<'a>,
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
    /// Whether a permit that allowed it is annotated `@approval("required")`: the
    /// request waits for a person's approval (FEAT-08).
    pub approval: bool,
}

/// A validated policy set.
#[derive(Debug, Clone)]
pub struct Policies {
    set: PolicySet,
    /// Permits annotated `@approval("required")`.
    approval: HashSet<PolicyId>,
    /// Scopes named by `@step_up("…")` annotations on permits, sorted.
    step_up: Vec<String>,
    types: Types,
    /// Each policy's name: its `@id`, else Cedar's ID (reading an annotation parses).
    names: HashMap<PolicyId, String>,
    /// The `context` attributes some policy reads.
    reads: ContextReads,
    /// Entities of recent requests, by caller and target.
    entities: Bounded<Arc<Entities>>,
    /// Recent decisions, by everything they depend on.
    decisions: Bounded<Decision>,
}

/// A cache of recent values, by a key that encodes everything they depend on; bounded
/// (emptied when full).
#[derive(Debug)]
struct Bounded<V>(Mutex<HashMap<String, V>>);

/// Entries a cache keeps at most.
const CACHED: usize = 4096;

impl<V> Default for Bounded<V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<V> Clone for Bounded<V> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<V: Clone> Bounded<V> {
    fn get(&self, key: &str) -> Option<V> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn put(&self, key: String, v: V) {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.len() >= CACHED {
            m.clear();
        }
        m.insert(key, v);
    }
}

/// Which attributes of `context` the policies read. A decision depends on the caller,
/// the action, the target and these attributes only, so a decision cached under a key
/// of exactly those is the decision Cedar would make again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ContextReads {
    /// Some policy uses `context` other than by reading a named attribute.
    all: bool,
    attrs: HashSet<String>,
}

impl ContextReads {
    /// Walks every policy and template in Cedar's JSON form. Only `context.attr` and
    /// `context has attr` count as reading one attribute; any other use of `context`,
    /// or a policy that cannot be shown as JSON, counts as reading all of them.
    fn of(set: &PolicySet) -> Self {
        let mut r = Self::default();
        let forms = set
            .policies()
            .map(cedar_policy::Policy::to_json)
            .map(|j| j.map_err(drop))
            .chain(
                set.templates()
                    .map(cedar_policy::Template::to_json)
                    .map(|j| j.map_err(drop)),
            );
        for form in forms {
            let Ok(v) = form else {
                r.all = true;
                continue;
            };
            let mut one = Self::default();
            one.walk(&v);
            // A policy that mentions `context` in a shape the walk did not recognise
            // (a later format, say) reads everything: coarser, never wrong.
            if one == Self::default() && v.to_string().contains("\"context\"") {
                one.all = true;
            }
            r.all |= one.all;
            r.attrs.extend(one.attrs);
        }
        r
    }

    fn walk(&mut self, v: &serde_json::Value) {
        use serde_json::Value;
        let is_context = |v: Option<&Value>| {
            v.and_then(|v| v.get("Var")).and_then(Value::as_str) == Some("context")
        };
        match v {
            Value::Object(m) => {
                if is_context(Some(v)) {
                    self.all = true;
                    return;
                }
                for (op, inner) in m {
                    if matches!(op.as_str(), "." | "has") && is_context(inner.get("left")) {
                        match inner.get("attr").and_then(Value::as_str) {
                            Some(a) => {
                                self.attrs.insert(a.to_owned());
                            }
                            None => self.all = true,
                        }
                    } else {
                        self.walk(inner);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| self.walk(x)),
            _ => {}
        }
    }

    fn reads(&self, attr: &str) -> bool {
        self.all || self.attrs.contains(attr)
    }
}

/// Everything the entities of `q` are built from, each part length-prefixed, so no
/// two different requests (whatever their names contain) share a key.
fn cache_key(q: &Query<'_>) -> String {
    use std::fmt::Write as _;
    let c = &q.caller;
    let t = &q.target;
    let kind = match t.kind {
        Kind::Tool => "t",
        Kind::Prompt => "p",
        Kind::Resource => "r",
    };
    let mut k = String::with_capacity(160);
    let fixed = [
        kind,
        c.issuer,
        c.subject,
        t.upstream,
        t.name,
        t.risk,
        t.data_class,
        t.upstream_risk,
        t.upstream_data_class,
    ];
    let _ = write!(k, "{}/{}/", c.roles.len(), c.groups.len());
    for part in fixed
        .into_iter()
        .chain(c.roles.iter().map(String::as_str))
        .chain(c.groups.iter().map(String::as_str))
    {
        let _ = write!(k, "{}:{part}", part.len());
    }
    k
}

/// The entity key of `q` followed by its action and the context attributes the
/// policies read, each length-prefixed like the rest.
fn decision_key(entity_key: &str, q: &Query<'_>, reads: &ContextReads) -> String {
    use std::fmt::Write as _;
    let c = &q.context;
    let mut k = String::with_capacity(entity_key.len() + 64);
    k.push_str(entity_key);
    let _ = write!(k, "|{}:{}", q.action.len(), q.action);
    let mut part = |name: &str, value: &str| {
        if reads.reads(name) {
            let _ = write!(k, "|{name}={}:{value}", value.len());
        }
    };
    part("verdict", c.verdict);
    part("client", c.client);
    part("address", c.address);
    for (name, n) in [("time", c.time), ("session_seconds", c.session_seconds)] {
        if reads.reads(name) {
            let _ = write!(k, "|{name}={n}");
        }
    }
    for (name, set) in [("scopes", c.scopes), ("called", c.called)] {
        if reads.reads(name) {
            let _ = write!(k, "|{name}#{}", set.len());
            for v in set {
                let _ = write!(k, "{}:{v}", v.len());
            }
        }
    }
    k
}

fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(s, _)| s)
        .map_err(|e| PolicyError::Invalid(format!("the shipped schema: {e}")))
}

/// The schema's entity type names, parsed once (parsing one costs microseconds).
#[derive(Debug, Clone)]
struct Types {
    user: EntityTypeName,
    role: EntityTypeName,
    group: EntityTypeName,
    upstream: EntityTypeName,
    tool: EntityTypeName,
    prompt: EntityTypeName,
    resource: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Result<Self, PolicyError> {
        let t = |k: &str| {
            EntityTypeName::from_str(&format!("Palisade::{k}"))
                .map_err(|e| PolicyError::Invalid(format!("the shipped schema: {e}")))
        };
        Ok(Self {
            user: t("User")?,
            role: t("Role")?,
            group: t("Group")?,
            upstream: t("Upstream")?,
            tool: t("Tool")?,
            prompt: t("Prompt")?,
            resource: t("Resource")?,
            action: t("Action")?,
        })
    }
}

fn uid(t: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(t.clone(), EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

/// Reads the annotations Palisade gives meaning to, refusing malformed ones: a typo
/// in `@approval` must not silently let a call through unapproved.
fn annotations(set: &PolicySet) -> Result<(HashSet<PolicyId>, Vec<String>), PolicyError> {
    let mut approval = HashSet::new();
    let mut step_up = Vec::new();
    let mut bad = Vec::new();
    for p in set.policies() {
        let name = p.annotation("id").unwrap_or(p.id().as_ref()).to_owned();
        let permit = p.effect() == Effect::Permit;
        for (key, value) in p.annotations() {
            match key {
                "approval" if !permit => bad.push(format!(
                    "  policy {name}: @approval belongs on a permit (a forbid already denies)"
                )),
                "approval" if value != "required" => bad.push(format!(
                    "  policy {name}: @approval(\"{value}\") is not understood; write @approval(\"required\")"
                )),
                "approval" => {
                    approval.insert(p.id().clone());
                }
                "step_up" if !permit => bad.push(format!(
                    "  policy {name}: @step_up belongs on a permit"
                )),
                "step_up"
                    if value.is_empty()
                        || !value.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') =>
                {
                    bad.push(format!(
                        "  policy {name}: @step_up(\"{value}\") is not one OAuth scope"
                    ));
                }
                "step_up" => step_up.push(value.to_owned()),
                _ => {}
            }
        }
    }
    if !bad.is_empty() {
        return Err(PolicyError::Invalid(bad.join("\n")));
    }
    step_up.sort();
    step_up.dedup();
    Ok((approval, step_up))
}

impl Policies {
    /// Parses `text` (Cedar policy syntax) and validates it strictly against
    /// [`SCHEMA`], and the annotations Palisade reads (`@approval`, `@step_up`).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let set = PolicySet::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        let schema = schema()?;
        // Requests are built here from the same schema's shapes, so only policies are
        // validated (validating each request again costs microseconds per decision).
        let result = Validator::new(schema).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors: Vec<String> = result
                .validation_errors()
                .map(|e| format!("  policy {}: {e}", e.policy_id()))
                .collect();
            return Err(PolicyError::Invalid(errors.join("\n")));
        }
        let (approval, step_up) = annotations(&set)?;
        let reads = ContextReads::of(&set);
        let names = set
            .policies()
            .map(|p| {
                (
                    p.id().clone(),
                    p.annotation("id").unwrap_or(p.id().as_ref()).to_owned(),
                )
            })
            .collect();
        Ok(Self {
            set,
            approval,
            step_up,
            types: Types::new()?,
            names,
            reads,
            entities: Bounded::default(),
            decisions: Bounded::default(),
        })
    }

    /// How many policies (and template links) the set holds.
    pub fn len(&self) -> usize {
        self.set.policies().count()
    }

    /// Whether the set is empty (which denies everything).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scopes some permit names with `@step_up`: a caller denied for lack of one
    /// is told to step up to it (AUTH-12).
    pub fn step_up_scopes(&self) -> &[String] {
        &self.step_up
    }

    /// How many permits hold their requests for approval.
    pub fn approvals(&self) -> usize {
        self.approval.len()
    }

    fn name(&self, id: &PolicyId) -> String {
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// Decides one request: allowed only if a policy permits it and none forbids it.
    ///
    /// The same question (same caller, action, target and the context attributes the
    /// policies read) gets the answer remembered from the last time it was asked.
    pub fn decide(&self, q: &Query<'_>) -> Result<Decision, PolicyError> {
        let key = cache_key(q);
        let dkey = decision_key(&key, q, &self.reads);
        if let Some(d) = self.decisions.get(&dkey) {
            return Ok(d);
        }
        let d = self.evaluate(q, key)?;
        self.decisions.put(dkey, d.clone());
        Ok(d)
    }

    /// Asks Cedar.
    fn evaluate(&self, q: &Query<'_>, key: String) -> Result<Decision, PolicyError> {
        let ty = &self.types;
        let (kind, id_attr) = match q.target.kind {
            Kind::Tool => (&ty.tool, "name"),
            Kind::Prompt => (&ty.prompt, "name"),
            Kind::Resource => (&ty.resource, "uri"),
        };
        let who = format!("{}|{}", q.caller.issuer, q.caller.subject);
        let user = uid(&ty.user, &who);
        let target = uid(kind, q.target.name);
        // The entities of a request depend on the caller and the target only; they are
        // kept for the next request of the same pair (building them, with Cedar's
        // transitive closure, is about half of a decision).
        let cached = self.entities.get(&key);
        let entities = match cached {
            Some(e) => e,
            None => {
                // Roles and groups need no entities of their own: `principal in
                // Role::"x"` reads the principal's parents, and roles and groups have
                // no parents.
                let parents: HashSet<EntityUid> =
                    [(&ty.role, q.caller.roles), (&ty.group, q.caller.groups)]
                        .into_iter()
                        .flat_map(|(t, names)| names.iter().map(move |n| uid(t, n)))
                        .collect();
                let upstream = uid(&ty.upstream, q.target.upstream);
                let attrs = vec![
                    (id_attr, string(q.target.name)),
                    ("risk", string(q.target.risk)),
                    ("data_class", string(q.target.data_class)),
                ];
                let list = vec![
                    entity(
                        user.clone(),
                        [
                            ("issuer", string(q.caller.issuer)),
                            ("subject", string(q.caller.subject)),
                        ],
                        parents,
                    )?,
                    entity(
                        upstream.clone(),
                        [
                            ("name", string(q.target.upstream)),
                            ("risk", string(q.target.upstream_risk)),
                            ("data_class", string(q.target.upstream_data_class)),
                        ],
                        HashSet::new(),
                    )?,
                    entity(target.clone(), attrs, HashSet::from([upstream]))?,
                ];
                let e = Arc::new(
                    Entities::from_entities(list, None)
                        .map_err(|e| PolicyError::Request(e.to_string()))?,
                );
                self.entities.put(key, Arc::clone(&e));
                e
            }
        };
        let action = uid(&ty.action, q.action);
        let c = &q.context;
        let context = Context::from_pairs([
            (
                "scopes".to_owned(),
                RestrictedExpression::new_set(c.scopes.iter().map(|s| string(s))),
            ),
            ("time".to_owned(), RestrictedExpression::new_long(c.time)),
            ("verdict".to_owned(), string(c.verdict)),
            ("client".to_owned(), string(c.client)),
            ("address".to_owned(), string(c.address)),
            (
                "called".to_owned(),
                RestrictedExpression::new_set(c.called.iter().map(|s| string(s))),
            ),
            (
                "session_seconds".to_owned(),
                RestrictedExpression::new_long(c.session_seconds),
            ),
        ])
        .map_err(|e| PolicyError::Request(format!("context: {e}")))?;
        let request = Request::new(user, action, target, context, None)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let response = Authorizer::new().is_authorized(&request, &self.set, entities.as_ref());
        let allow = response.decision() == CedarDecision::Allow;
        Ok(Decision {
            allow,
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
            approval: allow
                && response
                    .diagnostics()
                    .reason()
                    .any(|id| self.approval.contains(id)),
        })
    }

    /// Whether some permit could allow `caller`'s `action` on some target: one whose
    /// scope names the action and a principal the caller is, whatever its conditions
    /// say. Forbids are not read, so `true` only means "not ruled out"; `false` means
    /// that no target and no context gets the action allowed for this caller (the
    /// gateway then leaves the capability out of `initialize`, LIFE-07). The schema
    /// has no action groups, so an action is `in` a list only by being in it.
    pub fn could_permit(&self, caller: &Caller<'_>, action: &str) -> bool {
        let ty = &self.types;
        let user = uid(&ty.user, &format!("{}|{}", caller.issuer, caller.subject));
        let action = uid(&ty.action, action);
        let is_caller = |e: &EntityUid| {
            *e == user
                || caller.roles.iter().any(|r| uid(&ty.role, r) == *e)
                || caller.groups.iter().any(|g| uid(&ty.group, g) == *e)
        };
        self.set
            .policies()
            .filter(|p| p.effect() == Effect::Permit)
            .any(|p| {
                let names_action = match p.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(a) => a == action,
                    ActionConstraint::In(list) => list.contains(&action),
                };
                names_action
                    && match p.principal_constraint() {
                        PrincipalConstraint::Any => true,
                        PrincipalConstraint::Is(t) => t == ty.user,
                        PrincipalConstraint::Eq(e) => e == user,
                        PrincipalConstraint::In(e) => is_caller(&e),
                        PrincipalConstraint::IsIn(t, e) => t == ty.user && is_caller(&e),
                    }
            })
    }

    /// For a denied request: the `@step_up` scope that, added to the caller's
    /// scopes, would allow it (AUTH-12), if there is one.
    pub fn step_up(&self, q: &Query<'_>) -> Result<Option<String>, PolicyError> {
        for s in &self.step_up {
            if q.context.scopes.contains(s) {
                continue;
            }
            let mut scopes = q.context.scopes.to_vec();
            scopes.push(s.clone());
            let mut more = q.clone();
            more.context.scopes = &scopes;
            if self.decide(&more)?.allow {
                return Ok(Some(s.clone()));
            }
        }
        Ok(None)
    }
}

fn entity<'k>(
    uid: EntityUid,
    attrs: impl IntoIterator<Item = (&'k str, RestrictedExpression)>,
    parents: HashSet<EntityUid>,
) -> Result<Entity, PolicyError> {
    Entity::new(
        uid,
        attrs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<HashMap<_, _>>(),
        parents,
    )
    .map_err(|e| PolicyError::Request(e.to_string()))
}

#[cfg(test)]
mod tests;
