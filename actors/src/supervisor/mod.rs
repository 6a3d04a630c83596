//! LocalSupervisor: keeps N local `flotilla agent` processes alive.
//!
//! Owns the local agent processes. Each is restarted with exponential backoff (250 ms
//! doubling to 10 s, reset after a minute of healthy running) whenever it exits, at most
//! `restart_limit` times within `restart_window_ms`; past that the instance is marked
//! failed, logged, and left stopped. The attempts an agent was running are rescheduled
//! by the dispatcher when its connection drops.
//!
//! Local agents outlive a crash of the server: they run in their own process group, with
//! no death signal tied to the server, and find the server again through
//! `<state-dir>/server.url`. Each one's pid is kept in `<state-dir>/agents/<id>.pid`, so
//! a restarted server adopts the agents still running (watching them by pid) instead of
//! starting duplicates. A normal stop kills them. A local agent that goes silent is
//! SIGKILLed (its children die with it) and restarted.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::{broadcast, watch};

use crate::domain::{Capability, InstanceId};
use crate::events::{Event, InstanceRestarted};
use crate::fleet::FleetSettings;

/// How to start the local agents.
#[derive(Debug, Clone)]
pub struct LocalAgents {
    /// The `flotilla` executable.
    pub exe: PathBuf,
    pub count: u32,
    /// The state dir: `server.url` and `agents/<id>.pid` live there.
    pub state_dir: PathBuf,
    /// Each local agent gets a token of its own, minted at its start: it connects as
    /// that instance only.
    pub tokens: crate::auth::Tokens,
    /// The user the agents run tasks as (`--run-as`), when set.
    pub run_as: Option<String>,
    pub capabilities: Vec<Capability>,
    pub slots: u32,
    pub fleet: FleetSettings,
}

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How often an adopted agent (not our child) is checked for life.
const ADOPTED_POLL: Duration = Duration::from_millis(20);

/// The ids of `count` local agents.
pub fn local_ids(count: u32) -> Vec<InstanceId> {
    (1..=count)
        .filter_map(|n| InstanceId::parse(&format!("local-{n}")).ok())
        .collect()
}

/// The file local agents read the server's address from.
pub fn server_file(state_dir: &Path) -> PathBuf {
    state_dir.join("server.url")
}

/// Told the id of a local instance that will not be restarted again, and why.
pub type OnFailed = std::sync::Arc<dyn Fn(InstanceId, String) + Send + Sync>;

/// Stops every local agent when dropped or when [`LocalSupervisor::stop`] is called.
pub struct LocalSupervisor {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LocalSupervisor {
    /// Starts (or adopts) the agents. `suspects` names instances that went silent (or
    /// that an operator restarts); `failed` hears of an instance given up on.
    pub fn start(
        agents: LocalAgents,
        suspects: broadcast::Sender<InstanceId>,
        failed: OnFailed,
    ) -> Self {
        let (stop, _) = watch::channel(false);
        let tasks = local_ids(agents.count)
            .into_iter()
            .map(|id| {
                let rx = stop.subscribe();
                tokio::spawn(supervise(
                    agents.clone(),
                    id,
                    rx,
                    suspects.subscribe(),
                    failed.clone(),
                ))
            })
            .collect();
        Self { stop, tasks }
    }

    /// Kills every local agent and waits until each is gone.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for LocalSupervisor {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One local agent: a child we started, or one a previous server started.
enum Agent {
    Child(tokio::process::Child),
    Adopted(u32),
}

impl Agent {
    fn pid(&self) -> u32 {
        match self {
            Agent::Child(c) => c.id().unwrap_or(0),
            Agent::Adopted(pid) => *pid,
        }
    }

    async fn wait(&mut self) -> String {
        match self {
            Agent::Child(c) => format!("{:?}", c.wait().await.ok()),
            Agent::Adopted(pid) => {
                while alive(*pid) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                "exited (adopted; status unknown)".to_owned()
            }
        }
    }

