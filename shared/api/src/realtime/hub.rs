//! The in-process hub: every change the server stores is published here, to
//! a bounded broadcast channel per key, for the WebSocket connections that
//! listen to it.
//!
//! Publishing never waits: a channel holds the last `capacity` notices, and
//! a connection that falls further behind sees `Lagged` and is closed (it
//! reconnects with `after` and misses nothing). Notices are shared (`Arc`)
//! by every connection, so memory is bounded by channels × capacity whatever
//! the number of slow readers. Channels exist only while someone listens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use taskgate_app::realtime::{Rendered, Shown};
use taskgate_domain::project::ProjectId;
use taskgate_domain::project::log::{Item, ItemEntry, Project, ProjectEntry};
use taskgate_domain::recorder::Observer;
use taskgate_domain::task::{Task, TaskEvent, TaskId};
use taskgate_domain::user::UserId;
use tokio::sync::broadcast;

/// What a connection listens to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A project's feed: the project, its members and its items.
    Project(ProjectId),
    /// One task's log.
    Task(TaskId),
    /// The logs of every task one user owns.
    Owner(UserId),
}

/// One stored change, with the state it produced.
#[derive(Debug)]
pub enum Notice {
    /// A project's or an item's entry, at its position in the project's
    /// feed, as the subscriptions' state machines take it.
    Feed(Rendered),
    Task {
        event: TaskEvent,
        task: Task,
    },
}

/// See the module documentation.
pub struct Hub {
    channels: Mutex<HashMap<Key, broadcast::Sender<Arc<Notice>>>>,
    capacity: usize,
    connections: Mutex<HashMap<UserId, usize>>,
}

impl Hub {
    /// A hub whose channels each hold `capacity` notices.
    pub fn new(capacity: usize) -> Self {
        Self {
            channels: Mutex::default(),
            capacity: capacity.max(1),
            connections: Mutex::default(),
        }
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<Key, broadcast::Sender<Arc<Notice>>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts listening to `key`: every notice published from now on.
    pub fn subscribe(&self, key: Key) -> broadcast::Receiver<Arc<Notice>> {
        self.channels()
            .entry(key)
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Forgets `key`'s channel if nobody listens any more (call after
    /// dropping a receiver).
    pub fn release(&self, key: &Key) {
        let mut channels = self.channels();
        if channels.get(key).is_some_and(|c| c.receiver_count() == 0) {
            channels.remove(key);
        }
    }

    /// Whether anyone listens to `key`.
    pub fn listened(&self, key: &Key) -> bool {
        self.channels().contains_key(key)
    }

    fn publish(&self, key: Key, notice: &Arc<Notice>) {
        let mut channels = self.channels();
        if let Some(channel) = channels.get(&key)
            && channel.send(Arc::clone(notice)).is_err()
        {
            // Nobody listens any more.
            channels.remove(&key);
        }
    }

    /// A project entry was stored at `position` of its feed.
    pub fn project_appended(
        &self,
        position: u64,
        entry: &ProjectEntry,
        before: Option<&Project>,
        after: &Project,
    ) {
        let key = Key::Project(after.id);
        if !self.listened(&key) {
            return;
        }
        let notice = Arc::new(Notice::Feed(Rendered::Project {
            position,
            entry: entry.clone(),
            before: before.cloned(),
            after: after.clone(),
        }));
        self.publish(key, &notice);
    }

    /// An item entry was stored at `position` of its project's feed.
    pub fn item_appended(&self, position: u64, entry: &ItemEntry, item: &Item) {
        let key = Key::Project(item.project_id);
        if !self.listened(&key) {
            return;
        }
        let notice = Arc::new(Notice::Feed(Rendered::Item {
            position,
            entry: entry.clone(),
            item: item.clone(),
            shown: Shown::default(),
        }));
        self.publish(key, &notice);
    }

    /// Counts a new connection of `user`, unless they already have `max`;
    /// the guard uncounts it when dropped.
    pub fn connect(self: &Arc<Self>, user: UserId, max: usize) -> Option<ConnectionGuard> {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let open = connections.entry(user).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        crate::metrics::websocket(1.0);
        Some(ConnectionGuard {
            hub: Arc::clone(self),
            user,
        })
    }
}

impl Observer for Hub {
    fn appended(&self, task: &Task, event: &TaskEvent) {
        crate::metrics::task_event(task.kind().as_str(), event.change.type_name());
        let keys = [Key::Task(task.id), Key::Owner(task.owner_id)];
        if !keys.iter().any(|key| self.listened(key)) {
            return;
        }
        let notice = Arc::new(Notice::Task {
            event: event.clone(),
            task: task.clone(),
        });
        for key in keys {
            self.publish(key, &notice);
        }
    }
}

/// One open connection of a user (see [`Hub::connect`]).
pub struct ConnectionGuard {
    hub: Arc<Hub>,
    user: UserId,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        crate::metrics::websocket(-1.0);
        let mut connections = self
            .hub
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(open) = connections.get_mut(&self.user) {
            *open -= 1;
            if *open == 0 {
                connections.remove(&self.user);
            }
        }
    }
}
