//! Work items: create, read, edit (with an optional expected version),
//! delete, and their history; and unassigning a departing member's items.
//!
//! Members use a project's items; project admins and an item's creator
//! delete one ([`access::may`] decides, on the project as read with the
//! item). Every change goes through [`conflict::change`] on the item's row
//! ([`ItemRow`]): an edit that names a version applies only to it
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

/// An edit of an item.
#[derive(Clone, Debug, Default)]
pub struct Edit {
    /// The fields to change (`None`: leave alone).
    pub changes: ItemChanges,
    /// Apply only to this version (`If-Match`); `None`: to whatever the
    /// item is when the edit lands.
    pub expected: Option<u64>,
}

/// Edits item `item` of project `project`; the item as it now is (as it
/// was, when the edit changes nothing).
pub async fn edit(
    ports: Ports<'_>,
    actor: &Actor,
    project: &ProjectId,
    item: &ItemId,
    edit: Edit,
) -> Result<Item, Error> {
    let row = ItemRow {
        ports,
        actor,
        project,
        item,
    };
    let edited = conflict::change(&row, |(project, item)| {
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
    Ok(edited.state.1)
}

/// Deletes item `item` of project `project` (project admins; its creator).
pub async fn delete(
    ports: Ports<'_>,
    actor: &Actor,
    project: &ProjectId,
    item: &ItemId,
) -> Result<(), Error> {
    let row = ItemRow {
        ports,
        actor,
        project,
        item,
    };
    conflict::change(&row, |(project, item)| {
        let created_by = &item.created_by;
        access::may(Some(actor), project, Action::DeleteItem { created_by })?;
        Ok((
            (),
            Some(commands::delete_item(item, actor, ports.clock.now())),
        ))
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
