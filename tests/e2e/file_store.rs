//! The files contract: what every `FileStore` must do, on the embedded store
//! and DynamoDB Local. Records read back as written, changes conditional on
//! the version, the quota holding under concurrent creations, listings
//! newest first, expired uploads found.

use std::sync::Arc;
use std::time::Duration;

use taskgate_domain::file::{ContentType, FileName, FileStatus, StoredFile};
use taskgate_domain::ports::{FileStore, StoreError};
use taskgate_domain::user::{Level, User};
use taskgate_e2e::fixture_user;
use time::OffsetDateTime;

type Store = Arc<dyn FileStore>;

async fn embedded() -> Store {
    Arc::new(taskgate_embedded::EmbeddedStore::in_memory().unwrap())
}

async fn dynamodb() -> Store {
    Arc::new(taskgate_e2e::dynamodb_store().await)
}

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
    a_file_reads_back_and_changes_only_from_the_version_it_was_read_at,
    the_quota_holds_under_concurrent_uploads_and_deleting_frees_it,
    listings_are_newest_first_and_expired_uploads_are_found,
    a_user_keeps_at_most_max_files_even_empty_ones,
);

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn upload(owner: &User, size: u64, expires_in: i64) -> StoredFile {
    StoredFile::new_upload(
        owner,
        FileName::parse("report.csv").unwrap(),
        ContentType::parse("text/csv").unwrap(),
        size,
        now(),
        now() + time::Duration::seconds(expires_in),
        serde_json::json!({"adapter": "state"}),
    )
}

async fn a_file_reads_back_and_changes_only_from_the_version_it_was_read_at(store: Store) {
    let alice = fixture_user("alice", Level::User);
    let file = upload(&alice, 100, 60);
    store.insert_file(&file, 1000, u64::MAX).await.unwrap();
    assert!(matches!(
        store.insert_file(&file, 1000, u64::MAX).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        store.get_file(&file.id).await.unwrap().as_ref(),
        Some(&file)
    );

    let mut half = file.clone();
    half.offset = 50;
    half.version = 2;
    store.update_file(&file, &half).await.unwrap();
    // A second writer who read the same version loses, and changes nothing.
    let mut theirs = file.clone();
    theirs.offset = 10;
    theirs.version = 2;
    assert!(matches!(
        store.update_file(&file, &theirs).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get_file(&file.id).await.unwrap().unwrap().offset, 50);

    let mut done = half.clone();
    done.offset = 100;
    done.status = FileStatus::Complete;
    done.expires_at = None;
    done.sha256 = Some("ab".repeat(32));
    done.version = 3;
    store.update_file(&half, &done).await.unwrap();
    assert_eq!(
        store.get_file(&file.id).await.unwrap().as_ref(),
        Some(&done)
    );

    // Deleting from an old version fails; from the current one works.
    assert!(matches!(
        store.delete_file(&half).await,
        Err(StoreError::Conflict)
    ));
    store.delete_file(&done).await.unwrap();
    assert_eq!(store.get_file(&file.id).await.unwrap(), None);
    assert!(matches!(
        store.delete_file(&done).await,
        Err(StoreError::Conflict)
    ));
}

async fn the_quota_holds_under_concurrent_uploads_and_deleting_frees_it(store: Store) {
    let bob = Arc::new(fixture_user("bob", Level::User));
    let quota = 1000;
    assert!(matches!(
        store
            .insert_file(&upload(&bob, 1001, 60), quota, u64::MAX)
            .await,
        Err(StoreError::OverQuota)
    ));
    // Ten uploads of 300 bytes at once: at most three fit (DynamoDB may
    // cancel some that raced on the usage item: `Conflict`, never a pass).
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let (store, bob) = (store.clone(), bob.clone());
            tokio::spawn(async move {
                let file = upload(&bob, 300, 60);
                (store.insert_file(&file, quota, u64::MAX).await, file)
            })
        })
        .collect();
    let mut stored = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            (Ok(()), file) => stored.push(file),
            (Err(StoreError::OverQuota | StoreError::Conflict), _) => {}
            (Err(e), _) => panic!("unexpected {e:?}"),
        }
    }
    assert!(
        !stored.is_empty() && stored.len() <= 3,
        "{} uploads passed",
        stored.len()
    );
    let used = store.used_bytes(&bob.user_id).await.unwrap();
    assert_eq!(used, 300 * stored.len() as u64);
    // Fill it up, then one more byte is refused.
    let fill = upload(&bob, quota - used, 60);
    store.insert_file(&fill, quota, u64::MAX).await.unwrap();
    let more = upload(&bob, 100, 60);
    assert!(matches!(
        store.insert_file(&more, quota, u64::MAX).await,
        Err(StoreError::OverQuota)
    ));
    // Deleting a file gives its bytes back.
    store.delete_file(&fill).await.unwrap();
    store.insert_file(&more, quota, u64::MAX).await.unwrap();
    assert_eq!(store.used_bytes(&bob.user_id).await.unwrap(), used + 100);
}

