//! The storage contract: one suite of behaviours every store must have, run
//! against the embedded store (file and in-memory) and DynamoDB Local.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use taskgate_domain::ports::{Store, StoreError};
use taskgate_domain::recorder::{Recorded, Recorder};
use taskgate_domain::security::{LoginAttempts, SecurityEvent, SecurityKind};
use taskgate_domain::task::{
    EventData, Status, TaskError, TaskEvent, TaskId, TaskLimits, TaskSpec,
};
use taskgate_domain::token::{TokenId, TokenRecord};
use taskgate_domain::user::{Email, Level, Profile, User, UserChanges, Username};
use tempfile::TempDir;

/// Which store a contract case runs on.
#[derive(Clone, Copy, Debug)]
enum Kind {
    EmbeddedFile,
    EmbeddedMemory,
    DynamoDb,
}

/// A store, and whatever must live as long as it.
struct Subject {
    store: Arc<dyn Store>,
    _dir: Option<TempDir>,
}

async fn subject(kind: Kind) -> Subject {
    match kind {
        Kind::EmbeddedFile => {
            let dir = tempfile::tempdir().unwrap();
            let store = taskgate_embedded::EmbeddedStore::open(&dir.path().join("t.db")).unwrap();
            Subject {
                store: Arc::new(store),
                _dir: Some(dir),
            }
        }
        Kind::EmbeddedMemory => Subject {
            store: Arc::new(taskgate_embedded::EmbeddedStore::in_memory().unwrap()),
            _dir: None,
        },
        Kind::DynamoDb => Subject {
            store: Arc::new(taskgate_e2e::dynamodb_store().await),
            _dir: None,
        },
    }
}

/// Generates one test per (case, store).
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod embedded_file {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::subject(super::Kind::EmbeddedFile).await.store).await } )*
        }
        mod embedded_memory {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::subject(super::Kind::EmbeddedMemory).await.store).await } )*
        }
        mod dynamodb {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::subject(super::Kind::DynamoDb).await.store).await } )*
        }
    };
}

contract!(
    a_user_reads_back_exactly_as_written,
    a_taken_username_is_already_exists,
    updates_need_the_current_version,
    deletes_need_the_same_identity,
    the_last_admin_cannot_be_deleted_or_demoted,
    concurrent_admin_deletions_leave_one_admin,
    listing_visits_every_user_once,
    tokens_are_stored_read_and_revoked,
    revoking_a_users_tokens_can_keep_one,
    a_session_is_the_token_and_the_user_together,
    task_events_append_once_per_seq_and_read_in_order,
    racing_appends_for_one_seq_have_one_winner,
    cancel_and_completion_racing_record_one_terminal_event,
    owner_listing_is_newest_first_and_pages,
    a_scan_visits_every_event_once,
    login_attempts_change_only_from_what_was_seen,
    racing_login_attempts_each_count_once,
    security_events_append_once_and_list_newest_first,
    an_owners_unfinished_tasks_are_bounded_even_when_started_at_once,
);

fn name(raw: &str) -> Username {
    Username::parse(raw).unwrap()
}

fn user(username: &str, level: Level) -> User {
    taskgate_e2e::fixture_user(username, level)
}

fn token_for(user: &User) -> TokenRecord {
    // Token times are whole seconds (see TokenRecord).
    let issued_at = taskgate_domain::now().replace_millisecond(0).unwrap();
    TokenRecord {
        jti: TokenId::new(),
        username: user.username.clone(),
        user_id: user.user_id,
        issued_at,
        expires_at: issued_at + Duration::from_secs(3600),
    }
}

