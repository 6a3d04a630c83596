//! Bearer-token checks for routes: `Authorization: Bearer <token>` (or `?token=` on
//! WebSocket routes, which browsers cannot give headers).

use actix_web::HttpRequest;
use flotilla_actors::auth::{Denied, Scope, Tokens};
use flotilla_actors::domain::{HandleId, InstanceId};

use super::error::ApiError;

fn presented(req: &HttpRequest, allow_query: bool) -> Option<String> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|s| s.trim().to_owned());
    header.or_else(|| {
        allow_query
            .then(|| {
                req.query_string()
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("token="))
                    .map(str::to_owned)
            })
            .flatten()
    })
}

fn scope(req: &HttpRequest, tokens: &Tokens, allow_query: bool) -> Result<Scope, ApiError> {
    let token = presented(req, allow_query).ok_or(ApiError::Unauthorized)?;
    tokens.verify(&token).map_err(|denied| match denied {
        Denied::Unknown => ApiError::Unauthorized,
        // Expired and revoked tokens are told why, so that their holder knows to get
        // a new one rather than retry.
        other => ApiError::TokenRefused(other.to_string()),
    })
}

/// Admin routes.
pub fn admin(req: &HttpRequest, tokens: &Tokens) -> Result<(), ApiError> {
    match scope(req, tokens, false)? {
        Scope::Admin => Ok(()),
        _ => Err(ApiError::Forbidden("use the admin API")),
    }
}

/// The agent connection route: the instance the token is bound to, if any.
pub fn agent(req: &HttpRequest, tokens: &Tokens) -> Result<Option<InstanceId>, ApiError> {
    match scope(req, tokens, true)? {
        Scope::Admin => Ok(None),
        Scope::Agent(bound) => Ok(bound),
        _ => Err(ApiError::Forbidden("connect an agent")),
    }
}

/// Following `handle`.
pub fn observer(req: &HttpRequest, tokens: &Tokens, handle: &HandleId) -> Result<(), ApiError> {
    match scope(req, tokens, true)? {
        Scope::Admin => Ok(()),
        Scope::Observer(h) if &h == handle => Ok(()),
        _ => Err(ApiError::Forbidden("follow this handle")),
    }
}
