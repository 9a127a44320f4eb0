//! What the embedded store's test files share (each uses some of it).
#![allow(dead_code)]

use taskgate_domain::user::{Level, User, Username};

/// A user named `name` at `level`, with a fixed password hash (no hashing).
pub fn user(name: &str, level: Level) -> User {
    let hash = taskgate_domain::password::PasswordHash::parse(
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3V7s8wPDxVyEkXmz4jtoTrhpgXT4x3rKxhWFSmsHCGc",
    )
    .unwrap();
    User::new(Username::parse(name).unwrap(), hash, level, None, None)
}

/// Polls `write` once (far enough to queue it) and drops it, as a request
/// whose client went away drops its handler.
pub async fn give_up<T>(write: impl std::future::Future<Output = T>) {
    let mut write = std::pin::pin!(write);
    std::future::poll_fn(|cx| {
        assert!(write.as_mut().poll(cx).is_pending(), "answered at once");
        std::task::Poll::Ready(())
    })
    .await;
}
