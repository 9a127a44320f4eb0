//! What the project, item and user use cases work through: the store, the
//! clock, and whoever must hear of each stored project or item change.
//! Transports build a [`Ports`] from what they hold for the process.

use taskgate_domain::clock::Clock;
use taskgate_domain::ports::Store;
use taskgate_domain::project::log::{Item, ItemEntry, Project, ProjectEntry};

/// Told of every project and item entry once it is stored, with its
/// position in the project's feed: the local server's real-time hub. (On
/// AWS the table's stream feeds real-time subscribers; there the hub has
/// no listeners and hearing costs nothing.)
pub trait Publisher: Send + Sync {
    /// A project entry was stored at `position`; `before` is the project
    /// as it was (`None` for its creation), `after` as it now is.
    fn project_appended(
        &self,
        position: u64,
        entry: &ProjectEntry,
        before: Option<&Project>,
        after: &Project,
    );

    /// An item entry was stored at `position`; `item` as it now is.
    fn item_appended(&self, position: u64, entry: &ItemEntry, item: &Item);
}

/// The ports of one process, borrowed for one use case.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub store: &'a dyn Store,
    /// "Now" for the entries' times.
    pub clock: &'a dyn Clock,
    pub publisher: &'a dyn Publisher,
}
