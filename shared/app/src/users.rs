//! Accounts: create (by an admin, or by anyone when registration is open),
//! list, read, edit (password, level, e-mail, profile), delete.
//!
//! The Users rows of the permission matrix decide
//! ([`permission`]); the store guards the rest (a taken username or
//! e-mail, the last admin). An edit goes through [`conflict::change`] on
//! the account (`Account`), re-deciding on the fresh account after a
//! lost race; what changed goes to the security log.

use std::collections::HashSet;

use async_trait::async_trait;
use taskgate_domain::password::{Password, PasswordHash};
use taskgate_domain::permission::Denied;
use taskgate_domain::permission::{self, Actor, Registration};
use taskgate_domain::ports::{Page, Store, StoreError};
use taskgate_domain::project::commands::Refused;
use taskgate_domain::security::{SecurityEvent, SecurityKind};
use taskgate_domain::token::TokenId;
use taskgate_domain::user::{Email, Level, Profile, User, UserChanges, Username};

use crate::Error;
use crate::audit;
use crate::conflict::{self, Aggregate};
use crate::items;
use crate::ports::Ports;
use crate::projects;

/// Hashes new passwords: slow and memory-hungry by design, so the
/// transport runs it where it bounds how many run at once.
#[async_trait]
pub trait Hashing: Send + Sync {
    async fn hash(&self, password: Password) -> Result<PasswordHash, Error>;
}

/// An account by its username: what edits and deletion read and write.
struct Account<'a> {
    store: &'a dyn Store,
    username: &'a Username,
}

/// What a decision about an account writes.
enum Write {
    /// This account in place of the one read (the next version).
    Replace(User),
    Delete,
}

impl Aggregate for Account<'_> {
    type State = User;
    type Change = Write;
    type Error = Error;

    async fn load(&self) -> Result<User, Error> {
        stored(self.store, self.username).await
    }

    /// A deletion leaves the account as it was when deleted.
    async fn append(&self, current: &User, write: Write) -> Result<User, StoreError> {
        match write {
            Write::Replace(next) => {
                self.store.update_user(current, &next).await?;
                Ok(next)
            }
            Write::Delete => {
                self.store.delete_user(current).await?;
                Ok(current.clone())
            }
        }
    }
}

/// The stored account named `username`.
async fn stored(store: &dyn Store, username: &Username) -> Result<User, Error> {
    store
        .get_user(username)
        .await?
        .ok_or_else(|| Error::NoSuchUser(username.clone()))
}

/// Whether `actor` (`None`: anonymous) may create accounts at all: asked
/// before the new account's fields are read, so who may not learns
/// nothing from them.
pub fn may_create(actor: Option<&Actor>, registration: Registration) -> Result<(), Error> {
    Ok(permission::may_create_any_user(actor, registration)?)
}

/// A new account's fields.
pub struct NewUser {
    pub username: Username,
    pub password: Password,
    /// `user` unless given.
    pub level: Option<Level>,
    pub email: Option<Email>,
    pub profile: Option<Profile>,
}

/// Creates an account, by `actor` (`None`: open sign-up) for request
/// `request_id` (the security log names it).
pub async fn create(
    ports: Ports<'_>,
    hasher: &dyn Hashing,
    actor: Option<&Actor>,
    registration: Registration,
    new: NewUser,
    request_id: &str,
) -> Result<User, Error> {
    let level = new.level.unwrap_or(Level::User);
    permission::may_create_user(actor, level, registration)?;
    let hash = hasher.hash(new.password).await?;
    let user = User::new(new.username, hash, level, new.email, new.profile);
    match ports.store.insert_user(&user).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists) => return Err(Error::UsernameTaken(user.username)),
        Err(e) => return Err(e.into()),
    }
    let by = actor.map(|a| &a.username);
    let event = SecurityEvent::new(SecurityKind::UserCreated, by, user.username.as_str())
        .with("level", user.level.as_str());
    audit::record(ports.store, request_id, event).await;
    tracing::info!(username = %user.username, level = %user.level, by = ?by.map(Username::as_str), "user created");
    Ok(user)
}

