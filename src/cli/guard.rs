//! `flotilla guard scan` and `flotilla guard eval`: the detector engine on files and on a
//! labelled corpus (format: one JSON object per line with `id`, `text`, `label`, `kind`,
//! `spans` as character offsets, optional `optional`). `flotilla guard status|modes|
//! approval`: the running server's guard, through its admin API.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use flotilla_actors::files::write_atomic;
use flotilla_guard::{Engine, Finding};
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum GuardCommand {
    /// Print one JSON object per finding in FILES (or stdin): file, rule, kind, start, end
    /// (byte offsets in that input).
    Scan { files: Vec<PathBuf> },
    /// Precision, recall, F1 and false-positive rate of the engine on a labelled corpus.
    Eval(EvalArgs),
    /// The server's guard: modes per level, rollout phase, policy approval in force.
    Status(super::ClientArgs),
    /// Switch the server's guard modes (enforcing needs a policy approval in force).
    Modes(ModesArgs),
    /// Request, approve, revoke or list approvals and overrides.
    #[command(subcommand)]
    Approval(ApprovalCommand),
}

#[derive(Args)]
pub struct ModesArgs {
    #[command(flatten)]
    pub client: super::ClientArgs,
    /// Mode for levels not set one by one: off, shadow or enforce.
    #[arg(long)]
    pub mode: Option<String>,
    /// Rollout phase: shadow, limited or full.
    #[arg(long)]
    pub phase: Option<String>,
    /// LEVEL=MODE (repeatable), e.g. sensitive=enforce; LEVEL= unsets it.
    #[arg(long = "level")]
    pub levels: Vec<String>,
    /// Who switches (recorded).
    #[arg(long)]
    pub by: String,
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Subcommand)]
pub enum ApprovalCommand {
    /// List every approval with its status.
    List(super::ClientArgs),
    /// Ask for a policy approval (to enforce) or an override (to allowlist).
    Request(RequestArgs),
    /// Approve a pending request (a listed approver, not the requester).
    Approve(DecideArgs),
    /// End an approval at once.
    Revoke(DecideArgs),
}

#[derive(Args)]
pub struct RequestArgs {
    #[command(flatten)]
    pub client: super::ClientArgs,
    /// `policy` (allows enforcing) or `override` (allowlists a rule, digest or pattern).
    #[arg(long)]
    pub kind: String,
    /// Override: every finding of this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Override: the value with this digest (the 8 hex digits of its marker).
    #[arg(long)]
    pub digest: Option<String>,
    /// Override: values this regex matches whole.
    #[arg(long)]
    pub pattern: Option<String>,
    /// Override: only for this task (default: global).
    #[arg(long)]
    pub task: Option<String>,
    #[arg(long)]
    pub reason: String,
    /// Who asks (recorded).
    #[arg(long)]
    pub by: String,
    /// Life in seconds (overrides: required, at most 30 days).
    #[arg(long)]
    pub expires_in: Option<u64>,
}

#[derive(Args)]
pub struct DecideArgs {
    #[command(flatten)]
    pub client: super::ClientArgs,
    /// The approval id (`ap-…`).
    pub id: String,
    /// Who approves or revokes (recorded).
    #[arg(long)]
    pub by: String,
}

#[derive(Args)]
pub struct EvalArgs {
    /// The corpus (JSON Lines).
    #[arg(long)]
    pub corpus: PathBuf,
    /// Scope folder of the report: `.runs/<scope>/guard/eval.json`.
    #[arg(long, default_value = "local")]
    pub scope: String,
    /// Also write one prediction per row (`{"id", "spans": [[s, e, kind]]}`, character
    /// offsets) for an external scorer.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
}

