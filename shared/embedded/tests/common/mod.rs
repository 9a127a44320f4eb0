//! What the embedded store's test files share.

use taskgate_domain::user::{Level, User, Username};

/// A user named `name` at `level`, with a fixed password hash (no hashing).
pub fn user(name: &str, level: Level) -> User {
    let hash = taskgate_domain::password::PasswordHash::parse(
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3V7s8wPDxVyEkXmz4jtoTrhpgXT4x3rKxhWFSmsHCGc",
    )
    .unwrap();
    User::new(Username::parse(name).unwrap(), hash, level, None, None)
}
