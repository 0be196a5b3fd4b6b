//! Client sessions: minted here, bound to a principal, bounded in number and time.
//!
//! Architecture Invariant: a session ID never authenticates. A request names a
//! session, and the session is served only when its bound principal equals the
//! request's authenticated principal (SESS-03); otherwise the answer is 404, the
//! same as for an ID that never existed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_wire::{Id, Message, ProtocolVersion};
use rand::RngCore;
use tokio::time::Instant;

use crate::principal::{Principal, SubjectSlot};
use crate::stream::ClientStream;
use crate::upstream::Link;

/// 32 bytes from the thread-local CSPRNG (ChaCha, seeded by the OS), hex: 256 bits,
/// visible ASCII only (SESS-01, SESS-02).
pub(crate) fn mint_session_id() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A server→client request the gateway relayed, waiting for the client's answer.
#[derive(Debug, Clone)]
pub(crate) struct RelayedRequest {
    /// Index of the upstream that asked.
    pub(crate) upstream: usize,
    /// The ID the upstream used.
    pub(crate) upstream_id: Id,
    /// When it was relayed; unanswered entries expire after [`RELAYED_TTL`].
    at: Instant,
}

/// Distinct tools and prompts remembered per session for policies.
pub(crate) const MAX_CALLED: usize = 1024;

/// How long a relayed server→client request waits for the client's answer.
const RELAYED_TTL: Duration = Duration::from_secs(600);

/// One client session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) principal: Principal,
    pub(crate) version: ProtocolVersion,
    /// The client's declared capabilities (from `initialize`), for LIFE-03.
    pub(crate) client_capabilities: serde_json::Value,
    /// The capabilities the gateway advertised to this client.
    pub(crate) advertised: serde_json::Value,
    /// One link per configured upstream, `None` where the upstream could not be
    /// initialised for this session.
    pub(crate) links: Vec<Option<Link>>,
    /// The caller's latest token, for upstreams reached by token exchange.
    pub(crate) subject: Arc<SubjectSlot>,
    created: Instant,
    last_used_ms: AtomicU64,
    closed: AtomicBool,
    closed_token: tokio_util::sync::CancellationToken,
    in_flight: AtomicUsize,
    next_stream: AtomicU64,
    next_relay_id: AtomicI64,
    streams: Mutex<Streams>,
    relayed: Mutex<HashMap<Id, RelayedRequest>>,
    /// Requests the gateway itself sent the client (approvals), waiting for answers.
    asked: Mutex<HashMap<Id, tokio::sync::oneshot::Sender<Message>>>,
    /// Client requests in flight, by the client's ID, for `notifications/cancelled`.
    calls: Mutex<HashMap<Id, tokio_util::sync::CancellationToken>>,
    /// URI → upstream index, from the lists this session has seen.
    pub(crate) resource_index: Mutex<ResourceIndex>,
    /// The tools and prompts this session was allowed to use (namespaced, distinct,
    /// the first [`MAX_CALLED`]), for policies about sequences.
    called: Mutex<Vec<String>>,
    /// The tool and prompt names each upstream last listed to this session, by
    /// (upstream, `tool`|`prompt`): a call to any other name is refused.
    /// With each name, whether this session's own list admitted it (an upstream may
    /// show sessions different definitions: what another session's list admitted
    /// says nothing about this one's).
    pub(crate) listed: Mutex<HashMap<(usize, &'static str), Listed>>,
    replay_capacity: usize,
    /// Where announced list changes go to be re-checked.
    rechecks: Option<Arc<Rechecks>>,
    /// Inspection of what upstreams send this session unasked (notifications and
    /// requests); `None` when switched off.
    pub(crate) inspection: Option<Arc<crate::inspect::Inspection>>,
    /// URL elicitations relayed to this client, by upstream and `elicitationId` (the
    /// newest [`MAX_ELICITATIONS`]): their completion notices go to this client only
    /// (FEAT-12).
    elicitations: Mutex<std::collections::VecDeque<(usize, String)>>,
}

/// URL elicitations a session remembers.
const MAX_ELICITATIONS: usize = 64;

/// The names one list of an upstream held, each with whether the list admitted it.
pub(crate) type Listed = HashMap<String, bool>;

/// A list an upstream announced as changed, to be fetched again and checked
/// against the pins (FEAT-02).
#[derive(Debug)]
pub(crate) struct Recheck {
    /// The session whose link to the upstream is used.
    pub(crate) session: std::sync::Weak<Session>,
    pub(crate) upstream: usize,
    /// `tools/list`, `prompts/list` or `resources/list`.
    pub(crate) list: &'static str,
}

