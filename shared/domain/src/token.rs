//! Tokens: signed JWTs (HS256, nothing else) backed by a stored record.
//!
//! A token is valid only while (1) its signature verifies with our key and the
//! fixed algorithm, (2) `exp` is in the future, (3) its `jti` is still in the
//! token store (logout and revocation delete it), and (4) the user it names
//! still exists with the same `UserId` (so deleting a user, or deleting and
//! re-creating the name, invalidates every old token at once). Checks 1–2
//! live here; 3–4 are done by the HTTP layer against the stores.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::user::{InvalidValue, User, UserId, Username};

/// The `jti` of a token: its key in the token store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenId(Uuid);

impl TokenId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| InvalidValue("must be a UUID".into()))
    }
}

impl Default for TokenId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the token store keeps about an issued token (never the token itself).
///
/// Times are whole seconds, like the JWT's `iat` and `exp` (NumericDate):
/// stores may keep nothing finer (DynamoDB's TTL attribute is epoch seconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub jti: TokenId,
    pub username: Username,
    pub user_id: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl TokenRecord {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }
}

/// The claims Taskgate signs. All are required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// Username.
    pub sub: String,
    /// The user's `UserId` at issue time.
    pub uid: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

/// A freshly issued token: the secret bearer string and the record to store.
pub struct IssuedToken {
    pub token: SecretString,
    pub record: TokenRecord,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is malformed or its signature is invalid")]
    Invalid,
}

/// Signs and verifies tokens with one HMAC key and one algorithm (HS256).
///
/// The algorithm is fixed on both sides: a token whose header names any other
/// algorithm, `none` included, is rejected before its signature is looked at.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    device_validation: Validation,
    verified: VerifiedTokens,
}

impl TokenKeys {
    pub const ISSUER: &'static str = "taskgate";
    pub const DEVICE_ISSUER: &'static str = "taskgate/device";
    pub const ALGORITHM: Algorithm = Algorithm::HS256;
    /// HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
    pub const MIN_SECRET_BYTES: usize = 32;

    pub fn new(secret: &SecretSlice<u8>) -> Result<Self, InvalidValue> {
        let bytes = secret.expose_secret();
        if bytes.len() < Self::MIN_SECRET_BYTES {
            return Err(InvalidValue(format!(
                "must be at least {} bytes",
                Self::MIN_SECRET_BYTES
            )));
        }
        let mut validation = Validation::new(Self::ALGORITHM);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "jti"]);
        validation.set_issuer(&[Self::ISSUER]);
        validation.leeway = 0;
        // Expiry is checked against the injected clock (`decode`), not the
        // library's reading of the system time.
        validation.validate_exp = false;
        // Device tokens differ by issuer, so neither kind passes for the other.
        let mut device_validation = validation.clone();
        device_validation.set_issuer(&[Self::DEVICE_ISSUER]);
        Ok(Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            device_validation,
            verified: VerifiedTokens::default(),
        })
    }

    /// Issues a token for `user` valid for `ttl` from `now`.
    pub fn issue(&self, user: &User, ttl: Duration, now: OffsetDateTime) -> IssuedToken {
        let issued_at = now.replace_millisecond(0).expect("0 ms is valid");
        let expires_at = issued_at + ttl;
        let record = TokenRecord {
            jti: TokenId::new(),
            username: user.username.clone(),
            user_id: user.user_id,
            issued_at,
            expires_at,
        };
        let claims = Claims {
            iss: Self::ISSUER.to_owned(),
            sub: record.username.to_string(),
            uid: record.user_id.to_string(),
            jti: record.jti.to_string(),
            iat: issued_at.unix_timestamp(),
            exp: expires_at.unix_timestamp(),
        };
        IssuedToken {
            token: self.sign(&claims).into(),
            record,
        }
    }

    /// Issues a device token: proof, shown at later logins, that this client
    /// once logged in as `user` (docs/adr/0008). It grants nothing else.
    pub fn issue_device(
        &self,
        user: &User,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> (SecretString, TokenId) {
        let issued_at = now.replace_millisecond(0).expect("0 ms is valid");
        let device = TokenId::new();
        let claims = Claims {
            iss: Self::DEVICE_ISSUER.to_owned(),
            sub: user.username.to_string(),
            uid: user.user_id.to_string(),
            jti: device.to_string(),
            iat: issued_at.unix_timestamp(),
            exp: (issued_at + ttl).unix_timestamp(),
        };
        (self.sign(&claims).into(), device)
    }

    /// Checks a device token like [`Self::verify`] checks a bearer token.
    pub fn verify_device(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedClaims, TokenError> {
        let (claims, expires) = self.decode(token, &self.device_validation)?;
        unexpired(claims, expires, now)
    }

    /// Signs arbitrary claims. Only `issue` should need this outside tests.
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Self::ALGORITHM), claims, &self.encoding)
            .expect("HMAC signing of serialisable claims cannot fail")
    }

    /// Checks signature, algorithm, issuer and expiry (at `now`), and
    /// returns the claims.
    ///
    /// A bearer token is sent again with every request, and checking it from
    /// scratch (two base64 decodes, an HMAC, a JSON parse) was a tenth of the
    /// server's time on `GET /tasks/{id}` (docs/benchmarks/profiles.md). So
    /// the claims of a token that passed are kept by the token's exact bytes
    /// ([`VerifiedTokens`]): a token sent again is looked up, not decoded,
    /// and its expiry is still checked against `now` on every call. Nothing
    /// else about a token can change once it has passed: the key and the
    /// validation are fixed for the life of `self`, and revocation is the
    /// token store's check, made by the caller on every request.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<VerifiedClaims, TokenError> {
        if let Some((claims, expires)) = self.verified.get(token) {
            return unexpired(claims, expires, now);
        }
        let (claims, expires) = self.decode(token, &self.validation)?;
        self.verified.keep(token, &claims, expires);
        unexpired(claims, expires, now)
    }

    /// The claims of `token` and its `exp`, if its signature, algorithm,
    /// issuer and claims pass `validation` (expiry is the caller's check).
    fn decode(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<(VerifiedClaims, i64), TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        let claims = data.claims;
        let verified = VerifiedClaims {
            username: Username::parse(&claims.sub).map_err(|_| TokenError::Invalid)?,
            user_id: UserId::parse(&claims.uid).map_err(|_| TokenError::Invalid)?,
            jti: TokenId::parse(&claims.jti).map_err(|_| TokenError::Invalid)?,
        };
        Ok((verified, claims.exp))
    }
}

