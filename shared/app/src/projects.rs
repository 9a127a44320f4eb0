//! Projects and their members: create, read, list, edit (rename,
//! redescribe, hand over), delete; add a member or change their role,
//! remove one.
//!
//! Every change goes through [`conflict::change`] on the project's row
//! (`ProjectRow`): read it, check that the caller may
//! ([`access::may`], the one place that decides), decide the entry
//! ([`commands`]), append it with the row it produces and publish it. A
//! project the caller may not learn of is missing to them.

use taskgate_domain::permission::Actor;
use taskgate_domain::ports::{Page, StoreError};
use taskgate_domain::project::access::{self, Action};
use taskgate_domain::project::commands::{self, Membership};
use taskgate_domain::project::log::{Member, Project, ProjectChanges, ProjectEntry};
use taskgate_domain::project::{Description, ProjectId, ProjectName, ProjectRole};
use taskgate_domain::user::Username;

use crate::Error;
use crate::conflict::{self, Aggregate, Outcome};
use crate::items;
use crate::ports::Ports;

/// A project's row, as `actor` may do `action` with it: what every project
/// change reads and writes.
struct ProjectRow<'a> {
    ports: Ports<'a>,
    actor: &'a Actor,
    id: &'a ProjectId,
    action: Action<'a>,
}

impl Aggregate for ProjectRow<'_> {
    type State = Project;
    type Change = ProjectEntry;
    type Error = Error;

    async fn load(&self) -> Result<Project, Error> {
        find(self.ports, self.actor, self.id, self.action).await
    }

    async fn append(&self, current: &Project, entry: ProjectEntry) -> Result<Project, StoreError> {
        let mut next = current.clone();
        next.apply(&entry);
        store(self.ports, &entry, Some(current), &next).await?;
        Ok(next)
    }
}

/// Changes project `id`, in which `actor` may do `action`, as `decide`
/// says ([`conflict::change`] on its row), deciding first on `known` when
/// the caller has just read it ([`Checked`]).
async fn change<T>(
    ports: Ports<'_>,
    actor: &Actor,
    id: &ProjectId,
    action: Action<'_>,
    known: Option<Project>,
    decide: impl Fn(&Project) -> Result<(T, Option<ProjectEntry>), Error>,
) -> Result<Outcome<T, Project>, Error> {
    let row = ProjectRow {
        ports,
        actor,
        id,
        action,
    };
    conflict::change_from(&row, known, decide).await
}

/// A project as read for a request before its body (the answer it gets
/// first: 404 to who may not see it, 403 to who may not act), for the
/// change that follows to decide on without reading it again.
pub struct Checked(Project);

impl Checked {
    /// The project as read.
    pub fn project(&self) -> &Project {
        &self.0
    }
}

/// Whether `actor` may see project `id`: the project, for [`edit`].
pub async fn check(ports: Ports<'_>, actor: &Actor, id: &ProjectId) -> Result<Checked, Error> {
    find(ports, actor, id, Action::View).await.map(Checked)
}

/// The project `id` if `actor` may do `action` in it: missing
/// ([`Error::NoSuchProject`], or denied as not found) to anyone who may
/// not learn that it exists.
pub(crate) async fn find(
    ports: Ports<'_>,
    actor: &Actor,
    id: &ProjectId,
    action: Action<'_>,
) -> Result<Project, Error> {
    let project = ports
        .store
        .get_project(id)
        .await?
        .ok_or(Error::NoSuchProject)?;
    access::may(Some(actor), &project, action)?;
    Ok(project)
}

/// Stores `entry` and the project it produces (`before` → `after`), then
/// publishes it.
async fn store(
    ports: Ports<'_>,
    entry: &ProjectEntry,
    before: Option<&Project>,
    after: &Project,
) -> Result<(), StoreError> {
    let position = ports.store.append_project(entry, after).await?;
    ports
        .publisher
        .project_appended(position, entry, before, after);
    Ok(())
}

/// A new project's fields.
#[derive(Clone, Debug)]
pub struct NewProject {
    pub name: ProjectName,
    pub description: Option<Description>,
}

