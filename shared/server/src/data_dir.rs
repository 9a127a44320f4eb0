//! The data directory: created private (0700), holding files that are
//! created once, private (0600), and never overwritten.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Creates the data directory, or tightens an existing one, to 0700: it
/// holds the JWT signing secret and the TLS key.
pub(crate) fn create(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make the data directory {} private", dir.display()))
}

/// Reads `path`, or creates it with `contents()` if it does not exist. When
/// two processes race, one creates it and both read the same contents.
pub(crate) fn read_or_create(
    path: &Path,
    contents: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<(Vec<u8>, bool)> {
    match fs::read(path) {
        Ok(bytes) => return Ok((bytes, false)),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let bytes = contents()?;
    // Write to a private temporary file, then link it into place: readers
    // never see a half-written file, and an existing file is never replaced.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((bytes, true)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let bytes =
                fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Ok((bytes, false))
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Copies the data directory `dir` of a running (or stopped) server into
/// the new directory `into`, private like the original: the database as of
/// one moment (SQLite's online backup), the signing secret and the TLS
/// certificate and key, and the bytes of every file complete in that copy.
/// Unfinished uploads are not copied (their records are, and they expire).
pub fn backup(dir: &Path, into: &Path) -> anyhow::Result<taskgate_embedded::backup::BackupReport> {
    let database = dir.join(crate::server::DATABASE_FILE);
    if !database.exists() {
        anyhow::bail!("{} has no database to back up", dir.display());
    }
    if into.exists()
        && fs::read_dir(into)
            .with_context(|| format!("cannot read {}", into.display()))?
            .next()
            .is_some()
    {
        anyhow::bail!(
            "{} is not empty; back up into a new directory",
            into.display()
        );
    }
    create(into)?;
    let files = crate::server::FILES_DIR;
    let report = taskgate_embedded::backup::backup(
        &database,
        &into.join(crate::server::DATABASE_FILE),
        &dir.join(files).join("done"),
        &into.join(files).join("done"),
    )
    .map_err(|e| anyhow::anyhow!("{}", taskgate_domain::ports::Chain(&e)))?;
    fs::create_dir_all(into.join(files).join("uploads"))
        .with_context(|| format!("cannot create {}", into.display()))?;
    for name in [
        crate::server::JWT_SECRET_FILE,
        crate::server::TLS_CERT_FILE,
        crate::server::TLS_KEY_FILE,
    ] {
        let from = dir.join(name);
        if from.exists() {
            fs::copy(&from, into.join(name))
                .with_context(|| format!("cannot copy {}", from.display()))?;
            fs::set_permissions(into.join(name), fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(report)
}
