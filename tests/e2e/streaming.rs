//! Many tasks, many observers, one of each pair dropping mid-stream and resuming.

use std::time::Duration;

use flotilla::client::{next_frame, open_stream};
use flotilla_actors::protocol::StreamKind;
use serde_json::json;

use crate::support::{App, TOKEN};

const TASKS: usize = 20;
const LINES: usize = 5000;

/// Follows a handle to its status frame, dropping the connection once after
/// `drop_after` frames and resuming from the last offset received. Returns the stdout
/// text and checks offsets are dense.
async fn observe(base: String, handle: String, drop_after: Option<usize>) -> (String, usize) {
    let mut text = String::new();
    let mut last = 0u64;
    let mut reconnects = 0;
    let mut drop_after = drop_after;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    'outer: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "observer of {handle} timed out"
        );
        let mut ws = open_stream(&base, TOKEN, &handle, last)
            .await
            .expect("open stream");
        let mut seen = 0;
        loop {
            let frame = next_frame(&mut ws).await.expect("read frame");
            let Some(frame) = frame else {
                reconnects += 1;
                continue 'outer;
            };
            assert_eq!(frame.offset, last + 1, "offsets are dense and in order");
            last = frame.offset;
            match frame.kind {
                StreamKind::Stdout => text.push_str(&frame.data),
                StreamKind::Stderr
                | StreamKind::Guard
                | StreamKind::Gap
                | StreamKind::Truncated => {
                    panic!("unexpected {:?} frame: {}", frame.kind, frame.data)
                }
                StreamKind::Status => {
                    let status = frame.status.expect("status");
                    assert_eq!(status.end.exit_code, Some(0));
                    return (text, reconnects);
                }
            }
            seen += 1;
            if drop_after.is_some_and(|n| seen >= n) {
                drop_after = None;
                drop(ws);
                reconnects += 1;
                continue 'outer;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tasks_reach_two_observers_each_exactly_once_in_order() {
    let app = tokio::task::spawn_blocking(|| App::start(2)).await.unwrap();
    let client = app.client.clone();
    let handles = tokio::task::spawn_blocking(move || {
        (0..TASKS)
            .map(|_| {
                let reply = client
                    .submit(&json!({
                        "argv": ["sh", "-c", format!("for i in $(seq {LINES}); do echo line $i; done")],
                    }))
                    .unwrap();
                reply["handle"].as_str().unwrap().to_owned()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut observers = Vec::new();
    for h in &handles {
        observers.push(tokio::spawn(observe(app.base.clone(), h.clone(), None)));
        // The second observer drops after its first frame and resumes.
        observers.push(tokio::spawn(observe(app.base.clone(), h.clone(), Some(1))));
    }
    let expected: String = (1..=LINES).map(|i| format!("line {i}\n")).collect();
    let mut resumed = 0;
    for (i, o) in observers.into_iter().enumerate() {
        let (text, reconnects) = o.await.unwrap();
        assert!(
            text == expected,
            "observer {i}: output differs (len {} vs {})",
            text.len(),
            expected.len()
        );
        resumed += reconnects;
    }
    assert!(
        resumed >= TASKS,
        "each second observer reconnected at least once"
    );
    let summary = app.client.summary().unwrap();
    assert_eq!(summary["succeeded"], TASKS);
}
