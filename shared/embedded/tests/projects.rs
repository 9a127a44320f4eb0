//! What only the embedded store has to show about projects: the indexes
//! SQLite uses for listings, and the upgrade of a database made at the
//! previous schema version. The behaviours every store shares are the
//! projects contract (tests/e2e/project_store.rs).

use std::collections::HashMap;
use std::path::Path;

use taskgate_domain::ports::{FeedChange, ItemQuery, ItemScope, ProjectStore, TaskLog, UserStore};
use taskgate_domain::project::listing::{Assignee, Due, ItemFilter, Sort, parse_statuses};
use taskgate_domain::project::log::{
    Entry, Item, ItemChange, ItemChanges, ItemEntry, Project, ProjectChange, ProjectChanges,
    ProjectEntry, verify_item, verify_project,
};
use taskgate_domain::project::{
    DueDate, ItemId, ItemStatus, ProjectId, ProjectName, ProjectRole, Title,
};
use taskgate_domain::user::{UserId, Username};
use taskgate_embedded::EmbeddedStore;
use time::OffsetDateTime;

mod common;
use common::give_up;

fn name(raw: &str) -> Username {
    Username::parse(raw).unwrap()
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

/// Creates a project owned by `owner`, with `members` added as members.
async fn project(
    store: &EmbeddedStore,
    owner: (&str, UserId),
    members: &[(&str, UserId)],
) -> Project {
    let mut log: Vec<ProjectEntry> = vec![Entry::first(
        ProjectId::new(),
        at(0),
        Some(name(owner.0)),
        ProjectChange::Created {
            name: ProjectName::parse("Launch").unwrap(),
            description: None,
            owner: name(owner.0),
            owner_id: owner.1,
        },
    )];
    store
        .append_project(&log[0], &Project::fold(&log).unwrap())
        .await
        .unwrap();
    for (member, id) in members {
        let next = log.last().unwrap().next(
            at(1),
            Some(name(owner.0)),
            ProjectChange::MemberAdded {
                username: name(member),
                user_id: *id,
                role: ProjectRole::Member,
            },
        );
        log.push(next);
        store
            .append_project(log.last().unwrap(), &Project::fold(&log).unwrap())
            .await
            .unwrap();
    }
    Project::fold(&log).unwrap()
}

fn filter(
    statuses: Option<&str>,
    due: Option<Due>,
    assignee: Option<&str>,
    me: &Username,
) -> ItemFilter {
    ItemFilter {
        statuses: statuses.map(|s| parse_statuses(s).unwrap()),
        due,
        assignee: assignee.map(|a| Assignee::parse(a, me).unwrap()),
    }
}

/// Every listing of one project is served by an index of `items`, whatever
/// the filters: SQLite never scans the table.
#[tokio::test]
async fn project_listings_use_an_index() {
    let store = EmbeddedStore::in_memory().unwrap();
    let project = ProjectId::new();
    let me = name("mia");
    let today = DueDate::parse("2026-12-01").unwrap().date();
    for sort in [
        "created_at",
        "-created_at",
        "status",
        "-status",
        "due_date",
        "-due_date",
    ] {
        for filter in [
            ItemFilter::default(),
            filter(
                Some("pending,in_progress"),
                Some(Due::Overdue),
                Some("me"),
                &me,
            ),
        ] {
            let query = ItemQuery {
                scope: ItemScope::Project(project),
                filter,
                sort: Sort::parse(sort).unwrap(),
                today,
                after: None,
                limit: 50,
            };
            let plan = taskgate_embedded::projects::explain_listing(&store, &query).unwrap();
            let plan = plan.join(" | ");
            assert!(
                plan.contains("USING INDEX items_by_")
                    || plan.contains("USING COVERING INDEX items_by_"),
                "{sort}: {plan}"
            );
            assert!(!plan.contains("SCAN items"), "{sort}: {plan}");
        }
    }
}

/// Once a project has grown, a selective filter is served by the index of
/// what it selects, not by walking every item in the sort's order: the
/// store keeps the query planner's statistics up to date as it writes.
/// (Without them, `due=today` sorted by creation read the whole project.)
#[tokio::test]
async fn a_selective_filter_does_not_walk_a_grown_project() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("taskgate.db")).unwrap();
    let owner = UserId::new();
    let project = project(&store, ("olga", owner), &[]).await;
    let first_day = time::Date::from_calendar_date(2026, time::Month::January, 1).unwrap();
    // The spread of the benchmark's project (tests/bench): due dates over
    // two years, one in four undated, statuses by turn.
    let count = 6_000usize;
    let mut writes = Vec::new();
    for i in 0..count {
        let due = (i % 4 != 0).then(|| {
            DueDate::parse(&(first_day + time::Duration::days((i * 7 % 730) as i64)).to_string())
                .unwrap()
        });
        let entry = Entry::first(
            ItemId::new(),
            at(i as i64),
            Some(name("olga")),
            ItemChange::Created {
                project_id: project.id,
                title: Title::parse(&format!("item {i}")).unwrap(),
                description: None,
                status: ItemStatus::ALL[i % 3],
                due_date: due,
                assignee: None,
                created_by: name("olga"),
            },
        );
        let (store, item) = (
            store.clone(),
            Item::fold(std::slice::from_ref(&entry)).unwrap(),
        );
        writes.push(tokio::spawn(async move {
            store.append_item(&entry, &item).await.unwrap()
        }));
        if writes.len() == 64 {
            for write in writes.drain(..) {
                write.await.unwrap();
            }
        }
    }
    for write in writes {
        write.await.unwrap();
    }
    let me = name("olga");
    let query = ItemQuery {
        scope: ItemScope::Project(project.id),
        filter: filter(Some("completed"), Some(Due::Today), Some("none"), &me),
        sort: Sort::parse("-created_at").unwrap(),
        today: DueDate::parse("2026-11-26").unwrap().date(),
        after: None,
        limit: 50,
    };
    let plan = taskgate_embedded::projects::explain_listing(&store, &query)
        .unwrap()
        .join(" | ");
    assert!(
        !plan.contains("items_by_created"),
        "due=today walks the project in creation order: {plan}"
    );
    assert!(plan.contains("due_key=?"), "{plan}");
}

