//! Observers at the edges: caps per handle (429), the drop and disconnect policies for
//! an observer that falls behind, and many stalled observers that must cost the server
//! little and be closed by the write timeout.

use std::time::Duration;

use flotilla::client::{self, ClientError, ObserverSocket};
use flotilla_actors::protocol::{GapReason, StreamKind};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{vm_rss_kib, wait_for, App};

fn v2(argv: &[&str], observers: Value) -> Value {
    json!({"schema": "flotilla.run-request/2.2.0", "argv": argv,
           "streaming": {"observers": observers}})
}

pub(crate) fn handle_view(app: &App, handle: &str) -> Value {
    ureq::get(&format!("{}/v1/handles/{handle}", app.base))
        .set("Authorization", &format!("Bearer {}", app.client.token()))
        .call()
        .expect("GET /v1/handles/{h}")
        .into_json()
        .unwrap()
}

pub(crate) async fn observe(
    app: &App,
    handle: &str,
    query: &str,
) -> Result<ObserverSocket, ClientError> {
    client::open_stream_query(&app.base, app.client.token(), handle, query).await
}

/// Reads frames to the end; the frames and the close reason, if the server gave one.
pub(crate) async fn drain(
    ws: &mut ObserverSocket,
) -> (Vec<flotilla_actors::protocol::ObserverFrame>, String) {
    let mut frames = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message within 30 s");
        match msg {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(c))) => {
                return (frames, c.map(|c| c.reason.to_string()).unwrap_or_default())
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return (frames, format!("(broken: {e})")),
            None => return (frames, String::new()),
        }
    }
}

#[test]
fn max_subscribers_caps_a_handle_with_429_and_the_handle_lists_its_observers() {
    let app = App::start(1);
    let task = app.submit(v2(&["sleep", "30"], json!({"maxSubscribers": 2})));
    let handle = task["handle"].as_str().unwrap().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let first = observe(&app, &handle, "from=0").await.unwrap();
        let _second = observe(&app, &handle, "from=0&policy=drop").await.unwrap();
        let Err(ClientError::Api {
            status, problem, ..
        }) = observe(&app, &handle, "from=0").await
        else {
            panic!("a third observer is admitted past maxSubscribers 2");
        };
        assert_eq!(status, 429, "{problem}");
        assert_eq!(problem["errors"][0]["rule"], "maxSubscribers", "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("maxSubscribers"),
            "{problem}"
        );
        let view = handle_view(&app, &handle);
        assert_eq!(view["maxSubscribers"], 2, "{view}");
        let observers = view["observers"].as_array().unwrap();
        assert_eq!(observers.len(), 2, "{view}");
        let policies: Vec<&str> = observers
            .iter()
            .map(|o| o["policy"].as_str().unwrap())
            .collect();
        assert!(policies.contains(&"drop") && policies.contains(&"catch-up"));
        // out/<scope>/state.json lists the live handle with its task and observers.
        let state_file = app.artifacts().join("out/flotilla/state.json");
        let state = wait_for(
            "state.json lists the handle",
            Duration::from_secs(20),
            || {
                let doc: Value = serde_json::from_slice(&std::fs::read(&state_file).ok()?).ok()?;
                let live = doc["live"]
                    .as_array()?
                    .iter()
                    .find(|h| h["handle"] == handle.as_str())?
                    .clone();
                (live["observers"] == 2).then_some((doc, live))
            },
        );
        assert_eq!(state.1["task"], task["id"], "{:?}", state.1);
        assert_eq!(state.1["state"], "running");
        let errors = crate::support::schema_errors(
            include_str!("../../schemas/handles-state.v1.json"),
            &state.0,
        );
        assert!(errors.is_empty(), "{errors:?}");
        // Leaving frees the place.
        drop(first);
        wait_for(
            "the first observer's place freed",
            Duration::from_secs(10),
            || {
                (handle_view(&app, &handle)["observers"]
                    .as_array()
                    .unwrap()
                    .len()
                    == 1)
                    .then_some(())
            },
        );
        observe(&app, &handle, "from=0").await.unwrap();
        // A policy the server does not know is a 400 naming it.
        let Err(ClientError::Api {
            status, problem, ..
        }) = observe(&app, &handle, "from=0&policy=wait").await
        else {
            panic!("an unknown policy is accepted");
        };
        assert_eq!(status, 400);
        assert_eq!(
            problem["errors"][0]["pointer"], "/query/policy",
            "{problem}"
        );
    });
    app.client.cancel(task["id"].as_str().unwrap()).unwrap();
}

/// A task that waits for the observer to join, then writes 48 MB in lines of 1000 bytes:
/// far more than the socket buffers between the server and an observer that stops
/// reading.
const FLOOD: &str = "sleep 1; head -c 48000000 /dev/zero | tr '\\0' x | fold -w 999";

