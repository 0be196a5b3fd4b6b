//! The checkpoint signing key: Ed25519 through aws-lc-rs, kept as a PKCS#8 file
//! readable only by its owner, with the public key beside it (`<key>.pub`, hex).
//! Rotating means pointing the gateway at a new key file: later checkpoints carry
//! the new key's ID, and the verifier accepts every key it is given.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// Why a key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[error("audit key {path}: {message}")]
pub struct KeyError {
    path: PathBuf,
    message: String,
}

fn key_error(path: &Path, message: impl Into<String>) -> KeyError {
    KeyError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Puts `bytes` at `path` in a new file readable by its owner only, and returns what
/// `path` holds afterwards: `bytes`, or the key another process put there first. The
/// file is written whole and synced under a temporary name, then linked into place,
/// so that a crash never leaves a short key and an existing file is never replaced.
fn create_private(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| key_error(path, "no randomness"))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", hex(&random)));
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(bytes.to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map_err(|e| key_error(path, e.to_string()))
        }
        Err(e) => Err(key_error(path, e.to_string())),
    }
}

/// Warns when a key file others may read.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    if let Ok(m) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "an audit key file is readable by others than its owner: chmod 600 it");
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Bytes of a hex string; `None` if it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The ID of a public key: the first 16 hex characters of its SHA-256.
pub fn key_id(public_key: &[u8]) -> String {
    hex(&Sha256::digest(public_key))[..16].to_owned()
}

/// Whether `signature_hex` is a valid Ed25519 signature of `message` by
/// `public_key_hex`.
pub fn verify_signature(public_key_hex: &str, message: &[u8], signature_hex: &str) -> bool {
    let (Some(pk), Some(sig)) = (unhex(public_key_hex), unhex(signature_hex)) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(message, &sig)
        .is_ok()
}

/// Reads a public key written by [`SigningKey::load_or_create`] (hex, one line).
pub fn read_public_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e.to_string()))?;
    match unhex(text.trim()) {
        Some(k) if k.len() == 32 => Ok(k),
        _ => Err(key_error(
            path,
            "not an Ed25519 public key (64 hex characters)",
        )),
    }
}

/// The key that signs checkpoints. Its `Debug` shows only the key ID.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public_hex: String,
    id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("id", &self.id).finish()
    }
}

impl SigningKey {
    /// Loads the PKCS#8 key at `path`, or creates one there (mode 0600, in a new
    /// file: an existing file is never overwritten) and writes `<path>.pub`.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| key_error(path, "could not generate a key"))?;
                create_private(path, doc.as_ref())?
            }
            Err(e) => return Err(key_error(path, e.to_string())),
        };
        warn_if_shared(path);
        let pair = Ed25519KeyPair::from_pkcs8(&bytes)
            .map_err(|e| key_error(path, format!("not an Ed25519 PKCS#8 key: {e}")))?;
        let public = pair.public_key().as_ref().to_vec();
        let public_hex = hex(&public);
        let pub_path = public_key_path(path);
        if std::fs::read_to_string(&pub_path)
            .ok()
            .as_deref()
            .map(str::trim)
            != Some(public_hex.as_str())
        {
            std::fs::write(&pub_path, format!("{public_hex}\n"))
                .map_err(|e| key_error(&pub_path, e.to_string()))?;
        }
        Ok(Self {
            pair,
            id: key_id(&public),
            public_hex,
        })
    }

    /// The key's ID (see [`key_id`]).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The raw public key, hex.
    pub fn public_hex(&self) -> &str {
        &self.public_hex
    }

    /// Signs `message`; the signature in hex.
    pub fn sign(&self, message: &[u8]) -> String {
        hex(self.pair.sign(message).as_ref())
    }
}

/// The key under which call records hash their arguments (HMAC-SHA256). A plain
/// hash of a short argument — a PIN, a one-time code, a phone number — is undone by
/// trying every value; under a key kept beside the gateway, whoever reads the log
/// (a SIEM, its users) cannot, while the key's holder can still tell whether a record
/// is of given arguments (`palisade audit hash-arguments`). Its `Debug` shows only
/// the key's ID.
pub struct HashKey {
    key: aws_lc_rs::hmac::Key,
    id: String,
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashKey").field("id", &self.id).finish()
    }
}

/// Bytes of a hash key file.
const HASH_KEY_BYTES: usize = 32;

impl HashKey {
    /// Loads the 32-byte key at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|e| key_error(path, e.to_string()))?;
        Self::from_bytes(path, &bytes)
    }

    /// Loads the 32-byte key at `path`, or creates one there (mode 0600, in a new
    /// file: an existing file is never overwritten).
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut fresh = [0u8; HASH_KEY_BYTES];
                aws_lc_rs::rand::fill(&mut fresh)
                    .map_err(|_| key_error(path, "could not generate a key"))?;
                create_private(path, &fresh)?
            }
            Err(e) => return Err(key_error(path, e.to_string())),
        };
        warn_if_shared(path);
        Self::from_bytes(path, &bytes)
    }

    fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != HASH_KEY_BYTES {
            return Err(key_error(
                path,
                format!("not an argument hash key ({HASH_KEY_BYTES} bytes)"),
            ));
        }
        Ok(Self {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
            id: hex(&Sha256::digest(bytes))[..16].to_owned(),
        })
    }

    /// The key's ID: the first 16 hex characters of the SHA-256 of its bytes.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// HMAC-SHA256 of `message` under the key, hex.
    pub fn mac(&self, message: &[u8]) -> String {
        hex(aws_lc_rs::hmac::sign(&self.key, message).as_ref())
    }
}

/// Where the public key of the key at `path` is written: `<path>.pub`.
pub fn public_key_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}