/// A database made at schema version 3 (tests/fixtures/embedded) opens,
/// upgrades to the current schema, and keeps everything it had.
#[tokio::test]
async fn a_version_3_database_upgrades_with_nothing_lost() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/embedded/schema-v3.db");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taskgate.db");
    std::fs::copy(&fixture, &path).unwrap();

    let store = EmbeddedStore::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, taskgate_embedded::SCHEMA_VERSION as i64);

    let users = store.list_users(None, 10).await.unwrap().items;
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["admin", "alice", "bob"]);
    let alice = users
        .iter()
        .find(|u| u.username.as_str() == "alice")
        .unwrap();
    assert_eq!(alice.email.as_ref().unwrap().as_str(), "Alice@Example.com");
    assert_eq!(alice.profile.as_ref().unwrap().as_map()["team"], "blue");
    let events = store.events_by_task().await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events.values().map(Vec::len).sum::<usize>(), 6);
    for (id, log) in &events {
        assert!(taskgate_domain::task::verify(id, log).is_empty(), "{id}");
    }
    let security = taskgate_domain::ports::SecurityStore::security_events(&store, None, 50)
        .await
        .unwrap();
    assert_eq!(security.items.len(), 5);

    // And the new tables work on the upgraded file.
    let olga = UserId::new();
    let project = project(&store, ("alice", olga), &[]).await;
    assert_eq!(store.get_project(&project.id).await.unwrap(), Some(project));
}

