//! The Users rows of the permission matrix (docs/ARCHITECTURE.md), as plain
//! functions of who is asking and about whom. Each returns `Ok(())` or the
//! reason for refusing, which the HTTP layer turns into a 401 or 403.
//!
//! | action                  | by a user                                 | by an admin           |
//! |-------------------------|-------------------------------------------|-----------------------|
//! | create user             | 403 (open sign-up: level `user` only)     | any level             |
//! | list users              | 403                                       | yes                   |
//! | read / edit self        | yes                                       | yes                   |
//! | change own level        | 403                                       | 403                   |
//! | read / edit another     | 403                                       | yes                   |
//! | delete a user           | 403 (self only, when sign-up is open)     | yes (never the last admin: the store enforces that) |
//! | start a delay task      | yes                                       | yes                   |
//! | start a js task         | 403                                       | yes                   |
//! | see / cancel own task   | yes                                       | yes                   |
//! | … a user-level owner's  | 403                                       | yes                   |
//! | … another admin's       | 403                                       | 403                   |
//!
//! Task ownership is by account (`UserId`), so a username deleted and created
//! again does not inherit the old account's tasks; the owner's level is the
//! one recorded when the task was created.

use crate::task::{Task, TaskKind};
use crate::user::{Level, User, UserId, Username};

/// The authenticated caller, as far as permissions care: who and at what
/// level *now* (the level is read from the user record on every request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub username: Username,
    pub user_id: UserId,
    pub level: Level,
}

impl From<&User> for Actor {
    /// The account as it acts: its name, its id and its level as read now.
    fn from(user: &User) -> Self {
        Self {
            username: user.username.clone(),
            user_id: user.user_id,
            level: user.level,
        }
    }
}

impl Actor {
    pub fn is_admin(&self) -> bool {
        self.level == Level::Admin
    }

    fn is(&self, username: &Username) -> bool {
        &self.username == username
    }
}

/// Whether anyone may create an account for themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Registration {
    /// Only admins create accounts (the default).
    #[default]
    AdminOnly,
    /// Public sign-up of `user`-level accounts, and self-deletion.
    Open,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The action needs a token and none was sent.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller is known and not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The caller may not even learn that the thing exists (a project they
    /// are not a member of): answered as if it did not.
    #[error("{0}")]
    NotFound(&'static str),
}

pub type Decision = Result<(), Denied>;

/// May `actor` (or an anonymous caller) create an account at all? Checked
/// before the body is read, so a caller who may not create users learns
/// nothing from validation errors.
pub fn may_create_any_user(actor: Option<&Actor>, registration: Registration) -> Decision {
    match (actor, registration) {
        (Some(actor), _) if actor.is_admin() => Ok(()),
        (_, Registration::Open) => Ok(()),
        (None, Registration::AdminOnly) => Err(Denied::Unauthenticated(
            "creating users requires an admin token",
        )),
        (Some(_), Registration::AdminOnly) => {
            Err(Denied::Forbidden("only admins can create users"))
        }
    }
}

/// May `actor` create an account of this `level`?
pub fn may_create_user(
    actor: Option<&Actor>,
    level: Level,
    registration: Registration,
) -> Decision {
    may_create_any_user(actor, registration)?;
    match actor {
        Some(actor) if actor.is_admin() => Ok(()),
        _ if level == Level::User => Ok(()),
        _ => Err(Denied::Forbidden("only admins can create admin accounts")),
    }
}

pub fn may_list_users(actor: &Actor) -> Decision {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(Denied::Forbidden("only admins can list users"))
    }
}

/// Reading the security audit log: admins only.
pub fn may_read_security_log(actor: &Actor) -> Decision {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(Denied::Forbidden("only admins can read the security log"))
    }
}

