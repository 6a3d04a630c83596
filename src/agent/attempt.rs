//! One attempt on the agent: spawn, pump output as chunks, enforce timeout and cancel,
//! report the outcome.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_actors::protocol::{
    AgentMsg, Assignment, AttemptKey, Outcome, OutputChunk, StreamKind,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::reaper::Reaper;
use super::user::TaskUser;

/// Most unacknowledged chunks per attempt before the agent stops reading the pipes.
pub const WINDOW: u64 = flotilla_actors::protocol::ACK_WINDOW;
/// Largest chunk of output.
const CHUNK: usize = flotilla_actors::protocol::CHUNK_BYTES;
/// A partial line is sent after this long without more output.
const IDLE_FLUSH: Duration = Duration::from_millis(50);
/// Between SIGTERM and SIGKILL when a task is cancelled or times out.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the pipes to close once the process group is gone.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// What the socket writer sends.
pub enum Outgoing {
    Control(AgentMsg),
    Chunk(Vec<u8>),
}

impl Outgoing {
    pub fn into_message(self) -> Message {
        match self {
            // unwrap: an AgentMsg is plain data and always serialises.
            Outgoing::Control(m) => Message::text(serde_json::to_string(&m).unwrap()),
            Outgoing::Chunk(b) => Message::binary(b),
        }
    }
}

const RUN: u8 = 0;
const CANCEL: u8 = 1;
const ABANDON: u8 = 2;

/// The agent's handle on a running attempt. It outlives a connection: while the agent
/// has no server, output waits in `link` (at most a window of it), and after a re-attach
/// what the server lacks is sent again.
pub struct AttemptCtl {
    key: AttemptKey,
    acked: watch::Sender<u64>,
    stop: watch::Sender<u8>,
    link: Mutex<Link>,
    /// The process group, once spawned (0 before).
    pgid: std::sync::atomic::AtomicU32,
}

/// Where an attempt's messages go, and what the server has not acknowledged yet.
struct Link {
    /// The current connection's writer; `None` while the agent has no server.
    out: Option<mpsc::UnboundedSender<Outgoing>>,
    /// The last chunk seq handed out.
    sent: u64,
    /// Chunks sent but not acknowledged, encoded, oldest first.
    unacked: VecDeque<(u64, Vec<u8>)>,
    /// The outcome, kept until it reaches a server.
    outcome: Option<Outcome>,
    reported: bool,
}

impl Link {
    fn send(&mut self, msg: Outgoing) {
        if let Some(out) = &self.out {
            if out.send(msg).is_err() {
                self.out = None;
            }
        }
    }

    /// Sends the outcome if there is one to send and a connection to send it on.
    fn report(&mut self, key: AttemptKey) {
        if self.reported || self.out.is_none() {
            return;
        }
        if let Some(outcome) = self.outcome.clone() {
            self.send(Outgoing::Control(AgentMsg::Exited {
                attempt: key,
                outcome,
            }));
            self.reported = self.out.is_some();
        }
    }
}