/// A database written by the release before the one hash chain
/// (tests/fixtures/embedded/release-schema-v9.db: every kind of task and
/// outcome, a project with a member, items edited, cleared and deleted, a
/// file) opens with this build, and every log in it still verifies: the
/// stored hashes cover the same fields, in the same order, as this build
/// writes. Every current-state row is still the fold of its log.
#[tokio::test]
async fn the_last_release_database_verifies_and_keeps_everything() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/embedded/release-schema-v9.db");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taskgate.db");
    std::fs::copy(&fixture, &path).unwrap();
    let store = EmbeddedStore::open(&path).unwrap();

    let users = store.list_users(None, 10).await.unwrap().items;
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["admin", "alice", "bob"]);

    let tasks = store.events_by_task().await.unwrap();
    assert_eq!(tasks.len(), 5);
    assert_eq!(tasks.values().map(Vec::len).sum::<usize>(), 15);
    let mut outcomes = Vec::new();
    for (id, log) in &tasks {
        assert_eq!(taskgate_domain::task::verify(id, log), [], "task {id}");
        let task = taskgate_domain::task::fold(log).unwrap();
        outcomes.push(format!("{} {}", task.kind().as_str(), task.status.as_str()));
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "delay cancelled",
            "delay succeeded",
            "export succeeded",
            "js failed",
            "js succeeded"
        ]
    );

    let logs = store.all_logs().await.unwrap();
    assert_eq!((logs.projects.len(), logs.items.len()), (1, 3));
    for (id, log) in &logs.projects {
        assert_eq!(verify_project(log), [], "project {id}");
        let project = Project::fold(log).unwrap();
        assert_eq!(store.get_project(id).await.unwrap(), Some(project.clone()));
        assert_eq!(project.name.as_str(), "Spring launch");
        assert_eq!(project.members.len(), 2);
    }
    let mut titles = Vec::new();
    for (id, log) in &logs.items {
        assert_eq!(verify_item(log), [], "item {id}");
        let item = Item::fold(log).unwrap();
        assert_eq!(store.get_item(id).await.unwrap(), Some(item.clone()));
        titles.push(format!(
            "{} {} {}",
            item.title.as_str(),
            item.status.as_str(),
            item.deleted
        ));
    }
    titles.sort();
    assert_eq!(
        titles,
        [
            "Book the room completed false",
            "Scrap this pending true",
            "Write the plan in_progress false"
        ]
    );
}

/// Every task event past releases stored (both fixtures) reads into this
/// build's types and writes out again byte for byte: what a hash covers
/// cannot have moved, whatever shape the Rust types have taken.
#[test]
fn every_task_event_of_past_releases_writes_out_as_it_was_stored() {
    for fixture in ["schema-v3.db", "release-schema-v9.db"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/embedded")
            .join(fixture);
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut query = conn.prepare("SELECT item FROM task_events").unwrap();
        let stored: Vec<String> = query
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(stored.len(), if fixture == "schema-v3.db" { 6 } else { 15 });
        for text in stored {
            let event: taskgate_domain::task::TaskEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&event).unwrap(), text, "{fixture}");
        }
    }
}

/// Appends entries through a store and remembers each one, with its
/// project, to say what the feeds should hold.
#[derive(Default)]
struct Writer {
    projects: HashMap<ProjectId, Vec<ProjectEntry>>,
    items: HashMap<ItemId, Vec<ItemEntry>>,
    written: Vec<(ProjectId, FeedChange)>,
}

impl Writer {
    /// Appends `change` to `project`'s log at `seconds` through `store`;
    /// its feed position.
    async fn project(
        &mut self,
        store: &EmbeddedStore,
        project: ProjectId,
        seconds: i64,
        change: ProjectChange,
    ) -> u64 {
        let log = self.projects.entry(project).or_default();
        let actor = Some(name("olga"));
        let entry = match log.last() {
            None => Entry::first(project, at(seconds), actor, change),
            Some(last) => last.next(at(seconds), actor, change),
        };
        assert_eq!(entry.at, at(seconds), "times grow along each log");
        log.push(entry.clone());
        let position = store
            .append_project(&entry, &Project::fold(log).unwrap())
            .await
            .unwrap();
        self.written.push((project, FeedChange::Project(entry)));
        position
    }

    /// Appends `change` to `item`'s log (an item of `project`) at `seconds`;
    /// its feed position.
    async fn item(
        &mut self,
        store: &EmbeddedStore,
        project: ProjectId,
        item: ItemId,
        seconds: i64,
        change: ItemChange,
    ) -> u64 {
        let log = self.items.entry(item).or_default();
        let actor = Some(name("olga"));
        let entry = match log.last() {
            None => Entry::first(item, at(seconds), actor, change),
            Some(last) => last.next(at(seconds), actor, change),
        };
        assert_eq!(entry.at, at(seconds), "times grow along each log");
        log.push(entry.clone());
        let position = store
            .append_item(&entry, &Item::fold(log).unwrap())
            .await
            .unwrap();
        self.written.push((project, FeedChange::Item(entry)));
        position
    }

