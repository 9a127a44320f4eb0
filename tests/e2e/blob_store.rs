//! The blob contract: what every `BlobStore` must do, on the data directory
//! adapter (and S3 against moto's S3 server). Uploads assembled from chunks
//! of any size, ranges read back, pending appends committed or rolled back,
//! a body cut mid-way keeping what arrived, and abort or delete leaving
//! nothing behind.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, stream};
use taskgate_domain::file::{BlobState, FileId};
use taskgate_domain::ports::{BlobStore, ByteStream};

/// A blob store, and how to list what it keeps (to prove nothing is left).
pub(crate) struct Subject {
    pub blobs: Arc<dyn BlobStore>,
    pub leftovers: Box<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) fn disk() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let blobs = taskgate_embedded::blobs::DiskBlobs::open(&dir.path().join("files")).unwrap();
    let listing = blobs.clone();
    Subject {
        blobs: Arc::new(blobs),
        leftovers: Box::new(move || {
            let listing = listing.clone();
            Box::pin(async move { listing.list().unwrap() })
        }),
        _dir: Some(dir),
    }
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod disk {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::disk()).await } )*
        }
    };
}

contract!(
    chunks_of_any_size_assemble_into_the_file_and_ranges_read_back,
    a_rolled_back_append_leaves_no_trace,
    a_body_cut_mid_way_keeps_what_arrived,
    abort_and_delete_leave_nothing_behind,
    an_append_stops_at_its_limit,
);

const MIB: usize = 1024 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// `data` as a body of `chunk`-byte pieces.
fn body(data: &[u8], chunk: usize) -> ByteStream {
    let pieces: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(pieces))
}

/// `data`, then the connection fails.
fn cut_body(data: &[u8]) -> ByteStream {
    let pieces: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::copy_from_slice(data)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "cut",
        )),
    ];
    Box::pin(stream::iter(pieces))
}

