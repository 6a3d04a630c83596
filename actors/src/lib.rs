//! flotilla's engine: the actors, the validated domain values, the store and the wire
//! protocol. Nothing here knows HTTP; the binaries in the root package are the edges.
//!
//! Start at [`engine::Engine`]: it builds every actor and is the handle the edges hold.

pub mod alerts;
pub mod auth;
pub mod control_plane;
pub mod dispatcher;
pub mod domain;
pub mod engine;
pub mod events;
pub mod exec_handle;
pub mod files;
pub mod fleet;
pub mod guard;
pub mod health;
pub mod instance;
pub mod lifeline;
pub mod manifest;
pub mod protocol;
pub mod queue;
pub mod reports;
pub mod rollout;
pub mod seal;
pub mod state_lock;
pub mod store;
pub mod subscriber;
pub mod supervisor;
