//! The ground the next features stand on: a handler of the application can
//! read its body as a stream and answer with a streamed body (uploads and
//! downloads), and the local server, TLS and all, can upgrade a connection
//! to a WebSocket (real-time updates). Both run on test-only routes served
//! beside the API, behind the same layers, over real sockets with real
//! clients (reqwest; tokio-tungstenite).

use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::{get, post};
use futures_util::{SinkExt as _, StreamExt as _};
use http::StatusCode;
use sha2::{Digest as _, Sha256};
use taskgate_e2e::{Backend, TestApp};
use tokio_tungstenite::tungstenite;

/// 8 MiB: far past the JSON body limit (64 KiB), which streamed routes do
/// not take on.
const STREAMED_BYTES: usize = 8 * 1024 * 1024;

fn test_routes() -> axum::Router {
    axum::Router::new()
        .route("/test/echo", post(echo_body))
        .route("/test/ws", get(echo_socket))
}

/// Answers with the request's own bytes, each chunk passed on as it
/// arrives: the body is read as a stream and never held whole.
async fn echo_body(body: Body) -> Response {
    let chunks = body
        .into_data_stream()
        .map(|chunk| chunk.map(|bytes| bytes::Bytes::copy_from_slice(&bytes)));
    Response::new(Body::from_stream(chunks))
}

/// Sends every text or binary message back. A close is answered by the
/// protocol layer itself, on the read that follows it, which then ends.
async fn echo_socket(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                continue;
            }
            if socket.send(message).await.is_err() {
                break;
            }
        }
    })
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_of_several_mib_comes_back_whole_in_chunks() {
    let app = TestApp::spawn_serving(Backend::Embedded, |_| {}, test_routes()).await;
    let sent = pattern(STREAMED_BYTES);
    let response = app
        .request(http::Method::POST, "/test/echo", None)
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // No Content-Length: the answer is streamed (chunked), not buffered.
    assert!(
        response.content_length().is_none(),
        "{:?}",
        response.headers()
    );

    let mut response = response;
    let (mut received, mut chunks, mut hash) = (0, 0, Sha256::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        received += chunk.len();
        chunks += 1;
        hash.update(&chunk);
    }
    assert_eq!(received, STREAMED_BYTES);
    assert!(chunks > 1, "the body came in {chunks} chunk(s)");
    assert_eq!(hash.finalize(), Sha256::digest(&sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_server_upgrades_to_a_websocket_that_echoes() {
    let app =
        TestApp::spawn_serving(Backend::Embedded, |config| config.tls = true, test_routes()).await;
    let tls = app.tls_client_config();

    let addr = app.server().local_addr();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let url = format!("wss://localhost:{}/test/ws", addr.port());
    let (mut socket, answer) = tokio_tungstenite::client_async_tls_with_config(
        url,
        tcp,
        None,
        Some(tokio_tungstenite::Connector::Rustls(tls)),
    )
    .await
    .expect("the WebSocket handshake succeeds over TLS");
    assert_eq!(answer.status(), StatusCode::SWITCHING_PROTOCOLS);

    for text in ["hello", "ünïcödé", ""] {
        socket.send(tungstenite::Message::text(text)).await.unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed, tungstenite::Message::text(text));
    }
    let blob = pattern(100_000);
    socket
        .send(tungstenite::Message::binary(blob.clone()))
        .await
        .unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        tungstenite::Message::binary(blob)
    );
    socket.close(None).await.unwrap();
    // The server answers the close with a close.
    match socket.next().await {
        Some(Ok(tungstenite::Message::Close(_))) | None => {}
        other => panic!("expected the close to be answered, got {other:?}"),
    }

    // The API on the same server is untouched by the upgrade.
    assert_eq!(app.get("/", None).await.status(), StatusCode::OK);
}