/// The queue of re-checks: bounded, and at most one waiting per (upstream, list),
/// so a burst of announcements — or one announcement to many sessions of a shared
/// stdio child — costs one re-check.
#[derive(Debug)]
pub(crate) struct Rechecks {
    tx: tokio::sync::mpsc::Sender<Recheck>,
    queued: Mutex<std::collections::HashSet<(usize, &'static str)>>,
}

impl Rechecks {
    pub(crate) fn new(capacity: usize) -> (Self, tokio::sync::mpsc::Receiver<Recheck>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        (
            Self {
                tx,
                queued: Mutex::new(std::collections::HashSet::new()),
            },
            rx,
        )
    }

    fn request(&self, r: Recheck) {
        let key = (r.upstream, r.list);
        if !lock(&self.queued).insert(key) {
            return;
        }
        if self.tx.try_send(r).is_err() {
            lock(&self.queued).remove(&key);
            tracing::debug!("dropped a list re-check: the queue is full");
        }
    }

    /// Marks a re-check as taken off the queue, so later announcements queue again.
    pub(crate) fn taken(&self, r: &Recheck) {
        lock(&self.queued).remove(&(r.upstream, r.list));
    }
}

/// Where `resources/read` and friends go.
#[derive(Debug, Default)]
pub(crate) struct ResourceIndex {
    pub(crate) exact: HashMap<String, usize>,
    /// (literal prefix of a URI template, upstream)
    pub(crate) templates: Vec<(String, usize)>,
    /// Whether this session's resources were listed (and so admitted) at all.
    pub(crate) learned: bool,
}

impl ResourceIndex {
    pub(crate) fn lookup(&self, uri: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(uri) {
            return Some(*i);
        }
        self.templates
            .iter()
            .filter(|(p, _)| !p.is_empty() && uri.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, i)| *i)
    }
}

#[derive(Debug, Default)]
struct Streams {
    /// The stream for messages not related to any client request (the GET stream).
    unsolicited: Option<Arc<ClientStream>>,
    /// Recent streams by ID, for `Last-Event-ID` resumption; bounded.
    recent: VecDeque<Arc<ClientStream>>,
}

const MAX_RECENT_STREAMS: usize = 32;
const MAX_RELAYED: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a new session is made of; the rest of its state starts empty.
pub(crate) struct NewSession {
    pub(crate) id: String,
    pub(crate) principal: Principal,
    pub(crate) version: ProtocolVersion,
    pub(crate) client_capabilities: serde_json::Value,
    pub(crate) advertised: serde_json::Value,
    pub(crate) links: Vec<Option<Link>>,
    pub(crate) subject: Arc<SubjectSlot>,
    pub(crate) replay_capacity: usize,
    pub(crate) rechecks: Option<Arc<Rechecks>>,
    pub(crate) inspection: Option<Arc<crate::inspect::Inspection>>,
}

