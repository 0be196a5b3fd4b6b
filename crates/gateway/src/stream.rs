//! Client-facing SSE streams with bounded replay (TR-08..TR-10).
//!
//! Every SSE stream the gateway opens toward a client is a [`ClientStream`]: an
//! append-only log of encoded events with a bounded ring of the most recent ones.
//! The HTTP response body is a reader with a cursor over that log, so a client that
//! disconnects loses nothing the ring still holds: it reconnects with
//! `Last-Event-ID: <stream>.<seq>` and the reader starts after that event. Event IDs
//! name their stream, and streams are looked up only inside the caller's own session,
//! so a resume can never cross streams or sessions (TR-09).
//!
//! Writers never wait for readers: when the ring is full the oldest event is dropped,
//! and a reader whose cursor fell behind the ring ends its response rather than skip
//! messages silently.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::Stream;
use palisade_wire::{Message, sse};
use tokio::sync::Notify;

/// How long a client should wait before reconnecting, sent with the priming event.
const RETRY_MS: u64 = 1000;

/// One client-facing SSE stream of one session.
#[derive(Debug)]
pub(crate) struct ClientStream {
    id: u64,
    capacity: usize,
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct State {
    events: VecDeque<(u64, Bytes)>,
    next_seq: u64,
    closed: bool,
    /// Bumped when a new reader attaches to a stream that allows only one reader
    /// (the GET stream); older readers end.
    reader_generation: u64,
    /// The sequence number after the last event any reader received; a reader
    /// without `Last-Event-ID` starts here, so nothing is sent twice.
    delivered: u64,
}

impl ClientStream {
    /// A new stream whose first event is the priming event (an ID with empty data and
    /// a retry hint, TR-10).
    pub(crate) fn new(id: u64, capacity: usize) -> Arc<Self> {
        let s = Arc::new(Self {
            id,
            capacity: capacity.max(2),
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        });
        s.push_raw(None, Some(RETRY_MS));
        s
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-push; the log itself
        // is still consistent (pushes are single statements).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a message. Returns false when the stream is closed.
    pub(crate) fn push(&self, msg: &Message) -> bool {
        self.push_raw(Some(msg.raw()), None)
    }

    fn push_raw(&self, data: Option<&Bytes>, retry: Option<u64>) -> bool {
        {
            let mut st = self.lock();
            if st.closed {
                return false;
            }
            let seq = st.next_seq;
            st.next_seq += 1;
            let id = format!("{}.{}", self.id, seq);
            let ev = sse::encode(Some(&id), None, data.map_or(&[][..], |d| &d[..]), retry);
            if st.events.len() >= self.capacity {
                st.events.pop_front();
            }
            st.events.push_back((seq, ev));
        }
        self.notify.notify_waiters();
        true
    }

    /// Marks the stream complete; readers end after the last event.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// A body reading from `after` (exclusive; `None` = from the first event no
    /// reader has received). With
    /// `exclusive`, attaching ends any earlier reader (one live GET stream).
    pub(crate) fn reader(
        self: &Arc<Self>,
        after: Option<u64>,
        exclusive: bool,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        let (generation, cursor) = {
            let mut st = self.lock();
            if exclusive {
                st.reader_generation += 1;
            }
            (
                st.reader_generation,
                after.map_or(st.delivered, |s| s.saturating_add(1)),
            )
        };
        self.notify.notify_waiters();
        let this = Arc::clone(self);
        futures_util::stream::unfold((this, cursor), move |(this, cursor)| async move {
            loop {
                let notified = this.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut st = this.lock();
                    if exclusive && st.reader_generation != generation {
                        return None;
                    }
                    let first = st.events.front().map_or(st.next_seq, |(s, _)| *s);
                    if cursor < first {
                        // Fell behind the ring: end rather than skip messages.
                        tracing::warn!(
                            stream = this.id,
                            "client SSE reader fell behind the replay buffer"
                        );
                        return None;
                    }
                    if cursor < st.next_seq {
                        let mut out = Vec::new();
                        let mut next = cursor;
                        for (seq, ev) in st.events.iter().filter(|(s, _)| *s >= cursor) {
                            out.extend_from_slice(ev);
                            next = seq + 1;
                        }
                        st.delivered = st.delivered.max(next);
                        return Some((Ok(Bytes::from(out)), (Arc::clone(&this), next)));
                    }
                    if st.closed {
                        return None;
                    }
                }
                notified.await;
            }
        })
    }
}

/// Parses `Last-Event-ID` as `<stream>.<seq>`.
pub(crate) fn parse_event_id(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn msg(n: i64) -> Message {
        Message::notification("notifications/message", &serde_json::json!({ "n": n }))
    }

    async fn drain(s: impl Stream<Item = Result<Bytes, Infallible>>) -> String {
        let mut out = String::new();
        tokio::pin!(s);
        while let Some(Ok(b)) = s.next().await {
            out.push_str(std::str::from_utf8(&b).unwrap());
        }
        out
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tr_09_replay_after_an_event_id() {
        let s = ClientStream::new(7, 16);
        for i in 0..3 {
            s.push(&msg(i));
        }
        s.close();
        let all = drain(s.reader(None, false)).await;
        assert!(all.starts_with("id: 7.0\nretry: 1000\ndata: \n\n"), "{all}");
        assert!(all.contains("id: 7.3\n"));
        let rest = drain(s.reader(Some(2), false)).await;
        assert!(!rest.contains("\"n\":0") && !rest.contains("\"n\":1"));
        assert!(rest.contains("\"n\":2"), "{rest}");
        assert_eq!(parse_event_id("7.2"), Some((7, 2)));
        assert_eq!(parse_event_id("7"), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bounded_ring_ends_lagging_readers() {
        let s = ClientStream::new(1, 4);
        for i in 0..10 {
            s.push(&msg(i));
        }
        s.close();
        // Cursor 0 is long gone: the reader ends instead of skipping.
        assert_eq!(drain(s.reader(None, false)).await, "");
        assert!(drain(s.reader(Some(8), false)).await.contains("\"n\":8"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tr_08_a_new_exclusive_reader_ends_the_old_one() {
        let s = ClientStream::new(0, 16);
        let old = s.reader(None, true);
        let _new = s.reader(None, true);
        // The old reader ends at once (its generation is stale).
        assert_eq!(drain(old).await, "");
    }
}
