//! Who may do what in a project: the contract's rules as one function,
//! walked cell by cell by the tests (every action × owner, project admin,
//! member, non-member, global admin, anonymous).
//!
//! | action                         | owner | project admin | member | non-member | global admin (not a member) |
//! |--------------------------------|-------|---------------|--------|------------|-----------------------------|
//! | view project, members          | yes   | yes           | yes    | 404        | yes                         |
//! | edit name, description         | yes   | yes           | 403    | 404        | yes                         |
//! | transfer ownership             | yes   | 403           | 403    | 404        | yes                         |
//! | delete project                 | yes   | 403           | 403    | 404        | 403                         |
//! | add a member, change a role    | yes   | yes           | 403    | 404        | yes                         |
//! | remove another member          | yes   | yes           | 403    | 404        | yes                         |
//! | remove oneself                 | yes¹  | yes           | yes    | 404        | —                           |
//! | create, list, read, edit items | yes   | yes           | yes    | 404        | 403                         |
//! | export the items (csv, ndjson) | yes   | yes           | yes    | 404        | 403                         |
//! | delete an item                 | yes   | yes           | creator only | 404  | 403                         |
//! | list every project (`?all`)²   | 403   | 403           | 403    | 403        | yes                         |
//!
//! ¹ Allowed here; the owner cannot leave (409), which is a conflict of
//! state, not of permission. Anonymous callers get 401 everywhere. A member
//! is a member as an account (`UserId`): a username deleted and created again
//! is not the member it was.
//!
//! ² Not a question about one project: [`may_list_every_project`] answers
//! it by the caller's level alone.

use super::ProjectRole;
use super::log::Project;
use crate::permission::{Actor, Decision, Denied};
use crate::user::Username;

/// What someone wants to do in a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    View,
    Edit,
    TransferOwnership,
    Delete,
    /// Add a member or change one's role.
    PutMember,
    /// Remove `username` (oneself: leaving).
    RemoveMember {
        username: &'a Username,
    },
    /// Create, list, read or edit items.
    UseItems,
    /// Export the items (an export task, checked when it starts and again
    /// when it runs).
    Export,
    /// Delete an item created by `created_by`.
    DeleteItem {
        created_by: &'a Username,
    },
}

const HIDDEN: Denied = Denied::NotFound("there is no such project");

/// Whether `actor` (`None`: anonymous) may do `action` in `project`.
pub fn may(actor: Option<&Actor>, project: &Project, action: Action<'_>) -> Decision {
    let Some(actor) = actor else {
        return Err(Denied::Unauthenticated(
            "this endpoint needs a token: send Authorization: Bearer <token>",
        ));
    };
    if project.deleted {
        return Err(HIDDEN);
    }
    let role = project
        .members
        .get(&actor.username)
        .filter(|member| member.user_id == actor.user_id)
        .map(|member| member.role);
    let is_owner = role.is_some() && project.owner == actor.username;
    let global_admin = actor.is_admin();
    if role.is_none() && !global_admin {
        return Err(HIDDEN);
    }
    let project_admin = role == Some(ProjectRole::Admin);
    let allowed = match action {
        Action::View => true,
        Action::Edit | Action::PutMember => project_admin || global_admin,
        Action::TransferOwnership => is_owner || global_admin,
        Action::Delete => is_owner,
        Action::RemoveMember { username } => {
            project_admin || global_admin || (role.is_some() && *username == actor.username)
        }
        Action::UseItems | Action::Export => role.is_some(),
        Action::DeleteItem { created_by } => {
            project_admin || (role.is_some() && *created_by == actor.username)
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied::Forbidden(match action {
            Action::View | Action::UseItems => "only the project's members may do this",
            Action::Edit | Action::PutMember | Action::RemoveMember { .. } => {
                "only the project's admins may do this"
            }
            Action::TransferOwnership => {
                "only the owner or a global admin may hand the project over"
            }
            Action::Delete => "only the project's owner may delete it",
            Action::Export => "only the project's members may export its items",
            Action::DeleteItem { .. } => {
                "only the project's admins and the item's creator may delete it"
            }
        }))
    }
}