impl From<taskgate_views::body::NewProject> for NewProject {
    fn from(body: taskgate_views::body::NewProject) -> Self {
        Self {
            name: body.name,
            description: body.description,
        }
    }
}

/// Creates a project owned by `actor`, its first admin.
pub async fn create(ports: Ports<'_>, actor: &Actor, new: NewProject) -> Result<Project, Error> {
    let entry = commands::create_project(actor, new.name, new.description, ports.clock.now());
    let project = Project::fold(std::slice::from_ref(&entry))
        .ok_or_else(|| Error::internal("a new project's log does not fold"))?;
    store(ports, &entry, None, &project).await?;
    tracing::info!(project = %project.id, owner = %actor.username, "project created");
    Ok(project)
}

/// Which projects a listing walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Those the caller is a member of.
    Mine,
    /// Everyone's (global admins).
    Every,
}

/// Up to `limit` live projects of `scope`, by id after `after`.
pub async fn list(
    ports: Ports<'_>,
    actor: &Actor,
    scope: Scope,
    after: Option<&ProjectId>,
    limit: usize,
) -> Result<Page<Project, ProjectId>, Error> {
    let page = match scope {
        Scope::Every => {
            access::may_list_every_project(actor)?;
            ports.store.all_projects(after, limit).await?
        }
        Scope::Mine => {
            ports
                .store
                .member_projects(&actor.user_id, after, limit)
                .await?
        }
    };
    Ok(page)
}

/// The project `id`, with its members, if `actor` may see it.
pub async fn get(ports: Ports<'_>, actor: &Actor, id: &ProjectId) -> Result<Project, Error> {
    find(ports, actor, id, Action::View).await
}

/// Renames, redescribes or hands over the project `checked` read (the
/// fields given); the project as it now is. Renaming and redescribing take
/// the right to edit, a hand-over the right to transfer, a change of
/// nothing neither.
pub async fn edit(
    ports: Ports<'_>,
    actor: &Actor,
    Checked(project): Checked,
    changes: ProjectChanges,
) -> Result<Project, Error> {
    let action = if changes.name.is_some() || changes.description.is_some() {
        Action::Edit
    } else {
        Action::View
    };
    let id = project.id;
    let edited = change(ports, actor, &id, action, Some(project), |project| {
        // `check` read it as viewable; a fresh read checks `action` itself.
        access::may(Some(actor), project, action)?;
        if changes.owner.is_some() {
            access::may(Some(actor), project, Action::TransferOwnership)?;
        }
        let entry = commands::edit_project(project, actor, changes.clone(), ports.clock.now())?;
        Ok(((), entry))
    })
    .await?;
    Ok(edited.state)
}

/// Deletes project `id` (its owner only): it, its members and its items
/// stop being served; their history stays.
pub async fn delete(ports: Ports<'_>, actor: &Actor, id: &ProjectId) -> Result<(), Error> {
    change(ports, actor, id, Action::Delete, None, |project| {
        Ok((
            (),
            Some(commands::delete_project(project, actor, ports.clock.now())),
        ))
    })
    .await?;
    tracing::info!(project = %id, by = %actor.username, "project deleted");
    Ok(())
}

/// Whether `actor` may add members to project `id` or change their
/// roles, before what they ask is read: who may not learns nothing more.
/// The project as read, for [`put_member`].
pub async fn may_put_member(
    ports: Ports<'_>,
    actor: &Actor,
    id: &ProjectId,
) -> Result<Checked, Error> {
    find(ports, actor, id, Action::PutMember).await.map(Checked)
}

