//! `flotilla`: the thin binary over the library; it parses the command line and hands off.

use anyhow::Context;
use clap::Parser;
use flotilla::cli::{self, Cli, Command};
use flotilla::config::{Overrides, ServeConfig};
use flotilla_actors::domain::{Capability, InstanceId};

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => {
            // Before any thread starts: a task reading this process finds no credential.
            let admin_token = take_credentials();
            init_tracing("info,actix_server=warn");
            serve(a, admin_token).map(|_| 0)
        }
        Command::Agent(mut a) => {
            let admin_token = take_credentials();
            // Also before any thread: the token is read from the pipe or the file.
            let read = read_token(&mut a);
            init_tracing("info");
            read.and_then(|_| agent(a, admin_token)).map(|_| 0)
        }
        Command::Submit(a) => cli::submit(a),
        Command::Watch(a) => cli::watch(a),
        Command::Tasks(a) => cli::tasks(a),
        Command::Cancel(a) => cli::cancel(a),
        Command::Instances(a) => cli::instances(a),
        Command::Canary(a) => cli::canary::run(a),
        Command::Guard(g) => cli::guard::run(g),
        Command::Tokens(c) => cli::tokens::run(c),
        Command::Rollout(c) => cli::rollout::run(c),
        Command::Report(a) => cli::rollout::report(a),
        Command::Seal(c) => {
            init_tracing("warn");
            cli::seal::run(c)
        }
        Command::Reap => Ok(flotilla::agent::reaper::serve(std::io::stdin().lock())),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("flotilla: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Wipes the tokens from this process's environment (clap has read what it needs) and
/// marks it non-dumpable; returns `FLOTILLA_TOKEN`, the admin token, if it was set.
fn take_credentials() -> Option<String> {
    let admin = flotilla::hygiene::take_env("FLOTILLA_TOKEN");
    flotilla::hygiene::take_env("FLOTILLA_AGENT_TOKEN");
    flotilla::hygiene::non_dumpable();
    admin
}

/// Fills `a.token` from `--token-stdin` or `--token-file`.
fn read_token(a: &mut cli::AgentArgs) -> anyhow::Result<()> {
    use std::io::BufRead;
    use std::os::unix::fs::MetadataExt;
    let text = if a.token_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the token from standard input")?;
        line
    } else if let Some(path) = &a.token_file {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.mode() & 0o077 != 0 {
            anyhow::bail!(
                "{}: the token file is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                meta.mode() & 0o777
            );
        }
        std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?
    } else {
        return Ok(());
    };
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "the token given is empty");
    a.token = Some(token.to_owned());
    Ok(())
}

fn serve(a: cli::ServeArgs, admin_token: Option<String>) -> anyhow::Result<()> {
    let config = ServeConfig::resolve(Overrides {
        config: a.config,
        bind: a.bind,
        state_dir: a.state_dir,
        artifacts_dir: a.artifacts_dir,
        local_instances: a.local_instances,
        local_capabilities: a.local_capabilities,
        local_slots: a.local_slots,
        local_run_as: a.local_run_as,
        admin_token,
    })?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(flotilla::app::serve(config))
}

fn agent(a: cli::AgentArgs, admin_token: Option<String>) -> anyhow::Result<()> {
    let token = a
        .token
        .or(admin_token)
        .context("no token: pass --token or set FLOTILLA_AGENT_TOKEN")?;
    let id = match a.id {
        Some(id) => InstanceId::parse(&id).with_context(|| format!("instance id {id:?}"))?,
        None => InstanceId::parse(&format!("{}-{}", hostname(), std::process::id()))
            .unwrap_or_else(|_| InstanceId::generate()),
    };
    let config = flotilla::agent::AgentConfig {
        server: match a.server_file {
            Some(path) => flotilla::agent::ServerAddr::File(path),
            None => flotilla::agent::ServerAddr::Url(a.server),
        },
        exit_when_orphaned: a.exit_when_orphaned,
        token,
        id,
        capabilities: Capability::parse_list(&a.capabilities)?,
        slots: a.slots,
        run_as: flotilla::agent::user::for_agent(a.run_as.as_deref())?,
    };
    // One thread: the agent is I/O-bound, and a single thread saves a cross-thread
    // wake-up on every message between the socket and the attempts.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(flotilla::agent::run(config))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "agent".into())
}
