//! The frame log under damage: a flipped byte costs only its own frame, is reported to
//! observers (a gap frame), in the task's manifest, in the log and in `/metrics`, and
//! startup never cuts valid data.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{wait_for, App};

/// One record of `frames.log` as the format documents it: `[len u32][crc u32][body]`,
/// body `[handle len u8][handle][offset u64][attempt u32][ts i64][kind u8]…`.
struct Record {
    pos: usize,
    len: usize,
    handle: String,
    offset: u64,
    kind: u8,
}

fn records(bytes: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..pos + 8 + len];
        let hlen = body[0] as usize;
        let rest = &body[1 + hlen..];
        out.push(Record {
            pos,
            len: 8 + len,
            handle: String::from_utf8(body[1..1 + hlen].to_vec()).unwrap(),
            offset: u64::from_le_bytes(rest[..8].try_into().unwrap()),
            kind: rest[20] & 0x7f,
        });
        pos += 8 + len;
    }
    out
}

fn output_lost(manifest: &Path) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    doc["recovery"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "output-lost")
        .cloned()
        .collect()
}

#[test]
fn a_flipped_byte_in_the_log_costs_one_frame_and_is_reported() {
    let app = App::start(2);
    let mut tasks = Vec::new();
    for n in 0..12 {
        let script = format!("for i in 1 2 3 4 5; do echo task-{n}-line-$i; sleep 0.05; done");
        tasks.push(app.submit(json!({"argv": ["sh", "-c", script]})));
    }
    app.wait_until_finished(12);
    let before: Vec<_> = tasks
        .iter()
        .map(|t| app.output(t["handle"].as_str().unwrap()))
        .collect();
    let dir = app.stop();
    let log = dir.path().join("state/frames/frames.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let size = bytes.len();
    // A stdout record in the middle of the log, of a task whose output goes on after it.
    let all = records(&bytes);
    let victim = all
        .iter()
        .skip(all.len() / 2)
        .find(|r| r.kind == 1 && r.offset == 2)
        .expect("a second stdout frame past the middle");
    bytes[victim.pos + victim.len - 3] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();
    let (handle, offset) = (victim.handle.clone(), victim.offset);

    let app = App::start_in(dir, 2);
    let size_after = std::fs::metadata(app.state_dir().join("frames/frames.log"))
        .unwrap()
        .len() as usize;
    assert!(
        size_after >= size,
        "startup cut valid data: {size_after} < {size}"
    );
    for (task, before) in tasks.iter().zip(&before) {
        let after = app.output(task["handle"].as_str().unwrap());
        if task["handle"] != handle.as_str() {
            assert_eq!(&after, before, "an undamaged task's output changed");
            continue;
        }
        assert_eq!(
            after.len(),
            before.len(),
            "the damage costs one frame, no more"
        );
        for (i, (a, b)) in after.iter().zip(before).enumerate() {
            if i as u64 + 1 == offset {
                assert_eq!(a.1, "gap", "the damaged frame reads as a gap");
            } else {
                assert_eq!(a, b, "frame {} of the damaged task changed", i + 1);
            }
        }
    }
    // The observer's gap frame says which offsets and why.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut gaps = Vec::new();
    rt.block_on(flotilla::client::follow(
        &app.base,
        app.client.token(),
        &handle,
        0,
        Duration::from_secs(30),
        |f| gaps.extend(f.gap),
    ))
    .unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!((gaps[0].first, gaps[0].last), (offset, offset));
    assert_eq!(
        serde_json::to_value(gaps[0].reason).unwrap(),
        json!("corrupt")
    );
    let metrics = app.prometheus();
    assert!(
        metrics.contains("flotilla_log_lost_frames_total 1\n"),
        "{metrics}"
    );
    assert!(
        app.log().contains("frame log record damaged"),
        "{}",
        app.log()
    );
    let task = tasks
        .iter()
        .find(|t| t["handle"] == handle.as_str())
        .unwrap();
    let manifest = app.manifest_path(
        task["id"].as_str().unwrap(),
        task["runId"].as_str().unwrap(),
    );
    let lost = wait_for("the loss in the manifest", Duration::from_secs(20), || {
        let lost = output_lost(&manifest);
        (!lost.is_empty()).then_some(lost)
    });
    let reason = lost[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("output frames {offset}..{offset} lost")),
        "{reason}"
    );
    // The same damage found at the next start is not recorded twice (recovery runs
    // before the server listens).
    let recorded = "output loss recorded in the task's recovery record";
    assert_eq!(app.log().matches(recorded).count(), 1);
    let app = App::start_in(app.stop(), 2);
    app.wait_instances(2);
    assert_eq!(app.log().matches(recorded).count(), 1, "{}", app.log());
    assert_eq!(output_lost(&manifest).len(), 1);
    assert!(app
        .prometheus()
        .contains("flotilla_log_lost_frames_total 1\n"));
}
