//! Wire types: the only types that cross a socket.
//!
//! * Agent ↔ server (`/v1/agents/connect`): JSON text messages ([`AgentMsg`], [`ServerMsg`])
//!   for control, and binary messages ([`OutputChunk`]) for task output, so bytes are
//!   carried as they are, never re-encoded.
//! * Server → observer (`/v1/handles/{handle}/stream`): one JSON text message per
//!   [`ObserverFrame`].

use serde::{Deserialize, Serialize};

use crate::domain::{Capability, End, HandleId, InstanceId, TaskId, TaskState};

/// The protocol version an agent announces in `hello`; the server refuses others.
/// Version 2 added re-attach (`held`, `resume`, `fenced`), `fence` and `retry`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Features a peer may name in `hello` (the agent) or `welcome` (the server); each side
/// uses one only when the other named it too, so agents and servers of either age meet.
/// `batch`: several control messages in one [`AgentMsg::Batch`] / [`ServerMsg::Batch`].
pub const FEATURE_BATCH: &str = "batch";
/// `slots` (agents only): an assignment beyond the free slots waits on the agent until
/// one frees, so the server may send short tasks ahead.
pub const FEATURE_SLOTS: &str = "slots";

/// Most output chunks of one attempt an agent may have unacknowledged; the server closes
/// the connection of an agent that sends past it.
pub const ACK_WINDOW: u64 = 256;
/// Largest output chunk an agent sends.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Most unacknowledged output bytes of one attempt: a full window of full chunks.
pub const UNACKED_BYTES: usize = ACK_WINDOW as usize * CHUNK_BYTES;

/// Server-wide key of one attempt (a row of the attempts table), used on the agent wire.
pub type AttemptKey = u64;

/// Agent → server control messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMsg {
    /// First message on a connection.
    Hello {
        protocol: u32,
        instance: InstanceId,
        capabilities: Vec<Capability>,
        slots: u32,
        pid: u32,
        /// Attempts this agent still runs (or has finished but not yet reported) from an
        /// earlier connection: after a server restart it offers them back.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        held: Vec<HeldAttempt>,
        /// What the agent supports ([`FEATURE_BATCH`], [`FEATURE_SLOTS`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    /// Sent every heartbeat interval; lists the attempts the agent is running.
    Heartbeat { running: Vec<AttemptKey> },
    /// The attempt's process was spawned.
    Started { attempt: AttemptKey, pid: u32 },
    /// The attempt ended; sent after the last output chunk of that attempt.
    Exited {
        attempt: AttemptKey,
        outcome: Outcome,
    },
    /// Several of the messages above (never `hello` or another batch), in order; sent
    /// only to a server that named [`FEATURE_BATCH`].
    Batch { messages: Vec<AgentMsg> },
}

/// Server → agent control messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMsg {
    /// Reply to `hello`.
    Welcome {
        heartbeat_ms: u64,
        /// How long the agent keeps its attempts running without a server before it
        /// kills them (the re-attach grace).
        grace_ms: u64,
        /// Held attempts the server took back: resend output after `after`, then report.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resume: Vec<Resume>,
        /// Held attempts the server will not take back: kill them, report nothing.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fenced: Vec<AttemptKey>,
        /// What the server supports ([`FEATURE_BATCH`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    /// Run this.
    Assign(Assignment),
    /// Kill the attempt's process group.
    Cancel { attempt: AttemptKey },
    /// Every output chunk of `attempt` up to and including `seq` is durable.
    Ack { attempt: AttemptKey, seq: u64 },
    /// The attempt's outcome is recorded (or the attempt was not this agent's): the agent
    /// may forget it. Until then it offers it back after a reconnect.
    Done { attempt: AttemptKey },
    /// These attempts are no longer this agent's (their lease ran out, or the server
    /// never gave them to this connection): kill them and report nothing.
    Fence {
        attempts: Vec<AttemptKey>,
        reason: String,
    },
    /// The server refuses the connection (bad hello, wrong version, id in use). With
    /// `retry`, the cause may pass (an id still held by a dying connection): try again.
    Refused {
        reason: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retry: bool,
    },
    /// Several assign, cancel, ack, done and fence messages, in order; sent only to an
    /// agent that named [`FEATURE_BATCH`].
    Batch { messages: Vec<ServerMsg> },
}

