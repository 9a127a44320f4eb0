//! # Taskgate domain
//!
//! Everything Taskgate knows about users and tokens, with no AWS, no HTTP and
//! no JavaScript engine in sight. Adapters (`taskgate-embedded`,
//! `taskgate-aws`) implement the ports declared here; the HTTP layer
//! (`taskgate-api`) parses requests into these types and calls the rules.
//!
//! Map of the crate:
//! - [`user`]: `Username`, `Level`, `Email`, `Profile`, `UserId` and the `User` record.
//!   Every newtype has a `parse` that returns `Result`, so an invalid value
//!   cannot exist past the edge.
//! - [`clock`]: where "now" comes from, injected wherever a rule depends on
//!   it, so tests control time instead of sleeping.
//! - [`password`]: the password policy (NIST SP 800-63B: length, not
//!   composition) and argon2id hashing with OWASP's parameters.
//! - [`token`]: JWT issuing and verification (HS256 only) and the stored
//!   token record that makes logout and revocation possible.
//! - [`permission`]: the Users rows of the permission matrix as plain functions.
//! - [`chain`]: the one hash chain every log is made of (tasks, projects,
//!   items): entries, their hashes, and the chain's checks.
//! - [`task`]: tasks, their hash-chained event log, the fold that turns events
//!   into state, and [`task::verify`], which checks a log's invariants.
//! - [`project`]: projects, members and work items: value types, their
//!   hash-chained logs and folds, who may do what, listing filters.
//! - [`conflict`]: the one loop every conditional change goes through
//!   (load, decide, append on the condition that nothing changed, and after
//!   a lost race again), over an [`conflict::Aggregate`]: a task's log here,
//!   projects, items and accounts in `taskgate-app`.
//! - [`recorder`]: appending to a task's log (conditional on the next seq,
//!   retried after a lost race through [`conflict`]), shared by the API, the
//!   engines and the steps.
//! - [`security`]: the security audit log's events and the login throttle.
//! - `schema` (feature `openapi`): the OpenAPI schemas of the value types,
//!   built from the same constants their `parse` functions check.
//! - [`ports`]: the narrow traits the adapters implement: stores, the task
//!   log, the workflow engine and the JavaScript runner.
#![forbid(unsafe_code)]

pub mod chain;
pub mod clock;
pub mod conflict;
pub mod file;
pub mod password;
pub mod permission;
pub mod ports;
pub mod project;
pub mod recorder;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod security;
pub mod task;
#[cfg(test)]
mod testing;
pub mod timestamp;
pub mod token;
pub mod user;

/// Current time, truncated to whole milliseconds.
///
/// Stores keep timestamps as RFC 3339 strings with millisecond precision;
/// truncating at the source means a value read back equals the value written.
pub fn now() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    let nanos = now.nanosecond();
    now.replace_nanosecond(nanos - nanos % 1_000_000)
        .expect("a truncated nanosecond value is always valid")
}
