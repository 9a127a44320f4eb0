//! # The local server
//!
//! `taskgate serve` runs the whole API as one local HTTPS server, with the
//! same route table and handlers as the Lambda functions, on the embedded
//! store (default) or on DynamoDB (`TASKGATE_STORE=dynamodb`).
//!
//! - [`config`]: `ServeConfig`, every setting read from the environment.
//! - [`server`]: `start` (open the store, bootstrap, bind, serve) and the
//!   running [`server::Server`] handle that tests and `main` share.
//! - [`data_dir`]: the data directory: JWT secret, TLS certificate, database.
//! - [`bootstrap`]: the first admin account.
//! - `http`: the axum router built from the route table.
//! - [`store`]: opening the configured store (creating it, or not, for audits).
//! - [`metrics`]: the Prometheus endpoint.
#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod config;
pub mod data_dir;
mod http;
mod linger;
pub mod metrics;
pub mod server;
pub mod store;

pub use bootstrap::FirstAdmin;
pub use config::{FilesConfig, ServeConfig, StoreConfig};
pub use server::{Server, start, start_with_routes};
