//! `BlobStore` in a directory (the data directory's `files/`): an upload
//! is `uploads/<id>`, appended to in place; a finished file is moved to
//! `done/<id>`. Every append is flushed to disk (`fsync`) before it is
//! reported, so an offset the caller records is never ahead of the bytes.
//! An append that is rolled back is cut off again (`set_len`); the state
//! only remembers the committed length.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::json;
use taskgate_domain::file::{BlobState, FileId};
use taskgate_domain::ports::{Appended, BlobError, BlobStore, BodyReader, ByteStream};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

/// Bytes read from disk per chunk of a download.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes gathered before each write of an append.
const WRITE_BUFFER: usize = 1 << 20;

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct DiskBlobs {
    root: PathBuf,
}

fn io(e: std::io::Error) -> BlobError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlobError::Missing
    } else {
        BlobError::Other(Box::new(e))
    }
}

fn offset_of(state: &BlobState) -> u64 {
    state["offset"].as_u64().unwrap_or(0)
}

impl DiskBlobs {
    /// Blobs under `root` (created if missing, mode 0700 on Unix).
    pub fn open(root: &Path) -> std::io::Result<Self> {
        for dir in [root.join("uploads"), root.join("done")] {
            std::fs::create_dir_all(&dir)?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn upload(&self, id: &FileId) -> PathBuf {
        self.root.join("uploads").join(id.to_string())
    }

    fn done(&self, id: &FileId) -> PathBuf {
        self.root.join("done").join(id.to_string())
    }

    /// Names of every upload and file kept (for tests and audits).
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for dir in ["uploads", "done"] {
            for entry in std::fs::read_dir(self.root.join(dir))? {
                names.push(format!("{dir}/{}", entry?.file_name().to_string_lossy()));
            }
        }
        names.sort();
        Ok(names)
    }
}

#[async_trait]
impl BlobStore for DiskBlobs {
    async fn start(&self, id: &FileId) -> Result<BlobState, BlobError> {
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.upload(id))
            .await
            .map_err(io)?;
        Ok(json!({"offset": 0}))
    }

    async fn append(
        &self,
        id: &FileId,
        state: &BlobState,
        offset: u64,
        body: ByteStream,
        max: u64,
    ) -> Result<Appended, BlobError> {
        debug_assert_eq!(offset, offset_of(state));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(self.upload(id))
            .await
            .map_err(io)?;
        // Anything past the committed offset is a rolled-back or failed
        // append: it goes.
        file.set_len(offset).await.map_err(io)?;
        file.seek(SeekFrom::Start(offset)).await.map_err(io)?;
        // Bodies arrive in frames of a few KiB; each write to a tokio file
        // is a trip to the blocking pool, so gather a MiB per trip.
        let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut body = BodyReader::new(body, max);
        while let Some(piece) = body.next().await {
            file.write_all(&piece).await.map_err(io)?;
        }
        let taken = body.taken;
        file.flush().await.map_err(io)?;
        file.get_mut().sync_data().await.map_err(io)?;
        Ok(Appended {
            state: json!({"offset": offset + taken.bytes}),
            bytes: taken.bytes,
            cut: taken.cut,
            truncated: taken.truncated,
        })
    }

    async fn commit(
        &self,
        _id: &FileId,
        _before: &BlobState,
        _after: &BlobState,
    ) -> Result<(), BlobError> {
        Ok(())
    }

    async fn rollback(
        &self,
        id: &FileId,
        before: &BlobState,
        _pending: &BlobState,
    ) -> Result<(), BlobError> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(self.upload(id))
            .await
            .map_err(io)?;
        file.set_len(offset_of(before)).await.map_err(io)?;
        file.sync_data().await.map_err(io)
    }

    async fn finish(&self, id: &FileId, state: &BlobState, size: u64) -> Result<(), BlobError> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(self.upload(id))
            .await
            .map_err(io)?;
        file.set_len(offset_of(state).min(size)).await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        tokio::fs::rename(self.upload(id), self.done(id))
            .await
            .map_err(io)
    }

    async fn abort(&self, id: &FileId, _state: &BlobState) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.upload(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn read(
        &self,
        id: &FileId,
        range: Range<u64>,
        _size: u64,
    ) -> Result<ByteStream, BlobError> {
        let mut file = tokio::fs::File::open(self.done(id)).await.map_err(io)?;
        file.seek(SeekFrom::Start(range.start)).await.map_err(io)?;
        let limited = file.take(range.end.saturating_sub(range.start));
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            limited, READ_CHUNK,
        )))
    }

    async fn delete(&self, id: &FileId) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.done(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }
}