pub fn run(cmd: GuardCommand) -> anyhow::Result<i32> {
    match cmd {
        GuardCommand::Scan { files } => scan(&files),
        GuardCommand::Eval(a) => eval(&a),
        GuardCommand::Status(c) => admin(&c, "GET", "/admin/guard", None),
        GuardCommand::Modes(a) => {
            let mut levels = serde_json::Map::new();
            for kv in &a.levels {
                let (l, m) = kv
                    .split_once('=')
                    .with_context(|| format!("--level {kv:?} must be LEVEL=MODE"))?;
                let mode = (!m.is_empty()).then(|| Value::from(m));
                levels.insert(l.to_owned(), mode.unwrap_or(Value::Null));
            }
            let mut body = json!({ "by": a.by });
            for (k, v) in [
                ("mode", &a.mode),
                ("phase", &a.phase),
                ("reason", &a.reason),
            ] {
                if let Some(v) = v {
                    body[k] = v.clone().into();
                }
            }
            if !levels.is_empty() {
                body["levels"] = levels.into();
            }
            admin(&a.client, "PUT", "/admin/guard/modes", Some(body))
        }
        GuardCommand::Approval(ApprovalCommand::List(c)) => {
            admin(&c, "GET", "/admin/guard/approvals", None)
        }
        GuardCommand::Approval(ApprovalCommand::Request(a)) => {
            let kind = match a.kind.as_str() {
                "policy" => "guard-policy",
                "override" => "guard-override",
                k => anyhow::bail!("--kind {k:?} must be policy or override"),
            };
            let mut body = json!({ "kind": kind, "reason": a.reason, "requestedBy": a.by });
            let mut target = serde_json::Map::new();
            for (k, v) in [
                ("rule", &a.rule),
                ("digest", &a.digest),
                ("pattern", &a.pattern),
            ] {
                if let Some(v) = v {
                    target.insert(k.to_owned(), v.clone().into());
                }
            }
            if !target.is_empty() {
                body["target"] = target.into();
            }
            if let Some(t) = &a.task {
                body["scope"] = t.clone().into();
            }
            if let Some(s) = a.expires_in {
                body["expiresInSeconds"] = s.into();
            }
            admin(&a.client, "POST", "/admin/guard/approvals", Some(body))
        }
        GuardCommand::Approval(ApprovalCommand::Approve(a)) => admin(
            &a.client,
            "POST",
            &format!("/admin/guard/approvals/{}/approve", a.id),
            Some(json!({ "by": a.by })),
        ),
        GuardCommand::Approval(ApprovalCommand::Revoke(a)) => admin(
            &a.client,
            "POST",
            &format!("/admin/guard/approvals/{}/revoke", a.id),
            Some(json!({ "by": a.by })),
        ),
    }
}

/// One admin call; prints the JSON reply.
fn admin(
    c: &super::ClientArgs,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<i32> {
    let reply = c
        .client()?
        .admin(method, path, body.as_ref())
        .map_err(super::explain)?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(0)
}

fn scan(files: &[PathBuf]) -> anyhow::Result<i32> {
    let engine = Engine::new();
    let mut out = std::io::stdout().lock();
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    if files.is_empty() {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        inputs.push(("-".into(), buf));
    }
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        inputs.push((f.display().to_string(), bytes));
    }
    let mut count = 0;
    for (name, bytes) in inputs {
        let text = String::from_utf8_lossy(&bytes);
        for f in engine.scan(&text) {
            count += 1;
            let line = json!({"file": name, "rule": f.rule, "kind": f.kind, "start": f.start, "end": f.end});
            writeln!(out, "{line}")?;
        }
    }
    Ok(if count > 0 { 1 } else { 0 })
}

/// Character offsets of a finding (the corpus counts code points, not bytes).
fn char_span(text: &str, f: &Finding) -> (usize, usize) {
    (
        text[..f.start].chars().count(),
        text[..f.end].chars().count(),
    )
}

#[derive(Default)]
struct Tally {
    tp: u64,
    fp: u64,
    fn_: u64,
    tn: u64,
}

