//! Task routes: submit, list, get, cancel; plus instances and agent tokens.

use actix_web::http::StatusCode;
use actix_web::ResponseError;
use actix_web::{web, HttpRequest, HttpResponse};
use flotilla_actors::control_plane::{json_body, Rejection};
use flotilla_actors::dispatcher::messages::{
    CancelError, CancelOutcome, ControlError, InstanceAction, SubmitError,
};
use flotilla_actors::domain::{rfc3339_ms, InstanceId, TaskId, TaskState};
use flotilla_actors::engine::{Engine, Submitted};
use flotilla_actors::store::TaskRow;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::{auth, State};

/// A task as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub id: String,
    pub handle: String,
    pub run_id: String,
    pub state: TaskState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub instance: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    pub request: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// A fanned-out task's shards (only in the single-task view).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardView>,
}

/// One shard of a fanned-out task, as its task's view lists it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardView {
    pub index: u32,
    pub id: String,
    pub handle: String,
    pub state: TaskState,
    pub attempts: u32,
    pub instance: Option<String>,
}

impl From<&TaskRow> for ShardView {
    fn from(r: &TaskRow) -> Self {
        Self {
            index: r.shard.unwrap_or(0),
            id: r.id.to_string(),
            handle: r.handle.to_string(),
            state: r.state,
            attempts: r.attempts,
            instance: r.instance.as_ref().map(|i| i.to_string()),
        }
    }
}

impl From<&TaskRow> for TaskView {
    fn from(r: &TaskRow) -> Self {
        Self {
            id: r.id.to_string(),
            handle: r.handle.to_string(),
            run_id: r.run_id.to_string(),
            state: r.state,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            instance: r.instance.as_ref().map(|i| i.to_string()),
            exit_code: r.exit_code,
            signal: r.signal,
            reason: r.reason.clone(),
            created_at: rfc3339_ms(r.created_ms),
            updated_at: rfc3339_ms(r.updated_ms),
            finished_at: r.finished_ms.map(rfc3339_ms),
            request: flotilla_actors::guard::shown_request(&r.request),
            parent: r.parent.as_ref().map(|p| p.to_string()),
            shard: r.shard,
            shards: Vec::new(),
        }
    }
}

/// Reads the body, refusing more than `limit` bytes without buffering them.
pub(super) async fn read_body(
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "bad-body",
                "",
                "body",
                format!("reading the body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::field(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "",
                "maxBytes",
                format!("the body exceeds the limit of {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse_task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "/path/id",
            "pattern",
            format!("task id {raw:?}: {e}"),
        )
    })
}

/// A refusal of the control plane, as the client sees it.
fn rejected(r: Rejection) -> ApiError {
    let (status, code) = match r {
        Rejection::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed-json"),
        Rejection::Version(_) => (StatusCode::BAD_REQUEST, "unknown-schema"),
        Rejection::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "schema-violation"),
    };
    let errors = r.errors().to_vec();
    ApiError::BadRequest {
        status,
        code,
        detail: r.to_string(),
        errors,
    }
}

/// A submission the engine refused, as the client sees it.
fn refused(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Duplicate(id) => {
            ApiError::Conflict(format!("a task with id {id} already exists"))
        }
        SubmitError::Unenforced(why) => ApiError::Conflict(why),
        SubmitError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
        SubmitError::Store(s) if s.transient() => ApiError::Unavailable(format!(
            "not accepting tasks while the state dir does not take writes: {s}"
        )),
        SubmitError::Unsupported(errors) => ApiError::BadRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "unsupported",
            detail: "the request asks for what the scheduler cannot honour".to_owned(),
            errors,
        },
        e => ApiError::internal("storing a task", e),
    }
}

/// The body that accepts a task (`flotilla.task-accepted`): its ids, its observer
/// token, and a fanned-out task's shards with theirs.
fn accepted_body(engine: &Engine, submitted: &Submitted) -> Value {
    let row = &submitted.row;
    let mut body = serde_json::json!({
        "id": row.id,
        "handle": row.handle,
        "runId": row.run_id,
        "state": row.state,
        "reason": row.reason,
        "observerToken": engine.observer_token(&row.handle),
        "stream": format!("/v1/handles/{}/stream", row.handle),
    });
    if !submitted.shards.is_empty() {
        let shards: Vec<Value> = submitted
            .shards
            .iter()
            .map(|s| {
                serde_json::json!({
                    "index": s.shard.unwrap_or(0),
                    "id": s.id,
                    "handle": s.handle,
                    "observerToken": engine.observer_token(&s.handle),
                    "stream": format!("/v1/handles/{}/stream", s.handle),
                })
            })
            .collect();
        body["shards"] = shards.into();
    }
    body
}

