//! Streaming scenarios: one task's output fanned out to many observers, beside NATS on
//! the same machine (`fanout`); the frame log's durable append rate (`ingest`); and how
//! fast a stored stream reads back, in process and through one observer (`replay`).
//!
//! Lines, not frames, are what the fan-out counts: the agent cuts a task's output into
//! chunks at newlines of up to 64 KiB, so one frame holds about 256 of its lines.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use flotilla::client::{next_frame, open_stream_query, ObserverSocket};
use flotilla_actors::domain::HandleId;
use flotilla_actors::exec_handle::{Append, FrameLog};
use flotilla_actors::protocol::ObserverFrame;
use flotilla_actors::protocol::StreamKind;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;

use crate::fleet::Rng;
use crate::{round, Server, TOKEN};

/// Bytes of one line of the fan-out producer, its newline included.
const LINE_BYTES: usize = 256;
/// A slow observer reads this share of a fast observer's line rate.
const SLOW_SHARE: f64 = 0.1;
/// Connections each resuming observer drops on purpose.
const DROPS: usize = 3;
/// How long an observer may wait for its next frame before the run fails.
const STALL: Duration = Duration::from_secs(120);
/// Connections an observer may lose without asking before the run fails.
const MAX_CUTS: usize = 10;
/// Observers of the two memory figures.
const MEMORY_OBSERVERS: usize = 300;
/// What the task of the stalled observers writes.
const STALLED_BYTES: u64 = 32_000_000;
/// Observers that read nothing must stay connected until they are measured: the default
/// write timeout (30 s) and unanswered pings (2 × 15 s) would cut them and free their
/// memory before it is looked at.
const HOLD_CONFIG: &str = "[streaming]\nwrite-timeout-ms = 600000\nping-interval-ms = 600000\n";

/// The fan-out producer: waits for the file `argv[1]` (created once every observer is
/// connected), then writes `argv[2]` lines of 256 bytes through a 64 KiB buffer:
/// `<line number, 10 digits> <wall clock ns when the line was made, 19 digits> x…x\n`;
/// at full speed, or at `argv[3]` lines a second (flushed as they are due, about every
/// half millisecond). The buffering is explicit because the environment may set
/// PYTHONUNBUFFERED.
const PRODUCER: &str = r#"
import os, sys, time
go, n, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
while not os.path.exists(go):
    time.sleep(0.002)
out = open(1, "wb", buffering=1 << 16, closefd=False)
pad = b"x" * 224
now = time.time_ns
start = time.monotonic()
i = 1
while i <= n:
    due = n
    if rate:
        due = min(n, int((time.monotonic() - start) * rate) + 1)
        if due < i:
            time.sleep(0.0005)
            continue
    while i <= due:
        out.write(b"%010d %019d %s\n" % (i, now(), pad))
        i += 1
    if rate:
        out.flush()
out.flush()
"#;

/// The paced run: 100 fast observers of a producer writing this many lines a second
/// (about half of what they take at full speed here), for [`PACED_LINES`] lines. Its
/// latency is the hop from producer to observer; at full speed the producer runs far
/// ahead of delivery and the latency measures that backlog instead.
const PACED_RATE: u64 = 8_000;
const PACED_LINES: u64 = 40_000;

/// `flotilla-bench fanout [LINES]`: one task writes LINES lines of 256 bytes, each
/// stamped with the producer's clock, followed live by 100 observers from one client
/// runtime (85 fast, 10 slow at a tenth of the fast rate, 5 that drop their connection
/// 3 times each and resume), all `catch-up`; the same without the slow ones; the
/// server's memory per idle and per stalled observer; and the same fan-out through a
/// NATS server of the run's own.
pub fn fanout(exe: &PathBuf, lines: u64) -> anyhow::Result<Value> {
    let started = Instant::now();
    let rt = runtime()?;
    let mut rng = Rng::seeded();
    let server = Server::start(exe, 1, "")?;
    // A short run first, not counted, so that no measured run pays for the first task's
    // start (log growth, allocator, the agent's first spawn).
    let warm_lines = (lines / 10).max(1_000);
    fan_run(&server, &rt, warm_lines, WARM_UP, 0, &mut rng, "warm-up")?;
    // With and without the slow ones in ABBA order, so that neither shape is favoured by
    // its place (the log grows; others share the machine).
    let (mut mixed, mut fast) = (Runs::default(), Runs::default());
    for (i, shape) in [MIXED, ALL_FAST, ALL_FAST, MIXED].into_iter().enumerate() {
        let run = fan_run(&server, &rt, lines, shape, 0, &mut rng, &format!("run-{i}"))?;
        match shape.slow {
            0 => fast.0.push(run),
            _ => mixed.0.push(run),
        }
    }
    let paced = Runs(vec![fan_run(
        &server,
        &rt,
        PACED_LINES,
        ALL_FAST,
        PACED_RATE,
        &mut rng,
        "paced",
    )?]);
    drop(server);

    let idle = idle_observers(exe, &rt)?;
    let stalled = stalled_observers(exe, &rt)?;

    let nats = {
        let server = Nats::start()?;
        Runs(vec![nats_fan_out(&rt, server.port, ALL_FAST.fast, lines)?])
    };

    // Lines delivered to all observers together: each observer's own rate (its lines
    // over its time from the producer's stamp on line 1 to its last line), added up,
    // the mean of the two mixed runs. The slow ones count at the tenth they read.
    let lines_per_s = mixed.summed_rates();
    let nats_msgs_per_s = nats.lines_per_s();
    // How much slower a fast observer reads with the 10 slow ones present: a fast
    // observer's line rate (lines over the mean time of the fast ones to their last
    // line), with the slow ones against without, as a percentage of the rate without.
    let fast_with = mixed.rate_each(Role::Fast);
    let fast_without = fast.rate_each(Role::Fast);
    Ok(json!({
        "scenario": "fanout",
        "lines": lines,
        "line_bytes": LINE_BYTES,
        "observers": {"fast": MIXED.fast, "slow": MIXED.slow, "resuming": MIXED.resuming},
        "lines_per_s": round(lines_per_s),
        "mb_per_s": round(lines_per_s * LINE_BYTES as f64 / 1e6),
        // Over every observer of both mixed runs and both runs without slow ones.
        "loss_lines": mixed.loss() + fast.loss(),
        "slow_impact_pct": round((fast_without - fast_with) / fast_without * 100.0),
        // Producer to observer at a sustained rate: the paced run, every line of
        // every observer pooled.
        "p99_ms": round(paced.p99_ms(Role::Fast)),
        "idle_observer_kib": round(idle.per_observer_kib()),
        "stalled_observer_kib": round(stalled.per_observer_kib()),
        "nats_msgs_per_s": round(nats_msgs_per_s),
        "ratio": round(lines_per_s / nats_msgs_per_s),
        "detail": {
            "fast_lines_per_s_each": round(fast_with),
            "fast_lines_per_s_each_without_slow": round(fast_without),
            // The throttle as it came out: a slow observer's line rate over a fast one's.
            "slow_rate_pct": round(mixed.rate_each(Role::Slow) / fast_with * 100.0),
            "without_slow_lines_per_s": round(fast.lines_per_s()),
            // Lines to all observers over the time until the last of them (a slow one)
            // had its last line: bound by the slow ones' throttle.
            "lines_per_s_until_last": round(mixed.lines_per_s()),
            "without_slow_p99_ms": round(fast.p99_ms(Role::Fast)),
            // At full speed the producer runs ahead of delivery: this is the backlog.
            "full_speed_p99_ms": round(mixed.p99_ms(Role::Fast)),
            "paced": {
                "lines_per_s_produced": PACED_RATE,
                "lines": PACED_LINES,
                "observers": ALL_FAST.fast,
                "p99_ms": round(paced.p99_ms(Role::Fast)),
                "lines_per_s_delivered": round(paced.lines_per_s()),
            },
            // Like for like with NATS: 100 observers at full speed, 100 subscribers.
            "ratio_without_slow": round(fast.lines_per_s() / nats_msgs_per_s),
            "runs": mixed.0.iter().chain(&fast.0).map(FanRun::summary).collect::<Vec<_>>(),
            "idle": idle.summary(),
            "stalled": stalled.summary(),
            "nats": nats.0[0].summary(),
            "run_s": round(started.elapsed().as_secs_f64()),
        },
    }))
}

