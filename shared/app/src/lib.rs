//! # Taskgate's use cases
//!
//! What the application does, between the transports (the HTTP handlers,
//! the WebSocket, the Lambda steps) and the domain: no HTTP, no AWS, no
//! JavaScript engine here, only the domain's types and ports. Transports
//! translate to and from these; the rules they apply live in the domain.
//!
//! - [`conflict`]: load, decide, append conditionally, and after a lost
//!   race read again, with jittered pauses: the loop every change to a
//!   log-backed aggregate (projects, items, users) goes through.
//! - [`export`]: export tasks (a project's items as CSV or NDJSON, files as
//!   a zip) written through the blob port, on disk or on S3.
//! - [`settings`]: the settings every transport shares, each declared once
//!   (variable, default, bounds, help) and read by clap.
//! - [`uploads`]: files whose bytes arrive over time, for every transport:
//!   created within the owner's quotas, appended under a lease guard (tus)
//!   or written before their record (the compatibility upload, exports),
//!   finished, removed, and reaped past their expiry.
#![forbid(unsafe_code)]

pub mod conflict;
pub mod export;
pub mod settings;
pub mod uploads;
