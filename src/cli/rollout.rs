//! `flotilla rollout status|advance|rollback|review` and `flotilla report KIND`, through
//! the running server's admin API.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{explain, ClientArgs};

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// Every component's phase, the gates of its next step as they stand, its changes.
    Status(StatusArgs),
    /// Move a component one phase on (shadow → limited → full), if its gates pass.
    Advance(StepArgs),
    /// Move a component one phase back.
    Rollback(StepArgs),
    /// Record the post-rollout review in out/<scope>/state.json.
    Review(ReviewArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the JSON body instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct StepArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// validation, guard or cooldown.
    pub component: String,
    /// Who decides (recorded as the approver).
    #[arg(long)]
    pub by: String,
    /// Why (recorded).
    #[arg(long)]
    pub reason: String,
}

#[derive(Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[arg(long)]
    pub by: String,
    /// The reviewer's summary: what went well, what to change in the guardrails.
    #[arg(long)]
    pub summary: String,
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// baseline, post-rollout, mttr-delta or completeness.
    pub kind: String,
    /// Start of the window (RFC 3339, e.g. 2026-12-01T20:00:00.000Z) [default: the
    /// report's own: a day back, or the last rollout change].
    #[arg(long)]
    pub from: Option<String>,
    /// End of the window [default: now].
    #[arg(long)]
    pub to: Option<String>,
}

fn gate_lines(gates: &Value) -> Vec<String> {
    gates
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let mark = if g["pass"] == true { "pass" } else { "FAIL" };
            format!(
                "    {mark} {}: {}",
                g["gate"].as_str().unwrap_or("?"),
                g["detail"].as_str().unwrap_or("")
            )
        })
        .collect()
}

pub fn run(command: RolloutCommand) -> anyhow::Result<i32> {
    match command {
        RolloutCommand::Status(args) => {
            let view = args
                .client
                .client()?
                .admin("GET", "/admin/rollout", None)
                .map_err(explain)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
                return Ok(0);
            }
            for c in view["components"].as_array().into_iter().flatten() {
                let next = c["next"].as_str().unwrap_or("(none: full)");
                println!(
                    "{}: {} (next {next}; limited means {})",
                    c["component"].as_str().unwrap_or("?"),
                    c["phase"].as_str().unwrap_or("?"),
                    c["limitedMeans"].as_str().unwrap_or("?")
                );
                for line in gate_lines(&c["gates"]) {
                    println!("{line}");
                }
            }
            Ok(0)
        }
        RolloutCommand::Advance(args) => step(args, "advance"),
        RolloutCommand::Rollback(args) => step(args, "rollback"),
        RolloutCommand::Review(args) => {
            let body = json!({ "by": args.by, "summary": args.summary });
            let review = args
                .client
                .client()?
                .admin("POST", "/admin/rollout/review", Some(&body))
                .map_err(explain)?;
            println!("{}", serde_json::to_string_pretty(&review)?);
            Ok(if review["pass"] == true { 0 } else { 1 })
        }
    }
}

fn step(args: StepArgs, action: &str) -> anyhow::Result<i32> {
    let body = json!({ "by": args.by, "reason": args.reason });
    let path = format!("/admin/rollout/{}/{action}", args.component);
    let change = args
        .client
        .client()?
        .admin("POST", &path, Some(&body))
        .map_err(explain)?;
    println!(
        "{}: {} → {} by {} at {}",
        change["component"].as_str().unwrap_or("?"),
        change["from"].as_str().unwrap_or("?"),
        change["to"].as_str().unwrap_or("?"),
        change["by"].as_str().unwrap_or("?"),
        change["at"].as_str().unwrap_or("?")
    );
    for line in gate_lines(&change["gates"]) {
        println!("{line}");
    }
    Ok(0)
}

/// `flotilla report KIND`: prints the report; exits 1 when its verdict is a failure.
pub fn report(args: ReportArgs) -> anyhow::Result<i32> {
    let mut query = Vec::new();
    for (name, v) in [("from", &args.from), ("to", &args.to)] {
        if let Some(t) = v {
            query.push(format!("{name}={t}"));
        }
    }
    let path = format!("/admin/reports/{}?{}", args.kind, query.join("&"));
    let doc = args
        .client
        .client()?
        .admin("POST", &path, None)
        .map_err(explain)?;
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(if doc["verdict"]["pass"] == true { 0 } else { 1 })
}
