//! `flotilla submit --from FILE`: RunRequests one per line, submitted in batches.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use flotilla_actors::domain::TaskState;
use serde_json::Value;

use super::{explain, fields_at_fault, STALL_LIMIT};
use crate::client::{self, Client};

/// Requests per `POST /v1/tasks/batch`: the server's default limit.
const BATCH: usize = 1000;

/// Reads every line first (a line that is not JSON stops everything before anything is
/// submitted), then submits them in batches. Prints each accepted task's id on stdout,
/// in order, and each refused line's problem on stderr. Returns 0 if every line was
/// accepted (and, with `watch`, every task succeeded), else 1.
pub fn submit_from(client: &Client, from: &str, watch: bool) -> anyhow::Result<i32> {
    let requests = read_requests(from)?;
    if requests.is_empty() {
        anyhow::bail!("{from}: no RunRequest in it");
    }
    let progress = std::io::stderr().is_terminal();
    let mut accepted: Vec<(String, String)> = Vec::with_capacity(requests.len());
    let mut refused = 0usize;
    let mut stdout = std::io::stdout().lock();
    for (n, chunk) in requests.chunks(BATCH).enumerate() {
        let reply = client.submit_batch(chunk).map_err(explain)?;
        let results = reply["results"]
            .as_array()
            .context("batch reply without results")?;
        for r in results {
            let line = n * BATCH + r["index"].as_u64().unwrap_or(0) as usize + 1;
            match (r["task"]["id"].as_str(), r["task"]["handle"].as_str()) {
                (Some(id), Some(handle)) => {
                    writeln!(stdout, "{id}")?;
                    accepted.push((id.to_owned(), handle.to_owned()));
                }
                _ => {
                    refused += 1;
                    eprintln!("flotilla: line {line}: {}", describe(&r["problem"]));
                }
            }
        }
        if progress {
            eprint!(
                "\rflotilla: submitted {} of {}",
                accepted.len() + refused,
                requests.len()
            );
        }
    }
    stdout.flush()?;
    if progress {
        eprintln!();
    }
    if !watch {
        return Ok(i32::from(refused > 0));
    }
    let failed = follow_all(client, &accepted, progress)?;
    eprintln!(
        "flotilla: {} succeeded, {} did not, {refused} refused",
        accepted.len() - failed.len(),
        failed.len()
    );
    for (id, state) in &failed {
        eprintln!("flotilla: task {id} {state}");
    }
    Ok(i32::from(refused > 0 || !failed.is_empty()))
}

/// The non-empty lines of `from` (`-`: stdin), each parsed as JSON.
fn read_requests(from: &str) -> anyhow::Result<Vec<Value>> {
    let reader: Box<dyn BufRead> = if from == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(from).with_context(|| format!("opening {from}"))?,
        ))
    };
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {from}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let doc = serde_json::from_str(&line).with_context(|| {
            format!(
                "{from} line {}: not a JSON document; nothing was submitted",
                i + 1
            )
        })?;
        out.push(doc);
    }
    Ok(out)
}

/// What a refused item's problem says, with the fields at fault.
fn describe(problem: &Value) -> String {
    let detail = problem["detail"].as_str().unwrap_or("refused");
    let fields = fields_at_fault(problem);
    if fields.is_empty() {
        detail.to_owned()
    } else {
        format!("{detail}: {}", fields.join("; "))
    }
}

/// Follows each task's handle to its final status; returns those that did not succeed.
fn follow_all(
    client: &Client,
    tasks: &[(String, String)],
    progress: bool,
) -> anyhow::Result<Vec<(String, TaskState)>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut failed = Vec::new();
    for (n, (id, handle)) in tasks.iter().enumerate() {
        let status = rt
            .block_on(client::follow(
                client.base(),
                client.token(),
                handle,
                0,
                STALL_LIMIT,
                |_| {},
            ))
            .map_err(explain)?;
        if status.end.state != TaskState::Succeeded {
            failed.push((id.clone(), status.end.state));
        }
        if progress {
            eprint!("\rflotilla: {} of {} ended", n + 1, tasks.len());
        }
    }
    if progress {
        eprintln!();
    }
    Ok(failed)
}