    async fn kill(&mut self) {
        match self {
            Agent::Child(c) => {
                let _ = c.kill().await;
            }
            Agent::Adopted(pid) => {
                signal(*pid, libc::SIGKILL);
                while alive(*pid) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
            }
        }
    }
}

async fn supervise(
    agents: LocalAgents,
    instance: InstanceId,
    mut stop: watch::Receiver<bool>,
    mut suspects: broadcast::Receiver<InstanceId>,
    failed: OnFailed,
) {
    let id = instance.to_string();
    let pid_file = agents.state_dir.join("agents").join(format!("{id}.pid"));
    let server_file = server_file(&agents.state_dir);
    let mut backoff = BACKOFF_START;
    let mut restarts: VecDeque<Instant> = VecDeque::new();
    let window = Duration::from_millis(agents.fleet.restart_window_ms);
    let mut adopt = adoptable(&pid_file, &id, &server_file);
    loop {
        let started = Instant::now();
        let mut agent = match adopt.take() {
            Some(pid) => {
                tracing::info!(instance = %id, pid, "local agent still running from before; adopted");
                Agent::Adopted(pid)
            }
            None => match spawn(&agents, &id, &server_file).await {
                Ok(child) => {
                    let pid = child.id().unwrap_or(0);
                    if let Err(e) = write_pid(&pid_file, pid) {
                        tracing::warn!(instance = %id, error = %e, "could not record the local agent's pid");
                    }
                    tracing::info!(instance = %id, pid, "local agent started");
                    Agent::Child(child)
                }
                Err(e) => {
                    tracing::error!(instance = %id, error = %e, "could not start local agent");
                    if wait_or_stop(&mut stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        let pid = agent.pid();
        let status = loop {
            tokio::select! {
                s = agent.wait() => break s,
                _ = until_stopped(&mut stop) => {
                    agent.kill().await;
                    let _ = std::fs::remove_file(&pid_file);
                    return;
                }
                suspect = suspects.recv() => {
                    if matches!(&suspect, Ok(s) if s.as_str() == id) {
                        tracing::warn!(instance = %id, pid, "local agent silent or restarted by an operator; killing it and its tasks");
                        agent.kill().await;
                        break "killed (silent, or restarted by an operator)".to_owned();
                    }
                }
            }
        };
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = BACKOFF_START;
        }
        let now = Instant::now();
        restarts.push_back(now);
        while restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            restarts.pop_front();
        }
        if restarts.len() > agents.fleet.restart_limit as usize {
            tracing::error!(instance = %id, restarts = restarts.len(), window_ms = agents.fleet.restart_window_ms, "local agent failed: too many restarts; not restarting it");
            failed(
                instance.clone(),
                format!(
                    "{} restarts within {} s; not restarted again",
                    restarts.len(),
                    agents.fleet.restart_window_ms / 1000
                ),
            );
            let _ = std::fs::remove_file(&pid_file);
            let _ = until_stopped(&mut stop).await;
            return;
        }
        InstanceRestarted {
            instance: &id,
            pid,
            status: &status.to_string(),
            restart_in_ms: backoff.as_millis() as u64,
        }
        .emit();
        if wait_or_stop(&mut stop, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn spawn(
    agents: &LocalAgents,
    id: &str,
    server_file: &Path,
) -> std::io::Result<tokio::process::Child> {
    let caps: Vec<&str> = agents.capabilities.iter().map(|c| c.as_str()).collect();
    let mut cmd = Command::new(&agents.exe);
    cmd.arg("agent")
        .arg("--server-file")
        .arg(server_file)
        .arg("--exit-when-orphaned")
        .arg("--id")
        .arg(id)
        .arg("--capabilities")
        .arg(caps.join(","))
        .arg("--slots")
        .arg(agents.slots.to_string())
        // The token goes through a pipe, never the environment, where a task could read
        // it in /proc/<agent pid>/environ.
        .arg("--token-stdin")
        .env_remove("FLOTILLA_AGENT_TOKEN")
        // The admin token is the server's alone; agents get their own scoped token.
        .env_remove("FLOTILLA_TOKEN")
        .stdin(Stdio::piped())
        // Its own process group: a signal to the server's group (Ctrl-C) does not reach
        // it, and no death signal ties it to the server, so it outlives a crash.
        .process_group(0);
    if let Some(user) = &agents.run_as {
        cmd.arg("--run-as").arg(user);
    }
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let instance = InstanceId::parse(id).ok();
        let line = format!("{}\n", agents.tokens.mint_agent(instance.as_ref(), 0));
        if let Err(e) = stdin.write_all(line.as_bytes()).await {
            let _ = child.start_kill();
            return Err(e);
        }
        // Dropped here: the agent reads to the end of the pipe.
    }
    Ok(child)
}

/// The pid in `pid_file`, if that process is alive and is this instance's agent of this
/// state dir (a pid can be reused by an unrelated process).
fn adoptable(pid_file: &Path, id: &str, server_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !alive(pid) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let has = |flag: &str, value: &[u8]| {
        args.windows(2)
            .any(|w| w[0] == flag.as_bytes() && w[1] == value)
    };
    let ours = args.get(1) == Some(&&b"agent"[..])
        && has("--id", id.as_bytes())
        && has("--server-file", server_file.as_os_str().as_encoded_bytes());
    ours.then_some(pid)
}

fn write_pid(pid_file: &Path, pid: u32) -> std::io::Result<()> {
    if let Some(dir) = pid_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(pid_file, format!("{pid}\n"))
}

/// True while `pid` runs (a zombie does not count).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill only sends a signal; pid was checked to be our agent's.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Sleeps for `d`; true if a stop arrived meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = until_stopped(stop) => true,
    }
}

async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any other await.
    let _ = stop.wait_for(|s| *s).await;
}
