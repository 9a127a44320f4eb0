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
//! - [`realtime`]: what each real-time subscription shows, in which order:
//!   one state machine per subscription, which both WebSocket transports
//!   drive.
//! - [`settings`]: the settings every transport shares, each declared once
//!   (variable, default, bounds, help) and read by clap.
//! - [`uploads`]: removing files and unfinished uploads, and reaping the
//!   uploads past their expiry.
#![forbid(unsafe_code)]

pub mod conflict;
pub mod export;
pub mod realtime;
pub mod settings;
pub mod uploads;