/// How many observers of each kind follow a run's task.
#[derive(Debug, Clone, Copy)]
struct Shape {
    fast: usize,
    slow: usize,
    resuming: usize,
}

const WARM_UP: Shape = Shape {
    fast: 10,
    slow: 0,
    resuming: 0,
};
/// The shape of the scenario.
const MIXED: Shape = Shape {
    fast: 85,
    slow: 10,
    resuming: 5,
};
/// The shape without the slow ones: 100 fast observers. The 5 resuming ones are left out
/// as well, so that the count stays 100 and the run has exactly the shape of the NATS
/// run (100 subscribers that all read at full speed).
const ALL_FAST: Shape = Shape {
    fast: 100,
    slow: 0,
    resuming: 0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Reads as fast as it can.
    Fast,
    /// Sleeps between frames so as to read [`SLOW_SHARE`] of a fast observer's lines.
    Slow,
    /// Reads as fast as it can, but drops its connection [`DROPS`] times, after random
    /// lines, and resumes with `from=<last offset it saw>`.
    Resuming,
}

/// The stream observers follow.
struct Target {
    base: String,
    handle: String,
    lines: u64,
}

impl Target {
    /// A lossless observer of the handle after `offset`.
    async fn connect(&self, offset: u64) -> anyhow::Result<ObserverSocket> {
        let query = format!("from={offset}&policy=catch-up");
        Ok(open_stream_query(&self.base, TOKEN, &self.handle, &query).await?)
    }
}

/// One task writing `lines` lines, followed by observers of `shape` in `rt`.
fn fan_run(
    server: &Server,
    rt: &Runtime,
    lines: u64,
    shape: Shape,
    rate: u64,
    rng: &mut Rng,
    name: &str,
) -> anyhow::Result<FanRun> {
    let go = server.dir.join(format!("go-{name}"));
    let go_arg = go.to_str().context("a scratch path that is not UTF-8")?;
    let reply = server.client.submit(&json!({
        "argv": ["python3", "-c", PRODUCER, go_arg, lines.to_string(), rate.to_string()],
    }))?;
    let target = Arc::new(Target {
        base: server.client.base().to_owned(),
        handle: reply["handle"].as_str().context("no handle")?.to_owned(),
        lines,
    });
    let mut plans: Vec<(Role, Vec<u64>)> = Vec::new();
    plans.extend((0..shape.fast).map(|_| (Role::Fast, Vec::new())));
    plans.extend((0..shape.slow).map(|_| (Role::Slow, Vec::new())));
    for _ in 0..shape.resuming {
        // Drop after random lines in the middle 80 % of the stream, so that every drop
        // happens before the end.
        let mut at: Vec<u64> = (0..DROPS)
            .map(|_| lines / 10 + rng.below(lines * 8 / 10))
            .collect();
        at.sort_unstable();
        plans.push((Role::Resuming, at));
    }
    let cpu = CpuUse::now()?;
    let (seen, others_cpu_fast_s) = rt.block_on(async {
        // Every observer is connected before the producer makes its first line, so all
        // of them follow it live from the start.
        let mut sockets = Vec::with_capacity(plans.len());
        for _ in &plans {
            sockets.push(target.connect(0).await?);
        }
        let pace = Arc::new(Pace::new(lines, shape.fast as u64));
        let observers: Vec<_> = plans
            .into_iter()
            .zip(sockets)
            .map(|((role, drops), ws)| {
                tokio::spawn(observe(target.clone(), ws, role, drops, pace.clone()))
            })
            .collect();
        std::fs::write(&go, b"")?;
        let mut seen = Vec::with_capacity(observers.len());
        let mut others_fast = None;
        // The fast observers come first: once they are all in, the CPU others took
        // while they read (what bears on the fast rates) is known.
        for (i, o) in observers.into_iter().enumerate() {
            seen.push(o.await??);
            if i + 1 == shape.fast {
                others_fast = Some(cpu.others_since()?);
            }
        }
        anyhow::Ok((seen, others_fast.unwrap_or(f64::NAN)))
    })?;
    let first_ns = seen
        .iter()
        .filter_map(|s| s.check.first_ts)
        .min()
        .context("no observer received line 1")?;
    Ok(FanRun {
        name: format!(
            "{name}: {} fast, {} slow, {} resuming",
            shape.fast, shape.slow, shape.resuming
        ),
        seen,
        first_ns,
        others_cpu_s: cpu.others_since()?,
        others_cpu_fast_s,
    })
}