impl AttemptCtl {
    pub fn new(key: AttemptKey, out: mpsc::UnboundedSender<Outgoing>) -> Self {
        Self {
            key,
            acked: watch::Sender::new(0),
            stop: watch::Sender::new(RUN),
            link: Mutex::new(Link {
                out: Some(out),
                sent: 0,
                unacked: VecDeque::new(),
                outcome: None,
                reported: false,
            }),
            pgid: std::sync::atomic::AtomicU32::new(0),
        }
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server holds every chunk up to `seq`: they need never be sent again.
    pub fn acked(&self, seq: u64) {
        {
            let mut link = self.link();
            while link.unacked.front().is_some_and(|(s, _)| *s <= seq) {
                link.unacked.pop_front();
            }
        }
        self.acked.send_if_modified(|a| {
            let newer = seq > *a;
            if newer {
                *a = seq;
            }
            newer
        });
    }

    /// The highest seq acknowledged so far.
    pub fn acked_seq(&self) -> u64 {
        *self.acked.borrow()
    }

    /// The connection is gone: keep running, keep output until a server takes it.
    pub fn detach(&self) {
        self.link().out = None;
    }

    /// A server took the attempt back holding every chunk up to `after`: send it the
    /// rest, then the outcome if the attempt ended meanwhile.
    pub fn attach(&self, out: mpsc::UnboundedSender<Outgoing>, after: u64) {
        self.acked(after);
        let mut link = self.link();
        link.out = Some(out);
        // Taken back: the server did not record the outcome, if it had one; say it again.
        link.reported = false;
        let pending: Vec<Vec<u8>> = link.unacked.iter().map(|(_, c)| c.clone()).collect();
        for chunk in pending {
            link.send(Outgoing::Chunk(chunk));
        }
        link.report(self.key);
    }

    /// The attempt ended: report it now if connected, else when a server takes it back.
    fn finish(&self, outcome: Outcome) {
        let mut link = self.link();
        link.outcome = Some(outcome);
        link.report(self.key);
    }

    /// True once the outcome was sent (it stays held until the server says `done`).
    pub fn reported(&self) -> bool {
        self.link().reported
    }

    fn send_control(&self, msg: AgentMsg) {
        self.link().send(Outgoing::Control(msg));
    }

    /// The server asked to cancel: kill and report.
    pub fn cancel(&self) {
        self.stop.send_if_modified(|s| {
            let first = *s == RUN;
            if first {
                *s = CANCEL;
            }
            first
        });
    }

    /// Not this agent's any more (fenced, or no server within the grace): kill and
    /// report nothing.
    pub fn abandon(&self) {
        self.stop.send_replace(ABANDON);
    }

    /// SIGKILL to the process group now (the agent is about to exit).
    pub fn kill_now(&self) {
        let pgid = self.pgid.load(std::sync::atomic::Ordering::Relaxed);
        if pgid != 0 {
            kill_group(pgid, libc::SIGKILL);
        }
    }
}

/// Numbers chunks densely across stdout and stderr and sends them in that order.
struct ChunkSender {
    ctl: Arc<AttemptCtl>,
    acked: watch::Receiver<u64>,
    stop: watch::Receiver<u8>,
}

impl ChunkSender {
    /// Sends one chunk once the window allows; false if the attempt was abandoned.
    async fn send(&self, kind: StreamKind, data: &[u8]) -> bool {
        let mut acked = self.acked.clone();
        let mut stop = self.stop.clone();
        loop {
            let sent = self.ctl.link().sent;
            if sent - *acked.borrow_and_update() < WINDOW {
                break;
            }
            tokio::select! {
                r = acked.changed() => if r.is_err() { return false },
                _ = until(&mut stop, |s| s == ABANDON) => return false,
            }
        }
        let mut link = self.ctl.link();
        link.sent += 1;
        let chunk = OutputChunk {
            kind,
            attempt: self.ctl.key,
            seq: link.sent,
            data,
        }
        .encode();
        let seq = link.sent;
        link.unacked.push_back((seq, chunk.clone()));
        link.send(Outgoing::Chunk(chunk));
        true
    }
}

/// Reads a pipe and sends it as chunks that end at line boundaries where possible.
async fn pump(mut pipe: impl AsyncRead + Unpin, kind: StreamKind, sender: Arc<ChunkSender>) {
    let mut pending: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let read = if pending.is_empty() {
            Ok(pipe.read(&mut buf).await)
        } else {
            tokio::time::timeout(IDLE_FLUSH, pipe.read(&mut buf)).await
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => {
                if !pending.is_empty() {
                    sender.send(kind, &pending).await;
                }
                return;
            }
            Ok(Ok(n)) => pending.extend_from_slice(&buf[..n]),
            Err(_idle) => {
                if !sender.send(kind, &pending).await {
                    return;
                }
                pending.clear();
                continue;
            }
        }
        // Send whole lines, in chunks of at most CHUNK bytes.
        while let Some(end) = cut(&pending) {
            if !sender.send(kind, &pending[..end]).await {
                return;
            }
            pending.drain(..end);
        }
    }
}

/// Where to cut `pending`: after the last newline within the first CHUNK bytes, or at
/// CHUNK bytes if a line is longer; `None` to wait for more.
fn cut(pending: &[u8]) -> Option<usize> {
    let window = &pending[..pending.len().min(CHUNK)];
    match window.iter().rposition(|b| *b == b'\n') {
        Some(i) => Some(i + 1),
        None if pending.len() >= CHUNK => Some(CHUNK),
        None => None,
    }
}

/// Waits until the stop state satisfies `pred` (the watch guard never crosses an await).
async fn until(stop: &mut watch::Receiver<u8>, pred: impl Fn(u8) -> bool) {
    let _ = stop.wait_for(|s| pred(*s)).await;
}

fn kill_group(pgid: u32, signal: i32) {
    // SAFETY: killpg only sends a signal; a stale group id yields ESRCH, which we ignore.
    unsafe {
        libc::killpg(pgid as libc::pid_t, signal);
    }
}

/// What every attempt of an agent shares.
pub struct Runner {
    /// One permit per slot.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Kills the attempts' process groups if the agent dies.
    pub reaper: Arc<Mutex<Reaper>>,
    /// The user tasks run as, when not the agent's own.
    pub run_as: Option<Arc<TaskUser>>,
}

