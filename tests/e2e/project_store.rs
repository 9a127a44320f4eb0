//! The projects contract: the behaviours every `ProjectStore` must have,
//! run against the embedded store and DynamoDB Local. Conditional appends
//! with their rows, membership listings, and item listings checked against
//! the domain's reference for every filter and sort, alone and combined,
//! page by page while items are being added.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use taskgate_domain::ports::{FeedChange, ItemQuery, ItemScope, ProjectStore, StoreError};
use taskgate_domain::project::listing::{Assignee, Due, ItemFilter, Sort, Zone};
use taskgate_domain::project::log::{
    Entry, Item, ItemChange, ItemChanges, ItemEntry, Project, ProjectChange, ProjectEntry,
};
use taskgate_domain::project::{
    DueDate, ItemId, ItemStatus, ProjectId, ProjectName, ProjectRole, Title,
};
use taskgate_domain::user::{UserId, Username};
use time::OffsetDateTime;

type Store = Arc<dyn ProjectStore>;

async fn embedded() -> Store {
    Arc::new(taskgate_embedded::EmbeddedStore::in_memory().unwrap())
}

async fn dynamodb() -> Store {
    Arc::new(taskgate_e2e::dynamodb_store().await)
}

/// One test per (case, store).
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::embedded().await).await } )*
        }
        mod dynamodb {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::dynamodb().await).await } )*
        }
    };
}

contract!(
    an_append_writes_its_row_and_a_second_writer_of_the_same_seq_loses,
    members_see_their_projects_and_owners_are_known,
    listings_match_the_reference_for_every_filter_and_sort,
    the_feed_numbers_every_change_of_a_project_once_and_in_commit_order,
);

