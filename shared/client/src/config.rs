//! What the client keeps between runs, in the user's config directory
//! (`$TASKGATE_CONFIG_DIR`, else `~/.config/taskgate`): the token per
//! server (`credentials.json`) and the uploads not finished yet
//! (`uploads.json`, so running the same upload again resumes it). Both
//! files are the user's alone (mode 0600, in a 0700 directory).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Failure;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub token: String,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// An upload started and not finished: where it is on the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingUpload {
    /// `/files/{id}`.
    pub location: String,
    pub size: u64,
}

#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
}

fn io_failure(what: &str, path: &std::path::Path, e: std::io::Error) -> Failure {
    Failure::Other(format!("cannot {what} {}: {e}", path.display()))
}

impl Store {
    /// The config directory: `$TASKGATE_CONFIG_DIR`, else the platform's
    /// (`~/.config/taskgate` on Linux).
    pub fn open() -> Result<Self, Failure> {
        let dir = match std::env::var_os("TASKGATE_CONFIG_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => dirs::config_dir()
                .ok_or_else(|| {
                    Failure::Other(
                        "there is no config directory (set HOME or TASKGATE_CONFIG_DIR)".into(),
                    )
                })?
                .join("taskgate"),
        };
        Ok(Self { dir })
    }

    /// A store in `dir` (tests: never the user's own).
    #[cfg(test)]
    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn read<T: for<'de> Deserialize<'de> + Default>(&self, name: &str) -> Result<T, Failure> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Other(format!(
                    "{} is not what taskgate wrote ({e}); remove it and log in again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(io_failure("read", &path, e)),
        }
    }

    /// Writes `value` to `name` atomically (a temporary file renamed over
    /// it), readable and writable by the user alone.
    fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), Failure> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io_failure("create", &self.dir, e))?;
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| io_failure("write", &temporary, e))?;
        // An existing file keeps its mode through open(); make sure.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_failure("protect", &temporary, e))?;
        let bytes = serde_json::to_vec_pretty(value).expect("the client's state serialises");
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_failure("write", &temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| io_failure("write", &path, e))
    }

    pub fn credentials(&self, server: &str) -> Result<Option<Credentials>, Failure> {
        let all: BTreeMap<String, Credentials> = self.read("credentials.json")?;
        Ok(all.get(server).cloned())
    }

    pub fn save_credentials(&self, server: &str, credentials: Credentials) -> Result<(), Failure> {
        let mut all: BTreeMap<String, Credentials> = self.read("credentials.json")?;
        all.insert(server.to_owned(), credentials);
        self.write("credentials.json", &all)
    }

    pub fn forget_credentials(&self, server: &str) -> Result<bool, Failure> {
        let mut all: BTreeMap<String, Credentials> = self.read("credentials.json")?;
        let had = all.remove(server).is_some();
        self.write("credentials.json", &all)?;
        Ok(had)
    }

    pub fn pending_upload(&self, key: &str) -> Result<Option<PendingUpload>, Failure> {
        let all: BTreeMap<String, PendingUpload> = self.read("uploads.json")?;
        Ok(all.get(key).cloned())
    }

    pub fn set_pending_upload(
        &self,
        key: &str,
        upload: Option<PendingUpload>,
    ) -> Result<(), Failure> {
        let mut all: BTreeMap<String, PendingUpload> = self.read("uploads.json")?;
        match upload {
            Some(upload) => all.insert(key.to_owned(), upload),
            None => all.remove(key),
        };
        self.write("uploads.json", &all)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.clone()
    }
}
