//! The CLI: argument types and the client commands (`submit`, `watch`, `tasks`, `cancel`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use flotilla_actors::domain::TaskState;
use flotilla_actors::protocol::{FinalStatus, GapReason, StreamKind, TruncateReason};
use serde_json::{json, Map, Value};

use crate::client::{self, Client};

mod batch;
pub mod canary;
pub mod guard;
pub mod rollout;
pub mod seal;
pub mod tokens;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "A self-healing orchestrator for fleets of command and coding-agent runs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the orchestrator: HTTP API, queue, dispatcher and local agents.
    Serve(ServeArgs),
    /// Run an executor instance that connects to a server.
    Agent(AgentArgs),
    /// Submit a command; prints the task id.
    Submit(SubmitArgs),
    /// Print a task's live output; resumes after a dropped connection.
    Watch(WatchArgs),
    /// List tasks.
    Tasks(TasksArgs),
    /// Cancel a task (kills its process group if it runs).
    Cancel(CancelArgs),
    /// List instances, or cordon, uncordon, drain or restart one.
    Instances(InstancesArgs),
    /// Prove self-healing: kill and hang instances under a workload, report the times.
    Canary(canary::CanaryArgs),
    /// The privacy guard: scan files, evaluate on a corpus, switch modes, approvals.
    #[command(subcommand)]
    Guard(guard::GuardCommand),
    /// The key that seals secret env values in the database.
    #[command(subcommand)]
    Seal(seal::SealCommand),
    /// Mint an agent token, or revoke one agent or observer token.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Gated rollouts of validation, guard and cooldown: status, advance, rollback, review.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Compute a success-metric report from what the server recorded, and write it.
    Report(rollout::ReportArgs),
    /// Internal: the process beside each agent that kills its task groups if it dies.
    #[command(name = "reap", hide = true)]
    Reap,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Config file (default: ./flotilla.toml if present).
    #[arg(long, env = "FLOTILLA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7070].
    #[arg(long, env = "FLOTILLA_BIND")]
    pub bind: Option<String>,
    /// Database, frame log and tokens [default: .flotilla].
    #[arg(long, env = "FLOTILLA_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Root of .runs/ and out/ [default: the working directory].
    #[arg(long, env = "FLOTILLA_ARTIFACTS_DIR")]
    pub artifacts_dir: Option<PathBuf>,
    /// Local agent processes to supervise [default: 2].
    #[arg(long, env = "FLOTILLA_LOCAL_INSTANCES")]
    pub local_instances: Option<u32>,
    /// Capabilities of the local agents, comma-separated [default: os:linux,local].
    #[arg(long, env = "FLOTILLA_LOCAL_CAPABILITIES")]
    pub local_capabilities: Option<String>,
    /// Slots per local agent [default: 1].
    #[arg(long, env = "FLOTILLA_LOCAL_SLOTS")]
    pub local_slots: Option<u32>,
    /// The user local agents run tasks as; required when the server runs as root
    /// (`root` runs them as root).
    #[arg(long, env = "FLOTILLA_LOCAL_RUN_AS")]
    pub local_run_as: Option<String>,
}

#[derive(Args)]
pub struct AgentArgs {
    /// Server base URL.
    #[arg(long, env = "FLOTILLA_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// Agent token (from POST /v1/tokens/agent), or the admin token. Visible to other
    /// users in the process list: prefer --token-file or --token-stdin.
    #[arg(long, env = "FLOTILLA_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the token from this file (it must not be readable by group or others).
    #[arg(long, conflicts_with_all = ["token", "token_stdin"])]
    pub token_file: Option<PathBuf>,
    /// Read the token from the first line of standard input (how local agents get it).
    #[arg(long, conflicts_with = "token")]
    pub token_stdin: bool,
    /// Run tasks as this user (name or uid). An agent started as root refuses to start
    /// without it; `--run-as root` runs tasks as root.
    #[arg(long, env = "FLOTILLA_RUN_AS")]
    pub run_as: Option<String>,
    /// Instance id [default: <hostname>-<pid>].
    #[arg(long)]
    pub id: Option<String>,
    /// Capabilities offered, comma-separated.
    #[arg(long, default_value = "")]
    pub capabilities: String,
    /// How many tasks may run at once.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Read the server base URL from this file before each connection (instead of
    /// --server): how local agents find their server again after it restarts.
    #[arg(long)]
    pub server_file: Option<PathBuf>,
    /// Exit once the server has been gone for the re-attach grace (local agents).
    #[arg(long)]
    pub exit_when_orphaned: bool,
}