/// An attempt an agent offers back in `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldAttempt {
    pub attempt: AttemptKey,
    /// The highest output seq the agent saw acknowledged.
    pub acked: u64,
}

/// An attempt the server took back, and the last output seq it holds durably.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub attempt: AttemptKey,
    pub after: u64,
}

/// One attempt of a task, as the agent needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    pub attempt: AttemptKey,
    pub task: TaskId,
    pub handle: HandleId,
    pub attempt_no: u32,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub timeout_ms: Option<u64>,
    /// For the server's guard only; never sent to the agent.
    #[serde(skip)]
    pub guard: crate::guard::GuardSpec,
    /// The request's own output cap, if it sets one; server-side only.
    #[serde(skip)]
    pub max_output_bytes: Option<u64>,
}

/// How an attempt ended, as the agent saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// The process exited on its own (or by a signal nobody at flotilla sent).
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The timeout expired and the process group was killed.
    TimedOut,
    /// A cancel arrived and the process group was killed.
    Cancelled,
    /// The process could not be started (no such program, bad cwd, …).
    SpawnFailed { message: String },
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Stdout,
    Stderr,
    /// The task's final status; always the last frame of a handle.
    Status,
    /// The privacy guard blocked output: JSON `{action, stream, rule, kind, digest, …}`
    /// stands where the output would have been.
    Guard,
    /// Frames this observer will not get ([`Gap`]); never stored, its offset is the last
    /// frame it stands for.
    Gap,
    /// Frames retention removed before the observer's resume point ([`Truncated`]); never
    /// stored, its offset is the one before the first frame still kept.
    Truncated,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
            StreamKind::Status => "status",
            StreamKind::Guard => "guard",
            StreamKind::Gap => "gap",
            StreamKind::Truncated => "truncated",
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            StreamKind::Stdout => 1,
            StreamKind::Stderr => 2,
            StreamKind::Status => 3,
            StreamKind::Guard => 4,
            StreamKind::Gap => 5,
            StreamKind::Truncated => 6,
        }
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(StreamKind::Stdout),
            2 => Some(StreamKind::Stderr),
            3 => Some(StreamKind::Status),
            4 => Some(StreamKind::Guard),
            5 => Some(StreamKind::Gap),
            6 => Some(StreamKind::Truncated),
            _ => None,
        }
    }
}

/// A binary agent → server message: `[version u8][kind u8][attempt u64 BE][seq u64 BE][data]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk<'a> {
    pub kind: StreamKind,
    pub attempt: AttemptKey,
    /// Dense per attempt, starting at 1; acknowledged cumulatively by [`ServerMsg::Ack`].
    pub seq: u64,
    pub data: &'a [u8],
}

/// Why a binary message is not an output chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("binary message of {0} bytes is shorter than the 18-byte header")]
    Short(usize),
    #[error("unsupported chunk version {0}")]
    Version(u8),
    #[error("unknown stream kind {0}")]
    Kind(u8),
}

const CHUNK_VERSION: u8 = 1;
const CHUNK_HEADER: usize = 18;

impl<'a> OutputChunk<'a> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHUNK_HEADER + self.data.len());
        out.push(CHUNK_VERSION);
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.attempt.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(self.data);
        out
    }

    pub fn decode(buf: &'a [u8]) -> Result<Self, ChunkError> {
        if buf.len() < CHUNK_HEADER {
            return Err(ChunkError::Short(buf.len()));
        }
        if buf[0] != CHUNK_VERSION {
            return Err(ChunkError::Version(buf[0]));
        }
        let kind = match StreamKind::from_byte(buf[1]) {
            Some(k @ (StreamKind::Stdout | StreamKind::Stderr)) => k,
            _ => return Err(ChunkError::Kind(buf[1])),
        };
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[at..at + 8]);
            u64::from_be_bytes(b)
        };
        Ok(OutputChunk {
            kind,
            attempt: word(2),
            seq: word(10),
            data: &buf[CHUNK_HEADER..],
        })
    }
}

/// The final status of a task, carried by its last frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinalStatus {
    #[serde(flatten)]
    pub end: End<TaskState>,
    pub attempts: u32,
}

/// One frame as an observer receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObserverFrame {
    pub handle: HandleId,
    /// Dense and monotonic per handle, starting at 1.
    pub offset: u64,
    pub attempt: u32,
    /// RFC 3339 time the server stored the frame.
    pub ts: String,
    pub kind: StreamKind,
    /// The bytes as UTF-8 text, or base64 when `encoding` is `base64`.
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Present on the `status` frame only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FinalStatus>,
    /// Present on the `gap` frame only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
    /// Present on the `truncated` frame only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
}

