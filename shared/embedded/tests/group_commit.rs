//! Writes that arrive together are committed together, each in its own
//! savepoint: a call that fails leaves the others of its batch alone, and
//! every call's answer says whether its write is stored.

use std::sync::Arc;

use taskgate_domain::ports::{StoreError, UserStore};
use taskgate_domain::user::{Level, Username};
use taskgate_embedded::EmbeddedStore;

mod common;
use common::{give_up, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_call_leaves_its_batch_mates_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("db.sqlite")).unwrap());
    // 200 creations at once, every name twice: one of each pair wins.
    let mut calls = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        calls.push(tokio::spawn(async move {
            store
                .insert_user(&user(&format!("user{}", i / 2), Level::User))
                .await
        }));
    }
    let mut created = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::AlreadyExists) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(created, 100);
    // What was answered Ok is stored, also for a fresh reader of the file.
    let reopened = EmbeddedStore::open(&dir.path().join("db.sqlite")).unwrap();
    for i in 0..100 {
        let name = Username::parse(&format!("user{i}")).unwrap();
        assert!(reopened.get_user(&name).await.unwrap().is_some(), "user{i}");
    }
    let page = reopened.list_users(None, 500).await.unwrap();
    assert_eq!(page.items.len(), 100);
}

/// A write whose caller gave up before its answer is still committed, and
/// what the store keeps in memory forgets the old state all the same: a
/// task's cached log, a logged-out session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_caller_gave_up_is_seen_by_the_next_read() {
    use taskgate_domain::ports::{SessionStore, TaskLog, TokenStore};
    use taskgate_domain::recorder::Recorder;
    use taskgate_domain::task::{EventData, TaskLimits, TaskSpec};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("db.sqlite")).unwrap());
    let alice = user("alice", Level::User);
    store.insert_user(&alice).await.unwrap();
    let delay = TaskSpec::delay(60.0, &TaskLimits::default()).unwrap();
    let (task, _) = Recorder::new(store.clone())
        .create(&delay, &alice, u64::MAX)
        .await
        .unwrap();
    let now = taskgate_domain::now();
    let token = taskgate_domain::token::TokenRecord {
        jti: taskgate_domain::token::TokenId::new(),
        username: alice.username.clone(),
        user_id: alice.user_id,
        issued_at: now,
        expires_at: now + std::time::Duration::from_secs(3600),
    };
    store.insert_token(&token).await.unwrap();
    // Both read once, so both are kept in memory.
    let log = store.task_events(&task.id).await.unwrap();
    assert_eq!(log.len(), 1);
    let session = store.load_session(&token.jti, &alice.username).await;
    assert!(session.unwrap().0.is_some());

    let started = log[0].next(now, None, EventData::Started { execution: None });
    give_up(store.append_event(&started)).await;
    give_up(store.delete_token(&token.jti)).await;
    // A write queued after them returns once theirs are committed.
    store.insert_user(&user("bob", Level::User)).await.unwrap();

    assert_eq!(store.task_events(&task.id).await.unwrap().len(), 2);
    let session = store.load_session(&token.jti, &alice.username).await;
    assert_eq!(session.unwrap().0, None);
}