/// `claims`, unless `expires` (a JWT `exp`) has passed at `now`: a token is
/// valid through its `exp` second, as with no leeway in jsonwebtoken.
fn unexpired(
    claims: VerifiedClaims,
    expires: i64,
    now: OffsetDateTime,
) -> Result<VerifiedClaims, TokenError> {
    if expires < now.unix_timestamp() {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Bearer tokens that passed [`TokenKeys::verify`], by their exact bytes,
/// with their parsed claims and `exp`.
///
/// Only tokens whose signature verified are kept, so what fills it is
/// tokens this service issued (logins are rate-limited), never whatever a
/// client sends. At most [`Self::MAX_KEPT`] (about 400 bytes each); past
/// that it starts over, as the page cache does (a token is cheap to check
/// again). Lookups hash with the standard map's per-process random key, so
/// a client cannot pick which kept token its bytes are compared with.
/// Never printed: the keys are bearer secrets.
#[derive(Default)]
struct VerifiedTokens {
    kept: Mutex<HashMap<Box<str>, (VerifiedClaims, i64)>>,
}

impl VerifiedTokens {
    /// Room for every token of a busy process's active users.
    const MAX_KEPT: usize = 8192;

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, (VerifiedClaims, i64)>> {
        // A panic while holding the lock cannot leave a half-written entry.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, token: &str) -> Option<(VerifiedClaims, i64)> {
        self.lock().get(token).cloned()
    }

    fn keep(&self, token: &str, claims: &VerifiedClaims, expires: i64) {
        let mut kept = self.lock();
        if kept.len() >= Self::MAX_KEPT {
            kept.clear();
        }
        kept.insert(token.into(), (claims.clone(), expires));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The parts of verified claims the rest of the system needs, already parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedClaims {
    pub username: Username,
    pub user_id: UserId,
    pub jti: TokenId,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::Level;

    fn keys(secret: &[u8]) -> TokenKeys {
        TokenKeys::new(&SecretSlice::from(secret.to_vec())).unwrap()
    }

    fn user() -> User {
        crate::testing::user("alice", Level::User)
    }

    #[test]
    fn device_tokens_and_bearer_tokens_never_pass_for_each_other() {
        let keys = keys(&[7; 32]);
        let (device, id) = keys.issue_device(&user(), Duration::from_secs(60), crate::now());
        let claims = keys
            .verify_device(device.expose_secret(), crate::now())
            .unwrap();
        assert_eq!((claims.jti, claims.username), (id, user().username));
        assert_eq!(
            keys.verify(device.expose_secret(), crate::now()),
            Err(TokenError::Invalid)
        );
        let bearer = keys.issue(&user(), Duration::from_secs(60), crate::now());
        assert_eq!(
            keys.verify_device(bearer.token.expose_secret(), crate::now()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn an_issued_token_verifies_and_names_its_record() {
        let keys = keys(&[7; 32]);
        let issued = keys.issue(&user(), Duration::from_secs(60), crate::now());
        let claims = keys
            .verify(issued.token.expose_secret(), crate::now())
            .unwrap();
        assert_eq!(claims.jti, issued.record.jti);
        assert_eq!(claims.user_id, issued.record.user_id);
        assert_eq!(claims.username.as_str(), "alice");
    }

    #[test]
    fn a_token_signed_with_another_key_is_invalid() {
        let issued = keys(&[7; 32]).issue(&user(), Duration::from_secs(60), crate::now());
        assert_eq!(
            keys(&[8; 32]).verify(issued.token.expose_secret(), crate::now()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenKeys::new(&SecretSlice::from(vec![1; 31])).is_err());
    }

    #[test]
    fn an_expired_token_is_reported_as_expired() {
        let keys = keys(&[7; 32]);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let token = keys.sign(&Claims {
            iss: TokenKeys::ISSUER.into(),
            sub: "alice".into(),
            uid: UserId::new().to_string(),
            jti: TokenId::new().to_string(),
            iat: now - 120,
            exp: now - 60,
        });
        assert_eq!(
            keys.verify(&token, OffsetDateTime::now_utc()),
            Err(TokenError::Expired)
        );
    }

    /// Expiry follows the clock the caller passes: valid through the second
    /// it expires in, expired from the next.
    #[test]
    fn a_token_expires_when_the_given_clock_passes_its_lifetime() {
        let keys = keys(&[7; 32]);
        let issued_at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let issued = keys.issue(&user(), Duration::from_secs(60), issued_at);
        let token = issued.token.expose_secret();
        let at = |seconds: u64| issued_at + Duration::from_secs(seconds);
        assert!(keys.verify(token, at(0)).is_ok());
        // From here on the token is answered from what was kept.
        assert_eq!(keys.verified.len(), 1);
        assert!(keys.verify(token, at(60)).is_ok());
        assert_eq!(keys.verify(token, at(61)), Err(TokenError::Expired));
        assert!(issued.record.is_expired(at(61)));
        assert!(!issued.record.is_expired(at(59)));
    }

    /// The token with one character changed, at `index` from the start.
    fn altered(token: &str, index: usize) -> String {
        let mut bytes = token.as_bytes().to_vec();
        bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_token_one_character_from_a_kept_one_is_checked_in_full() {
        let keys = keys(&[7; 32]);
        let issued = keys.issue(&user(), Duration::from_secs(60), crate::now());
        let token = issued.token.expose_secret();
        assert!(keys.verify(token, crate::now()).is_ok());
        let claims_at = token.find('.').unwrap() + 1;
        for index in [claims_at, token.len() - 2] {
            assert_eq!(
                keys.verify(&altered(token, index), crate::now()),
                Err(TokenError::Invalid),
                "altered at {index}"
            );
        }
        assert_eq!(
            keys.verify(&format!("{token}x"), crate::now()),
            Err(TokenError::Invalid)
        );
        assert!(keys.verify(token, crate::now()).is_ok());
    }

    #[test]
    fn only_bearer_tokens_that_pass_are_kept() {
        let keys = keys(&[7; 32]);
        let now = crate::now();
        let (device, _) = keys.issue_device(&user(), Duration::from_secs(60), now);
        assert!(keys.verify_device(device.expose_secret(), now).is_ok());
        let other = super::tests::keys(&[8; 32]).issue(&user(), Duration::from_secs(60), now);
        assert!(keys.verify(other.token.expose_secret(), now).is_err());
        let issued = keys.issue(&user(), Duration::from_secs(60), now);
        let later = now + Duration::from_secs(61);
        assert_eq!(
            keys.verify(issued.token.expose_secret(), later),
            Err(TokenError::Expired)
        );
        assert_eq!(keys.verified.len(), 1, "only the expired one verified");
        // A device token passes for a bearer token neither from scratch nor
        // from what was kept.
        assert_eq!(
            keys.verify(device.expose_secret(), now),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn the_kept_tokens_stay_bounded() {
        let keys = keys(&[7; 32]);
        let now = crate::now();
        let mut last = None;
        for _ in 0..=VerifiedTokens::MAX_KEPT {
            let issued = keys.issue(&user(), Duration::from_secs(60), now);
            assert!(keys.verify(issued.token.expose_secret(), now).is_ok());
            last = Some(issued);
        }
        assert!(keys.verified.len() <= VerifiedTokens::MAX_KEPT);
        let last = last.unwrap();
        assert_eq!(
            keys.verify(last.token.expose_secret(), now).unwrap().jti,
            last.record.jti
        );
    }
}