/// Whether `actor` may list every project, not only those they are a
/// member of: global admins only.
pub fn may_list_every_project(actor: &Actor) -> Decision {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(Denied::Forbidden(
            "only global admins may list every project",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::OffsetDateTime;

    use super::*;
    use crate::project::log::Member;
    use crate::project::{ProjectId, ProjectName};
    use crate::user::{Level, UserId};

    /// Everyone the matrix has a column for.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Who {
        Owner,
        ProjectAdmin,
        Member,
        NonMember,
        GlobalAdmin,
        Anonymous,
    }

    const WHO: [Who; 6] = [
        Who::Owner,
        Who::ProjectAdmin,
        Who::Member,
        Who::NonMember,
        Who::GlobalAdmin,
        Who::Anonymous,
    ];

    fn username(raw: &str) -> Username {
        Username::parse(raw).unwrap()
    }

    struct World {
        project: Project,
        actors: Vec<(Who, Option<Actor>)>,
    }

    fn world() -> World {
        let now = OffsetDateTime::UNIX_EPOCH;
        let actor = |name: &str, level| Actor {
            username: username(name),
            user_id: UserId::new(),
            level,
        };
        let owner = actor("olga", Level::User);
        let admin = actor("adam", Level::User);
        let member = actor("mia", Level::User);
        let member_of = |a: &Actor, role| {
            (
                a.username.clone(),
                Member {
                    username: a.username.clone(),
                    user_id: a.user_id,
                    role,
                    added_at: now,
                },
            )
        };
        let project = Project {
            id: ProjectId::new(),
            name: ProjectName::parse("Launch").unwrap(),
            description: None,
            owner: owner.username.clone(),
            members: BTreeMap::from([
                member_of(&owner, ProjectRole::Admin),
                member_of(&admin, ProjectRole::Admin),
                member_of(&member, ProjectRole::Member),
            ]),
            created_at: now,
            updated_at: now,
            version: 3,
            hash: String::new(),
            deleted: false,
        };
        World {
            project,
            actors: vec![
                (Who::Owner, Some(owner)),
                (Who::ProjectAdmin, Some(admin)),
                (Who::Member, Some(member)),
                (Who::NonMember, Some(actor("nina", Level::User))),
                (Who::GlobalAdmin, Some(actor("root", Level::Admin))),
                (Who::Anonymous, None),
            ],
        }
    }

    /// 200 allowed, 401, 403, 404.
    fn status(decision: Decision) -> u16 {
        match decision {
            Ok(()) => 200,
            Err(Denied::Unauthenticated(_)) => 401,
            Err(Denied::Forbidden(_)) => 403,
            Err(Denied::NotFound(_)) => 404,
        }
    }

    /// A row of the matrix: the action, as it is built for each caller.
    #[derive(Clone, Copy, Debug)]
    enum Row {
        View,
        Edit,
        TransferOwnership,
        Delete,
        PutMember,
        RemoveAnotherMember,
        RemoveOneself,
        UseItems,
        Export,
        DeleteOwnItem,
        DeleteOwnersItem,
    }

    fn action<'a>(
        row: Row,
        me: &'a Username,
        adam: &'a Username,
        olga: &'a Username,
    ) -> Action<'a> {
        match row {
            Row::View => Action::View,
            Row::Edit => Action::Edit,
            Row::TransferOwnership => Action::TransferOwnership,
            Row::Delete => Action::Delete,
            Row::PutMember => Action::PutMember,
            Row::RemoveAnotherMember => Action::RemoveMember { username: adam },
            Row::RemoveOneself => Action::RemoveMember { username: me },
            Row::UseItems => Action::UseItems,
            Row::Export => Action::Export,
            Row::DeleteOwnItem => Action::DeleteItem { created_by: me },
            Row::DeleteOwnersItem => Action::DeleteItem { created_by: olga },
        }
    }

    /// Every action × every kind of caller, with the status the HTTP layer
    /// answers (in the order of [`WHO`]).
    #[test]
    fn the_matrix_cell_by_cell() {
        let world = world();
        const TABLE: [(Row, [u16; 6]); 11] = [
            (Row::View, [200, 200, 200, 404, 200, 401]),
            (Row::Edit, [200, 200, 403, 404, 200, 401]),
            (Row::TransferOwnership, [200, 403, 403, 404, 200, 401]),
            (Row::Delete, [200, 403, 403, 404, 403, 401]),
            (Row::PutMember, [200, 200, 403, 404, 200, 401]),
            // Removing adam (for adam himself that is leaving).
            (Row::RemoveAnotherMember, [200, 200, 403, 404, 200, 401]),
            (Row::RemoveOneself, [200, 200, 200, 404, 200, 401]),
            (Row::UseItems, [200, 200, 200, 404, 403, 401]),
            (Row::Export, [200, 200, 200, 404, 403, 401]),
            (Row::DeleteOwnItem, [200, 200, 200, 404, 403, 401]),
            (Row::DeleteOwnersItem, [200, 200, 403, 404, 403, 401]),
        ];
        let (adam, olga, nobody) = (username("adam"), username("olga"), username("nobody"));
        for (row, expected) in TABLE {
            for (column, (who, actor)) in world.actors.iter().enumerate() {
                assert_eq!(WHO[column], *who);
                let me = actor.as_ref().map_or(&nobody, |a| &a.username);
                let decision = may(
                    actor.as_ref(),
                    &world.project,
                    action(row, me, &adam, &olga),
                );
                assert_eq!(status(decision), expected[column], "{row:?} by {who:?}");
            }
        }
    }

    #[test]
    fn only_global_admins_list_every_project() {
        for (who, actor) in world().actors {
            let Some(actor) = actor else { continue };
            let expected = if who == Who::GlobalAdmin { 200 } else { 403 };
            assert_eq!(status(may_list_every_project(&actor)), expected, "{who:?}");
        }
    }

    #[test]
    fn a_recreated_username_is_not_the_member_it_was() {
        let world = world();
        let impostor = Actor {
            username: username("mia"),
            user_id: UserId::new(),
            level: Level::User,
        };
        for action in [Action::View, Action::UseItems, Action::Export] {
            assert_eq!(
                status(may(Some(&impostor), &world.project, action)),
                404,
                "{action:?}"
            );
        }
    }

    #[test]
    fn a_deleted_project_is_hidden_from_everyone() {
        let mut world = world();
        world.project.deleted = true;
        for (who, actor) in &world.actors {
            if *who != Who::Anonymous {
                assert_eq!(
                    status(may(actor.as_ref(), &world.project, Action::View)),
                    404
                );
            }
        }
    }
}
