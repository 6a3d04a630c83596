//! `flotilla agent`: an executor instance. Connects to the server over WebSocket,
//! registers its capabilities and slots, heartbeats, runs each assigned argv as a child
//! process without a shell in its own process group, streams stdout and stderr as binary
//! chunks and reports how the process ended. A remote agent is the same program.
//!
//! Flow control: at most [`WINDOW`] chunks of an attempt may be unacknowledged; past that
//! the agent stops reading the child's pipes, so a fast writer is slowed, never dropped.
//! If the connection drops, attempts keep running and their unacknowledged output is
//! kept (a window at most); the agent reconnects with backoff and offers them back in
//! `hello`. A server that recovered them after a restart takes them back and output
//! continues where the log ends; anything else is fenced and killed. An agent that has no
//! server for the re-attach grace kills what it runs (a partitioned agent keeps no
//! duplicate), and a local agent then exits.

mod attempt;
pub mod reaper;
pub mod user;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flotilla_actors::domain::{Capability, InstanceId};
use flotilla_actors::fleet::DEFAULT_REATTACH_GRACE_MS;
use flotilla_actors::protocol::{
    AgentMsg, AttemptKey, HeldAttempt, ServerMsg, FEATURE_BATCH, FEATURE_SLOTS, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub use attempt::WINDOW;

/// Longest wait for a server to accept a connection or answer hello.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// Most messages in one batch (the schema allows more).
const MAX_BATCH: usize = 1024;
use attempt::{AttemptCtl, Outgoing};

/// Where the server is.
#[derive(Debug, Clone)]
pub enum ServerAddr {
    /// A fixed base URL.
    Url(String),
    /// A file holding the base URL, read again before each connection: a local agent
    /// finds its server there after the server restarted on another port.
    File(PathBuf),
}

impl ServerAddr {
    fn resolve(&self) -> anyhow::Result<String> {
        match self {
            ServerAddr::Url(u) => Ok(u.clone()),
            ServerAddr::File(path) => Ok(std::fs::read_to_string(path)
                .with_context(|| format!("reading the server address from {}", path.display()))?
                .trim()
                .to_owned()),
        }
    }
}

/// How the agent was started.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: ServerAddr,
    pub token: String,
    pub id: InstanceId,
    pub capabilities: Vec<Capability>,
    pub slots: u32,
    /// Exit once the server has been gone for the re-attach grace (local agents: the
    /// next server starts its own).
    pub exit_when_orphaned: bool,
    /// The user tasks run as, when not the agent's own (see [`user::for_agent`]).
    pub run_as: Option<user::TaskUser>,
}

