//! `spawn_app()` and waits with deadlines.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla::client::Client;
use serde_json::Value;

pub const TOKEN: &str = "test-admin-token-0123456789";

/// A running `flotilla serve`, stopped when dropped.
pub struct App {
    child: Option<Child>,
    pub base: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
}

impl App {
    /// Starts the server with `local` local agents of one slot each.
    pub fn start(local: u32) -> App {
        Self::start_in(tempfile::tempdir().unwrap(), local)
    }

    /// Starts the server with `config` as its flotilla.toml.
    pub fn start_with_config(local: u32, config: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flotilla.toml"), config).unwrap();
        Self::start_in(dir, local)
    }

    /// Starts the server on an existing directory (to restart over the same state).
    pub fn start_in(dir: tempfile::TempDir, local: u32) -> App {
        Self::start_at(dir, local, "127.0.0.1:0")
    }

    /// Starts the server on `bind` over an existing directory.
    pub fn start_at(dir: tempfile::TempDir, local: u32, bind: &str) -> App {
        Self::start_with_env(dir, local, bind, &[])
    }

    /// Starts the server with extra environment variables.
    pub fn start_with_env(
        dir: tempfile::TempDir,
        local: u32,
        bind: &str,
        env: &[(&str, &str)],
    ) -> App {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("server.log"))
            .unwrap();
        let mut child = flotilla_cmd()
            .args(["serve", "--bind", bind, "--local-instances"])
            .arg(local.to_string())
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--artifacts-dir")
            .arg(dir.path().join("artifacts"))
            .current_dir(dir.path())
            .env("FLOTILLA_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start flotilla serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server printed its address");
        let base = line
            .strip_prefix("flotilla listening on ")
            .expect("address line")
            .to_owned();
        let app = App {
            child: Some(child),
            client: Client::new(&base, TOKEN),
            base,
            dir,
        };
        app.wait_instances(local as usize);
        app
    }

    /// Where a task's run manifest is written.
    pub fn manifest_path(&self, task: &str, run: &str) -> PathBuf {
        self.artifacts()
            .join(".runs")
            .join(task)
            .join("cli")
            .join(run)
            .join("manifest.json")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("server running")
    }

    pub fn artifacts(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn instances(&self) -> Vec<Value> {
        self.client.instances().unwrap()["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn wait_instances(&self, n: usize) {
        wait_for("instances connected", Duration::from_secs(30), || {
            (self.instances().len() >= n).then_some(())
        });
    }

    /// Submits a request that must be accepted; returns the reply.
    pub fn submit(&self, req: Value) -> Value {
        self.client.submit(&req).expect("submission accepted")
    }

    pub fn task(&self, id: &str) -> Value {
        self.client.task(id).unwrap()
    }

    /// Waits until the task reaches `state`; panics with the last view after `limit`.
    pub fn wait_state(&self, id: &str, state: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let t = self.task(id);
            if t["state"] == state {
                return t;
            }
            if Instant::now() > deadline {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!("task {id} not {state} in time: {t}\nserver log (last lines, newest first):\n{}", tail.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn server_pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// SIGKILLs the server and returns its directory. Local agents outlive it: they
    /// wait for the next server on that directory for the re-attach grace.
    pub fn crash(mut self) -> tempfile::TempDir {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// Waits for the server process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("server running");
        let status = wait_for("the server exits", limit, || child.try_wait().unwrap());
        self.child = None;
        status.code()
    }

    /// `GET /metrics`: the Prometheus text (no token needed).
    pub fn prometheus(&self) -> String {
        ureq::get(&format!("{}/metrics", self.base))
            .call()
            .expect("GET /metrics")
            .into_string()
            .expect("metrics text")
    }

    /// An admin route's JSON body.
    pub fn admin_get(&self, path: &str) -> Value {
        ureq::get(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .into_json()
            .unwrap()
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl App {
    /// Stops the server as an operator would (SIGTERM) and returns its directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.terminate();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            flotilla::process::terminate(&mut c, Duration::from_secs(10));
        }
    }
}

impl App {
    /// Mints an agent token and starts a remote `flotilla agent` with this id; the
    /// caller stops it (or it is killed when the returned guard drops).
    pub fn remote_agent(&self, id: &str, capabilities: &str) -> ChildGuard {
        let token = self.agent_token();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("agent-{id}.log")))
            .unwrap();
        let child = flotilla_cmd()
            .args(["agent", "--server", &self.base, "--id", id])
            .args(["--capabilities", capabilities])
            .env("FLOTILLA_AGENT_TOKEN", token)
            .env_remove("FLOTILLA_TOKEN")
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start an agent");
        ChildGuard(child)
    }

    /// Waits until `n` tasks in all have succeeded.
    pub fn wait_until_finished(&self, n: u64) {
        wait_for(
            &format!("{n} tasks succeeded"),
            Duration::from_secs(30),
            || {
                let summary = self.client.summary().ok()?;
                (summary["succeeded"].as_u64()? >= n).then_some(())
            },
        );
    }

    /// Mints an agent token, as an operator does for a remote machine.
    pub fn agent_token(&self) -> String {
        let token: Value = ureq::post(&format!("{}/v1/tokens/agent", self.base))
            .set("authorization", &format!("Bearer {TOKEN}"))
            .call()
            .expect("mint an agent token")
            .into_json()
            .expect("token body");
        token["token"].as_str().expect("a token").to_owned()
    }

    /// The pid an instance said in its hello, if it is connected.
    pub fn instance_pid(&self, id: &str) -> Option<u32> {
        self.instances()
            .iter()
            .find(|i| i["id"] == id)
            .and_then(|i| i["pid"].as_u64())
            .map(|p| p as u32)
    }

    /// Every frame of a handle from the start to its status: (attempt, kind, data).
    pub fn output(&self, handle: &str) -> Vec<(u32, String, String)> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut out = Vec::new();
        rt.block_on(flotilla::client::follow(
            &self.base,
            self.client.token(),
            handle,
            0,
            Duration::from_secs(30),
            |f| out.push((f.attempt, f.kind.as_str().to_owned(), f.data.clone())),
        ))
        .expect("follow the handle to its status");
        out
    }
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True while `pid` runs (a zombie does not count).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next())
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill only sends a signal to a process this test started or watches.
    assert_eq!(
        unsafe { libc::kill(pid as i32, sig) },
        0,
        "signal {sig} to {pid}"
    );
}

impl Drop for App {
    /// Stops the server; then fails the test if a response broke its declared schema
    /// (debug builds check every one, see `src/http/respcheck.rs`).
    fn drop(&mut self) {
        self.terminate();
        // Local agents outlive a crashed server; none may outlive the test.
        let agents = self.state_dir().join("agents");
        for file in std::fs::read_dir(agents).into_iter().flatten().flatten() {
            let pid = std::fs::read_to_string(file.path())
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if let Some(pid) = pid.filter(|p| alive(*p)) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if cmdline
                    .split(|b| *b == 0)
                    .any(|a| a == b"--exit-when-orphaned")
                {
                    // SAFETY: SIGKILL to a local agent of this test's server.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
        let log = self.log();
        if !std::thread::panicking() && log.contains("response violates its schema") {
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("response violates its schema"))
                .collect();
            panic!("responses broke their schemas:\n{}", lines.join("\n"));
        }
    }
}

pub fn flotilla_exe() -> &'static str {
    env!("CARGO_BIN_EXE_flotilla")
}

/// The effective uid of the tests.
pub fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // unwrap: /proc/self always exists on Linux.
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// The `flotilla` binary, told to run tasks as the user running the tests. As root (CI
/// containers), agents refuse to run tasks as root without that explicit choice.
pub fn flotilla_cmd() -> Command {
    let uid = euid().to_string();
    let mut cmd = Command::new(flotilla_exe());
    cmd.env("FLOTILLA_RUN_AS", &uid)
        .env("FLOTILLA_LOCAL_RUN_AS", &uid);
    cmd
}

/// Polls `check` until it yields a value; panics naming `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What `doc` breaks of the JSON Schema whose text is `schema`, one line per violation.
pub fn schema_errors(schema: &str, doc: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(schema).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator.iter_errors(doc).map(|e| e.to_string()).collect()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The resident size of process `pid`, in KiB.
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Runs `cmd` with `input` on its stdin; its exit status, stdout and stderr.
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}
