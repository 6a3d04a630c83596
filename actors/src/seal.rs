//! Sealing of secret values at rest. A task's secret env values are stored sealed
//! (XChaCha20-Poly1305, a random 24-byte nonce per value, the variable's name as
//! associated data) and opened only to build an assignment for an agent.
//!
//! The keys live in `<state-dir>/seal.key` (0600), one hex key per line: the first seals,
//! every line opens. Rotation (`flotilla seal rotate`, server stopped) puts a new key
//! first, re-seals every stored value with it in one transaction, then drops the others.
//!
//! A sealed value reads `sealed:v1:<key id>:<digest>:<base64 nonce+ciphertext>`, where
//! the key id is 8 hex digits of the key's SHA-256 and the digest is the one the guard's
//! markers show for the plain value, so a manifest's marker does not change.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::domain::to_hex;

const PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line} is not a key of 64 hex digits")]
    BadKey { path: PathBuf, line: usize },
    #[error("{path} holds no key")]
    NoKey { path: PathBuf },
    #[error("a value is sealed with key {0}, which seal.key does not hold")]
    UnknownKey(String),
    #[error("a sealed value is damaged or was sealed for another variable")]
    Damaged,
    #[error("the system's random source failed: {0}")]
    Random(String),
    #[error("a value too long to seal")]
    TooLong,
}

/// One key and its id.
#[derive(Clone)]
struct SealKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    fn new(bytes: &[u8; KEY_LEN]) -> Self {
        let id = to_hex(&Sha256::digest(bytes)[..4]);
        Self {
            id,
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// The keys of a state dir: the first seals, all open.
#[derive(Clone)]
pub struct Sealer {
    keys: Vec<SealKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Sealer").field("keys", &ids).finish()
    }
}

/// The key file of a state dir.
pub fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("seal.key")
}

impl Sealer {
    /// Reads the keys of `state_dir`, creating a first key (0600) if there is no file.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, SealError> {
        let path = key_path(state_dir);
        if !path.exists() {
            write_keys(&path, &[random_key()?])?;
        }
        Self::load(&path)
    }

    /// Reads the keys in `path`.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        let text = std::fs::read_to_string(path).map_err(|source| SealError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bytes = unhex(line)
                .and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok())
                .ok_or_else(|| SealError::BadKey {
                    path: path.to_owned(),
                    line: n + 1,
                })?;
            keys.push(SealKey::new(&bytes));
        }
        if keys.is_empty() {
            return Err(SealError::NoKey {
                path: path.to_owned(),
            });
        }
        Ok(Self { keys })
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// True if `value` is sealed with a key other than the current one (or not sealed).
    pub fn needs_reseal(&self, value: &str) -> bool {
        key_id(value) != Some(self.current_id())
    }

    /// `value` sealed for the variable `name`.
    pub fn seal(&self, name: &str, value: &str) -> Result<String, SealError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let sealed = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SealError::TooLong)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}{}:{}:{}",
            key.id,
            flotilla_guard::stream::digest8(value),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    /// The plain value of `value`: opened if sealed, as it is otherwise (values stored
    /// before sealing existed, and variables that are not secret).
    pub fn open<'a>(&self, name: &str, value: &'a str) -> Result<Cow<'a, str>, SealError> {
        let Some(rest) = value.strip_prefix(PREFIX) else {
            return Ok(Cow::Borrowed(value));
        };
        let mut parts = rest.splitn(3, ':');
        let (Some(id), Some(_digest), Some(blob)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Damaged);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let blob = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(blob)
            .map_err(|_| SealError::Damaged)?;
        if blob.len() < NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain)
            .map(Cow::Owned)
            .map_err(|_| SealError::Damaged)
    }
}

/// True if `value` is a sealed value.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// The marker digest a sealed value carries (that of its plain value).
pub fn sealed_digest(value: &str) -> Option<&str> {
    value.strip_prefix(PREFIX)?.split(':').nth(1)
}

fn key_id(value: &str) -> Option<&str> {
    value.strip_prefix(PREFIX)?.split(':').next()
}

/// Puts a new key first in `state_dir`'s key file, keeping the others to open older
/// values; returns the new key's id.
pub fn add_key(state_dir: &Path) -> Result<String, SealError> {
    let path = key_path(state_dir);
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let new = random_key()?;
    let mut keys = vec![new.clone()];
    keys.extend(
        old.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from),
    );
    write_keys(&path, &keys)?;
    Ok(Sealer::load(&path)?.current_id().to_owned())
}

/// Keeps only the first (sealing) key in `state_dir`'s key file.
pub fn drop_old_keys(state_dir: &Path) -> Result<(), SealError> {
    let path = key_path(state_dir);
    let text = std::fs::read_to_string(&path).map_err(|source| SealError::Io {
        path: path.clone(),
        source,
    })?;
    let first: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(1)
        .map(String::from)
        .collect();
    write_keys(&path, &first)
}

fn random_key() -> Result<String, SealError> {
    let mut bytes = [0u8; KEY_LEN];
    getrandom::getrandom(&mut bytes).map_err(|e| SealError::Random(e.to_string()))?;
    Ok(to_hex(&bytes))
}

/// Writes the key lines whole and 0600 (a temp file beside, then a rename).
fn write_keys(path: &Path, keys: &[String]) -> Result<(), SealError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| SealError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    for k in keys {
        writeln!(f, "{k}").map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::load_or_create(dir.path()).unwrap();
        let sealed = sealer.seal("API_TOKEN", "hunter2-secret").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            sealer.seal("API_TOKEN", "hunter2-secret").unwrap(),
            "fresh nonce"
        );
        assert_eq!(sealer.open("API_TOKEN", &sealed).unwrap(), "hunter2-secret");
        assert_eq!(
            sealed_digest(&sealed),
            Some(flotilla_guard::stream::digest8("hunter2-secret").as_str())
        );
        // Bound to the variable: moved to another name, it does not open.
        assert!(matches!(
            sealer.open("OTHER", &sealed),
            Err(SealError::Damaged)
        ));
        // A flipped character is detected, not opened to garbage.
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(matches!(
            sealer.open("API_TOKEN", &flipped),
            Err(SealError::Damaged)
        ));
        // Plain values pass through.
        assert_eq!(sealer.open("X", "plain").unwrap(), "plain");
        // The key file is private.
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(key_path(dir.path())).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn after_rotation_old_values_open_until_the_old_key_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = Sealer::load_or_create(dir.path()).unwrap();
        let old = first.seal("K", "v1").unwrap();
        let new_id = add_key(dir.path()).unwrap();
        let both = Sealer::load_or_create(dir.path()).unwrap();
        assert_eq!(both.current_id(), new_id);
        assert_ne!(new_id, first.current_id());
        assert_eq!(both.open("K", &old).unwrap(), "v1");
        assert!(both.needs_reseal(&old));
        let resealed = both.seal("K", &both.open("K", &old).unwrap()).unwrap();
        assert!(!both.needs_reseal(&resealed));
        drop_old_keys(dir.path()).unwrap();
        let last = Sealer::load_or_create(dir.path()).unwrap();
        assert_eq!(last.open("K", &resealed).unwrap(), "v1");
        assert!(
            matches!(last.open("K", &old), Err(SealError::UnknownKey(id)) if id == first.current_id())
        );
    }

    #[test]
    fn a_damaged_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(key_path(dir.path()), "not-hex\n").unwrap();
        let err = Sealer::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 1 is not a key"), "{err}");
    }
}
