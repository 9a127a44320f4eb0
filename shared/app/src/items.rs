//! Work items: create, read, edit (with an optional expected version),
//! delete, and their history; and unassigning a departing member's items.
//!
//! Members use a project's items; project admins and an item's creator
//! delete one ([`access::may`] decides, on the project as read with the
//! item). Every change goes through [`conflict::change`] on the item's row
//! (`ItemRow`): an edit that names a version applies only to it
//! ([`Refused::StaleVersion`]); one that names none is decided again on
//! the fresh item after each lost race, so concurrent edits all land, one
//! after the other, each in the history.
//!
//! [`Refused::StaleVersion`]: taskgate_domain::project::commands::Refused::StaleVersion

use taskgate_domain::permission::Actor;
use taskgate_domain::ports::StoreError;
use taskgate_domain::project::access::{self, Action};
use taskgate_domain::project::commands::{self, NewItem};
use taskgate_domain::project::log::{Item, ItemChanges, ItemEntry, Project};
use taskgate_domain::project::{ItemId, ProjectId};
use taskgate_domain::user::Username;

use crate::Error;
use crate::conflict::{self, Aggregate};
use crate::ports::Ports;
use crate::projects;

/// An item of a project, as `actor` may use the project's items: what
/// edits and deletions read (the project too, for its members and roles)
/// and write.
struct ItemRow<'a> {
    ports: Ports<'a>,
    actor: &'a Actor,
    project: &'a ProjectId,
    item: &'a ItemId,
}

impl Aggregate for ItemRow<'_> {
    type State = (Project, Item);
    type Change = ItemEntry;
    type Error = Error;

    async fn load(&self) -> Result<(Project, Item), Error> {
        find(self.ports, self.actor, self.project, self.item).await
    }

    async fn append(
        &self,
        (project, item): &(Project, Item),
        entry: ItemEntry,
    ) -> Result<(Project, Item), StoreError> {
        Ok((project.clone(), append(self.ports, item, entry).await?))
    }
}

/// Changes item `item` of project `project`, whose items `actor` may use,
/// as `decide` says (on the project and the item as they are read); the
/// item as it then is ([`conflict::change`] on its row).
async fn change(
    ports: Ports<'_>,
    actor: &Actor,
    project: &ProjectId,
    item: &ItemId,
    decide: impl Fn(&Project, &Item) -> Result<Option<ItemEntry>, Error>,
) -> Result<Item, Error> {
    let row = ItemRow {
        ports,
        actor,
        project,
        item,
    };
    let changed =
        conflict::change(&row, |(project, item)| Ok(((), decide(project, item)?))).await?;
    Ok(changed.state.1)
}

/// An item alone, whoever may see it: what unassigning reads and writes,
/// on behalf of someone already allowed to remove its assignee.
struct AssignedItem<'a> {
    ports: Ports<'a>,
    id: &'a ItemId,
}

impl Aggregate for AssignedItem<'_> {
    type State = Item;
    type Change = ItemEntry;
    type Error = Error;

    async fn load(&self) -> Result<Item, Error> {
        self.ports
            .store
            .get_item(self.id)
            .await?
            .ok_or(Error::NoSuchItem)
    }

    async fn append(&self, item: &Item, entry: ItemEntry) -> Result<Item, StoreError> {
        append(self.ports, item, entry).await
    }
}

/// Stores `entry`, decided on `item`, with the item it produces; publishes
/// it; returns that item.
async fn append(ports: Ports<'_>, item: &Item, entry: ItemEntry) -> Result<Item, StoreError> {
    let mut next = item.clone();
    next.apply(&entry);
    store(ports, &entry, &next).await?;
    Ok(next)
}

/// Stores `entry` and the item it produces, then publishes it.
async fn store(ports: Ports<'_>, entry: &ItemEntry, item: &Item) -> Result<(), StoreError> {
    let position = ports.store.append_item(entry, item).await?;
    ports.publisher.item_appended(position, entry, item);
    Ok(())
}

/// Project `id`, if `actor` may use its items (create, list, read, edit):
/// read before what they ask is, so who may not learns nothing more.
pub async fn project(ports: Ports<'_>, actor: &Actor, id: &ProjectId) -> Result<Project, Error> {
    projects::find(ports, actor, id, Action::UseItems).await
}

