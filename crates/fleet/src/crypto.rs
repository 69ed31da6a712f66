//! Credentials sealed with the operator's key, so no password travels in the clear on the queue.
//!
//! XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`): 256-bit key, a random 192-bit nonce per
//! seal (random nonces are safe at that size), 128-bit tag. A sealed value is text:
//!
//! ```text
//! imapfleet:v1:<key id>:<base64url(nonce || ciphertext || tag)>
//! ```
//!
//! The key id (first 4 bytes of SHA-256 of the key, hex) is not secret; it makes "sealed with
//! another key" a clear error rather than a bare authentication failure. The `imapfleet:v1:<key id>:`
//! prefix is authenticated as associated data, so it cannot be swapped either.
//!
//! The key comes from `IMAPFLEET_SECRET_KEY` (64 hex digits, or base64 of 32 bytes) or a key file
//! (`IMAPFLEET_SECRET_KEY_FILE`, or a path given by the caller) holding the same text or 32 raw bytes.
//! `Debug` shows the key id only; the key bytes are wiped on drop.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use imapfleet_imap::Secret;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Environment variable holding the key (hex or base64).
pub const SECRET_KEY_ENV: &str = "IMAPFLEET_SECRET_KEY";
/// Environment variable naming a key file.
pub const SECRET_KEY_FILE_ENV: &str = "IMAPFLEET_SECRET_KEY_FILE";

const PREFIX: &str = "imapfleet:v1:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// No key, or a key that is not 32 bytes of hex/base64.
    #[error("secret key: {0}")]
    Key(String),
    /// Not a sealed value of a known version.
    #[error("sealed credential: {0}")]
    Format(String),
    /// Sealed with another key than this one.
    #[error("sealed credential was made with key {sealed_with}, this process has key {ours} (check {SECRET_KEY_ENV})")]
    OtherKey { sealed_with: String, ours: String },
    /// Same key id, but the tag does not verify: altered or truncated.
    #[error(
        "sealed credential does not open: altered, truncated, or a different key with the same id"
    )]
    Tampered,
    #[error("no randomness from the OS: {0}")]
    Random(String),
}

