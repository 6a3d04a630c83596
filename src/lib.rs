//! The `flotilla` binaries' edges: CLI, HTTP and WebSocket routes, app wiring, config, the
//! agent process and an HTTP/WebSocket client. The engine lives in `flotilla-actors`.

pub mod agent;
pub mod alerts;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod http;
pub mod hygiene;
pub mod process;
pub mod webdriver;
