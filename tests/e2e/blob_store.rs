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

/// Lists what a blob store keeps.
type Leftovers = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>;

/// A blob store, and how to list what it keeps (to prove nothing is left).
pub(crate) struct Subject {
    pub blobs: Arc<dyn BlobStore>,
    pub leftovers: Leftovers,
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

/// The S3 adapter on moto's S3 API (`TASKGATE_TEST_SFN_ENDPOINT`, set by
/// tests/run.sh), in a bucket of its own.
pub(crate) async fn s3() -> Subject {
    let (client, bucket) = s3_bucket().await;
    let blobs = taskgate_aws::blobs::S3Blobs::new(client.clone(), bucket.clone());
    Subject {
        blobs: Arc::new(blobs),
        leftovers: Box::new(move || {
            let (client, bucket) = (client.clone(), bucket.clone());
            Box::pin(async move { s3_leftovers(&client, &bucket).await })
        }),
        _dir: None,
    }
}

fn moto_endpoint() -> String {
    std::env::var("TASKGATE_TEST_SFN_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "TASKGATE_TEST_SFN_ENDPOINT is not set. Run the suite with tests/run.sh, which starts \
             moto, or start one (infra/local/moto-server.sh start DIR) and export it."
        )
    })
}

/// An S3 client on moto and a new, empty bucket.
async fn s3_bucket() -> (aws_sdk_s3::Client, String) {
    use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
    let endpoint = moto_endpoint();
    let config = taskgate_aws::load_sdk_config(Some(&endpoint)).await;
    let client = taskgate_aws::s3_client(&config, Some(&endpoint));
    let bucket = format!("taskgate-blobs-{}", uuid::Uuid::new_v4().simple());
    let mut create = client.create_bucket().bucket(&bucket);
    // Outside us-east-1, S3 wants the bucket's region spelled out.
    if let Some(region) = config.region().filter(|r| r.as_ref() != "us-east-1") {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_ref()))
                .build(),
        );
    }
    create.send().await.expect("create the test bucket");
    (client, bucket)
}

/// Every multipart upload in progress and every object of `bucket`.
async fn s3_leftovers(client: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let mut found = Vec::new();
    let uploads = client
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("list multipart uploads");
    assert!(!uploads.is_truncated().unwrap_or(false));
    for upload in uploads.uploads() {
        found.push(format!(
            "upload {} {}",
            upload.key().unwrap_or("?"),
            upload.upload_id().unwrap_or("?")
        ));
    }
    let mut token = None;
    loop {
        let objects = client
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list objects");
        for object in objects.contents() {
            found.push(format!("object {}", object.key().unwrap_or("?")));
        }
        token = objects.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    found.sort();
    found
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod disk {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::disk()).await } )*
        }
        mod s3 {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::s3().await).await } )*
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

/// S3 only: a presigned URL downloads the finished file, named as asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_presigned_get_downloads_the_file_as_an_attachment() {
    let (client, bucket) = s3_bucket().await;
    let blobs = taskgate_aws::blobs::S3Blobs::new(client, bucket);
    let id = FileId::new();
    let data = pattern(1000, 8);
    let state = blobs.start(&id).await.unwrap();
    let state = append(&blobs, &id, &state, 0, &data, 300).await;
    blobs.finish(&id, &state, 1000).await.unwrap();
    let url = blobs
        .presigned_get(
            &id,
            std::time::Duration::from_secs(60),
            "Menü \"v2\".bin",
            "application/octet-stream",
        )
        .await
        .unwrap();
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"Men_ _v2_.bin\"; filename*=UTF-8''Men%C3%BC%20%22v2%22.bin"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert!(response.bytes().await.unwrap() == data);
    // (That the URL is refused without its signature cannot be seen here:
    // moto serves S3 objects to anonymous requests.)
}

/// S3 only: an empty file (no part at all) finishes and reads back empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_an_empty_file_finishes_and_leaves_no_upload() {
    let subject = s3().await;
    let blobs = subject.blobs.as_ref();
    let id = FileId::new();
    let state = blobs.start(&id).await.unwrap();
    let appended = blobs
        .append(&id, &state, 0, body(&[], 10), u64::MAX)
        .await
        .unwrap();
    assert_eq!(appended.bytes, 0);
    blobs.commit(&id, &state, &appended.state).await.unwrap();
    blobs.finish(&id, &appended.state, 0).await.unwrap();
    assert!(read_all(blobs, &id, 0..0, 0).await.is_empty());
    assert_eq!(
        (subject.leftovers)().await,
        vec![format!("object files/{id}")]
    );
    blobs.delete(&id).await.unwrap();
    assert!(matches!(
        blobs.read(&id, 0..0, 0).await.err(),
        Some(taskgate_domain::ports::BlobError::Missing)
    ));
}

/// S3 only: a finish that is retried after it succeeded succeeds again
/// (with and without staged bytes at the end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_repeated_finish_succeeds() {
    let subject = s3().await;
    let blobs = subject.blobs.as_ref();
    for len in [5 * MIB, 100] {
        let id = FileId::new();
        let data = pattern(len, 11);
        let state = blobs.start(&id).await.unwrap();
        let state = append(blobs, &id, &state, 0, &data, 64 * 1024).await;
        blobs.finish(&id, &state, len as u64).await.unwrap();
        blobs.finish(&id, &state, len as u64).await.unwrap();
        assert!(read_all(blobs, &id, 0..len as u64, len as u64).await == data);
        assert_eq!(
            (subject.leftovers)().await,
            vec![format!("object files/{id}")]
        );
        blobs.delete(&id).await.unwrap();
    }
}