impl Session {
    pub(crate) fn new(n: NewSession) -> Self {
        let NewSession {
            id,
            principal,
            version,
            client_capabilities,
            advertised,
            links,
            subject,
            replay_capacity,
            rechecks,
            inspection,
        } = n;
        Self {
            id,
            principal,
            version,
            client_capabilities,
            advertised,
            links,
            subject,
            created: Instant::now(),
            last_used_ms: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            closed_token: tokio_util::sync::CancellationToken::new(),
            in_flight: AtomicUsize::new(0),
            next_stream: AtomicU64::new(1),
            next_relay_id: AtomicI64::new(1),
            streams: Mutex::new(Streams::default()),
            relayed: Mutex::new(HashMap::new()),
            asked: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            resource_index: Mutex::new(ResourceIndex::default()),
            listed: Mutex::new(HashMap::new()),
            called: Mutex::new(Vec::new()),
            replay_capacity,
            rechecks,
            inspection,
            elicitations: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Remembers that upstream `idx` asked this client to open URL elicitation `id`.
    pub(crate) fn note_elicitation(&self, idx: usize, id: &str) {
        let mut e = lock(&self.elicitations);
        if !e.iter().any(|(i, x)| *i == idx && x == id) {
            e.push_back((idx, id.to_owned()));
            if e.len() > MAX_ELICITATIONS {
                e.pop_front();
            }
        }
    }

    /// Whether upstream `idx` asked this client to open URL elicitation `id`.
    pub(crate) fn was_asked(&self, idx: usize, id: &str) -> bool {
        lock(&self.elicitations)
            .iter()
            .any(|(i, x)| *i == idx && x == id)
    }

    /// Called for every notification from upstream `idx`: a list change is queued
    /// for a re-check through this session's link.
    pub(crate) fn list_changed(self: &Arc<Self>, idx: usize, method: &str) {
        let list = match method {
            "notifications/tools/list_changed" => "tools/list",
            "notifications/prompts/list_changed" => "prompts/list",
            "notifications/resources/list_changed" => "resources/list",
            _ => return,
        };
        if let Some(r) = &self.rechecks {
            r.request(Recheck {
                session: Arc::downgrade(self),
                upstream: idx,
                list,
            });
        }
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_used_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Cancelled when the session is closed (deleted, expired, shutdown).
    pub(crate) fn closed(&self) -> &tokio_util::sync::CancellationToken {
        &self.closed_token
    }

    /// Whether the client declared the capability at `path` in `initialize` (e.g.
    /// `["sampling", "tools"]`).
    pub(crate) fn client_declared(&self, path: &[&str]) -> bool {
        path.iter()
            .try_fold(&self.client_capabilities, |v, k| v.get(k))
            .is_some_and(|v| !v.is_null())
    }

    /// Whether the client declared `capability` (e.g. "sampling") in `initialize`.
    pub(crate) fn client_has(&self, capability: &str) -> bool {
        self.client_declared(&[capability])
    }

    /// Counts a request in flight; `None` when the session is at its limit.
    pub(crate) fn begin_request(self: &Arc<Self>, max: usize) -> Option<InFlight> {
        let prev = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight(Arc::clone(self)))
    }

    /// A new stream for the answer to one client request.
    pub(crate) fn open_stream(&self) -> Arc<ClientStream> {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let s = ClientStream::new(id, self.replay_capacity);
        let mut st = lock(&self.streams);
        if self.is_closed() {
            s.close();
        }
        if st.recent.len() >= MAX_RECENT_STREAMS {
            // Drop the oldest closed stream; if none is closed, the oldest.
            let pos = st.recent.iter().position(|s| s.is_closed()).unwrap_or(0);
            st.recent.remove(pos);
        }
        st.recent.push_back(Arc::clone(&s));
        s
    }

    /// The stream of unsolicited messages, created on first use (stream ID 0).
    pub(crate) fn unsolicited(&self) -> Arc<ClientStream> {
        let mut st = lock(&self.streams);
        Arc::clone(
            st.unsolicited
                .get_or_insert_with(|| ClientStream::new(0, self.replay_capacity)),
        )
    }

    /// Whether a GET stream was ever opened (so upstream GET streams are wanted).
    pub(crate) fn find_stream(&self, id: u64) -> Option<Arc<ClientStream>> {
        let st = lock(&self.streams);
        if id == 0 {
            return st.unsolicited.clone();
        }
        st.recent.iter().find(|s| s.id() == id).cloned()
    }

    /// Delivers a message not related to any client request (TR-08: to one stream).
    pub(crate) fn deliver_unsolicited(&self, msg: &Message) {
        if !self.is_closed() {
            self.unsolicited().push(msg);
        }
    }

    /// Records a server→client request and returns the ID the client will see. IDs
    /// are per session, so requests from two upstreams never collide (LIFE-04).
    pub(crate) fn relay_request(&self, upstream: usize, upstream_id: Id) -> Option<Id> {
        let id = Id::String(
            format!(
                "palisade-{}",
                self.next_relay_id.fetch_add(1, Ordering::Relaxed)
            )
            .into(),
        );
        let mut r = lock(&self.relayed);
        if r.len() >= MAX_RELAYED {
            r.retain(|_, v| v.at.elapsed() < RELAYED_TTL);
        }
        if r.len() >= MAX_RELAYED {
            return None;
        }
        r.insert(
            id.clone(),
            RelayedRequest {
                upstream,
                upstream_id,
                at: Instant::now(),
            },
        );
        Some(id)
    }

    /// Notes that the session was allowed to use tool or prompt `name`.
    pub(crate) fn note_called(&self, name: &str) {
        let mut c = lock(&self.called);
        if c.len() < MAX_CALLED && !c.iter().any(|n| n == name) {
            c.push(name.to_owned());
        }
    }

    /// The tools and prompts this session was allowed to use so far.
    pub(crate) fn called(&self) -> Vec<String> {
        lock(&self.called).clone()
    }

    /// Whole seconds since the session was opened.
    pub(crate) fn age_seconds(&self) -> i64 {
        i64::try_from(self.created.elapsed().as_secs()).unwrap_or(i64::MAX)
    }

    /// An ID for a request the gateway itself sends the client, and where its answer
    /// will arrive; `None` when too many are waiting. IDs share the relayed ones'
    /// sequence, so they never collide.
    pub(crate) fn ask(&self) -> Option<(Id, tokio::sync::oneshot::Receiver<Message>)> {
        let mut a = lock(&self.asked);
        a.retain(|_, tx| !tx.is_closed());
        if a.len() >= MAX_RELAYED {
            return None;
        }
        let id = Id::String(
            format!(
                "palisade-{}",
                self.next_relay_id.fetch_add(1, Ordering::Relaxed)
            )
            .into(),
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        a.insert(id.clone(), tx);
        Some((id, rx))
    }

    /// Delivers the client's answer to a request the gateway asked; gives the
    /// message back when it answers none of those.
    pub(crate) fn answer_asked(&self, msg: Message) -> Option<Message> {
        let Some(tx) = msg.id().and_then(|id| lock(&self.asked).remove(id)) else {
            return Some(msg);
        };
        let _ = tx.send(msg);
        None
    }

    /// Takes the record of a relayed request when the client answers it. Unknown IDs
    /// give `None`: unsolicited responses are dropped (LIFE-05).
    pub(crate) fn take_relayed(&self, id: &Id) -> Option<RelayedRequest> {
        lock(&self.relayed).remove(id)
    }

    /// Registers a client request in flight; false if its ID is already in flight
    /// (request IDs must be unique per session, LIFE-04).
    pub(crate) fn register_call(
        &self,
        id: &Id,
        token: tokio_util::sync::CancellationToken,
    ) -> bool {
        let mut c = lock(&self.calls);
        if c.contains_key(id) {
            return false;
        }
        c.insert(id.clone(), token);
        true
    }

    pub(crate) fn finish_call(&self, id: &Id) {
        lock(&self.calls).remove(id);
    }

    /// Cancels the client request `id` if it is in flight.
    pub(crate) fn cancel_call(&self, id: &Id) {
        if let Some(t) = lock(&self.calls).remove(id) {
            t.cancel();
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closed_token.cancel();
        let st = lock(&self.streams);
        if let Some(s) = &st.unsolicited {
            s.close();
        }
        for s in &st.recent {
            s.close();
        }
    }
}

/// A request in flight on a session; decrements on drop.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Session>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a session was removed.
pub(crate) use palisade_store::CloseReason;

/// All live sessions, bounded in all and per principal.
#[derive(Debug)]
pub(crate) struct SessionTable {
    sessions: Mutex<Sessions>,
    max: usize,
    max_per_principal: Option<usize>,
    idle: Duration,
    lifetime: Duration,
}

/// The sessions by ID, the places held for sessions being opened, and how many each
/// principal holds, both kinds counted (kept together, under one lock, so that a
/// count never drifts from the table).
#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<String, Arc<Session>>,
    opening: usize,
    held: HashMap<Principal, usize>,
}

impl Sessions {
    fn release(&mut self, principal: &Principal) {
        if let Some(n) = self.held.get_mut(principal) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(principal);
            }
        }
    }

    fn remove(&mut self, id: &str) -> Option<Arc<Session>> {
        let s = self.by_id.remove(id)?;
        self.release(&s.principal);
        Some(s)
    }
}

/// A place in the table held for a session being opened, taken before anything is
/// opened upstream; given back when dropped unless the session took it.
#[derive(Debug)]
pub(crate) struct Place<'t> {
    table: &'t SessionTable,
    principal: Principal,
    taken: bool,
}