#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Server base URL.
    #[arg(long, env = "FLOTILLA_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// Admin token [default: the contents of .flotilla/admin.token].
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Required capability (repeatable).
    #[arg(long = "cap")]
    pub caps: Vec<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// Label KEY=VALUE (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Working directory on the instance.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Kill after this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Attempts allowed when an instance is lost.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Task id (generated when absent).
    #[arg(long)]
    pub id: Option<String>,
    /// Follow the output after submitting; exit with the task's exit status. With
    /// --from, follow every task to its end and sum up.
    #[arg(long)]
    pub watch: bool,
    /// Submit the RunRequests in FILE (`-` for stdin), one JSON document per line, in
    /// batches; prints one task id per line.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["caps", "env", "labels", "cwd", "timeout", "max_attempts", "id"])]
    pub from: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required_unless_present = "from")]
    pub argv: Vec<String>,
}

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Task id.
    pub task: String,
    /// Start after this offset.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
}

#[derive(Args)]
pub struct TasksArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only tasks in this state.
    #[arg(long)]
    pub state: Option<String>,
}

#[derive(Args)]
pub struct InstancesArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// cordon, uncordon, drain or restart (none: list them).
    #[arg(requires = "id")]
    pub action: Option<String>,
    /// The instance id.
    pub id: Option<String>,
}

#[derive(Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Task id.
    pub task: String,
}

/// Gives up following a stream after this long without progress.
const STALL_LIMIT: Duration = Duration::from_secs(120);

impl ClientArgs {
    pub fn client(&self) -> anyhow::Result<Client> {
        let token = match &self.token {
            Some(t) => t.clone(),
            None => {
                let dir = std::env::var_os("FLOTILLA_STATE_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| ".flotilla".into());
                let path = dir.join("admin.token");
                std::fs::read_to_string(&path)
                    .map(|s| s.trim().to_owned())
                    .with_context(|| {
                        format!(
                            "no token: set FLOTILLA_TOKEN or run where {} exists",
                            path.display()
                        )
                    })?
            }
        };
        Ok(Client::new(&self.server, &token))
    }
}

fn key_values(items: &[String], what: &str) -> anyhow::Result<Map<String, Value>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), Value::String(v.to_owned()))),
            None => bail!("{what} {kv:?} must be KEY=VALUE"),
        })
        .collect()
}

pub fn submit(args: SubmitArgs) -> anyhow::Result<i32> {
    if let Some(from) = &args.from {
        if !args.argv.is_empty() {
            bail!("give a command after -- or --from FILE, not both");
        }
        return batch::submit_from(&args.client.client()?, from, args.watch);
    }
    let client = args.client.client()?;
    let mut req = json!({ "argv": args.argv });
    let obj = req.as_object_mut().context("request is an object")?;
    if !args.caps.is_empty() {
        obj.insert("capabilities".into(), json!(args.caps));
    }
    if !args.env.is_empty() {
        obj.insert("env".into(), Value::Object(key_values(&args.env, "--env")?));
    }
    if !args.labels.is_empty() {
        obj.insert(
            "labels".into(),
            Value::Object(key_values(&args.labels, "--label")?),
        );
    }
    for (key, value) in [
        ("cwd", args.cwd.map(Value::from)),
        ("timeoutSeconds", args.timeout.map(Value::from)),
        ("maxAttempts", args.max_attempts.map(Value::from)),
        ("id", args.id.map(Value::from)),
    ] {
        if let Some(v) = value {
            obj.insert(key.into(), v);
        }
    }
    let reply = client.submit(&req).map_err(explain)?;
    let id = reply["id"]
        .as_str()
        .context("reply without an id")?
        .to_owned();
    println!("{id}");
    if let Some(reason) = reply["reason"].as_str() {
        eprintln!("flotilla: {reason}");
    }
    if !args.watch {
        return Ok(0);
    }
    let handle = reply["handle"].as_str().context("reply without a handle")?;
    watch_handle(&client, &id, handle, 0)
}

pub fn watch(args: WatchArgs) -> anyhow::Result<i32> {
    let client = args.client.client()?;
    let task = client.task(&args.task).map_err(explain)?;
    let handle = task["handle"].as_str().context("task without a handle")?;
    watch_handle(&client, &args.task, handle, args.from)
}