/// Adds the account `username` to the project `checked` read with `role`,
/// or changes their role: what was done, and the member as they now are.
pub async fn put_member(
    ports: Ports<'_>,
    actor: &Actor,
    Checked(project): Checked,
    username: &Username,
    role: ProjectRole,
) -> Result<(Membership, Member), Error> {
    let user = ports
        .store
        .get_user(username)
        .await?
        .ok_or_else(|| Error::NoSuchUser(username.clone()))?;
    let id = project.id;
    let put = change(
        ports,
        actor,
        &id,
        Action::PutMember,
        Some(project),
        |project| {
            let now = ports.clock.now();
            Ok(commands::put_member(
                project,
                actor,
                &user.username,
                user.user_id,
                role,
                now,
            )?)
        },
    )
    .await?;
    let member = put
        .state
        .members
        .get(&user.username)
        .cloned()
        .ok_or_else(|| Error::internal("a member just put is missing"))?;
    Ok((put.decided, member))
}

/// Removes `username` from project `id` (a member may remove themself;
/// the owner cannot leave). Their items there become unassigned, each
/// change recorded in the item's history.
pub async fn remove_member(
    ports: Ports<'_>,
    actor: &Actor,
    id: &ProjectId,
    username: &Username,
) -> Result<(), Error> {
    // Refuse first (404, 409) without touching anything; then unassign
    // their items, remove them, and sweep once more for items assigned in
    // between. Unassigning first keeps a retry after a failure useful: the
    // member is only gone once their items are free.
    let project = find(ports, actor, id, Action::RemoveMember { username }).await?;
    commands::remove_member(&project, actor, username, ports.clock.now())?;
    items::unassign_all(ports, actor, id, username).await?;
    // Unassigning changes items, not the project: the removal decides on
    // the project as read (a change meanwhile loses the race and rereads).
    remove(ports, actor, id, username, Some(project)).await?;
    items::unassign_all(ports, actor, id, username).await?;
    tracing::info!(project = %id, member = %username, by = %actor.username, "member removed");
    Ok(())
}

