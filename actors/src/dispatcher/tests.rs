use std::time::Duration;

use super::*;
use crate::domain::{HandleId, RunId};
use crate::fleet::FleetSettings;

fn row(id: &str, state: TaskState, attempts: u32) -> TaskRow {
    TaskRow {
        id: TaskId::parse(id).unwrap(),
        handle: HandleId::generate(),
        run_id: RunId::generate(),
        request: r#"{"argv":["true"]}"#.into(),
        state,
        attempts,
        max_attempts: 3,
        instance: None,
        exit_code: (state == TaskState::Succeeded).then_some(0),
        signal: None,
        reason: None,
        created_ms: 1,
        updated_ms: 1,
        finished_ms: state.is_final().then_some(2),
        parent: None,
        shard: None,
    }
}

#[tokio::test]
async fn recovery_requeues_lost_work_and_seals_handles_a_crash_left_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).await.unwrap();
    let log = FrameLog::open(&dir.path().join("frames")).unwrap();
    // A task whose final state was committed but whose status frame never was, and one
    // that was running when the server died.
    let done = row("t-done", TaskState::Succeeded, 1);
    let running = row("t-running", TaskState::Running, 1);
    store.insert_task(&done).await.unwrap();
    store.insert_task(&running).await.unwrap();
    let inst = InstanceId::parse("local-1").unwrap();
    store
        .start_attempt(1, &running.id, 1, &inst, 1)
        .await
        .unwrap();

    let manifests = ManifestWriter::start(
        store.clone(),
        dir.path().join("artifacts"),
        Default::default(),
    );
    let writer = StoreWriter::start(
        store.clone(),
        log.clone(),
        manifests.clone(),
        crate::lifeline::Lifeline::unwatched("store writer"),
        Default::default(),
    );
    let mut d = Dispatcher::new(
        store.clone(),
        log.clone(),
        manifests,
        writer,
        Offers::default(),
        Rules {
            fleet: FleetSettings {
                reattach_grace_ms: 50,
                ..FleetSettings::default()
            },
            scheduler: Default::default(),
            sealer: std::sync::Arc::new(crate::seal::Sealer::load_or_create(dir.path()).unwrap()),
            cooldown: Default::default(),
        },
        tokio::sync::broadcast::channel(4).0,
    );
    assert_eq!(d.recover().await.unwrap(), 1);
    assert_eq!(d.next_key, 2, "attempt keys continue after the stored ones");
    // The running attempt waits for its agent to re-attach it: not queued, not lost.
    assert_eq!(d.queue.len(), 0);
    assert_eq!(d.orphans, 1);
    assert!(d.attempts[&1].orphan);
    d.expire_leases();
    assert_eq!(d.orphans, 1, "the grace has not run out yet");
    tokio::time::sleep(Duration::from_millis(60)).await;
    d.expire_leases();
    assert_eq!(d.orphans, 0);
    assert_eq!(d.queue.len(), 1, "lost after the grace, and queued again");

    let index = log.handle(&done.handle).unwrap();
    let mut rx = index.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|w| w.sealed))
        .await
        .unwrap()
        .unwrap();
    let frames = log.read_after(&index, 0, 10, usize::MAX).unwrap();
    let status: FinalStatus = serde_json::from_slice(&frames[0].data).unwrap();
    assert_eq!(status.end.state, TaskState::Succeeded);
    assert_eq!(status.end.exit_code, Some(0));

    let requeued = wait_until(|| async {
        let row = store.get_task(&running.id).await.unwrap().unwrap();
        (row.state == TaskState::Queued).then_some(row)
    })
    .await;
    assert!(
        requeued
            .reason
            .as_deref()
            .unwrap()
            .contains("not re-attached"),
        "{requeued:?}"
    );
    let attempt = &store.attempts_of(&running.id).await.unwrap()[0];
    assert_eq!(attempt.state, "lost");
    assert!(attempt.detail.as_deref().unwrap().contains("within 50 ms"));
}

/// Polls `check` for up to ten seconds.
async fn wait_until<T, F: std::future::Future<Output = Option<T>>>(check: impl Fn() -> F) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn short_tasks_are_sent_ahead_only_to_agents_that_hold_them_and_only_so_far() {
    // Unknown length, long tasks, or an agent that would run them over its slots: none.
    assert_eq!(ahead_capacity(2, None, true), 2);
    assert_eq!(ahead_capacity(2, Some(SHORT_TASK_MS), true), 2);
    assert_eq!(ahead_capacity(2, Some(1.0), false), 2);
    // Short tasks: enough per slot to cover AHEAD_COVER_MS, at least one, at most MAX_AHEAD.
    assert_eq!(ahead_capacity(2, Some(40.0), true), 4);
    assert_eq!(ahead_capacity(2, Some(AHEAD_COVER_MS / 2.0), true), 6);
    assert_eq!(ahead_capacity(2, Some(0.2), true), 2 * (1 + MAX_AHEAD));
}

#[tokio::test]
async fn a_manifest_written_from_a_row_read_before_the_final_commit_is_rewritten_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).await.unwrap();
    let artifacts = dir.path().join("artifacts");
    // The task's final change committed at updated_ms; its manifest was written a moment
    // later from the row as it was before (running), and the server died.
    let mut done = row("t-raced", TaskState::Succeeded, 1);
    done.updated_ms = crate::domain::now_ms() - 1_000;
    store.insert_task(&done).await.unwrap();
    let path = crate::manifest::manifest_path(&artifacts, &done.id, &done.run_id);
    let behind = serde_json::json!({
        "state": "running",
        "updatedAt": crate::domain::rfc3339_ms(done.updated_ms - 5),
    });
    crate::files::write_atomic(&path, behind.to_string().as_bytes()).unwrap();

    let manifests = ManifestWriter::start(store.clone(), artifacts, Default::default());
    manifests.touch_if_stale(&done);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if m["state"] == "succeeded" {
            assert_eq!(
                m["updatedAt"],
                crate::domain::rfc3339_ms(done.updated_ms).as_str()
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "manifest still behind: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
