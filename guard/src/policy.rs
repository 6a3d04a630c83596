//! What the guard does with a finding: the mode says whether it acts at all, the
//! privacy level picks the action per kind.

use crate::is_pii;

/// Whether the guard acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No scanning: output passes as it is.
    Off,
    /// Scan and record what would be done; change nothing.
    #[default]
    Shadow,
    /// Scan and act.
    Enforce,
}

/// What happens to a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Recorded, left as it is.
    Allow,
    /// Replaced by `[REDACTED:<rule>:<digest>]`.
    Redact,
    /// The released text is replaced by `[BLOCKED:<rule>:<digest>]`.
    Block,
}

/// A task's privacy level (RunRequest v2 `constraints.privacy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    #[default]
    Standard,
    Restricted,
    Sensitive,
}

/// Mode and level of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub mode: Mode,
    pub level: Level,
}

impl Policy {
    pub fn enforce(level: Level) -> Self {
        Self {
            mode: Mode::Enforce,
            level,
        }
    }

    /// The default action for a kind at this level: secrets are redacted (blocked when
    /// sensitive); personal data is recorded at `standard` and redacted above it.
    pub fn action(&self, kind: &str) -> Action {
        match (is_pii(kind), self.level) {
            (false, Level::Sensitive) => Action::Block,
            (false, _) => Action::Redact,
            (true, Level::Standard) => Action::Allow,
            (true, _) => Action::Redact,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_level() {
        let standard = Policy::enforce(Level::Standard);
        assert_eq!(standard.action("github-token"), Action::Redact);
        assert_eq!(standard.action("email"), Action::Allow);
        assert_eq!(
            Policy::enforce(Level::Restricted).action("email"),
            Action::Redact
        );
        assert_eq!(
            Policy::enforce(Level::Sensitive).action("jwt"),
            Action::Block
        );
        assert_eq!(Policy::default().mode, Mode::Shadow);
    }
}
