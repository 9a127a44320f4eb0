//! The event logs of projects and items, and the folds that make state.
//!
//! Every change is an [`Entry`] appended to a log: one log per project (the
//! project itself and its memberships) and one per item. Entries are
//! hash-chained like a task's events (each carries the previous one's
//! hash), so `audit verify` can prove a log was not edited, and the
//! current-state rows the stores keep can be rebuilt from the logs and
//! compared ([`Project::fold`], [`Item::fold`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Description, DueDate, ItemId, ItemStatus, ProjectId, ProjectName, ProjectRole, Title};
use crate::user::{UserId, Username};

pub use crate::chain::Entry;

impl crate::chain::StreamId for ProjectId {
    const FIELD: &'static str = "stream";
}

impl crate::chain::StreamId for ItemId {
    const FIELD: &'static str = "stream";
}

/// `Option<Option<T>>` as JSON: absent = unchanged, `null` = cleared.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

/// What changed in a project's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ProjectChange {
    /// The project was created; its owner is its first admin.
    Created {
        name: ProjectName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<Description>,
        owner: Username,
        owner_id: UserId,
    },
    /// Its name, description or owner changed (only the fields given).
    Updated(ProjectChanges),
    MemberAdded {
        username: Username,
        user_id: UserId,
        role: ProjectRole,
    },
    MemberUpdated {
        username: Username,
        role: ProjectRole,
    },
    MemberRemoved {
        username: Username,
    },
    /// The project, its members and items are no longer served.
    Deleted {},
}

/// The fields of a project that an `updated` entry changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ProjectName>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub description: Option<Option<Description>>,
    /// The new owner (already a project admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Username>,
}

impl ProjectChanges {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.description.is_none() && self.owner.is_none()
    }
}

/// What changed in an item's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ItemChange {
    Created {
        project_id: ProjectId,
        title: Title,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<Description>,
        status: ItemStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due_date: Option<DueDate>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignee: Option<Username>,
        created_by: Username,
    },
    /// The fields given changed (`null`: cleared).
    Updated(ItemChanges),
    Deleted {},
}

/// The fields of an item that an `updated` entry changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Title>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub description: Option<Option<Description>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ItemStatus>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub due_date: Option<Option<DueDate>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub assignee: Option<Option<Username>>,
}

impl ItemChanges {
    /// Only the changes that differ from `item`: an edit that changes
    /// nothing appends nothing.
    pub fn against(self, item: &Item) -> Self {
        Self {
            title: self.title.filter(|t| *t != item.title),
            description: self.description.filter(|d| *d != item.description),
            status: self.status.filter(|s| *s != item.status),
            due_date: self.due_date.filter(|d| *d != item.due_date),
            assignee: self.assignee.filter(|a| *a != item.assignee),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.status.is_none()
            && self.due_date.is_none()
            && self.assignee.is_none()
    }
}

pub type ProjectEntry = Entry<ProjectId, ProjectChange>;
pub type ItemEntry = Entry<ItemId, ItemChange>;

/// A project member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub username: Username,
    pub user_id: UserId,
    pub role: ProjectRole,
    #[serde(with = "crate::timestamp")]
    pub added_at: OffsetDateTime,
}

/// A project as it stands: the fold of its log. Stores keep it as the
/// project's current-state row (serialised whole), written with each entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: ProjectName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    pub owner: Username,
    pub members: BTreeMap<Username, Member>,
    #[serde(with = "crate::timestamp")]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::timestamp")]
    pub updated_at: OffsetDateTime,
    /// The seq of the last entry.
    pub version: u64,
    /// The hash of the last entry: the next one chains to it.
    pub hash: String,
    pub deleted: bool,
}

impl Project {
    /// The state `entries` (in seq order) fold to; `None` when the log does
    /// not start with a creation.
    pub fn fold(entries: &[ProjectEntry]) -> Option<Self> {
        let (first, rest) = entries.split_first()?;
        let ProjectChange::Created {
            name,
            description,
            owner,
            owner_id,
        } = &first.change
        else {
            return None;
        };
        let mut project = Self {
            id: first.stream,
            name: name.clone(),
            description: description.clone(),
            owner: owner.clone(),
            members: BTreeMap::from([(
                owner.clone(),
                Member {
                    username: owner.clone(),
                    user_id: *owner_id,
                    role: ProjectRole::Admin,
                    added_at: first.at,
                },
            )]),
            created_at: first.at,
            updated_at: first.at,
            version: first.seq,
            hash: first.hash.clone(),
            deleted: false,
        };
        for entry in rest {
            project.apply(entry);
        }
        Some(project)
    }

