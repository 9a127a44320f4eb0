//! Users: the validated value types and the stored `User` record.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::password::PasswordHash;

/// A normalised username: 3 to 32 characters from `a-z`, `0-9`, `.`, `_`, `-`,
/// starting with a letter or digit. Input is case-insensitive and stored in
/// lower case, so `Alice` and `alice` are the same account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let len = raw.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            return Err(InvalidValue(format!(
                "must be {} to {} characters long",
                Self::MIN_LEN,
                Self::MAX_LEN
            )));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !raw.chars().all(allowed) {
            return Err(InvalidValue(
                "may contain only letters a-z, digits 0-9, '.', '_' and '-'".into(),
            ));
        }
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(InvalidValue("must start with a letter or a digit".into()));
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Username> for String {
    fn from(value: Username) -> Self {
        value.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a value was rejected, phrased to follow the field name
/// ("username must be 3 to 32 characters long").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// Permission level of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Admin,
    User,
}

impl Level {
    pub const ALL: [Level; 2] = [Self::Admin, Self::User];

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "admin" => Ok(Self::Admin),
            "user" => Ok(Self::User),
            _ => Err(InvalidValue(r#"must be "admin" or "user""#.into())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An e-mail address in the syntax of RFC 5321/5322, at most 254 characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    /// What makes two addresses the same account's: the address in lower
    /// case (`Alice@Example.com` and `alice@example.com` are one).
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.len() > Self::MAX_LEN {
            return Err(InvalidValue(format!(
                "must be at most {} characters long",
                Self::MAX_LEN
            )));
        }
        // `email_address` accepts display names ("A <a@b>"); an account address must be bare.
        let options = email_address::Options::default().without_display_text();
        email_address::EmailAddress::parse_with_options(raw, options)
            .map(|_| Self(raw.to_owned()))
            .map_err(|_| InvalidValue("must be a valid e-mail address".into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

/// How large a profile a client may send: `TASKGATE_MAX_PROFILE_BYTES` and
/// `TASKGATE_MAX_PROFILE_DEPTH`. Capped so a profile can never become a
/// storage or parsing problem (a DynamoDB item holds at most 400 KB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileLimits {
    /// Largest profile, in bytes of compact JSON (default 16 KiB).
    pub max_bytes: usize,
    /// Deepest nesting of objects and arrays, the profile object itself
    /// being depth 1 (default 16).
    pub max_depth: usize,
}

impl Default for ProfileLimits {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024,
            max_depth: 16,
        }
    }
}

/// A free-form JSON object attached to a user.
///
/// A profile from a client is checked against [`ProfileLimits`] by
/// [`Profile::parse`]; one read back from a store only has to be an object
/// ([`Profile::from_stored`], also what deserialising does), so lowering the
/// limits never makes a stored user unreadable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub struct Profile(serde_json::Map<String, serde_json::Value>);

impl Profile {
    /// A profile a client sent: a JSON object within `limits`.
    pub fn parse(value: serde_json::Value, limits: &ProfileLimits) -> Result<Self, InvalidValue> {
        let profile = Self::from_stored(value)?;
        let bytes = profile.to_json().len();
        if bytes > limits.max_bytes {
            return Err(InvalidValue(format!(
                "must be at most {} bytes as JSON, not {bytes}",
                limits.max_bytes
            )));
        }
        if object_depth(&profile.0) > limits.max_depth {
            return Err(InvalidValue(format!(
                "must be nested at most {} levels deep",
                limits.max_depth
            )));
        }
        Ok(profile)
    }

    /// A profile read back from a store: any JSON object.
    pub fn from_stored(value: serde_json::Value) -> Result<Self, InvalidValue> {
        match value {
            serde_json::Value::Object(map) => Ok(Self(map)),
            _ => Err(InvalidValue("must be a JSON object".into())),
        }
    }

    /// Compact JSON text of the profile.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a JSON map always serialises")
    }

    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }
}

/// How deeply `value` nests objects and arrays: 0 for a scalar, 1 for `{}`
/// or `[1]`, 2 for `{"a": []}`.
pub fn json_depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => object_depth(map),
        _ => 0,
    }
}

/// [`json_depth`] of an object, without wrapping it in a `Value`.
fn object_depth(map: &serde_json::Map<String, serde_json::Value>) -> usize {
    1 + map.values().map(json_depth).max().unwrap_or(0)
}

impl TryFrom<serde_json::Value> for Profile {
    type Error = InvalidValue;
    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        Self::from_stored(value)
    }
}

impl From<Profile> for serde_json::Value {
    fn from(value: Profile) -> Self {
        serde_json::Value::Object(value.0)
    }
}

