//! Real-time updates over WebSocket on the local server (`GET /ws`; the
//! contract is the "Real-time updates" section of docs/API.md).
//!
//! - [`hub`]: where every stored change is published, per topic.
//! - [`socket`]: one connection's I/O: authentication at the upgrade, the
//!   socket, the hub's streams, the store reads of replays and gap fills,
//!   progress, limits.
//!
//! What each subscription shows, and in which order, is decided by the
//! state machines of [`taskgate_app::realtime`], which the AWS fan-out
//! shares; the topics and the JSON messages are defined there too.

pub mod hub;
pub mod socket;