/// Files are bounded in number as in bytes (500 empty files once made 500
/// permanent rows outside any quota): the third of two allowed is
/// `TooManyFiles`, also when they race; deleting one makes room.
async fn a_user_keeps_at_most_max_files_even_empty_ones(store: Store) {
    let dora = Arc::new(fixture_user("dora", Level::User));
    let attempts: Vec<_> = (0..6)
        .map(|_| {
            let (store, dora) = (store.clone(), dora.clone());
            tokio::spawn(async move {
                let file = upload(&dora, 0, 60);
                (store.insert_file(&file, u64::MAX, 2).await, file)
            })
        })
        .collect();
    let mut stored = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            (Ok(()), file) => stored.push(file),
            (Err(StoreError::TooManyFiles | StoreError::Conflict), _) => {}
            (Err(e), _) => panic!("unexpected {e:?}"),
        }
    }
    assert!(
        !stored.is_empty() && stored.len() <= 2,
        "{} files",
        stored.len()
    );
    while stored.len() < 2 {
        let file = upload(&dora, 0, 60);
        store.insert_file(&file, u64::MAX, 2).await.unwrap();
        stored.push(file);
    }
    let one_more = upload(&dora, 0, 60);
    assert!(matches!(
        store.insert_file(&one_more, u64::MAX, 2).await,
        Err(StoreError::TooManyFiles)
    ));
    store.delete_file(&stored[0]).await.unwrap();
    store.insert_file(&one_more, u64::MAX, 2).await.unwrap();
}

async fn listings_are_newest_first_and_expired_uploads_are_found(store: Store) {
    let carol = fixture_user("carol", Level::User);
    let owner = carol.user_id;
    let mut ids = Vec::new();
    for n in 0..5 {
        let file = upload(&carol, 10, if n % 2 == 0 { -10 } else { 3600 });
        store
            .insert_file(&file, u64::MAX / 2, u64::MAX)
            .await
            .unwrap();
        ids.push(file.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let first = store.owner_files(&owner, None, 3).await.unwrap();
    let second = store
        .owner_files(&owner, first.next.as_ref(), 3)
        .await
        .unwrap();
    let listed: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|f| f.id)
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    assert_eq!(second.next, None);
    let expired: Vec<_> = store
        .expired_uploads(now(), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.owner_id == owner)
        .map(|f| f.id)
        .collect();
    assert_eq!(expired.len(), 3, "{expired:?}");
    for id in [ids[0], ids[2], ids[4]] {
        assert!(expired.contains(&id));
    }
    // A finished file never expires.
    let done = store.get_file(&ids[0]).await.unwrap().unwrap();
    let mut finished = done.clone();
    finished.status = FileStatus::Complete;
    finished.expires_at = None;
    finished.version += 1;
    store.update_file(&done, &finished).await.unwrap();
    let expired = store.expired_uploads(now(), 100).await.unwrap();
    assert!(!expired.iter().any(|f| f.id == ids[0]));
}
