use std::time::Duration;

use std::collections::HashMap;

use super::*;
use crate::protocol::{Gap, GapReason, TruncateReason, Truncated};
use std::path::Path;

fn append(handle: &HandleId, kind: StreamKind, data: &str) -> Append {
    Append {
        handle: handle.clone(),
        attempt: 1,
        kind,
        data: data.as_bytes().to_vec(),
        ack: None,
    }
}

async fn wait_for(index: &HandleIndex, last: u64) {
    let mut rx = index.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|w| w.last >= last))
        .await
        .expect("watermark did not advance in time")
        .expect("writer stopped");
}

#[tokio::test]
async fn frames_get_dense_offsets_per_handle_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = FrameLog::open(dir.path()).unwrap();
    let a = HandleId::parse("h-a").unwrap();
    let b = HandleId::parse("h-b").unwrap();
    let ia = log.create_handle(&a);
    let ib = log.create_handle(&b);
    for i in 1..=100 {
        log.append(append(&a, StreamKind::Stdout, &format!("a{i}\n")))
            .await
            .unwrap();
        log.append(append(&b, StreamKind::Stderr, &format!("b{i}\n")))
            .await
            .unwrap();
    }
    wait_for(&ia, 100).await;
    wait_for(&ib, 100).await;
    let frames = log.read_after(&ia, 40, 1000, usize::MAX).unwrap();
    assert_eq!(frames.len(), 60);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.offset, 41 + i as u64);
        assert_eq!(f.data, format!("a{}\n", 41 + i).into_bytes());
        assert_eq!(f.kind, StreamKind::Stdout);
    }
}

#[tokio::test]
async fn acks_arrive_after_durability_and_nothing_follows_the_status_frame() {
    let dir = tempfile::tempdir().unwrap();
    let log = FrameLog::open(dir.path()).unwrap();
    let h = HandleId::parse("h-x").unwrap();
    let index = log.create_handle(&h);
    let (tx, mut rx) = mpsc::unbounded_channel();
    for seq in 1..=3 {
        let mut a = append(&h, StreamKind::Stdout, "x\n");
        a.ack = Some(AckTo {
            tx: tx.clone(),
            attempt: 9,
            seq,
        });
        log.append(a).await.unwrap();
    }
    log.append(append(&h, StreamKind::Status, "{}"))
        .await
        .unwrap();
    log.append(append(&h, StreamKind::Stdout, "late\n"))
        .await
        .unwrap();
    let mut highest = 0;
    while highest < 3 {
        let (attempt, seq) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(attempt, 9);
        assert!(index.watermark().last >= seq, "acked before durable");
        highest = seq;
    }
    wait_for(&index, 4).await;
    assert!(index.watermark().sealed);
    // The late frame is never stored.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(index.watermark().last, 4);
}

#[tokio::test]
async fn reopening_rebuilds_indexes_and_drops_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let h = HandleId::parse("h-r").unwrap();
    {
        let log = FrameLog::open(dir.path()).unwrap();
        let index = log.create_handle(&h);
        for i in 1..=10 {
            log.append(append(&h, StreamKind::Stdout, &format!("{i}\n")))
                .await
                .unwrap();
        }
        wait_for(&index, 10).await;
    }
    // Simulate a crash mid-write: half a record at the end.
    let path = segments::path(dir.path(), 0);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let log = FrameLog::open(dir.path()).unwrap();
    let index = log.handle(&h).expect("handle survives a restart");
    assert_eq!(
        index.watermark(),
        Watermark {
            last: 10,
            sealed: false
        }
    );
    log.append(append(&h, StreamKind::Stdout, "11\n"))
        .await
        .unwrap();
    wait_for(&index, 11).await;
    let frames = log.read_after(&index, 0, 100, usize::MAX).unwrap();
    let offsets: Vec<u64> = frames.iter().map(|f| f.offset).collect();
    assert_eq!(offsets, (1..=11).collect::<Vec<_>>());
    assert_eq!(frames[10].data, b"11\n");
}