/// Follows the stream to its status frame in the manner of `role`, checking every line.
async fn observe(
    target: Arc<Target>,
    mut ws: ObserverSocket,
    role: Role,
    mut drops: Vec<u64>,
    pace: Arc<Pace>,
) -> anyhow::Result<Seen> {
    let _finished = (role == Role::Fast).then(|| FastFinished(pace.clone()));
    let mut seen = Seen::new(role);
    let mut offset = 0;
    drops.reverse();
    loop {
        let next = tokio::time::timeout(STALL, next_or_close(&mut ws)).await;
        let frame = match next {
            Err(_) => bail!("a {role:?} observer got no frame for {STALL:?}"),
            Ok(read) => read?,
        };
        let frame = match frame {
            Ok(frame) => frame,
            // The connection ended before the status frame without the observer asking:
            // resume as any client would, and count it with the server's reason.
            Err(why) => {
                seen.cuts.push(why);
                ensure!(
                    seen.cuts.len() <= MAX_CUTS,
                    "a {role:?} observer was cut {MAX_CUTS} times: {:?}",
                    seen.cuts
                );
                drop(ws);
                ws = target.connect(offset).await?;
                continue;
            }
        };
        let now = wall_ns();
        offset = frame.offset;
        match frame.kind {
            StreamKind::Stdout => {
                let bytes = match frame.encoding {
                    Some(_) => frame.bytes(),
                    None => frame.data.into_bytes(),
                };
                let before = seen.check.lines;
                let latency = &mut seen.latency_us;
                seen.check.feed(&bytes, |_, ts| {
                    if role == Role::Fast {
                        latency.push(micros_between(ts, now));
                    }
                });
                seen.last_ns = now;
                if let Some(ts) = seen.check.first_ts {
                    pace.first_line(ts);
                }
                match role {
                    Role::Fast => pace.fast_read(seen.check.lines - before),
                    Role::Slow => pace.slow_turn(seen.check.lines).await,
                    Role::Resuming => {
                        if drops.last().is_some_and(|at| seen.check.lines >= *at) {
                            drops.pop();
                            seen.dropped += 1;
                            // Dropped without a close handshake, as a lost connection is.
                            drop(ws);
                            ws = target.connect(offset).await?;
                        }
                    }
                }
            }
            StreamKind::Status => break,
            StreamKind::Stderr | StreamKind::Guard | StreamKind::Gap | StreamKind::Truncated => {
                seen.other_frames += 1
            }
        }
    }
    seen.check.finish(target.lines);
    Ok(seen)
}

/// The next frame on an observer's socket, as [`next_frame`] reads it, or why the
/// connection ended: the reason of the server's close frame, or the transport's error.
async fn next_or_close(ws: &mut ObserverSocket) -> anyhow::Result<Result<ObserverFrame, String>> {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(text)) => return Ok(Ok(serde_json::from_str(&text)?)),
            Ok(Message::Close(Some(close))) => return Ok(Err(close.reason.into_owned())),
            Ok(Message::Close(None)) => return Ok(Err("closed without a reason".into())),
            Ok(_) => {}
            Err(e) => return Ok(Err(format!("transport: {e}"))),
        }
    }
    Ok(Err("the connection ended".into()))
}

/// The slow observers' clock. While fast observers read, a slow one may have read
/// [`SLOW_SHARE`] of what the average fast observer has read so far; once they are all
/// done, it goes on at [`SLOW_SHARE`] of their average rate (lines over their mean time
/// from line 1 to their end). Either way its line rate is about a tenth of a fast
/// observer's, whatever that turns out to be in this run.
struct Pace {
    lines: u64,
    fast: u64,
    /// The producer's stamp on line 1 (ns since the epoch; `u64::MAX` before).
    first_ns: AtomicU64,
    /// Lines read by all fast observers together.
    fast_lines: AtomicU64,
    /// Fast observers still reading.
    fast_left: AtomicU64,
    /// The fast observers' times from line 1 to their end, summed, in ns.
    fast_ns: AtomicU64,
}

impl Pace {
    fn new(lines: u64, fast: u64) -> Self {
        Self {
            lines,
            fast,
            first_ns: AtomicU64::new(u64::MAX),
            fast_lines: AtomicU64::new(0),
            fast_left: AtomicU64::new(fast),
            fast_ns: AtomicU64::new(0),
        }
    }

    fn first_line(&self, ts: u64) {
        self.first_ns.fetch_min(ts, Ordering::Relaxed);
    }

    fn fast_read(&self, lines: u64) {
        self.fast_lines.fetch_add(lines, Ordering::Relaxed);
    }

    fn fast_finished(&self) {
        let took = wall_ns().saturating_sub(self.first_ns.load(Ordering::Relaxed));
        self.fast_ns.fetch_add(took, Ordering::Relaxed);
        self.fast_left.fetch_sub(1, Ordering::Release);
    }

