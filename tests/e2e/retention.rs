//! Retention against the real server: a handle over its byte limit loses its oldest
//! output, an observer resuming below what is kept is told so by a `truncated` frame and
//! then gets every kept frame, and all of it holds across a `kill -9`; output older than
//! the age limit goes, and its handle then answers 410.

use std::time::Duration;

use flotilla::client::ClientError;
use flotilla_actors::protocol::{ObserverFrame, StreamKind, TruncateReason};
use serde_json::{json, Value};

use crate::observers::{drain, handle_view, observe};
use crate::support::{schema_errors, wait_for, App};

/// Lines of `seq 1 N`: about 1.3 MB for N = 200,000.
const LINES: u32 = 200_000;

/// Every frame of `handle` from offset 0, as a fresh observer gets them.
fn from_the_start(app: &App, handle: &str) -> Vec<ObserverFrame> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = observe(app, handle, "from=0")
            .await
            .expect("observer joins");
        drain(&mut ws).await.0
    })
}

/// Checks what a fresh observer of the truncated handle gets: one truncated frame
/// naming `first`, then every offset from there to the status frame, the output a
/// whole tail of what the task printed. Returns the first offset kept.
fn check_truncated_stream(frames: &[ObserverFrame], expected: &str) -> u64 {
    let t = frames[0]
        .truncated
        .expect("the first frame is a truncated frame");
    assert_eq!(frames[0].kind, StreamKind::Truncated);
    assert_eq!(t.reason, TruncateReason::HandleBytes);
    assert_eq!(frames[0].offset, t.first - 1);
    let mut text = String::new();
    for (i, f) in frames[1..].iter().enumerate() {
        assert_eq!(
            f.offset,
            t.first + i as u64,
            "offsets dense after the truncation"
        );
        match f.kind {
            StreamKind::Stdout => text.push_str(&f.data),
            StreamKind::Status => assert_eq!(i, frames.len() - 2, "status is last"),
            other => panic!("unexpected {other:?} frame"),
        }
    }
    assert_eq!(frames.last().unwrap().kind, StreamKind::Status);
    assert!(
        !text.is_empty() && expected.ends_with(&text),
        "kept output is not a tail"
    );
    assert!(text.len() < expected.len() / 2, "{} bytes kept", text.len());
    t.first
}

fn metric(prometheus: &str, series: &str) -> u64 {
    prometheus
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
}

#[test]
fn a_handle_over_its_byte_limit_is_truncated_and_observers_are_told_across_a_crash() {
    let app = App::start_with_config(
        1,
        "[retention]\nsegment-bytes = 65536\nhandle-max-bytes = 262144\n",
    );
    let task = app.submit(json!({"argv": ["seq", "1", LINES.to_string()]}));
    let id = task["id"].as_str().unwrap().to_owned();
    let handle = task["handle"].as_str().unwrap().to_owned();
    app.wait_state(&id, "succeeded", Duration::from_secs(60));
    let expected: String = (1..=LINES).map(|i| format!("{i}\n")).collect();

    // Retention checks about once a second: within a pass of the task's last write,
    // the handle is under its limit.
    let view = wait_for(
        "the handle under its limit",
        Duration::from_secs(20),
        || {
            let v = handle_view(&app, &handle);
            let under = v["keptBytes"].as_u64().is_some_and(|b| b <= 256 << 10);
            (v["firstOffset"].as_u64() > Some(1) && under).then_some(v)
        },
    );
    assert_eq!(view["truncated"], "handle-bytes", "{view}");
    let errors = schema_errors(include_str!("../../schemas/handle-view.v1.json"), &view);
    assert!(errors.is_empty(), "{errors:?}");

    let first = check_truncated_stream(&from_the_start(&app, &handle), &expected);
    assert_eq!(Some(first), view["firstOffset"].as_u64());

    // The segments only the old output was in are gone from the disk.
    let on_disk = wait_for("old segments deleted", Duration::from_secs(20), || {
        let bytes: u64 = std::fs::read_dir(app.state_dir().join("frames"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            // A segment deleted meanwhile holds nothing.
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum();
        (bytes < (expected.len() / 2) as u64).then_some(bytes)
    });
    // Each deletion is counted just after its unlink.
    let prometheus = wait_for("deletions counted", Duration::from_secs(10), || {
        let text = app.prometheus();
        (metric(&text, "flotilla_log_deleted_segments_total") > 0).then_some(text)
    });
    assert!(
        metric(
            &prometheus,
            "flotilla_log_removed_frames_total{limit=\"handle-bytes\"}"
        ) > 0
    );
    assert!(metric(&prometheus, "flotilla_log_bytes") <= on_disk);

    // out/<scope>/state.json names the limits and what they removed.
    let state_file = app.artifacts().join("out/flotilla/state.json");
    let state: Value = wait_for(
        "state.json counts the removal",
        Duration::from_secs(20),
        || {
            let doc: Value = serde_json::from_slice(&std::fs::read(&state_file).ok()?).ok()?;
            (doc["retention"]["removedFrames"]["handle-bytes"].as_u64() > Some(0)).then_some(doc)
        },
    );
    let errors = schema_errors(include_str!("../../schemas/handles-state.v1.json"), &state);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(state["retention"]["handleMaxBytes"], 262_144);

    // kill -9, start again: the same truncation, nothing deleted comes back as damage.
    let dir = app.crash();
    let app = App::start_in(dir, 1);
    let frames = from_the_start(&app, &handle);
    let again = check_truncated_stream(&frames, &expected);
    assert!(
        again >= first,
        "first kept went back from {first} to {again}"
    );
    assert!(
        !app.log().contains("frame log record damaged"),
        "{}",
        app.log()
    );
}

#[test]
fn output_older_than_the_age_limit_goes_and_its_handle_answers_410() {
    let app = App::start_with_config(
        1,
        "[retention]\nmax-age-seconds = 2\nsegment-max-age-seconds = 1\n",
    );
    let task = app.submit(json!({"argv": ["echo", "short-lived"]}));
    let id = task["id"].as_str().unwrap().to_owned();
    let handle = task["handle"].as_str().unwrap().to_owned();
    app.wait_state(&id, "succeeded", Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused = wait_for("the handle expires", Duration::from_secs(30), || {
        rt.block_on(observe(&app, &handle, "from=0")).err()
    });
    let ClientError::Api {
        status, problem, ..
    } = refused
    else {
        panic!("not an API error: {refused}");
    };
    assert_eq!(status, 410, "{problem}");
    assert_eq!(
        problem["type"], "urn:flotilla:problem:output-expired",
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains(&id),
        "{problem}"
    );
    let shown = ureq::get(&format!("{}/v1/handles/{handle}", app.base))
        .set("Authorization", &format!("Bearer {}", app.client.token()))
        .call();
    assert!(matches!(shown, Err(ureq::Error::Status(410, _))));
    // The task's record stays; only its output went.
    assert_eq!(app.task(&id)["state"], "succeeded");
    let prometheus = app.prometheus();
    assert!(
        metric(
            &prometheus,
            "flotilla_log_removed_frames_total{limit=\"age\"}"
        ) >= 2
    );
}
