//! Passwords: the policy a new password must meet, and argon2id hashing.
//!
//! Policy (NIST SP 800-63B-4, section 3.1.1.2): length, not composition.
//! A password is compared after Unicode NFKC normalisation and counted in code
//! points; it must be 15 to 128 of them (the minimum NIST sets for a password
//! used as a single factor; the maximum keeps request sizes and hashing work
//! bounded), must not contain the username, and must not be one of a short list
//! of values that are long enough but commonly chosen. No composition rules,
//! no periodic expiry.
//!
//! Hashing: argon2id with OWASP's minimum parameters (19 MiB, 2 passes,
//! 1 lane), stored as a PHC string. Verification reads the parameters from the
//! stored string, so raising them later keeps old hashes verifiable.

use std::fmt;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, phc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::user::{InvalidValue, Username};

/// A new password that meets the policy, normalised (NFKC).
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 15;
    pub const MAX_CHARS: usize = 128;

    /// Checks `raw` against the policy. `username` is the account the password
    /// is for, when known: a password containing it is rejected.
    pub fn parse(raw: &str, username: Option<&Username>) -> Result<Self, InvalidValue> {
        let normalised = normalise(raw);
        let chars = normalised.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(InvalidValue(format!(
                "must be at least {} characters long",
                Self::MIN_CHARS
            )));
        }
        if chars > Self::MAX_CHARS {
            return Err(InvalidValue(format!(
                "must be at most {} characters long",
                Self::MAX_CHARS
            )));
        }
        let lower = normalised.to_lowercase();
        if username.is_some_and(|u| lower.contains(u.as_str())) {
            return Err(InvalidValue("must not contain the username".into()));
        }
        if is_commonly_chosen(&lower) {
            return Err(InvalidValue(
                "is too easy to guess; choose a longer phrase of unrelated words".into(),
            ));
        }
        Ok(Self(SecretString::from(normalised)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

fn normalise(raw: &str) -> String {
    raw.nfkc().collect()
}

/// Values that pass the length rule yet appear in breached-password lists, and
/// shapes (one repeated character, a run of one keyboard row) that no one
/// should be allowed to pick.
fn is_commonly_chosen(lower: &str) -> bool {
    const BLOCKLIST: &[&str] = &[
        "123456789012345",
        "1234567890123456",
        "12345678901234567890",
        "passwordpassword",
        "password12345678",
        "password123456789",
        "qwertyuiopasdfghjkl",
        "qwertyuiopasdfgh",
        "1q2w3e4r5t6y7u8i9o0p",
        "1qaz2wsx3edc4rfv",
        "abcdefghijklmnop",
        "abcdefghijklmnopqrstuvwxyz",
        "iloveyouiloveyou",
        "changemechangeme",
        "letmeinletmein1",
        "administrator123",
        "taskgatetaskgate",
    ];
    if BLOCKLIST.contains(&lower) {
        return true;
    }
    let mut chars = lower.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return true;
    }
    const ROWS: &[&str] = &[
        "0123456789012345678901234567890",
        "qwertyuiopqwertyuiopqwertyuiop",
        "asdfghjklasdfghjklasdfghjkl",
        "zxcvbnmzxcvbnmzxcvbnmzxcvbnm",
    ];
    ROWS.iter().any(|row| row.contains(lower))
}

/// A stored argon2 hash as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn parse(phc_string: &str) -> Result<Self, InvalidValue> {
        phc::PasswordHash::new(phc_string)
            .map(|_| Self(phc_string.to_owned()))
            .map_err(|_| InvalidValue("is not a PHC password hash".into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PasswordHash {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PasswordHash> for String {
    fn from(value: PasswordHash) -> Self {
        value.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes and verifies passwords with argon2id.
///
/// Verification of a login for a user that does not exist runs against a
/// dummy hash made with the same parameters, so "no such user" and "wrong
/// password" take the same time. The dummy is a constant (made once with
/// these parameters; a test checks they match), so building a hasher costs
/// nothing: a Lambda function does no hashing at cold start.
pub struct PasswordHasher {
    argon2: argon2::Argon2<'static>,
}

/// The argon2id hash, with [`PasswordHasher`]'s parameters, of a password no
/// one has (`taskgate dummy password for unknown users`).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$DhP2N/ZT+aZdQJW8MlyePw$7+IJ3VbLXI17iGSTjRNkN/DSGkiSKAJuqXCRsqBRw+w";

impl PasswordHasher {
    /// OWASP Password Storage Cheat Sheet, argon2id option 5 (the minimum it
    /// accepts): m = 19 MiB, t = 2, p = 1.
    pub const MEMORY_KIB: u32 = 19 * 1024;
    pub const PASSES: u32 = 2;
    pub const LANES: u32 = 1;

    /// Builds the hasher (no hashing: cheap).
    pub fn new() -> Result<Self, HashError> {
        let params = argon2::Params::new(Self::MEMORY_KIB, Self::PASSES, Self::LANES, None)
            .map_err(|e| HashError(e.to_string()))?;
        let argon2 =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        Ok(Self { argon2 })
    }

    pub fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        hash_with(&self.argon2, password.expose())
    }

    /// Whether `candidate` matches `hash`. With no hash (unknown user) this
    /// does the same work against the dummy hash and returns `false`.
    pub fn verify(&self, candidate: &str, hash: Option<&PasswordHash>) -> bool {
        let target = hash.map_or(DUMMY_HASH, PasswordHash::as_str);
        let Ok(parsed) = phc::PasswordHash::new(target) else {
            return false;
        };
        let matches = self
            .argon2
            .verify_password(normalise(candidate).as_bytes(), &parsed)
            .is_ok();
        matches && hash.is_some()
    }
}

fn hash_with(argon2: &argon2::Argon2<'static>, password: &str) -> Result<PasswordHash, HashError> {
    let hash: phc::PasswordHash = argon2
        .hash_password(password.as_bytes())
        .map_err(|e| HashError(e.to_string()))?;
    Ok(PasswordHash(hash.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Option<&'static Username> {
        static ALICE: std::sync::LazyLock<Username> =
            std::sync::LazyLock::new(|| Username::parse("alice").unwrap());
        Some(&ALICE)
    }

    #[test]
    fn the_policy_is_about_length_not_composition() {
        assert!(Password::parse("correct horse battery staple", alice()).is_ok());
        assert!(Password::parse("alllowercaseletters", alice()).is_ok());
        assert!(Password::parse("short", alice()).is_err());
        assert!(Password::parse(&"x1".repeat(65), alice()).is_err());
    }

    #[test]
    fn length_counts_code_points_after_nfkc() {
        // 15 code points, more bytes: accepted.
        assert!(Password::parse("ééééé ééééé ééé", alice()).is_ok());
        // "ﬁ" (one code point) normalises to "fi" (two).
        assert!(Password::parse("ﬁﬁﬁﬁﬁﬁﬁﬁ", alice()).is_ok());
    }

    #[test]
    fn guessable_passwords_are_rejected() {
        for raw in [
            "passwordpassword",
            "aaaaaaaaaaaaaaaaaaaa",
            "qwertyuiopasdfgh",
            "1234567890123456789",
            "my name is alice, ok?",
        ] {
            assert!(Password::parse(raw, alice()).is_err(), "{raw} was accepted");
        }
    }

    #[test]
    fn hashes_use_argon2id_with_owasp_parameters_and_verify() {
        let hasher = PasswordHasher::new().unwrap();
        let password = Password::parse("correct horse battery staple", alice()).unwrap();
        let hash = hasher.hash(&password).unwrap();
        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.as_str()
        );
        assert!(hasher.verify("correct horse battery staple", Some(&hash)));
        assert!(!hasher.verify("correct horse battery stapler", Some(&hash)));
        assert!(!hasher.verify(DUMMY_PASSWORD, None));
        assert!(!hasher.verify("correct horse battery staple", None));
    }

    const DUMMY_PASSWORD: &str = "taskgate dummy password for unknown users";

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        // Same algorithm and parameters as every stored hash, so checking a
        // login against it takes as long; and it is a real hash.
        let hasher = PasswordHasher::new().unwrap();
        let real = hasher
            .hash(&Password::parse("correct horse battery staple", alice()).unwrap())
            .unwrap();
        let prefix = |h: &str| h.rsplitn(3, '$').nth(2).unwrap().to_owned();
        assert_eq!(prefix(DUMMY_HASH), prefix(real.as_str()));
        assert!(hasher.verify(DUMMY_PASSWORD, Some(&PasswordHash(DUMMY_HASH.to_owned()))));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let hasher = PasswordHasher::new().unwrap();
        let password = Password::parse("correct horse battery staple", alice()).unwrap();
        let hash = hasher.hash(&password).unwrap();
        let shown = format!("{password:?} {hash:?}");
        assert!(
            !shown.contains("horse") && !shown.contains("argon2"),
            "{shown}"
        );
    }
}
