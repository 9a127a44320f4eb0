//! Item pages kept as the bytes they were answered with, so a page asked
//! again (a team's dashboards polling the same filter) is copied, not
//! queried, parsed and written again.
//!
//! A page is kept with its project's version
//! ([`ProjectStore::project_version`](taskgate_domain::ports::ProjectStore::project_version)),
//! taken before the page was read, and answered again only while the
//! project is still at that version: any change to the project or one of
//! its items through the store moves it on before the change is answered,
//! so no one reads a page older than a change they were told is done.
//! Stores that cannot tell a version without a read (DynamoDB: each Lambda
//! instance sees only its own writes) keep nothing. The key is the query as
//! parsed (filters with `me` resolved to the caller, sort, cursor, limit,
//! and "today" in the caller's time zone); who may read it is checked on
//! every request before the cache is asked.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use taskgate_domain::ports::ItemQuery;

/// Most pages kept, and most bytes; past either the cache starts over.
const MAX_PAGES: usize = 1_024;
const MAX_BYTES: usize = 16 << 20;

#[derive(Default)]
pub(crate) struct PageCache {
    inner: Mutex<Pages>,
}

#[derive(Default)]
struct Pages {
    pages: HashMap<ItemQuery, (u64, Bytes)>,
    bytes: usize,
}

impl PageCache {
    /// The page `query` answered at `version`, if it was kept.
    pub(crate) fn get(&self, query: &ItemQuery, version: u64) -> Option<Bytes> {
        let pages = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match pages.pages.get(query) {
            Some((at, body)) if *at == version => Some(body.clone()),
            _ => None,
        }
    }

    /// Keeps `body`, the page `query` read after its project was at
    /// `version`.
    pub(crate) fn keep(&self, query: ItemQuery, version: u64, body: Bytes) {
        let mut pages = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if pages.pages.len() >= MAX_PAGES || pages.bytes + body.len() > MAX_BYTES {
            pages.pages.clear();
            pages.bytes = 0;
        }
        pages.bytes += body.len();
        if let Some((_, old)) = pages.pages.insert(query, (version, body)) {
            pages.bytes -= old.len();
        }
    }
}
