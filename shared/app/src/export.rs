//! Export tasks: a project's items as CSV or NDJSON, or some of the
//! caller's files as one zip, written into a new file of the caller's
//! through the blob port, so the same code runs under the local engine (on
//! disk) and in the state machine's export step (on S3).
//!
//! The file is a [`NewFile`] of the upload use case, recorded last: the
//! bytes go out in chunks of [`CHUNK`] (an S3 part), each appended and
//! committed with the SHA-256 running over them; memory stays at about one
//! chunk whatever the size. Between chunks the export reports its progress
//! and asks whether to stop. When it stops or fails, it aborts what it
//! wrote (on S3 the multipart upload and its staged objects), so nothing
//! remains. The file's record is written last, once the bytes are
//! complete, with the owner's quota checked in that write (and, so that an
//! export that cannot fit stops early, against what the quota left when it
//! began, before each chunk: [`QuotaCheck::AsWritten`]); the task's result
//! names it.
//!
//! Access is checked again when the export runs, not only when it was
//! asked for: a member removed meanwhile, or a file deleted, fails it.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Deserialize as _;
use serde_json::Value;
use taskgate_domain::clock::Clock;
use taskgate_domain::file::{ContentType, FileId, FileName};
use taskgate_domain::ports::{
    BlobStore, ExportControl, ExportFailure, Exporter, ItemQuery, ItemScope, Store, StoreError,
};
use taskgate_domain::project::listing::{ItemFilter, Sort, SortKey, Zone};
use taskgate_domain::project::log::Item;
use taskgate_domain::project::{ProjectId, access};
use taskgate_domain::task::{Export, Task, TaskError, TaskId, TaskSpec};
use taskgate_domain::user::Username;
use taskgate_views::ExportResult;

use crate::settings::FileLimits;
use crate::uploads::{NewFile, QuotaCheck, UploadError, Uploads};

/// Bytes gathered before they are appended: S3's smallest part, so every
/// append but the last fills a part and nothing is staged between them.
pub const CHUNK: usize = 5 * 1024 * 1024;
/// Items read per page of a project export.
const PAGE: usize = 200;
/// How often progress is reported and a stop asked for (at most).
const REPORT_EVERY: Duration = Duration::from_millis(500);
/// Bytes of a file read into the zip at a time.
const READ_CHUNK: usize = 256 * 1024;

/// The export file's id: the task's own uuid, so whatever an interrupted
/// export left can be found from its task.
pub fn export_file_id(task: &TaskId) -> FileId {
    FileId::parse(&task.to_string()).expect("a task id is a uuid")
}

/// Exports through a store and a blob store (see the module docs).
pub struct StoreExporter {
    store: Arc<dyn Store>,
    /// Where the files of a zip are read from.
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    /// Where the export's own file is written, and removed.
    uploads: Uploads,
    report_every: Duration,
}

impl StoreExporter {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        limits: FileLimits,
    ) -> Self {
        // An export writes as its owner: the file size, quota and file
        // count bound it (its file is whole when recorded, so the upload
        // expiry and the PATCH bound never apply).
        let uploads = Uploads::new(store.clone(), blobs.clone(), clock.clone(), limits);
        Self {
            store,
            blobs,
            clock,
            uploads,
            report_every: REPORT_EVERY,
        }
    }

    /// Reports (and asks whether to stop) after every chunk instead of at
    /// most every half second: for tests that stop an export mid-way.
    pub fn reporting_every_chunk(mut self) -> Self {
        self.report_every = Duration::ZERO;
        self
    }
}

fn failed(code: &str, message: impl Into<String>) -> ExportFailure {
    ExportFailure::Failed(TaskError::new(code, message))
}

fn store_failed(e: StoreError) -> ExportFailure {
    tracing::error!(error = %e, "an export could not read or write the store");
    failed(
        "export-failed",
        "the store failed during the export; start it again",
    )
}

fn blob_failed(e: taskgate_domain::ports::BlobError) -> ExportFailure {
    tracing::error!(error = %e, "an export could not read or write file bytes");
    failed(
        "export-failed",
        "the file storage failed during the export; start it again",
    )
}

