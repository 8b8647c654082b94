//! Encryption at rest of sensitive fields (phone numbers, emails, transcript text): AES-256-GCM
//! with a random nonce per value, the key id kept beside each ciphertext so keys can rotate, and
//! the value bound to where it lives (organization, table, column, row) so a ciphertext copied
//! elsewhere does not decrypt. Lookups (a person by phone) use a keyed hash, never plaintext.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Nonce length of AES-GCM, stored in front of each ciphertext.
const NONCE_LEN: usize = 12;

/// Development keys, used when none are configured (and warned about by the binary): they are
/// public, so nothing they protect is secret.
pub const DEV_KEYS: &str = "dev1:ZGV2LW9ubHktd2lubmVyci1maWVsZC1rZXktMzJieXQ=";
pub const DEV_LOOKUP_KEY: &str = "ZGV2LW9ubHktd2lubmVyci1sb29rdXAta2V5LTMyYnk=";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("bad key configuration: {0}")]
    Config(String),
    #[error("no key {0:?} in the key ring")]
    UnknownKey(String),
    #[error("value does not decrypt (wrong key, place or tampered)")]
    Undecryptable,
}

/// A value as read: its text, or `None` where it did not decrypt — counted by `field` and logged
/// with where it lives (an operator must learn of it), so the rest of a read still succeeds.
pub(crate) fn readable(
    opened: Result<String, CryptoError>,
    field: &'static str,
    org: &winnerr_events::OrgId,
    row: &str,
) -> Option<String> {
    match opened {
        Ok(text) => Some(text),
        Err(err) => {
            crate::metrics::unreadable(field);
            tracing::error!(org_id = %org, field, row, error = %err, "stored value does not decrypt; left out of the read");
            None
        }
    }
}

/// Where a value lives; bound into its ciphertext as associated data.
#[derive(Debug, Clone, Copy)]
pub struct FieldPlace<'a> {
    pub org: &'a str,
    pub table: &'static str,
    pub column: &'static str,
    pub row: &'a str,
}

impl FieldPlace<'_> {
    fn associated_data(&self) -> Vec<u8> {
        [self.org, self.table, self.column, self.row]
            .join("\u{1f}")
            .into_bytes()
    }
}

/// An encrypted value and the id of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    /// Nonce, then ciphertext and tag.
    pub bytes: Vec<u8>,
}

/// The keys: one current key that encrypts, older ones that still decrypt, and the lookup key.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: HashMap<String, Aes256Gcm>,
    lookup: Hmac<Sha256>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("keys", &ids)
            .finish_non_exhaustive()
    }
}

fn decode_key(what: &str, base64: &str) -> Result<[u8; 32], CryptoError> {
    let bytes = STANDARD
        .decode(base64.trim())
        .map_err(|_| CryptoError::Config(format!("{what} is not base64")))?;
    bytes.try_into().map_err(|_| {
        CryptoError::Config(format!(
            "{what} must be 32 bytes (base64 of 32 random bytes)"
        ))
    })
}

impl Keyring {
    /// The public development keys ([`DEV_KEYS`], [`DEV_LOOKUP_KEY`]).
    pub fn development() -> Self {
        Self::parse(DEV_KEYS, DEV_LOOKUP_KEY).expect("the development keys are valid")
    }

