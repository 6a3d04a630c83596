//! `GET /v1/handles/{handle}/stream?from=N`: a WebSocket that replays every frame after N,
//! then follows live, and closes after the status frame. One text message per frame.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::Message;
use flotilla_actors::domain::HandleId;
use flotilla_actors::subscriber::{to_observer, Subscription};
use futures_util::StreamExt;

use super::error::ApiError;
use super::{auth, State};

fn from_param(req: &HttpRequest) -> Result<u64, ApiError> {
    match req
        .query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("from="))
    {
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

pub async fn follow(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    let handle = HandleId::parse(&path).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "/path/handle",
            "pattern",
            format!("handle {:?}: {e}", path.as_str()),
        )
    })?;
    auth::observer(&req, &engine.tokens, &handle)?;
    let from = from_param(&req)?;
    let index = engine
        .log
        .handle(&handle)
        .ok_or_else(|| ApiError::NotFound(format!("no handle {handle}")))?;
    let (resp, mut session, mut incoming) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "not-websocket",
            "",
            "upgrade",
            e.to_string(),
        )
    })?;
    let mut sub = Subscription::new(engine.log.clone(), index, from);
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                batch = sub.next_batch() => match batch {
                    Ok(Some(frames)) => {
                        for f in &frames {
                            // unwrap: an ObserverFrame is plain data and always serialises.
                            let text = serde_json::to_string(&to_observer(f)).unwrap();
                            if session.text(text).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "observer stream failed");
                        break;
                    }
                },
                msg = incoming.next() => match msg {
                    Some(Ok(Message::Ping(p))) => {
                        if session.pong(&p).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = session.close(None).await;
    });
    Ok(resp)
}