async fn a_user_reads_back_exactly_as_written(store: Arc<dyn Store>) {
    let mut alice = user("alice", Level::User);
    alice.email = Some(Email::parse("alice@example.com").unwrap());
    alice.profile = Some(
        Profile::from_stored(serde_json::json!({"n": 1.5, "big": 12345678901234567u64, "list": [true, null, "é"], "o": {}}))
            .unwrap(),
    );
    store.insert_user(&alice).await.unwrap();
    assert_eq!(store.get_user(&alice.username).await.unwrap(), Some(alice));
    assert_eq!(store.get_user(&name("nobody")).await.unwrap(), None);
}

async fn a_taken_username_is_already_exists(store: Arc<dyn Store>) {
    let first = user("alice", Level::User);
    store.insert_user(&first).await.unwrap();
    let second = user("alice", Level::Admin);
    assert!(matches!(
        store.insert_user(&second).await,
        Err(StoreError::AlreadyExists)
    ));
    // The failed insert changed nothing, the admin count included.
    assert_eq!(store.get_user(&first.username).await.unwrap(), Some(first));
    assert_eq!(store.count_admins().await.unwrap(), 0);
}

async fn updates_need_the_current_version(store: Arc<dyn Store>) {
    let alice = user("alice", Level::User);
    store.insert_user(&alice).await.unwrap();
    let changes = UserChanges {
        email: Some(Some(Email::parse("a@example.com").unwrap())),
        ..Default::default()
    };
    let v2 = changes.apply_to(&alice).unwrap();
    assert_eq!(v2.version, 2);
    store.update_user(&alice, &v2).await.unwrap();
    // A writer still holding version 1 loses.
    let stale = UserChanges {
        level: Some(Level::Admin),
        ..Default::default()
    }
    .apply_to(&alice)
    .unwrap();
    assert!(matches!(
        store.update_user(&alice, &stale).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get_user(&alice.username).await.unwrap(),
        Some(v2.clone())
    );
    assert_eq!(store.count_admins().await.unwrap(), 0);
    // Promotion through the current version counts the new admin.
    let v3 = UserChanges {
        level: Some(Level::Admin),
        ..Default::default()
    }
    .apply_to(&v2)
    .unwrap();
    store.update_user(&v2, &v3).await.unwrap();
    assert_eq!(store.count_admins().await.unwrap(), 1);
}

async fn deletes_need_the_same_identity(store: Arc<dyn Store>) {
    let old = user("alice", Level::User);
    store.insert_user(&old).await.unwrap();
    store.delete_user(&old).await.unwrap();
    assert_eq!(store.get_user(&old.username).await.unwrap(), None);
    assert!(matches!(
        store.delete_user(&old).await,
        Err(StoreError::Conflict)
    ));
    // Re-created under the same name: a delete aimed at the old account
    // must not remove the new one, and neither may an update.
    let new = user("alice", Level::User);
    store.insert_user(&new).await.unwrap();
    assert!(matches!(
        store.delete_user(&old).await,
        Err(StoreError::Conflict)
    ));
    let changed = UserChanges {
        email: Some(None),
        profile: Some(Some(
            Profile::from_stored(serde_json::json!({"a": 1})).unwrap(),
        )),
        ..Default::default()
    }
    .apply_to(&old)
    .unwrap();
    assert!(matches!(
        store.update_user(&old, &changed).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get_user(&new.username).await.unwrap(), Some(new));
}

async fn the_last_admin_cannot_be_deleted_or_demoted(store: Arc<dyn Store>) {
    let root = user("root", Level::Admin);
    store.insert_user(&root).await.unwrap();
    assert_eq!(store.count_admins().await.unwrap(), 1);
    assert!(matches!(
        store.delete_user(&root).await,
        Err(StoreError::LastAdmin)
    ));
    let demoted = UserChanges {
        level: Some(Level::User),
        ..Default::default()
    }
    .apply_to(&root)
    .unwrap();
    assert!(matches!(
        store.update_user(&root, &demoted).await,
        Err(StoreError::LastAdmin)
    ));
    assert_eq!(
        store.get_user(&root.username).await.unwrap(),
        Some(root.clone())
    );

    let second = user("second", Level::Admin);
    store.insert_user(&second).await.unwrap();
    assert_eq!(store.count_admins().await.unwrap(), 2);
    store.update_user(&root, &demoted).await.unwrap();
    assert_eq!(store.count_admins().await.unwrap(), 1);
    assert!(matches!(
        store.delete_user(&second).await,
        Err(StoreError::LastAdmin)
    ));
    store.delete_user(&demoted).await.unwrap();
    assert_eq!(store.count_admins().await.unwrap(), 1);
}

async fn concurrent_admin_deletions_leave_one_admin(store: Arc<dyn Store>) {
    // Each round deletes every admin at once. Whatever the interleaving, at
    // least one must survive, and the counter must equal the real number.
    let mut admins: Vec<User> = Vec::new();
    for round in 0..4 {
        for i in 0..3 {
            let admin = user(&format!("r{round}admin{i}"), Level::Admin);
            store.insert_user(&admin).await.unwrap();
            admins.push(admin);
        }
        let mut deletions = tokio::task::JoinSet::new();
        for admin in admins.clone() {
            let store = Arc::clone(&store);
            deletions.spawn(async move { store.delete_user(&admin).await });
        }
        while let Some(outcome) = deletions.join_next().await {
            let outcome = outcome.unwrap();
            assert!(
                matches!(
                    outcome,
                    Ok(()) | Err(StoreError::LastAdmin | StoreError::Conflict)
                ),
                "round {round}: {outcome:?}"
            );
        }
        let mut remaining = Vec::new();
        for admin in &admins {
            if let Some(stored) = store.get_user(&admin.username).await.unwrap() {
                remaining.push(stored);
            }
        }
        assert!(
            !remaining.is_empty(),
            "round {round}: every admin was deleted"
        );
        assert_eq!(
            store.count_admins().await.unwrap(),
            remaining.len() as u64,
            "round {round}: the admin count disagrees with the admins stored"
        );
        admins = remaining;
    }
}

async fn listing_visits_every_user_once(store: Arc<dyn Store>) {
    let mut expected = BTreeSet::new();
    for i in 0..7 {
        let level = if i == 3 { Level::Admin } else { Level::User };
        let u = user(&format!("user{i}"), level);
        expected.insert(u.username.to_string());
        store.insert_user(&u).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store.list_users(after.as_ref(), 3).await.unwrap();
        assert!(page.items.len() <= 3);
        pages += 1;
        seen.extend(page.items.iter().map(|u| u.username.to_string()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages < 10, "the listing does not end");
    }
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
    let all = store.list_users(None, 100).await.unwrap();
    assert_eq!(all.items.len(), 7);
    assert_eq!(all.next, None);
}

async fn tokens_are_stored_read_and_revoked(store: Arc<dyn Store>) {
    let alice = user("alice", Level::User);
    let token = token_for(&alice);
    store.insert_token(&token).await.unwrap();
    assert!(matches!(
        store.insert_token(&token).await,
        Err(StoreError::AlreadyExists)
    ));
    let read = store.get_token(&token.jti).await.unwrap().unwrap();
    assert_eq!(read, token);
    store.delete_token(&token.jti).await.unwrap();
    assert_eq!(store.get_token(&token.jti).await.unwrap(), None);
    // Revoking twice is fine.
    store.delete_token(&token.jti).await.unwrap();
}

async fn revoking_a_users_tokens_can_keep_one(store: Arc<dyn Store>) {
    let alice = user("alice", Level::User);
    let bob = user("bob", Level::User);
    let alice_tokens: Vec<TokenRecord> = (0..30).map(|_| token_for(&alice)).collect();
    let bob_token = token_for(&bob);
    for t in &alice_tokens {
        store.insert_token(t).await.unwrap();
    }
    store.insert_token(&bob_token).await.unwrap();
    let keep = &alice_tokens[7].jti;
    let revoked = store
        .delete_user_tokens(&alice.username, Some(keep))
        .await
        .unwrap();
    assert_eq!(revoked, 29);
    for t in &alice_tokens {
        let present = store.get_token(&t.jti).await.unwrap().is_some();
        assert_eq!(present, &t.jti == keep);
    }
    assert!(store.get_token(&bob_token.jti).await.unwrap().is_some());
    assert_eq!(
        store
            .delete_user_tokens(&alice.username, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.get_token(keep).await.unwrap(), None);
}

async fn a_session_is_the_token_and_the_user_together(store: Arc<dyn Store>) {
    let alice = user("alice", Level::User);
    store.insert_user(&alice).await.unwrap();
    let token = token_for(&alice);
    store.insert_token(&token).await.unwrap();
    let (t, u) = store
        .load_session(&token.jti, &alice.username)
        .await
        .unwrap();
    assert_eq!(t, Some(token.clone()));
    assert_eq!(u, Some(alice.clone()));
    store.delete_user(&alice).await.unwrap();
    let (t, u) = store
        .load_session(&token.jti, &alice.username)
        .await
        .unwrap();
    assert_eq!((t.is_some(), u), (true, None));
    let (t, u) = store
        .load_session(&TokenId::new(), &name("nobody"))
        .await
        .unwrap();
    assert_eq!((t, u), (None, None));
}

fn delay() -> TaskSpec {
    TaskSpec::delay(60.0, &TaskLimits::default()).unwrap()
}

async fn task_events_append_once_per_seq_and_read_in_order(store: Arc<dyn Store>) {
    let recorder = Recorder::new(store.clone());
    let alice = user("alice", Level::User);
    let (task, created) = recorder.create(&delay(), &alice, u64::MAX).await.unwrap();
    assert_eq!(task.status, Status::Pending);
    assert!(matches!(
        store.append_event(&created).await,
        Err(StoreError::AlreadyExists)
    ));
    let started = created.next(
        taskgate_domain::now(),
        None,
        EventData::Started {
            execution: Some("x".into()),
        },
    );
    store.append_event(&started).await.unwrap();
    let done = started.next(
        taskgate_domain::now(),
        None,
        EventData::Succeeded {
            result: serde_json::json!({"n": 0.1, "list": [1, "two", null]}),
            logs: vec!["é".into()],
        },
    );
    store.append_event(&done).await.unwrap();
    let events = store.task_events(&task.id).await.unwrap();
    assert_eq!(events, vec![created, started, done]);
    assert!(taskgate_domain::task::verify(&task.id, &events).is_empty());
    assert!(store.task_events(&TaskId::new()).await.unwrap().is_empty());
}

async fn racing_appends_for_one_seq_have_one_winner(store: Arc<dyn Store>) {
    let recorder = Recorder::new(store.clone());
    let alice = user("alice", Level::User);
    let (_, created) = recorder.create(&delay(), &alice, u64::MAX).await.unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        let event = created.next(
            taskgate_domain::now(),
            None,
            EventData::Failed {
                error: TaskError::new("writer", format!("writer {i}")),
                logs: vec![],
            },
        );
        writers.spawn(async move { store.append_event(&event).await });
    }
    let mut winners = 0;
    while let Some(result) = writers.join_next().await {
        match result.unwrap() {
            Ok(()) => winners += 1,
            Err(StoreError::AlreadyExists) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(store.task_events(&created.stream).await.unwrap().len(), 2);
}

async fn cancel_and_completion_racing_record_one_terminal_event(store: Arc<dyn Store>) {
    let recorder = Recorder::new(store.clone());
    let alice = user("alice", Level::User);
    for round in 0..20 {
        let (task, _) = recorder.create(&delay(), &alice, u64::MAX).await.unwrap();
        if round % 2 == 0 {
            recorder.started(&task.id, None).await.unwrap();
        }
        let (cancel, finish, fail) = tokio::join!(
            recorder.cancelled(&task.id, &alice.username),
            recorder.succeeded(&task.id, serde_json::json!(0), vec![]),
            recorder.failed(&task.id, TaskError::new("boom", "failed"), vec![]),
        );
        let appended = [&cancel, &finish, &fail]
            .iter()
            .filter(|r| matches!(r, Ok(Recorded::Appended(_))))
            .count();
        assert_eq!(appended, 1, "round {round}: {cancel:?} {finish:?} {fail:?}");
        let events = store.task_events(&task.id).await.unwrap();
        let terminal = events.iter().filter(|e| e.change.is_terminal()).count();
        assert_eq!(terminal, 1, "round {round}: {events:#?}");
        assert!(
            taskgate_domain::task::verify(&task.id, &events).is_empty(),
            "round {round}"
        );
    }
}

async fn owner_listing_is_newest_first_and_pages(store: Arc<dyn Store>) {
    let recorder = Recorder::new(store.clone());
    let alice = user("alice", Level::User);
    let bob = user("bob", Level::User);
    let mut created = Vec::new();
    for _ in 0..5 {
        let (task, _) = recorder.create(&delay(), &alice, u64::MAX).await.unwrap();
        // Later events must not make a task appear twice.
        recorder.started(&task.id, None).await.unwrap();
        created.push(task.id);
        recorder.create(&delay(), &bob, u64::MAX).await.unwrap();
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = store
            .owner_tasks(&alice.user_id, after.as_ref(), 2)
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, created);
}

async fn a_scan_visits_every_event_once(store: Arc<dyn Store>) {
    let recorder = Recorder::new(store.clone());
    let alice = user("alice", Level::User);
    let mut expected = BTreeSet::new();
    for _ in 0..4 {
        let (task, _) = recorder.create(&delay(), &alice, u64::MAX).await.unwrap();
        recorder.started(&task.id, None).await.unwrap();
        recorder.cancelled(&task.id, &alice.username).await.unwrap();
        for seq in 1..=3 {
            expected.insert((task.id, seq));
        }
    }
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..20 {
        let page = store.scan_events(after.as_ref(), 5).await.unwrap();
        seen.extend(page.items.iter().map(|e: &TaskEvent| (e.stream, e.seq)));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
}

fn attempts(failures: u32) -> LoginAttempts {
    LoginAttempts {
        failures,
        last_at: taskgate_domain::now(),
    }
}

async fn login_attempts_change_only_from_what_was_seen(store: Arc<dyn Store>) {
    let key = "user:alice";
    assert_eq!(store.login_attempts(key).await.unwrap(), None);
    let first = attempts(1);
    store.put_login_attempts(key, None, &first).await.unwrap();
    assert_eq!(
        store.login_attempts(key).await.unwrap(),
        Some(first.clone())
    );
    // Writing as if nothing were stored, or from a stale count, changes nothing.
    assert!(matches!(
        store.put_login_attempts(key, None, &attempts(1)).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store
            .put_login_attempts(key, Some(&attempts(3)), &attempts(4))
            .await,
        Err(StoreError::Conflict)
    ));
    let second = attempts(2);
    store
        .put_login_attempts(key, Some(&first), &second)
        .await
        .unwrap();
    assert_eq!(store.login_attempts(key).await.unwrap(), Some(second));
    // Keys are independent; clearing forgets one key only.
    store
        .put_login_attempts("device:x", None, &attempts(1))
        .await
        .unwrap();
    store.clear_login_attempts(key).await.unwrap();
    assert_eq!(store.login_attempts(key).await.unwrap(), None);
    assert!(store.login_attempts("device:x").await.unwrap().is_some());
    store.clear_login_attempts("user:never-seen").await.unwrap();
}

async fn racing_login_attempts_each_count_once(store: Arc<dyn Store>) {
    let key = "user:bob";
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        racers.spawn(async move {
            loop {
                let seen = store.login_attempts(key).await.unwrap();
                let next = attempts(seen.as_ref().map_or(0, |s| s.failures) + 1);
                match store.put_login_attempts(key, seen.as_ref(), &next).await {
                    Ok(()) => return next.failures,
                    Err(StoreError::Conflict) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        });
    }
    let mut counts = racers.join_all().await;
    counts.sort();
    assert_eq!(counts, (1..=8).collect::<Vec<_>>());
    assert_eq!(
        store.login_attempts(key).await.unwrap().unwrap().failures,
        8
    );
}

async fn security_events_append_once_and_list_newest_first(store: Arc<dyn Store>) {
    let admin = name("admin");
    let mut written = Vec::new();
    for i in 0..7 {
        let event = SecurityEvent::new(SecurityKind::UserCreated, Some(&admin), format!("user{i}"))
            .with_request_id("req-1")
            .with("level", "user");
        store.append_security_event(&event).await.unwrap();
        written.push(event);
        // UUID v7 ids order by millisecond.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(matches!(
        store.append_security_event(&written[3]).await,
        Err(StoreError::AlreadyExists)
    ));
    let mut read = Vec::new();
    let mut after = None;
    loop {
        let page = store.security_events(after.as_deref(), 3).await.unwrap();
        assert!(page.items.len() <= 3);
        read.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    written.reverse();
    assert_eq!(
        read, written,
        "every event once, exactly as written, newest first"
    );
}

async fn an_owners_unfinished_tasks_are_bounded_even_when_started_at_once(store: Arc<dyn Store>) {
    let recorder = Recorder::new(store.clone());
    let alice = Arc::new(user("alice", Level::User));
    // Ten creations at once against a bound of three: at most three pass,
    // the count says how many did.
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let (recorder, alice) = (recorder.clone(), alice.clone());
            tokio::spawn(async move { recorder.create(&delay(), &alice, 3).await })
        })
        .collect();
    let mut created = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok((task, _)) => created.push(task),
            Err(StoreError::OverQuota) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(
        !created.is_empty() && created.len() <= 3,
        "{} passed",
        created.len()
    );
    assert_eq!(
        store.active_tasks(&alice.user_id).await.unwrap(),
        created.len() as u64
    );
    // Up to the bound, then no further.
    while store.active_tasks(&alice.user_id).await.unwrap() < 3 {
        created.push(recorder.create(&delay(), &alice, 3).await.unwrap().0);
    }
    assert!(matches!(
        recorder.create(&delay(), &alice, 3).await,
        Err(StoreError::OverQuota)
    ));
    // Starting does not free a place; ending (cancelled, failed, succeeded) does.
    recorder.started(&created[0].id, None).await.unwrap();
    assert_eq!(store.active_tasks(&alice.user_id).await.unwrap(), 3);
    recorder
        .cancelled(&created[0].id, &alice.username)
        .await
        .unwrap();
    assert_eq!(store.active_tasks(&alice.user_id).await.unwrap(), 2);
    // Ending twice counts once (the second is not recorded at all).
    recorder
        .cancelled(&created[0].id, &alice.username)
        .await
        .unwrap();
    assert_eq!(store.active_tasks(&alice.user_id).await.unwrap(), 2);
    recorder
        .failed(&created[1].id, TaskError::new("script-error", "x"), vec![])
        .await
        .unwrap();
    recorder
        .succeeded(&created[2].id, serde_json::json!(0), vec![])
        .await
        .unwrap();
    assert_eq!(store.active_tasks(&alice.user_id).await.unwrap(), 0);
    // Another owner has a count of their own.
    let bob = user("bob", Level::User);
    recorder.create(&delay(), &bob, 1).await.unwrap();
    assert!(matches!(
        recorder.create(&delay(), &bob, 1).await,
        Err(StoreError::OverQuota)
    ));
    recorder.create(&delay(), &alice, 1).await.unwrap();
}