impl Place<'_> {
    /// Adds the opened session in the place held for it.
    pub(crate) fn take(mut self, s: Arc<Session>) {
        debug_assert!(s.principal == self.principal);
        let mut t = lock(&self.table.sessions);
        t.opening -= 1;
        t.by_id.insert(s.id.clone(), s);
        self.taken = true;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.taken {
            let mut t = lock(&self.table.sessions);
            t.opening -= 1;
            t.release(&self.principal);
        }
    }
}

/// Why a session could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// `limits.max_sessions` are live.
    Table,
    /// The principal holds `limits.max_sessions_per_principal`.
    Principal,
}

impl SessionTable {
    pub(crate) fn new(
        max: usize,
        max_per_principal: Option<usize>,
        idle: Duration,
        lifetime: Duration,
    ) -> Self {
        Self {
            sessions: Mutex::new(Sessions::default()),
            max,
            max_per_principal,
            idle,
            lifetime,
        }
    }

    /// Holds a place for a session of `principal`, unless the table or the
    /// principal's share of it is full (places being opened count).
    pub(crate) fn reserve(&self, principal: &Principal) -> Result<Place<'_>, Full> {
        let mut t = lock(&self.sessions);
        self.room(&t, principal)?;
        t.opening += 1;
        *t.held.entry(principal.clone()).or_default() += 1;
        Ok(Place {
            table: self,
            principal: principal.clone(),
            taken: false,
        })
    }

    /// Adds a session, unless the table or its principal's share of it is full.
    #[cfg(test)]
    pub(crate) fn insert(&self, s: Arc<Session>) -> Result<(), Full> {
        self.reserve(&s.principal)?.take(s);
        Ok(())
    }

    fn room(&self, t: &Sessions, principal: &Principal) -> Result<(), Full> {
        if t.by_id.len() + t.opening >= self.max {
            return Err(Full::Table);
        }
        if self
            .max_per_principal
            .is_some_and(|max| t.held.get(principal).copied().unwrap_or(0) >= max)
        {
            return Err(Full::Principal);
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.sessions).by_id.len()
    }

    /// The session `id` if it exists, is live and belongs to `principal` (SESS-03,
    /// SESS-05, SESS-07). Every miss looks the same to the caller.
    pub(crate) fn get(&self, id: &str, principal: &Principal) -> Option<Arc<Session>> {
        let s = lock(&self.sessions).by_id.get(id).cloned()?;
        if s.principal != *principal || s.is_closed() || self.expired(&s).is_some() {
            return None;
        }
        s.touch();
        Some(s)
    }

    fn expired(&self, s: &Session) -> Option<CloseReason> {
        if s.created.elapsed() >= self.lifetime {
            Some(CloseReason::LifetimeExpired)
        } else if s.idle_for() >= self.idle {
            Some(CloseReason::IdleExpired)
        } else {
            None
        }
    }

    /// Removes and closes a session owned by `principal`.
    pub(crate) fn remove(&self, id: &str, principal: &Principal) -> Option<Arc<Session>> {
        let mut t = lock(&self.sessions);
        if t.by_id.get(id).is_none_or(|s| s.principal != *principal) {
            return None;
        }
        let s = t.remove(id)?;
        s.close();
        Some(s)
    }

    /// Removes expired sessions and returns them with the reason.
    pub(crate) fn reap(&self) -> Vec<(Arc<Session>, CloseReason)> {
        let mut t = lock(&self.sessions);
        let expired: Vec<(String, CloseReason)> = t
            .by_id
            .values()
            .filter_map(|s| self.expired(s).map(|r| (s.id.clone(), r)))
            .collect();
        expired
            .into_iter()
            .filter_map(|(id, r)| {
                let s = t.remove(&id)?;
                s.close();
                Some((s, r))
            })
            .collect()
    }

    /// Removes every session (shutdown).
    pub(crate) fn drain(&self) -> Vec<Arc<Session>> {
        let mut guard = lock(&self.sessions);
        let t = &mut *guard;
        // Places being opened keep their counts: each gives its own back.
        for s in t.by_id.values() {
            if let Some(n) = t.held.get_mut(&s.principal) {
                *n -= 1;
            }
        }
        t.held.retain(|_, n| *n > 0);
        t.by_id
            .drain()
            .map(|(_, s)| {
                s.close();
                s
            })
            .collect()
    }

    /// Live sessions that hold a link to upstream `idx` (for upstream broadcasts).
    pub(crate) fn with_upstream(&self, idx: usize) -> Vec<Arc<Session>> {
        lock(&self.sessions)
            .by_id
            .values()
            .filter(|s| s.links.get(idx).is_some_and(Option::is_some))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sess_01_02_ids_are_unique_random_and_visible_ascii() {
        let ids: HashSet<String> = (0..10_000).map(|_| mint_session_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.len(), 64);
            assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }
        // No shared prefix structure: first bytes are spread over the alphabet.
        let firsts: HashSet<&str> = ids.iter().map(|s| &s[..1]).collect();
        assert_eq!(firsts.len(), 16);
    }

    fn session(p: &Principal) -> Arc<Session> {
        Arc::new(Session::new(NewSession {
            id: mint_session_id(),
            principal: p.clone(),
            version: ProtocolVersion::LATEST,
            client_capabilities: serde_json::json!({}),
            advertised: serde_json::json!({}),
            links: vec![],
            subject: Arc::default(),
            replay_capacity: 8,
            rechecks: None,
            inspection: None,
        }))
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn sess_03_05_07_binding_deletion_and_expiry() {
        let alice = Principal::new("local", "alice");
        let bob = Principal::new("local", "bob");
        let t = SessionTable::new(2, None, Duration::from_secs(60), Duration::from_secs(600));
        let s = session(&alice);
        assert!(t.insert(Arc::clone(&s)).is_ok());
        assert!(t.get(&s.id, &alice).is_some());
        assert!(
            t.get(&s.id, &bob).is_none(),
            "SESS-03: another principal gets nothing"
        );
        assert!(t.remove(&s.id, &bob).is_none());
        // Idle expiry.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(
            t.get(&s.id, &alice).is_none(),
            "SESS-07: idle session expired"
        );
        assert_eq!(t.reap().len(), 1);
        // Deletion.
        let s2 = session(&alice);
        assert!(t.insert(Arc::clone(&s2)).is_ok());
        assert!(t.remove(&s2.id, &alice).is_some());
        assert!(
            t.get(&s2.id, &alice).is_none(),
            "SESS-05: deleted session is gone"
        );
        // Bounded.
        assert!(t.insert(session(&alice)).is_ok());
        assert!(t.insert(session(&alice)).is_ok());
        assert_eq!(t.insert(session(&alice)), Err(Full::Table));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn one_principal_cannot_take_every_session() {
        let alice = Principal::new("https://idp.example", "alice");
        let bob = Principal::new("https://idp.example", "bob");
        let t = SessionTable::new(
            10,
            Some(2),
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        let a1 = session(&alice);
        let a2 = session(&alice);
        assert!(t.insert(Arc::clone(&a1)).is_ok());
        assert!(t.insert(Arc::clone(&a2)).is_ok());
        assert_eq!(t.reserve(&alice).err(), Some(Full::Principal));
        assert_eq!(t.insert(session(&alice)), Err(Full::Principal));
        // Others are not held back by her share.
        assert!(t.reserve(&bob).is_ok());
        assert!(t.insert(session(&bob)).is_ok());
        // A deleted session frees its place, and so does one that expires.
        assert!(t.remove(&a1.id, &alice).is_some());
        assert!(t.insert(session(&alice)).is_ok());
        assert_eq!(t.insert(session(&alice)), Err(Full::Principal));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(t.reap().len(), 3);
        assert_eq!(t.len(), 0);
        assert!(t.insert(session(&alice)).is_ok());
        assert!(t.insert(session(&alice)).is_ok());
        assert_eq!(t.insert(session(&alice)), Err(Full::Principal));
        assert_eq!(t.drain().len(), 2);
        assert!(t.reserve(&alice).is_ok(), "drained: nothing is held");
    }

    #[test]
    fn a_place_is_held_while_a_session_opens_and_given_back_if_it_does_not() {
        let alice = Principal::new("https://idp.example", "alice");
        let bob = Principal::new("https://idp.example", "bob");
        let carol = Principal::new("https://idp.example", "carol");
        let t = SessionTable::new(
            3,
            Some(2),
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        // Two sessions opening at once take her share before either is added.
        let p1 = t.reserve(&alice).unwrap();
        let p2 = t.reserve(&alice).unwrap();
        assert_eq!(t.reserve(&alice).err(), Some(Full::Principal));
        assert_eq!(t.len(), 0, "nothing is in the table yet");
        // The table counts places being opened too.
        let pb = t.reserve(&bob).unwrap();
        assert_eq!(t.reserve(&carol).err(), Some(Full::Table));
        drop(pb); // its upstreams failed to open: the place is given back
        assert!(t.reserve(&carol).is_ok());
        p1.take(session(&alice));
        drop(p2);
        assert_eq!(t.len(), 1);
        assert!(
            t.reserve(&alice).is_ok(),
            "one of her two places is free again"
        );
    }
}
