//! A consistent copy of a live embedded store: SQLite's online backup API,
//! in one step, which reads the whole database inside one read transaction
//! (WAL lets the server keep writing meanwhile), then the bytes of every
//! file complete in that copy.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use taskgate_domain::ports::{StoreError, StoreResult};

use crate::sql;

/// What a backup copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// The database pages copied.
    pub pages: u64,
    /// Finished files whose bytes were copied.
    pub files: usize,
    /// Finished files of the copy whose bytes were gone by the time they
    /// were copied (deleted meanwhile); their records are in the copy.
    pub missing: Vec<String>,
}

/// Copies the database at `database` to `into` (a new file), consistent as
/// of one moment, while other connections may be writing to it; then copies
/// the bytes of the files complete in that copy from `blobs` (the `done/`
/// directory of the data directory's `files/`) to `blobs_into`.
pub fn backup(
    database: &Path,
    into: &Path,
    blobs: &Path,
    blobs_into: &Path,
) -> StoreResult<BackupReport> {
    if into.exists() {
        return Err(StoreError::other(format!(
            "{} exists already; back up into a new place",
            into.display()
        )));
    }
    let source = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| StoreError::other(format!("cannot open {}: {e}", database.display())))?;
    source
        .busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sql)?;
    let mut target = Connection::open(into)
        .map_err(|e| StoreError::other(format!("cannot create {}: {e}", into.display())))?;
    let pages = {
        let backup = rusqlite::backup::Backup::new(&source, &mut target).map_err(sql)?;
        // All pages in one step: one read transaction, one moment.
        match backup.step(-1).map_err(sql)? {
            rusqlite::backup::StepResult::Done => {}
            other => {
                return Err(StoreError::unavailable(format!(
                    "the backup did not complete in one step ({other:?}); try again"
                )));
            }
        }
        backup.progress().pagecount as u64
    };
    // The copy is a database of its own (not in WAL mode).
    target
        .pragma_update(None, "journal_mode", "DELETE")
        .map_err(sql)?;
    let mut report = BackupReport {
        pages,
        ..BackupReport::default()
    };
    let complete: Vec<String> = {
        let mut statement = target
            .prepare("SELECT file_id FROM files WHERE uploading = 0")
            .map_err(sql)?;
        let ids = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(sql)?;
        ids.collect::<Result<_, _>>().map_err(sql)?
    };
    std::fs::create_dir_all(blobs_into)
        .map_err(|e| StoreError::other(format!("cannot create {}: {e}", blobs_into.display())))?;
    for id in complete {
        let from: PathBuf = blobs.join(&id);
        match std::fs::copy(&from, blobs_into.join(&id)) {
            Ok(_) => report.files += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.missing.push(id),
            Err(e) => {
                return Err(StoreError::other(format!(
                    "cannot copy {}: {e}",
                    from.display()
                )));
            }
        }
    }
    Ok(report)
}
