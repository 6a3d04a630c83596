//! Bearer tokens and their scopes.
//!
//! * the **admin** token (random, or given by the operator) may do everything;
//! * an **agent** token may only connect an agent, and only as the instance it names
//!   (a token minted for no instance connects any, as tokens before version 2 did);
//! * an **observer** token may only follow the one handle it names.
//!
//! Agent and observer tokens are signed with HMAC-SHA256 under the server's signing key
//! (`<state-dir>/signing.key`), so they survive restarts and need no table. Version 2
//! (`fl2.<kind>.<subject>.<id>.<expires>.<sig>`) carries an id and an expiry (unix
//! seconds, 0 for none): a token expires on its own and can be revoked by its id, one by
//! one (the revoked ids are kept in the store). Version 1 tokens (`fl1.…`) are still
//! accepted; they neither expire nor can be revoked except all at once, by replacing the
//! signing key.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{random_hex, rfc3339_ms, to_hex, HandleId, InstanceId};

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Admin,
    /// Connect an agent: as this instance only, or (`None`) as any.
    Agent(Option<InstanceId>),
    Observer(HandleId),
}

/// Why a presented token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("missing or invalid bearer token")]
    Unknown,
    #[error("token {id} expired at {at}")]
    Expired { id: String, at: String },
    #[error("token {id} was revoked at {at}: {reason}")]
    Revoked {
        id: String,
        at: String,
        reason: String,
    },
}

/// Errors loading or creating token material.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no token")]
    Empty { path: String },
}

/// How long the tokens the server mints are valid (`[tokens]` in flotilla.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSettings {
    /// Observer tokens given with an accepted task (0: no expiry).
    pub observer_ttl_s: u64,
    /// Agent tokens minted for remote agents, unless the request says otherwise.
    pub agent_ttl_s: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            observer_ttl_s: 7 * 24 * 3600,
            agent_ttl_s: 30 * 24 * 3600,
        }
    }
}

/// The expiry (unix seconds) of a token valid for `ttl_s` from now; 0 when `ttl_s` is 0.
pub fn expiry(ttl_s: u64) -> u64 {
    if ttl_s == 0 {
        return 0;
    }
    (crate::domain::now_ms() / 1000).max(0) as u64 + ttl_s
}

/// A revoked token id: when, and why.
pub type Revocation = (i64, String);

/// The server's token material, and the ids revoked so far.
#[derive(Clone)]
pub struct Tokens {
    admin: String,
    key: Vec<u8>,
    revoked: Arc<RwLock<HashMap<String, Revocation>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { .. }")
    }
}

const V1: &str = "fl1";
const V2: &str = "fl2";

/// The id of a version 2 token (its fourth field), read without checking it: what
/// `flotilla tokens revoke` names.
pub fn token_id(token: &str) -> Option<&str> {
    let mut parts = token.split('.');
    (parts.next()? == V2).then_some(())?;
    parts.nth(2)
}

impl Tokens {
    pub fn new(admin: String, key: Vec<u8>) -> Self {
        Self {
            admin,
            key,
            revoked: Arc::default(),
        }
    }

    /// Loads or creates `admin.token` and `signing.key` under `state_dir` (mode 0600).
    /// `admin_override` (from `FLOTILLA_TOKEN`) replaces the stored admin token.
    /// Returns the tokens and whether a new admin token was generated.
    pub fn load_or_create(
        state_dir: &Path,
        admin_override: Option<String>,
    ) -> Result<(Self, bool), TokenError> {
        let key = read_or_create(&state_dir.join("signing.key"), || random_hex(32))?;
        let (admin, created) = match admin_override {
            Some(t) => (t, false),
            None => {
                let path = state_dir.join("admin.token");
                let existed = path.exists();
                let t = read_or_create(&path, || format!("fla_{}", random_hex(24)))?;
                (t, !existed)
            }
        };
        Ok((Self::new(admin, key.into_bytes()), created))
    }

    pub fn admin(&self) -> &str {
        &self.admin
    }

    fn sign(&self, payload: &str) -> String {
        // unwrap: HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).unwrap();
        mac.update(payload.as_bytes());
        to_hex(&mac.finalize().into_bytes())
    }

    fn mint(&self, kind: &str, subject: &str, expires_s: u64) -> String {
        let payload = format!("{V2}.{kind}.{subject}.{}.{expires_s}", random_hex(8));
        format!("{payload}.{}", self.sign(&payload))
    }

    /// An agent token for `instance` (any instance when `None`), valid until
    /// `expires_s` (unix seconds; 0 for no expiry).
    pub fn mint_agent(&self, instance: Option<&InstanceId>, expires_s: u64) -> String {
        self.mint("agent", instance.map_or("*", |i| i.as_str()), expires_s)
    }

    /// An observer token for `handle`, valid until `expires_s` (0 for no expiry).
    pub fn mint_observer(&self, handle: &HandleId, expires_s: u64) -> String {
        self.mint("obs", handle.as_str(), expires_s)
    }

    /// Marks the token with this id revoked from `at_ms`, for `reason`.
    pub fn revoke(&self, id: &str, at_ms: i64, reason: String) {
        let mut revoked = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        revoked.insert(id.to_owned(), (at_ms, reason));
    }

