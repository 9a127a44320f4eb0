//! End-to-end tests: the real HTTP API over real sockets, on the embedded
//! store and on DynamoDB Local. One test binary, so the workspace is linked
//! once. Run them all with `tests/run.sh`.

mod audit;
mod auth;
mod backup;
mod bad_input;
mod blob_store;
mod client;
mod console;
mod deployment;
mod exports;
mod faults;
mod file_store;
mod files;
mod idempotency;
mod infra;
mod items;
mod lambda;
mod lambda_runtime;
mod limits;
mod matrix;
mod openapi;
mod operations;
mod project_store;
mod projects;
mod realtime;
mod realtime_aws;
mod realtime_bounds;
mod reconciler;
mod security;
mod server;
mod sfn;
mod steps;
mod store_contract;
mod streaming;
mod sweep;
mod task_matrix;
mod tasks;
mod token_attacks;
mod users;
