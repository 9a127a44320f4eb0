//! Migration 7 counts each owner's unfinished tasks from the log already
//! written: a database made before the count (built here by writing events
//! without it, then removing the count's table and version) upgrades with
//! the right counts, and the bound holds from there.

use taskgate_domain::ports::{StoreError, TaskLog};
use taskgate_domain::recorder::Recorder;
use taskgate_domain::task::{TaskLimits, TaskSpec};
use taskgate_domain::user::Level;
use taskgate_embedded::EmbeddedStore;

mod common;
use common::user;

#[tokio::test]
async fn a_version_6_database_counts_the_unfinished_tasks_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taskgate.db");
    let (alice, bob) = (user("alice", Level::User), user("bob", Level::User));
    let delay = TaskSpec::delay(60.0, &TaskLimits::default()).unwrap();
    {
        let store = std::sync::Arc::new(EmbeddedStore::open(&path).unwrap());
        let recorder = Recorder::new(store.clone());
        // alice: three tasks, one of them over; bob: one, started.
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                recorder
                    .create(&delay, &alice, u64::MAX)
                    .await
                    .unwrap()
                    .0
                    .id,
            );
        }
        recorder.cancelled(&ids[0], &alice.username).await.unwrap();
        let (bobs, _) = recorder.create(&delay, &bob, u64::MAX).await.unwrap();
        recorder.started(&bobs.id, None).await.unwrap();
    }
    // Back to version 6: what migrations 7 (the count) and later added is
    // removed.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE active_tasks; DROP TABLE idempotency; DROP TABLE task_progress; PRAGMA user_version = 6;",
        )
        .unwrap();
    }
    let store = std::sync::Arc::new(EmbeddedStore::open(&path).unwrap());
    assert_eq!(store.active_tasks(&alice.user_id).await.unwrap(), 2);
    assert_eq!(store.active_tasks(&bob.user_id).await.unwrap(), 1);
    let recorder = Recorder::new(store.clone());
    assert!(matches!(
        recorder.create(&delay, &alice, 2).await,
        Err(StoreError::OverQuota)
    ));
    recorder.create(&delay, &alice, 3).await.unwrap();
}
