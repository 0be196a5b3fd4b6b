//! The credential vault: secrets the gateway presents to upstreams, encrypted at rest.
//!
//! Each secret is sealed with AES-256-GCM under a key-encryption key (KEK) that lives
//! outside the database (a file or an environment variable), with a fresh random
//! nonce, and with the secret's name as associated data, so a ciphertext moved to
//! another name does not open. Every record names the KEK that sealed it (the first
//! 8 bytes of the KEK's SHA-256), so a vault can hold several KEKs during a rotation:
//! add the new key, re-encrypt (`rotate`), then drop the old key — no downtime.
//! Plaintexts are returned as [`Secret`], which zeroes its memory when dropped and
//! never prints.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{SqliteStore, StoreError};

/// A plaintext secret; zeroed on drop, never printed.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes, for the one place that uses them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A key-encryption key.
pub struct Kek {
    id: String,
    key: RandomizedNonceKey,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

/// Why a vault operation failed; never carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The key is not 32 bytes written as 64 hex characters.
    #[error("a vault key must be 32 bytes, as 64 hex characters")]
    BadKey,
    /// No configured key sealed this record.
    #[error("secret `{0}` was sealed with a key that is not configured")]
    UnknownKey(String),
    /// The ciphertext does not open (tampered, moved or a wrong key).
    #[error("secret `{0}` does not decrypt")]
    Corrupt(String),
    /// No such secret.
    #[error("no secret named `{0}`")]
    Missing(String),
    /// Encryption failed.
    #[error("encryption failed")]
    Crypto,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for VaultError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl Kek {
    /// A KEK from its text form: 64 hex characters (whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let hex: Zeroizing<String> =
            Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(VaultError::BadKey);
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or(VaultError::BadKey)?, 16)
                .map_err(|_| VaultError::BadKey)?;
        }
        let id: String = Sha256::digest(&bytes[..])[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key =
            RandomizedNonceKey::new(&AES_256_GCM, &bytes[..]).map_err(|_| VaultError::BadKey)?;
        Ok(Self { id, key })
    }

    /// A new random KEK in its text form (for `palisade secrets new-key`).
    pub fn generate_text() -> Result<Zeroizing<String>, VaultError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut bytes[..]).map_err(|_| VaultError::Crypto)?;
        Ok(Zeroizing::new(
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    /// Its identifier (not secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn seal(&self, name: &str, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), VaultError> {
        let mut buf = plain.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(name.as_bytes()), &mut buf)
            .map_err(|_| VaultError::Crypto)?;
        Ok((nonce.as_ref().to_vec(), buf))
    }

    fn open(&self, name: &str, nonce: &[u8], sealed: &[u8]) -> Result<Secret, VaultError> {
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| VaultError::Corrupt(name.into()))?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut buf)
            .map_err(|_| VaultError::Corrupt(name.into()))?;
        Ok(Secret::new(plain.to_vec()))
    }
}

/// A listed secret: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// The KEK that sealed it.
    pub key_id: String,
    /// Unix seconds of the last write.
    pub updated_at: i64,
}

/// The vault over the embedded store, with the current KEK first and any previous
/// ones after it (for reading during a rotation).
#[derive(Debug)]
pub struct Vault {
    store: SqliteStore,
    keys: Vec<Kek>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Vault {
    /// A vault sealing with `keys[0]` and opening with any of `keys`.
    pub fn new(store: SqliteStore, keys: Vec<Kek>) -> Result<Self, VaultError> {
        if keys.is_empty() {
            return Err(VaultError::BadKey);
        }
        Ok(Self { store, keys })
    }

    /// Stores (or replaces) a secret, sealed with the current key.
    pub async fn set(&self, name: &str, value: &Secret) -> Result<(), VaultError> {
        let kek = &self.keys[0];
        let (nonce, sealed) = kek.seal(name, value.expose())?;
        sqlx::query(
            "INSERT INTO secrets (name, key_id, nonce, ciphertext, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(kek.id())
        .bind(nonce)
        .bind(sealed)
        .bind(now())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Opens a secret.
    pub async fn get(&self, name: &str) -> Result<Secret, VaultError> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT key_id, nonce, ciphertext FROM secrets WHERE name = ?")
                .bind(name)
                .fetch_optional(self.store.pool())
                .await?;
        let (key_id, nonce, sealed) = row.ok_or_else(|| VaultError::Missing(name.into()))?;
        let kek = self
            .keys
            .iter()
            .find(|k| k.id() == key_id)
            .ok_or_else(|| VaultError::UnknownKey(name.into()))?;
        kek.open(name, &nonce, &sealed)
    }

    /// Names, key IDs and times; never values.
    pub async fn list(&self) -> Result<Vec<SecretInfo>, VaultError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, key_id, updated_at FROM secrets ORDER BY name")
                .fetch_all(self.store.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|(name, key_id, updated_at)| SecretInfo {
                name,
                key_id,
                updated_at,
            })
            .collect())
    }

