//! Approvals: the recorded evidence the guard acts on.
//!
//! Two kinds. A `guard-policy` approval lets an operator switch enforcement on; without
//! one the switch is refused. A `guard-override` allowlists a rule, a digest or a pattern,
//! for one task or globally, until it expires. Each is requested by one person and
//! approved by another who is on the approver list (or is the after-hours owner); either
//! may be revoked. The registry is one JSON file, `.runs/<scope>/approvals/latest.json`,
//! rewritten atomically on every change and read back at start, so a restart keeps them.

use std::path::{Path, PathBuf};

use flotilla_guard::policy::{AllowTarget, Allowlist};
use serde::{Deserialize, Serialize};

use crate::domain::{parse_rfc3339_ms, random_hex, rfc3339_ms, Scope, TaskId};
use crate::files::write_atomic;

pub const APPROVALS_SCHEMA: &str = "flotilla.approvals/1.1.0";
/// Longest an override may last; overrides are exceptions, not configuration.
pub const MAX_OVERRIDE_SECS: u64 = 30 * 86_400;
/// Longest (and default) life of a policy approval.
pub const MAX_POLICY_SECS: u64 = 365 * 86_400;
pub const DEFAULT_POLICY_SECS: u64 = 90 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalKind {
    /// Allows switching the guard to enforce.
    GuardPolicy,
    /// Allowlists a rule, digest or pattern.
    GuardOverride,
    /// The sponsor's sign-off of the programme's objectives and success metrics, which
    /// every rollout advance needs.
    SponsorSignoff,
}

/// What a sponsor signs off: the programme's objectives and how success is measured.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Signoff {
    pub objectives: Vec<String>,
    pub success_metrics: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Requested,
    Approved,
    Revoked,
    Expired,
}

/// What an override allows: exactly one of the three.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverrideTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// One approval, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub id: String,
    pub kind: ApprovalKind,
    pub status: ApprovalStatus,
    /// `global`, or the id of the one task it applies to.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<OverrideTarget>,
    /// A sponsor sign-off's objectives and success metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signoff: Option<Signoff>,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl Approval {
    fn expires_ms(&self) -> i64 {
        parse_rfc3339_ms(&self.expires_at).unwrap_or(0)
    }

    /// Approved and not expired at `now`.
    pub fn in_force(&self, now: i64) -> bool {
        self.status == ApprovalStatus::Approved && now < self.expires_ms()
    }

    fn applies_to(&self, task: &TaskId) -> bool {
        self.scope == "global" || self.scope == task.as_str()
    }
}

/// A request for an approval, as the admin API takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalRequest {
    pub kind: ApprovalKind,
    /// `global` (the default) or a task id; policy approvals are always global.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub target: Option<OverrideTarget>,
    /// For a sponsor sign-off: its objectives and success metrics.
    #[serde(default)]
    pub signoff: Option<Signoff>,
    pub reason: String,
    pub requested_by: String,
    /// Life of the approval from now; overrides must say, up to 30 days.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no approval {0}")]
    NotFound(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(
        "no approvers are configured (set guard.approvers in flotilla.toml); nobody can approve"
    )]
    NoApprovers,
    #[error("{who} may not approve: approvers are {approvers}")]
    NotApprover { who: String, approvers: String },
    #[error("{0} requested this approval and may not also approve it; a second person must")]
    SelfApproval(String),
    #[error("approval {id} is {status:?}, not requested")]
    NotPending { id: String, status: ApprovalStatus },
    #[error("approval {id} is already {status:?}")]
    Closed { id: String, status: ApprovalStatus },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

/// Who may approve: the approver list, plus the after-hours owner.
#[derive(Debug, Clone, Default)]
pub struct Approvers {
    pub approvers: Vec<String>,
    pub after_hours_owner: Option<String>,
}

impl Approvers {
    fn may_approve(&self, who: &str) -> bool {
        self.approvers.iter().any(|a| a == who) || self.after_hours_owner.as_deref() == Some(who)
    }