/// The WebSocket URL of the agent route for a server base URL.
pub fn ws_url(server: &str, path: &str) -> anyhow::Result<String> {
    let base = server.trim_end_matches('/');
    let rest = if let Some(r) = base.strip_prefix("http://") {
        format!("ws://{r}")
    } else if let Some(r) = base.strip_prefix("https://") {
        format!("wss://{r}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_owned()
    } else {
        bail!("server URL {server:?} must start with http:// or https://");
    };
    Ok(format!("{rest}{path}"))
}

/// What the agent keeps across connections: its attempts, and when it last had a server.
struct Held {
    attempts: HashMap<AttemptKey, Arc<AttemptCtl>>,
    /// One permit per slot: an assignment beyond the free slots (the server sends the
    /// next ones ahead when tasks are short) waits here and starts the moment one frees.
    slots: Arc<tokio::sync::Semaphore>,
    /// How long attempts may run without a server (from the last welcome).
    grace: Duration,
    /// Kills the attempts' process groups if this agent dies.
    reaper: Arc<std::sync::Mutex<reaper::Reaper>>,
    run_as: Option<Arc<user::TaskUser>>,
}

impl Held {
    /// Kills every attempt (they are nobody's any more) and forgets them.
    fn abandon_all(&mut self) {
        for ctl in self.attempts.values() {
            ctl.abandon();
            ctl.kill_now();
        }
        self.attempts.clear();
    }
}

/// Runs the agent until the server refuses it for good (or, for a local agent, until
/// its server has been gone for the re-attach grace).
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let mut held = Held {
        attempts: HashMap::new(),
        slots: Arc::new(tokio::sync::Semaphore::new(config.slots.max(1) as usize)),
        grace: Duration::from_millis(DEFAULT_REATTACH_GRACE_MS),
        reaper: Arc::new(std::sync::Mutex::new(reaper::Reaper::start())),
        run_as: config.run_as.clone().map(Arc::new),
    };
    let mut backoff = Duration::from_millis(100);
    let mut alone_since: Option<Instant> = None;
    loop {
        let result = session(&config, &mut held, &mut alone_since).await;
        for ctl in held.attempts.values() {
            ctl.detach();
        }
        match result {
            Ok(Ended::Refused(reason, false)) => {
                held.abandon_all();
                bail!("the server refused this agent: {reason}");
            }
            Ok(Ended::Refused(reason, true)) => {
                tracing::warn!(reason = %reason, "the server refused this agent for now; retrying")
            }
            Ok(Ended::Dropped) => {
                tracing::warn!(
                    running = held.attempts.len(),
                    "connection to the server dropped; reconnecting"
                );
                backoff = Duration::from_millis(100);
            }
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot reach the server"),
        }
        let since = *alone_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= held.grace {
            if !held.attempts.is_empty() {
                tracing::warn!(
                    attempts = held.attempts.len(),
                    grace_ms = held.grace.as_millis() as u64,
                    "no server within the re-attach grace; killing what this agent runs"
                );
                held.abandon_all();
            }
            if config.exit_when_orphaned {
                tracing::warn!("no server within the re-attach grace; a local agent exits");
                return Ok(());
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

enum Ended {
    /// Refused, and whether to try again.
    Refused(String, bool),
    Dropped,
}

/// One connection: hello (offering back what it holds), welcome, then messages until it
/// ends. `alone_since` is cleared once a server welcomed this agent.
async fn session(
    config: &AgentConfig,
    held: &mut Held,
    alone_since: &mut Option<Instant>,
) -> anyhow::Result<Ended> {
    let server = config.server.resolve()?;
    let mut request = ws_url(&server, "/v1/agents/connect")?
        .into_client_request()
        .context("building the connect request")?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", config.token)
            .parse()
            .context("the agent token is not a valid header value")?,
    );
    // A server that does not answer (a partition) must not hold the grace clock still.
    let (ws, _) = tokio::time::timeout(
        CONNECT_LIMIT,
        tokio_tungstenite::connect_async_with_config(request, None, true),
    )
    .await
    .context("connecting: no answer")?
    .context("connecting")?;
    let (mut sink, mut stream) = ws.split();
    let hello = AgentMsg::Hello {
        protocol: PROTOCOL_VERSION,
        instance: config.id.clone(),
        capabilities: config.capabilities.clone(),
        slots: config.slots,
        pid: std::process::id(),
        held: held
            .attempts
            .iter()
            .map(|(k, ctl)| HeldAttempt {
                attempt: *k,
                acked: ctl.acked_seq(),
            })
            .collect(),
        features: vec![FEATURE_BATCH.into(), FEATURE_SLOTS.into()],
    };
    sink.send(Message::text(serde_json::to_string(&hello)?))
        .await?;
    let welcome = tokio::time::timeout(CONNECT_LIMIT, next_control(&mut stream))
        .await
        .context("waiting for welcome: no answer")??;
    let (heartbeat, resume, fenced, batching) = match welcome {
        Some(ServerMsg::Welcome {
            heartbeat_ms,
            grace_ms,
            resume,
            fenced,
            features,
        }) => {
            held.grace = Duration::from_millis(grace_ms.max(1));
            let batching = features.iter().any(|f| f == FEATURE_BATCH);
            (
                Duration::from_millis(heartbeat_ms.max(100)),
                resume,
                fenced,
                batching,
            )
        }
        Some(ServerMsg::Refused { reason, retry }) => return Ok(Ended::Refused(reason, retry)),
        Some(other) => bail!("expected welcome, got {other:?}"),
        None => return Ok(Ended::Dropped),
    };
    *alone_since = None;
    tracing::info!(instance = %config.id, resumed = resume.len(), fenced = fenced.len(), "registered with the server");

    // One writer owns the socket; everything else sends through `out`. What is queued
    // when it wakes goes out in one flush, consecutive control messages as one batch if
    // the server takes batches; nothing waits for company.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let writer = tokio::spawn(async move {
        let mut pending = Vec::new();
        while let Some(first) = out_rx.recv().await {
            let mut next = Some(first);
            while let Some(item) = next.take().or_else(|| out_rx.try_recv().ok()) {
                let sent = match item {
                    Outgoing::Control(m) if batching => {
                        pending.push(m);
                        if pending.len() < MAX_BATCH {
                            Ok(())
                        } else {
                            feed_controls(&mut sink, &mut pending).await
                        }
                    }
                    other => match feed_controls(&mut sink, &mut pending).await {
                        Ok(()) => sink.feed(other.into_message()).await,
                        Err(e) => Err(e),
                    },
                };
                if sent.is_err() {
                    return;
                }
            }
            if feed_controls(&mut sink, &mut pending).await.is_err() || sink.flush().await.is_err()
            {
                return;
            }
        }
    });

    // What the server took back continues on this connection; the rest is killed.
    let mut taken: HashMap<AttemptKey, u64> = resume.iter().map(|r| (r.attempt, r.after)).collect();
    held.attempts.retain(|key, ctl| match taken.remove(key) {
        Some(after) => {
            ctl.attach(out_tx.clone(), after);
            true
        }
        None => {
            let why = if fenced.contains(key) {
                "fenced by the server"
            } else {
                "not taken back by the server"
            };
            tracing::warn!(attempt = key, reason = why, "killing a held attempt");
            ctl.abandon();
            false
        }
    });

    let mut tick = tokio::time::interval(heartbeat);
    let ended = loop {
        tokio::select! {
            msg = next_control(&mut stream) => match msg {
                Ok(Some(ServerMsg::Batch { messages })) => {
                    if let Some(ended) = messages.into_iter().find_map(|m| on_server_msg(m, held, &out_tx)) {
                        break ended;
                    }
                }
                Ok(Some(msg)) => {
                    if let Some(ended) = on_server_msg(msg, held, &out_tx) {
                        break ended;
                    }
                }
                Ok(None) | Err(_) => break Ended::Dropped,
            },
            _ = tick.tick() => {
                // What still runs; an attempt that ended is out of the heartbeat, and kept
                // only until the server says its outcome is recorded.
                let running = held.attempts.iter().filter(|(_, c)| !c.reported()).map(|(k, _)| *k).collect();
                let beat = AgentMsg::Heartbeat { running };
                if out_tx.send(Outgoing::Control(beat)).is_err() {
                    break Ended::Dropped;
                }
            }
        }
    };
    drop(out_tx);
    writer.abort();
    Ok(ended)
}

/// Acts on one server message (not a batch); `Some` if it ends the connection.
fn on_server_msg(
    msg: ServerMsg,
    held: &mut Held,
    out_tx: &mpsc::UnboundedSender<Outgoing>,
) -> Option<Ended> {
    match msg {
        ServerMsg::Assign(a) => {
            let key = a.attempt;
            let ctl = Arc::new(AttemptCtl::new(key, out_tx.clone()));
            held.attempts.insert(key, ctl.clone());
            let runner = attempt::Runner {
                slots: held.slots.clone(),
                reaper: held.reaper.clone(),
                run_as: held.run_as.clone(),
            };
            tokio::spawn(attempt::run(a, ctl, runner));
        }
        ServerMsg::Cancel { attempt } => {
            if let Some(ctl) = held.attempts.get(&attempt) {
                ctl.cancel();
            }
        }
        ServerMsg::Ack { attempt, seq } => {
            if let Some(ctl) = held.attempts.get(&attempt) {
                ctl.acked(seq);
            }
        }
        ServerMsg::Done { attempt } => {
            held.attempts.remove(&attempt);
        }
        ServerMsg::Fence { attempts, reason } => {
            for attempt in attempts {
                if let Some(ctl) = held.attempts.remove(&attempt) {
                    tracing::warn!(attempt, reason = %reason, "attempt fenced by the server; killing it");
                    ctl.abandon();
                }
            }
        }
        ServerMsg::Refused { reason, .. } => {
            // After a welcome, a refusal ends this connection only (e.g. the server saw
            // silence); the agent reconnects.
            tracing::warn!(reason = %reason, "server closed the connection");
            return Some(Ended::Dropped);
        }
        ServerMsg::Welcome { .. } => {}
        ServerMsg::Batch { .. } => {
            tracing::warn!("ignoring a batch inside a batch");
        }
    }
    None
}

/// Sends what the writer gathered: nothing, one message, or a batch of them.
async fn feed_controls<S>(sink: &mut S, pending: &mut Vec<AgentMsg>) -> Result<(), S::Error>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let msg = match pending.len() {
        0 => return Ok(()),
        1 => pending.remove(0),
        _ => AgentMsg::Batch {
            messages: std::mem::take(pending),
        },
    };
    sink.feed(Outgoing::Control(msg).into_message()).await
}

/// The next control message, skipping pings; `None` when the socket closed.
async fn next_control<S>(stream: &mut S) -> anyhow::Result<Option<ServerMsg>>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(msg) = stream.next().await {
        match msg? {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .map(Some)
                    .with_context(|| format!("unreadable server message {t:?}"))
            }
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}