/// Frames `first..=last` of a handle that an observer does not get, and why. The gap
/// frame carries offset `last`, so resuming from it goes on after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gap {
    pub first: u64,
    pub last: u64,
    pub reason: GapReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GapReason {
    /// The records on disk failed their checksum: these frames are lost for everyone.
    Corrupt,
    /// The observer fell behind under the `drop` policy and was moved ahead.
    Dropped,
}

/// Retention removed a handle's frames before `first`, the first it still keeps (one
/// past its last offset when it keeps none). The truncated frame carries offset
/// `first - 1`, so resuming from it goes on at `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Truncated {
    pub first: u64,
    pub reason: TruncateReason,
}

/// Which retention limit removed a handle's first frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TruncateReason {
    /// The handle kept more than its byte limit (`retention.handle-max-bytes`).
    HandleBytes,
    /// The frames were older than `retention.max-age`.
    Age,
    /// The whole log was over its budget (`retention.budget-bytes`); its oldest
    /// segments went first.
    Budget,
    /// Removed before the server last started; which limit is not recorded (the index
    /// checkpoint that said so did not read).
    Removed,
}

impl TruncateReason {
    pub const ALL: [TruncateReason; 4] = [
        TruncateReason::HandleBytes,
        TruncateReason::Age,
        TruncateReason::Budget,
        TruncateReason::Removed,
    ];

    pub fn to_byte(self) -> u8 {
        match self {
            TruncateReason::HandleBytes => 1,
            TruncateReason::Age => 2,
            TruncateReason::Budget => 3,
            TruncateReason::Removed => 4,
        }
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.to_byte() == b)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TruncateReason::HandleBytes => "handle-bytes",
            TruncateReason::Age => "age",
            TruncateReason::Budget => "budget",
            TruncateReason::Removed => "removed",
        }
    }
}

impl ObserverFrame {
    /// The frame's bytes, decoding base64 where needed.
    pub fn bytes(&self) -> Vec<u8> {
        use base64::Engine;
        match self.encoding.as_deref() {
            Some("base64") => base64::engine::general_purpose::STANDARD
                .decode(&self.data)
                .unwrap_or_default(),
            _ => self.data.as_bytes().to_vec(),
        }
    }

    /// Text or base64 form of raw output bytes.
    pub fn encode_data(bytes: &[u8]) -> (String, Option<String>) {
        use base64::Engine;
        match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_owned(), None),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(bytes),
                Some("base64".to_owned()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_chunks_round_trip_and_reject_garbage() {
        let chunk = OutputChunk {
            kind: StreamKind::Stderr,
            attempt: 7,
            seq: 42,
            data: b"line\n",
        };
        let bytes = chunk.encode();
        assert_eq!(OutputChunk::decode(&bytes), Ok(chunk));
        assert_eq!(OutputChunk::decode(&bytes[..5]), Err(ChunkError::Short(5)));
        let mut bad = bytes.clone();
        bad[1] = 3;
        assert_eq!(OutputChunk::decode(&bad), Err(ChunkError::Kind(3)));
    }

    #[test]
    fn control_messages_have_stable_json() {
        let msg = ServerMsg::Ack { attempt: 3, seq: 9 };
        let text = serde_json::to_string(&msg).unwrap();
        assert_eq!(text, r#"{"type":"ack","attempt":3,"seq":9}"#);
        assert!(
            serde_json::from_str::<AgentMsg>(r#"{"type":"heartbeat","running":[],"x":1}"#).is_err()
        );
    }

    #[test]
    fn non_utf8_output_travels_as_base64() {
        let (data, enc) = ObserverFrame::encode_data(&[0xff, 0x00, b'a']);
        assert_eq!(enc.as_deref(), Some("base64"));
        let frame = ObserverFrame {
            handle: HandleId::parse("h-1").unwrap(),
            offset: 1,
            attempt: 1,
            ts: String::new(),
            kind: StreamKind::Stdout,
            data,
            encoding: enc,
            status: None,
            gap: None,
            truncated: None,
        };
        assert_eq!(frame.bytes(), vec![0xff, 0x00, b'a']);
    }
}
