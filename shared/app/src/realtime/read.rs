//! The store reads both transports make around the state machines: the
//! check of a new subscription (the rule of the matching GET), and the
//! states a feed entry read from the store produced. The only part of
//! [`super`] that does I/O.

use std::collections::HashMap;

use taskgate_domain::permission::{Actor, may_see_task};
use taskgate_domain::ports::{FeedChange, FeedEntry, ProjectStore, StoreError};
use taskgate_domain::project::ItemId;
use taskgate_domain::project::access::{Action, may};
use taskgate_domain::project::log::{Item, ItemEntry, Project, ProjectEntry};
use taskgate_domain::recorder::Recorder;
use taskgate_domain::task::{Task, TaskEvent};

use super::Topic;
use super::client::{Refusal, denied, store_failed};
use super::rules::{Rendered, Shown};

/// What a subscription found when it was allowed.
pub enum Allowed {
    Project(Project),
    Task(Task, Vec<TaskEvent>),
    Tasks,
}

/// Whether `actor` may subscribe to `topic`: the rule of the matching GET.
pub async fn authorize(
    projects: &dyn ProjectStore,
    tasks: &Recorder,
    actor: &Actor,
    topic: &Topic,
) -> Result<Allowed, Refusal> {
    match topic {
        Topic::Project(id) => {
            let project = projects
                .get_project(id)
                .await
                .map_err(|e| store_failed(&e))?
                .ok_or((404, "there is no such project".to_owned()))?;
            may(Some(actor), &project, Action::View).map_err(denied)?;
            Ok(Allowed::Project(project))
        }
        Topic::Task(id) => {
            let (task, events) = tasks
                .load(id)
                .await
                .map_err(|e| store_failed(&e))?
                .ok_or((404, "there is no such task".to_owned()))?;
            may_see_task(actor, &task).map_err(denied)?;
            Ok(Allowed::Task(task, events))
        }
        Topic::Tasks => Ok(Allowed::Tasks),
    }
}

/// The logs a replay has read, to fold the state after each entry: one
/// project's log and its items' logs, each read again only when an entry
/// is past its end.
#[derive(Default)]
pub struct Folds {
    project: Option<Vec<ProjectEntry>>,
    items: HashMap<ItemId, Vec<ItemEntry>>,
}

/// How many entries of a log a seq covers (a seq past what the platform
/// can address covers the whole log).
fn covered(seq: u64) -> usize {
    usize::try_from(seq).unwrap_or(usize::MAX)
}

impl Folds {
    /// `entry` with the states it produced, folded from its log.
    pub async fn render(
        &mut self,
        projects: &dyn ProjectStore,
        entry: FeedEntry,
    ) -> Result<Rendered, Refusal> {
        let broken = |what: &str| store_failed(&StoreError::other(format!("{what} does not fold")));
        match entry.change {
            FeedChange::Project(entry_) => {
                let upto = covered(entry_.seq);
                if self.project.as_ref().is_none_or(|log| log.len() < upto) {
                    let log = projects
                        .project_log(&entry_.stream)
                        .await
                        .map_err(|e| store_failed(&e))?;
                    self.project = Some(log);
                }
                let log = self.project.as_deref().unwrap_or_default();
                let upto = upto.min(log.len());
                let after = Project::fold(&log[..upto]).ok_or_else(|| broken("a project log"))?;
                let before = Project::fold(&log[..upto.saturating_sub(1)]);
                Ok(Rendered::Project {
                    position: entry.position,
                    entry: entry_,
                    before,
                    after,
                })
            }
            FeedChange::Item(entry_) => {
                let upto = covered(entry_.seq);
                if self
                    .items
                    .get(&entry_.stream)
                    .is_none_or(|log| log.len() < upto)
                {
                    let log = projects
                        .item_log(&entry_.stream)
                        .await
                        .map_err(|e| store_failed(&e))?;
                    self.items.insert(entry_.stream, log);
                }
                let log = self
                    .items
                    .get(&entry_.stream)
                    .map_or(&[][..], Vec::as_slice);
                let upto = upto.min(log.len());
                let item = Item::fold(&log[..upto]).ok_or_else(|| broken("an item log"))?;
                Ok(Rendered::Item {
                    position: entry.position,
                    entry: entry_,
                    item,
                    shown: Shown::default(),
                })
            }
        }
    }
}
