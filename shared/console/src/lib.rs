//! Taskgate's web console: a small client of the API (plain ES modules, no
//! framework, no build step) whose files are embedded in the binary and
//! served at `/app/` by the same router as the API, locally and on AWS.
//!
//! - [`assets`]: the files, fingerprinted once at startup;
//! - [`serve`]: the page and asset responses (CSP, caching);
//! - [`socket_protocol`]: how a browser, which cannot set headers on a
//!   WebSocket, hands `/ws` its token without putting it in the URL.
//!
//! docs/adr/0018-web-console.md records the choices.

pub mod assets;
pub mod serve;
pub mod socket_protocol;

pub use serve::{Console, Elsewhere, ROUTES, asset};