impl Tally {
    fn report(&self) -> Value {
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                Value::Null
            } else {
                json!(a as f64 / b as f64)
            }
        };
        let p = self.tp as f64 / (self.tp + self.fp).max(1) as f64;
        let r = self.tp as f64 / (self.tp + self.fn_).max(1) as f64;
        json!({
            "tp": self.tp, "fp": self.fp, "fn": self.fn_, "tn": self.tn,
            "precision": ratio(self.tp, self.tp + self.fp),
            "recall": ratio(self.tp, self.tp + self.fn_),
            "f1": if p + r > 0.0 { json!(2.0 * p * r / (p + r)) } else { Value::Null },
            "fp_rate": ratio(self.fp, self.fp + self.tn),
        })
    }
}

fn eval(a: &EvalArgs) -> anyhow::Result<i32> {
    let engine = Engine::new();
    let text = std::fs::read_to_string(&a.corpus)
        .with_context(|| format!("reading {}", a.corpus.display()))?;
    let mut overall = Tally::default();
    let mut unambiguous = Tally::default();
    let mut per_kind: BTreeMap<String, Tally> = BTreeMap::new();
    let mut fp_by_subkind: BTreeMap<String, u64> = BTreeMap::new();
    let mut predictions = Vec::new();
    let started = std::time::Instant::now();
    let mut bytes = 0usize;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let row: Value =
            serde_json::from_str(line).with_context(|| format!("corpus line {}", n + 1))?;
        let body = row["text"]
            .as_str()
            .with_context(|| format!("corpus line {}: no text", n + 1))?;
        bytes += body.len();
        let found: Vec<(usize, usize, &str)> = engine
            .scan(body)
            .iter()
            .map(|f| {
                let (s, e) = char_span(body, f);
                (s, e, f.kind)
            })
            .collect();
        predictions.push(json!({"id": row["id"], "spans": found.iter().map(|(s, e, k)| json!([s, e, k])).collect::<Vec<_>>()}));
        if row["optional"].as_bool() == Some(true) {
            continue;
        }
        let label = row["label"].as_str().unwrap_or("none");
        if label == "none" {
            let ambiguous = row["ambiguous"].as_bool() == Some(true);
            if found.is_empty() {
                overall.tn += 1;
                if !ambiguous {
                    unambiguous.tn += 1;
                }
            } else {
                overall.fp += 1;
                if !ambiguous {
                    unambiguous.fp += 1;
                }
                *fp_by_subkind
                    .entry(row["subkind"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            continue;
        }
        let spans: Vec<(u64, u64)> = row["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s[0].as_u64()?, s[1].as_u64()?)))
            .collect();
        let hit = found.iter().any(|(s, e, _)| {
            spans
                .iter()
                .any(|(ts, te)| (*s as u64) < *te && *ts < (*e as u64))
        });
        let kind = per_kind
            .entry(row["kind"].as_str().unwrap_or("?").to_owned())
            .or_default();
        if hit {
            overall.tp += 1;
            kind.tp += 1;
        } else {
            overall.fn_ += 1;
            kind.fn_ += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let report = json!({
        "corpus": a.corpus.display().to_string(),
        "rules": engine.rule_count(),
        "overall": overall.report(),
        "fp_rate_unambiguous": unambiguous.report()["fp_rate"],
        "recall_by_kind": per_kind.iter().map(|(k, t)| (k.clone(), t.report()["recall"].clone())).collect::<BTreeMap<_, _>>(),
        "false_positives_by_subkind": fp_by_subkind,
        "scan_mb_per_s": bytes as f64 / 1e6 / secs,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    let path = Path::new(".runs")
        .join(&a.scope)
        .join("guard")
        .join("eval.json");
    write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    if let Some(p) = &a.predictions {
        let lines: Vec<String> = predictions.iter().map(Value::to_string).collect();
        std::fs::write(p, lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(0)
}
