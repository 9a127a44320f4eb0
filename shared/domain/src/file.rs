//! Files: uploads that may take many requests (tus), and the files they
//! become.
//!
//! A [`StoredFile`] is the record the stores keep: who owns it, how long it
//! will be, how much of it has arrived, where its bytes are (the blob
//! adapter's own state, [`BlobState`]) and the running SHA-256 of what
//! arrived so far, kept between requests so the finished file's digest
//! costs no second read. Records change only through conditional writes on
//! their `version`, so two requests appending at the same offset cannot
//! both win.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::permission::{Actor, Decision, Denied};
use crate::user::{InvalidValue, Level, UserId, Username};

/// A file's id: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileId(Uuid);

impl FileId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Uuid::try_parse(raw)
            .map(Self)
            .map_err(|_| InvalidValue("is not a file id".into()))
    }
}

impl Default for FileId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl TryFrom<String> for FileId {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<FileId> for String {
    fn from(id: FileId) -> Self {
        id.to_string()
    }
}

/// A file's name as the uploader gave it: 1 to 255 bytes of UTF-8 with no
/// control characters and no path (`/`, `\`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileName(String);

impl FileName {
    pub const MAX_BYTES: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.trim().is_empty() {
            return Err(InvalidValue("must not be empty".into()));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(InvalidValue(format!(
                "must be at most {} bytes",
                Self::MAX_BYTES
            )));
        }
        if raw.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
            return Err(InvalidValue(
                "must not contain control characters, / or \\".into(),
            ));
        }
        if raw == "." || raw == ".." {
            return Err(InvalidValue("must not be . or ..".into()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FileName {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<FileName> for String {
    fn from(name: FileName) -> Self {
        name.0
    }
}

/// A media type such as `text/csv` (`type/subtype`, RFC 6838 token
/// characters, at most 127 bytes); parameters are not kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentType(String);

impl ContentType {
    pub fn octet_stream() -> Self {
        Self("application/octet-stream".into())
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let essence = raw.split(';').next().unwrap_or_default().trim();
        let token = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
        };
        match essence.split_once('/') {
            Some((kind, sub)) if token(kind) && token(sub) && essence.len() <= 127 => {
                Ok(Self(essence.to_ascii_lowercase()))
            }
            _ => Err(InvalidValue(
                "must be a media type such as text/plain".into(),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContentType {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ContentType> for String {
    fn from(value: ContentType) -> Self {
        value.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Uploading,
    Complete,
}

/// Where a blob adapter keeps an upload's bytes (its own JSON: e.g. an S3
/// multipart upload id and its parts). Opaque to everything else.
pub type BlobState = serde_json::Value;

/// A file, finished or not, as the stores keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    pub id: FileId,
    pub owner: Username,
    pub owner_id: UserId,
    pub owner_level: Level,
    pub name: FileName,
    pub content_type: ContentType,
    /// The length announced at creation (`Upload-Length`).
    pub size: u64,
    /// How many bytes have arrived.
    pub offset: u64,
    pub status: FileStatus,
    /// Hex SHA-256 of the content, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(with = "crate::timestamp")]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::timestamp")]
    pub updated_at: OffsetDateTime,
    /// When an unfinished upload is removed (`Upload-Expires`).
    #[serde(default, with = "crate::timestamp::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The blob adapter's state for the bytes.
    #[serde(default)]
    pub blob: BlobState,
    /// Until when a request appending to the upload holds it (two appends
    /// at once would write over each other).
    #[serde(
        default,
        with = "crate::timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub lease_until: Option<OffsetDateTime>,
    /// The SHA-256 state after `offset` bytes (base64), while uploading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_state: Option<String>,
    /// +1 with every change; writes are conditional on it.
    pub version: u64,
}

impl StoredFile {
    /// Whether an append holds the upload's lease at `now` (a lease past
    /// its time is as good as given back).
    pub fn is_leased(&self, now: OffsetDateTime) -> bool {
        self.lease_until.is_some_and(|until| until > now)
    }

    /// A new upload of `size` bytes by `owner`, kept until `expires_at`.
    pub fn new_upload(
        owner: &crate::user::User,
        name: FileName,
        content_type: ContentType,
        size: u64,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
        blob: BlobState,
    ) -> Self {
        Self {
            id: FileId::new(),
            owner: owner.username.clone(),
            owner_id: owner.user_id,
            owner_level: owner.level,
            name,
            content_type,
            size,
            offset: 0,
            status: FileStatus::Uploading,
            sha256: None,
            created_at: now,
            updated_at: now,
            expires_at: Some(expires_at),
            blob,
            lease_until: None,
            digest_state: Some(RunningDigest::new().save()),
            version: 1,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.status == FileStatus::Complete
    }

    /// The running digest of the bytes so far.
    pub fn digest(&self) -> RunningDigest {
        self.digest_state
            .as_deref()
            .and_then(RunningDigest::load)
            .unwrap_or_default()
    }
}

/// SHA-256 over bytes that arrive across many requests: its state is saved
/// with the record after each one (the hash of a 2 GiB upload costs no
/// second read).
#[derive(Clone, Default)]
pub struct RunningDigest(sha2::Sha256);

impl RunningDigest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The state, base64, to store.
    pub fn save(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.serialize())
    }

    /// A state saved by [`RunningDigest::save`].
    pub fn load(saved: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(saved)
            .ok()?;
        let state = SerializedState::<sha2::Sha256>::try_from(bytes.as_slice()).ok()?;
        sha2::Sha256::deserialize(&state).ok().map(Self)
    }

    /// The hex digest of everything given.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Reading, downloading and deleting a file: its owner; an admin for a plain
/// user's file (as for tasks).
pub fn may_see_file(actor: &Actor, file: &StoredFile) -> Decision {
    if actor.user_id == file.owner_id {
        return Ok(());
    }
    match (actor.is_admin(), file.owner_level) {
        (true, Level::User) => Ok(()),
        (true, Level::Admin) => Err(Denied::Forbidden("admins cannot see other admins' files")),
        (false, _) => Err(Denied::Forbidden("you can only see your own files")),
    }
}

/// Appending to an upload: its owner only (an admin may see and delete a
/// user's upload, not write into it).
pub fn may_upload_to(actor: &Actor, file: &StoredFile) -> Decision {
    if actor.user_id == file.owner_id {
        Ok(())
    } else {
        may_see_file(actor, file)?;
        Err(Denied::Forbidden(
            "only the uploader may append to an upload",
        ))
    }
}

/// The most pairs an `Upload-Metadata` may hold (a file has a name and a
/// type; clients add a few more).
pub const MAX_METADATA_PAIRS: usize = 64;

/// tus `Upload-Metadata`: comma-separated `key base64value` pairs (the value
/// may be absent). Keys are unique; at most [`MAX_METADATA_PAIRS`]. Linear
/// in the header's length (keys are checked for duplicates in a set).
pub fn parse_upload_metadata(raw: &str) -> Result<Vec<(String, Option<String>)>, InvalidValue> {
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for pair in raw.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        if pairs.len() == MAX_METADATA_PAIRS {
            return Err(InvalidValue(format!(
                "holds more than {MAX_METADATA_PAIRS} pairs"
            )));
        }
        let (key, value) = match pair.split_once(' ') {
            Some((key, value)) => (key, Some(value.trim())),
            None => (pair, None),
        };
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(InvalidValue(format!("{key:?} is not a metadata key")));
        }
        if !seen.insert(key) {
            return Err(InvalidValue(format!("the key {key:?} appears twice")));
        }
        let value = match value {
            Some(encoded) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| InvalidValue(format!("the value of {key:?} is not base64")))?;
                Some(
                    String::from_utf8(bytes)
                        .map_err(|_| InvalidValue(format!("the value of {key:?} is not UTF-8")))?,
                )
            }
            None => None,
        };
        pairs.push((key.to_owned(), value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_digest_survives_being_saved_between_chunks() {
        let mut digest = RunningDigest::new();
        digest.update(b"hello, ");
        let saved = digest.save();
        let mut resumed = RunningDigest::load(&saved).unwrap();
        resumed.update(b"world");
        assert_eq!(
            resumed.finish(),
            hex::encode(sha2::Sha256::digest(b"hello, world"))
        );
        assert!(RunningDigest::load("not base64!").is_none());
        assert!(RunningDigest::load("AAAA").is_none());
    }

    #[test]
    fn metadata_is_parsed_as_tus_says() {
        let parsed =
            parse_upload_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
                .unwrap();
        assert_eq!(
            parsed,
            [
                ("filename".into(), Some("world_domination_plan.pdf".into())),
                ("is_confidential".into(), None)
            ]
        );
        assert!(parse_upload_metadata("filename !!!").is_err());
        assert!(parse_upload_metadata("a YQ==,a YQ==").is_err());
        // At most MAX_METADATA_PAIRS pairs, and linear however many come:
        // 95,000 distinct keys are refused at the 65th.
        let many: Vec<String> = (0..95_000).map(|i| format!("k{i} YQ==")).collect();
        let begun = std::time::Instant::now();
        assert!(parse_upload_metadata(&many.join(",")).is_err());
        assert!(begun.elapsed() < std::time::Duration::from_secs(1));
        let most: Vec<String> = (0..MAX_METADATA_PAIRS)
            .map(|i| format!("k{i} YQ=="))
            .collect();
        assert_eq!(
            parse_upload_metadata(&most.join(",")).unwrap().len(),
            MAX_METADATA_PAIRS
        );
    }

    #[test]
    fn names_and_types_are_checked() {
        assert!(FileName::parse("report.pdf").is_ok());
        for bad in ["", "  ", "a/b", "..", "tab\there", &"x".repeat(256)] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ContentType::parse("Text/CSV; charset=utf-8")
                .unwrap()
                .as_str(),
            "text/csv"
        );
        for bad in ["text", "text/", "/csv", "te xt/csv", "a/b/c"] {
            assert!(ContentType::parse(bad).is_err(), "{bad:?}");
        }
    }
}

/// `Upload-Metadata` over any input: never a panic, at most
/// [`MAX_METADATA_PAIRS`] pairs, and whatever a tus client sends (unique
/// keys, base64 values) read back exactly.
#[cfg(test)]
mod metadata_fuzz {
    use base64::Engine as _;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_text_is_metadata_or_refused(raw in "\\PC{0,256}") {
            if let Ok(pairs) = parse_upload_metadata(&raw) {
                prop_assert!(pairs.len() <= MAX_METADATA_PAIRS);
            }
        }

        #[test]
        fn what_a_client_sends_reads_back(
            pairs in proptest::collection::btree_map("[a-z][a-z0-9_.-]{0,15}", proptest::option::of("\\PC{0,40}"), 0..=MAX_METADATA_PAIRS),
        ) {
            let header: Vec<String> = pairs
                .iter()
                .map(|(key, value)| match value {
                    Some(value) => format!("{key} {}", base64::engine::general_purpose::STANDARD.encode(value)),
                    None => key.clone(),
                })
                .collect();
            let parsed = parse_upload_metadata(&header.join(",")).unwrap();
            // An empty value encodes to nothing: `key` alone, as tus has it.
            let expected: Vec<(String, Option<String>)> = pairs
                .into_iter()
                .map(|(key, value)| (key, value.filter(|v| !v.is_empty())))
                .collect();
            prop_assert_eq!(parsed, expected);
        }
    }
}