/// The operator's key.
pub struct SecretKey {
    key: Zeroizing<[u8; 32]>,
    cipher: XChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Clone for SecretKey {
    fn clone(&self) -> Self {
        SecretKey::from_bytes(*self.key)
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let key = Zeroizing::new(bytes);
        let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key));
        let digest = Sha256::digest(key.as_slice());
        let id = hex::encode(&digest[..4]);
        SecretKey { key, cipher, id }
    }

    /// A new random key (for `imapfleet keygen`-like tooling and tests).
    pub fn generate() -> Result<Self, CryptoError> {
        let mut b = Zeroizing::new([0u8; 32]);
        getrandom::fill(b.as_mut_slice()).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(Self::from_bytes(*b))
    }

    /// Parse 64 hex digits or base64 (standard or URL-safe, padded or not) of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(CryptoError::Key("empty".into()));
        }
        let mut bytes = Zeroizing::new(Vec::new());
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            *bytes = hex::decode(t).map_err(|_| CryptoError::Key("bad hex".into()))?;
        } else {
            let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|e| e.decode(t).ok());
            match decoded {
                Some(d) => *bytes = d,
                None => {
                    return Err(CryptoError::Key(
                        "neither 64 hex digits nor base64 of 32 bytes".into(),
                    ))
                }
            }
        }
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            CryptoError::Key(format!(
                "{} bytes, need 32 (generate one with: head -c 32 /dev/urandom | base64)",
                bytes.len()
            ))
        })?;
        Ok(Self::from_bytes(arr))
    }

    /// Read a key file: the same text as [`SecretKey::parse`], or exactly 32 raw bytes.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let data = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| CryptoError::Key(format!("key file {}: {e}", path.display())))?,
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "key file is readable by group or others; chmod 600 it");
                }
            }
        }
        if data.len() == 32 {
            if let Ok(text) = std::str::from_utf8(&data) {
                if let Ok(k) = Self::parse(text) {
                    return Ok(k);
                }
            }
            let arr: [u8; 32] = data
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::Key("key file: 32 bytes expected".into()))?;
            return Ok(Self::from_bytes(arr));
        }
        let text = std::str::from_utf8(&data).map_err(|_| {
            CryptoError::Key(format!(
                "key file {}: not text and not 32 raw bytes",
                path.display()
            ))
        })?;
        Self::parse(text).map_err(|e| match e {
            CryptoError::Key(m) => CryptoError::Key(format!("key file {}: {m}", path.display())),
            other => other,
        })
    }

    /// The key from `IMAPFLEET_SECRET_KEY`, else from the file in `IMAPFLEET_SECRET_KEY_FILE`, else
    /// from `file` when given; an error when none is set.
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Self, CryptoError> {
        if let Ok(v) = std::env::var(SECRET_KEY_ENV) {
            if !v.trim().is_empty() {
                return Self::parse(&v)
                    .map_err(|e| CryptoError::Key(format!("{SECRET_KEY_ENV}: {e}")));
            }
        }
        if let Ok(p) = std::env::var(SECRET_KEY_FILE_ENV) {
            if !p.trim().is_empty() {
                return Self::from_file(Path::new(p.trim()));
            }
        }
        match file {
            Some(p) => Self::from_file(p),
            None => Err(CryptoError::Key(format!(
                "none given: set {SECRET_KEY_ENV} (32 bytes, hex or base64) or {SECRET_KEY_FILE_ENV}"
            ))),
        }
    }

    /// Short public id of the key (first 4 bytes of its SHA-256, hex).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as base64, for writing a key file. Handle the result as the secret it is.
    pub fn export_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.key.as_slice()))
    }

    fn header(&self) -> String {
        format!("{PREFIX}{}:", self.id)
    }

    /// Seal `plaintext`: `imapfleet:v1:<key id>:<base64url(nonce||ciphertext||tag)>`.
    pub fn seal(&self, plaintext: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
        let header = self.header();
        let ct = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: header.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Format("plaintext too long".into()))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Ok(format!("{header}{}", URL_SAFE_NO_PAD.encode(&blob)))
    }

    /// Open a value made by [`SecretKey::seal`].
    pub fn open(&self, sealed: &str) -> Result<Secret, CryptoError> {
        let rest = sealed.trim().strip_prefix(PREFIX).ok_or_else(|| {
            if sealed.starts_with("imapfleet:") {
                CryptoError::Format("unknown version (this build reads imapfleet:v1)".into())
            } else {
                CryptoError::Format("not a sealed credential (no imapfleet:v1: prefix)".into())
            }
        })?;
        let (kid, b64) = rest
            .split_once(':')
            .ok_or_else(|| CryptoError::Format("no key id".into()))?;
        if kid != self.id {
            return Err(CryptoError::OtherKey {
                sealed_with: kid.chars().take(16).collect(),
                ours: self.id.clone(),
            });
        }
        let blob = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| CryptoError::Format("not base64url".into()))?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Format("too short".into()));
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| CryptoError::Format("nonce".into()))?;
        let header = self.header();
        let mut plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ct,
                    aad: header.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Tampered)?;
        match String::from_utf8(std::mem::take(&mut plain)) {
            Ok(s) => Ok(Secret::new(s)),
            Err(e) => {
                let mut b = e.into_bytes();
                b.zeroize();
                Err(CryptoError::Format("plaintext is not UTF-8".into()))
            }
        }
    }
}

impl crate::task::Sealer for SecretKey {
    fn seal(&self, plain: &Secret) -> Result<String, crate::task::TaskError> {
        SecretKey::seal(self, plain.expose())
            .map_err(|e| crate::task::TaskError::Seal(e.to_string()))
    }