    /// The scope of a presented token, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Scope, Denied> {
        self.verify_at(token, crate::domain::now_ms() / 1000)
    }

    /// [`verify`](Self::verify) at `now_s` (unix seconds).
    pub fn verify_at(&self, token: &str, now_s: i64) -> Result<Scope, Denied> {
        if constant_time_eq(token.as_bytes(), self.admin.as_bytes()) {
            return Ok(Scope::Admin);
        }
        let (payload, sig) = token.rsplit_once('.').ok_or(Denied::Unknown)?;
        if !constant_time_eq(sig.as_bytes(), self.sign(payload).as_bytes()) {
            return Err(Denied::Unknown);
        }
        let fields: Vec<&str> = payload.split('.').collect();
        let (kind, subject) = match fields.as_slice() {
            [V1, "agent"] => return Ok(Scope::Agent(None)),
            [V1, "obs", h] => return scope("obs", h),
            [V2, kind, subject, id, expires] => {
                let expires: i64 = expires.parse().map_err(|_| Denied::Unknown)?;
                if expires != 0 && now_s >= expires {
                    return Err(Denied::Expired {
                        id: (*id).to_owned(),
                        at: rfc3339_ms(expires * 1000),
                    });
                }
                let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
                if let Some((at, reason)) = revoked.get(*id) {
                    return Err(Denied::Revoked {
                        id: (*id).to_owned(),
                        at: rfc3339_ms(*at),
                        reason: reason.clone(),
                    });
                }
                (*kind, *subject)
            }
            _ => return Err(Denied::Unknown),
        };
        scope(kind, subject)
    }
}

fn scope(kind: &str, subject: &str) -> Result<Scope, Denied> {
    match (kind, subject) {
        ("agent", "*") => Ok(Scope::Agent(None)),
        ("agent", i) => InstanceId::parse(i)
            .map(|i| Scope::Agent(Some(i)))
            .map_err(|_| Denied::Unknown),
        ("obs", h) => HandleId::parse(h)
            .map(Scope::Observer)
            .map_err(|_| Denied::Unknown),
        _ => Err(Denied::Unknown),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String, TokenError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display().to_string();
    let io = |source| TokenError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let t = s.trim().to_owned();
            if t.is_empty() {
                return Err(TokenError::Empty { path: shown });
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = make();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(format!("{value}\n").as_bytes()).map_err(io)?;
            Ok(value)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn scopes_are_what_was_minted_and_forgeries_fail() {
        let t = Tokens::new("admin-secret".into(), b"k".to_vec());
        let h = HandleId::parse("h-1").unwrap();
        let i = InstanceId::parse("edge-1").unwrap();
        assert_eq!(t.verify("admin-secret"), Ok(Scope::Admin));
        assert_eq!(t.verify(&t.mint_agent(None, 0)), Ok(Scope::Agent(None)));
        assert_eq!(
            t.verify(&t.mint_agent(Some(&i), 0)),
            Ok(Scope::Agent(Some(i)))
        );
        assert_eq!(t.verify(&t.mint_observer(&h, 0)), Ok(Scope::Observer(h)));
        let forged = t
            .mint_observer(&HandleId::parse("h-1").unwrap(), 0)
            .replace("h-1", "h-2");
        assert_eq!(t.verify(&forged), Err(Denied::Unknown));
        let other = Tokens::new("x".into(), b"other".to_vec());
        assert_eq!(t.verify(&other.mint_agent(None, 0)), Err(Denied::Unknown));
        assert_eq!(t.verify(""), Err(Denied::Unknown));
    }

    #[test]
    fn tokens_expire_and_are_revoked_one_by_one() {
        let t = Tokens::new("admin-secret".into(), b"k".to_vec());
        let h = HandleId::parse("h-1").unwrap();
        let short = t.mint_observer(&h, 1_000);
        assert!(t.verify_at(&short, 999).is_ok());
        let Err(Denied::Expired { at, .. }) = t.verify_at(&short, 1_000) else {
            panic!("not expired at its expiry");
        };
        assert_eq!(at, "1970-01-01T00:16:40.000Z");
        let a = t.mint_observer(&h, 0);
        let b = t.mint_observer(&h, 0);
        let id = token_id(&a).unwrap().to_owned();
        assert_ne!(Some(id.as_str()), token_id(&b));
        t.revoke(&id, 5_000, "leaked in a log".into());
        let Err(Denied::Revoked { reason, .. }) = t.verify(&a) else {
            panic!("a revoked token is accepted");
        };
        assert_eq!(reason, "leaked in a log");
        assert!(t.verify(&b).is_ok(), "revoking one token leaves the others");
        // A version 1 token still reads.
        let v1 = format!("fl1.obs.h-1.{}", t.sign("fl1.obs.h-1"));
        assert_eq!(t.verify(&v1), Ok(Scope::Observer(h)));
    }

    #[test]
    fn token_files_are_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = Tokens::load_or_create(dir.path(), None).unwrap();
        assert!(created);
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, created) = Tokens::load_or_create(dir.path(), None).unwrap();
        assert!(!created);
        assert_eq!(a.admin(), b.admin());
        assert_eq!(b.verify(&a.mint_agent(None, 0)), Ok(Scope::Agent(None)));
        let (c, _) = Tokens::load_or_create(dir.path(), Some("given".into())).unwrap();
        assert_eq!(c.verify("given"), Ok(Scope::Admin));
    }
}