fn name(raw: &str) -> Username {
    Username::parse(raw).unwrap()
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

/// Creates a project owned by `owner`, with `members` added as members.
async fn project(store: &Store, owner: (&str, UserId), members: &[(&str, UserId)]) -> Project {
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
    store: &Store,
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

async fn an_append_writes_its_row_and_a_second_writer_of_the_same_seq_loses(store: Store) {
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
    // The audit's view of every log holds the same entries.
    let logs = store.all_logs().await.unwrap();
    assert_eq!(logs.items[&item.id], log);
    assert_eq!(
        logs.projects[&project.id],
        store.project_log(&project.id).await.unwrap()
    );
    assert!(taskgate_domain::project::log::verify_item(&log).is_empty());
}

async fn members_see_their_projects_and_owners_are_known(store: Store) {
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
async fn listings_match_the_reference_for_every_filter_and_sort(store: Store) {
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

async fn project_other(store: &Store, owner: UserId) -> ProjectId {
    project(store, ("olga", owner), &[]).await.id
}

/// Every live item of `project`, straight from the rows.
async fn all_items(store: &Store, project: ProjectId) -> Vec<Item> {
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

/// Both stores walk at most a budget of rows for one page (DynamoDB: items
/// read per project; SQLite: rows walked once a page takes more work than
/// that): with a selective filter a page may hold fewer items than asked,
/// and its cursor says where the walk stopped, so walking every page still
/// sees every match once, in order, whatever the sort.
async fn pages_end_early_on_the_read_budget_and_miss_nothing(store: Store) {
    let project = project(&store, ("olga", UserId::new()), &[("mia", UserId::new())]).await;
    let mut matching = Vec::new();
    for n in 1..=30 {
        let assignee = (n % 7 == 0 || n == 30).then_some("mia");
        // Dates out of creation order, and some items without one.
        let due = (n % 3 != 0).then(|| format!("2027-01-{:02}", (n * 5) % 17 + 1));
        let status = ItemStatus::ALL[(n % 3) as usize];
        let item = add_item(&store, project.id, n, status, due.as_deref(), assignee).await;
        if assignee.is_some() {
            matching.push(item);
        }
    }
    let mut short_pages = 0;
    for sort in [
        "created_at",
        "-created_at",
        "due_date",
        "-due_date",
        "status",
    ] {
        let sort = Sort::parse(sort).unwrap();
        let mut expected = matching.clone();
        expected.sort_by_key(|item| sort.position(item));
        let expected: Vec<ItemId> = expected.iter().map(|i| i.id).collect();
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_items(&ItemQuery {
                    scope: ItemScope::Project(project.id),
                    filter: filter(None, None, Some("mia"), &name("olga")),
                    sort,
                    today: Zone::utc().today(at(0)),
                    after,
                    limit: 2,
                })
                .await
                .unwrap();
            if page.items.len() < 2 && page.next.is_some() {
                short_pages += 1;
            }
            walked.extend(page.items.iter().map(|i| i.id));
            match page.next {
                Some(position) => after = Some(position),
                None => break,
            }
        }
        assert_eq!(walked, expected, "{sort:?}");
    }
    assert!(short_pages > 0, "no page ended early on the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_pages_end_early_on_the_read_budget_and_miss_nothing() {
    // A budget of one row: every page that takes more work than the
    // smallest walk is served by the budget's path.
    let store = taskgate_embedded::EmbeddedStore::in_memory()
        .unwrap()
        .with_read_budget(1);
    pages_end_early_on_the_read_budget_and_miss_nothing(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_pages_end_early_on_the_read_budget_and_miss_nothing() {
    let store = taskgate_e2e::dynamodb_store().await.with_read_budget(4);
    pages_end_early_on_the_read_budget_and_miss_nothing(Arc::new(store)).await;
}

async fn the_feed_numbers_every_change_of_a_project_once_and_in_commit_order(store: Store) {
    let owner = UserId::new();
    // Creation and one member: positions 1 and 2, read back at once.
    let project = project(&store, ("olga", owner), &[("mia", UserId::new())]).await;
    let feed = store.project_feed(&project.id, 0, 100).await.unwrap();
    let positions: Vec<u64> = feed.iter().map(|e| e.position).collect();
    assert_eq!(positions, [1, 2]);
    assert!(matches!(&feed[0].change, FeedChange::Project(e) if e.seq == 1));
    assert!(matches!(&feed[1].change, FeedChange::Project(e) if e.seq == 2));

    // Items created and edited concurrently by 32 writers: every append
    // returns its own position (none gives up racing for the head), and the
    // feed lists each entry exactly once at that position, positions 3..
    // with no gap.
    let writers = (0..32).map(|n| {
        let store = store.clone();
        let project = project.id;
        tokio::spawn(async move {
            let item = add_item(&store, project, n, ItemStatus::Pending, None, None).await;
            let log = store.item_log(&item.id).await.unwrap();
            let edit = log[0].next(
                at(n + 10),
                Some(name("mia")),
                ItemChange::Updated(ItemChanges {
                    status: Some(ItemStatus::Completed),
                    ..ItemChanges::default()
                }),
            );
            let next = Item::fold(&[log[0].clone(), edit.clone()]).unwrap();
            let position = store.append_item(&edit, &next).await.unwrap();
            (item.id, position)
        })
    });
    let mut edits = Vec::new();
    for writer in writers {
        edits.push(writer.await.unwrap());
    }
    let feed = store.project_feed(&project.id, 0, 100).await.unwrap();
    let positions: Vec<u64> = feed.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=66).collect::<Vec<_>>());
    for (item, position) in &edits {
        let entry = &feed[*position as usize - 1];
        assert!(
            matches!(&entry.change, FeedChange::Item(e) if e.stream == *item && e.seq == 2),
            "position {position} is not the edit of {item}: {entry:?}"
        );
    }
    // Each item's creation comes before its edit.
    for (item, edit_position) in &edits {
        let created = feed
            .iter()
            .find(|e| matches!(&e.change, FeedChange::Item(x) if x.stream == *item && x.seq == 1))
            .unwrap();
        assert!(created.position < *edit_position);
    }
    // Reading after a position, a page at a time.
    let page = store.project_feed(&project.id, 5, 4).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        [6, 7, 8, 9]
    );
    assert!(
        store
            .project_feed(&project.id, 66, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Another project's feed is its own.
    let other = self::project(&store, ("olga", owner), &[]).await;
    let feed = store.project_feed(&other.id, 0, 100).await.unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].position, 1);
}
