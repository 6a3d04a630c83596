//! `GET /v1/handles/{handle}/stream?from=N&policy=P`: a WebSocket that replays every
//! frame after N, then follows live, and closes after the status frame. One text message
//! per frame. Admission, caps and the lag policy are the observer registry's; this moves
//! frames to the socket, with a write timeout and pings.
//!
//! `GET /v1/handles/{handle}`: the handle, its task and the observers following it now.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::Encoder;
use actix_http::ws::{handshake, Codec};
use actix_web::body::{BodyStream, MessageBody};
use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream};
use flotilla_actors::control_plane::RunRequest;
use flotilla_actors::domain::{now_ms, HandleId};
use flotilla_actors::exec_handle::{gap_frame, HandleIndex, StoredFrame};
use flotilla_actors::protocol::{GapReason, StreamKind};
use flotilla_actors::subscriber::registry::{JoinError, Membership, Policy, StreamingSettings};
use flotilla_actors::subscriber::{to_observer, Subscription};
use futures_util::future::LocalBoxFuture;
use futures_util::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::error::ApiError;
use super::wire::{Wire, WireCache};
use super::{auth, State};

fn query<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn from_param(req: &HttpRequest) -> Result<u64, ApiError> {
    match query(req, "from") {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "bad-query",
                "/query/from",
                "type",
                format!("from must be a non-negative integer offset, got {v:?}"),
            )
        }),
    }
}

fn policy_param(req: &HttpRequest) -> Result<Option<Policy>, ApiError> {
    query(req, "policy")
        .map(|v| {
            Policy::parse(v).ok_or_else(|| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "bad-query",
                    "/query/policy",
                    "enum",
                    format!("policy must be catch-up, drop or disconnect, got {v:?}"),
                )
            })
        })
        .transpose()
}

pub(super) fn parse_handle(path: &str) -> Result<HandleId, ApiError> {
    HandleId::parse(path).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "/path/handle",
            "pattern",
            format!("handle {path:?}: {e}"),
        )
    })
}

/// What the handle's request says about its observers: (policy, maxSubscribers).
async fn request_observers(
    state: &State,
    handle: &HandleId,
) -> Result<(Option<Policy>, Option<u32>), ApiError> {
    let (engine, _) = &***state;
    let row = engine
        .store
        .task_by_handle(handle)
        .await
        .map_err(|e| ApiError::internal("reading the task of a handle", e))?;
    let observers = row
        .and_then(|r| RunRequest::from_stored(&r.request).ok())
        .and_then(|r| r.streaming)
        .and_then(|s| s.observers)
        .unwrap_or_default();
    let policy = observers.backpressure.as_deref().and_then(Policy::parse);
    Ok((policy, observers.max_subscribers))
}

pub async fn follow(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let handle = parse_handle(&path)?;
    let (engine, _) = &**state;
    auth::observer(&req, &engine.tokens, &handle)?;
    let from = from_param(&req)?;
    let asked = policy_param(&req)?;
    let index = kept_handle(&state, &handle).await?;
    let (default_policy, max_subscribers) = request_observers(&state, &handle).await?;
    let policy = asked.or(default_policy).unwrap_or(Policy::CatchUp);
    let not_websocket =
        |e: String| ApiError::field(StatusCode::BAD_REQUEST, "not-websocket", "", "upgrade", e);
    let mut response = handshake(req.head()).map_err(|e| not_websocket(e.to_string()))?;
    // Only the message stream of the observer's side is used: frames go out through
    // `ObserverBody`, which the server pulls from only as fast as the socket drains.
    let (_, _, incoming) =
        actix_ws::handle(&req, body).map_err(|e| not_websocket(e.to_string()))?;
    let membership = engine
        .observers
        .join(&handle, from, policy, max_subscribers)
        .map_err(|e| {
            let rule = match e {
                JoinError::Server { .. } => "maxObservers",
                JoinError::Handle { .. } => "maxSubscribers",
            };
            ApiError::field(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-observers",
                "/path/handle",
                rule,
                e.to_string(),
            )
        })?;
    let membership = Arc::new(membership);
    let settings = *engine.observers.settings();
    let (control, control_rx) = mpsc::channel(8);
    let closing = Arc::new(AtomicBool::new(false));
    let body = ObserverBody {
        sub: Some(Subscription::new(engine.log.clone(), index.clone(), from)),
        reading: None,
        ready: false,
        frames: VecDeque::new(),
        control: control_rx,
        codec: Codec::new(),
        wire: req.app_data::<web::Data<WireCache>>().cloned(),
        membership: membership.clone(),
        settings,
        live: index.watermark().last.saturating_sub(from) <= settings.lag_limit,
        closing: closing.clone(),
        done: false,
    };
    let socket = req.conn_data::<ConnSocket>().cloned();
    actix_web::rt::spawn(watch(
        incoming, control, membership, index, socket, closing, settings,
    ));
    let response = response
        .message_body(BodyStream::new(body).boxed())
        .map_err(|e| ApiError::internal("building an observer's response", e))?;
    Ok(response.into())
}