    fn listed(&self) -> String {
        let mut all = self.approvers.clone();
        all.extend(self.after_hours_owner.iter().cloned());
        all.join(", ")
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistryFile {
    schema: String,
    updated_at: String,
    approvals: Vec<Approval>,
}

/// The approvals, in memory and on disk.
pub struct Registry {
    path: PathBuf,
    approvals: Vec<Approval>,
}

/// Where the registry lives under the artifacts root.
pub fn registry_path(artifacts: &Path, scope: &Scope) -> PathBuf {
    artifacts
        .join(".runs")
        .join(scope.as_str())
        .join("approvals")
        .join("latest.json")
}

impl Registry {
    /// Reads the registry (an absent file is an empty registry).
    pub fn load(artifacts: &Path, scope: &Scope) -> Result<Self, ApprovalError> {
        let path = registry_path(artifacts, scope);
        let approvals = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<RegistryFile>(&bytes)
                    .map_err(|e| ApprovalError::Corrupt {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?
                    .approvals
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(ApprovalError::Corrupt {
                    path,
                    detail: e.to_string(),
                })
            }
        };
        Ok(Self { path, approvals })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every approval, expired ones marked so.
    pub fn list(&mut self, now: i64) -> Vec<Approval> {
        self.expire(now);
        self.approvals.clone()
    }

    pub fn get(&self, id: &str) -> Option<&Approval> {
        self.approvals.iter().find(|a| a.id == id)
    }

    /// The newest policy approval in force, if any.
    pub fn policy_in_force(&self, now: i64) -> Option<&Approval> {
        self.approvals
            .iter()
            .rev()
            .find(|a| a.kind == ApprovalKind::GuardPolicy && a.in_force(now))
    }

    /// The newest sponsor sign-off in force, if any.
    pub fn signoff_in_force(&self, now: i64) -> Option<&Approval> {
        self.approvals
            .iter()
            .rev()
            .find(|a| a.kind == ApprovalKind::SponsorSignoff && a.in_force(now))
    }

    /// The overrides in force for one task (global ones and the task's own).
    pub fn allowlist(&self, task: &TaskId, now: i64) -> Allowlist {
        let entries = self
            .approvals
            .iter()
            .filter(|a| a.kind == ApprovalKind::GuardOverride && a.in_force(now))
            .filter(|a| a.applies_to(task))
            .filter_map(|a| {
                let target = to_allow_target(a.target.as_ref()?).ok()?;
                Some((a.id.clone(), target))
            })
            .collect();
        Allowlist::new(entries)
    }

    /// Records a new request (status `requested`).
    pub fn request(&mut self, req: ApprovalRequest, now: i64) -> Result<Approval, ApprovalError> {
        let invalid = |field, message: &str| ApprovalError::Invalid {
            field,
            message: message.to_owned(),
        };
        if req.reason.trim().is_empty() {
            return Err(invalid("reason", "must say why"));
        }
        check_person("requestedBy", &req.requested_by)?;
        let scope = req.scope.unwrap_or_else(|| "global".to_owned());
        if req.kind != ApprovalKind::SponsorSignoff && req.signoff.is_some() {
            return Err(invalid(
                "signoff",
                "only a sponsor-signoff has objectives and success metrics",
            ));
        }
        let (target, max, default) = match req.kind {
            ApprovalKind::GuardPolicy => {
                if scope != "global" || req.target.is_some() {
                    return Err(invalid(
                        "scope",
                        "a policy approval is global and has no target",
                    ));
                }
                (None, MAX_POLICY_SECS, Some(DEFAULT_POLICY_SECS))
            }
            ApprovalKind::SponsorSignoff => {
                if scope != "global" || req.target.is_some() {
                    return Err(invalid(
                        "scope",
                        "a sponsor sign-off is global and has no target",
                    ));
                }
                let listed = |v: &[String]| !v.is_empty() && v.iter().all(|s| !s.trim().is_empty());
                match &req.signoff {
                    Some(s) if listed(&s.objectives) && listed(&s.success_metrics) => {}
                    _ => return Err(invalid(
                        "signoff",
                        "a sponsor sign-off names at least one objective and one success metric",
                    )),
                }
                (None, MAX_POLICY_SECS, Some(DEFAULT_POLICY_SECS))
            }
            ApprovalKind::GuardOverride => {
                if scope != "global" {
                    TaskId::parse(&scope).map_err(|e| ApprovalError::Invalid {
                        field: "scope",
                        message: format!("must be `global` or a task id: {e}"),
                    })?;
                }
                let target = req.target.ok_or_else(|| {
                    invalid(
                        "target",
                        "an override must name a rule, a digest or a pattern",
                    )
                })?;
                to_allow_target(&target)?;
                (Some(target), MAX_OVERRIDE_SECS, None)
            }
        };
        let secs = req
            .expires_in_seconds
            .or(default)
            .ok_or_else(|| invalid("expiresInSeconds", "an override must say when it expires"))?;
        if secs == 0 || secs > max {
            return Err(ApprovalError::Invalid {
                field: "expiresInSeconds",
                message: format!("must be between 1 and {max}, got {secs}"),
            });
        }
        let approval = Approval {
            id: format!("ap-{}", random_hex(6)),
            kind: req.kind,
            status: ApprovalStatus::Requested,
            scope,
            target,
            signoff: req.signoff,
            reason: req.reason,
            requested_by: req.requested_by,
            requested_at: rfc3339_ms(now),
            expires_at: rfc3339_ms(now + secs as i64 * 1000),
            approved_by: None,
            approved_at: None,
            revoked_by: None,
            revoked_at: None,
        };
        self.approvals.push(approval.clone());
        self.save(now)?;
        Ok(approval)
    }

    /// A second person on the approver list approves a pending request.
    pub fn approve(
        &mut self,
        id: &str,
        by: &str,
        who: &Approvers,
        now: i64,
    ) -> Result<Approval, ApprovalError> {
        check_person("by", by)?;
        if who.approvers.is_empty() && who.after_hours_owner.is_none() {
            return Err(ApprovalError::NoApprovers);
        }
        if !who.may_approve(by) {
            return Err(ApprovalError::NotApprover {
                who: by.to_owned(),
                approvers: who.listed(),
            });
        }
        self.expire(now);
        let a = self.find_mut(id)?;
        if a.status != ApprovalStatus::Requested {
            return Err(ApprovalError::NotPending {
                id: id.to_owned(),
                status: a.status,
            });
        }
        if a.requested_by == by {
            return Err(ApprovalError::SelfApproval(by.to_owned()));
        }
        a.status = ApprovalStatus::Approved;
        a.approved_by = Some(by.to_owned());
        a.approved_at = Some(rfc3339_ms(now));
        let done = a.clone();
        self.save(now)?;
        Ok(done)
    }

    /// Ends an approval (pending or approved) at once.
    pub fn revoke(&mut self, id: &str, by: &str, now: i64) -> Result<Approval, ApprovalError> {
        check_person("by", by)?;
        self.expire(now);
        let a = self.find_mut(id)?;
        if matches!(a.status, ApprovalStatus::Revoked | ApprovalStatus::Expired) {
            return Err(ApprovalError::Closed {
                id: id.to_owned(),
                status: a.status,
            });
        }
        a.status = ApprovalStatus::Revoked;
        a.revoked_by = Some(by.to_owned());
        a.revoked_at = Some(rfc3339_ms(now));
        let done = a.clone();
        self.save(now)?;
        Ok(done)
    }

    fn find_mut(&mut self, id: &str) -> Result<&mut Approval, ApprovalError> {
        self.approvals
            .iter_mut()
            .find(|a| a.id == id)
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))
    }

    fn expire(&mut self, now: i64) {
        for a in &mut self.approvals {
            let open = matches!(
                a.status,
                ApprovalStatus::Requested | ApprovalStatus::Approved
            );
            if open && now >= a.expires_ms() {
                a.status = ApprovalStatus::Expired;
            }
        }
    }

    fn save(&self, now: i64) -> Result<(), ApprovalError> {
        let file = RegistryFile {
            schema: APPROVALS_SCHEMA.to_owned(),
            updated_at: rfc3339_ms(now),
            approvals: self.approvals.clone(),
        };
        // unwrap: the registry is plain data and always serialises.
        let bytes = serde_json::to_vec_pretty(&file).unwrap();
        write_atomic(&self.path, &bytes).map_err(|source| ApprovalError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Whether `who` can be recorded as a person's name: 1–64 characters, not blank, no
/// control characters.
pub fn is_person_name(who: &str) -> bool {
    !who.trim().is_empty() && who.chars().count() <= 64 && !who.chars().any(char::is_control)
}

/// A person's name as recorded: 1–64 printable characters.
fn check_person(field: &'static str, who: &str) -> Result<(), ApprovalError> {
    let ok = is_person_name(who);
    ok.then_some(()).ok_or(ApprovalError::Invalid {
        field,
        message: "must name a person (1 to 64 printable characters)".to_owned(),
    })
}

fn to_allow_target(t: &OverrideTarget) -> Result<AllowTarget, ApprovalError> {
    let invalid = |message: String| ApprovalError::Invalid {
        field: "target",
        message,
    };
    match (&t.rule, &t.digest, &t.pattern) {
        (Some(rule), None, None) => {
            if !flotilla_guard::rule_ids().any(|r| r == rule) {
                return Err(invalid(format!("no guard rule is called {rule:?}")));
            }
            Ok(AllowTarget::Rule(rule.clone()))
        }
        (None, Some(d), None) => {
            let hex = d.len() == 8
                && d.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                return Err(invalid(format!(
                    "a digest is the 8 lowercase hex digits of a marker, got {d:?}"
                )));
            }
            Ok(AllowTarget::Digest(d.clone()))
        }
        (None, None, Some(p)) => AllowTarget::pattern(p)
            .map_err(|e| invalid(format!("the pattern is not a valid regex: {e}"))),
        _ => Err(invalid(
            "name exactly one of rule, digest or pattern".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Approvers {
        Approvers {
            approvers: vec!["alice".into(), "bob".into()],
            after_hours_owner: Some("oncall".into()),
        }
    }

    #[test]
    fn a_sponsor_signoff_names_objectives_and_metrics_and_needs_a_second_person() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::load(dir.path(), &Scope::default()).unwrap();
        let ask = |signoff: Option<Signoff>| ApprovalRequest {
            kind: ApprovalKind::SponsorSignoff,
            scope: None,
            target: None,
            signoff,
            reason: "autonomy upgrade".into(),
            requested_by: "alice".into(),
            expires_in_seconds: None,
        };
        let empty = Signoff {
            objectives: vec!["heal".into()],
            success_metrics: vec![],
        };
        let err = reg.request(ask(Some(empty)), 0).unwrap_err().to_string();
        assert!(err.starts_with("signoff: "), "{err}");
        assert!(reg.request(ask(None), 0).is_err());
        let full = Signoff {
            objectives: vec!["heal without people".into()],
            success_metrics: vec!["completion ≥ 95 %".into()],
        };
        let a = reg.request(ask(Some(full)), 0).unwrap();
        assert!(
            reg.signoff_in_force(1).is_none(),
            "requested is not in force"
        );
        assert!(matches!(
            reg.approve(&a.id, "alice", &who(), 1),
            Err(ApprovalError::SelfApproval(_))
        ));
        reg.approve(&a.id, "bob", &who(), 2).unwrap();
        assert_eq!(
            reg.signoff_in_force(3).map(|s| s.id.clone()),
            Some(a.id.clone())
        );
        reg.revoke(&a.id, "bob", 4).unwrap();
        assert!(reg.signoff_in_force(5).is_none());
    }

    fn override_req(by: &str, target: OverrideTarget) -> ApprovalRequest {
        ApprovalRequest {
            kind: ApprovalKind::GuardOverride,
            scope: Some("t-build-7".into()),
            target: Some(target),
            signoff: None,
            reason: "known test fixture".into(),
            requested_by: by.into(),
            expires_in_seconds: Some(3600),
        }
    }

    #[test]
    fn an_override_lives_from_approval_to_revocation_and_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::load(dir.path(), &Scope::default()).unwrap();
        let task = TaskId::parse("t-build-7").unwrap();
        let other = TaskId::parse("t-other").unwrap();
        let target = OverrideTarget {
            digest: Some("0a1b2c3d".into()),
            ..Default::default()
        };
        let now = 1_000_000;
        let a = reg.request(override_req("carol", target), now).unwrap();
        assert_eq!(a.status, ApprovalStatus::Requested);
        assert!(
            reg.allowlist(&task, now).is_empty(),
            "not in force before approval"
        );

        // Nobody approves their own request, and only listed approvers approve.
        assert!(matches!(
            reg.approve(&a.id, "mallory", &who(), now),
            Err(ApprovalError::NotApprover { .. })
        ));
        let mut carol_too = who();
        carol_too.approvers.push("carol".into());
        assert!(matches!(
            reg.approve(&a.id, "carol", &carol_too, now),
            Err(ApprovalError::SelfApproval(_))
        ));
        let approved = reg.approve(&a.id, "oncall", &who(), now + 1).unwrap();
        assert_eq!(approved.approved_by.as_deref(), Some("oncall"));
        let allow = reg.allowlist(&task, now + 2);
        assert_eq!(allow.allows("any", "0a1b2c3d", "v"), Some(a.id.as_str()));
        assert!(
            reg.allowlist(&other, now + 2).is_empty(),
            "scoped to its task"
        );

        // The file holds it; a reload sees the same.
        let mut again = Registry::load(dir.path(), &Scope::default()).unwrap();
        assert_eq!(again.list(now + 3), reg.list(now + 3));

        // Expiry ends it; so does revocation.
        assert!(reg.allowlist(&task, now + 3_600_000).is_empty());
        reg.revoke(&a.id, "bob", now + 4).unwrap();
        assert!(reg.allowlist(&task, now + 5).is_empty());
        assert!(matches!(
            reg.revoke(&a.id, "bob", now + 6),
            Err(ApprovalError::Closed { .. })
        ));
    }

    #[test]
    fn requests_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::load(dir.path(), &Scope::default()).unwrap();
        let bad = |t: OverrideTarget| {
            reg_err(
                &mut Registry::load(dir.path(), &Scope::default()).unwrap(),
                t,
            )
        };
        assert!(bad(OverrideTarget::default()).contains("exactly one"));
        assert!(bad(OverrideTarget {
            rule: Some("no-such-rule".into()),
            ..Default::default()
        })
        .contains("no guard rule"));
        assert!(bad(OverrideTarget {
            pattern: Some("(".into()),
            ..Default::default()
        })
        .contains("not a valid regex"));
        let mut forever = override_req(
            "carol",
            OverrideTarget {
                rule: Some("jwt".into()),
                ..Default::default()
            },
        );
        forever.expires_in_seconds = None;
        assert!(reg
            .request(forever, 0)
            .unwrap_err()
            .to_string()
            .contains("expires"));
        let policy = ApprovalRequest {
            kind: ApprovalKind::GuardPolicy,
            scope: None,
            target: None,
            signoff: None,
            reason: "rollout of enforce".into(),
            requested_by: "carol".into(),
            expires_in_seconds: None,
        };
        let p = reg.request(policy, 0).unwrap();
        assert!(reg.policy_in_force(1).is_none());
        reg.approve(&p.id, "alice", &who(), 1).unwrap();
        assert_eq!(reg.policy_in_force(2).map(|a| a.id.clone()), Some(p.id));
    }

    fn reg_err(reg: &mut Registry, target: OverrideTarget) -> String {
        reg.request(override_req("carol", target), 0)
            .unwrap_err()
            .to_string()
    }
}
