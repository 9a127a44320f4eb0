//! Deciding changes: given a project or item as it stands (its row) and what
//! someone asks for, the entry to append, or why not. Permission is
//! [`super::access`]'s business and is checked first; these functions guard
//! the state: the owner cannot leave, an assignee must be a member, a new
//! owner must be a project admin, an `If-Match` must name the current
//! version. A request that changes nothing appends nothing.
//!
//! Each entry chains to the row's last entry (`version`, `hash`), so two
//! concurrent decisions on the same row produce entries with the same seq,
//! and the store's conditional append lets only one of them in.

use time::OffsetDateTime;

use super::log::{
    Entry, Item, ItemChange, ItemChanges, ItemEntry, Project, ProjectChange, ProjectChanges,
    ProjectEntry,
};
use super::{Description, DueDate, ItemId, ItemStatus, ProjectId, ProjectName, ProjectRole, Title};
use crate::permission::Actor;
use crate::user::{UserId, Username};

/// Why a change cannot be made as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// 409: the owner must hand the project over before leaving it.
    #[error("the owner cannot leave the project; transfer ownership first")]
    OwnerCannotLeave,
    /// 409: the owner is always one of the project's admins; only a
    /// transfer of ownership changes that.
    #[error(
        "the owner is always an admin of the project; transfer ownership first (PATCH the project with {{\"owner\"}})"
    )]
    OwnerRoleFixed,
    /// 404: no such member.
    #[error("{0} is not a member of this project")]
    NoSuchMember(Username),
    /// 422 on `assignee`: items are assigned to members only.
    #[error("must be a member of the project")]
    AssigneeNotMember,
    /// 422 on `owner`: the owner is one of the project's admins.
    #[error("must be an admin of the project")]
    OwnerNotAdmin,
    /// 412: `If-Match` named another version than the current one.
    #[error("the item is at version {current}, not {expected}")]
    StaleVersion { expected: u64, current: u64 },
}

/// A new project, owned by `owner` (its first admin).
pub fn create_project(
    owner: &Actor,
    name: ProjectName,
    description: Option<Description>,
    at: OffsetDateTime,
) -> ProjectEntry {
    Entry::first(
        ProjectId::new(),
        at,
        Some(owner.username.clone()),
        ProjectChange::Created {
            name,
            description,
            owner: owner.username.clone(),
            owner_id: owner.user_id,
        },
    )
}

fn next_project(
    project: &Project,
    actor: &Actor,
    at: OffsetDateTime,
    change: ProjectChange,
) -> ProjectEntry {
    Entry::after(
        project.id,
        project.version,
        &project.hash,
        at.max(project.updated_at),
        Some(actor.username.clone()),
        change,
    )
}

/// Renames, redescribes or hands over `project`; `None` when nothing changes.
pub fn edit_project(
    project: &Project,
    actor: &Actor,
    changes: ProjectChanges,
    at: OffsetDateTime,
) -> Result<Option<ProjectEntry>, Refused> {
    let changes = ProjectChanges {
        name: changes.name.filter(|n| *n != project.name),
        description: changes.description.filter(|d| *d != project.description),
        owner: changes.owner.filter(|o| *o != project.owner),
    };
    if let Some(owner) = &changes.owner
        && project.role_of(owner) != Some(ProjectRole::Admin)
    {
        return Err(Refused::OwnerNotAdmin);
    }
    Ok((!changes.is_empty())
        .then(|| next_project(project, actor, at, ProjectChange::Updated(changes))))
}

/// What [`put_member`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// 201.
    Added,
    /// 200: the role changed.
    Changed,
    /// 200: already a member with that role; nothing appended.
    Unchanged,
}

/// Adds `username` with `role`, or changes their role. The owner's role
/// is not anyone's to change: a project admin could otherwise lock the
/// owner out of their own project.
pub fn put_member(
    project: &Project,
    actor: &Actor,
    username: &Username,
    user_id: UserId,
    role: ProjectRole,
    at: OffsetDateTime,
) -> Result<(Membership, Option<ProjectEntry>), Refused> {
    if *username == project.owner
        && (role != ProjectRole::Admin
            || project
                .members
                .get(username)
                .is_none_or(|owner| owner.user_id != user_id))
    {
        return Err(Refused::OwnerRoleFixed);
    }
    Ok(match project.members.get(username) {
        Some(member) if member.user_id == user_id && member.role == role => {
            (Membership::Unchanged, None)
        }
        Some(member) if member.user_id == user_id => (
            Membership::Changed,
            Some(next_project(
                project,
                actor,
                at,
                ProjectChange::MemberUpdated {
                    username: username.clone(),
                    role,
                },
            )),
        ),
        // A member of that name who is another account (deleted and created
        // again) is replaced: the old membership was the old account's.
        _ => (
            Membership::Added,
            Some(next_project(
                project,
                actor,
                at,
                ProjectChange::MemberAdded {
                    username: username.clone(),
                    user_id,
                    role,
                },
            )),
        ),
    })
}