    fn open(&self, sealed: &str) -> Result<Secret, crate::task::TaskError> {
        SecretKey::open(self, sealed).map_err(|e| crate::task::TaskError::Seal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn round_trip_and_fresh_nonce_each_time() {
        let k = SecretKey::parse(HEX).unwrap();
        let pw = "quo\"te\\back {5} (x) pass word*§ü";
        let a = k.seal(pw).unwrap();
        let b = k.seal(pw).unwrap();
        assert_ne!(a, b, "random nonce");
        assert!(a.starts_with(&format!("imapfleet:v1:{}:", k.id())));
        assert!(!a.contains("pass word"));
        assert_eq!(k.open(&a).unwrap().expose(), pw);
        assert_eq!(k.open(&b).unwrap().expose(), pw);
        assert_eq!(k.open(&k.seal("").unwrap()).unwrap().expose(), "");
    }

    #[test]
    fn wrong_key_is_a_clear_error() {
        let k1 = SecretKey::parse(HEX).unwrap();
        let k2 = SecretKey::generate().unwrap();
        let sealed = k1.seal("secret").unwrap();
        let e = k2.open(&sealed).unwrap_err();
        assert!(matches!(e, CryptoError::OtherKey { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(k1.id()) && msg.contains(k2.id()), "{msg}");
        assert!(msg.contains(SECRET_KEY_ENV));
        // Same id forged onto another key's ciphertext: the tag refuses it.
        let forged = sealed.replace(k1.id(), k2.id());
        assert!(matches!(k2.open(&forged), Err(CryptoError::Tampered)));
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let k = SecretKey::parse(HEX).unwrap();
        let sealed = k.seal("secret").unwrap();
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut blob = URL_SAFE_NO_PAD.decode(body).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let bad = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&blob));
        assert!(matches!(k.open(&bad), Err(CryptoError::Tampered)));
        assert!(matches!(k.open("secret"), Err(CryptoError::Format(_))));
        assert!(matches!(
            k.open("imapfleet:v9:abc:xyz"),
            Err(CryptoError::Format(_))
        ));
        let short = format!("{head}:{}", URL_SAFE_NO_PAD.encode([0u8; 10]));
        assert!(matches!(k.open(&short), Err(CryptoError::Format(_))));
        assert!(matches!(
            k.open(&format!("{head}:!!!")),
            Err(CryptoError::Format(_))
        ));
    }

    #[test]
    fn key_formats() {
        let from_hex = SecretKey::parse(HEX).unwrap();
        let raw: Vec<u8> = (0u8..32).collect();
        for text in [
            STANDARD.encode(&raw),
            STANDARD_NO_PAD.encode(&raw),
            URL_SAFE_NO_PAD.encode(&raw),
            format!("  {}\n", STANDARD.encode(&raw)),
            HEX.to_uppercase(),
        ] {
            let k = SecretKey::parse(&text).unwrap();
            assert_eq!(k.id(), from_hex.id(), "{text}");
        }
        for bad in ["", "abc", &HEX[..62], &STANDARD.encode([1u8; 31])] {
            let e = SecretKey::parse(bad).unwrap_err();
            assert!(matches!(e, CryptoError::Key(_)), "{bad}: {e}");
        }
        let e = SecretKey::parse(&STANDARD.encode([1u8; 31]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("31 bytes"), "{e}");
        // Round trip through export.
        let g = SecretKey::generate().unwrap();
        assert_eq!(SecretKey::parse(&g.export_base64()).unwrap().id(), g.id());
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Vec<u8> = (0u8..32).collect();
        let want = SecretKey::parse(HEX).unwrap();
        let p = dir.path().join("raw.key");
        std::fs::write(&p, &raw).unwrap();
        assert_eq!(SecretKey::from_file(&p).unwrap().id(), want.id());
        let p = dir.path().join("b64.key");
        std::fs::write(&p, format!("{}\n", STANDARD.encode(&raw))).unwrap();
        assert_eq!(SecretKey::from_file(&p).unwrap().id(), want.id());
        let p = dir.path().join("hex.key");
        std::fs::write(&p, HEX).unwrap();
        assert_eq!(SecretKey::from_file(&p).unwrap().id(), want.id());
        let e = SecretKey::from_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = SecretKey::parse(HEX).unwrap();
        let d = format!("{k:?}");
        assert!(!d.contains("0001020304"), "{d}");
        assert!(!d.contains(&*k.export_base64()), "{d}");
        assert!(d.contains(k.id()));
        let e = SecretKey::parse("not a key at all")
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("not a key at all"),
            "the input is not echoed: {e}"
        );
    }

    #[test]
    fn implements_the_task_sealer() {
        use crate::task::Sealer;
        let k = SecretKey::generate().unwrap();
        let s: &dyn Sealer = &k;
        let sealed = s.seal(&Secret::new("pw")).unwrap();
        assert_eq!(s.open(&sealed).unwrap().expose(), "pw");
        let other = SecretKey::generate().unwrap();
        let e = (&other as &dyn Sealer)
            .open(&sealed)
            .unwrap_err()
            .to_string();
        assert!(e.contains("key"), "{e}");
    }
}
