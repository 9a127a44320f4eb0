//! The reference server of the benchmarks (tests/bench/suite.py): bare
//! hyper, no framework. `GET /` answers "Hello World"; `GET /bytes/N`
//! answers N bytes (the size of a page the API serves, for a reference that
//! moves the same bytes); `PUT /blob` streams
//! the body into `$BENCH_BLOB` and `GET /blob` streams that file back, the
//! "plain PUT/GET of the same bytes" that uploads and downloads are
//! measured against; `/blob/NAME` is the file `$BENCH_BLOB.NAME`, so that
//! each PUT can write a new file, as each upload does. Listens on the
//! address in its first argument.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;

type Body = BoxBody<Bytes, std::io::Error>;

fn full(text: &'static str) -> Body {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed()
}

/// The file `/blob` or `/blob/NAME` names (`None` for any other path).
fn blob_file(path: &str, blob: &std::path::Path) -> Option<PathBuf> {
    match path.strip_prefix("/blob") {
        Some("") => Some(blob.to_path_buf()),
        Some(name) => {
            let name = name.strip_prefix('/')?;
            let plain =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            plain.then(|| PathBuf::from(format!("{}.{name}", blob.display())))
        }
        None => None,
    }
}

async fn handle(request: Request<Incoming>, blob: PathBuf) -> Result<Response<Body>, Infallible> {
    let file = blob_file(request.uri().path(), &blob);
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => Response::new(full("Hello World")),
        (&Method::GET, path) if path.starts_with("/bytes/") => {
            let size: usize = path["/bytes/".len()..].parse().unwrap_or(0);
            Response::new(
                Full::new(Bytes::from(vec![b'x'; size]))
                    .map_err(|never| match never {})
                    .boxed(),
            )
        }
        (&Method::PUT, _) if file.is_some() => {
            // `?sync`: made durable before the answer, as an upload is.
            let sync = request.uri().query() == Some("sync");
            let path = file.expect("matched");
            let mut file = tokio::fs::File::create(&path).await.expect("the blob file");
            let mut body = BodyStream::new(request.into_body());
            while let Some(frame) = body.try_next().await.ok().flatten() {
                if let Ok(data) = frame.into_data() {
                    file.write_all(&data).await.expect("writing the blob");
                }
            }
            file.flush().await.expect("writing the blob");
            if sync {
                file.sync_data().await.expect("syncing the blob");
            }
            let mut response = Response::new(full(""));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        (&Method::GET, _) if file.is_some() => {
            let path = file.expect("matched");
            let file = tokio::fs::File::open(&path).await.expect("the blob file");
            let stream =
                tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).map_ok(Frame::data);
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
        _ => {
            let mut response = Response::new(full("not found"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
}

#[tokio::main]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8088".into())
        .parse()
        .expect("an address");
    let blob =
        PathBuf::from(std::env::var("BENCH_BLOB").unwrap_or_else(|_| "/tmp/bench-blob".into()));
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let blob = blob.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, blob.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
