use std::time::Duration;

use super::*;
use crate::domain::{HandleId, RunId};

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
    let writer = StoreWriter::start(store.clone(), log.clone(), manifests.clone());
    let mut d = Dispatcher::new(
        store.clone(),
        log.clone(),
        manifests,
        writer,
        Offers::default(),
    );
    assert_eq!(d.recover().await.unwrap(), 1);
    assert_eq!(d.next_key, 2, "attempt keys continue after the stored ones");
    assert_eq!(d.queue.len(), 1);

    let index = log.handle(&done.handle).unwrap();
    let mut rx = index.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|w| w.sealed))
        .await
        .unwrap()
        .unwrap();
    let frames = log.read_after(&index, 0, 10, usize::MAX).unwrap();
    let status: FinalStatus = serde_json::from_slice(&frames[0].data).unwrap();
    assert_eq!(status.state, TaskState::Succeeded);
    assert_eq!(status.exit_code, Some(0));

    let requeued = store.get_task(&running.id).await.unwrap().unwrap();
    assert_eq!(requeued.state, TaskState::Queued);
    assert!(requeued.reason.unwrap().contains("restarted"));
    assert_eq!(
        store.attempts_of(&running.id).await.unwrap()[0].state,
        "lost"
    );
}