    /// `keys` is `id:base64,id:base64,…` with the current key first; `lookup` is base64 of 32 bytes.
    pub fn parse(keys: &str, lookup: &str) -> Result<Self, CryptoError> {
        let mut ring = HashMap::new();
        let mut current = None;
        for entry in keys.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, key) = entry.split_once(':').ok_or_else(|| {
                CryptoError::Config(format!(
                    "key entry {id:?} is not id:base64",
                    id = entry.split(':').next().unwrap_or("")
                ))
            })?;
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(CryptoError::Config(format!(
                    "key id {id:?} must be letters, digits, - or _"
                )));
            }
            let key = decode_key(&format!("key {id}"), key)?;
            if ring
                .insert(
                    id.to_owned(),
                    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
                )
                .is_some()
            {
                return Err(CryptoError::Config(format!("key id {id:?} appears twice")));
            }
            current.get_or_insert_with(|| id.to_owned());
        }
        let current = current.ok_or_else(|| CryptoError::Config("no encryption key".into()))?;
        let lookup_key = decode_key("lookup key", lookup)?;
        let lookup =
            <Hmac<Sha256> as Mac>::new_from_slice(&lookup_key).expect("HMAC takes any key");
        Ok(Self {
            current,
            keys: ring,
            lookup,
        })
    }

    /// The id of the key new values are encrypted with.
    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    pub fn encrypt(&self, plaintext: &str, place: FieldPlace<'_>) -> Sealed {
        let cipher = &self.keys[&self.current];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = place.associated_data();
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of a bounded value cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend(ciphertext);
        Sealed {
            key_id: self.current.clone(),
            bytes,
        }
    }

    pub fn decrypt(
        &self,
        key_id: &str,
        bytes: &[u8],
        place: FieldPlace<'_>,
    ) -> Result<String, CryptoError> {
        let cipher = self
            .keys
            .get(key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Undecryptable);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let aad = place.associated_data();
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Undecryptable)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::Undecryptable)
    }

    /// Keyed hash of a lookup value within one organization (e.g. a normalized phone number).
    pub fn lookup_hash(&self, org: &str, value: &str) -> Vec<u8> {
        let mut mac = self.lookup.clone();
        mac.update(org.as_bytes());
        mac.update(b"\x1f");
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// A phone number as digits with an optional leading `+`, for lookups.
pub fn normalize_phone(phone: &str) -> String {
    let trimmed = phone.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if trimmed.starts_with('+') {
        format!("+{digits}")
    } else {
        digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(row: &str) -> FieldPlace<'_> {
        FieldPlace {
            org: "acme",
            table: "people",
            column: "phone",
            row,
        }
    }

    #[test]
    fn values_round_trip_and_stay_in_their_place() {
        let ring = Keyring::parse(DEV_KEYS, DEV_LOOKUP_KEY).unwrap();
        let sealed = ring.encrypt("+1 555 0100", place("p1"));
        assert_eq!(sealed.key_id, "dev1");
        assert!(!sealed.bytes.windows(4).any(|w| w == b"0100"));
        assert_eq!(
            ring.decrypt("dev1", &sealed.bytes, place("p1")).unwrap(),
            "+1 555 0100"
        );
        // Copied to another row, or tampered with: refused.
        assert_eq!(
            ring.decrypt("dev1", &sealed.bytes, place("p2")),
            Err(CryptoError::Undecryptable)
        );
        let mut tampered = sealed.bytes.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            ring.decrypt("dev1", &tampered, place("p1")),
            Err(CryptoError::Undecryptable)
        );
        assert!(matches!(
            ring.decrypt("k9", &sealed.bytes, place("p1")),
            Err(CryptoError::UnknownKey(_))
        ));
        // Two encryptions of one value differ (random nonces).
        assert_ne!(
            ring.encrypt("x", place("p1")).bytes,
            ring.encrypt("x", place("p1")).bytes
        );
    }

    #[test]
    fn an_old_key_still_decrypts_after_a_new_one_becomes_current() {
        let old = Keyring::parse(DEV_KEYS, DEV_LOOKUP_KEY).unwrap();
        let sealed = old.encrypt("secret", place("p1"));
        let new_key = STANDARD.encode([7u8; 32]);
        let rotated = Keyring::parse(&format!("k2:{new_key},{DEV_KEYS}"), DEV_LOOKUP_KEY).unwrap();
        assert_eq!(rotated.current_key_id(), "k2");
        assert_eq!(
            rotated
                .decrypt(&sealed.key_id, &sealed.bytes, place("p1"))
                .unwrap(),
            "secret"
        );
    }

    #[test]
    fn bad_configuration_is_explained() {
        assert!(matches!(
            Keyring::parse("", DEV_LOOKUP_KEY),
            Err(CryptoError::Config(_))
        ));
        assert!(
            matches!(Keyring::parse("k1:c2hvcnQ=", DEV_LOOKUP_KEY), Err(CryptoError::Config(m)) if m.contains("32 bytes"))
        );
        assert!(matches!(
            Keyring::parse("nocolon", DEV_LOOKUP_KEY),
            Err(CryptoError::Config(_))
        ));
        assert!(matches!(
            Keyring::parse(DEV_KEYS, "!!"),
            Err(CryptoError::Config(_))
        ));
    }

    #[test]
    fn lookups_hash_normalized_phones_per_organization() {
        let ring = Keyring::parse(DEV_KEYS, DEV_LOOKUP_KEY).unwrap();
        assert_eq!(normalize_phone(" +1 (555) 010-0100 "), "+15550100100");
        let a = ring.lookup_hash("acme", &normalize_phone("+1 555 010 0100"));
        assert_eq!(
            a,
            ring.lookup_hash("acme", &normalize_phone("+1-555-010-0100"))
        );
        assert_ne!(
            a,
            ring.lookup_hash("globex", &normalize_phone("+1 555 010 0100"))
        );
    }
}
