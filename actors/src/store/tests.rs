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
