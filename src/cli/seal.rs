//! `flotilla seal rotate`: a new key for the secret env values stored in the database.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use flotilla_actors::control_plane::RunRequest;
use flotilla_actors::seal::{self, Sealer};
use flotilla_actors::state_lock::StateLock;
use flotilla_actors::store::Store;

#[derive(Subcommand)]
pub enum SealCommand {
    /// Seal every stored secret value with a new key, then drop the old keys. The server
    /// must be stopped.
    Rotate(RotateArgs),
}

#[derive(Args)]
pub struct RotateArgs {
    /// The server's state dir.
    #[arg(long, env = "FLOTILLA_STATE_DIR", default_value = ".flotilla")]
    pub state_dir: PathBuf,
}

pub fn run(c: SealCommand) -> anyhow::Result<i32> {
    match c {
        SealCommand::Rotate(a) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(rotate(a)),
    }
}

/// New key first (the old ones still open), every value re-sealed in one transaction,
/// then the old keys dropped: a crash at any point leaves every value openable.
async fn rotate(a: RotateArgs) -> anyhow::Result<i32> {
    let dir = &a.state_dir;
    let db = dir.join("flotilla.db");
    anyhow::ensure!(db.exists(), "{}: no database", db.display());
    let _lock = StateLock::acquire(dir).context("the server must be stopped")?;
    let key = seal::add_key(dir)?;
    let sealer = Sealer::load(&seal::key_path(dir))?;
    let store = Store::open(&db).await?;
    let mut changed = Vec::new();
    let mut values = 0;
    for (id, text) in store.requests().await? {
        let before = RunRequest::from_stored(&text)
            .with_context(|| format!("task {id}: stored request unreadable"))?;
        let mut after = before.clone();
        after
            .reseal_secrets(&sealer)
            .with_context(|| format!("task {id}"))?;
        let n = before
            .env
            .iter()
            .filter(|(k, v)| after.env.get(*k) != Some(*v))
            .count();
        if n > 0 {
            values += n;
            changed.push((id, serde_json::to_string(&after)?));
        }
    }
    store.replace_requests(&changed).await?;
    seal::drop_old_keys(dir)?;
    println!(
        "sealed {values} values of {} tasks with key {key}; older keys dropped",
        changed.len()
    );
    Ok(0)
}