/// An upload use case's error as the export's failure; `owner`'s name is in
/// the quota messages.
fn upload_failed(e: UploadError, owner: &Username) -> ExportFailure {
    match e {
        UploadError::NoRoom { room } => failed(
            "quota-exceeded",
            format!(
                "the export would pass its owner's storage quota: {room} bytes were left \
                 (TASKGATE_USER_QUOTA_BYTES)"
            ),
        ),
        UploadError::FileTooLarge { max, .. } => failed(
            "too-large",
            format!(
                "the export would be larger than the largest file allowed, {max} bytes \
                 (TASKGATE_MAX_FILE_BYTES)"
            ),
        ),
        UploadError::OverQuota { quota, size, .. } => failed(
            "quota-exceeded",
            format!(
                "the export's {size} bytes do not fit in {owner}'s storage quota of {quota} bytes \
                 (TASKGATE_USER_QUOTA_BYTES)"
            ),
        ),
        UploadError::TooManyFiles { max } => failed(
            "quota-exceeded",
            format!(
                "{owner} has {max} files, as many as an account may keep \
                 (TASKGATE_MAX_FILES_PER_USER)"
            ),
        ),
        UploadError::NotAsAnnounced { .. } => failed(
            "export-failed",
            "the file storage kept fewer bytes than were written",
        ),
        UploadError::Store(e) => store_failed(e),
        UploadError::Blob(e) => blob_failed(e),
        other => {
            tracing::error!(error = %other, "an export could not write its file");
            failed(
                "export-failed",
                "the export's file could not be written; start it again",
            )
        }
    }
}

/// A byte buffer shared with a synchronous writer (the csv and zip
/// writers), drained into the output between their writes.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("export buffer"))
    }

    fn len(&self) -> usize {
        self.0.lock().expect("export buffer").len()
    }
}

impl std::io::Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("export buffer")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where an export's bytes go: appended to its file a chunk at a time,
/// reporting progress and asking to stop between chunks.
struct Output<'a> {
    file: NewFile,
    /// Whose export it is, for the quota messages.
    owner: &'a Username,
    control: &'a dyn ExportControl,
    pending: Vec<u8>,
    report_every: Duration,
    last_report: Option<Instant>,
}

impl Output<'_> {
    /// Takes `bytes`; appends a chunk once one has gathered.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ExportFailure> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ExportFailure> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.pending));
        let length = chunk.len() as u64;
        let body = Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(chunk)]));
        self.file
            .append(body, Some(length))
            .await
            .map_err(|e| upload_failed(e, self.owner))?;
        Ok(())
    }

    /// Reports `fraction` and asks whether to stop, unless it did so less
    /// than `report_every` ago.
    async fn checkpoint(&mut self, fraction: f64) -> Result<(), ExportFailure> {
        if self
            .last_report
            .is_some_and(|last| last.elapsed() < self.report_every)
        {
            return Ok(());
        }
        self.last_report = Some(Instant::now());
        if self.control.stopped().await {
            return Err(ExportFailure::Stopped);
        }
        self.control.progress(fraction).await;
        Ok(())
    }
}

/// What a project export writes for one item.
enum Rows {
    Csv(Box<csv::Writer<Shared>>),
    Ndjson(Shared),
}

const CSV_HEADER: [&str; 10] = [
    "id",
    "title",
    "description",
    "status",
    "due_date",
    "assignee",
    "created_by",
    "created_at",
    "updated_at",
    "version",
];

/// A cell a spreadsheet will not run as a formula (OWASP's rule for CSV
/// injection): text that starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return gets a leading `'`, which spreadsheets show as text and
/// do not display. Everything else is written as it is; NDJSON exports are
/// never changed.
fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

impl Rows {
    fn write(&mut self, item: &Item) -> Result<(), ExportFailure> {
        let io = |e: std::io::Error| failed("export-failed", format!("could not write: {e}"));
        match self {
            Self::Csv(writer) => {
                let status = serde_json::to_value(item.status).unwrap_or_default();
                writer
                    .write_record([
                        item.id.to_string().as_str(),
                        &spreadsheet_safe(item.title.as_str()),
                        &spreadsheet_safe(item.description.as_ref().map_or("", |d| d.as_str())),
                        status.as_str().unwrap_or_default(),
                        &item.due_date.map(|d| d.to_string()).unwrap_or_default(),
                        &spreadsheet_safe(item.assignee.as_ref().map_or("", |a| a.as_str())),
                        &spreadsheet_safe(item.created_by.as_str()),
                        &taskgate_views::timestamp(item.created_at),
                        &taskgate_views::timestamp(item.updated_at),
                        &item.version.to_string(),
                    ])
                    .map_err(|e| failed("export-failed", format!("could not write CSV: {e}")))?;
                writer.flush().map_err(io)
            }
            Self::Ndjson(out) => {
                let view = taskgate_views::ItemView::from(item);
                serde_json::to_writer(&mut *out, &view)
                    .map_err(|e| failed("export-failed", format!("could not write JSON: {e}")))?;
                out.write_all(b"\n").map_err(io)
            }
        }
    }
}

impl StoreExporter {
    fn query(
        &self,
        project: ProjectId,
        after: Option<taskgate_domain::project::listing::Position>,
    ) -> ItemQuery {
        ItemQuery {
            scope: ItemScope::Project(project),
            filter: ItemFilter::default(),
            sort: Sort {
                key: SortKey::CreatedAt,
                descending: false,
            },
            today: Zone::utc().today(self.clock.now()),
            after,
            limit: PAGE,
        }
    }

