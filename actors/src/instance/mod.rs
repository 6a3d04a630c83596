//! Instance: one connected `flotilla agent`, seen from the server.
//!
//! Owns the connection's state: whether it has said hello, and which attempts it was
//! assigned (so each output chunk finds its handle). The transport (a WebSocket in
//! `src/http`) feeds it messages and sends what it returns; the instance forwards output
//! through the guard to the frame log, which acknowledges chunks once durable, and
//! lifecycle events to the dispatcher. An attempt's guarded output is all queued on the
//! frame log before the dispatcher hears that it ended, so the status frame stays last.
//! When the connection ends, the dispatcher is told the instance is gone and requeues
//! what it was running; nothing else is lost.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::dispatcher::messages::{Connect, ConnectError, FromInstance, Welcomed};
use crate::domain::{HandleId, InstanceId};
use crate::engine::Engine;
use crate::exec_handle::AckTo;
use crate::protocol::{
    AgentMsg, AttemptKey, OutputChunk, Resume, ServerMsg, ACK_WINDOW, FEATURE_BATCH, FEATURE_SLOTS,
    PROTOCOL_VERSION, UNACKED_BYTES,
};

/// The schema every agent message is checked against.
pub const AGENT_MESSAGE_SCHEMA: &str = "flotilla.agent-message/2.1.0";

/// Why a connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("message does not match {AGENT_MESSAGE_SCHEMA}: {0}")]
    Invalid(String),
    #[error("expected hello first")]
    NoHello,
    #[error("hello sent twice")]
    DoubleHello,
    #[error("protocol version {0} is not supported (want {PROTOCOL_VERSION})")]
    Version(u32),
    #[error("slots must be between 1 and 1024, got {0}")]
    Slots(u32),
    #[error("this token connects instance {bound} only, not {claimed}")]
    NotYours {
        bound: InstanceId,
        claimed: InstanceId,
    },
    #[error("chunk for attempt {0}, which this connection was not assigned")]
    UnknownAttempt(AttemptKey),
    #[error("attempt {attempt} exceeded the acknowledgement window: {chunks} chunks ({bytes} bytes) unacknowledged, at most {ACK_WINDOW} chunks and {UNACKED_BYTES} bytes")]
    Window {
        attempt: AttemptKey,
        chunks: u64,
        bytes: usize,
    },
    #[error(transparent)]
    Refused(#[from] ConnectError),
    #[error("the server is shutting down")]
    Stopped,
}

impl SessionError {
    /// True if the agent may try again later (the cause can pass on its own).
    pub fn retryable(&self) -> bool {
        matches!(self, SessionError::Refused(ConnectError::InUse { .. }))
    }
}

/// Channels the transport must drain and send to the agent.
pub struct Outbox {
    /// Assignments, cancels (from the dispatcher).
    pub control: mpsc::UnboundedReceiver<ServerMsg>,
    /// Durable acknowledgements (from the frame log), to send as [`ServerMsg::Ack`].
    pub acks: mpsc::UnboundedReceiver<(AttemptKey, u64)>,
}

/// One attempt this connection carries output for.
struct Open {
    handle: HandleId,
    /// The last chunk seq already in the log when the attempt was (re-)attached: chunks
    /// up to it are dropped (a re-attached agent may resend what a crash left
    /// unacknowledged).
    after: u64,
    /// The highest seq acknowledged to the agent.
    acked: u64,
    /// Chunks received and not yet acknowledged: (seq, bytes).
    unacked: VecDeque<(u64, usize)>,
    unacked_bytes: usize,
    /// Output bytes received on this connection, and the most the attempt may write.
    written: u64,
    cap: u64,
}

impl Open {
    fn new(handle: HandleId, after: u64, cap: u64) -> Self {
        Self {
            handle,
            after,
            acked: after,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            written: 0,
            cap,
        }
    }
}

pub struct InstanceSession {
    engine: Engine,
    registered: Option<(InstanceId, u64)>,
    /// The attempts this connection carries output for, by key.
    attempts: HashMap<AttemptKey, Open>,
    /// Attempts fenced on this connection: what still arrives of them is dropped.
    fenced: HashSet<AttemptKey>,
    /// The instance the connection's token was minted for, if it names one.
    bound: Option<InstanceId>,
    /// The agent named [`FEATURE_BATCH`] in its hello.
    batching: bool,
    /// Attempts that ended on the agent whose end waits for their output to be on disk.
    pending_exits: Arc<Mutex<HashSet<AttemptKey>>>,
    control_tx: mpsc::UnboundedSender<ServerMsg>,
    ack_tx: mpsc::UnboundedSender<(AttemptKey, u64)>,
}