    /// The project after `entry` (the next entry of its log).
    pub fn apply(&mut self, entry: &ProjectEntry) {
        match &entry.change {
            ProjectChange::Created { .. } => {}
            ProjectChange::Updated(changes) => {
                if let Some(name) = &changes.name {
                    self.name = name.clone();
                }
                if let Some(description) = &changes.description {
                    self.description = description.clone();
                }
                if let Some(owner) = &changes.owner {
                    self.owner = owner.clone();
                }
            }
            ProjectChange::MemberAdded {
                username,
                user_id,
                role,
            } => {
                self.members.insert(
                    username.clone(),
                    Member {
                        username: username.clone(),
                        user_id: *user_id,
                        role: *role,
                        added_at: entry.at,
                    },
                );
            }
            ProjectChange::MemberUpdated { username, role } => {
                if let Some(member) = self.members.get_mut(username) {
                    member.role = *role;
                }
            }
            ProjectChange::MemberRemoved { username } => {
                self.members.remove(username);
            }
            ProjectChange::Deleted {} => self.deleted = true,
        }
        self.updated_at = entry.at;
        self.version = entry.seq;
        self.hash = entry.hash.clone();
    }

    /// `username`'s role here, if a member.
    pub fn role_of(&self, username: &Username) -> Option<ProjectRole> {
        self.members.get(username).map(|m| m.role)
    }
}

/// A work item as it stands: the fold of its log. Stores keep it as the
/// item's current-state row (serialised whole), written with each entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: ItemId,
    pub project_id: ProjectId,
    pub title: Title,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    pub status: ItemStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<DueDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<Username>,
    pub created_by: Username,
    #[serde(with = "crate::timestamp")]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::timestamp")]
    pub updated_at: OffsetDateTime,
    /// The seq of the last entry: grows by one with every change (the ETag).
    pub version: u64,
    /// The hash of the last entry: the next one chains to it.
    pub hash: String,
    pub deleted: bool,
}

impl Item {
    /// The state `entries` (in seq order) fold to; `None` when the log does
    /// not start with a creation.
    pub fn fold(entries: &[ItemEntry]) -> Option<Self> {
        let (first, rest) = entries.split_first()?;
        let ItemChange::Created {
            project_id,
            title,
            description,
            status,
            due_date,
            assignee,
            created_by,
        } = &first.change
        else {
            return None;
        };
        let mut item = Self {
            id: first.stream,
            project_id: *project_id,
            title: title.clone(),
            description: description.clone(),
            status: *status,
            due_date: *due_date,
            assignee: assignee.clone(),
            created_by: created_by.clone(),
            created_at: first.at,
            updated_at: first.at,
            version: first.seq,
            hash: first.hash.clone(),
            deleted: false,
        };
        for entry in rest {
            item.apply(entry);
        }
        Some(item)
    }

    /// The item after `entry` (the next entry of its log).
    pub fn apply(&mut self, entry: &ItemEntry) {
        match &entry.change {
            ItemChange::Created { .. } => {}
            ItemChange::Updated(changes) => {
                if let Some(title) = &changes.title {
                    self.title = title.clone();
                }
                if let Some(description) = &changes.description {
                    self.description = description.clone();
                }
                if let Some(status) = changes.status {
                    self.status = status;
                }
                if let Some(due_date) = changes.due_date {
                    self.due_date = due_date;
                }
                if let Some(assignee) = &changes.assignee {
                    self.assignee = assignee.clone();
                }
            }
            ItemChange::Deleted {} => self.deleted = true,
        }
        self.updated_at = entry.at;
        self.version = entry.seq;
        self.hash = entry.hash.clone();
    }
}

/// What is wrong with a log: the same checks as a task's log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("entry {seq} has seq out of order (expected {expected})")]
    Sequence { seq: u64, expected: u64 },
    #[error("entry {seq} names another stream")]
    Stream { seq: u64 },
    #[error("entry {seq} does not chain to the one before it")]
    Chain { seq: u64 },
    #[error("entry {seq}'s hash does not match its content")]
    Hash { seq: u64 },
    #[error("the log does not start with a creation")]
    NoCreation,
    #[error("entry {seq} comes after the deletion")]
    AfterDeletion { seq: u64 },
}

impl<Id> From<crate::chain::Fault<Id>> for Broken {
    fn from(fault: crate::chain::Fault<Id>) -> Self {
        use crate::chain::Fault;
        match fault {
            Fault::Stream { seq, .. } => Self::Stream { seq },
            Fault::Sequence { seq, expected } => Self::Sequence { seq, expected },
            Fault::Hash { seq } => Self::Hash { seq },
            Fault::Chain { seq, .. } => Self::Chain { seq },
        }
    }
}

/// Checks a log: the chain ([`crate::chain::verify`]: seqs 1, 2, 3…, one
/// stream, each entry chained to the one before and hashed over its own
/// content), a creation first, nothing after a deletion. `is_creation` and
/// `is_deletion` say which changes those are.
pub fn verify<Id, Change>(
    entries: &[Entry<Id, Change>],
    is_creation: impl Fn(&Change) -> bool,
    is_deletion: impl Fn(&Change) -> bool,
) -> Vec<Broken>
where
    Id: crate::chain::StreamId,
    Change: Serialize,
{
    let mut broken = Vec::new();
    if entries.first().is_none_or(|e| !is_creation(&e.change)) {
        broken.push(Broken::NoCreation);
    }
    let Some(first) = entries.first() else {
        return broken;
    };
    let mut deleted = false;
    broken.extend(crate::chain::verify(
        &first.stream,
        entries,
        |broken: &mut Vec<Broken>, _, entry| {
            if deleted {
                broken.push(Broken::AfterDeletion { seq: entry.seq });
            }
            deleted |= is_deletion(&entry.change);
        },
    ));
    broken
}

