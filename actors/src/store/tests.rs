use super::*;

fn row(id: &str) -> TaskRow {
    TaskRow {
        id: TaskId::parse(id).unwrap(),
        handle: HandleId::generate(),
        run_id: RunId::generate(),
        request: "{}".into(),
        state: TaskState::Queued,
        attempts: 0,
        max_attempts: 3,
        instance: None,
        exit_code: None,
        signal: None,
        reason: None,
        created_ms: 1,
        updated_ms: 1,
        finished_ms: None,
        parent: None,
        shard: None,
    }
}

#[tokio::test]
async fn tasks_and_attempts_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let task = row("t-one");
    {
        let store = Store::open(&path).await.unwrap();
        store.insert_task(&task).await.unwrap();
        let inst = InstanceId::parse("local-1").unwrap();
        assert_eq!(store.max_attempt_key().await.unwrap(), 0);
        store.start_attempt(7, &task.id, 1, &inst, 5).await.unwrap();
        assert_eq!(store.max_attempt_key().await.unwrap(), 7);
        assert!(matches!(
            store.insert_task(&task).await,
            Err(StoreError::Duplicate(_))
        ));
    }
    let store = Store::open(&path).await.unwrap();
    let got = store.get_task(&task.id).await.unwrap().unwrap();
    assert_eq!(got.state, TaskState::Running);
    assert_eq!(got.attempts, 1);
    assert_eq!(store.live_tasks().await.unwrap().len(), 1);
    assert_eq!(store.lose_open_attempts(9).await.unwrap(), 1);
    let attempts = store.attempts_of(&task.id).await.unwrap();
    assert_eq!(attempts[0].state, "lost");
    store
        .update_task(
            &task.id,
            &TaskUpdate {
                state: TaskState::Succeeded,
                exit_code: Some(0),
                signal: None,
                reason: None,
            },
            10,
        )
        .await
        .unwrap();
    assert!(store.live_tasks().await.unwrap().is_empty());
    let done = store
        .list_tasks(Some(TaskState::Succeeded), 10)
        .await
        .unwrap();
    assert_eq!(done[0].finished_ms, Some(10));
    assert!(store
        .list_tasks(Some(TaskState::Queued), 10)
        .await
        .unwrap()
        .is_empty());
}

/// A change the store refuses must not be followed by what follows a commit: no status
/// frame seals its handle. The rest of its batch is still recorded and sealed.
#[tokio::test]
async fn the_writer_seals_only_what_it_committed() {
    use crate::exec_handle::{Append, FrameLog};
    use crate::manifest::ManifestWriter;
    use crate::protocol::StreamKind;
    use writer::{StoreWriter, Then, Write};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).await.unwrap();
    let log = FrameLog::open(&dir.path().join("frames")).unwrap();
    let manifests = ManifestWriter::start(
        store.clone(),
        dir.path().join("artifacts"),
        crate::domain::Scope::default(),
    );
    let writer = StoreWriter::start(
        store.clone(),
        log.clone(),
        manifests,
        crate::lifeline::Lifeline::unwatched("store writer"),
        Default::default(),
    );
    let real = row("t-real");
    store.insert_task(&real).await.unwrap();
    // No task row: the foreign key refuses this attempt.
    let ghost = row("t-ghost");
    let seal = |r: &TaskRow| Append {
        handle: r.handle.clone(),
        attempt: 1,
        kind: StreamKind::Status,
        data: b"{}".to_vec(),
        ack: None,
    };
    for r in [&real, &ghost] {
        log.create_handle(&r.handle);
    }
    writer.send(
        vec![Write::UpdateTask {
            task: real.id.clone(),
            update: TaskUpdate {
                state: TaskState::Succeeded,
                exit_code: Some(0),
                signal: None,
                reason: None,
            },
            now_ms: 2,
        }],
        Then {
            seal: Some(seal(&real)),
            ..Then::default()
        },
    );
    let (replied_tx, replied) = tokio::sync::oneshot::channel::<()>();
    writer.send(
        vec![Write::StartAttempt {
            key: 1,
            task: ghost.id.clone(),
            attempt_no: 1,
            instance: InstanceId::parse("local-1").unwrap(),
            now_ms: 2,
            lease_until_ms: 3_002,
        }],
        Then {
            seal: Some(seal(&ghost)),
            after: Some(Box::new(move || {
                let _ = replied_tx.send(());
            })),
            ..Then::default()
        },
    );
    // A marker queued behind both: once it is durable, so is anything sealed before it.
    let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
    let marker = row("t-marker");
    log.create_handle(&marker.handle);
    writer.send(
        Vec::new(),
        Then {
            seal: Some(seal(&marker)),
            after: Some(Box::new(move || {
                let _ = done_tx.send(());
            })),
            ..Then::default()
        },
    );
    done.await.unwrap();
    assert!(
        replied.await.is_err(),
        "the refused change's reply is dropped"
    );
    let mut marked = log.handle(&marker.handle).unwrap().subscribe();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        marked.wait_for(|w| w.sealed),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(log.handle(&real.handle).unwrap().watermark().sealed);
    assert!(!log.handle(&ghost.handle).unwrap().watermark().sealed);
    assert_eq!(
        store.get_task(&real.id).await.unwrap().unwrap().state,
        TaskState::Succeeded
    );
}

