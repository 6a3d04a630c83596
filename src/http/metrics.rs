//! `GET /metrics`: the one metrics registry (`flotilla_actors::events`) in the Prometheus
//! text format (version 0.0.4), after reading into it what is read at the scrape: the
//! fleet, the queue, observers, the alerts and the hot paths' counters.

use actix_web::HttpResponse;
use flotilla_actors::events::{registry, scrape};

use super::State;

/// `GET /metrics`: Prometheus text. Counts only, no values: open like `/healthz`.
pub async fn metrics(state: State) -> HttpResponse {
    let (engine, _) = &**state;
    scrape::refresh(engine).await;
    let mut out = String::new();
    registry().render(&mut out);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
