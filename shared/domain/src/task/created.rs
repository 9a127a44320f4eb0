//! The `created` event: the task's [`TaskSpec`], whose it is, and what the
//! engines need to run it.
//!
//! In Rust it holds the spec itself, so a delay always has its seconds and
//! nothing else, a script its code, an export what it writes. Its stored
//! form is older than that and cannot change (a stored hash covers it): the
//! kind, then each kind's field beside the others (`seconds`, `code`,
//! `export`, whichever the kind has), then the owner and the rest.
//! [`StoredCreated`] is that form, written from a borrowed [`TaskCreated`]
//! and read back into one, field for field in the same order, so a stored
//! `created` writes out again byte for byte.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use super::{Export, TaskKind, TaskSpec};
use crate::user::{Level, UserId, Username};

/// What the `created` event records.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskCreated {
    /// What to run.
    pub spec: TaskSpec,
    pub owner: Username,
    pub owner_id: UserId,
    /// The owner's level when the task was created; visibility rules use it.
    pub owner_level: Level,
    /// When a delay is due (created + seconds); `None` for other kinds.
    pub due_at: Option<OffsetDateTime>,
    /// The engine meant to run it (`local:<engine id>` for a local server,
    /// `step-functions` on AWS), so that a local server sharing a
    /// deployment's tables recovers only its own tasks. Absent in tasks
    /// created before it was recorded.
    pub engine: Option<String>,
}

/// The stored form of [`TaskCreated`]. The fields' order and names are the
/// stored format's; never reorder or rename them.
#[derive(Serialize, Deserialize)]
struct StoredCreated<'a> {
    kind: TaskKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    export: Option<Cow<'a, Export>>,
    owner: Cow<'a, Username>,
    owner_id: UserId,
    owner_level: Level,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::option"
    )]
    due_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    engine: Option<Cow<'a, str>>,
}

impl<'a> From<&'a TaskCreated> for StoredCreated<'a> {
    fn from(created: &'a TaskCreated) -> Self {
        let (mut seconds, mut code, mut export) = (None, None, None);
        match &created.spec {
            TaskSpec::Delay { seconds: s } => seconds = Some(*s),
            TaskSpec::Js { code: c } => code = Some(Cow::Borrowed(c.as_str())),
            TaskSpec::Export(e) => export = Some(Cow::Borrowed(e)),
        }
        Self {
            kind: created.spec.kind(),
            seconds,
            code,
            export,
            owner: Cow::Borrowed(&created.owner),
            owner_id: created.owner_id,
            owner_level: created.owner_level,
            due_at: created.due_at,
            engine: created.engine.as_deref().map(Cow::Borrowed),
        }
    }
}

impl TryFrom<StoredCreated<'_>> for TaskCreated {
    type Error = String;

    /// The spec from the kind and its field. A field of another kind is
    /// refused rather than dropped: dropping it would write out different
    /// bytes than were stored, and the event would no longer match its hash.
    fn try_from(stored: StoredCreated<'_>) -> Result<Self, Self::Error> {
        let kind = stored.kind;
        let strays = [
            (
                "seconds",
                kind != TaskKind::Delay && stored.seconds.is_some(),
            ),
            ("code", kind != TaskKind::Js && stored.code.is_some()),
            (
                "export",
                kind != TaskKind::Export && stored.export.is_some(),
            ),
        ];
        if let Some((field, _)) = strays.iter().find(|(_, stray)| *stray) {
            return Err(format!("a task of kind {} has no {field}", kind.as_str()));
        }
        let missing = |field: &str| format!("a task of kind {} needs its {field}", kind.as_str());
        let spec = match kind {
            TaskKind::Delay => TaskSpec::Delay {
                seconds: stored.seconds.ok_or_else(|| missing("seconds"))?,
            },
            TaskKind::Js => TaskSpec::Js {
                code: stored.code.ok_or_else(|| missing("code"))?.into_owned(),
            },
            TaskKind::Export => {
                TaskSpec::Export(stored.export.ok_or_else(|| missing("export"))?.into_owned())
            }
        };
        Ok(Self {
            spec,
            owner: stored.owner.into_owned(),
            owner_id: stored.owner_id,
            owner_level: stored.owner_level,
            due_at: stored.due_at,
            engine: stored.engine.map(Cow::into_owned),
        })
    }
}

impl Serialize for TaskCreated {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredCreated::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TaskCreated {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        StoredCreated::deserialize(deserializer)?
            .try_into()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(data: serde_json::Value) -> serde_json::Value {
        let mut fields = json!({
            "owner": "alice",
            "owner_id": "0bdbd1d9-6150-412a-a953-d8954f70cb91",
            "owner_level": "user",
        });
        fields
            .as_object_mut()
            .unwrap()
            .extend(data.as_object().unwrap().clone());
        fields
    }

    #[test]
    fn each_kind_reads_into_its_own_spec() {
        let rows = [
            (json!({"kind": "delay", "seconds": 1.5}), TaskKind::Delay),
            (json!({"kind": "js", "code": "1"}), TaskKind::Js),
            (
                json!({"kind": "export", "export": {"format": "csv", "project": "01a24237-ac42-7279-b730-476c47f8c3af"}}),
                TaskKind::Export,
            ),
        ];
        for (data, kind) in rows {
            let created: TaskCreated = serde_json::from_value(stored(data.clone())).unwrap();
            assert_eq!(created.spec.kind(), kind, "{data}");
        }
    }

    #[test]
    fn a_kind_without_its_field_or_with_another_kinds_is_refused() {
        let project = json!({"format": "csv", "project": "01a24237-ac42-7279-b730-476c47f8c3af"});
        let rows = [
            (
                json!({"kind": "delay"}),
                "a task of kind delay needs its seconds",
            ),
            (json!({"kind": "js"}), "a task of kind js needs its code"),
            (
                json!({"kind": "export"}),
                "a task of kind export needs its export",
            ),
            (
                json!({"kind": "delay", "seconds": 1.0, "code": "1"}),
                "a task of kind delay has no code",
            ),
            (
                json!({"kind": "js", "code": "1", "seconds": 1.0}),
                "a task of kind js has no seconds",
            ),
            (
                json!({"kind": "js", "code": "1", "export": project}),
                "a task of kind js has no export",
            ),
            (
                json!({"kind": "export", "export": project, "code": "1"}),
                "a task of kind export has no code",
            ),
        ];
        for (data, expected) in rows {
            let error = serde_json::from_value::<TaskCreated>(stored(data.clone()))
                .unwrap_err()
                .to_string();
            assert_eq!(error, expected, "{data}");
        }
    }
}