#[tokio::test]
async fn leases_fences_and_cordons_are_kept_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).await.unwrap();
    let task = row("t-leased");
    store.insert_task(&task).await.unwrap();
    let inst = InstanceId::parse("local-1").unwrap();
    let mut conn = store.pool.acquire().await.unwrap();
    start_attempt_in(&mut conn, 4, &task.id, 1, &inst, (100, 3_100))
        .await
        .unwrap();
    assert_eq!(store.lease_of(4).await.unwrap(), Some(3_100));
    renew_leases_in(&mut conn, &[(4, 4_100)]).await.unwrap();
    assert_eq!(store.lease_of(4).await.unwrap(), Some(4_100));
    // A lost attempt holds no lease; when its agent comes back with it, it is fenced.
    let lost = End::because(AttemptState::Lost, "instance local-1 disconnected");
    end_attempt_in(&mut conn, 4, &lost, 4_200).await.unwrap();
    assert_eq!(store.lease_of(4).await.unwrap(), None);
    fence_held_in(&mut conn, 4, &inst, "came back", 5_000)
        .await
        .unwrap();
    assert_eq!(
        store.attempts_of(&task.id).await.unwrap()[0].state,
        "fenced"
    );
    let marks = store.checkpoints_of(&task.id).await.unwrap();
    assert_eq!(
        (marks[0].action, marks[0].epoch, marks[0].attempt_no),
        (CheckpointAction::Fence, 4, 1)
    );
    assert_eq!(
        store.task_of_attempt(4).await.unwrap(),
        Some(task.id.clone())
    );

    set_control_in(&mut conn, &inst, Some("cordon"), 1)
        .await
        .unwrap();
    set_control_in(&mut conn, &inst, Some("drain"), 2)
        .await
        .unwrap();
    assert_eq!(
        store.instance_controls().await.unwrap(),
        [(inst.clone(), "drain".to_owned())]
    );
    set_control_in(&mut conn, &inst, None, 3).await.unwrap();
    assert!(store.instance_controls().await.unwrap().is_empty());
}

#[tokio::test]
async fn instance_stats_count_busy_time_restarts_and_repairs_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).await.unwrap();
    let a = InstanceId::parse("local-1").unwrap();
    let b = InstanceId::parse("local-2").unwrap();
    assert_eq!(store.instance_stats(&a, 0).await.unwrap(), None);
    let mut conn = store.pool.acquire().await.unwrap();
    let session = |instance: &InstanceId, conn: u64, pid: u32, at: i64| SessionStart {
        instance: instance.clone(),
        conn,
        pid,
        slots: 2,
        capabilities: vec!["local".into()],
        now_ms: at,
    };
    // local-1: pid 10, a reconnect of the same process, then pid 11 (one restart).
    for (c, pid, at, left) in [(1, 10, 0, 1_000), (2, 10, 1_000, 2_000), (3, 11, 2_000, 0)] {
        instances::start_session_in(&mut conn, &session(&a, c, pid, at))
            .await
            .unwrap();
        if left > 0 {
            instances::touch_session_in(&mut conn, &a, c, left, true)
                .await
                .unwrap();
        }
    }
    instances::start_session_in(&mut conn, &session(&b, 4, 20, 0))
        .await
        .unwrap();
    drop(conn);
    // A task's first attempt is lost on local-1 at 1,500 and runs again on local-2 at
    // 1,800; another ran on local-1 in its last session from 2,500 and is still running.
    let t1 = row("t-one");
    let t2 = row("t-two");
    store.insert_task(&t1).await.unwrap();
    store.insert_task(&t2).await.unwrap();
    store.start_attempt(1, &t1.id, 1, &a, 500).await.unwrap();
    let lost = AttemptEnd {
        state: AttemptState::Lost,
        exit_code: None,
        signal: None,
        reason: Some("instance local-1 disconnected".into()),
    };
    store.end_attempt(1, &lost, 1_500).await.unwrap();
    store.start_attempt(2, &t1.id, 2, &b, 1_800).await.unwrap();
    store.start_attempt(3, &t2.id, 1, &a, 2_500).await.unwrap();

    let s = store.instance_stats(&a, 3_000).await.unwrap().unwrap();
    assert_eq!(s.connected_ms, 2_000);
    assert_eq!(s.left_ms, None);
    assert_eq!(s.restarts, 1, "a reconnect of the same pid is no restart");
    assert_eq!(s.busy_ms, 500, "only the latest session's slot time");
    assert!((s.utilization - 500.0 / 2_000.0).abs() < 1e-9);
    assert_eq!(s.attempts.started, 2);
    assert_eq!(s.attempts.rescheduled, 1);
    assert_eq!(s.attempts.running, 1);
    assert_eq!((s.repairs, s.mttr_ms), (1, Some(300)));
    let s = store.instance_stats(&b, 3_000).await.unwrap().unwrap();
    assert_eq!((s.restarts, s.repairs, s.mttr_ms), (0, 0, None));
    assert_eq!(s.busy_ms, 1_200);

    // At start, open sessions end when they were last heard from.
    assert_eq!(store.close_open_sessions().await.unwrap(), 2);
    let s = store.instance_stats(&a, 9_000).await.unwrap().unwrap();
    assert_eq!(s.left_ms, Some(2_000));
}