/// [`verify`] for a project's log.
pub fn verify_project(entries: &[ProjectEntry]) -> Vec<Broken> {
    verify(
        entries,
        |c| matches!(c, ProjectChange::Created { .. }),
        |c| matches!(c, ProjectChange::Deleted {}),
    )
}

/// [`verify`] for an item's log.
pub fn verify_item(entries: &[ItemEntry]) -> Vec<Broken> {
    verify(
        entries,
        |c| matches!(c, ItemChange::Created { .. }),
        |c| matches!(c, ItemChange::Deleted {}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> Username {
        Username::parse(raw).unwrap()
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    fn created_item() -> ItemEntry {
        Entry::first(
            ItemId::new(),
            at(0),
            Some(name("alice")),
            ItemChange::Created {
                project_id: ProjectId::new(),
                title: Title::parse("Write the report").unwrap(),
                description: None,
                status: ItemStatus::Pending,
                due_date: Some(DueDate::parse("2026-12-01").unwrap()),
                assignee: Some(name("bob")),
                created_by: name("alice"),
            },
        )
    }

    #[test]
    fn an_item_folds_from_its_log_and_its_version_counts_the_changes() {
        let first = created_item();
        let second = first.next(
            at(5),
            Some(name("bob")),
            ItemChange::Updated(ItemChanges {
                status: Some(ItemStatus::InProgress),
                assignee: Some(None),
                ..ItemChanges::default()
            }),
        );
        let item = Item::fold(&[first.clone(), second.clone()]).unwrap();
        assert_eq!(item.status, ItemStatus::InProgress);
        assert_eq!(item.assignee, None);
        assert_eq!(item.version, 2);
        assert_eq!(item.updated_at, at(5));
        assert_eq!(item.created_by, name("alice"));
        assert!(verify_item(&[first, second]).is_empty());
    }

    #[test]
    fn a_cleared_field_and_an_unchanged_one_serialise_differently() {
        let changes = ItemChanges {
            assignee: Some(None),
            ..ItemChanges::default()
        };
        let json = serde_json::to_value(ItemChange::Updated(changes.clone())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "updated", "data": {"assignee": null}})
        );
        let back: ItemChange = serde_json::from_value(json).unwrap();
        assert_eq!(back, ItemChange::Updated(changes));
    }

    #[test]
    fn an_edited_or_reordered_log_is_caught() {
        let first = created_item();
        let second = first.next(at(1), None, ItemChange::Deleted {});
        let mut edited = second.clone();
        edited.actor = Some(name("mallory"));
        assert_eq!(
            verify_item(&[first.clone(), edited]),
            vec![Broken::Hash { seq: 2 }]
        );
        let third = second.next(at(2), None, ItemChange::Updated(ItemChanges::default()));
        assert_eq!(
            verify_item(&[first.clone(), second.clone(), third]),
            vec![Broken::AfterDeletion { seq: 3 }]
        );
        assert!(verify_item(&[second]).contains(&Broken::NoCreation));
    }

    #[test]
    fn a_project_folds_its_members_and_owner() {
        let id = ProjectId::new();
        let first = Entry::first(
            id,
            at(0),
            Some(name("alice")),
            ProjectChange::Created {
                name: ProjectName::parse("Launch").unwrap(),
                description: None,
                owner: name("alice"),
                owner_id: UserId::new(),
            },
        );
        let added = first.next(
            at(1),
            Some(name("alice")),
            ProjectChange::MemberAdded {
                username: name("bob"),
                user_id: UserId::new(),
                role: ProjectRole::Member,
            },
        );
        let promoted = added.next(
            at(2),
            Some(name("alice")),
            ProjectChange::MemberUpdated {
                username: name("bob"),
                role: ProjectRole::Admin,
            },
        );
        let handed_over = promoted.next(
            at(3),
            Some(name("alice")),
            ProjectChange::Updated(ProjectChanges {
                owner: Some(name("bob")),
                ..ProjectChanges::default()
            }),
        );
        let left = handed_over.next(
            at(4),
            Some(name("alice")),
            ProjectChange::MemberRemoved {
                username: name("alice"),
            },
        );
        let log = [first, added, promoted, handed_over, left];
        let project = Project::fold(&log).unwrap();
        assert_eq!(project.owner, name("bob"));
        assert_eq!(project.role_of(&name("bob")), Some(ProjectRole::Admin));
        assert_eq!(project.role_of(&name("alice")), None);
        assert_eq!((project.version, project.updated_at), (5, at(4)));
        assert!(verify_project(&log).is_empty());
    }
}
