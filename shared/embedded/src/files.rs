//! `FileStore` on SQLite: one row per file, the record stored whole beside
//! the columns the quota, the owner's listing and the expiry of unfinished
//! uploads need. The quota check and the insert share one `IMMEDIATE`
//! transaction, so concurrent uploads cannot pass a quota together.

use async_trait::async_trait;
use rusqlite::{OptionalExtension as _, params};
use taskgate_domain::file::{FileId, FileStatus, StoredFile};
use taskgate_domain::ports::{FileStore, Page, StoreError, StoreResult};
use taskgate_domain::user::UserId;
use time::OffsetDateTime;

use crate::{EmbeddedStore, corrupt, sql};

fn from_json(item: &str) -> StoreResult<StoredFile> {
    serde_json::from_str(item).map_err(|e| corrupt("file", e))
}

fn columns(file: &StoredFile) -> (String, String, i64, bool, Option<String>, i64, String) {
    (
        file.id.to_string(),
        file.owner_id.to_string(),
        file.size as i64,
        file.status == FileStatus::Uploading,
        file.expires_at
            .filter(|_| file.status == FileStatus::Uploading)
            .map(taskgate_domain::timestamp::format),
        file.version as i64,
        serde_json::to_string(file).expect("a file record always serialises"),
    )
}

fn rows(
    conn: &rusqlite::Connection,
    statement: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<StoredFile>> {
    let mut statement = conn.prepare_cached(statement).map_err(sql)?;
    let items = statement
        .query_map(params, |row| row.get::<_, String>(0))
        .map_err(sql)?;
    items.map(|item| from_json(&item.map_err(sql)?)).collect()
}

#[async_trait]
impl FileStore for EmbeddedStore {
    async fn insert_file(&self, file: &StoredFile, quota: u64, max_files: u64) -> StoreResult<()> {
        let (id, owner, size, uploading, expires_at, version, item) = columns(file);
        self.with_conn(move |conn| {
            let (used, files): (i64, i64) = conn
                .query_row(
                    "SELECT coalesce(sum(size), 0), count(*) FROM files WHERE owner_id = ?1",
                    [&owner],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(sql)?;
            let (used, files) = (
                u64::try_from(used).unwrap_or(0),
                u64::try_from(files).unwrap_or(0),
            );
            if used.saturating_add(u64::try_from(size).unwrap_or(u64::MAX)) > quota {
                return Err(StoreError::OverQuota);
            }
            if files >= max_files {
                return Err(StoreError::TooManyFiles);
            }
            let inserted = conn
                .execute(
                    "INSERT INTO files (file_id, owner_id, size, uploading, expires_at, version, item)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (file_id) DO NOTHING",
                    params![id, owner, size, uploading, expires_at, version, item],
                )
                .map_err(sql)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists);
            }
            Ok(())
        })
        .await
    }

    async fn get_file(&self, id: &FileId) -> StoreResult<Option<StoredFile>> {
        let id = id.to_string();
        self.with_reader(move |conn| {
            conn.query_row("SELECT item FROM files WHERE file_id = ?1", [id], |row| {
                row.get::<_, String>(0)
            })
            .optional()
            .map_err(sql)?
            .map(|item| from_json(&item))
            .transpose()
        })
        .await
    }

    async fn update_file(&self, current: &StoredFile, next: &StoredFile) -> StoreResult<()> {
        let (id, _, _, uploading, expires_at, version, item) = columns(next);
        let expected = current.version as i64;
        self.with_conn(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE files SET uploading = ?2, expires_at = ?3, version = ?4, item = ?5
                     WHERE file_id = ?1 AND version = ?6",
                    params![id, uploading, expires_at, version, item, expected],
                )
                .map_err(sql)?;
            if changed == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
        .await
    }

    async fn delete_file(&self, file: &StoredFile) -> StoreResult<()> {
        let (id, version) = (file.id.to_string(), file.version as i64);
        self.with_conn(move |conn| {
            let deleted = conn
                .execute(
                    "DELETE FROM files WHERE file_id = ?1 AND version = ?2",
                    params![id, version],
                )
                .map_err(sql)?;
            if deleted == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
        .await
    }

    async fn owner_files(
        &self,
        owner: &UserId,
        after: Option<&FileId>,
        limit: usize,
    ) -> StoreResult<Page<StoredFile, FileId>> {
        let owner = owner.to_string();
        let after = after.map(ToString::to_string);
        self.with_reader(move |conn| {
            // File ids are UUIDv7: descending text order is newest first.
            let found = rows(
                conn,
                "SELECT item FROM files WHERE owner_id = ?1 AND (?2 IS NULL OR file_id < ?2)
                 ORDER BY file_id DESC LIMIT ?3",
                params![owner, after, limit as i64 + 1],
            )?;
            Ok(Page::from_extra(found, limit, |file| file.id))
        })
        .await
    }

    async fn expired_uploads(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<StoredFile>> {
        let now = taskgate_domain::timestamp::format(now);
        self.with_conn(move |conn| {
            rows(
                conn,
                "SELECT item FROM files WHERE uploading = 1 AND expires_at < ?1
                 ORDER BY expires_at LIMIT ?2",
                params![now, limit as i64],
            )
        })
        .await
    }

    async fn used_bytes(&self, owner: &UserId) -> StoreResult<u64> {
        let owner = owner.to_string();
        self.with_reader(move |conn| {
            conn.query_row(
                "SELECT coalesce(sum(size), 0) FROM files WHERE owner_id = ?1",
                [owner],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(sql)
        })
        .await
    }
}
