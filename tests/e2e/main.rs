//! End-to-end tests: each starts the real `flotilla serve` (with real agent processes) on a
//! free port with a fresh state dir, and talks to it over real sockets.

mod admin;
mod alerts;
mod bad_input;
mod batch;
mod canary;
mod chaos;
mod cli;
mod control_plane;
mod diskfull;
mod fanout;
mod fleet;
mod guard;
mod integrity;
mod lifecycle;
mod metrics;
mod observers;
mod page;
mod placement;
mod privacy;
mod protocol;
mod recovery;
mod retention;
mod rollout;
mod secrets;
mod spawn;
mod streaming;
mod supervision;
mod support;
mod tokens;