/// After a restart the log knows the last agent chunk of each attempt on disk, so an
/// agent that re-attaches resends exactly what follows it; frames read back unchanged.
#[tokio::test]
async fn the_last_durable_chunk_of_each_attempt_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let h = HandleId::parse("h-acks").unwrap();
    {
        let log = FrameLog::open(dir.path()).unwrap();
        let index = log.create_handle(&h);
        let (tx, _rx) = mpsc::unbounded_channel();
        for (attempt, seq, data) in [(7, 1, "one\n"), (7, 2, "two\n"), (9, 5, "five\n")] {
            let mut a = append(&h, StreamKind::Stdout, data);
            a.ack = Some(AckTo {
                tx: tx.clone(),
                attempt,
                seq,
            });
            log.append(a).await.unwrap();
        }
        log.append(append(&h, StreamKind::Stderr, "no ack\n"))
            .await
            .unwrap();
        wait_for(&index, 4).await;
        assert_eq!(log.recovered_seq(7), 0, "only a reopen recovers seqs");
    }
    let log = FrameLog::open(dir.path()).unwrap();
    assert_eq!(log.recovered_seq(7), 2);
    assert_eq!(log.recovered_seq(9), 5);
    assert_eq!(log.recovered_seq(8), 0);
    let index = log.handle(&h).unwrap();
    let frames = log.read_after(&index, 0, 10, usize::MAX).unwrap();
    let text: Vec<&[u8]> = frames.iter().map(|f| f.data.as_slice()).collect();
    assert_eq!(
        text,
        [&b"one\n"[..], b"two\n", b"five\n", b"no ack\n"],
        "the acknowledgement is not part of the data"
    );
    assert_eq!(frames[3].kind, StreamKind::Stderr);
    log.forget_recovered();
    assert_eq!(log.recovered_seq(7), 0);
}

/// A small deterministic generator, so a failing case can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One record of a generated segment: what it holds and which bytes it spans.
struct Written {
    frame: StoredFrame,
    span: std::ops::Range<u64>,
}

/// A segment of interleaved frames of three handles, the first two ending with their
/// status frame, written as the writer writes them.
fn segment(rng: &mut Rng) -> (Vec<u8>, Vec<Written>) {
    let handles: Vec<HandleId> = ["h-alpha", "h-beta", "h-gamma"]
        .iter()
        .map(|h| HandleId::parse(h).unwrap())
        .collect();
    let mut next = [1u64; 3];
    let mut bytes = Vec::new();
    let mut written = Vec::new();
    let total = 20 + rng.below(40);
    for i in 0..total {
        let h = rng.below(3) as usize;
        let closing = i + 3 >= total && h < 2 && next[h] > 1;
        let len = rng.below(300) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        let frame = StoredFrame {
            handle: handles[h].clone(),
            offset: next[h],
            attempt: 1,
            ts_ms: 1_700_000_000_000 + i as i64,
            kind: if closing {
                StreamKind::Status
            } else {
                StreamKind::Stdout
            },
            data: if closing { b"{}".to_vec() } else { data },
        };
        if written
            .iter()
            .any(|w: &Written| w.frame.handle == frame.handle && w.frame.kind == StreamKind::Status)
        {
            continue;
        }
        let acks = (rng.below(2) == 0).then_some((h as u64 + 1, next[h]));
        let start = bytes.len() as u64;
        record::write(&mut bytes, &frame, acks, &frame.data).unwrap();
        written.push(Written {
            frame,
            span: start..bytes.len() as u64,
        });
        next[h] += 1;
    }
    (bytes, written)
}

/// Every frame of `log`, per handle, as readers get them.
fn read_all(log: &FrameLog) -> HashMap<HandleId, Vec<StoredFrame>> {
    ["h-alpha", "h-beta", "h-gamma"]
        .iter()
        .map(|h| HandleId::parse(h).unwrap())
        .filter_map(|h| {
            let index = log.handle(&h)?;
            Some((h, log.read_after(&index, 0, 10_000, usize::MAX).unwrap()))
        })
        .collect()
}

