//! Runtime limits on requests, checked before a request is routed: GCRA rate limits
//! (the whole gateway, each principal, each OAuth client, each tool) and concurrency limits (each
//! principal across its sessions, each upstream). A request over a limit is answered
//! 429 with `Retry-After` and a JSON-RPC error `-32013`, never forwarded, and recorded
//! in the audit log. Sizes and times are limited where the bytes are (`limits.*`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use palisade_config::{Config, Rate};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests in flight per principal.
type InFlight = Arc<Mutex<HashMap<String, usize>>>;

/// The limits of one gateway.
#[derive(Debug)]
pub(crate) struct Limiter {
    global: Option<DefaultDirectRateLimiter>,
    per_principal: Option<DefaultKeyedRateLimiter<String>>,
    per_tool: Option<DefaultKeyedRateLimiter<String>>,
    per_client: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
    max_per_principal: Option<usize>,
    in_flight: InFlight,
    upstreams: Vec<Option<Arc<Semaphore>>>,
}

/// Which limit refused a request, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Over {
    /// What a client is told.
    pub(crate) message: &'static str,
    /// What the audit record says.
    pub(crate) reason: &'static str,
    /// Whole seconds until a retry can succeed (at least 1).
    pub(crate) retry_after: u64,
}

/// A request's place within the concurrency limits; released on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    principal: Option<(String, InFlight)>,
    _upstream: Option<OwnedSemaphorePermit>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((who, map)) = self.principal.take() {
            let mut m = map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = m.get_mut(&who) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&who);
                }
            }
        }
    }
}

fn quota(r: Rate) -> Quota {
    let n = NonZeroU32::new(r.count).unwrap_or(NonZeroU32::MIN);
    let q = match r.period.as_secs() {
        1 => Quota::per_second(n),
        60 => Quota::per_minute(n),
        _ => Quota::per_hour(n),
    };
    q.allow_burst(n)
}

impl Limiter {
    pub(crate) fn new(config: &Config) -> Self {
        let r = &config.limits.rate;
        Self {
            global: r.global.map(|q| RateLimiter::direct(quota(q))),
            per_principal: r.per_principal.map(|q| RateLimiter::keyed(quota(q))),
            per_tool: r.per_tool.map(|q| RateLimiter::keyed(quota(q))),
            per_client: r.per_client.map(|q| RateLimiter::keyed(quota(q))),
            clock: DefaultClock::default(),
            max_per_principal: config.limits.max_concurrent_per_principal,
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            upstreams: config
                .upstreams
                .iter()
                .map(|u| u.max_concurrent.map(|n| Arc::new(Semaphore::new(n))))
                .collect(),
        }
    }

    fn wait(&self, not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
        let d: Duration = not_until.wait_time_from(self.clock.now());
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }

    /// Admits one request of `principal` through OAuth `client` (to `tool`, on
    /// `upstream`, when known), or says which limit refuses it.
    pub(crate) fn admit(
        &self,
        principal: &str,
        client: Option<&str>,
        tool: Option<&str>,
        upstream: Option<usize>,
    ) -> Result<Permit, Over> {
        if let Some(l) = &self.per_principal
            && let Err(n) = l.check_key(&principal.to_owned())
        {
            return Err(Over {
                message: "Too Many Requests: your request rate limit",
                reason: "rate limit (per principal)",
                retry_after: self.wait(&n),
            });
        }
        if let Some(l) = &self.per_client
            && let Err(n) = l.check_key(&client.unwrap_or_default().to_owned())
        {
            return Err(Over {
                message: "Too Many Requests: your client's request rate limit",
                reason: "rate limit (per client)",
                retry_after: self.wait(&n),
            });
        }
        if let (Some(l), Some(tool)) = (&self.per_tool, tool)
            && let Err(n) = l.check_key(&tool.to_owned())
        {
            return Err(Over {
                message: "Too Many Requests: this tool's rate limit",
                reason: "rate limit (per tool)",
                retry_after: self.wait(&n),
            });
        }
        // The shared budget last: a caller refused by its own limits spends none
        // of everyone's.
        if let Some(l) = &self.global
            && let Err(n) = l.check()
        {
            return Err(Over {
                message: "Too Many Requests: the gateway's request rate limit",
                reason: "rate limit (global)",
                retry_after: self.wait(&n),
            });
        }
        let upstream_permit = match upstream
            .and_then(|i| self.upstreams.get(i))
            .and_then(Option::as_ref)
        {
            Some(sem) => Some(Arc::clone(sem).try_acquire_owned().map_err(|_| Over {
                message: "Too Many Requests: too many requests in flight to this upstream",
                reason: "concurrency limit (per upstream)",
                retry_after: 1,
            })?),
            None => None,
        };
        let principal_slot = match self.max_per_principal {
            Some(max) => {
                let mut m = self
                    .in_flight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let n = m.entry(principal.to_owned()).or_insert(0);
                if *n >= max {
                    return Err(Over {
                        message: "Too Many Requests: too many of your requests in flight",
                        reason: "concurrency limit (per principal)",
                        retry_after: 1,
                    });
                }
                *n += 1;
                Some((principal.to_owned(), Arc::clone(&self.in_flight)))
            }
            None => None,
        };
        Ok(Permit {
            principal: principal_slot,
            _upstream: upstream_permit,
        })
    }

    /// Forgets rate-limit state of keys that are back at full capacity, so the keyed
    /// tables hold only principals and tools active within one period.
    pub(crate) fn retain_recent(&self) {
        if let Some(l) = &self.per_principal {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in [&self.per_tool, &self.per_client].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rates: &str) -> Limiter {
        let text = format!(
            "[limits.rate]\n{rates}\n[[upstream]]\nname = \"a\"\ntransport = \"streamable-http\"\nurl = \"http://127.0.0.1:9/mcp\"\n"
        );
        let config = Config::from_toml(std::path::Path::new("t.toml"), &text, &|_: &str| None)
            .unwrap_or_else(|e| panic!("{e}"));
        Limiter::new(&config)
    }

    #[test]
    fn feat_06_a_throttled_caller_spends_none_of_the_global_budget() {
        let l = limiter("global = \"5/m\"\nper_principal = \"3/m\"");
        for _ in 0..3 {
            assert!(l.admit("mallory", None, None, None).is_ok());
        }
        // Mallory is over her own rate however often she tries…
        for _ in 0..10 {
            let over = l.admit("mallory", None, None, None).err().map(|o| o.reason);
            assert_eq!(over, Some("rate limit (per principal)"));
        }
        // …and what the others share is still there: 5 − 3 = 2.
        assert!(l.admit("alice", None, None, None).is_ok());
        assert!(l.admit("bob", None, None, None).is_ok());
        let over = l.admit("carol", None, None, None).err().map(|o| o.reason);
        assert_eq!(over, Some("rate limit (global)"));
    }
}
