//! One module per resource; one `async fn` per endpoint, each with its
//! OpenAPI annotation, reading as authenticate → authorise → parse → act →
//! respond. What a handler needs is in its signature ([`crate::extract`]).
//!
//! Where a caller's right to act does not depend on the body, the handler
//! takes the body (or query) as a `Result` and checks permission first, so a
//! caller who may not act learns nothing from validation errors.

use std::collections::HashMap;

use utoipa::IntoParams;

use crate::extract::FromQuery;
use crate::problem::ApiError;
use crate::request;

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod compat;
pub(crate) mod files;
pub(crate) mod items;
pub(crate) mod projects;
pub(crate) mod root;
pub(crate) mod tasks;
pub(crate) mod users;

/// `?limit=&cursor=` of a listing.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: usize,
    /// `next` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

impl PageQuery {
    /// Where the listing continues: `parse` turns the cursor's key back into
    /// a position (422 if it is not a cursor this API handed out).
    pub fn cursor<T>(&self, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, ApiError> {
        request::cursor(self.cursor.as_deref(), parse)
    }

    /// Reads `limit` and `cursor` from parameters already checked.
    pub fn from_map(params: &HashMap<String, String>) -> Result<Self, ApiError> {
        Ok(Self {
            limit: request::page_size(params)?,
            cursor: params.get("cursor").cloned(),
        })
    }
}

impl FromQuery for PageQuery {
    const NAMES: &'static [&'static str] = &["limit", "cursor"];

    fn from_params(params: HashMap<String, String>) -> Result<Self, ApiError> {
        Self::from_map(&params)
    }
}