/// Property: one flipped byte anywhere costs exactly the frame whose record holds it.
/// Every other frame reads back unchanged at its offset, nothing is cut, and the lost
/// frame reads as a gap (unless it was the last of its handle and its header no longer
/// names it, so nothing shows it was there).
#[test]
fn a_flipped_byte_costs_only_the_frame_it_lands_in() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (mut bytes, written) = segment(&mut rng);
        let at = rng.below(bytes.len() as u64);
        bytes[at as usize] ^= 1 + rng.below(255) as u8;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segments::path(dir.path(), 0), &bytes).unwrap();
        let log = FrameLog::open(dir.path()).unwrap();
        let size = std::fs::metadata(segments::path(dir.path(), 0))
            .unwrap()
            .len();
        let hit = written.iter().position(|w| w.span.contains(&at)).unwrap();
        let last_record = hit == written.len() - 1;
        assert!(
            size == bytes.len() as u64 || (last_record && size == written[hit].span.start),
            "seed {seed}: only a damaged last record may be cut ({size} of {} bytes kept)",
            bytes.len()
        );
        let got = read_all(&log);
        for (i, w) in written.iter().enumerate() {
            let frames = got.get(&w.frame.handle);
            let found = frames.and_then(|f| f.iter().find(|f| f.offset == w.frame.offset));
            if i != hit {
                let found = found.unwrap_or_else(|| panic!("seed {seed}: frame {i} lost"));
                assert_eq!(found.data, w.frame.data, "seed {seed}: frame {i} changed");
                assert_eq!(found.kind, w.frame.kind, "seed {seed}: frame {i} changed");
                continue;
            }
            let later = written[i + 1..]
                .iter()
                .any(|o| o.frame.handle == w.frame.handle);
            match found {
                Some(f) => {
                    assert_eq!(f.kind, StreamKind::Gap, "seed {seed}: damaged frame served");
                    let gap: Gap = serde_json::from_slice(&f.data).unwrap();
                    assert_eq!(gap.reason, GapReason::Corrupt);
                    assert_eq!((gap.first, gap.last), (w.frame.offset, w.frame.offset));
                    let reported = log.damage().iter().any(|d| {
                        d.handle == w.frame.handle
                            && d.first == w.frame.offset
                            && d.last == w.frame.offset
                    });
                    assert!(
                        reported,
                        "seed {seed}: loss not reported: {:?}",
                        log.damage()
                    );
                }
                None => assert!(
                    !later,
                    "seed {seed}: a lost frame with frames after it must read as a gap"
                ),
            }
        }
        assert!(
            log.counters().lost_frames.load(Ordering::Relaxed) <= 1,
            "seed {seed}: {:?}",
            log.damage()
        );
    }
}

/// Property: cutting the segment anywhere keeps every record before the cut, and the
/// next append goes right after them.
#[tokio::test]
async fn a_truncated_segment_keeps_every_whole_record() {
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let (bytes, written) = segment(&mut rng);
        let cut = rng.below(bytes.len() as u64);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segments::path(dir.path(), 0), &bytes[..cut as usize]).unwrap();
        let log = FrameLog::open(dir.path()).unwrap();
        let whole: Vec<&Written> = written.iter().filter(|w| w.span.end <= cut).collect();
        let kept = whole.last().map_or(0, |w| w.span.end);
        assert_eq!(
            std::fs::metadata(segments::path(dir.path(), 0))
                .unwrap()
                .len(),
            kept,
            "seed {seed}: the torn tail, and only it, is cut"
        );
        let got = read_all(&log);
        for w in &whole {
            let frame = got[&w.frame.handle]
                .iter()
                .find(|f| f.offset == w.frame.offset)
                .unwrap_or_else(|| panic!("seed {seed}: a whole record was lost"));
            assert_eq!(frame.data, w.frame.data);
        }
        assert!(
            log.damage().is_empty(),
            "seed {seed}: a torn tail is no damage"
        );
        let gamma = HandleId::parse("h-gamma").unwrap();
        let index = log.create_handle(&gamma);
        let before = index.watermark().last;
        log.append(append(&gamma, StreamKind::Stdout, "after\n"))
            .await
            .unwrap();
        wait_for(&index, before + 1).await;
        let frames = log.read_after(&index, before, 10, usize::MAX).unwrap();
        assert_eq!(frames[0].data, b"after\n", "seed {seed}");
    }
}