/// The item `item` of project `project`, if `actor` may use the project's
/// items; deleted items and items of other projects are missing.
async fn find(
    ports: Ports<'_>,
    actor: &Actor,
    project: &ProjectId,
    item: &ItemId,
) -> Result<(Project, Item), Error> {
    let project = self::project(ports, actor, project).await?;
    let item = ports
        .store
        .get_item(item)
        .await?
        .filter(|item| !item.deleted && item.project_id == project.id)
        .ok_or(Error::NoSuchItem)?;
    Ok((project, item))
}

/// Creates an item in `project` (as [`project`] read it: checked again
/// here, without a read) by `actor`; the assignee, if any, must be a
/// member.
pub async fn create(
    ports: Ports<'_>,
    actor: &Actor,
    project: &Project,
    new: NewItem,
) -> Result<Item, Error> {
    access::may(Some(actor), project, Action::UseItems)?;
    let entry = commands::create_item(project, actor, new, ports.clock.now())?;
    let item = Item::fold(std::slice::from_ref(&entry))
        .ok_or_else(|| Error::internal("a new item's log does not fold"))?;
    store(ports, &entry, &item).await?;
    Ok(item)
}

/// The item `item` of project `project`, if `actor` may use its items.
pub async fn get(
    ports: Ports<'_>,
    actor: &Actor,
    project: &ProjectId,
    item: &ItemId,
) -> Result<Item, Error> {
    Ok(find(ports, actor, project, item).await?.1)
}

/// An item's history, in order: every entry of its log (hash-chained).
pub async fn history(
    ports: Ports<'_>,
    actor: &Actor,
    project: &ProjectId,
    item: &ItemId,
) -> Result<Vec<ItemEntry>, Error> {
    find(ports, actor, project, item).await?;
    Ok(ports.store.item_log(item).await?)
}

/// An item `actor` may use, as it was just read with its project: what an
/// edit decides on first (see [`check`]).
pub struct Checked {
    project: Project,
    item: Item,
}

/// Whether `actor` may use item `item` of project `project` (the answer a
/// request gets before its body is read): the project and the item as
/// read, for [`edit`] to decide on without reading them again.
pub async fn check(
    ports: Ports<'_>,
    actor: &Actor,
    project: &ProjectId,
    item: &ItemId,
) -> Result<Checked, Error> {
    let (project, item) = find(ports, actor, project, item).await?;
    Ok(Checked { project, item })
}

/// An edit of an item.
#[derive(Clone, Debug, Default)]
pub struct Edit {
    /// The fields to change (`None`: leave alone).
    pub changes: ItemChanges,
    /// Apply only to this version (`If-Match`); `None`: to whatever the
    /// item is when the edit lands.
    pub expected: Option<u64>,
}

/// Edits the item `checked` read; the item as it now is (as it was, when
/// the edit changes nothing).
pub async fn edit(
    ports: Ports<'_>,
    actor: &Actor,
    checked: Checked,
    edit: Edit,
) -> Result<Item, Error> {
    let (project, item) = (checked.project.id, checked.item.id);
    let row = ItemRow {
        ports,
        actor,
        project: &project,
        item: &item,
    };
    // The first decision on what `check` read (the request's own read,
    // never older than what its client saw); after a lost race, afresh.
    let known = Some((checked.project, checked.item));
    let changed = conflict::change_from(&row, known, |(project, item)| {
        let entry = commands::edit_item(
            project,
            item,
            actor,
            edit.changes.clone(),
            edit.expected,
            ports.clock.now(),
        )?;
        Ok(((), entry))
    })
    .await?;
    Ok(changed.state.1)
}

/// Deletes item `item` of project `project` (project admins; its creator).
pub async fn delete(
    ports: Ports<'_>,
    actor: &Actor,
    project: &ProjectId,
    item: &ItemId,
) -> Result<(), Error> {
    change(ports, actor, project, item, |project, item| {
        let created_by = &item.created_by;
        access::may(Some(actor), project, Action::DeleteItem { created_by })?;
        Ok(Some(commands::delete_item(item, actor, ports.clock.now())))
    })
    .await?;
    Ok(())
}