    /// Returns when a slow observer that has read `read` lines may read on.
    async fn slow_turn(&self, read: u64) {
        if self.fast == 0 {
            return;
        }
        while self.fast_left.load(Ordering::Acquire) > 0 {
            let fast_each = self.fast_lines.load(Ordering::Relaxed) as f64 / self.fast as f64;
            if read as f64 <= SLOW_SHARE * fast_each {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = self.first_ns.load(Ordering::Relaxed);
        if first == u64::MAX {
            return;
        }
        let fast_secs = self.fast_ns.load(Ordering::Relaxed) as f64 / 1e9 / self.fast as f64;
        let rate = SLOW_SHARE * self.lines as f64 / fast_secs;
        let due = first + (read as f64 / rate * 1e9) as u64;
        let now = wall_ns();
        if due > now {
            tokio::time::sleep(Duration::from_nanos(due - now)).await;
        }
    }
}

/// Marks a fast observer finished however its task ends, so that no slow one waits on
/// it for ever.
struct FastFinished(Arc<Pace>);

impl Drop for FastFinished {
    fn drop(&mut self) {
        self.0.fast_finished();
    }
}

/// What one observer (or NATS subscriber) received.
struct Seen {
    role: Role,
    check: LineCheck,
    /// Wall clock (ns since the epoch) when its last line arrived.
    last_ns: u64,
    /// Receive time minus the producer's stamp in the line, per line, in µs (fast
    /// observers and NATS subscribers only).
    latency_us: Vec<u32>,
    /// Connections it dropped on purpose.
    dropped: u64,
    /// Connections that ended before the last line without the reader asking, and why.
    cuts: Vec<String>,
    /// Frames other than stdout and status (gap, stderr, guard), or `-ERR` from NATS.
    other_frames: u64,
}

impl Seen {
    fn new(role: Role) -> Self {
        Self {
            role,
            check: LineCheck::new(),
            last_ns: 0,
            latency_us: Vec::new(),
            dropped: 0,
            cuts: Vec::new(),
            other_frames: 0,
        }
    }
}

/// Checks the lines one reader receives: each of 1..=total exactly once, in order.
struct LineCheck {
    /// The line number due next.
    next: u64,
    /// Whole lines received, repeats included.
    lines: u64,
    missing: u64,
    repeated: u64,
    /// Lines that are not 256 bytes of the producer's layout.
    corrupt: u64,
    /// The producer's stamp on line 1, once seen.
    first_ts: Option<u64>,
    /// The start of a line whose end is in the next frame (the agent sends a partial
    /// line after 50 ms without more output).
    partial: Vec<u8>,
}

impl LineCheck {
    fn new() -> Self {
        Self {
            next: 1,
            lines: 0,
            missing: 0,
            repeated: 0,
            corrupt: 0,
            first_ts: None,
            partial: Vec::new(),
        }
    }

    /// Takes the next bytes of the stream; `each(line number, producer ns)` per line.
    fn feed(&mut self, mut data: &[u8], mut each: impl FnMut(u64, u64)) {
        if !self.partial.is_empty() {
            let Some(end) = data.iter().position(|b| *b == b'\n') else {
                self.partial.extend_from_slice(data);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&data[..=end]);
            self.line(&line, &mut each);
            data = &data[end + 1..];
        }
        while !data.is_empty() {
            // Lines are 256 bytes: look there first, and scan only when that fails.
            let end = match data.get(LINE_BYTES - 1) {
                Some(b'\n') => Some(LINE_BYTES - 1),
                _ => data.iter().position(|b| *b == b'\n'),
            };
            let Some(end) = end else {
                self.partial.extend_from_slice(data);
                return;
            };
            self.line(&data[..=end], &mut each);
            data = &data[end + 1..];
        }
    }

    fn line(&mut self, line: &[u8], each: &mut impl FnMut(u64, u64)) {
        self.lines += 1;
        let Some((n, ts)) = parse_line(line) else {
            self.corrupt += 1;
            return;
        };
        if n == 1 {
            self.first_ts = Some(ts);
        }
        match n.cmp(&self.next) {
            std::cmp::Ordering::Equal => self.next += 1,
            std::cmp::Ordering::Less => self.repeated += 1,
            std::cmp::Ordering::Greater => {
                self.missing += n - self.next;
                self.next = n + 1;
            }
        }
        each(n, ts);
    }

    /// The stream has ended: lines never received are missing.
    fn finish(&mut self, total: u64) {
        self.missing += (total + 1).saturating_sub(self.next);
        if !self.partial.is_empty() {
            self.corrupt += 1;
            self.partial.clear();
        }
    }

    fn loss(&self) -> u64 {
        self.missing + self.repeated + self.corrupt
    }
}

/// (line number, producer ns) of a line of the producer's layout.
fn parse_line(line: &[u8]) -> Option<(u64, u64)> {
    if line.len() != LINE_BYTES || line[10] != b' ' || line[30] != b' ' {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    };
    Some((number(&line[..10])?, number(&line[11..30])?))
}

/// A line of the producer's layout, made in Rust (for the NATS publisher).
fn make_line(n: u64, ns: u64) -> [u8; LINE_BYTES] {
    let mut line = [b'x'; LINE_BYTES];
    let head = format!("{n:010} {ns:019} ");
    line[..head.len()].copy_from_slice(head.as_bytes());
    line[LINE_BYTES - 1] = b'\n';
    line
}

/// What one fan-out run measured.
struct FanRun {
    name: String,
    seen: Vec<Seen>,
    /// The producer's stamp on line 1.
    first_ns: u64,
    /// CPU seconds that processes other than the bench's own (the bench, its servers,
    /// agents and tasks) used during the run: how busy others kept the machine.
    others_cpu_s: f64,
    /// The same until the last fast observer was done.
    others_cpu_fast_s: f64,
}

impl FanRun {
    fn of(&self, role: Role) -> impl Iterator<Item = &Seen> {
        self.seen.iter().filter(move |s| s.role == role)
    }

    /// From the producer's stamp on line 1 to the last reader's last line, in seconds.
    fn secs(&self) -> f64 {
        let end = self.seen.iter().map(|s| s.last_ns).max().unwrap_or(0);
        end.saturating_sub(self.first_ns) as f64 / 1e9
    }

    /// Lines delivered to all readers together per second of [`secs`](Self::secs).
    fn lines_per_s(&self) -> f64 {
        self.seen.iter().map(|s| s.check.lines).sum::<u64>() as f64 / self.secs()
    }

    /// The readers' own line rates added up: each reader's lines over its time from the
    /// producer's stamp on line 1 to its last line. What the server delivers to them
    /// all at once, each at the pace it reads.
    fn summed_rates(&self) -> f64 {
        self.seen
            .iter()
            .map(|s| s.check.lines as f64 / (s.last_ns.saturating_sub(self.first_ns) as f64 / 1e9))
            .sum()
    }

    /// The mean over the readers of `role` of their time to their last line, in seconds
    /// (NaN, shown as null, when there are none).
    fn mean_secs(&self, role: Role) -> f64 {
        let times: Vec<f64> = self
            .of(role)
            .map(|s| s.last_ns.saturating_sub(self.first_ns) as f64 / 1e9)
            .collect();
        match times.len() {
            0 => f64::NAN,
            n => times.iter().sum::<f64>() / n as f64,
        }
    }

    /// The line rate of one reader of `role`: lines over its mean time to the last line.
    fn rate_each(&self, role: Role) -> f64 {
        let readers = self.of(role).count().max(1) as f64;
        let lines = self.of(role).map(|s| s.check.lines).sum::<u64>() as f64 / readers;
        lines / self.mean_secs(role)
    }

    /// Unplanned ends of a connection, counted per role and reason (numbers in the
    /// reason shown as N, so that alike reasons add up).
    fn cut_reasons(&self) -> Value {
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        for s in &self.seen {
            for why in &s.cuts {
                let mut key = format!("{:?}: ", s.role).to_lowercase();
                let mut in_number = false;
                for c in why.chars() {
                    if !c.is_ascii_digit() {
                        key.push(c);
                    } else if !in_number {
                        key.push('N');
                    }
                    in_number = c.is_ascii_digit();
                }
                *counts.entry(key).or_default() += 1;
            }
        }
        json!(counts)
    }

    /// Lines missing, repeated or damaged over all readers.
    fn loss(&self) -> u64 {
        self.seen.iter().map(|s| s.check.loss()).sum()
    }

    /// The 99th percentile of receive time minus producer stamp over every line of every
    /// reader of `role`, in milliseconds.
    fn p99_ms(&self, role: Role) -> f64 {
        let mut all: Vec<u32> = self
            .of(role)
            .flat_map(|s| s.latency_us.iter().copied())
            .collect();
        p99_ms(&mut all)
    }

    fn summary(&self) -> Value {
        let lines_per_s = self.lines_per_s();
        let count = |role| self.of(role).count();
        let sum = |f: fn(&Seen) -> u64| self.seen.iter().map(f).sum::<u64>();
        json!({
            "run": self.name,
            "readers": {"fast": count(Role::Fast), "slow": count(Role::Slow),
                        "resuming": count(Role::Resuming)},
            "secs": round(self.secs()),
            "lines_per_s": round(lines_per_s),
            "mb_per_s": round(lines_per_s * LINE_BYTES as f64 / 1e6),
            "fast_secs": round(self.mean_secs(Role::Fast)),
            "fast_lines_per_s_each": round(self.rate_each(Role::Fast)),
            "slow_secs": round(self.mean_secs(Role::Slow)),
            "p99_ms": round(self.p99_ms(Role::Fast)),
            "loss_lines": self.loss(),
            "planned_drops": sum(|s| s.dropped),
            "unplanned_cuts": self.cut_reasons(),
            "other_frames": sum(|s| s.other_frames),
            "others_cpu_s": round(self.others_cpu_s),
            "others_cpu_fast_s": round(self.others_cpu_fast_s),
        })
    }
}

/// Runs of one shape, taken together.
#[derive(Default)]
struct Runs(Vec<FanRun>);

impl Runs {
    /// Lines to all readers of all runs over the runs' summed wall times.
    fn lines_per_s(&self) -> f64 {
        let lines: u64 = self
            .0
            .iter()
            .flat_map(|r| &r.seen)
            .map(|s| s.check.lines)
            .sum();
        lines as f64 / self.0.iter().map(FanRun::secs).sum::<f64>()
    }

    /// The mean over the runs of their summed reader rates.
    fn summed_rates(&self) -> f64 {
        let rates: Vec<f64> = self.0.iter().map(FanRun::summed_rates).collect();
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    }

    /// The mean over the runs of a `role` reader's line rate.
    fn rate_each(&self, role: Role) -> f64 {
        let rates: Vec<f64> = self.0.iter().map(|r| r.rate_each(role)).collect();
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    }

    fn loss(&self) -> u64 {
        self.0.iter().map(FanRun::loss).sum()
    }

    /// The 99th percentile over the lines of every `role` reader of every run, in ms.
    fn p99_ms(&self, role: Role) -> f64 {
        let mut all: Vec<u32> = self
            .0
            .iter()
            .flat_map(|r| r.of(role))
            .flat_map(|s| s.latency_us.iter().copied())
            .collect();
        p99_ms(&mut all)
    }
}

/// The 99th percentile of latencies in µs, in ms.
fn p99_ms(latency_us: &mut [u32]) -> f64 {
    if latency_us.is_empty() {
        return f64::NAN;
    }
    let at = latency_us.len() * 99 / 100;
    let (_, p99, _) = latency_us.select_nth_unstable(at);
    f64::from(*p99) / 1000.0
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn micros_between(from_ns: u64, to_ns: u64) -> u32 {
    u32::try_from(to_ns.saturating_sub(from_ns) / 1000).unwrap_or(u32::MAX)
}

/// CPU time used on the whole machine and by this process with its descendants (the
/// server, its agents and their tasks), in seconds: what others on the shared machine
/// took during a run is the difference of the differences.
struct CpuUse {
    machine_s: f64,
    ours_s: f64,
}

impl CpuUse {
    fn now() -> anyhow::Result<Self> {
        // SAFETY: sysconf only reads a constant of the system.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let stat = std::fs::read_to_string("/proc/stat")?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .context("empty /proc/stat")?
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // user nice system …: what processes run, in user and kernel mode, as their utime
        // and stime count it (interrupts and steal are left out on both sides).
        let busy: u64 = cpu.iter().take(3).sum();
        // pid → (parent, own CPU ticks + those of its reaped children).
        let mut procs: HashMap<u32, (u32, u64)> = HashMap::new();
        for entry in std::fs::read_dir("/proc")? {
            let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            // Gone meanwhile: its time is in its parent's reaped-children time.
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The fields after the command name, which may hold spaces, in parentheses:
            // state ppid … utime stime cutime cstime (the 2nd and the 12th to 15th).
            let Some((_, rest)) = text.rsplit_once(')') else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ppid = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            let ticks = f
                .get(11..15)
                .map_or(0, |t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
            procs.insert(pid, (ppid, ticks));
        }
        let me = std::process::id();
        let ours: u64 = procs
            .iter()
            .filter(|(pid, _)| descends_from(&procs, **pid, me))
            .map(|(_, (_, ticks))| ticks)
            .sum();
        Ok(Self {
            machine_s: busy as f64 / tick,
            ours_s: ours as f64 / tick,
        })
    }

    /// CPU seconds the rest of the machine used since `self`.
    fn others_since(&self) -> anyhow::Result<f64> {
        let now = Self::now()?;
        Ok((now.machine_s - self.machine_s) - (now.ours_s - self.ours_s))
    }
}

fn descends_from(procs: &HashMap<u32, (u32, u64)>, mut pid: u32, root: u32) -> bool {
    for _ in 0..64 {
        if pid == root {
            return true;
        }
        match procs.get(&pid) {
            Some((parent, _)) if *parent != 0 => pid = *parent,
            _ => return false,
        }
    }
    false
}

fn runtime() -> anyhow::Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

// ---------------------------------------------------------------------------------------
// What observers cost the server.

/// The server's resident memory (VmRSS, KiB) before observers connect, with them
/// connected, and 2 s and 10 s after they left.
struct ObserverMemory {
    observers: usize,
    /// Observers the server still lists on the handle 2 s after they left.
    listed_after: usize,
    before: u64,
    with: u64,
    after_2s: u64,
    after_10s: u64,
}

impl ObserverMemory {
    /// RSS growth per observer, in KiB.
    fn per_observer_kib(&self) -> f64 {
        (self.with as f64 - self.before as f64) / self.observers as f64
    }

    fn summary(&self) -> Value {
        // What each observer still holds after it left (0 when all came back).
        let left = |rss: u64| round((rss as f64 - self.before as f64) / self.observers as f64);
        json!({
            "observers": self.observers,
            "still_listed_2s_after_leaving": self.listed_after,
            "rss_before_kib": self.before,
            "rss_with_kib": self.with,
            "rss_2s_after_leaving_kib": self.after_2s,
            "rss_10s_after_leaving_kib": self.after_10s,
            "left_per_observer_2s_kib": left(self.after_2s),
            "left_per_observer_10s_kib": left(self.after_10s),
        })
    }
}

/// [`MEMORY_OBSERVERS`] observers on a task that writes nothing (`sleep 600`).
fn idle_observers(exe: &PathBuf, rt: &Runtime) -> anyhow::Result<ObserverMemory> {
    let server = Server::start(exe, 1, HOLD_CONFIG)?;
    let reply = server.client.submit(&json!({"argv": ["sleep", "600"]}))?;
    let id = reply["id"].as_str().context("no id")?;
    let handle = reply["handle"].as_str().context("no handle")?;
    wait_state(&server, id, &["running"])?;
    let memory = with_observers(&server, rt, handle, || Ok(()))?;
    server.client.cancel(id)?;
    Ok(memory)
}

/// [`MEMORY_OBSERVERS`] observers that connect to a task writing [`STALLED_BYTES`] and
/// never read a byte: the sockets are opened and held, never polled.
fn stalled_observers(exe: &PathBuf, rt: &Runtime) -> anyhow::Result<ObserverMemory> {
    let server = Server::start(exe, 1, HOLD_CONFIG)?;
    let go = server.dir.join("go-stalled");
    let script = format!(
        "while [ ! -e {go} ]; do sleep 0.01; done; yes '{line}' | head -c {STALLED_BYTES}",
        go = go.display(),
        line = "flotilla stalled-observer benchmark: log-like text, ASCII only.",
    );
    let task = json!({"argv": ["sh", "-c", script]});
    // The same task once with no observer first, so that what the write path itself
    // keeps (the log writer's batch buffer, the agent connection's buffers) is already
    // in the baseline and not counted against the observers.
    std::fs::write(&go, b"")?;
    let first = server.client.submit(&task)?;
    let first_id = first["id"].as_str().context("no id")?;
    wait_state(&server, first_id, &["succeeded"])?;
    std::fs::remove_file(&go)?;

    let reply = server.client.submit(&task)?;
    let id = reply["id"].as_str().context("no id")?;
    let handle = reply["handle"].as_str().context("no handle")?;
    wait_state(&server, id, &["running"])?;
    with_observers(&server, rt, handle, || {
        std::fs::write(&go, b"")?;
        wait_state(&server, id, &["succeeded"])
    })
}

/// Connects [`MEMORY_OBSERVERS`] observers to `handle` and holds them without reading,
/// runs `meanwhile`, and reads the server's RSS before, with them, and after they left.
fn with_observers(
    server: &Server,
    rt: &Runtime,
    handle: &str,
    meanwhile: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<ObserverMemory> {
    let pid = server.child.id();
    let target = Target {
        base: server.client.base().to_owned(),
        handle: handle.to_owned(),
        lines: 0,
    };
    // The task has started; let the server settle before the baseline.
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid)?;
    let sockets = rt.block_on(async {
        let mut sockets = Vec::with_capacity(MEMORY_OBSERVERS);
        for _ in 0..MEMORY_OBSERVERS {
            sockets.push(target.connect(0).await?);
        }
        anyhow::Ok(sockets)
    })?;
    meanwhile()?;
    std::thread::sleep(Duration::from_secs(1));
    let with = rss_kib(pid)?;
    // Closed from inside the runtime that owns the sockets.
    rt.block_on(async move { drop(sockets) });
    std::thread::sleep(Duration::from_secs(2));
    let after_2s = rss_kib(pid)?;
    let view = server
        .client
        .admin("GET", &format!("/v1/handles/{handle}"), None)?;
    let listed_after = view["observers"].as_array().map_or(0, Vec::len);
    std::thread::sleep(Duration::from_secs(8));
    let after_10s = rss_kib(pid)?;
    Ok(ObserverMemory {
        observers: MEMORY_OBSERVERS,
        listed_after,
        before,
        with,
        after_2s,
        after_10s,
    })
}

/// Waits until task `id` is in one of `states` (a final state other than those fails).
fn wait_state(server: &Server, id: &str, states: &[&str]) -> anyhow::Result<()> {
    let finals = ["succeeded", "failed", "cancelled", "timed_out", "poisoned"];
    let task = server
        .client
        .wait_task(id, Duration::from_secs(300), |t| {
            let state = t["state"].as_str().unwrap_or("");
            states.contains(&state) || finals.contains(&state)
        })?
        .with_context(|| format!("task {id} did not reach {states:?} in time"))?;
    let state = task["state"].as_str().unwrap_or("");
    ensure!(states.contains(&state), "task {id} ended {state}: {task}");
    Ok(())
}

/// VmRSS of process `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))
}

// ---------------------------------------------------------------------------------------
// The peer: NATS, spoken over plain TCP.
//
// NATS core (no JetStream) keeps nothing: a message goes to the subscribers connected
// when it is published and is then gone. It has no durability and no resume, so a
// subscriber that reconnects misses what was sent meanwhile, and one that falls too far
// behind is cut off as a slow consumer. Flotilla's observers get every line exactly once
// from a log that was fdatasync'd first. The figures below are what fanning out costs
// without those guarantees.

const NATS_SERVER: &str = "/usr/sbin/nats-server";
const SUBJECT: &str = "bench.fanout";
const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";
/// A subscriber that hears nothing for this long stops waiting: what did not come is lost.
const NATS_QUIET: Duration = Duration::from_secs(10);

/// A `nats-server` of this run alone, on a free port; stopped when dropped.
struct Nats {
    child: Child,
    port: u16,
}

impl Nats {
    fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {NATS_SERVER}"))?;
        let nats = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nats)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        flotilla::process::terminate(&mut self.child, Duration::from_secs(5));
    }
}

type NatsReader = tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>;
type NatsWriter = tokio::net::tcp::OwnedWriteHalf;

/// `subscribers` subscribers, each on its own connection in `rt`, and one publisher (a
/// thread of its own, as the flotilla producer is a process of its own) sending
/// `messages` messages of 256 bytes as fast as it can.
fn nats_fan_out(
    rt: &Runtime,
    port: u16,
    subscribers: usize,
    messages: u64,
) -> anyhow::Result<FanRun> {
    let cpu = CpuUse::now()?;
    let seen = rt.block_on(async {
        let mut conns = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            conns.push(nats_subscribe(port).await?);
        }
        let readers: Vec<_> = conns
            .into_iter()
            .map(|(r, w)| tokio::spawn(nats_receive(r, w, messages)))
            .collect();
        let publisher = std::thread::spawn(move || nats_publish(port, messages));
        let mut seen = Vec::with_capacity(readers.len());
        for r in readers {
            seen.push(r.await??);
        }
        publisher
            .join()
            .map_err(|_| anyhow::anyhow!("the NATS publisher panicked"))??;
        anyhow::Ok(seen)
    })?;
    let first_ns = seen
        .iter()
        .filter_map(|s| s.check.first_ts)
        .min()
        .context("no subscriber received message 1")?;
    Ok(FanRun {
        name: format!("nats: {subscribers} subscribers"),
        seen,
        first_ns,
        others_cpu_s: cpu.others_since()?,
        others_cpu_fast_s: f64::NAN,
    })
}

