//! The embedded store's projects and items: conditional appends with their
//! rows, listings checked against the domain's reference (every filter and
//! sort, alone and combined, page by page while items are being added),
//! the indexes SQLite uses for them, and the upgrade of a database made at
//! the previous schema version.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use taskgate_domain::ports::{ItemQuery, ItemScope, ProjectStore, StoreError, TaskLog, UserStore};
use taskgate_domain::project::listing::{Assignee, Due, ItemFilter, Sort, Zone};
use taskgate_domain::project::log::{
    Entry, Item, ItemChange, ItemChanges, ItemEntry, Project, ProjectChange, ProjectEntry,
};
use taskgate_domain::project::{
    DueDate, ItemId, ItemStatus, ProjectId, ProjectName, ProjectRole, Title,
};
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

async fn add_item(
    store: &EmbeddedStore,
    project: ProjectId,
    n: i64,
    status: ItemStatus,
    due: Option<&str>,
    assignee: Option<&str>,
) -> Item {
    let entry: ItemEntry = Entry::first(
        ItemId::new(),
        at(n),
        Some(name("olga")),
        ItemChange::Created {
            project_id: project,
            title: Title::parse(&format!("item {n}")).unwrap(),
            description: None,
            status,
            due_date: due.map(|d| DueDate::parse(d).unwrap()),
            assignee: assignee.map(name),
            created_by: name("olga"),
        },
    );
    let item = Item::fold(std::slice::from_ref(&entry)).unwrap();
    store.append_item(&entry, &item).await.unwrap();
    item
}

#[tokio::test]
async fn an_append_writes_its_row_and_a_second_writer_of_the_same_seq_loses() {
    let store = EmbeddedStore::in_memory().unwrap();
    let owner = UserId::new();
    let project = project(&store, ("olga", owner), &[]).await;
    let item = add_item(&store, project.id, 1, ItemStatus::Pending, None, None).await;
    let log = store.item_log(&item.id).await.unwrap();
    let change = |title: &str| {
        ItemChange::Updated(ItemChanges {
            title: Some(Title::parse(title).unwrap()),
            ..ItemChanges::default()
        })
    };
    let ours = log[0].next(at(2), Some(name("olga")), change("ours"));
    let theirs = log[0].next(at(2), Some(name("mia")), change("theirs"));
    let fold = |entry: &ItemEntry| Item::fold(&[log[0].clone(), entry.clone()]).unwrap();
    store.append_item(&ours, &fold(&ours)).await.unwrap();
    assert!(matches!(
        store.append_item(&theirs, &fold(&theirs)).await,
        Err(StoreError::Conflict)
    ));
    // The row is the fold of the log: the loser changed nothing.
    let row = store.get_item(&item.id).await.unwrap().unwrap();
    let log = store.item_log(&item.id).await.unwrap();
    assert_eq!(row, Item::fold(&log).unwrap());
    assert_eq!((row.title.as_str(), row.version), ("ours", 2));
    assert!(taskgate_domain::project::log::verify_item(&log).is_empty());
}

#[tokio::test]
async fn members_see_their_projects_and_owners_are_known() {
    let store = EmbeddedStore::in_memory().unwrap();
    let (olga, mia) = (UserId::new(), UserId::new());
    let first = project(&store, ("olga", olga), &[("mia", mia)]).await;
    let second = project(&store, ("olga", olga), &[]).await;
    let mias = store.member_projects(&mia, None, 10).await.unwrap();
    assert_eq!(mias.items, vec![first.clone()]);
    let olgas = store.member_projects(&olga, None, 1).await.unwrap();
    assert_eq!(olgas.items.len(), 1);
    let rest = store
        .member_projects(&olga, olgas.next.as_ref(), 1)
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next, None);
    let owned: BTreeSet<ProjectId> = store
        .owned_projects(&name("olga"))
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(owned, BTreeSet::from([first.id, second.id]));
    assert_eq!(store.all_projects(None, 10).await.unwrap().items.len(), 2);
}