/// A start after a checkpoint reads the index from it and scans only what follows:
/// every frame reads back, the tail's too, and the acknowledged chunks survive.
#[tokio::test]
async fn a_checkpoint_spares_the_rescan_and_the_tail_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let a = HandleId::parse("h-a").unwrap();
    let b = HandleId::parse("h-b").unwrap();
    {
        let log = FrameLog::open(dir.path()).unwrap();
        let ia = log.create_handle(&a);
        let ib = log.create_handle(&b);
        let (tx, _rx) = mpsc::unbounded_channel();
        for seq in 1..=10 {
            let mut f = append(&a, StreamKind::Stdout, &format!("a{seq}\n"));
            f.ack = Some(AckTo {
                tx: tx.clone(),
                attempt: 5,
                seq,
            });
            log.append(f).await.unwrap();
        }
        log.checkpoint().await.unwrap();
        for i in 11..=15 {
            log.append(append(&a, StreamKind::Stdout, &format!("a{i}\n")))
                .await
                .unwrap();
        }
        for i in 1..=3 {
            log.append(append(&b, StreamKind::Stderr, &format!("b{i}\n")))
                .await
                .unwrap();
        }
        wait_for(&ia, 15).await;
        wait_for(&ib, 3).await;
    }
    // Damage before the checkpoint's end is not looked for at start (it reads as a gap
    // when read); without the checkpoint the rescan finds it. This tells the two apart.
    let path = segments::path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[30] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let log = FrameLog::open(dir.path()).unwrap();
    assert!(
        log.damage().is_empty(),
        "the checkpointed part was rescanned"
    );
    assert_eq!(log.recovered_seq(5), 10);
    let ia = log.handle(&a).unwrap();
    let frames = log.read_after(&ia, 0, 100, usize::MAX).unwrap();
    assert_eq!(frames.len(), 15);
    assert_eq!(frames[0].kind, StreamKind::Gap, "the damaged first frame");
    assert_eq!(frames[14].data, b"a15\n");
    let ib = log.handle(&b).unwrap();
    let frames = log.read_after(&ib, 0, 100, usize::MAX).unwrap();
    assert_eq!(frames.len(), 3);
    drop(log);
    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let log = FrameLog::open(dir.path()).unwrap();
    assert_eq!(log.damage().len(), 1, "a whole rescan finds the damage");
}

/// A checkpoint that does not read, or does not match the log, is ignored: the log is
/// rescanned whole and nothing is lost.
#[tokio::test]
async fn a_checkpoint_that_does_not_match_the_log_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let h = HandleId::parse("h-c").unwrap();
    {
        let log = FrameLog::open(dir.path()).unwrap();
        let index = log.create_handle(&h);
        for i in 1..=20 {
            log.append(append(&h, StreamKind::Stdout, &format!("{i}\n")))
                .await
                .unwrap();
        }
        wait_for(&index, 20).await;
        log.checkpoint().await.unwrap();
    }
    let ckpt = dir.path().join("index.ckpt");
    let good = std::fs::read(&ckpt).unwrap();
    // A flipped byte: refused by its checksum.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&ckpt, &bad).unwrap();
    let log = FrameLog::open(dir.path()).unwrap();
    let frames = log
        .read_after(&log.handle(&h).unwrap(), 0, 100, usize::MAX)
        .unwrap();
    assert_eq!(frames.len(), 20);
    drop(log);
    // A log cut shorter than the checkpoint says: rescanned, the whole records kept.
    std::fs::write(&ckpt, &good).unwrap();
    let path = segments::path(dir.path(), 0);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let log = FrameLog::open(dir.path()).unwrap();
    let index = log.handle(&h).unwrap();
    let last = index.watermark().last;
    assert!(last > 0 && last < 20, "{last} frames after the cut");
    let frames = log.read_after(&index, 0, 100, usize::MAX).unwrap();
    assert!(frames.iter().all(|f| f.kind == StreamKind::Stdout));
}

