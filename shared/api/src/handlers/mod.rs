//! One module per resource; one `async fn` per endpoint, each reading as
//! authenticate → authorise → parse → act → respond.

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod root;
pub(crate) mod tasks;
pub(crate) mod users;