/// Reading a user: yourself, or anyone if you are an admin. A plain user gets
/// the same answer whether or not the other account exists.
pub fn may_view_user(actor: &Actor, target: &Username) -> Decision {
    if actor.is_admin() || actor.is(target) {
        Ok(())
    } else {
        Err(Denied::Forbidden("you can only see your own account"))
    }
}

/// Editing a user. `new_level` is the level the request asks for when it
/// differs from the target's current level.
pub fn may_edit_user(actor: &Actor, target: &Username, new_level: Option<Level>) -> Decision {
    if actor.is(target) {
        return match new_level {
            Some(_) => Err(Denied::Forbidden("you cannot change your own level")),
            None => Ok(()),
        };
    }
    if actor.is_admin() {
        Ok(())
    } else {
        Err(Denied::Forbidden("you can only edit your own account"))
    }
}

pub fn may_delete_user(actor: &Actor, target: &Username, registration: Registration) -> Decision {
    if actor.is_admin() {
        return Ok(());
    }
    match (actor.is(target), registration) {
        (true, Registration::Open) => Ok(()),
        (true, Registration::AdminOnly) => Err(Denied::Forbidden(
            "only admins can delete accounts (self-deletion needs open registration)",
        )),
        (false, _) => Err(Denied::Forbidden("only admins can delete other accounts")),
    }
}

pub fn may_start_task(actor: &Actor, kind: TaskKind) -> Decision {
    match kind {
        TaskKind::Delay | TaskKind::Export => Ok(()),
        TaskKind::Js if actor.is_admin() => Ok(()),
        TaskKind::Js => Err(Denied::Forbidden("only admins can run JavaScript tasks")),
    }
}

/// Seeing, cancelling and reading the events of a task.
pub fn may_see_task(actor: &Actor, task: &Task) -> Decision {
    if actor.user_id == task.owner_id {
        return Ok(());
    }
    match (actor.is_admin(), task.owner_level) {
        (true, Level::User) => Ok(()),
        (true, Level::Admin) => Err(Denied::Forbidden("admins cannot see other admins' tasks")),
        (false, _) => Err(Denied::Forbidden("you can only see your own tasks")),
    }
}

/// Listing the tasks of `owner`.
pub fn may_list_tasks_of(actor: &Actor, owner: &User) -> Decision {
    if actor.user_id == owner.user_id {
        return Ok(());
    }
    match (actor.is_admin(), owner.level) {
        (true, Level::User) => Ok(()),
        (true, Level::Admin) => Err(Denied::Forbidden("admins cannot list other admins' tasks")),
        (false, _) => Err(Denied::Forbidden("you can only list your own tasks")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(name: &str, level: Level) -> Actor {
        Actor {
            username: Username::parse(name).unwrap(),
            user_id: UserId::new(),
            level,
        }
    }

    fn name(raw: &str) -> Username {
        Username::parse(raw).unwrap()
    }

    #[test]
    fn nobody_changes_their_own_level() {
        for level in [Level::Admin, Level::User] {
            let me = actor("me1", level);
            assert!(may_edit_user(&me, &name("me1"), Some(Level::User)).is_err());
            assert!(may_edit_user(&me, &name("me1"), None).is_ok());
        }
    }

    #[test]
    fn open_registration_creates_users_never_admins() {
        assert!(may_create_user(None, Level::User, Registration::Open).is_ok());
        assert_eq!(
            may_create_user(None, Level::Admin, Registration::Open),
            Err(Denied::Forbidden("only admins can create admin accounts"))
        );
        assert!(matches!(
            may_create_user(None, Level::User, Registration::AdminOnly),
            Err(Denied::Unauthenticated(_))
        ));
    }

    #[test]
    fn users_delete_themselves_only_when_registration_is_open() {
        let me = actor("me1", Level::User);
        assert!(may_delete_user(&me, &name("me1"), Registration::Open).is_ok());
        assert!(may_delete_user(&me, &name("me1"), Registration::AdminOnly).is_err());
        assert!(may_delete_user(&me, &name("other"), Registration::Open).is_err());
    }
}
