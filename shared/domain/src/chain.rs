//! The one hash chain every log is made of: a task's events, a project's
//! and an item's entries.
//!
//! An [`Entry`] names its stream (the task, project or item it is about),
//! its place in the log (`seq`: 1, 2, 3…), when and by whom it was made, the
//! change itself, the hash of the entry before it (`prev_hash`;
//! [`GENESIS_HASH`] for the first) and its own `hash`: SHA-256 (hex) of the
//! JSON of every other field, in the order they are declared here. Editing
//! an entry breaks its hash; editing and re-hashing it breaks the next
//! entry's `prev_hash`, so [`faults`] finds either.
//!
//! The JSON form is part of the stored format (a stored hash covers it):
//! the stream's field is named by its type ([`StreamId::FIELD`]: `task_id`
//! for tasks, `stream` for projects and items), and the change's fields sit
//! beside the others (`type`, then its own).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::user::Username;

/// The `prev_hash` of a log's first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a log is about (a task, a project, an item): its id, and the name
/// of the field that holds it in the log's JSON.
pub trait StreamId: Serialize + DeserializeOwned + Clone + PartialEq {
    /// The field's name in an entry's JSON (and so in its hash).
    const FIELD: &'static str;
    /// [`Self::FIELD`] alone (what serde's struct deserialiser asks for).
    const FIELDS: &'static [&'static str] = &[Self::FIELD];
}

/// One entry of a hash-chained log about `stream`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "Id: StreamId, Change: Serialize",
    deserialize = "Id: StreamId, Change: Deserialize<'de>"
))]
pub struct Entry<Id, Change> {
    #[serde(flatten, with = "keyed")]
    pub stream: Id,
    /// 1 for the first entry, then +1 per entry.
    pub seq: u64,
    #[serde(with = "crate::timestamp")]
    pub at: OffsetDateTime,
    /// Who made the change, when a person did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Username>,
    #[serde(flatten)]
    pub change: Change,
    pub prev_hash: String,
    pub hash: String,
}

/// The fields an entry's hash covers, in a fixed order: every field but
/// `hash`, the time as [`crate::timestamp::format`] writes it.
#[derive(Serialize)]
#[serde(bound(serialize = "Id: StreamId, Change: Serialize"))]
struct Hashed<'a, Id, Change> {
    #[serde(flatten)]
    stream: Key<'a, Id>,
    seq: u64,
    at: String,
    actor: &'a Option<Username>,
    #[serde(flatten)]
    change: &'a Change,
    prev_hash: &'a str,
}

impl<Id: StreamId, Change: Serialize> Entry<Id, Change> {
    /// The first entry of a new log.
    pub fn first(stream: Id, at: OffsetDateTime, actor: Option<Username>, change: Change) -> Self {
        Self::sealed(stream, 1, at, actor, change, GENESIS_HASH.to_owned())
    }

    /// The entry that follows `self` (never earlier than it).
    pub fn next(&self, at: OffsetDateTime, actor: Option<Username>, change: Change) -> Self {
        Self::sealed(
            self.stream.clone(),
            self.seq + 1,
            at.max(self.at),
            actor,
            change,
            self.hash.clone(),
        )
    }

    /// The entry that follows the one with `seq` and `hash` (what a
    /// current-state row remembers of its last entry).
    pub fn after(
        stream: Id,
        seq: u64,
        hash: &str,
        at: OffsetDateTime,
        actor: Option<Username>,
        change: Change,
    ) -> Self {
        Self::sealed(stream, seq + 1, at, actor, change, hash.to_owned())
    }

    fn sealed(
        stream: Id,
        seq: u64,
        at: OffsetDateTime,
        actor: Option<Username>,
        change: Change,
        prev_hash: String,
    ) -> Self {
        let mut entry = Self {
            stream,
            seq,
            at,
            actor,
            change,
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry.computed_hash();
        entry
    }

    /// SHA-256 (hex) of the JSON of every field but `hash`.
    pub fn computed_hash(&self) -> String {
        let hashed = Hashed {
            stream: Key(&self.stream),
            seq: self.seq,
            at: crate::timestamp::format(self.at),
            actor: &self.actor,
            change: &self.change,
            prev_hash: &self.prev_hash,
        };
        let bytes = serde_json::to_vec(&hashed).expect("an entry always serialises");
        hex::encode(Sha256::digest(bytes))
    }
}

/// A break in a chain, at the entry with `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault<Id> {
    /// The entry is about another stream.
    Stream { seq: u64, other: Id },
    /// The entry is not where its seq says (a gap or a duplicate).
    Sequence { seq: u64, expected: u64 },
    /// The entry's hash does not match its contents (edited?).
    Hash { seq: u64 },
    /// The entry's `prev_hash` is not the hash of the entry before it
    /// (`previous`: that entry's seq, 0 for none).
    Chain { seq: u64, previous: u64 },
}

/// Every break in the chain of `entries` (a whole log, in order) about
/// `stream`, entry by entry, each entry's breaks in [`Fault`]'s order;
/// `structure` adds the log's own rules after each entry's (a creation
/// first, nothing after the end), given the entry's index.
pub fn verify<Id, Change, V>(
    stream: &Id,
    entries: &[Entry<Id, Change>],
    mut structure: impl FnMut(&mut Vec<V>, usize, &Entry<Id, Change>),
) -> Vec<V>
where
    Id: StreamId,
    Change: Serialize,
    V: From<Fault<Id>>,
{
    let mut found = Vec::new();
    let mut previous: Option<&Entry<Id, Change>> = None;
    for (i, entry) in entries.iter().enumerate() {
        let seq = entry.seq;
        if entry.stream != *stream {
            found.push(
                Fault::Stream {
                    seq,
                    other: entry.stream.clone(),
                }
                .into(),
            );
        }
        let expected = i as u64 + 1;
        if seq != expected {
            found.push(Fault::Sequence { seq, expected }.into());
        }
        if entry.hash != entry.computed_hash() {
            found.push(Fault::Hash { seq }.into());
        }
        let prev_hash = previous.map_or(GENESIS_HASH, |p| p.hash.as_str());
        if entry.prev_hash != prev_hash {
            found.push(
                Fault::Chain {
                    seq,
                    previous: previous.map_or(0, |p| p.seq),
                }
                .into(),
            );
        }
        structure(&mut found, i, entry);
        previous = Some(entry);
    }
    found
}

/// An id as a one-field map `{FIELD: id}`, flattened into an entry.
struct Key<'a, Id>(&'a Id);

impl<Id: StreamId> Serialize for Key<'_, Id> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(Id::FIELD, self.0)?;
        map.end()
    }
}

/// [`Entry::stream`]'s (de)serialisation: the id under its type's field name.
mod keyed {
    use super::*;

    pub fn serialize<Id: StreamId, S: serde::Serializer>(
        id: &Id,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        Key(id).serialize(serializer)
    }

    pub fn deserialize<'de, Id: StreamId, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Id, D::Error> {
        struct Visitor<Id>(PhantomData<Id>);
        impl<'de, Id: StreamId> serde::de::Visitor<'de> for Visitor<Id> {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an entry with a {:?} field", Id::FIELD)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Id, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == Id::FIELD && id.is_none() {
                        id = Some(map.next_value()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                id.ok_or_else(|| serde::de::Error::missing_field(Id::FIELD))
            }
        }
        // As a struct of one field: a flattened entry hands over (and
        // takes out of the rest) just that field.
        deserializer.deserialize_struct("Stream", Id::FIELDS, Visitor(PhantomData))
    }
}