/// The connection's socket (a duplicate of its descriptor, closed with the
/// connection), so that a stalled observer can be cut off.
#[derive(Clone)]
pub struct ConnSocket(pub Arc<OwnedFd>);

/// Frames and control messages for an observer's socket, encoded one WebSocket frame
/// per item. The server polls it only while the socket takes more, so what a slow or
/// stalled observer costs is one batch read from the log and the connection's write
/// buffer, whatever the producer writes.
struct ObserverBody {
    /// The cursor, when no wait or read is in flight.
    sub: Option<Subscription>,
    reading: Option<LocalBoxFuture<'static, (Subscription, Step)>>,
    /// A wait just said frames after the cursor are durable: read them (unless
    /// another observer's encoding of the next one is shared).
    ready: bool,
    frames: VecDeque<StoredFrame>,
    /// Pongs, pings and closes from the watcher of the connection.
    control: mpsc::Receiver<Message>,
    codec: Codec,
    /// Frames encoded once for every observer, when the server keeps them.
    wire: Option<web::Data<WireCache>>,
    membership: Arc<Membership>,
    settings: StreamingSettings,
    /// Within the lag limit of the end at least once: the policy applies from then on.
    live: bool,
    /// Its close frame is out: it waits for the observer's before it ends (see `watch`).
    closing: Arc<AtomicBool>,
    done: bool,
}

type ReadResult = Result<Option<Vec<StoredFrame>>, flotilla_actors::exec_handle::FrameLogError>;

/// What a wait or a read of the subscription came to.
enum Step {
    /// Whether frames after the cursor are durable now (`false`: the stream ended).
    Waited(Result<bool, flotilla_actors::exec_handle::FrameLogError>),
    Read(ReadResult),
}

impl ObserverBody {
    fn encode(&mut self, msg: Message) -> Result<Bytes, actix_web::Error> {
        let mut buf = BytesMut::new();
        self.codec
            .encode(msg, &mut buf)
            .map_err(actix_web::error::ErrorInternalServerError)?;
        Ok(buf.freeze())
    }

    /// A frame of the log as it goes on the wire: from the shared cache when another
    /// observer encoded it already, else encoded here (and shared). Frames made for
    /// this observer alone (gap, truncated) are not shared.
    fn wire_of(&mut self, f: &StoredFrame) -> Result<Wire, actix_web::Error> {
        let shared = !matches!(f.kind, StreamKind::Gap | StreamKind::Truncated);
        let cache = self.wire.clone().filter(|_| shared);
        if let Some(w) = cache.as_ref().and_then(|c| c.get(&f.handle, f.offset)) {
            return Ok(w);
        }
        // unwrap: an ObserverFrame is plain data and always serialises.
        let text = serde_json::to_string(&to_observer(f)).unwrap();
        let text_len = text.len();
        let wire = Wire {
            bytes: self.encode(Message::Text(text.into()))?,
            text_len,
            status: f.kind == StreamKind::Status,
        };
        if let Some(c) = cache {
            c.put(&f.handle, f.offset, &wire);
        }
        Ok(wire)
    }

    /// The next frame, when another observer's encoding of it is in the shared cache:
    /// sent without reading the log.
    fn shared_next(&mut self) -> Option<Wire> {
        let cache = self.wire.as_ref()?;
        let sub = self.sub.as_mut()?;
        let next = sub.next_kept()?;
        let wire = cache.get(&self.membership.session().handle, next)?;
        sub.advance(next, wire.status);
        self.membership.sent(next, wire.text_len);
        self.ready = false;
        Some(wire)
    }

    /// The close frame that ends the stream, with `why` as its reason.
    fn close(
        &mut self,
        code: CloseCode,
        why: String,
    ) -> Poll<Option<Result<Bytes, actix_web::Error>>> {
        self.membership.ending(why.clone());
        self.closing.store(true, Ordering::Relaxed);
        let reason = (code != CloseCode::Normal).then_some(CloseReason {
            code,
            description: Some(why),
        });
        Poll::Ready(Some(
            self.encode(Message::Close(reason.or(Some(code.into())))),
        ))
    }

