//! The live admin page: `GET /admin` and its two assets, embedded in the binary (no CDN,
//! works offline). The page itself is public — it holds nothing — and asks for the admin
//! token, which it keeps in the tab's session storage and sends as a bearer header. Its
//! log viewer follows a handle with a token for that handle alone, so the admin token
//! never goes into a URL.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::{auth, State};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");

/// Only the page's own scripts, styles and connections; no inline code, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `GET /`: to the admin page.
pub async fn root() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/admin"))
        .finish()
}

/// `GET /admin`.
pub async fn index() -> HttpResponse {
    page("text/html; charset=utf-8", INDEX)
}

/// `GET /admin/assets/{name}`: `app.js` or `app.css`.
pub async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    match name.as_str() {
        "app.js" => Ok(page("text/javascript; charset=utf-8", SCRIPT)),
        "app.css" => Ok(page("text/css; charset=utf-8", STYLE)),
        other => Err(ApiError::NotFound(format!(
            "no asset {other:?}: the page has app.js and app.css"
        ))),
    }
}

/// `POST /admin/handles/{handle}/observer-token`: a token to follow this handle only.
pub async fn observer_token(
    req: HttpRequest,
    path: web::Path<String>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let handle = super::stream::parse_handle(&path)?;
    let (engine, _) = &**state;
    auth::admin(&req, &engine.tokens)?;
    let known = engine
        .store
        .task_by_handle(&handle)
        .await
        .map_err(|e| ApiError::internal("reading the task of a handle", e))?;
    if known.is_none() {
        return Err(ApiError::NotFound(format!("no handle {handle}")));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "handle": handle.as_str(),
        "token": engine.observer_token(&handle),
    })))
}
