//! Control-plane routes: the schema registry, validation modes and the drift report.

use actix_web::{web, HttpRequest, HttpResponse};
use flotilla_actors::control_plane::{Lookup, ValidationMode};
use serde::Deserialize;

use super::error::ApiError;
use super::{admin_body, auth, State};

#[derive(Deserialize)]
pub struct VersionQuery {
    version: Option<String>,
}

/// `GET /v1/schemas`: every schema id with its versions. Public, like the OpenAPI.
pub async fn list(state: State) -> HttpResponse {
    let (engine, _) = &**state;
    HttpResponse::Ok().json(serde_json::json!({ "schemas": engine.control.registry.list() }))
}

/// `GET /v1/schemas/{id}?version=x.y.z`: one schema document (the latest by default).
pub async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    let id = path.into_inner();
    let query: VersionQuery = super::query(&req)?;
    match engine.control.registry.get(&id, query.version.as_deref()) {
        Ok(entry) => Ok(HttpResponse::Ok()
            .content_type("application/schema+json")
            .json(&entry.document)),
        // No such schema, or no such version of it (the message lists the versions).
        Err(e @ (Lookup::UnknownId(..) | Lookup::UnknownVersion { .. })) => {
            Err(ApiError::NotFound(e.to_string()))
        }
    }
}

/// `GET /admin/control-plane`: the mode of each schema, its rejection window, and every
/// switch so far.
pub async fn show(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "modes": engine.control.modes(),
        "switches": engine.control.history(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeSwitch {
    schema: String,
    mode: ValidationMode,
    by: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `PUT /admin/control-plane/modes`: `{schema, mode, by, reason?}`; recorded.
pub async fn switch(
    req: HttpRequest,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    // The schema holds `by` to a person's name: printable, not blank, 1 to 64 characters.
    let s: ModeSwitch = admin_body(
        &req,
        &state,
        "flotilla.validation-mode-switch/1.0.0",
        payload,
    )
    .await?;
    let (engine, _) = &**state;
    let modes = engine
        .control
        .set_mode(&s.schema, s.mode, &s.by, s.reason)
        .map_err(|e| ApiError::NotFound(e.to_string()))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "modes": modes })))
}

/// `GET /admin/control-plane/drift`: what shadow validation saw, and the rollbacks.
pub async fn drift(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    Ok(HttpResponse::Ok().json(engine.control.drift_report()))
}
