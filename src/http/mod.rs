//! HTTP and WebSocket routes. Handlers parse, send, map: they validate at the edge, ask
//! the engine, and turn its answer into a response. No SQL and no task logic here.

mod agents;
mod auth;
mod control;
mod error;
mod guard;
mod stream;
mod tasks;

use actix_web::{web, HttpResponse};
use flotilla_actors::engine::Engine;

pub use error::ApiError;

/// Per-server settings the routes need.
#[derive(Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/v1/tasks", web::post().to(tasks::submit))
        .route("/v1/tasks", web::get().to(tasks::list))
        .route("/v1/summary", web::get().to(tasks::summary))
        .route("/v1/tasks/{id}", web::get().to(tasks::get))
        .route("/v1/tasks/{id}/cancel", web::post().to(tasks::cancel))
        .route("/v1/instances", web::get().to(tasks::instances))
        .route("/v1/tokens/agent", web::post().to(tasks::agent_token))
        .route("/v1/handles/{handle}/stream", web::get().to(stream::follow))
        .route("/v1/agents/connect", web::get().to(agents::connect))
        .route("/admin/guard", web::get().to(guard::show))
        .route("/admin/guard/modes", web::put().to(guard::change))
        .route("/admin/guard/approvals", web::get().to(guard::approvals))
        .route("/admin/guard/approvals", web::post().to(guard::request))
        .route(
            "/admin/guard/approvals/{id}/{verb}",
            web::post().to(guard::decide),
        )
        .route("/metrics", web::get().to(guard::metrics))
        .route("/v1/schemas", web::get().to(control::list))
        .route("/v1/schemas/{id}", web::get().to(control::get))
        .route("/admin/control-plane", web::get().to(control::show))
        .route("/admin/control-plane/modes", web::put().to(control::switch))
        .route("/admin/control-plane/drift", web::get().to(control::drift))
        .default_service(web::to(not_found));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

/// Shared state of the routes.
pub type State = web::Data<(Engine, Limits)>;
