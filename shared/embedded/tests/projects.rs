//! What only the embedded store has to show about projects: the indexes
//! SQLite uses for listings, and the upgrade of a database made at the
//! previous schema version. The behaviours every store shares are the
//! projects contract (tests/e2e/project_store.rs).

use std::path::Path;

use taskgate_domain::ports::{ItemQuery, ItemScope, ProjectStore, TaskLog, UserStore};
use taskgate_domain::project::listing::{Assignee, Due, ItemFilter, Sort, parse_statuses};
use taskgate_domain::project::log::{Entry, Project, ProjectChange, ProjectEntry};
use taskgate_domain::project::{DueDate, ProjectId, ProjectName, ProjectRole};
use taskgate_domain::user::{UserId, Username};
use taskgate_embedded::EmbeddedStore;
use time::OffsetDateTime;

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
    assert_eq!(version, 5);

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
