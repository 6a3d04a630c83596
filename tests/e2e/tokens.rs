//! Token lifecycle: observer tokens expire, agent tokens connect only the instance they
//! were minted for, and any token can be revoked one by one (kept across a restart);
//! a refused token gets 401 with the reason.

use std::time::Duration;

use flotilla::client::{self, ClientError};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{flotilla_cmd, wait_for, App};

/// `GET /v1/handles/{h}` with `token`: the status and body.
fn handle_with(app: &App, handle: &str, token: &str) -> (u16, Value) {
    match ureq::get(&format!("{}/v1/handles/{handle}", app.base))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
    {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap()),
        Err(e) => panic!("GET /v1/handles: {e}"),
    }
}

/// Runs the `flotilla` CLI against `app`; its stdout, or panics with its stderr.
fn cli(app: &App, args: &[&str]) -> String {
    let out = flotilla_cmd()
        .args(args)
        .args(["--server", &app.base])
        .env("FLOTILLA_TOKEN", app.client.token())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "flotilla {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Opens the agent protocol with `token` and says hello as `instance`: the first text
/// message the server answers, or the HTTP refusal (status, problem detail).
async fn agent_hello(app: &App, token: &str, instance: &str) -> Result<Value, (u16, String)> {
    let url = format!("{}/v1/agents/connect", app.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut ws = match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body: Value = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            return Err((
                resp.status().as_u16(),
                body["detail"].as_str().unwrap_or("").to_owned(),
            ));
        }
        Err(e) => panic!("connect: {e}"),
    };
    let hello = json!({"type": "hello", "protocol": 2, "instance": instance,
        "capabilities": ["os:linux"], "slots": 1, "pid": std::process::id()});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    loop {
        let msg = tokio::time::timeout(
            Duration::from_secs(20),
            futures_util::StreamExt::next(&mut ws),
        )
        .await
        .expect("an answer to hello")
        .expect("the socket is open")
        .expect("a message");
        if let Message::Text(t) = msg {
            return Ok(serde_json::from_str(t.as_str()).unwrap());
        }
    }
}

#[test]
fn an_observer_token_expires_and_says_so() {
    let app = App::start_with_config(1, "[tokens]\nobserver-ttl-seconds = 2\n");
    let task = app.submit(json!({"argv": ["sleep", "30"]}));
    let handle = task["handle"].as_str().unwrap();
    let token = task["observerToken"].as_str().unwrap();
    assert!(token.starts_with("fl2.obs."), "{token}");
    assert_eq!(handle_with(&app, handle, token).0, 200);
    let problem = wait_for(
        "the observer token expires",
        Duration::from_secs(10),
        || {
            let (status, body) = handle_with(&app, handle, token);
            (status == 401).then_some(body)
        },
    );
    assert_eq!(
        problem["type"], "urn:flotilla:problem:token-refused",
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("expired at"),
        "{problem}"
    );
    // The stream refuses it the same way.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Err(ClientError::Api { status, detail, .. }) =
        rt.block_on(client::open_stream(&app.base, token, handle, 0))
    else {
        panic!("an expired token follows the stream");
    };
    assert_eq!(status, 401);
    assert!(detail.contains("expired at"), "{detail}");
    app.client.cancel(task["id"].as_str().unwrap()).unwrap();
}

#[test]
fn agent_tokens_connect_their_own_instance_and_are_revoked_one_by_one() {
    let app = App::start(0);
    let edge1 = cli(&app, &["tokens", "agent", "--instance", "edge-1"]);
    let other = cli(&app, &["tokens", "agent", "--instance", "edge-2"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A token minted for edge-1 does not connect edge-2.
        let refused = agent_hello(&app, &edge1, "edge-2").await.unwrap();
        assert_eq!(refused["type"], "refused", "{refused}");
        assert!(
            refused["reason"]
                .as_str()
                .unwrap()
                .contains("connects instance edge-1 only"),
            "{refused}"
        );
        let welcome = agent_hello(&app, &edge1, "edge-1").await.unwrap();
        assert_eq!(welcome["type"], "welcome", "{welcome}");
    });
    let said = cli(
        &app,
        &[
            "tokens",
            "revoke",
            &edge1,
            "--reason",
            "copied into a ticket",
        ],
    );
    assert!(said.contains("revoked at"), "{said}");
    rt.block_on(async {
        let (status, detail) = agent_hello(&app, &edge1, "edge-1").await.unwrap_err();
        assert_eq!(status, 401);
        assert!(
            detail.contains("revoked") && detail.contains("copied into a ticket"),
            "{detail}"
        );
        // Only that one: the other token still connects.
        let welcome = agent_hello(&app, &other, "edge-2").await.unwrap();
        assert_eq!(welcome["type"], "welcome", "{welcome}");
    });
    // The revocation outlives a restart.
    let app = App::start_in(app.stop(), 0);
    rt.block_on(async {
        let (status, detail) = agent_hello(&app, &edge1, "edge-1").await.unwrap_err();
        assert_eq!(status, 401, "{detail}");
    });
    // An observer token is revoked the same way, by its id.
    let task = app.submit(json!({"argv": ["true"]}));
    let handle = task["handle"].as_str().unwrap();
    let token = task["observerToken"].as_str().unwrap();
    let id = token.split('.').nth(3).unwrap();
    cli(&app, &["tokens", "revoke", id]);
    let (status, problem) = handle_with(&app, handle, token);
    assert_eq!(status, 401);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("revoked by an operator"),
        "{problem}"
    );
}