    /// Re-seals every secret with the current key, in one transaction; returns how
    /// many changed. Readers holding the old key keep working until it is dropped.
    pub async fn rotate(&self) -> Result<usize, VaultError> {
        let current = &self.keys[0];
        let mut tx = self.store.pool().begin().await?;
        let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT name, key_id, nonce, ciphertext FROM secrets")
                .fetch_all(&mut *tx)
                .await?;
        let mut changed = 0;
        for (name, key_id, nonce, sealed) in rows {
            if key_id == current.id() {
                continue;
            }
            let kek = self
                .keys
                .iter()
                .find(|k| k.id() == key_id)
                .ok_or_else(|| VaultError::UnknownKey(name.clone()))?;
            let plain = kek.open(&name, &nonce, &sealed)?;
            let (nonce, sealed) = current.seal(&name, plain.expose())?;
            sqlx::query("UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ?, updated_at = ? WHERE name = ?")
                .bind(current.id())
                .bind(nonce)
                .bind(sealed)
                .bind(now())
                .bind(&name)
                .execute(&mut *tx)
                .await?;
            changed += 1;
        }
        tx.commit().await?;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    async fn store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "palisade-vault-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        (SqliteStore::open(&dir).await.unwrap(), dir)
    }

    fn rand_suffix() -> u64 {
        let mut b = [0u8; 8];
        aws_lc_rs::rand::fill(&mut b).unwrap();
        u64::from_le_bytes(b)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn secrets_round_trip_and_are_sealed_at_rest() {
        let (s, dir) = store().await;
        let v = Vault::new(s.clone(), vec![Kek::parse(K1).unwrap()]).unwrap();
        v.set("api", &Secret::new(b"hunter2-very-secret".to_vec()))
            .await
            .unwrap();
        assert_eq!(v.get("api").await.unwrap().expose(), b"hunter2-very-secret");
        assert!(matches!(v.get("nope").await, Err(VaultError::Missing(_))));
        let listed = v.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(!format!("{listed:?}").contains("hunter2"));
        assert!(!format!("{:?}", v.get("api").await.unwrap()).contains("hunter2"));
        // Nothing readable on disk.
        s.close().await;
        for f in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            assert!(!bytes.windows(7).any(|w| w == b"hunter2"));
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn wrong_keys_and_moved_ciphertexts_do_not_open() {
        let (s, dir) = store().await;
        let v = Vault::new(s.clone(), vec![Kek::parse(K1).unwrap()]).unwrap();
        v.set("a", &Secret::new(b"alpha".to_vec())).await.unwrap();
        v.set("b", &Secret::new(b"bravo".to_vec())).await.unwrap();
        // Move b's ciphertext under a's name: the AAD (the name) refuses it.
        sqlx::query("UPDATE secrets SET nonce = (SELECT nonce FROM secrets WHERE name = 'b'), ciphertext = (SELECT ciphertext FROM secrets WHERE name = 'b') WHERE name = 'a'")
            .execute(s.pool())
            .await
            .unwrap();
        assert!(matches!(v.get("a").await, Err(VaultError::Corrupt(_))));
        let other = Kek::generate_text().unwrap();
        let v2 = Vault::new(s.clone(), vec![Kek::parse(&other).unwrap()]).unwrap();
        assert!(matches!(v2.get("b").await, Err(VaultError::UnknownKey(_))));
        assert!(Kek::parse("abcd").is_err());
        assert!(
            Kek::parse(&format!("+f{}", &K1[2..])).is_err(),
            "signs are not hex"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn rotation_re_seals_without_losing_readers() {
        let (s, dir) = store().await;
        let old = Vault::new(s.clone(), vec![Kek::parse(K1).unwrap()]).unwrap();
        old.set("api", &Secret::new(b"v1".to_vec())).await.unwrap();
        let new_text = Kek::generate_text().unwrap();
        // During the rotation: the new key first, the old one still readable.
        let both = Vault::new(
            s.clone(),
            vec![Kek::parse(&new_text).unwrap(), Kek::parse(K1).unwrap()],
        )
        .unwrap();
        assert_eq!(both.get("api").await.unwrap().expose(), b"v1");
        assert_eq!(both.rotate().await.unwrap(), 1);
        assert_eq!(both.rotate().await.unwrap(), 0, "idempotent");
        // After: the new key alone opens everything; the old alone opens nothing.
        let new_only = Vault::new(s.clone(), vec![Kek::parse(&new_text).unwrap()]).unwrap();
        assert_eq!(new_only.get("api").await.unwrap().expose(), b"v1");
        assert!(old.get("api").await.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
