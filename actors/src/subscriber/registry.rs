//! The observers connected now: who follows which handle, from where, under which
//! policy, and how much each was sent. It enforces the caps (one for the whole server,
//! one per handle) and answers `GET /v1/handles/{h}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::domain::{now_ms, rfc3339_ms, HandleId};
use crate::events::{Event, ObserverJoined, ObserverLeft};

/// What a lagging observer gets. A lagging observer is one more than
/// [`StreamingSettings::lag_limit`] frames behind the durable end of its handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Lossless: it reads from the log at its own pace until it is live again.
    CatchUp,
    /// It skips ahead to the live end, with a gap frame saying what it skipped.
    Drop,
    /// The connection is closed with the reason; it may resume from its last offset.
    Disconnect,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::CatchUp, Policy::Drop, Policy::Disconnect];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::CatchUp => "catch-up",
            Policy::Drop => "drop",
            Policy::Disconnect => "disconnect",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Limits of the observer side (`[streaming]` in flotilla.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamingSettings {
    /// Observers connected at once, over all handles.
    pub max_observers: usize,
    /// Observers of one handle at once, unless its request sets a lower
    /// `streaming.observers.maxSubscribers`.
    pub max_per_handle: u32,
    /// Frames behind the durable end at which an observer counts as lagging.
    pub lag_limit: u64,
    /// How long one frame may wait for the observer's socket before the observer is
    /// closed as stalled.
    pub write_timeout_ms: u64,
    /// A ping after this long without a frame; no answer within two of these closes.
    pub ping_interval_ms: u64,
    /// Most output bytes one attempt may write (a request may set less).
    pub max_output_bytes: u64,
}

impl Default for StreamingSettings {
    fn default() -> Self {
        Self {
            max_observers: 10_000,
            max_per_handle: 1_024,
            lag_limit: 4_096,
            write_timeout_ms: 30_000,
            ping_interval_ms: 15_000,
            max_output_bytes: 1 << 30,
        }
    }
}

/// Why an observer may not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the server has {limit} observers connected, its limit (streaming.max-observers)")]
    Server { limit: usize },
    #[error("handle {handle} has {limit} observers connected, its limit ({set_by})")]
    Handle {
        handle: HandleId,
        limit: u32,
        set_by: &'static str,
    },
}

/// One connected observer, as `GET /v1/handles/{h}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObserverView {
    pub id: String,
    pub joined_at: String,
    pub from: u64,
    /// The last offset it was sent.
    pub offset: u64,
    pub frames: u64,
    pub bytes: u64,
    pub policy: Policy,
}

/// One observer's session from join to leave.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub handle: HandleId,
    pub joined_ms: i64,
    pub from: u64,
    pub policy: Policy,
    offset: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    last_sent_ms: AtomicI64,
}

impl Session {
    fn view(&self) -> ObserverView {
        ObserverView {
            id: self.id.clone(),
            joined_at: rfc3339_ms(self.joined_ms),
            from: self.from,
            offset: self.offset.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            policy: self.policy,
        }
    }
}

/// A session as the store and the manifest record it: at its join (`left_ms` and
/// `reason` are `None`) and at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub handle: HandleId,
    pub joined_ms: i64,
    pub left_ms: Option<i64>,
    pub from: u64,
    pub last_offset: u64,
    pub frames: u64,
    pub bytes: u64,
    pub policy: Policy,
    pub reason: Option<String>,
}

/// Called at every join and every leave.
pub type OnChange = Arc<dyn Fn(SessionRecord) + Send + Sync>;

/// Every connected observer. Cheap to clone.
#[derive(Clone, Default)]
pub struct ObserverRegistry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    settings: StreamingSettings,
    live: Mutex<HashMap<HandleId, Vec<Arc<Session>>>>,
    count: AtomicUsize,
    next: AtomicU64,
    on_change: Option<OnChange>,
}

impl ObserverRegistry {
    /// `on_change` hears of every join and leave (to record them).
    pub fn new(settings: StreamingSettings, on_change: Option<OnChange>) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                on_change,
                ..Inner::default()
            }),
        }
    }

    pub fn settings(&self) -> &StreamingSettings {
        &self.inner.settings
    }

    /// Observers connected now.
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Admits an observer of `handle` from offset `from`, or refuses it when a cap is
    /// reached. `max_subscribers` is the handle's own cap from its request, if any.
    pub fn join(
        &self,
        handle: &HandleId,
        from: u64,
        policy: Policy,
        max_subscribers: Option<u32>,
    ) -> Result<Membership, JoinError> {
        let settings = &self.inner.settings;
        let mut live = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        if self.inner.count.load(Ordering::Relaxed) >= settings.max_observers {
            return Err(JoinError::Server {
                limit: settings.max_observers,
            });
        }
        let (limit, set_by) = match max_subscribers {
            Some(n) if n < settings.max_per_handle => {
                (n, "its request's streaming.observers.maxSubscribers")
            }
            _ => (
                settings.max_per_handle,
                "streaming.max-observers-per-handle",
            ),
        };
        let of_handle = live.entry(handle.clone()).or_default();
        if of_handle.len() >= limit as usize {
            return Err(JoinError::Handle {
                handle: handle.clone(),
                limit,
                set_by,
            });
        }
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms();
        let session = Arc::new(Session {
            id: format!("o-{now:x}-{n}"),
            handle: handle.clone(),
            joined_ms: now,
            from,
            policy,
            offset: AtomicU64::new(from),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_sent_ms: AtomicI64::new(now),
        });
        of_handle.push(session.clone());
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        drop(live);
        ObserverJoined {
            observer: &session.id,
            handle,
            from,
            policy: policy.as_str(),
        }
        .emit();
        let membership = Membership {
            registry: self.clone(),
            session,
            reason: Mutex::new(None),
        };
        if let Some(on_change) = &self.inner.on_change {
            on_change(membership.record(None));
        }
        Ok(membership)
    }

    /// The observers of `handle` connected now.
    pub fn of(&self, handle: &HandleId) -> Vec<ObserverView> {
        let live = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(handle)
            .map(|v| v.iter().map(|s| s.view()).collect())
            .unwrap_or_default()
    }

    fn remove(&self, session: &Arc<Session>) {
        let mut live = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = live.get_mut(&session.handle) {
            let before = v.len();
            v.retain(|s| !Arc::ptr_eq(s, session));
            if v.len() < before {
                self.inner.count.fetch_sub(1, Ordering::Relaxed);
            }
            if v.is_empty() {
                live.remove(&session.handle);
            }
        }
    }
}