    /// How many items the project has (a first pass, so progress can be
    /// a fraction).
    async fn count_items(&self, project: ProjectId) -> Result<u64, ExportFailure> {
        let (mut count, mut after) = (0u64, None);
        loop {
            let page = self
                .store
                .list_items(&self.query(project, after))
                .await
                .map_err(store_failed)?;
            count += page.items.len() as u64;
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(count),
            }
        }
    }

    /// The project's items, oldest first, to `out`. The caller must still be
    /// a member.
    async fn write_project(
        &self,
        task: &Task,
        project: ProjectId,
        ndjson: bool,
        out: &mut Output<'_>,
    ) -> Result<String, ExportFailure> {
        let found = self
            .store
            .get_project(&project)
            .await
            .map_err(store_failed)?
            .filter(|p| {
                // The project rule, keyed by the account that started the
                // export (not whoever holds its username now).
                access::may(Some(&task.owner_actor()), p, access::Action::Export).is_ok()
            });
        let Some(found) = found else {
            return Err(failed(
                "not-found",
                format!(
                    "there is no project {project} that {} is a member of",
                    task.owner
                ),
            ));
        };
        let total = self.count_items(project).await?.max(1);
        let buffer = Shared::default();
        let mut rows = if ndjson {
            Rows::Ndjson(buffer.clone())
        } else {
            let mut writer = csv::Writer::from_writer(buffer.clone());
            writer
                .write_record(CSV_HEADER)
                .map_err(|e| failed("export-failed", format!("could not write CSV: {e}")))?;
            Rows::Csv(Box::new(writer))
        };
        let (mut done, mut after) = (0u64, None);
        out.checkpoint(0.0).await?;
        loop {
            let page = self
                .store
                .list_items(&self.query(project, after))
                .await
                .map_err(store_failed)?;
            for item in &page.items {
                rows.write(item)?;
                if buffer.len() >= CHUNK {
                    out.write(&buffer.take()).await?;
                }
            }
            done += page.items.len() as u64;
            out.checkpoint((done as f64 / total as f64).min(0.99))
                .await?;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        drop(rows);
        out.write(&buffer.take()).await?;
        let extension = if ndjson { "ndjson" } else { "csv" };
        Ok(format!("{}.{extension}", safe_name(found.name.as_str())))
    }

    /// The files, in the order given, as one zip. Each must be the
    /// caller's own and complete.
    async fn write_zip(
        &self,
        task: &Task,
        ids: &[FileId],
        out: &mut Output<'_>,
    ) -> Result<String, ExportFailure> {
        let mut files = Vec::with_capacity(ids.len());
        for id in ids {
            let file = self.store.get_file(id).await.map_err(store_failed)?;
            match file {
                Some(file) if file.owner_id == task.owner_id && file.is_complete() => {
                    files.push(file)
                }
                Some(file) if file.owner_id == task.owner_id => {
                    return Err(failed(
                        "file-incomplete",
                        format!("the file {id} is still uploading"),
                    ));
                }
                _ => {
                    return Err(failed(
                        "not-found",
                        format!("{} has no file {id}", task.owner),
                    ));
                }
            }
        }
        let total = files.iter().map(|f| f.size).sum::<u64>().max(1);
        let buffer = Shared::default();
        let mut zip = zip::ZipWriter::new_stream(buffer.clone());
        let zipped = |e: zip::result::ZipError| {
            failed("export-failed", format!("could not write the zip: {e}"))
        };
        let mut names = HashSet::new();
        let mut read = 0u64;
        out.checkpoint(0.0).await?;
        for file in &files {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(file.size >= u32::MAX as u64)
                .last_modified_time(zip_time(file.updated_at));
            zip.start_file(unique_name(&mut names, file.name.as_str()), options)
                .map_err(zipped)?;
            let mut bytes = self
                .blobs
                .read(&file.id, 0..file.size, file.size)
                .await
                .map_err(blob_failed)?;
            let mut since = 0usize;
            while let Some(piece) = bytes.next().await {
                let piece = piece
                    .map_err(|e| blob_failed(taskgate_domain::ports::BlobError::Other(e.into())))?;
                zip.write_all(&piece).map_err(|e| {
                    failed("export-failed", format!("could not write the zip: {e}"))
                })?;
                read += piece.len() as u64;
                since += piece.len();
                if buffer.len() >= CHUNK {
                    out.write(&buffer.take()).await?;
                }
                if since >= READ_CHUNK {
                    since = 0;
                    out.checkpoint((read as f64 / total as f64).min(0.99))
                        .await?;
                }
            }
        }
        zip.finish().map_err(zipped)?;
        out.write(&buffer.take()).await?;
        Ok(format!("files-{}.zip", &task.id.to_string()[..8]))
    }
}