    /// What `project`'s feed should list after the backfill: its entries
    /// and its items' in time order, project entries first on a tie.
    fn expected_feed(&self, project: ProjectId) -> Vec<FeedChange> {
        let mut feed: Vec<FeedChange> = self
            .written
            .iter()
            .filter(|(p, _)| *p == project)
            .map(|(_, change)| change.clone())
            .collect();
        feed.sort_by_key(|change| match change {
            FeedChange::Project(entry) => (entry.at, 0),
            FeedChange::Item(entry) => (entry.at, 1),
        });
        feed
    }
}

fn created(name_: &str, owner_id: UserId) -> ProjectChange {
    ProjectChange::Created {
        name: ProjectName::parse(name_).unwrap(),
        description: None,
        owner: name("olga"),
        owner_id,
    }
}

fn renamed(name_: &str) -> ProjectChange {
    ProjectChange::Updated(ProjectChanges {
        name: Some(ProjectName::parse(name_).unwrap()),
        ..ProjectChanges::default()
    })
}

fn member_added(username: &str) -> ProjectChange {
    ProjectChange::MemberAdded {
        username: name(username),
        user_id: UserId::new(),
        role: ProjectRole::Member,
    }
}

fn item_created(project: ProjectId, title: &str) -> ItemChange {
    ItemChange::Created {
        project_id: project,
        title: Title::parse(title).unwrap(),
        description: None,
        status: ItemStatus::Pending,
        due_date: None,
        assignee: None,
        created_by: name("olga"),
    }
}

fn item_status(status: ItemStatus) -> ItemChange {
    ItemChange::Updated(ItemChanges {
        status: Some(status),
        ..ItemChanges::default()
    })
}

/// Migration 5 numbers the entries written before feeds existed: a
/// version-4 database with projects and items opens with each project's
/// feed holding every entry of its own log and of its items' logs once, at
/// positions 1..n in time order (project entries first on a tie), and the
/// next append takes position n + 1.
///
/// The version-4 database is made honestly from the current code: entries
/// are appended through the store (which also fills `project_feed`, in
/// commit order), then, with a raw connection, the feed's triggers and
/// table are dropped and `user_version` set back to 4. Migration 5 only
/// adds that table and its triggers, so what is left is exactly the
/// version-4 schema with the same data. The entries are committed out of
/// time order, so the positions after the upgrade are the backfill's, not
/// the commit order the dropped table had.
#[tokio::test]
async fn a_version_4_database_numbers_each_project_feed_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taskgate.db");
    let store = EmbeddedStore::open(&path).unwrap();
    let olga = UserId::new();
    let (launch, garden) = (ProjectId::new(), ProjectId::new());
    let (plan, slides, seeds) = (ItemId::new(), ItemId::new(), ItemId::new());

    // Committed in this order; the seconds say when each entry happened.
    let mut writer = Writer::default();
    writer
        .project(&store, launch, 0, created("Launch", olga))
        .await;
    writer
        .project(&store, garden, 1, created("Garden", olga))
        .await;
    writer
        .item(
            &store,
            launch,
            plan,
            10,
            item_created(launch, "Write the plan"),
        )
        .await;
    writer
        .item(&store, launch, slides, 4, item_created(launch, "Slides"))
        .await;
    writer
        .item(&store, garden, seeds, 6, item_created(garden, "Buy seeds"))
        .await;
    writer
        .project(&store, launch, 7, renamed("Launch day"))
        .await;
    writer
        .item(
            &store,
            launch,
            slides,
            12,
            item_status(ItemStatus::InProgress),
        )
        .await;
    writer
        .item(&store, launch, plan, 14, item_status(ItemStatus::Completed))
        .await;
    writer.project(&store, garden, 9, member_added("mia")).await;
    // The same time as the slides' update: the project's entry comes first.
    writer
        .project(&store, launch, 12, member_added("adam"))
        .await;
    writer
        .item(
            &store,
            garden,
            seeds,
            11,
            item_status(ItemStatus::InProgress),
        )
        .await;
    let written = writer.written.len();
    drop(store);

    // Back to version 4: what migrations 5 (the feed) and later (files)
    // added is removed.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TRIGGER project_feed_no_update;
             DROP TRIGGER project_feed_no_delete;
             DROP TABLE project_feed;
             DROP TABLE files;
             DROP TABLE active_tasks;
             DROP TABLE idempotency; DROP TABLE task_progress;
             PRAGMA user_version = 4;",
        )
        .unwrap();
        let feeds: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'project_feed%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(feeds, 0);
        let entries: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM project_log) + (SELECT count(*) FROM item_log)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(entries as usize, written);
    }

    let store = EmbeddedStore::open(&path).unwrap();
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, taskgate_embedded::SCHEMA_VERSION as i64);

    let mut lengths = HashMap::new();
    for project in [launch, garden] {
        let expected = writer.expected_feed(project);
        let feed = store.project_feed(&project, 0, 100).await.unwrap();
        let positions: Vec<u64> = feed.iter().map(|e| e.position).collect();
        let n = expected.len() as u64;
        assert_eq!(positions, (1..=n).collect::<Vec<_>>(), "{project}");
        let changes: Vec<FeedChange> = feed.into_iter().map(|e| e.change).collect();
        assert_eq!(changes, expected, "{project}");
        lengths.insert(project, n);
    }
    assert_eq!(lengths[&launch], 7);
    assert_eq!(lengths[&garden], 4);
    assert_eq!(lengths.values().sum::<u64>() as usize, written);

    // New entries follow on, each in its own project's feed.
    let position = writer
        .item(&store, launch, plan, 20, item_status(ItemStatus::Pending))
        .await;
    assert_eq!(position, lengths[&launch] + 1);
    let position = writer
        .project(&store, garden, 21, renamed("Allotment"))
        .await;
    assert_eq!(position, lengths[&garden] + 1);
    for project in [launch, garden] {
        let after = lengths[&project];
        let feed = store.project_feed(&project, after, 100).await.unwrap();
        assert_eq!(feed.len(), 1, "{project}");
        assert_eq!(feed[0].position, after + 1);
        assert_eq!(
            Some(&feed[0].change),
            writer.expected_feed(project).last(),
            "{project}"
        );
    }
}