/// Joins live, stops reading for a while, then reads to the end.
async fn fall_behind(
    app: &App,
    handle: &str,
    policy: &str,
) -> (Vec<flotilla_actors::protocol::ObserverFrame>, String) {
    let mut ws = observe(app, handle, &format!("from=0&policy={policy}"))
        .await
        .unwrap();
    // The first frame: the observer is live.
    let first = tokio::time::timeout(Duration::from_secs(30), client::next_frame(&mut ws))
        .await
        .expect("a first frame")
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (mut frames, reason) = drain(&mut ws).await;
    frames.insert(0, first);
    (frames, reason)
}

#[test]
fn an_observer_that_falls_behind_is_skipped_ahead_under_drop_and_closed_under_disconnect() {
    let app = App::start_with_config(1, "[streaming]\nlag-limit-frames = 32\n");
    let rt = tokio::runtime::Runtime::new().unwrap();

    let task = app.submit(json!({"argv": ["sh", "-c", FLOOD]}));
    let handle = task["handle"].as_str().unwrap();
    let (frames, _) = rt.block_on(fall_behind(&app, handle, "drop"));
    let gaps: Vec<_> = frames.iter().filter_map(|f| f.gap).collect();
    assert!(
        !gaps.is_empty(),
        "no gap frame for an observer that fell behind"
    );
    assert!(gaps.iter().all(|g| g.reason == GapReason::Dropped));
    // What it got and what it was told it missed cover every offset, in order.
    let mut next = 1;
    for f in &frames {
        match f.gap {
            Some(g) => {
                assert_eq!(g.first, next, "the gap starts where the frames stop");
                assert_eq!(f.offset, g.last);
            }
            None => assert_eq!(f.offset, next, "frames are dense between gaps"),
        }
        next = f.offset + 1;
    }
    let last = frames.last().unwrap();
    assert_eq!(
        last.kind,
        StreamKind::Status,
        "the status frame is never skipped"
    );
    let skipped: u64 = gaps.iter().map(|g| g.last + 1 - g.first).sum();
    assert!(skipped > 32, "only {skipped} frames skipped");

    let task = app.submit(json!({"argv": ["sh", "-c", FLOOD]}));
    let handle = task["handle"].as_str().unwrap();
    let (frames, reason) = rt.block_on(fall_behind(&app, handle, "disconnect"));
    assert!(
        reason.contains("frames behind (policy disconnect"),
        "closed with {reason:?} after {} frames",
        frames.len()
    );
    assert!(frames.iter().all(|f| f.kind != StreamKind::Gap));
    // The observer resumes where it was closed and gets the rest, losslessly.
    let resume_from = frames.last().unwrap().offset;
    assert!(
        reason.contains(&format!("resume from offset {resume_from}")),
        "{reason}"
    );
    let mut rest = Vec::new();
    let status = rt
        .block_on(client::follow(
            &app.base,
            app.client.token(),
            handle,
            resume_from,
            Duration::from_secs(30),
            |f| rest.push(f.offset),
        ))
        .unwrap();
    assert_eq!(rest.first(), Some(&(resume_from + 1)));
    assert_eq!(status.end.exit_code, Some(0));
    // Both observers of that task are in its manifest, with why each left.
    let manifest = app.manifest_path(
        task["id"].as_str().unwrap(),
        task["runId"].as_str().unwrap(),
    );
    let observers = wait_for(
        "the observers in the manifest",
        Duration::from_secs(20),
        || {
            let doc: Value = serde_json::from_slice(&std::fs::read(&manifest).ok()?).ok()?;
            let observers = doc["observers"].as_array()?.clone();
            (observers.len() == 2 && observers.iter().all(|o| !o["leftAt"].is_null()))
                .then_some(observers)
        },
    );
    assert_eq!(observers[0]["policy"], "disconnect", "{observers:?}");
    assert!(
        observers[0]["reason"]
            .as_str()
            .unwrap()
            .contains("frames behind"),
        "{observers:?}"
    );
    assert_eq!(observers[0]["lastOffset"], resume_from);
    assert_eq!(observers[1]["from"], resume_from);
    assert_eq!(observers[1]["reason"], "the handle ended");
}

/// Runaway output is stopped at the request's cap: the task fails saying so, and no
/// more than the cap is kept.
#[test]
fn output_past_max_output_bytes_stops_the_task_with_the_reason() {
    let app = App::start(1);
    let task = app.submit(json!({
        "schema": "flotilla.run-request/2.2.0",
        "argv": ["sh", "-c", "yes flotilla-output-cap | head -c 50000000; sleep 30"],
        "streaming": {"maxOutputBytes": 200000},
    }));
    let id = task["id"].as_str().unwrap();
    let failed = app.wait_state(id, "failed", Duration::from_secs(60));
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("passed 200000 bytes"), "{failed}");
    let kept: usize = app
        .output(task["handle"].as_str().unwrap())
        .iter()
        .filter(|(_, kind, _)| kind == "stdout")
        .map(|(_, _, data)| data.len())
        .sum();
    assert!(kept > 0 && kept <= 200_000, "{kept} bytes kept");
}

