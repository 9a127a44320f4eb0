//! A lingering close for the local server's connections.
//!
//! When a handler answers without reading the request's body (a 401, 413 or
//! 415 decided from the headers), hyper sends the answer and closes the
//! connection with the rest of the body still coming. A socket closed with
//! unread bytes, or that receives bytes after it closed, answers with a TCP
//! reset, and a reset can destroy the answer before the client reads it: a
//! client that writes its whole request before reading (Python's urllib3,
//! and so schemathesis and tuspy) sees "broken pipe" or "connection reset"
//! instead of the refusal.
//!
//! [`Lingering`] closes as nginx and Apache do (their `lingering_close`):
//! it shuts the writing half (the answer is out, then FIN), then reads and
//! drops what the client still sends until the client closes, until it has
//! been quiet for [`QUIET`], or for at most [`LINGER`] in all. A client that
//! closed first (the usual end of a keep-alive connection) costs one read
//! that finds the end at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The longest a closing connection drains what its client still sends.
pub const LINGER: Duration = Duration::from_secs(5);
/// A closing connection stops draining once its client is quiet this long.
pub const QUIET: Duration = Duration::from_secs(1);

/// Reads (of 8 KiB) a closing connection drains before it lets the other
/// tasks of its thread run.
const READS_PER_POLL: usize = 16;

/// Accepts TCP connections as [`Lingering`] streams (below TLS, when TLS is on).
#[derive(Clone, Copy, Debug, Default)]
pub struct LingeringAcceptor;

impl<S> Accept<TcpStream, S> for LingeringAcceptor {
    type Stream = Lingering<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(Ok((Lingering::new(stream), service)))
    }
}

/// A stream whose shutdown drains the peer's remaining bytes (see the module).
#[derive(Debug)]
pub struct Lingering<S> {
    inner: S,
    closing: Option<Closing>,
}

#[derive(Debug)]
struct Closing {
    /// FIN sent: everything written before it is on its way.
    written: bool,
    /// When the draining stops whatever the client does.
    until: Instant,
    /// Fires after [`QUIET`] without bytes, or at `until`.
    timer: Pin<Box<Sleep>>,
}

impl<S> Lingering<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            closing: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let closing = this.closing.get_or_insert_with(|| {
            let now = Instant::now();
            Closing {
                written: false,
                until: now + LINGER,
                timer: Box::pin(tokio::time::sleep_until(now + QUIET)),
            }
        });
        if !closing.written {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            closing.written = true;
        }
        let mut scratch = [0u8; 8192];
        for _ in 0..READS_PER_POLL {
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                // The client closed (or reset): nothing left to drain.
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let now = Instant::now();
                    // A client that never pauses is given up all the same.
                    if now >= closing.until {
                        return Poll::Ready(Ok(()));
                    }
                    closing
                        .timer
                        .as_mut()
                        .reset((now + QUIET).min(closing.until));
                }
                Poll::Pending => {
                    // Quiet too long, or lingered long enough: close as is.
                    ready!(closing.timer.as_mut().poll(cx));
                    return Poll::Ready(Ok(()));
                }
            }
        }
        // Bytes keep coming: let the thread's other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn pair() -> (Lingering<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Lingering::new(server), client)
    }

    #[tokio::test]
    async fn a_closed_client_ends_the_close_at_once() {
        let (mut server, client) = pair().await;
        drop(client);
        tokio::time::timeout(Duration::from_millis(500), server.shutdown())
            .await
            .expect("the close waited for a client that had gone")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_given_up_after_the_quiet_time() {
        let (mut server, _client) = pair().await;
        let started = Instant::now();
        server.shutdown().await.unwrap();
        assert_eq!(started.elapsed(), QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_keeps_sending_is_given_up_after_the_linger_time() {
        let (mut server, mut client) = pair().await;
        let started = Instant::now();
        let sender = tokio::spawn(async move {
            // Sends a little every half QUIET, for ever (until the reset).
            while client.write_all(b"more body").await.is_ok() {
                tokio::time::sleep(QUIET / 2).await;
            }
        });
        server.shutdown().await.unwrap();
        let lingered = started.elapsed();
        assert!(
            lingered >= LINGER && lingered < LINGER + QUIET,
            "lingered {lingered:?}"
        );
        drop(server);
        sender.await.unwrap();
    }

    /// A client that sends without a pause neither holds the close past
    /// [`LINGER`] nor keeps the thread from its other tasks.
    #[tokio::test(flavor = "current_thread")]
    async fn a_client_that_never_pauses_is_given_up_after_the_linger_time() {
        let (mut server, client) = pair().await;
        let client = client.into_std().unwrap();
        client.set_nonblocking(false).unwrap();
        std::thread::spawn(move || {
            use std::io::Write as _;
            let chunk = vec![b'x'; 1 << 20];
            while (&client).write_all(&chunk).is_ok() {}
        });
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let started = Instant::now();
        tokio::time::timeout(LINGER + QUIET, server.shutdown())
            .await
            .expect("the close outlasted LINGER")
            .unwrap();
        assert!(
            started.elapsed() >= LINGER,
            "gave up after {:?}",
            started.elapsed()
        );
        let ticked = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(ticked >= 25, "the other task ran {ticked} times in 5 s");
    }

    #[tokio::test]
    async fn the_answer_reaches_a_client_that_writes_before_it_reads() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"refused").await.unwrap();
        let closing = tokio::spawn(async move {
            server.shutdown().await.unwrap();
            drop(server);
        });
        // Far more than the socket buffers hold: a plain close would reset.
        client.write_all(&vec![b'x'; 16 << 20]).await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"refused");
        drop(client);
        closing.await.unwrap();
    }
}
