//! # Taskgate's use cases
//!
//! What the application does, between the transports (the HTTP handlers,
//! the WebSocket, the Lambda steps) and the domain: no HTTP, no AWS, no
//! JavaScript engine here, only the domain's types and ports. Transports
//! translate to and from these; the rules they apply live in the domain.
//!
//! - [`projects`], [`items`], [`users`]: what the API does with projects
//!   and their members, work items, and accounts. Each operation takes the
//!   [`ports::Ports`] it works through, the acting account and a typed
//!   command, and answers a typed result or an [`Error`]; who may do what
//!   is the domain's to decide, asked from here.
//! - [`conflict`]: load, decide, append conditionally, and after a lost
//!   race read again, with jittered pauses: the one loop
//!   ([`conflict::change`] over an [`conflict::Aggregate`]) every change
//!   to a project, an item or an account goes through. It is the domain's
//!   (`taskgate_domain::conflict`), where the task recorder goes through it
//!   too; this crate names it where its use cases find it.
//! - [`audit`]: writing to the security log after the change it records.
//! - [`export`]: export tasks (a project's items as CSV or NDJSON, files as
//!   a zip) written through the blob port, on disk or on S3.
//! - [`realtime`]: what each real-time subscription shows, in which order:
//!   one state machine per subscription, which both WebSocket transports
//!   drive.
//! - [`settings`]: the settings every transport shares, each declared once
//!   (variable, default, bounds, help) and read by clap.
//! - [`uploads`]: files whose bytes arrive over time, for every transport:
//!   created within the owner's quotas, appended under a lease guard (tus)
//!   or written before their record (the compatibility upload, exports),
//!   finished, removed, and reaped past their expiry.
#![forbid(unsafe_code)]

pub mod audit;
pub use taskgate_domain::conflict;
mod error;
pub mod export;
pub mod items;
pub mod ports;
pub mod projects;
pub mod realtime;
pub mod settings;
#[cfg(test)]
mod testing;
pub mod uploads;
pub mod users;

pub use error::Error;