/// Identity of one account's lifetime. A username that is deleted and created
/// again gets a new `UserId`, which is how old tokens are told apart from new.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| InvalidValue("must be a UUID".into()))
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored account.
///
/// `version` starts at 1 and grows by one with every change; stores use it
/// for optimistic concurrency (an update names the version it read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub username: Username,
    pub user_id: UserId,
    pub password_hash: PasswordHash,
    pub level: Level,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl User {
    /// A new account, version 1, with a fresh `UserId`.
    pub fn new(
        username: Username,
        password_hash: PasswordHash,
        level: Level,
        email: Option<Email>,
        profile: Option<Profile>,
    ) -> Self {
        let now = crate::now();
        Self {
            username,
            user_id: UserId::new(),
            password_hash,
            level,
            email,
            profile,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.level == Level::Admin
    }
}

/// A change to an account. `None` leaves a field alone; for the optional
/// fields, `Some(None)` clears them.
#[derive(Clone, Debug, Default)]
pub struct UserChanges {
    pub password_hash: Option<PasswordHash>,
    pub level: Option<Level>,
    pub email: Option<Option<Email>>,
    pub profile: Option<Option<Profile>>,
}

impl UserChanges {
    pub fn is_empty(&self) -> bool {
        self.password_hash.is_none()
            && self.level.is_none()
            && self.email.is_none()
            && self.profile.is_none()
    }

    /// The user with these changes applied and the version bumped, or `None`
    /// when nothing would change.
    pub fn apply_to(&self, user: &User) -> Option<User> {
        let mut next = user.clone();
        if let Some(hash) = &self.password_hash {
            next.password_hash = hash.clone();
        }
        if let Some(level) = self.level {
            next.level = level;
        }
        if let Some(email) = &self.email {
            next.email = email.clone();
        }
        if let Some(profile) = &self.profile {
            next.profile = profile.clone();
        }
        if next == *user {
            return None;
        }
        next.version = user.version + 1;
        next.updated_at = crate::now().max(user.updated_at);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_normalised_to_lower_case() {
        assert_eq!(Username::parse("Alice.B-1").unwrap().as_str(), "alice.b-1");
    }

    #[test]
    fn usernames_outside_the_rules_are_rejected() {
        for (raw, why) in [
            ("ab", "too short"),
            (&"a".repeat(33), "too long"),
            ("al ice", "space"),
            ("al/ice", "slash"),
            ("álice", "non-ASCII letter"),
            ("-alice", "leading dash"),
            ("", "empty"),
        ] {
            assert!(Username::parse(raw).is_err(), "{why}: {raw:?} was accepted");
        }
    }

    /// `{"deep": [[...[1]...]]}`, `depth` levels deep in all.
    fn profile_of_depth(depth: usize) -> serde_json::Value {
        let mut deep = serde_json::json!(1);
        for _ in 1..depth {
            deep = serde_json::json!([deep]);
        }
        serde_json::json!({ "deep": deep })
    }

    #[test]
    fn profiles_must_be_objects_within_the_limits() {
        let limits = ProfileLimits::default();
        assert!(Profile::parse(serde_json::json!({"a": [1, {"b": null}]}), &limits).is_ok());
        assert!(Profile::parse(serde_json::json!([1]), &limits).is_err());

        // `{"a":"…"}` is 8 bytes of JSON around the string.
        let sized = |n: usize| serde_json::json!({"a": "x".repeat(n - 8)});
        assert!(Profile::parse(sized(limits.max_bytes), &limits).is_ok());
        let too_big = Profile::parse(sized(limits.max_bytes + 1), &limits).unwrap_err();
        assert_eq!(too_big.0, "must be at most 16384 bytes as JSON, not 16385");

        assert_eq!(
            json_depth(&profile_of_depth(limits.max_depth)),
            limits.max_depth
        );
        assert!(Profile::parse(profile_of_depth(limits.max_depth), &limits).is_ok());
        let too_deep = Profile::parse(profile_of_depth(limits.max_depth + 1), &limits).unwrap_err();
        assert_eq!(too_deep.0, "must be nested at most 16 levels deep");
    }

    #[test]
    fn stored_profiles_over_todays_limits_still_read_back() {
        let tight = ProfileLimits {
            max_bytes: 16,
            max_depth: 2,
        };
        let stored = profile_of_depth(5);
        assert!(Profile::parse(stored.clone(), &tight).is_err());
        let read: Profile = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(serde_json::Value::from(read), stored);
        assert!(serde_json::from_value::<Profile>(serde_json::json!([1])).is_err());
    }

    #[test]
    fn emails_must_be_bare_addresses() {
        assert!(Email::parse("a@example.com").is_ok());
        assert!(Email::parse("Alice <a@example.com>").is_err());
        assert!(Email::parse("not-an-address").is_err());
    }
}
