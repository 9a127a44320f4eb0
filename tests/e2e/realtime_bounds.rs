//! The bound on what a real-time subscriber can cost the server: a client
//! that subscribes and then never reads is held to the hub's bounded
//! channel (`TASKGATE_WS_BUFFER_EVENTS`, 256 by default) and its socket's
//! buffers, then disconnected; the server's memory does not grow with the
//! events it cannot deliver, and a subscriber that keeps up still gets
//! every one of them.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const ADMIN_PASSWORD: &str = "flood control passphrase";
/// Changes made while the slow subscriber does not read.
const EVENTS: usize = 10_000;
/// Changes made before the first measurement, so that the server's buffers,
/// connections and threads are as warm as they will get.
const WARM_UP: usize = 200;
/// Concurrent writers, each editing its own item (edits of one item by
/// several writers would race and be refused with 409).
const WRITERS: usize = 8;
/// Characters of each description (at most 10,000 are allowed).
const DESCRIPTION_CHARS: usize = 8_000;
/// How much the server's resident memory may grow during the flood. Every
/// event carries the item's 8 KB description (twice in the server's notice:
/// the entry and the item it produced), so the 10,000 events held for the
/// slow subscriber would take 80 MB and more; the bound keeps 256.
const MAX_GROWTH_KB: u64 = 32 * 1024;
/// How long the flood may take, and the reading subscriber to get it all.
const FLOOD_WITHIN: Duration = Duration::from_secs(150);
/// How soon the slow subscriber's socket must end once it reads again.
const END_WITHIN: Duration = Duration::from_secs(30);

/// `taskgate serve` in its own process (so that its memory can be measured
/// alone), on the embedded store in a temporary directory, over plain HTTP.
struct ServerProcess {
    child: Child,
    url: String,
    /// The server's stderr, kept for failure messages.
    log: Arc<Mutex<Vec<String>>>,
    _data: tempfile::TempDir,
}