/// A project read is kept in memory with the project's version, and every
/// change to the project or its items through the store gives it a new
/// version before the change returns, also when its caller gave up: the
/// next read sees the change, and another project's version stays put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_kept_in_memory_is_never_older_than_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("taskgate.db")).unwrap();
    let project = project(&store, ("olga", UserId::new()), &[]).await;
    let other = project_named(&store, "Other").await;
    let version = |id: ProjectId| store.project_version(&id).unwrap();
    let (before, other_before) = (version(project.id), version(other));
    // Read twice: the second read is the kept one, and the same.
    assert_eq!(
        store.get_project(&project.id).await.unwrap().unwrap(),
        project
    );
    assert_eq!(
        store.get_project(&project.id).await.unwrap().unwrap(),
        project
    );
    assert_eq!(version(project.id), before, "reads change nothing");

    let mut log = store.project_log(&project.id).await.unwrap();
    let rename = log
        .last()
        .unwrap()
        .next(at(5), Some(name("olga")), renamed("Renamed"));
    log.push(rename);
    let renamed_ = Project::fold(&log).unwrap();
    give_up(store.append_project(log.last().unwrap(), &renamed_)).await;
    // A write queued after it returns once it is committed.
    project_named(&store, "Third").await;
    assert_eq!(
        store.get_project(&project.id).await.unwrap().unwrap(),
        renamed_
    );
    let after_rename = version(project.id);
    assert_ne!(after_rename, before);
    assert_eq!(version(other), other_before);

    // A change of one of its items moves the project's version on too.
    let item = Entry::first(
        ItemId::new(),
        at(6),
        Some(name("olga")),
        item_created(project.id, "x"),
    );
    give_up(store.append_item(&item, &Item::fold(std::slice::from_ref(&item)).unwrap())).await;
    project_named(&store, "Fourth").await;
    assert_ne!(version(project.id), after_rename);
    assert_eq!(version(other), other_before);
}

/// A new project named `name_`, owned by olga.
async fn project_named(store: &EmbeddedStore, name_: &str) -> ProjectId {
    let entry = Entry::first(
        ProjectId::new(),
        at(0),
        Some(name("olga")),
        created(name_, UserId::new()),
    );
    store
        .append_project(
            &entry,
            &Project::fold(std::slice::from_ref(&entry)).unwrap(),
        )
        .await
        .unwrap();
    entry.stream
}
