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

/// Flips a bit near the end of the second stdout record of a task past the middle of
/// the log (skipping handles in `spare`): its handle and offset.
fn flip_a_record(log: &Path, spare: &[String]) -> (String, u64) {
    let mut bytes = std::fs::read(log).unwrap();
    let all = records(&bytes);
    let victim = all
        .iter()
        .skip(all.len() / 2)
        .find(|r| r.kind == 1 && r.offset == 2 && !spare.contains(&r.handle))
        .expect("a second stdout frame past the middle");
    bytes[victim.pos + victim.len - 3] ^= 0x20;
    std::fs::write(log, &bytes).unwrap();
    (victim.handle.clone(), victim.offset)
}

/// The task's output after damage at `offset`: the same frames as `before`, the damaged
/// one read as a gap.
fn assert_one_gap(after: &[(u32, String, String)], before: &[(u32, String, String)], offset: u64) {
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

/// Damage found at a start (after a crash: no index checkpoint, the log is rescanned)
/// and damage found when read (after a stop: the checkpoint spares the rescan) both cost
/// one frame each and are reported the same way.
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
    let manifest_of = |app: &App, handle: &str| {
        let t = tasks.iter().find(|t| t["handle"] == handle).unwrap();
        app.manifest_path(t["id"].as_str().unwrap(), t["runId"].as_str().unwrap())
    };
    let lost_recorded = |manifest: &Path| {
        wait_for("the loss in the manifest", Duration::from_secs(20), || {
            let lost = output_lost(manifest);
            (!lost.is_empty()).then_some(lost)
        })
    };

    // A crash, a flipped bit, a start: the rescan finds it.
    let dir = app.crash();
    let log = dir.path().join("state/frames/00000000000000000000.log");
    let size = std::fs::metadata(&log).unwrap().len();
    let (first, offset) = flip_a_record(&log, &[]);
    let app = App::start_in(dir, 2);
    let size_after = std::fs::metadata(&log).unwrap().len();
    assert!(
        size_after >= size,
        "startup cut valid data: {size_after} < {size}"
    );
    assert!(
        app.log().contains("frame log record damaged"),
        "{}",
        app.log()
    );
    for (task, before) in tasks.iter().zip(&before) {
        let after = app.output(task["handle"].as_str().unwrap());
        if task["handle"] == first.as_str() {
            assert_one_gap(&after, before, offset);
        } else {
            assert_eq!(&after, before, "an undamaged task's output changed");
        }
    }
    // The observer's gap frame says which offsets and why.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut gaps = Vec::new();
    rt.block_on(flotilla::client::follow(
        &app.base,
        app.client.token(),
        &first,
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
    let lost = lost_recorded(&manifest_of(&app, &first));
    let reason = lost[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("output frames {offset}..{offset} lost")),
        "{reason}"
    );
    let recorded = "output loss recorded in the task's recovery record";
    assert_eq!(app.log().matches(recorded).count(), 1);

    // A stop writes the index checkpoint; a bit flipped in another task's record after
    // it is found when that record is read, and reported the same way.
    let dir = app.stop();
    let (second, offset2) = flip_a_record(&log, std::slice::from_ref(&first));
    let app = App::start_in(dir, 2);
    app.wait_instances(2);
    let index = tasks
        .iter()
        .position(|t| t["handle"] == second.as_str())
        .unwrap();
    assert_one_gap(&app.output(&second), &before[index], offset2);
    assert!(app
        .prometheus()
        .contains("flotilla_log_lost_frames_total 2\n"));
    lost_recorded(&manifest_of(&app, &second));
    // The first damage, kept lost in the checkpoint, is not recorded twice.
    wait_for("the second loss recorded", Duration::from_secs(20), || {
        (app.log().matches(recorded).count() == 2).then_some(())
    });
    assert_eq!(output_lost(&manifest_of(&app, &first)).len(), 1);
}

/// A small deterministic generator for test data.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Follows `handle` from 0 to its status, dropping the connection after a random number
/// of frames again and again, and riding out a server that goes away: the bytes of
/// every stdout frame, in order.
async fn follow_dropping(base: String, token: String, handle: String, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last = 0u64;
    let mut drops = seed;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "observer {seed} timed out"
        );
        let Ok(mut ws) = flotilla::client::open_stream(&base, &token, &handle, last).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        drops = drops
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut budget = 1 + (drops >> 33) % 40;
        loop {
            let Ok(Some(f)) = flotilla::client::next_frame(&mut ws).await else {
                break;
            };
            assert_eq!(f.offset, last + 1, "dense offsets across reconnects");
            last = f.offset;
            match f.kind {
                flotilla_actors::protocol::StreamKind::Stdout => out.extend(f.bytes()),
                flotilla_actors::protocol::StreamKind::Status => return out,
                other => panic!("unexpected {other:?} frame"),
            }
            budget -= 1;
            if budget == 0 {
                break;
            }
        }
    }
}

/// Binary output reaches observers byte for byte, whatever offsets they drop and resume
/// at, across a `kill -9` of the server in the middle of the stream.
#[test]
fn binary_output_is_byte_exact_across_random_resumes_and_a_server_kill() {
    let app = App::start(1);
    let data = noise(0x5eed, 3 << 20);
    let dir_data = tempfile::tempdir().unwrap();
    for (i, part) in data.chunks(64 << 10).enumerate() {
        std::fs::write(dir_data.path().join(format!("part-{i:03}")), part).unwrap();
    }
    let script = format!(
        "for f in {}/part-*; do cat \"$f\"; sleep 0.05; done",
        dir_data.path().display()
    );
    let task = app.submit(json!({"argv": ["sh", "-c", script], "maxAttempts": 1}));
    let handle = task["handle"].as_str().unwrap().to_owned();
    let base = app.base.clone();
    let port = base.rsplit(':').next().unwrap().to_owned();
    let token = app.client.token().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let observers: Vec<_> = (1..=3)
        .map(|seed| {
            rt.spawn(follow_dropping(
                base.clone(),
                token.clone(),
                handle.clone(),
                seed,
            ))
        })
        .collect();
    // Once output flows, the server dies without warning and comes back on its port.
    wait_for("output flowing", Duration::from_secs(30), || {
        let t = app.task(task["id"].as_str().unwrap());
        (t["state"] == "running").then_some(())
    });
    let index_live = |app: &App| {
        ureq::get(&format!("{}/v1/handles/{handle}", app.base))
            .set("Authorization", &format!("Bearer {token}"))
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok())
            .and_then(|v| v["lastOffset"].as_u64())
            .unwrap_or(0)
    };
    wait_for("some frames stored", Duration::from_secs(30), || {
        (index_live(&app) >= 5).then_some(())
    });
    let dir = app.crash();
    let app = App::start_at(dir, 1, &format!("127.0.0.1:{port}"));
    for (i, o) in observers.into_iter().enumerate() {
        let got = rt.block_on(o).unwrap();
        assert_eq!(got.len(), data.len(), "observer {i}: length");
        assert!(got == data, "observer {i}: bytes differ");
    }
    let done = app.wait_state(
        task["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(60),
    );
    assert_eq!(done["attempts"], 1, "re-attached, not re-run: {done}");
}