    /// Between two batches: what the observer's policy does if it lags (more than the
    /// lag limit behind the durable end, once live): nothing, a gap frame queued, or
    /// the end of the stream.
    fn lagging(&mut self) -> Option<Poll<Option<Result<Bytes, actix_web::Error>>>> {
        let sub = self.sub.as_mut()?;
        let lag = sub.lag();
        if lag <= self.settings.lag_limit {
            self.live = true;
            return None;
        }
        if !self.live {
            return None;
        }
        match self.membership.session().policy {
            Policy::CatchUp => None,
            Policy::Drop => {
                if let Some((first, last)) = sub.skip_to_end() {
                    let handle = self.membership.session().handle.clone();
                    self.frames
                        .push_back(gap_frame(&handle, first, last, GapReason::Dropped));
                }
                None
            }
            Policy::Disconnect => {
                let why = format!(
                    "fell {lag} frames behind (policy disconnect, streaming.lag-limit-frames {}); resume from offset {}",
                    self.settings.lag_limit,
                    self.membership.offset()
                );
                Some(self.close(CloseCode::Policy, why))
            }
        }
    }
}

impl Stream for ObserverBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.closing.load(Ordering::Relaxed) {
            // Its close frame is out and nothing may follow it. The body ends when the
            // watcher lets go (the observer's close came, or the linger ran out): were the
            // server to close the socket with the observer's close unread, the kernel
            // would reset the connection and the observer lose what it had not read yet.
            while let Poll::Ready(msg) = this.control.poll_recv(cx) {
                if msg.is_none() {
                    this.done = true;
                    return Poll::Ready(None);
                }
            }
            return Poll::Pending;
        }
        match this.control.poll_recv(cx) {
            Poll::Ready(Some(Message::Close(reason))) => {
                this.closing.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(this.encode(Message::Close(reason))));
            }
            Poll::Ready(Some(msg)) => return Poll::Ready(Some(this.encode(msg))),
            // The watcher is gone: the observer left.
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        loop {
            if let Some(f) = this.frames.pop_front() {
                if f.offset % 64 == 0 {
                    let now = flotilla_actors::domain::now_ms();
                    flotilla_actors::events::observer_latency(now - f.ts_ms);
                }
                let wire = this.wire_of(&f);
                if let Ok(w) = &wire {
                    this.membership.sent(f.offset, w.text_len);
                }
                return Poll::Ready(Some(wire.map(|w| w.bytes)));
            }
            if let Some(end) = this.lagging() {
                return end;
            }
            if !this.frames.is_empty() {
                continue;
            }
            if this.reading.is_none() {
                if let Some(wire) = this.shared_next() {
                    return Poll::Ready(Some(Ok(wire.bytes)));
                }
                let Some(mut sub) = this.sub.take() else {
                    return Poll::Ready(None);
                };
                // Wait first, then look for the next frame in the shared cache: at the
                // live end every observer wakes at once, and only one should read.
                let ready = std::mem::take(&mut this.ready);
                this.reading = Some(Box::pin(async move {
                    if ready {
                        let batch = sub.next_batch().await;
                        (sub, Step::Read(batch))
                    } else {
                        let waited = sub.wait().await;
                        (sub, Step::Waited(waited))
                    }
                }));
            }
            let Some(reading) = this.reading.as_mut() else {
                return Poll::Ready(None);
            };
            let (sub, step) = match reading.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(done) => done,
            };
            this.reading = None;
            this.sub = Some(sub);
            match step {
                Step::Waited(Ok(true)) => this.ready = true,
                Step::Read(Ok(Some(frames))) => this.frames.extend(frames),
                Step::Waited(Ok(false)) | Step::Read(Ok(None)) => {
                    return this.close(CloseCode::Normal, "the handle ended".into())
                }
                Step::Waited(Err(e)) | Step::Read(Err(e)) => {
                    tracing::error!(error = %e, "observer stream failed");
                    let why = format!("the server could not read the log: {e}");
                    return this.close(CloseCode::Error, why);
                }
            }
        }
    }
}

