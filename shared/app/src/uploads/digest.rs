//! The digests an append keeps as its bytes pass to the blob store: the
//! file's running SHA-256 and, where the caller asked for one, the chunk's
//! own check.

use futures_util::StreamExt as _;
use taskgate_domain::file::RunningDigest;
use taskgate_domain::ports::ByteStream;

use super::append::ChunkCheck;

/// What the body stream saw: the file's running digest and the chunk's
/// check, fed as bytes pass to the blob store.
pub(super) struct Seen {
    pub(super) digest: RunningDigest,
    pub(super) check: Option<Box<dyn ChunkCheck>>,
}

/// Frames on their way to the digests, at most (each a reference to bytes
/// already received, not a copy): the body waits when the digests lag.
const DIGEST_BACKLOG: usize = 16;

/// `body` as the blob port's stream; every frame that passes is also fed to
/// `seen` by a task of its own, so hashing and storing overlap on two
/// workers instead of taking turns (SHA-256 was half of an upload's time).
/// An async task, not a blocking thread: a slow upload must not hold one of
/// the blocking pool's threads, which the store's calls need. The handle
/// gives `seen` back once the stream is dropped and every frame is
/// digested; a frame the blob store did not take (past its `max`) is
/// digested too, which is why such an append is never kept.
pub(super) fn observed(
    body: ByteStream,
    mut seen: Seen,
) -> (ByteStream, tokio::task::JoinHandle<Seen>) {
    let (frames, mut backlog) = tokio::sync::mpsc::channel::<bytes::Bytes>(DIGEST_BACKLOG);
    let digests = tokio::spawn(async move {
        while let Some(bytes) = backlog.recv().await {
            seen.digest.update(&bytes);
            if let Some(check) = seen.check.as_mut() {
                check.update(&bytes);
            }
        }
        seen
    });
    let stream = body.then(move |chunk| {
        let frames = frames.clone();
        async move {
            let bytes = chunk?;
            frames
                .send(bytes.clone())
                .await
                .map_err(|_| std::io::Error::other("the digest task stopped"))?;
            Ok(bytes)
        }
    });
    (Box::pin(stream), digests)
}
