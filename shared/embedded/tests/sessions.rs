//! Sessions are served from memory after the first read, and every
//! revocation or user change made through the store takes effect at once.

use std::time::Duration;

use taskgate_domain::ports::{SessionStore, TokenStore, UserStore};
use taskgate_domain::token::TokenRecord;
use taskgate_domain::user::{Level, User};
use taskgate_embedded::EmbeddedStore;

mod common;
use common::user;

fn token(user: &User) -> TokenRecord {
    let now = taskgate_domain::now();
    TokenRecord {
        jti: taskgate_domain::token::TokenId::new(),
        username: user.username.clone(),
        user_id: user.user_id,
        issued_at: now,
        expires_at: now + Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn revocations_and_user_changes_are_seen_at_once() {
    let store = EmbeddedStore::in_memory().unwrap();
    let admin = user("root", Level::Admin);
    store.insert_user(&admin).await.unwrap();
    let alice = user("alice", Level::User);
    store.insert_user(&alice).await.unwrap();
    let (first, second, third) = (token(&alice), token(&alice), token(&alice));
    for t in [&first, &second, &third] {
        store.insert_token(t).await.unwrap();
    }
    let session = |t: &TokenRecord| {
        let (store, jti, name) = (store.clone(), t.jti, t.username.clone());
        async move { store.load_session(&jti, &name).await.unwrap() }
    };
    // A forged token pairing alice's id with another name reads that pair;
    // it never becomes alice's session.
    let forged = store
        .load_session(&first.jti, &admin.username)
        .await
        .unwrap();
    assert_eq!(forged.1.as_ref(), Some(&admin));
    // Read twice: the second read is the cached one, and the same.
    let (t, u) = session(&first).await;
    assert_eq!((t.as_ref(), u.as_ref()), (Some(&first), Some(&alice)));
    assert_eq!(
        session(&first).await,
        (Some(first.clone()), Some(alice.clone()))
    );

    // Logout: that token is gone at once, the others stay.
    store.delete_token(&first.jti).await.unwrap();
    assert_eq!(session(&first).await.0, None);
    assert!(session(&second).await.0.is_some());

    // A change to the user (a promotion) is what the next read sees.
    let mut promoted = alice.clone();
    promoted.level = Level::Admin;
    promoted.version += 1;
    store.update_user(&alice, &promoted).await.unwrap();
    assert_eq!(session(&second).await.1.unwrap().level, Level::Admin);

    // Revoking every other token (a password change) keeps only that one.
    session(&third).await;
    store
        .delete_user_tokens(&alice.username, Some(&second.jti))
        .await
        .unwrap();
    assert_eq!(session(&third).await.0, None);
    assert!(session(&second).await.0.is_some());

    // Deleting the user: no session of theirs survives in memory.
    store.delete_user(&promoted).await.unwrap();
    assert_eq!(session(&second).await.1, None);
}
