//! Writes that arrive together are committed together, each in its own
//! savepoint: a call that fails leaves the others of its batch alone, and
//! every call's answer says whether its write is stored.

use std::sync::Arc;

use taskgate_domain::ports::{StoreError, UserStore};
use taskgate_domain::user::{Level, Username};
use taskgate_embedded::EmbeddedStore;

mod common;
use common::user;

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