impl ServerProcess {
    async fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(taskgate_e2e::workspace_binary("taskgate"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TASKGATE_ADDR", "127.0.0.1:0")
            .env("TASKGATE_TLS", "off")
            .env("TASKGATE_DATA_DIR", data.path())
            .env("TASKGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("TASKGATE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Keep reading stderr to the end: a full pipe would stop the server.
        let log = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let collected = Arc::clone(&log);
        tokio::spawn(async move {
            let mut url_tx = Some(url_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("Taskgate is listening on ")
                    && let Some(tx) = url_tx.take()
                {
                    let _ = tx.send(url.trim().to_owned());
                }
                collected.lock().unwrap().push(line);
            }
        });
        let url = match tokio::time::timeout(Duration::from_secs(60), url_rx).await {
            Ok(Ok(url)) => url,
            _ => panic!(
                "taskgate serve did not say where it listens; its stderr: {:#?}",
                log.lock().unwrap()
            ),
        };
        Self {
            child,
            url,
            log,
            _data: data,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// The server's resident memory, in KiB.
    fn rss_kb(&self) -> u64 {
        rss_kb(self.pid()).expect("the server is running")
    }

    fn address(&self) -> String {
        self.url
            .strip_prefix("http://")
            .expect("plain HTTP")
            .to_owned()
    }
}

/// The resident memory (`VmRSS`) of process `pid`, in KiB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse().ok())
}

/// A JSON request that must succeed; its answer.
async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut request = client.request(method, &url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {answer}");
    answer
}

/// Writer `writer`'s `n`th description: about 8 KB, different every time.
fn description(writer: usize, n: usize) -> String {
    let head = format!("writer {writer}, edit {n}: ");
    let filler = "the quick brown fox jumps over the lazy dog; "
        .chars()
        .cycle()
        .skip(n % 45)
        .take(DESCRIPTION_CHARS - head.len());
    head.chars().chain(filler).collect()
}

/// Has each writer edit its own item's description once per round, all
/// writers at once.
async fn edit(
    client: &reqwest::Client,
    server: &str,
    token: &str,
    project: &str,
    items: &[String],
    rounds: std::ops::Range<usize>,
) {
    let mut writers = Vec::new();
    for (writer, item) in items.iter().enumerate() {
        let (client, token) = (client.clone(), token.to_owned());
        let url = format!("{server}/projects/{project}/items/{item}");
        let rounds = rounds.clone();
        writers.push(tokio::spawn(async move {
            for n in rounds {
                call(
                    &client,
                    reqwest::Method::PATCH,
                    url.clone(),
                    Some(&token),
                    json!({"description": description(writer, n)}),
                )
                .await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
}

type Socket<S> = WebSocketStream<S>;

/// Subscribes to `topic` and waits for the answer.
async fn subscribe<S>(socket: &mut Socket<S>, topic: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    socket
        .send(Message::text(
            json!({"type": "subscribe", "topic": topic}).to_string(),
        ))
        .await
        .unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the subscription is answered in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                let answer: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(answer, json!({"type": "subscribed", "topic": topic}));
                return;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected the subscription's answer, got {other:?}"),
        }
    }
}

/// How the slow subscriber's socket ended.
enum End {
    Closed(Option<CloseCode>),
    Error(String),
    Eof,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed(Some(code)) => write!(f, "a close frame with code {code}"),
            Self::Closed(None) => write!(f, "a close frame without a code"),
            Self::Error(e) => write!(f, "an error ({e})"),
            Self::Eof => write!(f, "the end of the stream"),
        }
    }
}

/// One test, on the embedded store only: the bound lives in the hub and the
/// socket, not in the store, so it does not depend on the store, and 10,000
/// changes on DynamoDB Local would take minutes.
///
/// A subscriber that never reads, with a small receive buffer, while 10,000
/// item edits (8 KB descriptions) go to its project: the server's resident
/// memory stays flat (measured on the `taskgate` process alone), the slow
/// subscriber is disconnected (a 1008 close, or the socket dropped after a
/// send that took too long) long before it could have seen the 10,000
/// events, and a second subscriber that keeps reading gets all 10,000, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_never_reads_costs_bounded_memory_and_is_disconnected() {
    let started = Instant::now();
    let server = ServerProcess::start().await;
    let client = reqwest::Client::new();
    let base = server.url.clone();

    let login = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/auth"),
        None,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    let token = login["token"].as_str().unwrap().to_owned();
    let project = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/projects"),
        Some(&token),
        json!({"name": "Flood"}),
    )
    .await;
    let project = project["id"].as_str().unwrap().to_owned();
    let mut items = Vec::new();
    for writer in 0..WRITERS {
        let item = call(
            &client,
            reqwest::Method::POST,
            format!("{base}/projects/{project}/items"),
            Some(&token),
            json!({"title": format!("x{writer}")}),
        )
        .await;
        items.push(item["id"].as_str().unwrap().to_owned());
    }
    let topic = format!("project:{project}");
    let ws_request = || {
        let mut request = format!("ws://{}/ws", server.address())
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };

    // The slow subscriber: a 4 KB receive buffer (the kernel doubles it),
    // subscribed, then never polled until the end.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(server.address().parse().unwrap())
        .await
        .unwrap();
    let (mut slow, response): (Socket<TcpStream>, _) =
        tokio_tungstenite::client_async(ws_request(), stream)
            .await
            .expect("the upgrade succeeds");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    subscribe(&mut slow, &topic).await;

    edit(
        &client,
        &base,
        &token,
        &project,
        &items,
        0..WARM_UP / WRITERS,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kb = server.rss_kb();

    // The well-behaved subscriber, reading all along.
    let (mut good, _): (Socket<MaybeTlsStream<TcpStream>>, _) =
        tokio_tungstenite::connect_async(ws_request())
            .await
            .expect("the upgrade succeeds");
    subscribe(&mut good, &topic).await;
    let read_by = tokio::time::Instant::now() + FLOOD_WITHIN;
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::with_capacity(EVENTS);
        while seqs.len() < EVENTS {
            let message = tokio::time::timeout_at(read_by, good.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("the reading subscriber got only {} events", seqs.len())
                });
            match message {
                Some(Ok(Message::Text(text))) => {
                    let event: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(event["type"], "event", "{}", &text[..text.len().min(300)]);
                    assert_eq!(event["event"]["kind"], "item.updated");
                    seqs.push(event["seq"].as_u64().expect("events have a seq"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!(
                    "the reading subscriber got {other:?} after {} events",
                    seqs.len()
                ),
            }
        }
        seqs
    });

    // The flood, with the server's memory sampled all along.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        let pid = server.pid();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    samples.push((started.elapsed(), kb));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };
    let flood_started = Instant::now();
    let first = WARM_UP / WRITERS;
    tokio::time::timeout(
        FLOOD_WITHIN,
        edit(
            &client,
            &base,
            &token,
            &project,
            &items,
            first..first + EVENTS / WRITERS,
        ),
    )
    .await
    .expect("the edits are made in time");
    let flood = flood_started.elapsed();
    let seqs = reader.await.unwrap();
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    let after_kb = server.rss_kb();
    let peak_kb = samples
        .iter()
        .map(|(_, kb)| *kb)
        .chain([before_kb, after_kb])
        .max()
        .unwrap_or(after_kb);
    let growth_kb = peak_kb.saturating_sub(before_kb);
    eprintln!(
        "{EVENTS} edits in {flood:.1?}; server VmRSS {before_kb} KiB before, \
         {peak_kb} KiB at its peak, {after_kb} KiB after (growth {growth_kb} KiB)"
    );

    // Now the slow subscriber reads: what was buffered for it, then the end.
    let reading = Instant::now();
    let end_by = tokio::time::Instant::now() + END_WITHIN;
    let mut received = 0usize;
    let end = loop {
        let message = tokio::time::timeout_at(end_by, slow.next())
            .await
            .unwrap_or_else(|_| {
                panic!("the slow subscriber is still connected after {received} events")
            });
        match message {
            Some(Ok(Message::Text(text))) => {
                let event: Value = serde_json::from_str(&text).unwrap();
                if event["type"] == "event" {
                    received += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => break End::Closed(frame.map(|f| f.code)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => break End::Error(e.to_string()),
            None => break End::Eof,
        }
    };
    let waited = reading.elapsed();
    eprintln!(
        "the slow subscriber got {received} of {} events, then {end}, {waited:.1?} after it read again; \
         the test took {:.1?}",
        WARM_UP + EVENTS,
        started.elapsed()
    );
    assert_eq!(seqs.len(), EVENTS);
    for pair in seqs.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "the reading subscriber's events are in feed order, each once"
        );
    }
    if let End::Closed(code) = &end {
        assert_eq!(*code, Some(CloseCode::Policy), "too slow: 1008");
    }
    assert!(
        received < EVENTS,
        "the slow subscriber got {received} events: it was not cut off"
    );
    assert!(waited < END_WITHIN, "{waited:?}");
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.iter().all(|line| !line.contains("panic")),
        "the server panicked: {log:#?}"
    );
    // Last, so that a failure here still shows that the rest held.
    let per_second: Vec<String> = samples
        .iter()
        .step_by(10)
        .map(|(at, kb)| format!("{}s {} MiB", at.as_secs(), kb / 1024))
        .collect();
    assert!(
        growth_kb < MAX_GROWTH_KB,
        "the server's memory grew by {growth_kb} KiB ({before_kb} → {peak_kb} KiB) during \
         {EVENTS} edits, one subscriber not reading and one reading: {}",
        per_second.join(", ")
    );
}