/// Runs one attempt to its end and reports it (unless abandoned): now if connected, else
/// when a server takes it back.
pub async fn run(a: Assignment, ctl: Arc<AttemptCtl>, runner: Runner) {
    let Runner {
        slots,
        reaper,
        run_as,
    } = runner;
    let report = |outcome| ctl.finish(outcome);
    // Wait for a free slot; a cancel or fence meanwhile ends the attempt before it starts.
    let mut stop = ctl.stop.subscribe();
    let _slot = tokio::select! {
        permit = slots.acquire_owned() => match permit {
            Ok(p) => p,
            Err(_) => return, // the gate is closed only when the agent exits
        },
        _ = until(&mut stop, |s| s != RUN) => {
            if *ctl.stop.borrow() != ABANDON {
                report(Outcome::Cancelled);
            }
            return;
        }
    };
    let Some((program, args)) = a.argv.split_first() else {
        report(Outcome::SpawnFailed {
            message: "empty argv".into(),
        });
        return;
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        // The agent's credentials are not the task's.
        .env_remove("FLOTILLA_AGENT_TOKEN")
        .env_remove("FLOTILLA_TOKEN");
    if let Some(user) = &run_as {
        // As `runuser` would: the task's own identity and home, unless its env says else.
        // Setting a uid takes the fork path (no posix_spawn), and drops supplementary groups.
        cmd.uid(user.uid)
            .gid(user.gid)
            .env("HOME", &user.home)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name);
    }
    cmd.envs(a.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &a.cwd {
        cmd.current_dir(cwd);
    }
    // No `pre_exec`: without one the standard library starts the child with
    // `posix_spawn` (a vfork-style start), and the reaper stands in for a parent-death
    // signal. A task env that sets PATH for a bare program name still takes the fork path.
    let spawn_at = std::time::Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            report(Outcome::SpawnFailed {
                message: format!("{program}: {e}"),
            });
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    let reap =
        |f: fn(&mut Reaper, u32)| f(&mut reaper.lock().unwrap_or_else(|e| e.into_inner()), pid);
    reap(Reaper::watch);
    ctl.pgid.store(pid, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(
        attempt = a.attempt,
        pid,
        spawn_us = spawn_at.elapsed().as_micros() as u64,
        "process spawned"
    );
    ctl.send_control(AgentMsg::Started {
        attempt: a.attempt,
        pid,
    });
    let sender = Arc::new(ChunkSender {
        ctl: ctl.clone(),
        acked: ctl.acked.subscribe(),
        stop: ctl.stop.subscribe(),
    });
    let mut pumps = Vec::new();
    if let Some(p) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(p, StreamKind::Stdout, sender.clone())));
    }
    if let Some(p) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(p, StreamKind::Stderr, sender.clone())));
    }
    let timeout = a.timeout_ms.map(Duration::from_millis);
    let timer = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => Outcome::Exited { code: s.code(), signal: s.signal() },
            Err(e) => Outcome::SpawnFailed { message: format!("waiting for the process: {e}") },
        },
        _ = timer => {
            terminate(&mut child, pid).await;
            Outcome::TimedOut
        }
        _ = until(&mut stop, |s| s != RUN) => {
            terminate(&mut child, pid).await;
            Outcome::Cancelled
        }
    };
    // The leader is gone; nothing of its group may outlive it and hold the pipes open.
    kill_group(pid, libc::SIGKILL);
    reap(Reaper::forget);
    for mut p in pumps {
        if tokio::time::timeout(DRAIN_LIMIT, &mut p).await.is_err() {
            // Nothing may follow the exit report: drop what this pipe still holds.
            p.abort();
            tracing::warn!(
                attempt = a.attempt,
                "output pipe still open after the process ended; rest dropped"
            );
        }
    }
    if *ctl.stop.borrow() == ABANDON {
        return;
    }
    tracing::debug!(
        attempt = a.attempt,
        run_us = spawn_at.elapsed().as_micros() as u64,
        "attempt ended"
    );
    report(outcome);
}

/// SIGTERM to the group, then SIGKILL after a grace period.
async fn terminate(child: &mut tokio::process::Child, pid: u32) {
    kill_group(pid, libc::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        kill_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_end_at_the_last_newline_or_at_the_size_limit() {
        assert_eq!(cut(b"partial"), None);
        assert_eq!(cut(b"a\nb\nrest"), Some(4));
        let long = vec![b'x'; CHUNK + 10];
        assert_eq!(cut(&long), Some(CHUNK));
        let mut lines = vec![b'y'; CHUNK - 1];
        lines.push(b'\n');
        lines.extend_from_slice(b"more\n");
        assert_eq!(cut(&lines), Some(CHUNK));
    }
}
