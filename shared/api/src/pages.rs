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

/// What one kept page costs besides its bytes (its key, the map's slot),
/// counted against the bound so that many small pages are bounded too.
const ENTRY_BYTES: usize = 256;

/// At most `max_bytes` (`TASKGATE_PAGE_CACHE_BYTES`) of pages and their
/// keys; past it the cache starts over (simpler than least-recently-used,
/// and a page is cheap to read again).
pub(crate) struct PageCache {
    max_bytes: usize,
    inner: Mutex<Pages>,
}

#[derive(Default)]
struct Pages {
    pages: HashMap<ItemQuery, (u64, Bytes)>,
    /// What `pages` holds, counted as in [`PageCache::keep`].
    bytes: usize,
}

impl PageCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::default(),
        }
    }

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
        let cost = body.len() + ENTRY_BYTES;
        if cost > self.max_bytes {
            return;
        }
        let mut pages = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // The same query kept at an earlier version is replaced, not added.
        let replaced = pages
            .pages
            .remove(&query)
            .map_or(0, |(_, old)| old.len() + ENTRY_BYTES);
        pages.bytes -= replaced;
        if pages.bytes + cost > self.max_bytes {
            pages.pages.clear();
            pages.bytes = 0;
        }
        pages.bytes += cost;
        pages.pages.insert(query, (version, body));
    }
}

#[cfg(test)]
mod tests {
    use taskgate_domain::ports::ItemScope;
    use taskgate_domain::project::listing::{ItemFilter, Sort};
    use taskgate_domain::project::{DueDate, ProjectId};

    use super::*;

    fn query(project: ProjectId, limit: usize) -> ItemQuery {
        ItemQuery {
            scope: ItemScope::Project(project),
            filter: ItemFilter::default(),
            sort: Sort::parse("created_at").unwrap(),
            today: DueDate::parse("2026-12-01").unwrap().date(),
            after: None,
            limit,
        }
    }

    fn page(bytes: usize) -> Bytes {
        Bytes::from(vec![b' '; bytes])
    }

    #[test]
    fn a_page_is_answered_only_at_the_version_it_was_kept_at() {
        let cache = PageCache::new(1 << 20);
        let project = ProjectId::new();
        cache.keep(query(project, 50), 7, page(10));
        assert_eq!(cache.get(&query(project, 50), 7), Some(page(10)));
        assert_eq!(cache.get(&query(project, 50), 8), None);
        assert_eq!(cache.get(&query(project, 49), 7), None);
        assert_eq!(cache.get(&query(ProjectId::new(), 50), 7), None);
        // Kept again at a later version: the earlier is gone.
        cache.keep(query(project, 50), 8, page(20));
        assert_eq!(cache.get(&query(project, 50), 7), None);
        assert_eq!(cache.get(&query(project, 50), 8), Some(page(20)));
    }

    #[test]
    fn what_is_kept_stays_within_its_bytes() {
        let project = ProjectId::new();
        // Room for three pages of 100 bytes and their keys, not four.
        let cache = PageCache::new(3 * (100 + ENTRY_BYTES));
        for limit in 1..=3 {
            cache.keep(query(project, limit), 1, page(100));
        }
        for limit in 1..=3 {
            assert!(cache.get(&query(project, limit), 1).is_some(), "{limit}");
        }
        // Kept again in place: still within bounds, the others stay.
        cache.keep(query(project, 3), 2, page(100));
        assert!(cache.get(&query(project, 1), 1).is_some());
        // A fourth starts the cache over.
        cache.keep(query(project, 4), 1, page(100));
        assert!(cache.get(&query(project, 1), 1).is_none());
        assert!(cache.get(&query(project, 4), 1).is_some());
        let kept = cache.inner.lock().unwrap().bytes;
        assert_eq!(kept, 100 + ENTRY_BYTES);
        // A page larger than the whole bound is not kept, and nothing with 0.
        cache.keep(query(project, 5), 1, page(3 * (100 + ENTRY_BYTES)));
        assert!(cache.get(&query(project, 5), 1).is_none());
        let none = PageCache::new(0);
        none.keep(query(project, 1), 1, page(1));
        assert!(none.get(&query(project, 1), 1).is_none());
    }
}
