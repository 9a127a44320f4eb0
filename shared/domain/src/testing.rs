//! What the crate's unit tests share.

use crate::password::PasswordHash;
use crate::user::{Level, User, Username};

/// An account named `name` at `level`, with a well-formed argon2id hash:
/// hashing a password takes a while, and no test using this checks one.
pub(crate) fn user(name: &str, level: Level) -> User {
    let hash = PasswordHash::parse(
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3V7s8wPDxVyEkXmz4jtoTrhpgXT4x3rKxhWFSmsHCGc",
    )
    .expect("a well-formed hash");
    User::new(
        Username::parse(name).expect("a valid username"),
        hash,
        level,
        None,
        None,
    )
}
