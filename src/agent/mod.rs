//! `flotilla agent`: an executor instance. Connects to the server over WebSocket,
//! registers its capabilities and slots, heartbeats, runs each assigned argv as a child
//! process without a shell in its own process group, streams stdout and stderr as binary
//! chunks and reports how the process ended. A remote agent is the same program.
//!
//! Flow control: at most [`WINDOW`] chunks of an attempt may be unacknowledged; past that
//! the agent stops reading the child's pipes, so a fast writer is slowed, never dropped.
//! If the connection drops, every running attempt is killed (the server requeues it) and
//! the agent reconnects with backoff.

mod attempt;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use flotilla_actors::domain::{Capability, InstanceId};
use flotilla_actors::protocol::{AgentMsg, AttemptKey, ServerMsg, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub use attempt::WINDOW;
use attempt::{AttemptCtl, Outgoing};

/// How the agent was started.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: String,
    pub token: String,
    pub id: InstanceId,
    pub capabilities: Vec<Capability>,
    pub slots: u32,
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

/// Runs the agent until the server refuses it.
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&config).await {
            Ok(Ended::Refused(reason)) => bail!("the server refused this agent: {reason}"),
            Ok(Ended::Dropped) => {
                tracing::warn!("connection to the server dropped; reconnecting");
                backoff = Duration::from_millis(100);
            }
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot reach the server"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

enum Ended {
    Refused(String),
    Dropped,
}

async fn session(config: &AgentConfig) -> anyhow::Result<Ended> {
    let mut request = ws_url(&config.server, "/v1/agents/connect")?
        .into_client_request()
        .context("building the connect request")?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", config.token)
            .parse()
            .context("the agent token is not a valid header value")?,
    );
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .context("connecting")?;
    let (mut sink, mut stream) = ws.split();
    let hello = AgentMsg::Hello {
        protocol: PROTOCOL_VERSION,
        instance: config.id.clone(),
        capabilities: config.capabilities.clone(),
        slots: config.slots,
        pid: std::process::id(),
    };
    sink.send(Message::text(serde_json::to_string(&hello)?))
        .await?;
    let heartbeat = match next_control(&mut stream).await? {
        Some(ServerMsg::Welcome { heartbeat_ms }) => Duration::from_millis(heartbeat_ms.max(100)),
        Some(ServerMsg::Refused { reason }) => return Ok(Ended::Refused(reason)),
        Some(other) => bail!("expected welcome, got {other:?}"),
        None => return Ok(Ended::Dropped),
    };
    tracing::info!(instance = %config.id, "registered with the server");

    // One writer owns the socket; everything else sends through `out`.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let writer = tokio::spawn(async move {
        while let Some(first) = out_rx.recv().await {
            if sink.feed(first.into_message()).await.is_err() {
                return;
            }
            while let Ok(more) = out_rx.try_recv() {
                if sink.feed(more.into_message()).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });

    let mut running: HashMap<AttemptKey, Arc<AttemptCtl>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<AttemptKey>();
    let mut tick = tokio::time::interval(heartbeat);
    let ended = loop {
        tokio::select! {
            msg = next_control(&mut stream) => match msg {
                Ok(Some(ServerMsg::Assign(a))) => {
                    let key = a.attempt;
                    let ctl = Arc::new(AttemptCtl::new());
                    running.insert(key, ctl.clone());
                    let out = out_tx.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        attempt::run(a, ctl, out).await;
                        let _ = done.send(key);
                    });
                }
                Ok(Some(ServerMsg::Cancel { attempt })) => {
                    if let Some(ctl) = running.get(&attempt) {
                        ctl.cancel();
                    }
                }
                Ok(Some(ServerMsg::Ack { attempt, seq })) => {
                    if let Some(ctl) = running.get(&attempt) {
                        ctl.acked(seq);
                    }
                }
                Ok(Some(ServerMsg::Refused { reason })) => {
                    // After a welcome, a refusal ends this connection only (e.g. the
                    // server saw silence); the agent reconnects.
                    tracing::warn!(reason = %reason, "server closed the connection");
                    break Ended::Dropped;
                }
                Ok(Some(ServerMsg::Welcome { .. })) => {}
                Ok(None) | Err(_) => break Ended::Dropped,
            },
            Some(key) = done_rx.recv() => {
                running.remove(&key);
            }
            _ = tick.tick() => {
                let beat = AgentMsg::Heartbeat { running: running.keys().copied().collect() };
                if out_tx.send(Outgoing::Control(beat)).is_err() {
                    break Ended::Dropped;
                }
            }
        }
    };
    // The server requeues what we were running; make sure none of it keeps going here.
    for ctl in running.values() {
        ctl.abandon();
    }
    drop(out_tx);
    writer.abort();
    Ok(ended)
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
