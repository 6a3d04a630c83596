//! Validated domain values: ids that may become path segments, capability tags, task states.
//!
//! Every id that crosses a boundary is parsed here once; the rest of the engine only ever
//! holds the validated newtype, so a path built from one cannot escape its folder.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod time;
pub use time::{now_ms, parse_rfc3339_ms, rfc3339_ms};

/// Why a string is not a valid id or tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters, got {len}")]
    TooLong { max: usize, len: usize },
    #[error("must not start with '.'")]
    LeadingDot,
    #[error("must not contain '..'")]
    DotDot,
    #[error("character {ch:?} is not allowed; use letters, digits, '.', '_' and '-'")]
    BadChar { ch: char },
}

/// Checks the rule shared by every id that may become a path segment:
/// 1 to 64 of `[A-Za-z0-9._-]`, no leading dot, no `..` (so no `/`, NUL or traversal).
fn check_segment(s: &str) -> Result<(), IdError> {
    const MAX: usize = 64;
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX {
        return Err(IdError::TooLong {
            max: MAX,
            len: s.len(),
        });
    }
    if s.starts_with('.') {
        return Err(IdError::LeadingDot);
    }
    if s.contains("..") {
        return Err(IdError::DotDot);
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(IdError::BadChar { ch });
    }
    Ok(())
}

/// Random lowercase hex, for generated ids and secrets.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // unwrap: the OS random source only fails on unsupported platforms, where nothing works.
    getrandom::getrandom(&mut buf).unwrap();
    to_hex(&buf)
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

macro_rules! segment_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates an id given from outside.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_segment(s)?;
                Ok(Self(s.to_owned()))
            }

            /// A fresh random id with this kind's prefix.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_hex(8)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check_segment(&s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

segment_id!(
    /// A task's id: given by the client or generated (`t-…`).
    TaskId,
    "t-"
);
segment_id!(
    /// The durable identity of a task's output stream (`h-…`).
    HandleId,
    "h-"
);
segment_id!(
    /// An executor instance's id, chosen by the agent (`local-1`, a host name, …).
    InstanceId,
    "i-"
);
segment_id!(
    /// One run of the orchestrator over a task: names the manifest folder (`r-…`).
    RunId,
    "r-"
);
segment_id!(
    /// The folder of a deployment's own evidence: `.runs/<scope>/…`, `out/<scope>/…`.
    Scope,
    "s-"
);

impl Default for Scope {
    fn default() -> Self {
        Self("flotilla".to_owned())
    }
}

/// A capability tag an instance offers and a task may require: `[a-z0-9][a-z0-9:._-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Capability(String);

/// Why a capability tag is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capability {0:?} must match [a-z0-9][a-z0-9:._-]{{0,63}}")]
pub struct CapabilityError(pub String);

impl Capability {
    pub fn parse(s: &str) -> Result<Self, CapabilityError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ':' | '.' | '_' | '-')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(CapabilityError(s.to_owned()))
        }
    }

    /// Parses a comma-separated list, ignoring empty items (`"a,b"`, `""`).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, CapabilityError> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(Self::parse)
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Capability {
    type Error = CapabilityError;
    fn try_from(s: String) -> Result<Self, CapabilityError> {
        Self::parse(&s)
    }
}

impl From<Capability> for String {
    fn from(c: Capability) -> String {
        c.0
    }
}

/// How a task or an attempt stands or ended: its state, the exit code of its process or
/// the signal that killed it, and why. The one type for a task's recorded state, an
/// attempt's recorded end and (with the attempt count) a handle's sealed status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct End<S> {
    pub state: S,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
}

impl<S> End<S> {
    /// An end without a process status: `state`, because of `reason`.
    pub fn because(state: S, reason: impl Into<String>) -> Self {
        Self {
            state,
            exit_code: None,
            signal: None,
            reason: Some(reason.into()),
        }
    }
}

/// Where a task is in its life. `Queued` and `Running` are live; the rest are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    /// Stopped because every instance it ran on was lost while running it.
    Poisoned,
}

/// Why a string is not a task state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state {0:?}; expected one of queued, running, succeeded, failed, cancelled, timed_out, poisoned")]
pub struct TaskStateError(pub String);

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::TimedOut,
        TaskState::Poisoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::TimedOut => "timed_out",
            TaskState::Poisoned => "poisoned",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, TaskState::Queued | TaskState::Running)
    }
}

impl FromStr for TaskState {
    type Err = TaskStateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| TaskStateError(s.to_owned()))
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_a_folder_are_rejected() {
        for (input, want) in [
            ("", IdError::Empty),
            (".hidden", IdError::LeadingDot),
            ("a..b", IdError::DotDot),
            ("a/b", IdError::BadChar { ch: '/' }),
            ("a\0b", IdError::BadChar { ch: '\0' }),
            ("a b", IdError::BadChar { ch: ' ' }),
        ] {
            assert_eq!(TaskId::parse(input), Err(want), "input {input:?}");
        }
        let long = "x".repeat(65);
        assert_eq!(
            TaskId::parse(&long),
            Err(IdError::TooLong { max: 64, len: 65 })
        );
        assert_eq!(
            TaskId::parse("build-42.v1_a").map(|t| t.to_string()),
            Ok("build-42.v1_a".into())
        );
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = HandleId::generate();
        let b = HandleId::generate();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("h-"));
        assert_eq!(HandleId::parse(a.as_str()), Ok(a));
    }

    #[test]
    fn capabilities_follow_the_tag_grammar() {
        assert!(Capability::parse("os:linux").is_ok());
        assert!(Capability::parse("llm-32k").is_ok());
        assert!(Capability::parse("GPU").is_err());
        assert!(Capability::parse(":x").is_err());
        assert_eq!(Capability::parse_list("a, b,,c").map(|v| v.len()), Ok(3));
    }

    #[test]
    fn task_states_round_trip_through_their_names() {
        for st in TaskState::ALL {
            assert_eq!(st.as_str().parse::<TaskState>(), Ok(st));
        }
        assert!("done".parse::<TaskState>().is_err());
    }
}
