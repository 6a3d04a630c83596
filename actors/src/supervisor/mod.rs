//! LocalSupervisor: keeps N local `flotilla agent` processes alive.
//!
//! Owns the child processes. Each is restarted with exponential backoff (250 ms doubling
//! to 10 s, reset after a minute of healthy running) whenever it exits; the attempts it was
//! running are requeued by the dispatcher when its connection drops. Agents die with the
//! server: they are killed when the supervisor stops and, via `PR_SET_PDEATHSIG`, if the
//! server itself is killed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::watch;

use crate::domain::Capability;

/// How to start the local agents.
#[derive(Debug, Clone)]
pub struct LocalAgents {
    /// The `flotilla` executable.
    pub exe: PathBuf,
    pub count: u32,
    pub server_url: String,
    pub agent_token: String,
    pub capabilities: Vec<Capability>,
    pub slots: u32,
}

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Stops every local agent when dropped or when [`LocalSupervisor::stop`] is called.
pub struct LocalSupervisor {
    stop: watch::Sender<bool>,
}

impl LocalSupervisor {
    pub fn start(agents: LocalAgents) -> Self {
        let (stop, _) = watch::channel(false);
        for n in 1..=agents.count {
            let rx = stop.subscribe();
            tokio::spawn(supervise(agents.clone(), format!("local-{n}"), rx));
        }
        Self { stop }
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for LocalSupervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn supervise(agents: LocalAgents, id: String, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_START;
    let caps: Vec<&str> = agents.capabilities.iter().map(|c| c.as_str()).collect();
    loop {
        let mut cmd = Command::new(&agents.exe);
        cmd.arg("agent")
            .arg("--server")
            .arg(&agents.server_url)
            .arg("--id")
            .arg(&id)
            .arg("--capabilities")
            .arg(caps.join(","))
            .arg("--slots")
            .arg(agents.slots.to_string())
            .env("FLOTILLA_AGENT_TOKEN", &agents.agent_token)
            // The admin token is the server's alone; agents get their own scoped token.
            .env_remove("FLOTILLA_TOKEN")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill this child
        // when the server's thread that spawned it exits.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(instance = %id, error = %e, "could not start local agent");
                if wait_or_stop(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        tracing::info!(instance = %id, pid = child.id(), "local agent started");
        let status = tokio::select! {
            s = child.wait() => s,
            _ = until_stopped(&mut stop) => {
                let _ = child.kill().await;
                return;
            }
        };
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = BACKOFF_START;
        }
        tracing::warn!(instance = %id, status = ?status.ok(), restart_in_ms = backoff.as_millis() as u64, "local agent exited; restarting");
        if wait_or_stop(&mut stop, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
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