/// Unassigns every item of `username` in `project`, one recorded edit
/// each, on behalf of `actor` (who is removing them). An item reassigned
/// meanwhile is left as it is.
pub(crate) async fn unassign_all(
    ports: Ports<'_>,
    actor: &Actor,
    project: &ProjectId,
    username: &Username,
) -> Result<(), Error> {
    for item in ports.store.assigned_items(project, username).await? {
        let id = item.id;
        let row = AssignedItem { ports, id: &id };
        let unassigned = conflict::change_from(&row, Some(item), |item| {
            let still_theirs = item.assignee.as_ref() == Some(username);
            let entry = still_theirs
                .then(|| commands::unassign(item, Some(actor), ports.clock.now()))
                .flatten();
            Ok(((), entry))
        })
        .await;
        match unassigned {
            // Items are never removed, only marked deleted; should one be
            // missing all the same, there is nothing left to unassign.
            Ok(_) | Err(Error::NoSuchItem) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use taskgate_domain::permission::Denied;
    use taskgate_domain::ports::ProjectStore;
    use taskgate_domain::project::commands::Refused;

    use super::*;
    use crate::testing::{Heard, team};

    /// An edit as a request makes it: checked, then edited.
    async fn edit(
        ports: Ports<'_>,
        actor: &Actor,
        project: &ProjectId,
        item: &ItemId,
        changes: Edit,
    ) -> Result<Item, Error> {
        let checked = check(ports, actor, project, item).await?;
        super::edit(ports, actor, checked, changes).await
    }

    fn titled(title: &str) -> ItemChanges {
        ItemChanges {
            title: Some(taskgate_domain::project::Title::parse(title).unwrap()),
            ..ItemChanges::default()
        }
    }

    fn edit_of(title: &str, expected: Option<u64>) -> Edit {
        Edit {
            changes: titled(title),
            expected,
        }
    }

    /// Six edits at once, none naming a version, by three members: each
    /// loses races to the others and is decided again on the fresh item,
    /// so all six land, each once, and each is published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn six_concurrent_edits_without_an_expected_version_all_land() {
        let team = team().await;
        let item = team.item(&team.mia, "Busy", None).await;
        let writers = [
            &team.mia, &team.olga, &team.adam, &team.mia, &team.olga, &team.adam,
        ];
        let edits = writers.iter().enumerate().map(|(i, writer)| {
            let (ports, project, id) = (team.ports(), &team.project, &item.id);
            async move {
                let changes = edit_of(&format!("edit {i}"), None);
                edit(ports, writer, project, id, changes).await
            }
        });
        let landed = futures_util::future::join_all(edits).await;
        assert!(landed.iter().all(Result::is_ok), "{landed:?}");

        let now = get(team.ports(), &team.mia, &team.project, &item.id)
            .await
            .unwrap();
        assert_eq!(now.version, 7);
        let history = history(team.ports(), &team.mia, &team.project, &item.id)
            .await
            .unwrap();
        let mut titles: Vec<String> = history[1..]
            .iter()
            .map(|entry| serde_json::to_value(&entry.change).unwrap()["data"]["title"].to_string())
            .collect();
        titles.sort();
        titles.dedup();
        assert_eq!(titles.len(), 6, "each edit once: {titles:?}");
        let items_heard = team
            .world
            .ear
            .heard()
            .into_iter()
            .filter(|heard| matches!(heard, Heard::Item { .. }))
            .count();
        assert_eq!(items_heard, 7, "the creation and six edits");
    }

    /// An edit made against version 1 after another edit landed is refused
    /// with the current version, and changes nothing.
    #[tokio::test]
    async fn an_edit_against_a_stale_version_is_refused() {
        let team = team().await;
        let (ports, project) = (team.ports(), &team.project);
        let item = team.item(&team.mia, "Shared", None).await;
        let edit_as =
            |who, title, expected| edit(ports, who, project, &item.id, edit_of(title, expected));
        let first = edit_as(&team.mia, "mine", Some(1)).await.unwrap();
        assert_eq!(first.version, 2);

        let late = edit_as(&team.olga, "theirs", Some(1)).await;
        let stale = Refused::StaleVersion {
            expected: 1,
            current: 2,
        };
        assert!(
            matches!(&late, Err(Error::Refused(refused)) if *refused == stale),
            "{late:?}"
        );
        let now = get(ports, &team.mia, project, &item.id).await.unwrap();
        assert_eq!((now.version, now.title), (2, first.title));
        // Naming the current version lands.
        let named = edit_as(&team.olga, "theirs", Some(2)).await;
        assert_eq!(named.unwrap().version, 3);
    }

    /// Who may not use the items is refused, and nothing is appended: a
    /// non-member does not learn the project exists, a global admin who is
    /// no member is forbidden, a member deletes only what they created.
    #[tokio::test]
    async fn those_the_matrix_refuses_change_nothing() {
        let team = team().await;
        let (ports, project) = (team.ports(), &team.project);
        let item = team.item(&team.olga, "Olga's", None).await;

        let by_nina = edit(ports, &team.nina, project, &item.id, edit_of("nina", None)).await;
        assert!(
            matches!(by_nina, Err(Error::Denied(Denied::NotFound(_)))),
            "{by_nina:?}"
        );
        let by_root = edit(ports, &team.root, project, &item.id, edit_of("root", None)).await;
        assert!(
            matches!(by_root, Err(Error::Denied(Denied::Forbidden(_)))),
            "{by_root:?}"
        );
        let by_mia = delete(ports, &team.mia, project, &item.id).await;
        assert!(
            matches!(by_mia, Err(Error::Denied(Denied::Forbidden(_)))),
            "{by_mia:?}"
        );
        let log = team.world.store.item_log(&item.id).await.unwrap();
        assert_eq!(log.len(), 1, "only the creation");

        // A project admin deletes anyone's item; then it is missing.
        delete(ports, &team.adam, project, &item.id).await.unwrap();
        let gone = get(ports, &team.olga, project, &item.id).await;
        assert!(matches!(gone, Err(Error::NoSuchItem)), "{gone:?}");
    }

    /// Once its project is deleted, its items are not edited (nor seen) by
    /// anyone: the project is missing to all.
    #[tokio::test]
    async fn a_deleted_project_refuses_item_edits() {
        let team = team().await;
        let (ports, project) = (team.ports(), &team.project);
        let item = team.item(&team.mia, "Left behind", None).await;
        crate::projects::delete(ports, &team.olga, project)
            .await
            .unwrap();

        for who in [&team.olga, &team.mia, &team.root] {
            let edited = edit(ports, who, project, &item.id, edit_of("after", None)).await;
            assert!(
                matches!(edited, Err(Error::Denied(Denied::NotFound(_)))),
                "{}: {edited:?}",
                who.username
            );
        }
        let log = team.world.store.item_log(&item.id).await.unwrap();
        assert_eq!(log.len(), 1);
    }

    /// A removed member's items are unassigned, each change recorded (on
    /// behalf of who removed them) and published; others' items stay.
    #[tokio::test]
    async fn removing_a_member_unassigns_their_items() {
        let team = team().await;
        let (ports, project) = (team.ports(), &team.project);
        let theirs = team.item(&team.olga, "For mia", Some(&team.mia)).await;
        let adams = team.item(&team.olga, "For adam", Some(&team.adam)).await;

        crate::projects::remove_member(ports, &team.adam, project, &team.mia.username)
            .await
            .unwrap();

        let theirs = team
            .world
            .store
            .get_item(&theirs.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((theirs.assignee, theirs.version), (None, 2));
        let log = team.world.store.item_log(&theirs.id).await.unwrap();
        assert_eq!(log[1].actor.as_ref(), Some(&team.adam.username));
        let adams = team.world.store.get_item(&adams.id).await.unwrap().unwrap();
        assert_eq!(adams.assignee.as_ref(), Some(&team.adam.username));
        assert!(team.world.ear.heard().contains(&Heard::Item { seq: 2 }));
        // And she can no longer use the items.
        let refused = get(ports, &team.mia, project, &adams.id).await;
        assert!(matches!(refused, Err(Error::Denied(Denied::NotFound(_)))));
    }

    /// An assignee must be a member; the refusal appends nothing.
    #[tokio::test]
    async fn items_are_assigned_to_members_only() {
        let team = team().await;
        let (ports, project) = (team.ports(), &team.project);
        let item = team.item(&team.mia, "Mine", None).await;
        let to_nina = Edit {
            changes: ItemChanges {
                assignee: Some(Some(team.nina.username.clone())),
                ..ItemChanges::default()
            },
            expected: None,
        };
        let refused = edit(ports, &team.mia, project, &item.id, to_nina).await;
        assert!(
            matches!(refused, Err(Error::Refused(Refused::AssigneeNotMember))),
            "{refused:?}"
        );
        assert_eq!(team.world.store.item_log(&item.id).await.unwrap().len(), 1);
    }
}