pub async fn submit(
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (engine, limits) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let body = read_body(payload, limits.max_body_bytes).await?;
    let accepted = engine.control.parse_run_request(&body).map_err(rejected)?;
    let submitted = engine.submit(accepted).await.map_err(refused)?;
    // A repeated idempotency key gets the first task back: 200, not 201.
    let mut reply = match submitted.existing {
        true => HttpResponse::Ok(),
        false => HttpResponse::Created(),
    };
    Ok(reply
        .insert_header(("Location", format!("/v1/tasks/{}", submitted.row.id)))
        .json(accepted_body(engine, &submitted)))
}

/// `POST /v1/tasks/batch`: `{"tasks": [RunRequest, …]}`. Each item is checked on its
/// own and answered in order, as a single submission would be: accepted (201, or 200
/// for a used idempotency key) with its task, or refused with its problem. The accepted
/// ones are committed in one transaction before the reply.
pub async fn submit_batch(
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (engine, limits) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let body = read_body(payload, limits.max_batch_bytes).await?;
    let doc = json_body(&body).map_err(|e| ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        code: "malformed-json",
        detail: e.message.clone(),
        errors: vec![e],
    })?;
    let shape = |pointer: &str, rule: &str, message: String| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema-violation",
            pointer,
            rule,
            message,
        )
    };
    let Some(fields) = doc.as_object() else {
        return Err(shape(
            "",
            "type",
            "the body must be an object: {\"tasks\": [RunRequest, …]}".into(),
        ));
    };
    if let Some(other) = fields.keys().find(|k| *k != "tasks") {
        return Err(shape(
            &format!("/{other}"),
            "additionalProperties",
            format!("unknown field {other:?}; the body holds only tasks"),
        ));
    }
    let Some(items) = fields.get("tasks").and_then(Value::as_array) else {
        return Err(shape(
            "/tasks",
            "required",
            "tasks must be an array of RunRequests".into(),
        ));
    };
    if items.is_empty() {
        return Err(shape(
            "/tasks",
            "minItems",
            "a batch holds at least one task".into(),
        ));
    }
    // Each item must at least be an object to be a request; otherwise the batch does
    // not follow its own schema and is refused whole.
    if let Some(at) = items.iter().position(|i| !i.is_object()) {
        return Err(shape(
            &format!("/tasks/{at}"),
            "type",
            format!("task {at} is not an object; each item is one RunRequest"),
        ));
    }
    if items.len() > limits.max_batch_items {
        return Err(ApiError::field(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch-too-large",
            "/tasks",
            "maxItems",
            format!(
                "a batch holds at most {} tasks, got {}",
                limits.max_batch_items,
                items.len()
            ),
        ));
    }
    // Each item checked on its own; the accepted ones go to the engine together.
    let mut checked: Vec<Result<(), ApiError>> = Vec::with_capacity(items.len());
    let mut accepted = Vec::with_capacity(items.len());
    for item in items {
        match engine.control.check_run_request(item.clone()) {
            Ok(a) => {
                accepted.push(a);
                checked.push(Ok(()));
            }
            Err(r) => checked.push(Err(rejected(r))),
        }
    }
    let mut submitted = engine
        .submit_batch(accepted)
        .await
        .map_err(|e| ApiError::internal("storing a batch", e))?
        .into_iter();
    let mut results = Vec::with_capacity(items.len());
    let mut taken = 0;
    for (index, item) in checked.into_iter().enumerate() {
        let outcome = item.and_then(|()| {
            submitted
                .next()
                .unwrap_or(Err(SubmitError::Stopped))
                .map_err(refused)
        });
        results.push(match outcome {
            Ok(s) => {
                taken += 1;
                let status = if s.existing { 200 } else { 201 };
                serde_json::json!({"index": index, "status": status, "task": accepted_body(engine, &s)})
            }
            Err(e) => serde_json::json!({
                "index": index,
                "status": e.status_code().as_u16(),
                "problem": e.problem(),
            }),
        });
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "accepted": taken,
        "refused": results.len() - taken,
        "results": results,
    })))
}

pub async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let id = parse_task_id(&path)?;
    let row = engine
        .store
        .get_task(&id)
        .await
        .map_err(|e| ApiError::internal("reading a task", e))?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id}")))?;
    let mut view = TaskView::from(&row);
    if row.parent.is_none() {
        view.shards = engine
            .store
            .shards_of(&id)
            .await
            .map_err(|e| ApiError::internal("reading a task's shards", e))?
            .iter()
            .map(ShardView::from)
            .collect();
    }
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

pub async fn list(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let q: ListQuery = super::query(&req)?;
    let filter = q
        .state
        .as_deref()
        .map(str::parse::<TaskState>)
        .transpose()
        .map_err(|e| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "bad-query",
                "/query/state",
                "enum",
                e.to_string(),
            )
        })?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "bad-query",
            "/query/limit",
            if limit < 1 { "minimum" } else { "maximum" },
            format!("limit must be between 1 and 1000, got {limit}"),
        ));
    }
    let rows = engine
        .store
        .list_tasks(filter, limit)
        .await
        .map_err(|e| ApiError::internal("listing tasks", e))?;
    let tasks: Vec<TaskView> = rows.iter().map(TaskView::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "tasks": tasks })))
}