/// Removes `username` from `project`. Their items are unassigned next, one
/// entry each ([`unassign`]).
pub fn remove_member(
    project: &Project,
    actor: &Actor,
    username: &Username,
    at: OffsetDateTime,
) -> Result<ProjectEntry, Refused> {
    if !project.members.contains_key(username) {
        return Err(Refused::NoSuchMember(username.clone()));
    }
    if *username == project.owner {
        return Err(Refused::OwnerCannotLeave);
    }
    Ok(next_project(
        project,
        actor,
        at,
        ProjectChange::MemberRemoved {
            username: username.clone(),
        },
    ))
}

/// Deletes `project`: it, its members and its items stop being served.
pub fn delete_project(project: &Project, actor: &Actor, at: OffsetDateTime) -> ProjectEntry {
    next_project(project, actor, at, ProjectChange::Deleted {})
}

/// The fields of a new item.
#[derive(Clone, Debug, PartialEq)]
pub struct NewItem {
    pub title: Title,
    pub description: Option<Description>,
    pub status: Option<ItemStatus>,
    pub due_date: Option<DueDate>,
    pub assignee: Option<Username>,
}

fn check_assignee(project: &Project, assignee: Option<&Username>) -> Result<(), Refused> {
    match assignee {
        Some(name) if !project.members.contains_key(name) => Err(Refused::AssigneeNotMember),
        _ => Ok(()),
    }
}

/// A new item in `project` (`pending` unless a status is given).
pub fn create_item(
    project: &Project,
    actor: &Actor,
    new: NewItem,
    at: OffsetDateTime,
) -> Result<ItemEntry, Refused> {
    check_assignee(project, new.assignee.as_ref())?;
    Ok(Entry::first(
        ItemId::new(),
        at,
        Some(actor.username.clone()),
        ItemChange::Created {
            project_id: project.id,
            title: new.title,
            description: new.description,
            status: new.status.unwrap_or(ItemStatus::Pending),
            due_date: new.due_date,
            assignee: new.assignee,
            created_by: actor.username.clone(),
        },
    ))
}

fn next_item(
    item: &Item,
    actor: Option<&Actor>,
    at: OffsetDateTime,
    change: ItemChange,
) -> ItemEntry {
    Entry::after(
        item.id,
        item.version,
        &item.hash,
        at.max(item.updated_at),
        actor.map(|a| a.username.clone()),
        change,
    )
}

/// Edits `item`: with `if_match`, only if it is still at that version.
/// `None` when nothing changes.
pub fn edit_item(
    project: &Project,
    item: &Item,
    actor: &Actor,
    changes: ItemChanges,
    if_match: Option<u64>,
    at: OffsetDateTime,
) -> Result<Option<ItemEntry>, Refused> {
    if let Some(expected) = if_match
        && expected != item.version
    {
        return Err(Refused::StaleVersion {
            expected,
            current: item.version,
        });
    }
    if let Some(Some(assignee)) = &changes.assignee {
        check_assignee(project, Some(assignee))?;
    }
    let changes = changes.against(item);
    Ok((!changes.is_empty())
        .then(|| next_item(item, Some(actor), at, ItemChange::Updated(changes))))
}

/// Deletes `item`.
pub fn delete_item(item: &Item, actor: &Actor, at: OffsetDateTime) -> ItemEntry {
    next_item(item, Some(actor), at, ItemChange::Deleted {})
}