/// Every filter and sort, alone and combined: a full walk of pages (of
/// three, with items added between pages) holds exactly the items the
/// domain's reference selects, in its order, each once.
#[tokio::test]
async fn listings_match_the_reference_for_every_filter_and_sort() {
    let store = EmbeddedStore::in_memory().unwrap();
    let olga = UserId::new();
    let project = project(&store, ("olga", olga), &[("mia", UserId::new())]).await;
    let other = project_other(&store, olga).await;
    let statuses = ItemStatus::ALL;
    let dues = [
        None,
        Some("2026-11-30"),
        Some("2026-12-01"),
        Some("2026-12-02"),
    ];
    let assignees = [None, Some("olga"), Some("mia")];
    let mut n = 0;
    for status in statuses {
        for due in dues {
            for assignee in assignees {
                n += 1;
                add_item(&store, project.id, n, status, due, assignee).await;
            }
        }
    }
    // Items of another project never show in this one's listings.
    add_item(&store, other, 1000, ItemStatus::Pending, None, None).await;
    let today = DueDate::parse("2026-12-01").unwrap().date();
    let me = name("mia");
    let filters = [
        ItemFilter::default(),
        filter(Some("pending"), None, None, &me),
        filter(Some("pending,completed"), None, None, &me),
        filter(None, Some(Due::Overdue), None, &me),
        filter(None, Some(Due::Today), None, &me),
        filter(None, Some(Due::Future), None, &me),
        filter(None, None, Some("me"), &me),
        filter(None, None, Some("none"), &me),
        filter(Some("in_progress"), Some(Due::Overdue), Some("me"), &me),
        filter(
            Some("pending,in_progress"),
            Some(Due::Future),
            Some("none"),
            &me,
        ),
    ];
    let sorts = [
        "created_at",
        "-created_at",
        "status",
        "-status",
        "due_date",
        "-due_date",
    ];
    for filter in &filters {
        for sort in sorts {
            let sort = Sort::parse(sort).unwrap();
            let mut expected: Vec<Item> = all_items(&store, project.id)
                .await
                .into_iter()
                .filter(|item| filter.matches(item, today))
                .collect();
            expected.sort_by_key(|item| sort.position(item));
            let mut walked: Vec<Item> = Vec::new();
            let mut after = None;
            let mut added = Vec::new();
            loop {
                let page = store
                    .list_items(&ItemQuery {
                        scope: ItemScope::Project(project.id),
                        filter: filter.clone(),
                        sort,
                        today,
                        after,
                        limit: 3,
                    })
                    .await
                    .unwrap();
                walked.extend(page.items);
                // Someone adds items while the client pages (on its first
                // pages: enough to land before and after the cursor).
                if added.len() < 3 {
                    n += 1;
                    let item = add_item(
                        &store,
                        project.id,
                        n,
                        ItemStatus::Pending,
                        Some("2026-12-01"),
                        Some("mia"),
                    )
                    .await;
                    added.push(item.id);
                }
                match page.next {
                    Some(position) => after = Some(position),
                    None => break,
                }
            }
            let ids: Vec<ItemId> = walked.iter().map(|i| i.id).collect();
            let unique: HashSet<ItemId> = ids.iter().copied().collect();
            assert_eq!(
                unique.len(),
                ids.len(),
                "an item repeated: {filter:?} {sort:?}"
            );
            // Every item that existed before the walk is there, in order;
            // items added during it may or may not be.
            let before: Vec<ItemId> = walked
                .iter()
                .filter(|i| !added.contains(&i.id))
                .map(|i| i.id)
                .collect();
            let expected_ids: Vec<ItemId> = expected.iter().map(|i| i.id).collect();
            assert_eq!(before, expected_ids, "{filter:?} {sort:?}");
            for item in &walked {
                assert!(filter.matches(item, today), "{filter:?} kept {item:?}");
            }
        }
    }
}

fn filter(
    statuses: Option<&str>,
    due: Option<Due>,
    assignee: Option<&str>,
    me: &Username,
) -> ItemFilter {
    ItemFilter {
        statuses: statuses.map(|s| taskgate_domain::project::listing::parse_statuses(s).unwrap()),
        due,
        assignee: assignee.map(|a| Assignee::parse(a, me).unwrap()),
    }
}

async fn project_other(store: &EmbeddedStore, owner: UserId) -> ProjectId {
    project(store, ("olga", owner), &[]).await.id
}

/// Every live item of `project`, straight from the rows.
async fn all_items(store: &EmbeddedStore, project: ProjectId) -> Vec<Item> {
    let mut items = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_items(&ItemQuery {
                scope: ItemScope::Project(project),
                filter: ItemFilter::default(),
                sort: Sort::default(),
                today: Zone::utc().today(at(0)),
                after,
                limit: 100,
            })
            .await
            .unwrap();
        items.extend(page.items);
        match page.next {
            Some(position) => after = Some(position),
            None => return items,
        }
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
    assert_eq!(version, 4);

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