/// Whether `actor` may list accounts (admins), asked before the listing's
/// parameters are read.
pub fn may_list(actor: &Actor) -> Result<(), Error> {
    Ok(permission::may_list_users(actor)?)
}

/// Up to `limit` accounts, in username order after `after`.
pub async fn list(
    ports: Ports<'_>,
    actor: &Actor,
    after: Option<&Username>,
    limit: usize,
) -> Result<Page<User, Username>, Error> {
    may_list(actor)?;
    Ok(ports.store.list_users(after, limit).await?)
}

/// The account `target`, as `caller` (the account just authenticated, as
/// read) may see it: their own, or anyone's for an admin.
pub async fn get(ports: Ports<'_>, caller: User, target: &Username) -> Result<User, Error> {
    permission::may_view_user(&Actor::from(&caller), target)?;
    if *target == caller.username {
        return Ok(caller);
    }
    stored(ports.store, target).await
}

/// Whether `actor` may edit `target` at all (themself, or anyone as an
/// admin), asked before the edit is read.
pub fn may_edit(actor: &Actor, target: &Username) -> Result<(), Error> {
    Ok(permission::may_edit_user(actor, target, None)?)
}

/// An edit of an account: the fields to change (`None`: leave alone;
/// `Some(None)`: clear).
#[derive(Default)]
pub struct UserEdit {
    pub password: Option<Password>,
    pub level: Option<Level>,
    pub email: Option<Option<Email>>,
    pub profile: Option<Option<Profile>>,
}