async fn read_all(
    blobs: &dyn BlobStore,
    id: &FileId,
    range: std::ops::Range<u64>,
    size: u64,
) -> Vec<u8> {
    let mut stream = blobs.read(id, range, size).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Appends `data` and commits it; the new state.
async fn append(
    blobs: &dyn BlobStore,
    id: &FileId,
    state: &BlobState,
    offset: u64,
    data: &[u8],
    chunk: usize,
) -> BlobState {
    let appended = blobs
        .append(id, state, offset, body(data, chunk), u64::MAX)
        .await
        .unwrap();
    assert_eq!(appended.bytes, data.len() as u64);
    assert!(!appended.cut && !appended.truncated);
    blobs.commit(id, state, &appended.state).await.unwrap();
    appended.state
}

async fn chunks_of_any_size_assemble_into_the_file_and_ranges_read_back(subject: Subject) {
    let blobs = subject.blobs.as_ref();
    let id = FileId::new();
    // 11 MiB in appends of 1 MiB, 3 bytes, 2.5 MiB, …: most smaller than
    // S3's 5 MiB part minimum, one spanning a part boundary.
    let data = pattern(11 * MIB + 7, 3);
    let sizes = [MIB, 3, 5 * MIB / 2, MIB - 3, 4 * MIB, 1, 2 * MIB + 6];
    let mut state = blobs.start(&id).await.unwrap();
    let mut offset = 0usize;
    for (n, size) in sizes.iter().chain([&usize::MAX]).enumerate() {
        let end = offset.saturating_add(*size).min(data.len());
        state = append(
            blobs,
            &id,
            &state,
            offset as u64,
            &data[offset..end],
            64 * 1024 + n,
        )
        .await;
        offset = end;
    }
    assert_eq!(offset, data.len());
    blobs.finish(&id, &state, data.len() as u64).await.unwrap();
    let size = data.len() as u64;
    assert!(
        read_all(blobs, &id, 0..size, size).await == data,
        "the file differs"
    );
    for range in [
        0..1,
        5..MIB as u64 + 9,
        size - 10..size,
        6 * MIB as u64..6 * MIB as u64 + 1,
    ] {
        let got = read_all(blobs, &id, range.clone(), size).await;
        assert!(
            got == data[range.start as usize..range.end as usize],
            "range {range:?}"
        );
    }
    blobs.delete(&id).await.unwrap();
}

async fn a_rolled_back_append_leaves_no_trace(subject: Subject) {
    let blobs = subject.blobs.as_ref();
    let id = FileId::new();
    let first = pattern(3 * MIB, 1);
    let bad = pattern(3 * MIB, 2);
    let good = pattern(3 * MIB, 3);
    let state = blobs.start(&id).await.unwrap();
    let state = append(blobs, &id, &state, 0, &first, 100_000).await;
    // An append whose checksum did not match: rolled back.
    let pending = blobs
        .append(
            &id,
            &state,
            first.len() as u64,
            body(&bad, 100_000),
            u64::MAX,
        )
        .await
        .unwrap();
    blobs.rollback(&id, &state, &pending.state).await.unwrap();
    let state = append(blobs, &id, &state, first.len() as u64, &good, 100_000).await;
    let size = (first.len() + good.len()) as u64;
    blobs.finish(&id, &state, size).await.unwrap();
    let whole = read_all(blobs, &id, 0..size, size).await;
    assert!(whole[..first.len()] == first[..] && whole[first.len()..] == good[..]);
}

async fn a_body_cut_mid_way_keeps_what_arrived(subject: Subject) {
    let blobs = subject.blobs.as_ref();
    let id = FileId::new();
    let data = pattern(7 * MIB, 9);
    let state = blobs.start(&id).await.unwrap();
    let arrived = 6 * MIB + 5;
    let appended = blobs
        .append(&id, &state, 0, cut_body(&data[..arrived]), u64::MAX)
        .await
        .unwrap();
    assert!(appended.cut);
    assert_eq!(appended.bytes, arrived as u64);
    blobs.commit(&id, &state, &appended.state).await.unwrap();
    // The client resumes from what was stored.
    let state = append(
        blobs,
        &id,
        &appended.state,
        arrived as u64,
        &data[arrived..],
        50_000,
    )
    .await;
    blobs.finish(&id, &state, data.len() as u64).await.unwrap();
    let size = data.len() as u64;
    assert!(read_all(blobs, &id, 0..size, size).await == data);
}

async fn abort_and_delete_leave_nothing_behind(subject: Subject) {
    let blobs = subject.blobs.as_ref();
    let before = (subject.leftovers)().await;
    // An unfinished upload with parts and staged bytes, aborted.
    let id = FileId::new();
    let state = blobs.start(&id).await.unwrap();
    let state = append(blobs, &id, &state, 0, &pattern(6 * MIB + 1, 4), MIB).await;
    let pending = blobs
        .append(
            &id,
            &state,
            6 * MIB as u64 + 1,
            body(&pattern(MIB, 5), MIB),
            u64::MAX,
        )
        .await
        .unwrap();
    blobs.abort(&id, &pending.state).await.unwrap();
    // A finished file, deleted.
    let done = FileId::new();
    let state = blobs.start(&done).await.unwrap();
    let state = append(blobs, &done, &state, 0, &pattern(100, 6), 10).await;
    blobs.finish(&done, &state, 100).await.unwrap();
    blobs.delete(&done).await.unwrap();
    blobs.delete(&done).await.unwrap();
    assert_eq!((subject.leftovers)().await, before);
}

async fn an_append_stops_at_its_limit(subject: Subject) {
    let blobs = subject.blobs.as_ref();
    let id = FileId::new();
    let state = blobs.start(&id).await.unwrap();
    let appended = blobs
        .append(&id, &state, 0, body(&pattern(1000, 7), 64), 600)
        .await
        .unwrap();
    assert_eq!(appended.bytes, 600);
    assert!(appended.truncated);
    blobs.rollback(&id, &state, &appended.state).await.unwrap();
    blobs.abort(&id, &state).await.unwrap();
}