/// Waits up to ten seconds for `done`, which the writer's retention pass (about once a
/// second) makes true.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within ten seconds"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn segment_files(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn small_segments() -> RetentionSettings {
    RetentionSettings {
        segment_bytes: 4 << 10,
        ..RetentionSettings::default()
    }
}

/// Reads every frame of `index` from `after` on, as an observer would, batch by batch.
fn read_from(log: &FrameLog, index: &HandleIndex, mut after: u64) -> Vec<StoredFrame> {
    let mut out = Vec::new();
    loop {
        let batch = log.read_after(index, after, 64, usize::MAX).unwrap();
        let Some(last) = batch.last() else {
            return out;
        };
        after = last.offset;
        out.extend(batch);
    }
}

/// A handle over its byte limit loses its oldest frames, segment by segment; a reader
/// from below what is kept gets one truncated frame naming the first offset kept, then
/// every frame from there; segments nothing keeps a frame in are deleted; the other
/// handle keeps all of its frames, and a restart (from the checkpoint, and by a whole
/// rescan without it) keeps the same first offset.
#[tokio::test]
async fn a_handle_over_its_byte_limit_is_truncated_and_readers_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        HandleId::parse("h-big").unwrap(),
        HandleId::parse("h-small").unwrap(),
    );
    let settings = RetentionSettings {
        handle_max_bytes: 16 << 10,
        ..small_segments()
    };
    let line = "x".repeat(500);
    let first = {
        let log = FrameLog::open_with(dir.path(), settings).unwrap();
        let ia = log.create_handle(&a);
        let ib = log.create_handle(&b);
        log.append(append(&b, StreamKind::Stdout, "b1\n"))
            .await
            .unwrap();
        for i in 1..=400 {
            log.append(append(&a, StreamKind::Stdout, &format!("{i} {line}\n")))
                .await
                .unwrap();
        }
        log.append(append(&b, StreamKind::Stdout, "b2\n"))
            .await
            .unwrap();
        wait_for(&ia, 400).await;
        wait_for(&ib, 2).await;
        wait_until("the big handle truncated", || {
            ia.kept().bytes <= (16 + 4) << 10
        })
        .await;
        let kept = ia.kept();
        assert_eq!(kept.truncated, Some(TruncateReason::HandleBytes));
        assert!(kept.first > 300, "first kept {}", kept.first);
        // The first segment holds b1: kept; those with only the big handle's old frames go
        // (one by one, off the writer's thread).
        wait_until("segments deleted", || segment_files(dir.path()).len() < 10).await;
        assert!(log.counters().deleted_segments.load(Ordering::Relaxed) > 0);
        assert_eq!(segment_files(dir.path())[0], 0);
        assert!(ib.kept().truncated.is_none());
        let frames = read_from(&log, &ib, 0);
        assert_eq!(frames.len(), 2);
        // From the start: truncated, then every kept frame.
        let frames = read_from(&log, &ia, 0);
        assert_eq!(frames[0].kind, StreamKind::Truncated);
        assert_eq!(frames[0].offset, kept.first - 1);
        let t: Truncated = serde_json::from_slice(&frames[0].data).unwrap();
        assert_eq!(t.first, kept.first);
        assert_eq!(t.reason, TruncateReason::HandleBytes);
        assert_eq!(frames.len() as u64, 1 + 400 - kept.first + 1);
        for (i, f) in frames[1..].iter().enumerate() {
            assert_eq!(f.offset, kept.first + i as u64);
            assert!(f.data.starts_with(format!("{} ", f.offset).as_bytes()));
        }
        // From inside what is kept: no truncated frame.
        let frames = read_from(&log, &ia, 399);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].offset, 400);
        log.checkpoint().await.unwrap();
        kept.first
    };
    let log = FrameLog::open_with(dir.path(), settings).unwrap();
    let ia = log.handle(&a).unwrap();
    assert_eq!(ia.kept().first, first, "from the checkpoint");
    assert_eq!(ia.watermark().last, 400);
    drop(log);
    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    let log = FrameLog::open_with(dir.path(), settings).unwrap();
    assert!(log.damage().is_empty(), "deleted segments are not damage");
    let ia = log.handle(&a).unwrap();
    let frames = read_from(&log, &ia, 0);
    // Nothing records the first segment's frames of the big handle as removed, but its
    // offsets then jump across the deleted segments: everything before the jump reads
    // as one truncation, never as a gap.
    assert!(frames.iter().all(|f| f.kind != StreamKind::Gap));
    let t = frames
        .iter()
        .find(|f| f.kind == StreamKind::Truncated)
        .expect("a truncated frame");
    let t: Truncated = serde_json::from_slice(&t.data).unwrap();
    assert_eq!(t.reason, TruncateReason::Removed);
    assert_eq!(frames.last().unwrap().offset, 400);
}