/// 300 observers that connect and never read cost the server a bounded amount each,
/// do not slow an observer that reads, and are closed by the write timeout.
#[test]
fn three_hundred_stalled_observers_are_bounded_and_closed_by_the_write_timeout() {
    // 300 observers replaying at once keep the server's two workers busy for seconds
    // in a debug build: a longer lease keeps the agent's attempt from being taken for
    // lost meanwhile.
    let app = App::start_with_config(
        1,
        "[streaming]\nwrite-timeout-ms = 3000\nping-interval-ms = 60000\n\
         [fleet]\nlease-timeout-ms = 30000\n",
    );
    let pid = app.server_pid();
    let flood = json!({"argv": ["sh", "-c",
        "sleep 2; head -c 32000000 /dev/zero | tr '\\0' y | fold -w 255"]});
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The same output once without observers, so that the baseline holds what the
    // guard and the log writer keep of it, and the growth below is the observers' own.
    let warm = app.submit(flood.clone());
    app.wait_state(
        warm["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(60),
    );
    let task = app.submit(flood);
    let handle = task["handle"].as_str().unwrap().to_owned();
    let baseline = vm_rss_kib(pid);
    let stalled: Vec<ObserverSocket> = rt.block_on(async {
        let mut all = Vec::new();
        for _ in 0..300 {
            all.push(observe(&app, &handle, "from=0").await.unwrap());
        }
        all
    });
    assert_eq!(
        handle_view(&app, &handle)["observers"]
            .as_array()
            .unwrap()
            .len(),
        300
    );
    // One observer that reads gets everything while the others stall.
    let mut bytes = 0usize;
    let status = rt
        .block_on(client::follow(
            &app.base,
            app.client.token(),
            &handle,
            0,
            Duration::from_secs(60),
            |f| bytes += f.data.len(),
        ))
        .unwrap();
    assert_eq!(status.end.exit_code, Some(0));
    let t = app.task(task["id"].as_str().unwrap());
    assert_eq!(t["attempts"], 1, "{t}");
    assert_eq!(bytes, 32_000_000 + 32_000_000 / 255);
    let peak = vm_rss_kib(pid);
    let per_observer = peak.saturating_sub(baseline) / 300;
    eprintln!(
        "stalled observers: {per_observer} KiB each (baseline {baseline} KiB, peak {peak} KiB)"
    );
    assert!(
        per_observer <= 512,
        "{per_observer} KiB per stalled observer"
    );
    // The write timeout closes them all; their places are freed.
    wait_for(
        "the stalled observers closed",
        Duration::from_secs(30),
        || {
            handle_view(&app, &handle)["observers"]
                .as_array()
                .unwrap()
                .is_empty()
                .then_some(())
        },
    );
    drop(stalled);
}

/// Frames are encoded once and shared between the observers of a handle: twenty that
/// follow a task live and five that join after it ended, from offsets of their own,
/// each get every frame after their offset once, byte for byte what the task printed.
#[test]
fn observers_of_one_handle_share_frames_and_each_gets_its_own_stream() {
    let app = App::start(1);
    let lines = 50_000;
    let expected: String = (1..=lines).map(|i| format!("{i}\n")).collect();
    let task = app.submit(json!({"argv": ["seq", "1", lines.to_string()]}));
    let handle = task["handle"].as_str().unwrap().to_owned();
    let id = task["id"].as_str().unwrap().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let text_of = |frames: &[flotilla_actors::protocol::ObserverFrame], from: u64| {
        let mut text = String::new();
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.offset, from + 1 + i as u64, "dense offsets from {from}");
            match f.kind {
                StreamKind::Stdout => text.push_str(&f.data),
                StreamKind::Status => assert_eq!(i, frames.len() - 1),
                other => panic!("unexpected {other:?} frame"),
            }
        }
        text
    };
    let live = rt.block_on(async {
        let mut sockets = Vec::new();
        for _ in 0..20 {
            sockets.push(observe(&app, &handle, "from=0").await.unwrap());
        }
        let readers: Vec<_> = sockets
            .into_iter()
            .map(|mut ws| tokio::spawn(async move { drain(&mut ws).await.0 }))
            .collect();
        let mut all = Vec::new();
        for r in readers {
            all.push(r.await.unwrap());
        }
        all
    });
    app.wait_state(&id, "succeeded", Duration::from_secs(30));
    for frames in &live {
        assert_eq!(text_of(frames, 0), expected);
    }
    let last = live[0].last().unwrap().offset;
    for from in [0, 1, last / 3, last / 2, last - 1] {
        let frames = rt.block_on(async {
            let mut ws = observe(&app, &handle, &format!("from={from}"))
                .await
                .unwrap();
            drain(&mut ws).await.0
        });
        let text = text_of(&frames, from);
        let skipped: String = live[0][..from as usize]
            .iter()
            .map(|f| f.data.as_str())
            .collect();
        assert_eq!(format!("{skipped}{text}"), expected, "from={from}");
    }
}
