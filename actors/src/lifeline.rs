//! Lifelines: how the engine sees the death of an actor it started.
//!
//! Each core actor (dispatcher, store writer, frame-log writer, manifest writer) holds a
//! [`Lifeline`] for as long as it runs. When it ends — its loop returned, or it panicked
//! and unwound — the lifeline's drop reports a [`Death`] to the engine's [`Watchdog`].
//! None of these actors can be rebuilt in place without losing what it held, so the
//! edge that owns the process logs the death and exits non-zero; the next start runs the
//! ordinary recovery path.

use tokio::sync::mpsc;

/// A core actor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    pub actor: &'static str,
    /// True if it ended by a panic (else its loop returned: e.g. a write error).
    pub panicked: bool,
}

impl std::fmt::Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.panicked { "panicked" } else { "stopped" };
        write!(f, "the {} {how}", self.actor)
    }
}

/// Held by a running actor; reports its death when dropped.
pub struct Lifeline {
    actor: &'static str,
    tx: Option<mpsc::UnboundedSender<Death>>,
}

impl Lifeline {
    /// A lifeline nobody watches (tests that start one actor alone).
    pub fn unwatched(actor: &'static str) -> Self {
        Self { actor, tx: None }
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Death {
                actor: self.actor,
                panicked: std::thread::panicking(),
            });
        }
    }
}

/// Receives the deaths of the actors whose lifelines it handed out.
pub struct Watchdog {
    tx: mpsc::UnboundedSender<Death>,
    rx: mpsc::UnboundedReceiver<Death>,
}

impl Default for Watchdog {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self { tx, rx }
    }
}

impl Watchdog {
    pub fn lifeline(&self, actor: &'static str) -> Lifeline {
        Lifeline {
            actor,
            tx: Some(self.tx.clone()),
        }
    }

    /// Waits for the first death.
    pub async fn death(&mut self) -> Death {
        // The watchdog holds a sender itself, so the channel never closes.
        match self.rx.recv().await {
            Some(d) => d,
            None => std::future::pending().await,
        }
    }
}

/// True if a debug build was asked to kill `actor` (`FLOTILLA_TEST_FAULT=<actor>`), so
/// the tests can see what a real death does. Always false in release builds.
pub fn fault_injected(actor: &str) -> bool {
    cfg!(debug_assertions) && std::env::var("FLOTILLA_TEST_FAULT").is_ok_and(|v| v == actor)
}