/// Edits account `target` on behalf of `actor`, whose session is `token`;
/// the account as it now is. Nobody changes their own level. A new
/// password revokes the account's other tokens (the caller's own session
/// survives a change of their own password).
pub async fn edit(
    ports: Ports<'_>,
    hasher: &dyn Hashing,
    actor: &Actor,
    token: &TokenId,
    target: &Username,
    edit: UserEdit,
    request_id: &str,
) -> Result<User, Error> {
    may_edit(actor, target)?;
    let password_changed = edit.password.is_some();
    let named: Vec<&str> = [
        ("password", password_changed),
        ("level", edit.level.is_some()),
        ("email", edit.email.is_some()),
        ("profile", edit.profile.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    let changes = UserChanges {
        password_hash: match edit.password {
            Some(password) => Some(hasher.hash(password).await?),
            None => None,
        },
        level: edit.level,
        email: edit.email,
        profile: edit.profile,
    };
    let account = Account {
        store: ports.store,
        username: target,
    };
    let edited = conflict::change(&account, |current| {
        let new_level = changes.level.filter(|level| *level != current.level);
        permission::may_edit_user(actor, target, new_level)?;
        Ok((new_level, changes.apply_to(current).map(Write::Replace)))
    })
    .await?;
    if !edited.appended {
        return Ok(edited.state);
    }
    let mut event = SecurityEvent::new(
        SecurityKind::UserUpdated,
        Some(&actor.username),
        target.as_str(),
    )
    .with("fields", named);
    if let Some(level) = edited.decided {
        event = event.with("level", level.as_str());
    }
    if password_changed {
        // Other sessions end with the old password.
        let keep = (actor.username == *target).then_some(token);
        match ports.store.delete_user_tokens(target, keep).await {
            Ok(revoked) => {
                event = event.with("tokens_revoked", revoked);
                tracing::info!(username = %target, revoked, "password changed, tokens revoked");
            }
            Err(e) => {
                // The change has landed: the log says so, whatever the
                // caller is told.
                audit::record(ports.store, request_id, event).await;
                return Err(e.into());
            }
        }
    }
    audit::record(ports.store, request_id, event).await;
    tracing::info!(username = %target, by = %actor.username, "user updated");
    Ok(edited.state)
}

/// Deletes account `target` (admins; the account itself when registration
/// is open); every token of theirs stops working. An owner hands their
/// projects over first; the last admin stays.
pub async fn delete(
    ports: Ports<'_>,
    actor: &Actor,
    target: &Username,
    registration: Registration,
    request_id: &str,
) -> Result<(), Error> {
    permission::may_delete_user(actor, target, registration)?;
    // A project always has an owner.
    let owned = ports.store.owned_projects(target).await?;
    if !owned.is_empty() {
        return Err(Error::OwnsProjects {
            user: target.clone(),
            projects: owned,
        });
    }
    let leaving = stored(ports.store, target).await?;
    if leaving.level == Level::Admin && ports.store.count_admins().await? <= 1 {
        return Err(StoreError::LastAdmin.into());
    }
    leave_every_project(ports, actor, &leaving).await?;
    let account = Account {
        store: ports.store,
        username: target,
    };
    // Decided on the account as read above; changed since, it is read again.
    conflict::change_from(&account, Some(leaving), |_| Ok(((), Some(Write::Delete)))).await?;
    tracing::info!(username = %target, by = %actor.username, "user deleted");
    // Every token of the deleted account already fails (the account is
    // gone); this removes the records too. If it fails, TTL removes them
    // later.
    let mut event = SecurityEvent::new(
        SecurityKind::UserDeleted,
        Some(&actor.username),
        target.as_str(),
    );
    match ports.store.delete_user_tokens(target, None).await {
        Ok(revoked) => event = event.with("tokens_revoked", revoked),
        Err(e) => {
            tracing::warn!(username = %target, error = %e, "could not delete the tokens of a deleted user");
        }
    }
    audit::record(ports.store, request_id, event).await;
    Ok(())
}

/// Takes `leaving` out of every project they are a member of, their items
/// there unassigned (each change recorded in its log), before the account
/// goes: a deletion that dies midway thus leaves an account without
/// memberships (delete it again), never memberships of a name that a new
/// account could take.
///
/// Each round lists their projects again and handles those not handled
/// yet; it ends when a round finds none, and every round handles at least
/// one, so it ends.
async fn leave_every_project(ports: Ports<'_>, actor: &Actor, leaving: &User) -> Result<(), Error> {
    let username = &leaving.username;
    let mut done = HashSet::new();
    loop {
        let page = ports
            .store
            .member_projects(&leaving.user_id, None, 100)
            .await?;
        let fresh: Vec<_> = page.items.iter().filter(|p| done.insert(p.id)).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        for project in fresh {
            items::unassign_all(ports, actor, &project.id, username).await?;
            match projects::remove(ports, actor, &project.id, username, Some(project.clone())).await
            {
                // Gone meanwhile, or they left it already.
                Ok(())
                | Err(
                    Error::NoSuchProject
                    | Error::Denied(Denied::NotFound(_))
                    | Error::Refused(Refused::NoSuchMember(_)),
                ) => {}
                Err(e) => return Err(e),
            }
            items::unassign_all(ports, actor, &project.id, username).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use taskgate_domain::ports::{ProjectStore, SecurityStore, UserStore};

    use super::*;
    use crate::testing::{NoHashing, World, team};

    fn new_user(name: &str, level: Option<Level>) -> NewUser {
        NewUser {
            username: Username::parse(name).unwrap(),
            password: Password::parse("correct horse battery staple", None).unwrap(),
            level,
            email: None,
            profile: None,
        }
    }

    /// Open sign-up creates users, never admins; a taken name is refused;
    /// each creation is in the security log.
    #[tokio::test]
    async fn sign_up_creates_users_once() {
        let world = World::new();
        let ports = world.ports();
        let open = Registration::Open;
        let user = create(ports, &NoHashing, None, open, new_user("alice", None), "r1")
            .await
            .unwrap();
        assert_eq!(user.level, Level::User);
        let again = create(ports, &NoHashing, None, open, new_user("Alice", None), "r2").await;
        assert!(matches!(again, Err(Error::UsernameTaken(_))), "{again:?}");
        let admin = new_user("eve", Some(Level::Admin));
        let admin = create(ports, &NoHashing, None, open, admin, "r3").await;
        assert!(matches!(admin, Err(Error::Denied(Denied::Forbidden(_)))));
        let closed = may_create(None, Registration::AdminOnly);
        assert!(matches!(
            closed,
            Err(Error::Denied(Denied::Unauthenticated(_)))
        ));

        let log = world.store.security_events(None, 10).await.unwrap();
        assert_eq!(log.items.len(), 1);
        assert_eq!(log.items[0].request_id.as_deref(), Some("r1"));
    }

    /// Nobody changes their own level; an edit that changes nothing writes
    /// nothing and logs nothing; an admin's edit lands and is logged with
    /// the new level.
    #[tokio::test]
    async fn edits_are_checked_on_the_account_as_it_is() {
        let world = World::new();
        let ports = world.ports();
        let root = world.account("root", Level::Admin).await;
        let mia = world.account("mia", Level::User).await;
        let token = TokenId::new();
        let promote = || UserEdit {
            level: Some(Level::Admin),
            ..UserEdit::default()
        };
        let own = edit(
            ports,
            &NoHashing,
            &mia,
            &token,
            &mia.username,
            promote(),
            "r",
        )
        .await;
        assert!(
            matches!(own, Err(Error::Denied(Denied::Forbidden(_)))),
            "{own:?}"
        );
        // Asking for the level one has already is no change of level.
        let same = UserEdit {
            level: Some(Level::User),
            ..UserEdit::default()
        };
        let same = edit(ports, &NoHashing, &mia, &token, &mia.username, same, "r").await;
        assert_eq!(same.unwrap().version, 1);
        assert!(
            world
                .store
                .security_events(None, 10)
                .await
                .unwrap()
                .items
                .is_empty()
        );

        let promoted = edit(
            ports,
            &NoHashing,
            &root,
            &token,
            &mia.username,
            promote(),
            "r2",
        )
        .await
        .unwrap();
        assert_eq!((promoted.level, promoted.version), (Level::Admin, 2));
        let log = world.store.security_events(None, 10).await.unwrap();
        assert_eq!(log.items.len(), 1);
        assert_eq!(log.items[0].detail["level"], "admin");
    }

    /// An owner is not deleted until their projects are handed over; a
    /// member is, leaving their projects and their items unassigned; the
    /// last admin stays.
    #[tokio::test]
    async fn deleting_an_account_leaves_its_projects_first() {
        let team = team().await;
        let ports = team.ports();
        let closed = Registration::AdminOnly;
        let owner = delete(ports, &team.root, &team.olga.username, closed, "r").await;
        assert!(
            matches!(&owner, Err(Error::OwnsProjects { projects, .. }) if projects == &[team.project]),
            "{owner:?}"
        );
        let item = team.item(&team.olga, "For mia", Some(&team.mia)).await;

        delete(ports, &team.root, &team.mia.username, closed, "r")
            .await
            .unwrap();
        let store = &team.world.store;
        assert!(store.get_user(&team.mia.username).await.unwrap().is_none());
        let project = store.get_project(&team.project).await.unwrap().unwrap();
        assert!(!project.members.contains_key(&team.mia.username));
        let item = store.get_item(&item.id).await.unwrap().unwrap();
        assert_eq!((item.assignee, item.version), (None, 2));

        let last = delete(ports, &team.root, &team.root.username, closed, "r").await;
        assert!(
            matches!(last, Err(Error::Store(StoreError::LastAdmin))),
            "{last:?}"
        );
        let by_user = delete(ports, &team.nina, &team.adam.username, closed, "r").await;
        assert!(matches!(by_user, Err(Error::Denied(Denied::Forbidden(_)))));
    }
}
