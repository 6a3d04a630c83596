//! The reaper: a small process beside each agent that kills the agent's task process
//! groups when the agent dies, however it dies.
//!
//! Tasks are started with `posix_spawn` (a `vfork`-style start that copies no page
//! tables), which leaves no place to run `prctl(PR_SET_PDEATHSIG)` in the child. Instead
//! the agent tells the reaper, over a pipe, each process group it starts (`+PGID`) and
//! ends (`-PGID`). The agent is the only writer; when the pipe reads end-of-file the agent
//! is gone (exit, panic, SIGKILL alike), and the reaper sends SIGKILL to every group it
//! still holds, then exits. This covers the whole group, grandchildren included, where a
//! parent-death signal reached only the direct child.
//!
//! The reaper runs in a process group of its own, so a signal aimed at the agent's group
//! (a Ctrl-C at a terminal, a supervisor's group kill) does not take it down first. If it
//! dies anyway, or stops reading until the pipe is full, the next write fails (the pipe
//! does not block) and the agent starts another, telling it every group still live. One window remains: an agent killed between a spawn returning and the
//! one `write(2)` that follows leaves that one group behind.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};

/// The hidden subcommand that runs the reaper loop.
pub const SUBCOMMAND: &str = "reap";

/// The agent's end: a pipe to the reaper process, and the groups it was told of.
pub struct Reaper {
    child: Option<(Child, ChildStdin)>,
    live: BTreeSet<u32>,
}

impl Reaper {
    /// Starts the reaper process (this executable, `reap`). If it cannot start, the
    /// agent still runs, says so, and tries again at each spawn.
    pub fn start() -> Self {
        let mut reaper = Self {
            child: None,
            live: BTreeSet::new(),
        };
        if let Err(e) = reaper.respawn() {
            tracing::error!(error = %e, "cannot start the reaper process: task groups will outlive a killed agent");
        }
        reaper
    }

    fn respawn(&mut self) -> std::io::Result<()> {
        if let Some((mut old, stdin)) = self.child.take() {
            drop(stdin);
            let _ = old.kill();
            let _ = old.wait();
        }
        // The running executable itself, even if its file was replaced or deleted since.
        let mut child = Command::new("/proc/self/exe")
            .arg(SUBCOMMAND)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("the reaper has no stdin"))?;
        // A reaper that stops reading (SIGSTOPped, say) must not block the agent once the
        // pipe is full: the write fails instead, and the reaper is replaced.
        // SAFETY: fcntl on a descriptor this function owns.
        // One page of pipe is room for hundreds of lines, which a live reaper reads at once.
        // SAFETY: fcntl on a descriptor this function owns.
        unsafe {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&stdin);
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            libc::fcntl(fd, libc::F_SETPIPE_SZ, 4096);
        }
        let mut told = String::new();
        for pgid in &self.live {
            told.push_str(&format!("+{pgid}\n"));
        }
        stdin.write_all(told.as_bytes())?;
        self.child = Some((child, stdin));
        Ok(())
    }

    /// A process group to kill if the agent dies.
    pub fn watch(&mut self, pgid: u32) {
        self.live.insert(pgid);
        self.tell(&format!("+{pgid}\n"));
    }

    /// The group is gone: the reaper must not kill it (its id may be reused).
    pub fn forget(&mut self, pgid: u32) {
        self.live.remove(&pgid);
        self.tell(&format!("-{pgid}\n"));
    }

    /// Writes a line; a reaper that died is replaced, and told every live group.
    fn tell(&mut self, line: &str) {
        let sent = match &mut self.child {
            Some((_, stdin)) => stdin.write_all(line.as_bytes()).is_ok(),
            None => false,
        };
        if !sent {
            match self.respawn() {
                Ok(()) => tracing::warn!("the reaper process was gone; started another"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the reaper process: task groups will outlive a killed agent")
                }
            }
        }
    }
}

/// The reaper process: reads `+PGID` / `-PGID` lines until end-of-file, then SIGKILLs
/// every group still held. Returns the exit status.
pub fn serve(input: impl BufRead) -> i32 {
    let mut live = BTreeSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let (sign, id) = line.split_at(line.len().min(1));
        match (sign, id.parse::<i32>()) {
            ("+", Ok(pgid)) if pgid > 1 => {
                live.insert(pgid);
            }
            ("-", Ok(pgid)) => {
                live.remove(&pgid);
            }
            _ => {
                eprintln!("flotilla reap: ignoring {line:?}");
            }
        }
    }
    for pgid in live {
        // SAFETY: killpg only sends a signal; a group already gone yields ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: i32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[test]
    fn at_end_of_input_the_groups_still_held_are_killed_and_forgotten_ones_spared() {
        let spawn = || {
            Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let (mut held, mut forgotten) = (spawn(), spawn());
        let input = format!(
            "+{}\n+{}\n-{}\nnonsense\n+1\n",
            held.id(),
            forgotten.id(),
            forgotten.id()
        );
        assert_eq!(serve(input.as_bytes()), 0);
        let status = held.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(alive(forgotten.id() as i32));
        forgotten.kill().unwrap();
        forgotten.wait().unwrap();
    }
}
