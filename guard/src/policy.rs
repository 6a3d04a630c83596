//! What the guard does with a finding: the mode says whether it acts at all, the
//! privacy level picks the action per kind.

use regex::Regex;

use crate::is_pii;

/// Whether the guard acts. Ordered: `Off < Shadow < Enforce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
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

/// A task's privacy level (RunRequest `constraints.privacy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    #[default]
    Standard,
    Restricted,
    Sensitive,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Shadow => "shadow",
            Mode::Enforce => "enforce",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Mode::Off, Mode::Shadow, Mode::Enforce]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Standard, Level::Restricted, Level::Sensitive];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Standard => "standard",
            Level::Restricted => "restricted",
            Level::Sensitive => "sensitive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// What an approved override lets through.
#[derive(Debug, Clone)]
pub enum AllowTarget {
    /// Every finding of this rule.
    Rule(String),
    /// The value whose digest (first 8 hex of its SHA-256) this is.
    Digest(String),
    /// Values this regex matches whole.
    Pattern(Regex),
}

impl AllowTarget {
    /// A pattern override; the regex must match the whole value.
    pub fn pattern(source: &str) -> Result<Self, regex::Error> {
        Regex::new(&format!("^(?:{source})$")).map(AllowTarget::Pattern)
    }
}

/// The overrides in force for one stream: values they name are allowed, not redacted.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: Vec<(String, AllowTarget)>,
}

impl Allowlist {
    /// `entries` are (override id, target).
    pub fn new(entries: Vec<(String, AllowTarget)>) -> Self {
        Self { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The ids of the overrides it holds.
    pub fn ids(&self) -> Vec<String> {
        self.entries.iter().map(|(id, _)| id.clone()).collect()
    }

    /// The id of the first override that allows this value, if any.
    pub fn allows(&self, rule: &str, digest: &str, value: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, t)| match t {
                AllowTarget::Rule(r) => r == rule,
                AllowTarget::Digest(d) => d == digest,
                AllowTarget::Pattern(p) => p.is_match(value),
            })
            .map(|(id, _)| id.as_str())
    }
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

    #[test]
    fn an_allowlist_matches_by_rule_digest_or_whole_value() {
        let allow = Allowlist::new(vec![
            ("ov-1".into(), AllowTarget::Rule("jwt".into())),
            ("ov-2".into(), AllowTarget::Digest("0badc0de".into())),
            (
                "ov-3".into(),
                AllowTarget::pattern("AKIA[A-Z0-9]{9}EXAMPLE").unwrap(),
            ),
        ]);
        assert_eq!(allow.allows("jwt", "12345678", "eyJ..."), Some("ov-1"));
        assert_eq!(
            allow.allows("github-pat", "0badc0de", "ghp_x"),
            Some("ov-2")
        );
        assert_eq!(
            allow.allows("aws-access-key-id", "1", "AKIAIOSFODNN7EXAMPLE"),
            Some("ov-3")
        );
        // A pattern must match the whole value, not a part of it.
        assert_eq!(
            allow.allows("aws-access-key-id", "1", "xAKIAIOSFODNN7EXAMPLEx"),
            None
        );
        assert_eq!(allow.allows("github-pat", "12345678", "ghp_x"), None);
        assert!(AllowTarget::pattern("(").is_err());
    }
}