/// A connection subscribed to [`SUBJECT`]; returns once the server has the subscription.
async fn nats_subscribe(port: u16) -> anyhow::Result<(NatsReader, NatsWriter)> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = tokio::io::BufReader::with_capacity(1 << 16, r);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).await?;
    ensure!(line.starts_with(b"INFO"), "nats-server said {line:?} first");
    w.write_all(CONNECT).await?;
    w.write_all(format!("SUB {SUBJECT} 1\r\nPING\r\n").as_bytes())
        .await?;
    // The server answers the PING after it has handled the SUB before it.
    loop {
        line.clear();
        ensure!(
            r.read_until(b'\n', &mut line).await? > 0,
            "nats-server closed"
        );
        if line.starts_with(b"PONG") {
            return Ok((r, w));
        }
        ensure!(!line.starts_with(b"-ERR"), "nats-server refused: {line:?}");
    }
}

/// Reads `MSG` after `MSG` until `total` messages came (or none for [`NATS_QUIET`]),
/// answering the server's pings.
async fn nats_receive(mut r: NatsReader, mut w: NatsWriter, total: u64) -> anyhow::Result<Seen> {
    let mut seen = Seen::new(Role::Fast);
    let mut head = Vec::with_capacity(64);
    let mut payload = Vec::new();
    while seen.check.lines < total {
        head.clear();
        match tokio::time::timeout(NATS_QUIET, r.read_until(b'\n', &mut head)).await {
            Ok(Ok(n)) if n > 0 => {}
            // Closed (e.g. cut off as a slow consumer) or silent: the rest is missing.
            Ok(Ok(_)) => {
                seen.cuts.push("closed by nats-server".into());
                break;
            }
            Ok(Err(e)) => {
                seen.cuts.push(format!("transport: {e}"));
                break;
            }
            Err(_) => {
                seen.cuts.push(format!("nothing for {NATS_QUIET:?}"));
                break;
            }
        }
        if head.starts_with(b"MSG ") {
            // MSG <subject> <sid> [reply-to] <bytes>\r\n, then the payload and \r\n.
            let size: usize = std::str::from_utf8(&head)?
                .split_whitespace()
                .last()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("bad MSG line {head:?}"))?;
            payload.resize(size + 2, 0);
            r.read_exact(&mut payload).await?;
            let now = wall_ns();
            let latency = &mut seen.latency_us;
            seen.check.feed(&payload[..size], |_, ts| {
                latency.push(micros_between(ts, now));
            });
            seen.last_ns = now;
        } else if head.starts_with(b"PING") {
            w.write_all(b"PONG\r\n").await?;
        } else if head.starts_with(b"-ERR") {
            seen.other_frames += 1;
        }
    }
    seen.check.finish(total);
    Ok(seen)
}