/// A project name as a file name: `/`, `\` and control characters become
/// `_`; at most 200 bytes.
fn safe_name(name: &str) -> String {
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_control() || c == '/' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .collect();
    while safe.len() > 200 {
        safe.pop();
    }
    if safe.trim().is_empty() || safe == "." || safe == ".." {
        "project".to_owned()
    } else {
        safe
    }
}

/// `name`, or `name (2)`, `name (3)`… if the archive has it already.
fn unique_name(taken: &mut HashSet<String>, name: &str) -> String {
    let mut candidate = name.to_owned();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = match name.rsplit_once('.') {
            Some((stem, extension)) if !stem.is_empty() => format!("{stem} ({n}).{extension}"),
            _ => format!("{name} ({n})"),
        };
        n += 1;
    }
    candidate
}

fn zip_time(at: time::OffsetDateTime) -> zip::DateTime {
    zip::DateTime::try_from(time::PrimitiveDateTime::new(at.date(), at.time())).unwrap_or_default()
}

#[async_trait]
impl Exporter for StoreExporter {
    async fn export(
        &self,
        task: &Task,
        control: &dyn ExportControl,
    ) -> Result<Value, ExportFailure> {
        let TaskSpec::Export(export) = &task.spec else {
            return Err(failed("export-failed", "the task is not an export"));
        };
        let id = export_file_id(&task.id);
        let owner = task.owner_actor();
        let file = self
            .uploads
            .new_file(owner, id, QuotaCheck::AsWritten)
            .await
            .map_err(|e| upload_failed(e, &task.owner))?;
        let mut out = Output {
            file,
            owner: &task.owner,
            control,
            pending: Vec::with_capacity(CHUNK),
            report_every: self.report_every,
            last_report: None,
        };
        let written = match export {
            Export::Csv { project } => self.write_project(task, *project, false, &mut out).await,
            Export::Ndjson { project } => self.write_project(task, *project, true, &mut out).await,
            Export::Zip { files } => self.write_zip(task, files, &mut out).await,
        };
        let written = match written {
            Ok(name) => out.flush().await.map(|()| name),
            Err(e) => Err(e),
        };
        let file = out.file;
        let name = match written {
            Ok(name) => name,
            Err(e) => {
                file.abort().await;
                return Err(e);
            }
        };
        let content_type = match export {
            Export::Csv { .. } => "text/csv",
            Export::Ndjson { .. } => "application/x-ndjson",
            Export::Zip { .. } => "application/zip",
        };
        let name = FileName::parse(&name).unwrap_or_else(|_| {
            FileName::parse(&format!("export.{}", export.format())).expect("a plain name")
        });
        let content_type = ContentType::parse(content_type).expect("a known media type");
        let stored = file
            .finish(name, content_type)
            .await
            .map_err(|e| upload_failed(e, &task.owner))?;
        let (size, sha256) = (stored.size, stored.sha256.unwrap_or_default());
        control.progress(1.0).await;
        tracing::info!(task = %task.id, file = %id, size, "export written");
        let result = ExportResult {
            file: id.to_string(),
            size,
            sha256,
        };
        Ok(serde_json::to_value(result).expect("an export's result serialises"))
    }

    async fn discard(&self, result: &Value) {
        let Some(id) = ExportResult::deserialize(result)
            .ok()
            .and_then(|result| FileId::parse(&result.file).ok())
        else {
            return;
        };
        self.remove(&id).await;
    }

    async fn clean_up(&self, task: &TaskId) {
        let id = export_file_id(task);
        self.remove(&id).await;
        // Bytes of an export that never got its record. On disk this removes
        // them; on S3 an unknown multipart upload is left to the bucket's
        // lifecycle rule.
        if let Err(e) = self.blobs.abort(&id, &Value::Null).await {
            tracing::warn!(file = %id, error = %e, "could not remove an interrupted export's bytes");
        }
    }
}

impl StoreExporter {
    /// Deletes the file `id` (record, then bytes), if it exists.
    async fn remove(&self, id: &FileId) {
        if let Err(e) = self.uploads.remove_id(id).await {
            tracing::error!(file = %id, error = %e, "could not delete an export's file");
        }
    }
}

#[cfg(test)]
mod csv_tests {
    use super::spreadsheet_safe;

    #[test]
    fn cells_that_a_spreadsheet_would_run_are_written_as_text() {
        let cases = [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(1+1)", "'@SUM(1+1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("Book the room", "Book the room"),
            ("a=b", "a=b"),
            ("", ""),
        ];
        for (cell, expected) in cases {
            assert_eq!(spreadsheet_safe(cell), expected, "{cell:?}");
        }
    }
}
