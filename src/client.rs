//! A small client of flotilla's HTTP API and observer WebSocket, used by the CLI, the
//! bench harness and the end-to-end tests.

use std::time::Duration;

use flotilla_actors::protocol::{FinalStatus, ObserverFrame, StreamKind};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::agent::ws_url;

/// Errors of client calls.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error document.
    #[error("server answered {status}: {detail}")]
    Api {
        status: u16,
        detail: String,
        problem: Value,
    },
    #[error("cannot reach the server: {0}")]
    Transport(String),
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("the stream of {handle} made no progress for {secs} s")]
    Stalled { handle: String, secs: u64 },
}

/// Blocking HTTP client of the admin API.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: ureq::Agent,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Value, ClientError> {
        let req = self
            .http
            .request(method, &format!("{}{path}", self.base))
            .set("authorization", &format!("Bearer {}", self.token));
        let resp = match body {
            Some(b) => req.set("content-type", "application/json").send_bytes(b),
            None => req.call(),
        };
        match resp {
            Ok(r) => r
                .into_json()
                .map_err(|e| ClientError::Protocol(e.to_string())),
            Err(ureq::Error::Status(status, r)) => {
                let problem: Value = r.into_json().unwrap_or(Value::Null);
                let detail = problem["detail"].as_str().unwrap_or("no detail").to_owned();
                Err(ClientError::Api {
                    status,
                    detail,
                    problem,
                })
            }
            Err(e) => Err(ClientError::Transport(e.to_string())),
        }
    }

    /// `POST /v1/tasks` with raw bytes (to send anything, valid or not).
    pub fn submit_raw(&self, body: &[u8]) -> Result<Value, ClientError> {
        self.call("POST", "/v1/tasks", Some(body))
    }

    pub fn submit(&self, request: &Value) -> Result<Value, ClientError> {
        self.submit_raw(request.to_string().as_bytes())
    }

    /// Any route with raw body bytes (to send anything, valid or not).
    pub fn admin_raw(&self, method: &str, path: &str, body: &[u8]) -> Result<Value, ClientError> {
        self.call(method, path, Some(body))
    }

    /// `POST /v1/tasks/batch` with `requests`: one result per request, in order.
    pub fn submit_batch(&self, requests: &[Value]) -> Result<Value, ClientError> {
        let body = serde_json::json!({ "tasks": requests });
        self.call("POST", "/v1/tasks/batch", Some(body.to_string().as_bytes()))
    }

    pub fn task(&self, id: &str) -> Result<Value, ClientError> {
        self.call("GET", &format!("/v1/tasks/{id}"), None)
    }

    pub fn tasks(&self, state: Option<&str>) -> Result<Value, ClientError> {
        match state {
            Some(s) => self.call("GET", &format!("/v1/tasks?state={s}&limit=1000"), None),
            None => self.call("GET", "/v1/tasks?limit=1000", None),
        }
    }

    /// Task counts per state.
    pub fn summary(&self) -> Result<Value, ClientError> {
        self.call("GET", "/v1/summary", None)
    }

    pub fn cancel(&self, id: &str) -> Result<Value, ClientError> {
        self.call("POST", &format!("/v1/tasks/{id}/cancel"), Some(b""))
    }

    /// Any admin call with a JSON body (or none).
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.call(method, path, bytes.as_deref())
    }

    pub fn instances(&self) -> Result<Value, ClientError> {
        self.call("GET", "/v1/instances", None)
    }

    /// The pid a connected instance said in its hello.
    pub fn instance_pid(&self, id: &str) -> Result<Option<u32>, ClientError> {
        let list = self.instances()?;
        Ok(list["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["id"] == id)
            .and_then(|i| i["pid"].as_u64())
            .map(|p| p as u32))
    }

    /// Polls a task every 2 ms until `done` holds; `None` after `limit`.
    pub fn wait_task(
        &self,
        id: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Option<Value>, ClientError> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let t = self.task(id)?;
            if done(&t) {
                return Ok(Some(t));
            }
            if std::time::Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// An open observer stream.
pub type ObserverSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the observer stream of `handle` after offset `from`.
pub async fn open_stream(
    base: &str,
    token: &str,
    handle: &str,
    from: u64,
) -> Result<ObserverSocket, ClientError> {
    open_stream_query(base, token, handle, &format!("from={from}")).await
}

/// [`open_stream`] with a query of its own (`from=N&policy=drop`).
pub async fn open_stream_query(
    base: &str,
    token: &str,
    handle: &str,
    query: &str,
) -> Result<ObserverSocket, ClientError> {
    let url = ws_url(base, &format!("/v1/handles/{handle}/stream?{query}"))
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let mut req = url
        .into_client_request()
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Transport("token is not a valid header value".into()))?,
    );
    match tokio_tungstenite::connect_async_with_config(req, None, true).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let problem: Value = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err(ClientError::Api {
                status: resp.status().as_u16(),
                detail: problem["detail"].as_str().unwrap_or("refused").to_owned(),
                problem,
            })
        }
        Err(e) => Err(ClientError::Transport(e.to_string())),
    }
}

/// Reads the next frame from an open stream; `None` when the server closed it.
pub async fn next_frame(ws: &mut ObserverSocket) -> Result<Option<ObserverFrame>, ClientError> {
    while let Some(msg) = ws.next().await {
        match msg.map_err(|e| ClientError::Transport(e.to_string()))? {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .map(Some)
                    .map_err(|e| ClientError::Protocol(format!("bad frame: {e}")))
            }
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// Follows `handle` from offset `from` to its status frame, calling `on_frame` once per
/// frame in offset order. A dropped connection is resumed after the last delivered offset,
/// so no frame is missed or repeated; gives up after `stall` without progress.
pub async fn follow(
    base: &str,
    token: &str,
    handle: &str,
    from: u64,
    stall: Duration,
    mut on_frame: impl FnMut(&ObserverFrame),
) -> Result<FinalStatus, ClientError> {
    let mut last = from;
    let mut last_progress = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        match open_stream(base, token, handle, last).await {
            Err(e @ ClientError::Api { .. }) => return Err(e),
            Err(_) => {}
            Ok(mut ws) => {
                while let Ok(Some(frame)) = next_frame(&mut ws).await {
                    if frame.offset <= last {
                        continue;
                    }
                    last = frame.offset;
                    last_progress = tokio::time::Instant::now();
                    backoff = Duration::from_millis(50);
                    on_frame(&frame);
                    if frame.kind == StreamKind::Status {
                        return frame.status.ok_or_else(|| {
                            ClientError::Protocol("status frame without a status".into())
                        });
                    }
                }
            }
        }
        if last_progress.elapsed() > stall {
            return Err(ClientError::Stalled {
                handle: handle.to_owned(),
                secs: stall.as_secs(),
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