impl InstanceSession {
    /// A session for a connection whose token is bound to `bound` (any instance if
    /// `None`).
    pub fn new(engine: Engine, bound: Option<InstanceId>) -> (Self, Outbox) {
        let (control_tx, control) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        (
            Self {
                engine,
                registered: None,
                attempts: HashMap::new(),
                fenced: HashSet::new(),
                bound,
                batching: false,
                pending_exits: Arc::default(),
                control_tx,
                ack_tx,
            },
            Outbox { control, acks },
        )
    }

    /// Handles a control message; returns a direct reply to send, if any. The message is
    /// checked against its schema in that schema's validation mode first.
    pub async fn on_text(&mut self, text: &str) -> Result<Option<ServerMsg>, SessionError> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SessionError::Malformed(e.to_string()))?;
        self.engine
            .control
            .inspect(AGENT_MESSAGE_SCHEMA, &doc)
            .map_err(|errors| {
                let said: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{} ({}): {}", e.pointer, e.rule, e.message))
                    .collect();
                SessionError::Invalid(said.join("; "))
            })?;
        let msg: AgentMsg =
            serde_json::from_value(doc).map_err(|e| SessionError::Malformed(e.to_string()))?;
        let AgentMsg::Batch { messages } = msg else {
            return self.on_msg(msg).await;
        };
        // Registered first, so that a hello inside is refused as a second one (and a
        // batch inside as malformed) by the one handler of single messages.
        if self.registered.is_none() {
            return Err(SessionError::NoHello);
        }
        for msg in messages {
            self.on_msg(msg).await?;
        }
        Ok(None)
    }

    /// True if the agent takes several messages in one [`ServerMsg::Batch`].
    pub fn batching(&self) -> bool {
        self.batching
    }

    /// One message that is not a batch.
    async fn on_msg(&mut self, msg: AgentMsg) -> Result<Option<ServerMsg>, SessionError> {
        match (msg, &self.registered) {
            (
                AgentMsg::Hello {
                    protocol,
                    instance,
                    capabilities,
                    slots,
                    pid,
                    held,
                    features,
                },
                None,
            ) => {
                if protocol != PROTOCOL_VERSION {
                    return Err(SessionError::Version(protocol));
                }
                if !(1..=1024).contains(&slots) {
                    return Err(SessionError::Slots(slots));
                }
                if let Some(bound) = self.bound.as_ref().filter(|b| **b != instance) {
                    return Err(SessionError::NotYours {
                        bound: bound.clone(),
                        claimed: instance,
                    });
                }
                let session = self.control_tx.clone();
                let id = instance.clone();
                let Welcomed {
                    conn,
                    resumed,
                    fenced,
                } = self
                    .engine
                    .connect(|reply| Connect {
                        instance: id,
                        capabilities: capabilities.into_iter().collect::<BTreeSet<_>>(),
                        slots,
                        pid,
                        held,
                        holds_ahead: features.iter().any(|f| f == FEATURE_SLOTS),
                        session,
                        reply,
                    })
                    .await
                    .map_err(|_| SessionError::Stopped)??;
                self.registered = Some((instance, conn));
                self.batching = features.iter().any(|f| f == FEATURE_BATCH);
                let mut resume = Vec::with_capacity(resumed.len());
                for (assignment, after) in resumed {
                    self.engine.guard.open(&assignment);
                    let cap = self.output_cap(&assignment);
                    self.attempts.insert(
                        assignment.attempt,
                        Open::new(assignment.handle.clone(), after, cap),
                    );
                    resume.push(Resume {
                        attempt: assignment.attempt,
                        after,
                    });
                }
                let fleet = &self.engine.config.fleet;
                Ok(Some(ServerMsg::Welcome {
                    heartbeat_ms: fleet.heartbeat_ms,
                    grace_ms: fleet.reattach_grace_ms,
                    resume,
                    fenced,
                    features: vec![FEATURE_BATCH.to_owned()],
                }))
            }
            (AgentMsg::Hello { .. }, Some(_)) => Err(SessionError::DoubleHello),
            (_, None) => Err(SessionError::NoHello),
            (AgentMsg::Heartbeat { mut running }, Some((id, conn))) => {
                let pending = self.pending_exits.lock().unwrap_or_else(|e| e.into_inner());
                running.extend(pending.iter().copied());
                drop(pending);
                self.engine
                    .instance_event(id.clone(), *conn, FromInstance::Heartbeat { running });
                Ok(None)
            }
            (AgentMsg::Started { attempt, pid }, Some((id, conn))) => {
                self.engine.instance_event(
                    id.clone(),
                    *conn,
                    FromInstance::Started { attempt, pid },
                );
                Ok(None)
            }
            (AgentMsg::Exited { attempt, outcome }, Some((id, conn))) => {
                if let Some(open) = self.attempts.remove(&attempt) {
                    self.engine.guard.close(&open.handle, attempt).await;
                }
                let exited = FromInstance::Exited { attempt, outcome };
                if !self.engine.log.failing() {
                    self.engine.instance_event(id.clone(), *conn, exited);
                    return Ok(None);
                }
                // While the disk refuses writes, an attempt is not recorded as ended
                // before its output is on disk. Its end waits aside (the agent's other
                // messages go on), and its lease is renewed meanwhile as if the agent
                // still ran it.
                self.pending_exits
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(attempt);
                let (engine, pending, id, conn) = (
                    self.engine.clone(),
                    self.pending_exits.clone(),
                    id.clone(),
                    *conn,
                );
                tokio::spawn(async move {
                    if engine.log.durable().await.is_ok() {
                        engine.instance_event(id, conn, exited);
                    }
                    pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&attempt);
                });
                Ok(None)
            }
            (AgentMsg::Batch { .. }, Some(_)) => {
                Err(SessionError::Malformed("a batch inside a batch".into()))
            }
        }
    }

    /// Handles an output chunk: hands it to the guard, which queues what it releases on
    /// the frame log, to be acknowledged once durable.
    pub fn on_binary(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        if self.registered.is_none() {
            return Err(SessionError::NoHello);
        }
        let chunk =
            OutputChunk::decode(bytes).map_err(|e| SessionError::Malformed(e.to_string()))?;
        if self.fenced.contains(&chunk.attempt) {
            return Ok(()); // no longer the task's: discarded
        }
        let open = self
            .attempts
            .get_mut(&chunk.attempt)
            .ok_or(SessionError::UnknownAttempt(chunk.attempt))?;
        if chunk.seq <= open.after {
            return Ok(()); // on disk before the restart
        }
        // The agent keeps at most a window of chunks unacknowledged; one that does not
        // would make the server hold whatever it sends.
        let bytes = open.unacked_bytes + chunk.data.len();
        if chunk.seq > open.acked + ACK_WINDOW || bytes > UNACKED_BYTES {
            return Err(SessionError::Window {
                attempt: chunk.attempt,
                chunks: chunk.seq - open.acked,
                bytes,
            });
        }
        open.unacked.push_back((chunk.seq, chunk.data.len()));
        open.unacked_bytes = bytes;
        let ack = AckTo {
            tx: self.ack_tx.clone(),
            attempt: chunk.attempt,
            seq: chunk.seq,
        };
        // Past its cap an attempt is stopped, once; what it still sends is acknowledged
        // in order (an empty frame carries the acknowledgement) but not kept.
        let before = open.written;
        open.written += chunk.data.len() as u64;
        let data = if open.written <= open.cap {
            chunk.data.to_vec()
        } else {
            if before <= open.cap {
                let cap = open.cap;
                self.engine.stop_attempt(
                    chunk.attempt,
                    format!("its output passed {cap} bytes (streaming.maxOutputBytes); the rest was not kept"),
                );
            }
            Vec::new()
        };
        self.engine
            .guard
            .chunk(&open.handle, chunk.attempt, chunk.kind, data, ack);
        Ok(())
    }

    /// The most output bytes an attempt may write: its request's cap, within the
    /// server's.
    fn output_cap(&self, a: &crate::protocol::Assignment) -> u64 {
        let server = self.engine.config.streaming.max_output_bytes;
        a.max_output_bytes.map_or(server, |c| c.min(server))
    }

    /// Must see every acknowledgement before it goes out to the agent.
    pub fn on_acked(&mut self, attempt: AttemptKey, seq: u64) {
        let Some(open) = self.attempts.get_mut(&attempt) else {
            return;
        };
        open.acked = open.acked.max(seq);
        while let Some(&(s, bytes)) = open.unacked.front() {
            if s > seq {
                break;
            }
            open.unacked.pop_front();
            open.unacked_bytes -= bytes;
        }
    }

    /// Must see every message the dispatcher sends before it goes out.
    pub fn on_outgoing(&mut self, msg: &ServerMsg) {
        match msg {
            ServerMsg::Assign(a) => {
                self.engine.guard.open(a);
                let cap = self.output_cap(a);
                self.attempts
                    .insert(a.attempt, Open::new(a.handle.clone(), 0, cap));
            }
            ServerMsg::Fence { attempts, .. } => {
                for attempt in attempts {
                    self.fenced.insert(*attempt);
                    if let Some(Open { handle, .. }) = self.attempts.remove(attempt) {
                        let guard = self.engine.guard.clone();
                        let attempt = *attempt;
                        tokio::spawn(async move { guard.close(&handle, attempt).await });
                    }
                }
            }
            _ => {}
        }
    }

    /// The connection ended (`silent`: closed for saying nothing for a lease timeout):
    /// what the guard holds of its attempts is released, then the dispatcher requeues
    /// what this instance was running.
    pub async fn close(self, silent: bool) {
        for (attempt, open) in &self.attempts {
            self.engine.guard.close(&open.handle, *attempt).await;
        }
        if let Some((id, conn)) = self.registered {
            self.engine
                .instance_event(id, conn, FromInstance::Gone { silent });
        }
    }
}