/// Over the global budget the oldest segments go, whoever's frames they hold; a live
/// handle keeps being written, and the log stays near its budget.
#[tokio::test]
async fn the_log_stays_within_its_budget_oldest_segments_first() {
    let dir = tempfile::tempdir().unwrap();
    let h = HandleId::parse("h-live").unwrap();
    let settings = RetentionSettings {
        budget_bytes: 32 << 10,
        ..small_segments()
    };
    let log = FrameLog::open_with(dir.path(), settings).unwrap();
    let index = log.create_handle(&h);
    let line = "y".repeat(1000);
    for i in 1..=200 {
        log.append(append(&h, StreamKind::Stdout, &format!("{i} {line}\n")))
            .await
            .unwrap();
    }
    wait_for(&index, 200).await;
    wait_until("the log back within its budget", || {
        log.counters().size.load(Ordering::Relaxed) <= (32 + 4) << 10
    })
    .await;
    let kept = index.kept();
    assert_eq!(kept.truncated, Some(TruncateReason::Budget));
    let removed = log.counters().removed_frames[TruncateReason::Budget.to_byte() as usize - 1]
        .load(Ordering::Relaxed);
    assert_eq!(removed, kept.first - 1);
    wait_until("files deleted", || {
        let on_disk: u64 = segment_files(dir.path())
            .iter()
            // A segment deleted between the listing and its look-up holds nothing.
            .map(|b| std::fs::metadata(segments::path(dir.path(), *b)).map_or(0, |m| m.len()))
            .sum();
        on_disk <= (32 + 4) << 10
    })
    .await;
    // Still written after truncation, offsets going on.
    log.append(append(&h, StreamKind::Stdout, "201\n"))
        .await
        .unwrap();
    wait_for(&index, 201).await;
    let frames = read_from(&log, &index, 0);
    assert_eq!(frames[0].kind, StreamKind::Truncated);
    assert_eq!(frames.last().unwrap().data, b"201\n");
}

/// Frames older than the age limit go even on a quiet log (its segment is closed for
/// age); a sealed handle nothing is kept of is forgotten.
#[tokio::test]
async fn old_frames_go_and_a_sealed_handle_with_nothing_kept_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let h = HandleId::parse("h-old").unwrap();
    let settings = RetentionSettings {
        segment_max_age_ms: 200,
        max_age_ms: 500,
        ..RetentionSettings::default()
    };
    let log = FrameLog::open_with(dir.path(), settings).unwrap();
    let index = log.create_handle(&h);
    log.append(append(&h, StreamKind::Stdout, "old\n"))
        .await
        .unwrap();
    log.append(append(&h, StreamKind::Status, "{}"))
        .await
        .unwrap();
    wait_for(&index, 2).await;
    wait_until("the old handle forgotten", || log.handle(&h).is_none()).await;
    let kept = index.kept();
    assert_eq!((kept.first, kept.truncated), (3, Some(TruncateReason::Age)));
    wait_until("its segment deleted", || {
        !segment_files(dir.path()).contains(&0)
    })
    .await;
    // A reader still holding the index gets the truncation and the end, no frames.
    let frames = read_from(&log, &index, 0);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].kind, StreamKind::Truncated);
    assert_eq!(frames[0].offset, 2);
    drop(log);
    let log = FrameLog::open_with(dir.path(), settings).unwrap();
    assert!(log.handle(&h).is_none(), "not back after a restart");
}
