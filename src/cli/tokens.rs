//! `flotilla tokens`: mint a token for a remote agent, or revoke one agent or observer
//! token, through the running server's admin API.

use clap::{Args, Subcommand};

use super::{explain, ClientArgs};

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Mint a token a remote agent connects with; prints it.
    Agent(AgentTokenArgs),
    /// Revoke one agent or observer token (the token itself, or its id).
    Revoke(RevokeArgs),
}

#[derive(Args)]
pub struct AgentTokenArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The only instance id the token may connect as.
    #[arg(long)]
    pub instance: Option<String>,
    /// How long it is valid, in seconds; 0 for no expiry [default: the server's
    /// tokens.agent-ttl-seconds].
    #[arg(long)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The token (`fl2.…`) or its id (the fourth dot-separated field).
    #[arg(value_name = "TOKEN-OR-ID")]
    pub target: String,
    /// Why; kept with the revocation and told to whoever presents the token.
    #[arg(long)]
    pub reason: Option<String>,
}

pub fn run(command: TokensCommand) -> anyhow::Result<i32> {
    match command {
        TokensCommand::Agent(args) => {
            let client = args.client.client()?;
            let mut query = Vec::new();
            if let Some(i) = &args.instance {
                query.push(format!("instance={}", encode(i)));
            }
            if let Some(t) = args.ttl_seconds {
                query.push(format!("ttlSeconds={t}"));
            }
            let path = format!("/v1/tokens/agent?{}", query.join("&"));
            let reply = client.admin("POST", &path, None).map_err(explain)?;
            println!("{}", reply["token"].as_str().unwrap_or_default());
            Ok(0)
        }
        TokensCommand::Revoke(args) => {
            let client = args.client.client()?;
            let id = flotilla_actors::auth::token_id(&args.target)
                .unwrap_or(&args.target)
                .to_owned();
            let mut path = format!("/v1/tokens/{}", encode(&id));
            if let Some(r) = &args.reason {
                path.push_str(&format!("?reason={}", encode(r)));
            }
            let reply = client.admin("DELETE", &path, None).map_err(explain)?;
            println!(
                "token {} revoked at {}",
                reply["id"].as_str().unwrap_or(&id),
                reply["revokedAt"].as_str().unwrap_or("?")
            );
            Ok(0)
        }
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