/// Publishes `total` lines of the producer's layout to [`SUBJECT`], each stamped when it
/// is made, through a 64 KiB buffer; returns once the server has taken them all.
fn nats_publish(port: u16, total: u64) -> anyhow::Result<()> {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    let mut r = std::io::BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    ensure!(line.starts_with("INFO"), "nats-server said {line:?} first");
    let mut w = std::io::BufWriter::with_capacity(1 << 16, stream);
    w.write_all(CONNECT)?;
    let head = format!("PUB {SUBJECT} {LINE_BYTES}\r\n");
    for n in 1..=total {
        w.write_all(head.as_bytes())?;
        w.write_all(&make_line(n, wall_ns()))?;
        w.write_all(b"\r\n")?;
    }
    w.write_all(b"PING\r\n")?;
    w.flush()?;
    loop {
        line.clear();
        ensure!(
            r.read_line(&mut line)? > 0,
            "nats-server closed the publisher"
        );
        if line.starts_with("PONG") {
            return Ok(());
        }
        ensure!(!line.starts_with("-ERR"), "nats-server refused: {line:?}");
    }
}

// ---------------------------------------------------------------------------------------
// The frame log alone, in process.

/// Size of an `ingest` frame.
const INGEST_FRAME: usize = 100;
const INGEST_HANDLES: u64 = 64;
const INGEST_APPENDERS: u64 = 8;
/// What an observer's `Subscription` reads from the log at once (its `BATCH_FRAMES` and
/// `BATCH_BYTES`, private to the subscriber).
const READ_FRAMES: usize = 256;
const READ_BYTES: usize = 64 << 10;
/// Size of a `replay` frame: a full agent chunk.
const REPLAY_FRAME: usize = 64 << 10;