/// Removes `username` from project `id`'s members, and only that;
/// deciding first on `known`, when the caller has just read the project.
pub(crate) async fn remove(
    ports: Ports<'_>,
    actor: &Actor,
    id: &ProjectId,
    username: &Username,
    known: Option<Project>,
) -> Result<(), Error> {
    let action = Action::RemoveMember { username };
    change(ports, actor, id, action, known, |project| {
        // A `known` project was read by the caller; a fresh read checks too.
        access::may(Some(actor), project, action)?;
        let entry = commands::remove_member(project, actor, username, ports.clock.now())?;
        Ok(((), Some(entry)))
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use taskgate_domain::permission::Denied;
    use taskgate_domain::ports::ProjectStore;
    use taskgate_domain::project::commands::Refused;

    use super::*;
    use crate::testing::{Heard, team};

    /// [`super::edit`] as a request makes it: checked first.
    async fn edit(
        ports: Ports<'_>,
        actor: &Actor,
        id: &ProjectId,
        changes: ProjectChanges,
    ) -> Result<Project, Error> {
        super::edit(ports, actor, check(ports, actor, id).await?, changes).await
    }

    /// [`super::put_member`] as a request makes it: checked first.
    async fn put_member(
        ports: Ports<'_>,
        actor: &Actor,
        id: &ProjectId,
        username: &Username,
        role: ProjectRole,
    ) -> Result<(Membership, Member), Error> {
        let checked = may_put_member(ports, actor, id).await?;
        super::put_member(ports, actor, checked, username, role).await
    }

    fn renamed(name: &str) -> ProjectChanges {
        ProjectChanges {
            name: Some(ProjectName::parse(name).unwrap()),
            ..ProjectChanges::default()
        }
    }

    /// Every change is published with the project before and after it;
    /// its creation with none before.
    #[tokio::test]
    async fn changes_are_stored_and_published() {
        let team = team().await;
        let project = edit(team.ports(), &team.adam, &team.project, renamed("Launch 2"))
            .await
            .unwrap();
        assert_eq!((project.name.as_str(), project.version), ("Launch 2", 4));
        let log = team.world.store.project_log(&team.project).await.unwrap();
        assert_eq!(log.len(), 4);
        let heard = team.world.ear.heard();
        assert_eq!(
            heard,
            [
                Heard::Project {
                    seq: 1,
                    with_before: false
                },
                Heard::Project {
                    seq: 2,
                    with_before: true
                },
                Heard::Project {
                    seq: 3,
                    with_before: true
                },
                Heard::Project {
                    seq: 4,
                    with_before: true
                },
            ]
        );
    }

    /// Putting a member as they already are appends nothing; a new role is
    /// a change; a new member is added.
    #[tokio::test]
    async fn putting_a_member_says_what_it_did() {
        let team = team().await;
        let (ports, id, olga) = (team.ports(), &team.project, &team.olga);
        let put = |who: &'static str, role| async move {
            let who = Username::parse(who).unwrap();
            put_member(ports, olga, id, &who, role).await
        };
        let (same, member) = put("mia", ProjectRole::Member).await.unwrap();
        assert_eq!(
            (same, member.role),
            (Membership::Unchanged, ProjectRole::Member)
        );
        let (changed, _) = put("mia", ProjectRole::Admin).await.unwrap();
        assert_eq!(changed, Membership::Changed);
        let (added, _) = put("nina", ProjectRole::Member).await.unwrap();
        assert_eq!(added, Membership::Added);
        assert_eq!(get(ports, &team.nina, id).await.unwrap().version, 5);

        let nobody = Username::parse("nobody").unwrap();
        let missing = put_member(ports, &team.olga, id, &nobody, ProjectRole::Member).await;
        assert!(matches!(missing, Err(Error::NoSuchUser(_))), "{missing:?}");
    }

    /// The matrix and the project's state refuse, and nothing is appended.
    #[tokio::test]
    async fn refusals_change_nothing() {
        let team = team().await;
        let (ports, id) = (team.ports(), &team.project);
        let by_mia = edit(ports, &team.mia, id, renamed("Mine now")).await;
        assert!(matches!(by_mia, Err(Error::Denied(Denied::Forbidden(_)))));
        let by_nina = edit(ports, &team.nina, id, renamed("Mine now")).await;
        assert!(matches!(by_nina, Err(Error::Denied(Denied::NotFound(_)))));
        let to_mia = ProjectChanges {
            owner: Some(team.mia.username.clone()),
            ..ProjectChanges::default()
        };
        let by_adam = edit(ports, &team.adam, id, to_mia.clone()).await;
        assert!(matches!(by_adam, Err(Error::Denied(Denied::Forbidden(_)))));
        let not_admin = edit(ports, &team.olga, id, to_mia).await;
        assert!(matches!(
            not_admin,
            Err(Error::Refused(Refused::OwnerNotAdmin))
        ));
        let leaving = remove_member(ports, &team.olga, id, &team.olga.username).await;
        assert!(matches!(
            leaving,
            Err(Error::Refused(Refused::OwnerCannotLeave))
        ));
        let by_root = delete(ports, &team.root, id).await;
        assert!(matches!(by_root, Err(Error::Denied(Denied::Forbidden(_)))));
        assert_eq!(team.world.store.project_log(id).await.unwrap().len(), 3);

        let every = list(ports, &team.olga, Scope::Every, None, 10).await;
        assert!(matches!(every, Err(Error::Denied(Denied::Forbidden(_)))));
        let every = list(ports, &team.root, Scope::Every, None, 10)
            .await
            .unwrap();
        assert_eq!(every.items.len(), 1);
    }

    /// A deleted project is missing to everyone, its owner included.
    #[tokio::test]
    async fn a_deleted_project_is_missing() {
        let team = team().await;
        let (ports, id) = (team.ports(), &team.project);
        delete(ports, &team.olga, id).await.unwrap();
        for who in [&team.olga, &team.mia, &team.root] {
            let seen = get(ports, who, id).await;
            assert!(matches!(seen, Err(Error::Denied(Denied::NotFound(_)))));
        }
        let mine = list(ports, &team.olga, Scope::Mine, None, 10)
            .await
            .unwrap();
        assert!(mine.items.is_empty());
        let missing = get(ports, &team.olga, &ProjectId::new()).await;
        assert!(matches!(missing, Err(Error::NoSuchProject)));
    }
}
