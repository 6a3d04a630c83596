//! HTTP and WebSocket routes. Handlers parse, send, map: they validate at the edge, ask
//! the engine, and turn its answer into a response. No SQL and no task logic here.

mod admin;
mod agents;
mod auth;
mod control;
mod error;
mod guard;
mod metrics;
pub mod openapi;
mod page;
pub mod respcheck;
mod rollout;
pub mod stream;
mod tasks;
pub mod wire;

use actix_web::{web, HttpResponse};
use flotilla_actors::dispatcher::messages::ReadyState;
use flotilla_actors::engine::Engine;

pub use error::ApiError;

/// Per-server settings the routes need.
#[derive(Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// `POST /v1/tasks/batch`: largest body and most tasks.
    pub max_batch_bytes: usize,
    pub max_batch_items: usize,
}

/// Who may call a route.
pub enum Auth {
    None,
    /// A bearer token: admin, or the scope the route names (observer, agent).
    Token,
}

/// What a route takes in its body.
pub enum Body {
    None,
    /// JSON matching one of these schema versions (`id/x.y.z`).
    Schemas(&'static [&'static str]),
}

/// What a route answers with, per status.
#[derive(Clone, Copy)]
pub enum Resp {
    Schema(&'static str),
    /// A JSON object without a published schema yet.
    Object,
    /// A JSON Schema document.
    SchemaDocument,
    Text,
    Problem,
    Upgrade,
    /// An HTML page.
    Html,
    /// A static asset of the admin page (`text/javascript` or `text/css`).
    Asset,
    /// A redirect (302) to the admin page.
    Redirect,
}

/// One route: how it is served and how `/openapi.json` describes it.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub operation: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    /// (name, JSON Schema text, required)
    pub query: &'static [(&'static str, &'static str, bool)],
    pub body: Body,
    pub responses: &'static [(u16, Resp)],
    pub serve: fn() -> actix_web::Route,
}

const AUTH_ERRORS: [(u16, Resp); 2] = [(401, Resp::Problem), (403, Resp::Problem)];
const BODY_ERRORS: [(u16, Resp); 3] = [
    (400, Resp::Problem),
    (413, Resp::Problem),
    (422, Resp::Problem),
];

macro_rules! responses {
    ($($status:literal => $resp:expr),* $(; $($extra:expr),*)?) => {
        &[$(($status, $resp)),* $($(, $extra)*)?]
    };
}