/// How long the server waits for the observer's close frame after sending its own.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// Watches an observer's connection: answers its pings, pings it when quiet, and ends
/// the session when it closes, stops answering, or stalls (frames wait and none went
/// out for the write timeout). A stalled socket is shut down, since a server that
/// writes nothing to it has no other way to end it.
async fn watch(
    mut incoming: MessageStream,
    control: mpsc::Sender<Message>,
    membership: Arc<Membership>,
    index: Arc<HandleIndex>,
    socket: Option<ConnSocket>,
    closing: Arc<AtomicBool>,
    settings: StreamingSettings,
) {
    let write_timeout = Duration::from_millis(settings.write_timeout_ms);
    let ping_every = Duration::from_millis(settings.ping_interval_ms);
    let tick = write_timeout.min(ping_every) / 4;
    let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
    let mut heard = Instant::now();
    let mut pinged = Instant::now();
    let mut linger_since: Option<Instant> = None;
    loop {
        tokio::select! {
            msg = incoming.next() => {
                heard = Instant::now();
                match msg {
                    Some(Ok(Message::Ping(p))) => {
                        if control.send(Message::Pong(p)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) => {
                        membership.ending("closed by the observer");
                        // Its close answers ours, or asks for one in return.
                        if !closing.load(Ordering::Relaxed) {
                            let _ = control.send(Message::Close(None)).await;
                        }
                        return;
                    }
                    None | Some(Err(_)) => {
                        membership.ending("closed by the observer");
                        return;
                    }
                    Some(Ok(_)) => {}
                }
            }
            _ = control.closed() => return,
            _ = ticks.tick() => {
                if closing.load(Ordering::Relaxed) {
                    let since = linger_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > CLOSE_LINGER {
                        return; // no close from the observer: end anyway
                    }
                    continue;
                }
                let waiting = index.watermark().last > membership.offset();
                let idle_ms = (now_ms() - membership.last_sent_ms()).max(0) as u128;
                if waiting && idle_ms > write_timeout.as_millis() {
                    membership.ending(format!(
                        "stalled: no frame went out for {idle_ms} ms while frames waited (streaming.write-timeout-ms {}); resume from offset {}",
                        write_timeout.as_millis(),
                        membership.offset()
                    ));
                    if let Some(ConnSocket(fd)) = &socket {
                        // SAFETY: shutdown on a descriptor this connection owns (a
                        // duplicate, open until the connection's data is dropped).
                        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
                    }
                    return;
                }
                if heard.elapsed() > 2 * ping_every {
                    let why = format!("no answer to pings for {} ms", heard.elapsed().as_millis());
                    membership.ending(why.clone());
                    let _ = control.try_send(Message::Close(Some(CloseReason {
                        code: CloseCode::Policy,
                        description: Some(why),
                    })));
                    return;
                }
                if pinged.elapsed() >= ping_every && heard.elapsed() >= ping_every {
                    pinged = Instant::now();
                    let _ = control.try_send(Message::Ping(Bytes::new()));
                }
            }
        }
    }
}

/// The index of `handle`; 404 when no task ever had it, 410 when retention removed all
/// of its output (and forgot it).
async fn kept_handle(state: &State, handle: &HandleId) -> Result<Arc<HandleIndex>, ApiError> {
    let (engine, _) = &***state;
    if let Some(index) = engine.log.handle(handle) {
        return Ok(index);
    }
    let task = engine
        .store
        .task_by_handle(handle)
        .await
        .map_err(|e| ApiError::internal("reading the task of a handle", e))?;
    match task {
        Some(task) => Err(ApiError::field(
            StatusCode::GONE,
            "output-expired",
            "",
            "retention",
            format!(
                "the output of task {} (handle {handle}) is no longer kept: the server's retention limits removed all of it",
                task.id
            ),
        )),
        None => Err(ApiError::NotFound(format!("no handle {handle}"))),
    }
}

pub async fn show(
    req: HttpRequest,
    path: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let handle = parse_handle(&path)?;
    let (engine, _) = &**state;
    auth::observer(&req, &engine.tokens, &handle)?;
    let index = kept_handle(&state, &handle).await?;
    let task = engine
        .store
        .task_by_handle(&handle)
        .await
        .map_err(|e| ApiError::internal("reading the task of a handle", e))?;
    let wm = index.watermark();
    let kept = index.kept();
    let (policy, max_subscribers) = request_observers(&state, &handle).await?;
    let settings = engine.observers.settings();
    Ok(HttpResponse::Ok().json(json!({
        "handle": handle.as_str(),
        "task": task.as_ref().map(|t| t.id.as_str()),
        "state": task.as_ref().map(|t| t.state.as_str()),
        "firstOffset": kept.first,
        "lastOffset": wm.last,
        "keptBytes": kept.bytes,
        "truncated": kept.truncated.map(|r| r.as_str()),
        "sealed": wm.sealed,
        "policy": policy.unwrap_or(Policy::CatchUp),
        "maxSubscribers": max_subscribers.unwrap_or(settings.max_per_handle).min(settings.max_per_handle),
        "observers": engine.observers.of(&handle),
    })))
}