/// Counts of tasks per state, every state present (zero when none).
pub async fn summary(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let counts = engine
        .store
        .count_by_state()
        .await
        .map_err(|e| ApiError::internal("counting tasks", e))?;
    let mut out = serde_json::Map::new();
    for st in TaskState::ALL {
        let n = counts.iter().find(|(s, _)| *s == st).map_or(0, |(_, n)| *n);
        out.insert(st.as_str().to_owned(), n.into());
    }
    Ok(HttpResponse::Ok().json(out))
}

pub async fn cancel(
    req: HttpRequest,
    path: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let id = parse_task_id(&path)?;
    let outcome = engine
        .cancel(id.clone())
        .await
        .map_err(|e| ApiError::internal("cancel", e))?
        .map_err(|e| match e {
            CancelError::NotFound(id) => ApiError::NotFound(format!("no task {id}")),
            e @ CancelError::Finished { .. } => ApiError::Conflict(e.to_string()),
            CancelError::Store(e) => ApiError::internal("cancel", e),
        })?;
    let (status, word) = match outcome {
        CancelOutcome::Cancelled => (StatusCode::OK, "cancelled"),
        CancelOutcome::Cancelling => (StatusCode::ACCEPTED, "cancelling"),
    };
    Ok(HttpResponse::build(status).json(serde_json::json!({ "id": id, "state": word })))
}

pub async fn instances(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let list = engine
        .instances()
        .await
        .map_err(|e| ApiError::internal("instances", e))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "instances": list })))
}

/// `POST /admin/instances/{id}/{action}`: an operator's cordon, uncordon, drain or restart.
pub async fn control_instance(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let (raw_id, raw_action) = path.into_inner();
    let id = InstanceId::parse(&raw_id).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "/path/id",
            "pattern",
            format!("instance id {raw_id:?}: {e}"),
        )
    })?;
    let action = InstanceAction::parse(&raw_action).ok_or_else(|| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "bad-action",
            "/path/action",
            "enum",
            format!("{raw_action:?} is not cordon, uncordon, drain or restart"),
        )
    })?;
    engine
        .control(id, action)
        .await
        .map_err(|e| ApiError::internal("instance control", e))?
        .map_err(|e| match e {
            ControlError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ControlError::NotLocal(_) => ApiError::Conflict(e.to_string()),
        })?;
    instances(req, state).await
}

/// Mints a token a remote agent connects with: `?instance=` binds it to that instance
/// id, `?ttlSeconds=` sets how long it is valid (default `tokens.agent-ttl-seconds`).
pub async fn agent_token(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let query: AgentTokenQuery = super::query(&req)?;
    let instance = query
        .instance
        .as_deref()
        .map(|i| {
            InstanceId::parse(i).map_err(|e| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "bad-query",
                    "/query/instance",
                    "pattern",
                    format!("instance {i:?}: {e}"),
                )
            })
        })
        .transpose()?;
    if let Some(ttl) = query.ttl_seconds.filter(|t| *t > MAX_TTL_SECONDS) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "bad-query",
            "/query/ttlSeconds",
            "maximum",
            format!("ttlSeconds {ttl} is over ten years ({MAX_TTL_SECONDS})"),
        ));
    }
    let token = engine.agent_token(instance.as_ref(), query.ttl_seconds);
    let id = flotilla_actors::auth::token_id(&token)
        .unwrap_or_default()
        .to_owned();
    Ok(HttpResponse::Created().json(serde_json::json!({ "token": token, "id": id })))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentTokenQuery {
    instance: Option<String>,
    ttl_seconds: Option<u64>,
}

/// Longest life a minted token may be given: ten years.
const MAX_TTL_SECONDS: u64 = 315_360_000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeQuery {
    reason: Option<String>,
}

/// `DELETE /v1/tokens/{id}`: revokes the agent or observer token with this id.
pub async fn revoke_token(
    req: HttpRequest,
    path: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    // `/v1/tokens/agent` is a route of its own (POST): DELETE on it is a wrong method,
    // not a token id.
    let literal: Vec<String> = super::ROUTES
        .iter()
        .filter(|r| r.path == req.path())
        .map(|r| r.method.to_uppercase())
        .collect();
    if !literal.is_empty() {
        return Err(ApiError::MethodNotAllowed(literal.join(", ")));
    }
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let id = path.into_inner();
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "/path/id",
            "pattern",
            format!("token id {id:?}: the hex id a version 2 token carries (its fourth field)"),
        ));
    }
    let query: RevokeQuery = super::query(&req)?;
    if query
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 1000)
    {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "bad-query",
            "/query/reason",
            "maxLength",
            "reason is longer than 1000 characters".to_owned(),
        ));
    }
    let reason = query
        .reason
        .unwrap_or_else(|| "revoked by an operator".to_owned());
    let at = engine
        .revoke_token(&id, &reason)
        .await
        .map_err(|e| ApiError::internal("revoking a token", e))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": id,
        "revokedAt": flotilla_actors::domain::rfc3339_ms(at),
        "reason": reason,
    })))
}
