//! Bearer tokens and their scopes.
//!
//! * the **admin** token (random, or given by the operator) may do everything;
//! * an **agent** token may only connect an agent;
//! * an **observer** token may only follow the one handle it names.
//!
//! Agent and observer tokens are signed with HMAC-SHA256 under the server's signing key
//! (`<state-dir>/signing.key`), so they survive restarts and need no table.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{random_hex, to_hex, HandleId};

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Agent,
    Observer(HandleId),
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

/// The server's token material.
#[derive(Clone)]
pub struct Tokens {
    admin: String,
    key: Vec<u8>,
}

const PREFIX: &str = "fl1";

impl Tokens {
    pub fn new(admin: String, key: Vec<u8>) -> Self {
        Self { admin, key }
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

    pub fn mint_agent(&self) -> String {
        let payload = format!("{PREFIX}.agent");
        format!("{payload}.{}", self.sign(&payload))
    }

    pub fn mint_observer(&self, handle: &HandleId) -> String {
        let payload = format!("{PREFIX}.obs.{handle}");
        format!("{payload}.{}", self.sign(&payload))
    }

    /// The scope of a presented token, or `None` if it is not one of ours.
    pub fn verify(&self, token: &str) -> Option<Scope> {
        if constant_time_eq(token.as_bytes(), self.admin.as_bytes()) {
            return Some(Scope::Admin);
        }
        let (payload, sig) = token.rsplit_once('.')?;
        if !constant_time_eq(sig.as_bytes(), self.sign(payload).as_bytes()) {
            return None;
        }
        let mut parts = payload.splitn(3, '.');
        match (parts.next()?, parts.next()?, parts.next()) {
            (PREFIX, "agent", None) => Some(Scope::Agent),
            (PREFIX, "obs", Some(h)) => HandleId::parse(h).ok().map(Scope::Observer),
            _ => None,
        }
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
        assert_eq!(t.verify("admin-secret"), Some(Scope::Admin));
        assert_eq!(t.verify(&t.mint_agent()), Some(Scope::Agent));
        assert_eq!(t.verify(&t.mint_observer(&h)), Some(Scope::Observer(h)));
        let forged = t
            .mint_observer(&HandleId::parse("h-1").unwrap())
            .replace("h-1", "h-2");
        assert_eq!(t.verify(&forged), None);
        let other = Tokens::new("x".into(), b"other".to_vec());
        assert_eq!(t.verify(&other.mint_agent()), None);
        assert_eq!(t.verify(""), None);
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
        assert_eq!(b.verify(&a.mint_agent()), Some(Scope::Agent));
        let (c, _) = Tokens::load_or_create(dir.path(), Some("given".into())).unwrap();
        assert_eq!(c.verify("given"), Some(Scope::Admin));
    }
}