fn watch_handle(client: &Client, task: &str, handle: &str, from: u64) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status: FinalStatus = rt
        .block_on(client::follow(
            client.base(),
            client.token(),
            handle,
            from,
            STALL_LIMIT,
            |f| {
                let bytes = f.bytes();
                let _ = match f.kind {
                    StreamKind::Stdout => std::io::stdout()
                        .write_all(&bytes)
                        .and_then(|_| std::io::stdout().flush()),
                    StreamKind::Stderr => std::io::stderr().write_all(&bytes),
                    StreamKind::Guard => {
                        let note: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                        writeln!(
                            std::io::stderr(),
                            "flotilla: the privacy guard blocked {} output ({} {})",
                            note["stream"].as_str().unwrap_or("some"),
                            note["rule"].as_str().unwrap_or("?"),
                            note["digest"].as_str().unwrap_or("?"),
                        )
                    }
                    StreamKind::Gap => match &f.gap {
                        Some(g) => writeln!(
                            std::io::stderr(),
                            "flotilla: output frames {}..{} of {task} not shown ({})",
                            g.first,
                            g.last,
                            match g.reason {
                                GapReason::Corrupt => "lost: the server's log was damaged",
                                GapReason::Dropped => "skipped: this watcher fell behind",
                            }
                        ),
                        None => Ok(()),
                    },
                    StreamKind::Truncated => match &f.truncated {
                        Some(t) => writeln!(
                            std::io::stderr(),
                            "flotilla: output of {task} before frame {} is no longer kept ({})",
                            t.first,
                            retention_limit(t.reason),
                        ),
                        None => Ok(()),
                    },
                    StreamKind::Status => Ok(()),
                };
            },
        ))
        .map_err(explain)?;
    if status.end.state != TaskState::Succeeded {
        let why = status.end.reason.as_deref().unwrap_or("");
        eprintln!("flotilla: task {task} {}: {why}", status.end.state);
    }
    Ok(match (status.end.state, status.end.exit_code) {
        (TaskState::Succeeded, _) => 0,
        (_, Some(c)) if c != 0 => c,
        _ => 1,
    })
}

/// Which retention limit removed output, in words.
fn retention_limit(reason: TruncateReason) -> &'static str {
    match reason {
        TruncateReason::HandleBytes => {
            "the server keeps at most retention.handle-max-bytes per task"
        }
        TruncateReason::Age => "older than the server's retention.max-age-seconds",
        TruncateReason::Budget => "the server's log was over retention.budget-bytes",
        TruncateReason::Removed => "removed by the server's retention limits",
    }
}

pub fn tasks(args: TasksArgs) -> anyhow::Result<i32> {
    let client = args.client.client()?;
    let reply = client.tasks(args.state.as_deref()).map_err(explain)?;
    println!(
        "{:<24} {:<10} {:>8} {:<16} {:>5}",
        "ID", "STATE", "ATTEMPTS", "INSTANCE", "EXIT"
    );
    for t in reply["tasks"].as_array().into_iter().flatten() {
        let s = |k: &str| t[k].as_str().unwrap_or("-").to_owned();
        let exit = t["exitCode"]
            .as_i64()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<10} {:>8} {:<16} {:>5}",
            s("id"),
            s("state"),
            t["attempts"],
            s("instance"),
            exit
        );
    }
    Ok(0)
}

pub fn instances(args: InstancesArgs) -> anyhow::Result<i32> {
    let client = args.client.client()?;
    let reply = match (&args.action, &args.id) {
        (Some(action), Some(id)) => client
            .admin("POST", &format!("/admin/instances/{id}/{action}"), None)
            .map_err(explain)?,
        _ => client.instances().map_err(explain)?,
    };
    println!(
        "{:<20} {:<9} {:>5} {:>7} {:>8} CAPABILITIES",
        "ID", "STATE", "SLOTS", "RUNNING", "PID"
    );
    for i in reply["instances"].as_array().into_iter().flatten() {
        let caps: Vec<&str> = i["capabilities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        println!(
            "{:<20} {:<9} {:>5} {:>7} {:>8} {}",
            i["id"].as_str().unwrap_or("?"),
            i["state"].as_str().unwrap_or("?"),
            i["slots"],
            i["running"].as_array().map_or(0, Vec::len),
            i["pid"],
            caps.join(",")
        );
    }
    Ok(0)
}

pub fn cancel(args: CancelArgs) -> anyhow::Result<i32> {
    let client = args.client.client()?;
    let reply = client.cancel(&args.task).map_err(explain)?;
    println!("{} {}", args.task, reply["state"].as_str().unwrap_or("?"));
    Ok(0)
}

/// Turns a client error into a message naming each field at fault.
pub(crate) fn explain(e: client::ClientError) -> anyhow::Error {
    if let client::ClientError::Api { problem, .. } = &e {
        let fields = fields_at_fault(problem);
        if !fields.is_empty() {
            return anyhow::anyhow!("{e}\n  {}", fields.join("\n  "));
        }
    }
    anyhow::anyhow!(e)
}

/// Each field a problem document names: `pointer (rule): message`.
fn fields_at_fault(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "{} ({}): {}",
                f["pointer"].as_str().unwrap_or(""),
                f["rule"].as_str().unwrap_or(""),
                f["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}
