use std::time::Duration;

use std::collections::HashMap;

use super::*;
use crate::protocol::{Gap, GapReason};

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
    let path = dir.path().join("frames.log");
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
        std::fs::write(dir.path().join("frames.log"), &bytes).unwrap();
        let log = FrameLog::open(dir.path()).unwrap();
        let size = std::fs::metadata(dir.path().join("frames.log"))
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
        std::fs::write(dir.path().join("frames.log"), &bytes[..cut as usize]).unwrap();
        let log = FrameLog::open(dir.path()).unwrap();
        let whole: Vec<&Written> = written.iter().filter(|w| w.span.end <= cut).collect();
        let kept = whole.last().map_or(0, |w| w.span.end);
        assert_eq!(
            std::fs::metadata(dir.path().join("frames.log"))
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
    let path = dir.path().join("frames.log");
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
    let path = dir.path().join("frames.log");
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