/// Unassigns `item` (its assignee left the project or was deleted), on
/// behalf of `actor` (who removed them), recorded like any edit.
pub fn unassign(item: &Item, actor: Option<&Actor>, at: OffsetDateTime) -> Option<ItemEntry> {
    item.assignee.as_ref()?;
    Some(next_item(
        item,
        actor,
        at,
        ItemChange::Updated(ItemChanges {
            assignee: Some(None),
            ..ItemChanges::default()
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::Level;

    fn actor(name: &str) -> Actor {
        Actor {
            username: Username::parse(name).unwrap(),
            user_id: UserId::new(),
            level: Level::User,
        }
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    /// Given a project of olga's with mia as a member.
    fn given() -> (Actor, Actor, Vec<ProjectEntry>) {
        let (olga, mia) = (actor("olga"), actor("mia"));
        let created = create_project(&olga, ProjectName::parse("Launch").unwrap(), None, at(0));
        let project = Project::fold(std::slice::from_ref(&created)).unwrap();
        let (added, entry) = put_member(
            &project,
            &olga,
            &mia.username,
            mia.user_id,
            ProjectRole::Member,
            at(1),
        )
        .unwrap();
        assert_eq!(added, Membership::Added);
        (olga, mia, vec![created, entry.unwrap()])
    }

    fn fold(log: &[ProjectEntry]) -> Project {
        Project::fold(log).unwrap()
    }

    #[test]
    fn entries_chain_to_the_row_they_were_decided_on() {
        let (_, _, log) = given();
        assert!(super::super::log::verify_project(&log).is_empty());
        assert_eq!(fold(&log).version, 2);
    }

    #[test]
    fn the_owner_cannot_leave_and_a_non_member_cannot_be_removed() {
        let (olga, mia, log) = given();
        let project = fold(&log);
        assert_eq!(
            remove_member(&project, &olga, &olga.username, at(2)),
            Err(Refused::OwnerCannotLeave)
        );
        let nina = Username::parse("nina").unwrap();
        assert_eq!(
            remove_member(&project, &olga, &nina, at(2)),
            Err(Refused::NoSuchMember(nina))
        );
        assert!(remove_member(&project, &mia, &mia.username, at(2)).is_ok());
    }

    #[test]
    fn ownership_goes_only_to_a_project_admin() {
        let (olga, mia, mut log) = given();
        let to_mia = ProjectChanges {
            owner: Some(mia.username.clone()),
            ..ProjectChanges::default()
        };
        assert_eq!(
            edit_project(&fold(&log), &olga, to_mia.clone(), at(2)),
            Err(Refused::OwnerNotAdmin)
        );
        let (changed, promote) = put_member(
            &fold(&log),
            &olga,
            &mia.username,
            mia.user_id,
            ProjectRole::Admin,
            at(2),
        )
        .unwrap();
        assert_eq!(changed, Membership::Changed);
        log.push(promote.unwrap());
        log.push(
            edit_project(&fold(&log), &olga, to_mia, at(3))
                .unwrap()
                .unwrap(),
        );
        assert_eq!(fold(&log).owner, mia.username);
        // Asking again for what already is appends nothing.
        let (same, none) = put_member(
            &fold(&log),
            &olga,
            &mia.username,
            mia.user_id,
            ProjectRole::Admin,
            at(4),
        )
        .unwrap();
        assert_eq!((same, none), (Membership::Unchanged, None));
        // The owner's role is fixed: not even the owner, let alone another
        // admin, can make them a plain member.
        let log_now = fold(&log);
        for by in [&olga, &mia] {
            let owner = log_now.members.get(&log_now.owner).unwrap();
            assert_eq!(
                put_member(
                    &log_now,
                    by,
                    &log_now.owner,
                    owner.user_id,
                    ProjectRole::Member,
                    at(5),
                ),
                Err(Refused::OwnerRoleFixed)
            );
        }
    }

    #[test]
    fn items_are_assigned_to_members_and_if_match_guards_edits() {
        let (olga, mia, log) = given();
        let project = fold(&log);
        let new = |assignee: &str| NewItem {
            title: Title::parse("Write the report").unwrap(),
            description: None,
            status: None,
            due_date: None,
            assignee: Some(Username::parse(assignee).unwrap()),
        };
        assert_eq!(
            create_item(&project, &olga, new("nina"), at(2)),
            Err(Refused::AssigneeNotMember)
        );
        let created = create_item(&project, &olga, new("mia"), at(2)).unwrap();
        let item = Item::fold(std::slice::from_ref(&created)).unwrap();
        assert_eq!(item.status, ItemStatus::Pending);

        let done = ItemChanges {
            status: Some(ItemStatus::Completed),
            ..ItemChanges::default()
        };
        // Two edits decided on version 1: the second, with If-Match: "1"
        // after the first landed, is refused with the current version.
        let first = edit_item(&project, &item, &mia, done.clone(), Some(1), at(3))
            .unwrap()
            .unwrap();
        let item = Item::fold(&[created.clone(), first.clone()]).unwrap();
        assert_eq!(
            edit_item(&project, &item, &olga, done.clone(), Some(1), at(4)),
            Err(Refused::StaleVersion {
                expected: 1,
                current: 2
            })
        );
        // Without If-Match, an edit that changes nothing appends nothing.
        assert_eq!(
            edit_item(&project, &item, &olga, done, None, at(4)),
            Ok(None)
        );
        // Unassigning is recorded, once.
        let unassigned = unassign(&item, Some(&olga), at(5)).unwrap();
        let item = Item::fold(&[created, first, unassigned]).unwrap();
        assert_eq!((item.assignee.clone(), item.version), (None, 3));
        assert_eq!(unassign(&item, Some(&olga), at(6)), None);
    }
}
