//! Contract tests: every JSON document that crosses a boundary of flotilla (the agent and
//! observer sockets, the HTTP bodies, the evidence files) has a schema in `schemas/`.
//!
//! Four things keep the schemas honest:
//!
//! * each schema compiles (draft 2020-12) and its `$id` names its file (`schemas.rs`);
//! * fixtures in `schemas/fixtures/<file stem>/` pin what it accepts (`valid/*.json`) and
//!   what it refuses (`invalid/*.json`: `{pointer, rule, document}`, where `pointer` is
//!   the JSON pointer the validator reports and `rule` the keyword that fails), and the
//!   valid ones parse as the Rust type that reads them (`fixtures.rs`);
//! * values built by the real code (wire messages, `to_observer`, `render_metrics`, the
//!   approvals registry, the control plane's reports) and the bodies of the real HTTP
//!   routes over a real engine are validated against their schema, so a renamed field or
//!   a changed serde attribute fails here (`values.rs`, `http.rs`);
//! * the JSON examples in `docs/` are validated too (`docs.rs`).

mod docs;
mod fixtures;
mod http;
mod schemas;
mod values;