/// `flotilla-bench ingest [FRAMES]`: FRAMES frames of 100 bytes appended to a frame log
/// in a scratch folder, over 64 handles, from 8 tasks at once; timed from the first
/// append until every handle's watermark shows all its frames durable (fdatasync'd).
pub fn ingest(frames: u64) -> anyhow::Result<Value> {
    let dir = scratch("ingest")?;
    let rt = runtime()?;
    let text = crate::log_like(1 << 20);
    let result = rt.block_on(async {
        let log = FrameLog::open(&dir)?;
        let handles = (0..INGEST_HANDLES)
            .map(|h| HandleId::parse(&format!("h-ingest-{h}")))
            .collect::<Result<Vec<_>, _>>()?;
        let indexes: Vec<_> = handles.iter().map(|h| log.create_handle(h)).collect();
        let handles = Arc::new(handles);
        let text = Arc::new(text.into_bytes());
        let start = Instant::now();
        // Appender `a` takes frames a, a + 8, …; frame i goes to handle i % 64.
        let appenders: Vec<_> = (0..INGEST_APPENDERS)
            .map(|a| {
                let (log, handles, text) = (log.clone(), handles.clone(), text.clone());
                tokio::spawn(async move {
                    let pieces = (text.len() / INGEST_FRAME) as u64;
                    for i in (a..frames).step_by(INGEST_APPENDERS as usize) {
                        let at = (i % pieces) as usize * INGEST_FRAME;
                        log.append(Append {
                            handle: handles[(i % INGEST_HANDLES) as usize].clone(),
                            attempt: 1,
                            kind: StreamKind::Stdout,
                            data: text[at..at + INGEST_FRAME].to_vec(),
                            ack: None,
                        })
                        .await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for a in appenders {
            a.await??;
        }
        for (h, index) in indexes.iter().enumerate() {
            let due = frames / INGEST_HANDLES + u64::from((h as u64) < frames % INGEST_HANDLES);
            index.subscribe().wait_for(|w| w.last >= due).await?;
        }
        let secs = start.elapsed().as_secs_f64();
        let durable: u64 = indexes.iter().map(|i| i.watermark().last).sum();
        ensure!(durable == frames, "{durable} frames durable of {frames}");
        anyhow::Ok(secs)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let secs = result?;
    Ok(json!({
        "scenario": "ingest",
        "frames": frames,
        "frame_bytes": INGEST_FRAME,
        "handles": INGEST_HANDLES,
        "appenders": INGEST_APPENDERS,
        "secs": round(secs),
        "frames_per_s": round(frames as f64 / secs),
        "mb_per_s": round((frames * INGEST_FRAME as u64) as f64 / 1e6 / secs),
    }))
}

/// `flotilla-bench replay [MB]`: MB megabytes written to one handle of a frame log in
/// 64 KiB frames, then read back whole with `read_after` in the batches an observer's
/// `Subscription` reads (the log is in the page cache then, as it is for an observer
/// that follows a task or replays it soon after). Then the same amount through the
/// server: a task writes it, and once the task has ended one observer reads it from
/// offset 0 over its WebSocket.
pub fn replay(exe: &PathBuf, mb: u64) -> anyhow::Result<Value> {
    let bytes = mb * 1_000_000;
    let dir = scratch("replay")?;
    let in_process = replay_in_process(&dir, bytes);
    let _ = std::fs::remove_dir_all(&dir);
    let (write_secs, read_secs, frames) = in_process?;
    let (ws_secs, ws_frames) = replay_ws(exe, bytes)?;
    Ok(json!({
        "scenario": "replay",
        "mb": mb,
        "frames": frames,
        "frame_bytes": REPLAY_FRAME,
        "write_mb_per_s": round(bytes as f64 / 1e6 / write_secs),
        "secs": round(read_secs),
        "mb_per_s": round(bytes as f64 / 1e6 / read_secs),
        "ws_frames": ws_frames,
        "ws_secs": round(ws_secs),
        "ws_mb_per_s": round(bytes as f64 / 1e6 / ws_secs),
    }))
}

/// Writes `bytes` to one handle of a log in `dir`, then reads it back: (seconds to
/// write and make durable, seconds to read, frames).
fn replay_in_process(dir: &Path, bytes: u64) -> anyhow::Result<(f64, f64, u64)> {
    let rt = runtime()?;
    let log = FrameLog::open(dir)?;
    let handle = HandleId::parse("h-replay")?;
    let index = log.create_handle(&handle);
    let text = crate::log_like(8 << 20).into_bytes();
    let start = Instant::now();
    let frames = rt.block_on(async {
        let (mut left, mut at, mut frames) = (bytes, 0, 0u64);
        while left > 0 {
            let take = left.min(REPLAY_FRAME as u64) as usize;
            if at + take > text.len() {
                at = 0;
            }
            log.append(Append {
                handle: handle.clone(),
                attempt: 1,
                kind: StreamKind::Stdout,
                data: text[at..at + take].to_vec(),
                ack: None,
            })
            .await?;
            at += take;
            left -= take as u64;
            frames += 1;
        }
        index.subscribe().wait_for(|w| w.last >= frames).await?;
        anyhow::Ok(frames)
    })?;
    let write_secs = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let (mut after, mut read) = (0, 0u64);
    loop {
        let batch = log.read_after(&index, after, READ_FRAMES, READ_BYTES)?;
        let Some(last) = batch.last() else { break };
        after = last.offset;
        read += batch.iter().map(|f| f.data.len() as u64).sum::<u64>();
    }
    let read_secs = start.elapsed().as_secs_f64();
    ensure!(read == bytes, "read back {read} bytes of {bytes}");
    Ok((write_secs, read_secs, frames))
}

/// A task writes `bytes`; once it has ended, one observer reads them all from offset 0:
/// (seconds from opening the socket to the status frame, frames).
fn replay_ws(exe: &PathBuf, bytes: u64) -> anyhow::Result<(f64, u64)> {
    let server = Server::start(exe, 1, "")?;
    let line = "flotilla replay benchmark: a line of log-like text, ASCII only.";
    let script = format!("yes '{line}' | head -c {bytes}");
    let reply = server
        .client
        .submit(&json!({"argv": ["sh", "-c", script]}))?;
    let id = reply["id"].as_str().context("no id")?;
    wait_state(&server, id, &["succeeded"])?;
    let target = Target {
        base: server.client.base().to_owned(),
        handle: reply["handle"].as_str().context("no handle")?.to_owned(),
        lines: 0,
    };
    let rt = runtime()?;
    let (secs, received, frames) = rt.block_on(async {
        let start = Instant::now();
        let mut ws = target.connect(0).await?;
        let (mut received, mut frames) = (0u64, 0u64);
        while let Some(f) = next_frame(&mut ws).await? {
            frames += 1;
            match f.kind {
                StreamKind::Stdout => {
                    received += match f.encoding {
                        Some(_) => f.bytes().len(),
                        None => f.data.len(),
                    } as u64
                }
                StreamKind::Status => break,
                StreamKind::Stderr
                | StreamKind::Guard
                | StreamKind::Gap
                | StreamKind::Truncated => {}
            }
        }
        anyhow::Ok((start.elapsed().as_secs_f64(), received, frames))
    })?;
    ensure!(
        received == bytes,
        "the observer read {received} bytes of {bytes}"
    );
    Ok((secs, frames))
}

/// A fresh scratch folder for an in-process frame log.
fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("flotilla-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
