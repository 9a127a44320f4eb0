//! What the use cases' tests share: the embedded store in memory, a
//! publisher that keeps what it hears, a hasher that does no work, and a
//! team around one project.

use std::sync::Mutex;

use async_trait::async_trait;
use taskgate_domain::clock::SystemClock;
use taskgate_domain::password::{Password, PasswordHash};
use taskgate_domain::permission::Actor;
use taskgate_domain::ports::UserStore;
use taskgate_domain::project::commands::NewItem;
use taskgate_domain::project::log::{Item, ItemEntry, Project, ProjectEntry};
use taskgate_domain::project::{ProjectId, ProjectName, ProjectRole, Title};
use taskgate_domain::user::{Level, User, Username};
use taskgate_embedded::EmbeddedStore;

use crate::Error;
use crate::ports::{Ports, Publisher};
use crate::users::Hashing;
use crate::{items, projects};

/// A well-formed argon2id hash of a password no test logs in with.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$DhP2N/ZT+aZdQJW8MlyePw$7+IJ3VbLXI17iGSTjRNkN/DSGkiSKAJuqXCRsqBRw+w";

/// Every password hashes to [`HASH`], at once.
pub struct NoHashing;

#[async_trait]
impl Hashing for NoHashing {
    async fn hash(&self, _: Password) -> Result<PasswordHash, Error> {
        Ok(PasswordHash::parse(HASH).unwrap())
    }
}

/// What a publisher heard, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Heard {
    /// A project entry at this seq, and whether a `before` came with it.
    Project { seq: u64, with_before: bool },
    /// An item entry at this seq.
    Item { seq: u64 },
}

#[derive(Default)]
pub struct Ear(Mutex<Vec<Heard>>);

impl Ear {
    pub fn heard(&self) -> Vec<Heard> {
        self.0.lock().unwrap().clone()
    }
}

impl Publisher for Ear {
    fn project_appended(
        &self,
        _: u64,
        entry: &ProjectEntry,
        before: Option<&Project>,
        _: &Project,
    ) {
        self.0.lock().unwrap().push(Heard::Project {
            seq: entry.seq,
            with_before: before.is_some(),
        });
    }

    fn item_appended(&self, _: u64, entry: &ItemEntry, _: &Item) {
        self.0.lock().unwrap().push(Heard::Item { seq: entry.seq });
    }
}

/// A store, a clock and an ear.
pub struct World {
    pub store: EmbeddedStore,
    pub clock: SystemClock,
    pub ear: Ear,
}

impl World {
    pub fn new() -> Self {
        Self {
            store: EmbeddedStore::in_memory().unwrap(),
            clock: SystemClock,
            ear: Ear::default(),
        }
    }

    pub fn ports(&self) -> Ports<'_> {
        Ports {
            store: &self.store,
            clock: &self.clock,
            publisher: &self.ear,
        }
    }

    /// A stored account.
    pub async fn account(&self, name: &str, level: Level) -> Actor {
        let user = User::new(
            Username::parse(name).unwrap(),
            PasswordHash::parse(HASH).unwrap(),
            level,
            None,
            None,
        );
        self.store.insert_user(&user).await.unwrap();
        Actor::from(&user)
    }
}

/// Olga's project "Launch": adam is one of its admins, mia a member; nina
/// is no member; root is a global admin (no member either).
pub struct Team {
    pub world: World,
    pub olga: Actor,
    pub adam: Actor,
    pub mia: Actor,
    pub nina: Actor,
    pub root: Actor,
    pub project: ProjectId,
}

pub async fn team() -> Team {
    let world = World::new();
    let olga = world.account("olga", Level::User).await;
    let adam = world.account("adam", Level::User).await;
    let mia = world.account("mia", Level::User).await;
    let nina = world.account("nina", Level::User).await;
    let root = world.account("root", Level::Admin).await;
    let new = projects::NewProject {
        name: ProjectName::parse("Launch").unwrap(),
        description: None,
    };
    let project = projects::create(world.ports(), &olga, new)
        .await
        .unwrap()
        .id;
    for (member, role) in [(&adam, ProjectRole::Admin), (&mia, ProjectRole::Member)] {
        let checked = projects::may_put_member(world.ports(), &olga, &project)
            .await
            .unwrap();
        projects::put_member(world.ports(), &olga, checked, &member.username, role)
            .await
            .unwrap();
    }
    Team {
        world,
        olga,
        adam,
        mia,
        nina,
        root,
        project,
    }
}

impl Team {
    pub fn ports(&self) -> Ports<'_> {
        self.world.ports()
    }

    /// A new item of the project by `by`, assigned to `assignee` if given.
    pub async fn item(&self, by: &Actor, title: &str, assignee: Option<&Actor>) -> Item {
        let project = items::project(self.ports(), by, &self.project)
            .await
            .unwrap();
        let new = NewItem {
            title: Title::parse(title).unwrap(),
            description: None,
            status: None,
            due_date: None,
            assignee: assignee.map(|a| a.username.clone()),
        };
        items::create(self.ports(), by, &project, new)
            .await
            .unwrap()
    }
}