/// An admitted observer. Dropping it ends the session: its place is freed and the
/// session reported, with the first reason given for its end.
pub struct Membership {
    registry: ObserverRegistry,
    session: Arc<Session>,
    reason: Mutex<Option<String>>,
}

impl Membership {
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The last offset it was sent (its `from` before the first).
    pub fn offset(&self) -> u64 {
        self.session.offset.load(Ordering::Relaxed)
    }

    /// When it was last sent a frame (or joined).
    pub fn last_sent_ms(&self) -> i64 {
        self.session.last_sent_ms.load(Ordering::Relaxed)
    }

    /// Counts a frame sent.
    pub fn sent(&self, offset: u64, bytes: usize) {
        let s = &self.session;
        s.offset.store(offset, Ordering::Relaxed);
        s.frames.fetch_add(1, Ordering::Relaxed);
        s.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        s.last_sent_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Says why the session ends; the first reason given is the one kept.
    pub fn ending(&self, reason: impl Into<String>) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason.into());
        }
    }

    /// The session as it stands; ended for `reason`, if given.
    fn record(&self, reason: Option<String>) -> SessionRecord {
        let s = &self.session;
        SessionRecord {
            id: s.id.clone(),
            handle: s.handle.clone(),
            joined_ms: s.joined_ms,
            left_ms: reason.is_some().then(now_ms),
            from: s.from,
            last_offset: s.offset.load(Ordering::Relaxed),
            frames: s.frames.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            policy: s.policy,
            reason,
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.registry.remove(&self.session);
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| "the connection closed".to_owned());
        ObserverLeft {
            observer: &self.session.id,
            handle: &self.session.handle,
            frames: self.session.frames.load(Ordering::Relaxed),
            reason: &reason,
        }
        .emit();
        let left = self.record(Some(reason));
        if let Some(on_change) = &self.registry.inner.on_change {
            on_change(left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_handle_and_for_the_server_and_leaving_frees_a_place() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let reg = ObserverRegistry::new(
            StreamingSettings {
                max_observers: 4,
                max_per_handle: 2,
                ..StreamingSettings::default()
            },
            Some(Arc::new(move |l: SessionRecord| {
                record.lock().unwrap().push(l)
            })),
        );
        let a = HandleId::parse("h-a").unwrap();
        let b = HandleId::parse("h-b").unwrap();
        let first = reg.join(&a, 0, Policy::CatchUp, None).unwrap();
        let _second = reg.join(&a, 5, Policy::Drop, None).unwrap();
        let err = reg.join(&a, 0, Policy::CatchUp, None).err().unwrap();
        assert!(matches!(err, JoinError::Handle { limit: 2, .. }), "{err}");
        let only = reg.join(&b, 0, Policy::CatchUp, Some(1)).unwrap();
        let err = reg.join(&b, 0, Policy::CatchUp, Some(1)).err().unwrap();
        assert!(err.to_string().contains("maxSubscribers"), "{err}");
        drop(only);
        let _b = reg.join(&b, 0, Policy::CatchUp, Some(1)).unwrap();
        // Without its request's cap, the handle takes the server's per-handle one.
        let _c = reg.join(&b, 0, Policy::CatchUp, None).unwrap();
        let err = reg.join(&a, 0, Policy::CatchUp, None).err().unwrap();
        assert_eq!(err, JoinError::Server { limit: 4 });
        first.sent(7, 100);
        assert_eq!(reg.of(&a)[0].offset, 7);
        first.ending("closed by the observer");
        first.ending("a later reason is not kept");
        drop(first);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.iter().filter(|l| l.left_ms.is_none()).count(),
            5,
            "five joins"
        );
        let first = seen.iter().find(|l| l.frames == 1).unwrap();
        assert_eq!((first.bytes, first.last_offset), (100, 7));
        assert_eq!(first.reason.as_deref(), Some("closed by the observer"));
        assert_eq!(reg.count(), 3);
        assert_eq!(reg.of(&a).len(), 1);
    }
}
