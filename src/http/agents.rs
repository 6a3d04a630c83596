//! `GET /v1/agents/connect`: the WebSocket an agent holds open. The protocol logic lives in
//! `flotilla_actors::instance`; this only moves messages between the socket and it.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use flotilla_actors::instance::{InstanceSession, Outbox};
use flotilla_actors::protocol::{AttemptKey, ServerMsg};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::error::ApiError;
use super::{auth, State};

/// Largest WebSocket frame an agent may send (an output chunk plus its header).
const MAX_FRAME: usize = 1 << 20;

pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    let bound = auth::agent(&req, &engine.tokens)?;
    let (resp, mut session, incoming) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "not-websocket",
            "",
            "upgrade",
            e.to_string(),
        )
    })?;
    let mut incoming = incoming.max_frame_size(MAX_FRAME);
    let (mut inst, mut outbox) = InstanceSession::new(engine.clone(), bound);
    let lease_timeout_ms = engine.config.fleet.lease_timeout_ms;
    actix_web::rt::spawn(async move {
        // A connection silent for a lease timeout is closed: its instance is suspect,
        // and what it ran is rescheduled.
        let silence = Duration::from_millis(lease_timeout_ms);
        let mut deadline = Instant::now() + silence;
        let mut silent = false;
        let reason: Option<(String, bool)> = loop {
            tokio::select! {
                msg = incoming.next() => {
                    deadline = Instant::now() + silence;
                    let result = match msg {
                        Some(Ok(Message::Text(t))) => match inst.on_text(&t).await {
                            Ok(Some(reply)) => send(&mut session, &reply).await,
                            Ok(None) => Ok(()),
                            Err(e) => break Some((e.to_string(), e.retryable())),
                        },
                        Some(Ok(Message::Binary(b))) => match inst.on_binary(&b) {
                            Ok(()) => Ok(()),
                            Err(e) => break Some((e.to_string(), e.retryable())),
                        },
                        Some(Ok(Message::Ping(p))) => session.pong(&p).await.map_err(|_| ()),
                        Some(Ok(Message::Close(_))) | None => break None,
                        Some(Err(e)) => break Some((format!("protocol error: {e}"), false)),
                        Some(Ok(_)) => Ok(()),
                    };
                    if result.is_err() {
                        break None;
                    }
                }
                Some(first) = outbox.control.recv() => {
                    let msgs = gather(&mut inst, &mut outbox, Some(first), None);
                    if send_all(&mut session, msgs, inst.batching()).await.is_err() {
                        break None;
                    }
                }
                Some(first) = outbox.acks.recv() => {
                    let msgs = gather(&mut inst, &mut outbox, None, Some(first));
                    if send_all(&mut session, msgs, inst.batching()).await.is_err() {
                        break None;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    silent = true;
                    break Some((format!("no message for {} ms", silence.as_millis()), false));
                }
            }
        };
        if let Some((why, retry)) = &reason {
            tracing::warn!(reason = %why, "closing agent connection");
            let _ = send(
                &mut session,
                &ServerMsg::Refused {
                    reason: why.clone(),
                    retry: *retry,
                },
            )
            .await;
        }
        inst.close(silent).await;
        let close = reason.map(|(r, _)| CloseReason {
            code: CloseCode::Policy,
            description: Some(r),
        });
        let _ = session.close(close).await;
    });
    Ok(resp)
}

/// Most messages in one batch.
const MAX_BATCH: usize = 1024;

/// Everything queued for the agent now, beside what woke the loop: acks first (only the
/// highest per attempt: they are cumulative), then control messages in their order,
/// each seen by the session before it goes out.
fn gather(
    inst: &mut InstanceSession,
    outbox: &mut Outbox,
    control: Option<ServerMsg>,
    ack: Option<(AttemptKey, u64)>,
) -> Vec<ServerMsg> {
    let mut highest: HashMap<AttemptKey, u64> = ack.into_iter().collect();
    while let Ok((a, s)) = outbox.acks.try_recv() {
        let e = highest.entry(a).or_insert(s);
        *e = (*e).max(s);
    }
    let mut msgs: Vec<ServerMsg> = highest
        .into_iter()
        .map(|(attempt, seq)| {
            inst.on_acked(attempt, seq);
            ServerMsg::Ack { attempt, seq }
        })
        .collect();
    let queued = std::iter::from_fn(|| outbox.control.try_recv().ok());
    for msg in control.into_iter().chain(queued) {
        inst.on_outgoing(&msg);
        msgs.push(msg);
    }
    msgs
}

/// Sends `msgs` as batches to an agent that takes them, else one by one.
async fn send_all(
    session: &mut actix_ws::Session,
    mut msgs: Vec<ServerMsg>,
    batching: bool,
) -> Result<(), ()> {
    if !batching || msgs.len() == 1 {
        for msg in &msgs {
            send(session, msg).await?;
        }
        return Ok(());
    }
    while !msgs.is_empty() {
        let rest = msgs.split_off(msgs.len().min(MAX_BATCH));
        send(session, &ServerMsg::Batch { messages: msgs }).await?;
        msgs = rest;
    }
    Ok(())
}

async fn send(session: &mut actix_ws::Session, msg: &ServerMsg) -> Result<(), ()> {
    // unwrap: a ServerMsg is plain data and always serialises.
    let text = serde_json::to_string(msg).unwrap();
    session.text(text).await.map_err(|_| ())
}