/// Every route of the server, in one table: `routes` registers them, `openapi` describes them.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/healthz",
        operation: "healthz",
        summary: "Liveness",
        auth: Auth::None,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Object),
        serve: || web::get().to(healthz),
    },
    Route {
        method: "get",
        path: "/readyz",
        operation: "readyz",
        summary: "Readiness: ready, degraded or not ready, and why",
        auth: Auth::None,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.readiness/1.0.0"), 503 => Resp::Schema("flotilla.readiness/1.0.0")),
        serve: || web::get().to(readyz),
    },
    Route {
        method: "get",
        path: "/",
        operation: "root",
        summary: "Redirects to the admin page",
        auth: Auth::None,
        query: &[],
        body: Body::None,
        responses: responses!(302 => Resp::Redirect),
        serve: || web::get().to(page::root),
    },
    Route {
        method: "get",
        path: "/admin",
        operation: "adminPage",
        summary: "The live admin page (assets embedded; the admin token is entered in the page and kept in the tab)",
        auth: Auth::None,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Html),
        serve: || web::get().to(page::index),
    },
    Route {
        method: "get",
        path: "/admin/assets/{name}",
        operation: "adminAsset",
        summary: "A script or style sheet of the admin page",
        auth: Auth::None,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Asset, 404 => Resp::Problem),
        serve: || web::get().to(page::asset),
    },
    Route {
        method: "post",
        path: "/admin/handles/{handle}/observer-token",
        operation: "observerToken",
        summary: "A token to follow one handle's output (the admin page's log viewer uses it, so the admin token never goes in a URL)",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.observer-token/1.0.0"), 400 => Resp::Problem, 404 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::post().to(page::observer_token),
    },
    Route {
        method: "get",
        path: "/openapi.json",
        operation: "openapi",
        summary: "This description",
        auth: Auth::None,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Object),
        serve: || web::get().to(openapi_json),
    },
    Route {
        method: "get",
        path: "/metrics",
        operation: "metrics",
        summary: "Prometheus counters (counts only, no values)",
        auth: Auth::None,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Text),
        serve: || web::get().to(metrics::metrics),
    },
    Route {
        method: "post",
        path: "/v1/tasks",
        operation: "submitTask",
        summary: "Submit a RunRequest (v1, or v2 naming its schema)",
        auth: Auth::Token,
        query: &[],
        body: Body::Schemas(&["flotilla.run-request/1.2.0", "flotilla.run-request/2.2.0"]),
        responses: responses!(201 => Resp::Schema("flotilla.task-accepted/1.1.0"), 200 => Resp::Schema("flotilla.task-accepted/1.1.0"), 409 => Resp::Problem, 503 => Resp::Problem;
            AUTH_ERRORS[0], AUTH_ERRORS[1], BODY_ERRORS[0], BODY_ERRORS[1], BODY_ERRORS[2]),
        serve: || web::post().to(tasks::submit),
    },
    Route {
        method: "post",
        path: "/v1/tasks/batch",
        operation: "submitTaskBatch",
        summary: "Submit many RunRequests in one body, each checked and answered on its own; the accepted ones commit together",
        auth: Auth::Token,
        query: &[],
        body: Body::Schemas(&["flotilla.task-batch/1.0.0"]),
        responses: responses!(200 => Resp::Schema("flotilla.task-batch-result/1.0.0"), 503 => Resp::Problem;
            AUTH_ERRORS[0], AUTH_ERRORS[1], BODY_ERRORS[0], BODY_ERRORS[1], BODY_ERRORS[2]),
        serve: || web::post().to(tasks::submit_batch),
    },
    Route {
        method: "get",
        path: "/v1/tasks",
        operation: "listTasks",
        summary: "List tasks, newest first",
        auth: Auth::Token,
        query: &[
            (
                "state",
                r#"{"enum": ["queued", "running", "succeeded", "failed", "cancelled", "timed_out", "poisoned"]}"#,
                false,
            ),
            (
                "limit",
                r#"{"type": "integer", "minimum": 1, "maximum": 1000}"#,
                false,
            ),
        ],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.task-list/1.1.0"), 400 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(tasks::list),
    },
    Route {
        method: "get",
        path: "/v1/summary",
        operation: "summary",
        summary: "Task counts per state",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.summary/1.1.0"); AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(tasks::summary),
    },
    Route {
        method: "get",
        path: "/v1/tasks/{id}",
        operation: "getTask",
        summary: "One task",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.task-view/1.1.0"), 400 => Resp::Problem, 404 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(tasks::get),
    },
    Route {
        method: "post",
        path: "/v1/tasks/{id}/cancel",
        operation: "cancelTask",
        summary: "Cancel a task (kills its process group if it runs)",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Object, 202 => Resp::Object, 400 => Resp::Problem, 404 => Resp::Problem, 409 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::post().to(tasks::cancel),
    },
    Route {
        method: "get",
        path: "/v1/instances",
        operation: "listInstances",
        summary: "Connected executor instances",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.instances/1.1.0"); AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(tasks::instances),
    },
    Route {
        method: "get",
        path: "/admin/fleet",
        operation: "fleet",
        summary: "The fleet at a glance: instances, utilization, queue, observers, log",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.fleet-view/1.0.0"); AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(admin::fleet),
    },
    Route {
        method: "get",
        path: "/admin/queue",
        operation: "queue",
        summary: "Tasks waiting, by the capabilities they require, with the oldest of each",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.queue-view/1.0.0"); AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(admin::queue),
    },
    Route {
        method: "get",
        path: "/admin/tasks",
        operation: "pageTasks",
        summary: "Tasks matching filters, newest first, a page at a time: bounded in rows and in bytes, continued by a cursor",
        auth: Auth::Token,
        query: &[
            (
                "state",
                r#"{"type": "string", "pattern": "^(queued|running|succeeded|failed|cancelled|timed_out|poisoned)(,(queued|running|succeeded|failed|cancelled|timed_out|poisoned))*$"}"#,
                false,
            ),
            ("instance", r#"{"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$", "not": {"pattern": "\\.\\."}}"#, false),
            ("capability", r#"{"type": "string", "minLength": 1, "maxLength": 64}"#, false),
            ("idPrefix", r#"{"type": "string", "minLength": 1, "maxLength": 64}"#, false),
            ("cursor", r#"{"type": "string", "pattern": "^[0-9]{1,18}:[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$", "not": {"pattern": "\\.\\."}}"#, false),
            ("limit", r#"{"type": "integer", "minimum": 1, "maximum": 1000}"#, false),
            ("maxBytes", r#"{"type": "integer", "minimum": 4096, "maximum": 4194304}"#, false),
        ],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.task-page/1.0.0"), 400 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(admin::tasks),
    },
    Route {
        method: "get",
        path: "/admin/rollout",
        operation: "rolloutStatus",
        summary: "Every rollout component: its phase, the gates of its next step as they stand now (reports written), its changes, the last review",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.rollout-view/1.0.0"); AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(rollout::status),
    },
    Route {
        method: "post",
        path: "/admin/rollout/review",
        operation: "rolloutReview",
        summary: "Record the post-rollout review (reports, phases, the reviewer's summary) in out/<scope>/state.json",
        auth: Auth::Token,
        query: &[],
        body: Body::Schemas(&["flotilla.rollout-review-request/1.0.0"]),
        responses: responses!(200 => Resp::Schema("flotilla.rollout-review/1.0.0");
            AUTH_ERRORS[0], AUTH_ERRORS[1], BODY_ERRORS[0], BODY_ERRORS[1], BODY_ERRORS[2]),
        serve: || web::post().to(rollout::review),
    },
    Route {
        method: "post",
        path: "/admin/rollout/{component}/{action}",
        operation: "rolloutStep",
        summary: "Advance a component one phase (refused with 409 naming each failed gate) or roll it back one",
        auth: Auth::Token,
        query: &[],
        body: Body::Schemas(&["flotilla.rollout-decision/1.0.0"]),
        responses: responses!(200 => Resp::Schema("flotilla.rollout-change/1.0.0"), 404 => Resp::Problem, 409 => Resp::Problem;
            AUTH_ERRORS[0], AUTH_ERRORS[1], BODY_ERRORS[0], BODY_ERRORS[1], BODY_ERRORS[2]),
        serve: || web::post().to(rollout::step),
    },
    Route {
        method: "post",
        path: "/admin/reports/{kind}",
        operation: "report",
        summary: "Compute a success-metric report (baseline, post-rollout, mttr-delta, completeness) from what is recorded, and write it",
        auth: Auth::Token,
        query: &[
            ("from", r#"{"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]{3})?Z$"}"#, false),
            ("to", r#"{"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]{3})?Z$"}"#, false),
        ],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.report/1.0.0"), 400 => Resp::Problem, 404 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::post().to(rollout::report),
    },
    Route {
        method: "get",
        path: "/admin/alerts",
        operation: "alerts",
        summary: "Every alert rule: state (inactive, pending, firing, resolved), measured value, threshold and why",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.alert-list/1.0.0"); AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(admin::alerts),
    },
    Route {
        method: "post",
        path: "/admin/instances/{id}/{action}",
        operation: "controlInstance",
        summary: "Cordon, uncordon, drain or restart an instance; replies with every instance",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.instances/1.1.0"), 400 => Resp::Problem, 404 => Resp::Problem, 409 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::post().to(tasks::control_instance),
    },
    Route {
        method: "post",
        path: "/v1/tokens/agent",
        operation: "mintAgentToken",
        summary: "A token for a remote agent, bound to one instance id if given",
        auth: Auth::Token,
        query: &[
            (
                "instance",
                r#"{"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"}"#,
                false,
            ),
            (
                "ttlSeconds",
                r#"{"type": "integer", "minimum": 0, "maximum": 315360000}"#,
                false,
            ),
        ],
        body: Body::None,
        responses: responses!(201 => Resp::Object, 400 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::post().to(tasks::agent_token),
    },
    Route {
        method: "delete",
        path: "/v1/tokens/{id}",
        operation: "revokeToken",
        summary: "Revoke one agent or observer token by its id",
        auth: Auth::Token,
        query: &[("reason", r#"{"type": "string", "maxLength": 1000}"#, false)],
        body: Body::None,
        responses: responses!(200 => Resp::Object, 400 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::delete().to(tasks::revoke_token),
    },
    Route {
        method: "get",
        path: "/v1/handles/{handle}/stream",
        operation: "followHandle",
        summary: "WebSocket: a handle's frames from an offset, then live",
        auth: Auth::Token,
        query: &[
            ("from", r#"{"type": "integer", "minimum": 0}"#, false),
            (
                "policy",
                r#"{"enum": ["catch-up", "drop", "disconnect"]}"#,
                false,
            ),
            ("token", r#"{"type": "string"}"#, false),
        ],
        body: Body::None,
        responses: responses!(101 => Resp::Upgrade, 400 => Resp::Problem, 404 => Resp::Problem, 410 => Resp::Problem, 429 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(stream::follow),
    },
    Route {
        method: "get",
        path: "/v1/handles/{handle}",
        operation: "getHandle",
        summary: "A handle, its task and the observers following it now",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.handle-view/1.1.0"), 400 => Resp::Problem, 404 => Resp::Problem, 410 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(stream::show),
    },
    Route {
        method: "get",
        path: "/v1/agents/connect",
        operation: "connectAgent",
        summary: "WebSocket: the agent protocol",
        auth: Auth::Token,
        query: &[("token", r#"{"type": "string"}"#, false)],
        body: Body::None,
        responses: responses!(101 => Resp::Upgrade, 400 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(agents::connect),
    },
    Route {
        method: "get",
        path: "/v1/schemas",
        operation: "listSchemas",
        summary: "Every schema id and its versions",
        auth: Auth::None,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Object),
        serve: || web::get().to(control::list),
    },
    Route {
        method: "get",
        path: "/v1/schemas/{id}",
        operation: "getSchema",
        summary: "One schema document (latest, or ?version=)",
        auth: Auth::None,
        query: &[(
            "version",
            r#"{"type": "string", "pattern": "^[0-9]+(\\.[0-9]+\\.[0-9]+)?$"}"#,
            false,
        )],
        body: Body::None,
        responses: responses!(200 => Resp::SchemaDocument, 400 => Resp::Problem, 404 => Resp::Problem),
        serve: || web::get().to(control::get),
    },
    Route {
        method: "get",
        path: "/admin/control-plane",
        operation: "controlPlane",
        summary: "Validation mode per schema, rejection windows, switches",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Object; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(control::show),
    },
    Route {
        method: "put",
        path: "/admin/control-plane/modes",
        operation: "setValidationMode",
        summary: "Switch a schema's validation mode (recorded)",
        auth: Auth::Token,
        query: &[],
        body: Body::Schemas(&["flotilla.validation-mode-switch/1.0.0"]),
        responses: responses!(200 => Resp::Object, 404 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1], BODY_ERRORS[0], BODY_ERRORS[1], BODY_ERRORS[2]),
        serve: || web::put().to(control::switch),
    },
    Route {
        method: "get",
        path: "/admin/control-plane/drift",
        operation: "drift",
        summary: "What shadow validation saw, and the rollbacks",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.drift-report/1.0.0"); AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(control::drift),
    },
    Route {
        method: "get",
        path: "/admin/guard",
        operation: "guard",
        summary: "Guard modes per level, phase, policy approval in force",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Schema("flotilla.guard-view/1.0.0"); AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(guard::show),
    },
    Route {
        method: "put",
        path: "/admin/guard/modes",
        operation: "setGuardModes",
        summary: "Switch guard modes (enforcing needs a policy approval)",
        auth: Auth::Token,
        query: &[],
        body: Body::Schemas(&["flotilla.guard-mode-change/1.0.0"]),
        responses: responses!(200 => Resp::Schema("flotilla.guard-view/1.0.0"), 409 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1], BODY_ERRORS[0], BODY_ERRORS[1], BODY_ERRORS[2]),
        serve: || web::put().to(guard::change),
    },
    Route {
        method: "get",
        path: "/admin/guard/approvals",
        operation: "listApprovals",
        summary: "Every approval and override with its status",
        auth: Auth::Token,
        query: &[],
        body: Body::None,
        responses: responses!(200 => Resp::Object; AUTH_ERRORS[0], AUTH_ERRORS[1]),
        serve: || web::get().to(guard::approvals),
    },
    Route {
        method: "post",
        path: "/admin/guard/approvals",
        operation: "requestApproval",
        summary: "Request a policy approval or an override",
        auth: Auth::Token,
        query: &[],
        body: Body::Schemas(&["flotilla.approval-request/1.1.0"]),
        responses: responses!(201 => Resp::Object; AUTH_ERRORS[0], AUTH_ERRORS[1], BODY_ERRORS[0], BODY_ERRORS[1], BODY_ERRORS[2]),
        serve: || web::post().to(guard::request),
    },
    Route {
        method: "post",
        path: "/admin/guard/approvals/{id}/approve",
        operation: "approve",
        summary: "Approve a pending request (a listed approver, not the requester)",
        auth: Auth::Token,
        query: &[],
        body: Body::Schemas(&["flotilla.approval-decision/1.0.0"]),
        responses: responses!(200 => Resp::Object, 404 => Resp::Problem, 409 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1], BODY_ERRORS[0], BODY_ERRORS[1], BODY_ERRORS[2]),
        serve: || web::post().to(guard::approve),
    },
    Route {
        method: "post",
        path: "/admin/guard/approvals/{id}/revoke",
        operation: "revoke",
        summary: "End an approval at once",
        auth: Auth::Token,
        query: &[],
        body: Body::Schemas(&["flotilla.approval-decision/1.0.0"]),
        responses: responses!(200 => Resp::Object, 404 => Resp::Problem, 409 => Resp::Problem; AUTH_ERRORS[0], AUTH_ERRORS[1], BODY_ERRORS[0], BODY_ERRORS[1], BODY_ERRORS[2]),
        serve: || web::post().to(guard::revoke),
    },
];

/// Registers every route of [`ROUTES`].
pub fn routes(cfg: &mut web::ServiceConfig) {
    for r in ROUTES {
        cfg.route(r.path, (r.serve)());
    }
    cfg.default_service(web::to(not_found));
}

async fn openapi_json(state: State) -> HttpResponse {
    let (engine, _) = &**state;
    HttpResponse::Ok().json(openapi::document(&engine.control.registry))
}

/// Liveness: the HTTP server answers. Whether it can take work is `/readyz`.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 while the engine takes work (ready or degraded, with the reasons),
/// 503 when it cannot. Counts only, no names: open like `/healthz`.
async fn readyz(state: State) -> HttpResponse {
    let (engine, _) = &**state;
    let readiness = engine.readiness().await;
    match readiness.status {
        ReadyState::NotReady => HttpResponse::ServiceUnavailable().json(readiness),
        _ => HttpResponse::Ok().json(readiness),
    }
}

/// An admin route's JSON body: the admin token first, then the body checked against
/// `schema` (`id/x.y.z`; always enforced, so operators get the same precise errors as
/// clients), then typed.
async fn admin_body<T: serde::de::DeserializeOwned>(
    req: &actix_web::HttpRequest,
    state: &State,
    schema: &str,
    payload: web::Payload,
) -> Result<T, ApiError> {
    use actix_web::http::StatusCode;
    let (engine, limits) = &***state;
    auth::admin(req, &engine.tokens)?;
    let body = tasks::read_body(payload, limits.max_body_bytes).await?;
    let mut doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "",
            "json",
            e.to_string(),
        )
    })?;
    flotilla_actors::control_plane::whole_numbers_as_integers(&mut doc);
    let errors = engine.control.check(schema, &doc);
    if !errors.is_empty() {
        return Err(ApiError::BadRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "schema-violation",
            detail: format!("the body does not match schema {schema}"),
            errors,
        });
    }
    T::deserialize(&doc).map_err(|e| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "",
            "type",
            e.to_string(),
        )
    })
}

/// The query string as `T`, or a 400 problem naming what is wrong with it.
fn query<T: serde::de::DeserializeOwned>(req: &actix_web::HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| {
            ApiError::field(
                actix_web::http::StatusCode::BAD_REQUEST,
                "bad-query",
                "/query",
                "query",
                e.to_string(),
            )
        })
}

/// No route: 405 with `Allow` if the path exists under other methods, else 404. A path
/// that names a route literally (`/v1/tasks/batch`) is that route's, not a template's
/// (`/v1/tasks/{id}`).
async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let segments: Vec<&str> = req.path().split('/').collect();
    // Each matching route with the number of its template segments.
    let matching: Vec<(&Route, usize)> = ROUTES
        .iter()
        .filter_map(|r| {
            let pattern: Vec<&str> = r.path.split('/').collect();
            let fits = pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p.starts_with('{') || p == s);
            fits.then(|| (r, pattern.iter().filter(|p| p.starts_with('{')).count()))
        })
        .collect();
    let fewest = matching.iter().map(|(_, n)| *n).min().unwrap_or(0);
    let allowed: Vec<String> = matching
        .iter()
        .filter(|(_, n)| *n == fewest)
        .map(|(r, _)| r.method.to_ascii_uppercase())
        .collect();
    if allowed.is_empty() {
        return Err(ApiError::NotFound("no such route".into()));
    }
    Err(ApiError::MethodNotAllowed(allowed.join(", ")))
}

/// Shared state of the routes.
pub type State = web::Data<(Engine, Limits)>;
