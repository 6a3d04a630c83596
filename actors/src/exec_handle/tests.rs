use std::time::Duration;

use super::*;

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
