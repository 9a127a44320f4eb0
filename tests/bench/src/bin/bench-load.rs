//! The load side of the benchmarks (tests/bench/suite.py), where Python
//! would be the bottleneck: many clients at once, each a tokio task with
//! its own connection.
//!
//!     bench-load delays  BASE TOKEN COUNT SECONDS CONCURRENCY
//!     bench-load scripts BASE TOKEN COUNT CONCURRENCY [push]
//!     bench-load items   BASE TOKEN PROJECT COUNT CONCURRENCY
//!     bench-load pages   BASE TOKEN PATH REQUESTS [first]
//!     bench-load fanout  BASE TOKEN PROJECT ITEM SUBSCRIBERS ROUNDS
//!
//! `items` fills a project with COUNT items of a fixed spread (status by
//! turn, three in four dated over two years, one in ten assigned to the
//! token's user); `pages` reads PATH, follows `next` to the end and starts
//! again, one request at a time, until REQUESTS pages are read (with
//! `first`, reads only the first page, REQUESTS times).
//!
//! `scripts` learns that a script ended by asking `GET /tasks/{id}` every
//! millisecond, or with `push` from one WebSocket subscribed to `tasks`
//! (as the console does), which asks nothing of the server meanwhile.
//!
//! `fanout` holds SUBSCRIBERS WebSockets subscribed to the project, then
//! edits the item ROUNDS times, one at a time, and times each change from
//! its `PATCH` to its arrival at the last subscriber.
//!
//! Prints one JSON object with the figures. Nothing is asserted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("a client")
}

/// Runs `count` jobs over `concurrency` workers; each job's result.
async fn run_all<F, Fut, T>(count: usize, concurrency: usize, job: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (job, next) = (job.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return out;
                }
                out.push(job(i).await);
            }
        }));
    }
    let mut results = Vec::with_capacity(count);
    for worker in workers {
        results.extend(worker.await.expect("a worker"));
    }
    results
}

fn timestamp(raw: &str) -> f64 {
    let at = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time");
    at.unix_timestamp_nanos() as f64 / 1e9
}

async fn delays(
    base: String,
    token: String,
    count: usize,
    seconds: f64,
    concurrency: usize,
) -> Value {
    let http = client(concurrency);
    let started = Instant::now();
    let ids = {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        run_all(count, concurrency, move |_| {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            async move {
                let response = http
                    .post(format!("{base}/tasks"))
                    .bearer_auth(&token)
                    .json(&json!({"type": "delay", "seconds": seconds}))
                    .send()
                    .await
                    .expect("POST /tasks");
                assert_eq!(response.status(), 202, "{:?}", response.text().await);
                let task: Value = response.json().await.expect("a task");
                task["id"].as_str().expect("an id").to_owned()
            }
        })
        .await
    };
    let elapsed = started.elapsed().as_secs_f64();
    // Every delay is pending now: the suite reads the server's memory.
    println!("started");
    // Every delay is due `seconds` after its start: wait for the last one.
    tokio::time::sleep(Duration::from_secs_f64(seconds + 2.0)).await;
    let sample: Vec<String> = ids
        .iter()
        .step_by((ids.len() / 2000).max(1))
        .cloned()
        .collect();
    let sampled = sample.len();
    let sample = Arc::new(sample);
    let lateness = {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        run_all(sampled, concurrency.min(16), move |i| {
            let (http, base, token, sample) =
                (http.clone(), base.clone(), token.clone(), sample.clone());
            async move {
                let events: Value = http
                    .get(format!("{base}/tasks/{}/events", sample[i]))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("GET events")
                    .json()
                    .await
                    .expect("events");
                let items = events["items"].as_array().expect("items");
                let due = timestamp(items[0]["data"]["due_at"].as_str().expect("due_at"));
                let done = items
                    .iter()
                    .find(|e| e["type"] == "succeeded")
                    .map(|e| timestamp(e["at"].as_str().expect("at")));
                done.map(|done| (done - due) * 1000.0)
            }
        })
        .await
    };
    let unfinished = lateness.iter().filter(|l| l.is_none()).count();
    let mut lateness: Vec<f64> = lateness.into_iter().flatten().collect();
    lateness.sort_by(f64::total_cmp);
    json!({
        "count": count,
        "start_seconds": elapsed,
        "starts_per_second": count as f64 / elapsed,
        "sampled": sampled,
        "unfinished_in_sample": unfinished,
        "lateness_ms_p50": percentile(&lateness, 50.0),
        "lateness_ms_p99": percentile(&lateness, 99.0),
        "lateness_ms_max": lateness.last().copied().unwrap_or(f64::NAN),
    })
}

async fn scripts(
    base: String,
    token: String,
    count: usize,
    concurrency: usize,
    push: bool,
) -> Value {
    let http = client(concurrency);
    let ended = if push {
        Some(Arc::new(Ended::listen(&base, &token).await))
    } else {
        None
    };
    let started = Instant::now();
    let latencies = run_all(count, concurrency, move |_| {
        let (http, base, token, ended) = (http.clone(), base.clone(), token.clone(), ended.clone());
        async move {
            let begun = Instant::now();
            let task: Value = http
                .post(format!("{base}/tasks"))
                .bearer_auth(&token)
                .json(&json!({"type": "js", "code": "1 + 1"}))
                .send()
                .await
                .expect("POST /tasks")
                .json()
                .await
                .expect("a task");
            let id = task["id"].as_str().expect("an id").to_owned();
            if let Some(ended) = ended {
                let (status, at) = ended.wait(&id).await;
                assert_eq!(status, "succeeded");
                return at.duration_since(begun).as_secs_f64() * 1000.0;
            }
            let mut status = task["status"].as_str().unwrap_or_default().to_owned();
            while !matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let task: Value = http
                    .get(format!("{base}/tasks/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("GET /tasks/{id}")
                    .json()
                    .await
                    .expect("a task");
                status = task["status"].as_str().unwrap_or_default().to_owned();
            }
            assert_eq!(status, "succeeded");
            begun.elapsed().as_secs_f64() * 1000.0
        }
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = latencies;
    latencies.sort_by(f64::total_cmp);
    json!({
        "count": count,
        "concurrency": concurrency,
        "scripts_per_second": count as f64 / elapsed,
        "latency_ms_p50": percentile(&latencies, 50.0),
        "latency_ms_p99": percentile(&latencies, 99.0),
    })
}

/// The tasks that ended, as one WebSocket subscribed to `tasks` hears of
/// them: each with its status and when it was heard.
#[derive(Default)]
struct Ended {
    heard: std::sync::Mutex<std::collections::HashMap<String, (String, Instant)>>,
    news: tokio::sync::Notify,
}

impl Ended {
    /// Subscribes, and keeps listening on a task of its own.
    async fn listen(base: &str, token: &str) -> Arc<Self> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let url = format!("{}/ws?token={token}", base.replacen("http", "ws", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("a WebSocket");
        ws.send(Message::text(
            json!({"type": "subscribe", "topic": "tasks"}).to_string(),
        ))
        .await
        .expect("subscribe");
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains("\"subscribed\"") => {}
            other => panic!("not subscribed: {other:?}"),
        }
        let ended = Arc::new(Self::default());
        let listener = Arc::clone(&ended);
        tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(message) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let task = &message["event"]["task"];
                let (Some(id), Some(status)) = (task["id"].as_str(), task["status"].as_str())
                else {
                    continue;
                };
                if matches!(status, "succeeded" | "failed" | "cancelled") {
                    let at = Instant::now();
                    listener
                        .heard
                        .lock()
                        .unwrap()
                        .insert(id.to_owned(), (status.to_owned(), at));
                    listener.news.notify_waiters();
                }
            }
        });
        ended
    }

    /// The status task `id` ended with and when that was heard.
    async fn wait(&self, id: &str) -> (String, Instant) {
        loop {
            let news = self.news.notified();
            tokio::pin!(news);
            news.as_mut().enable();
            if let Some(ended) = self.heard.lock().unwrap().remove(id) {
                return ended;
            }
            tokio::time::timeout(Duration::from_secs(10), news)
                .await
                .unwrap_or_else(|_| panic!("task {id} did not end within 10 s"));
        }
    }
}

/// The `i`th seeded item: the spread `items` documents.
fn seeded_item(i: usize, me: &str) -> Value {
    let status = ["pending", "in_progress", "completed"][i % 3];
    let mut item = json!({"title": format!("item {i}"), "status": status});
    if !i.is_multiple_of(4) {
        let day = time::Date::from_calendar_date(2026, time::Month::January, 1).unwrap()
            + time::Duration::days((i * 7 % 730) as i64);
        item["due_date"] = json!(day.to_string());
    }
    if i.is_multiple_of(10) {
        item["assignee"] = json!(me);
    }
    item
}

async fn items(
    base: String,
    token: String,
    project: String,
    count: usize,
    concurrency: usize,
) -> Value {
    let http = client(concurrency);
    let me: Value = http
        .get(format!("{base}/"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /")
        .json()
        .await
        .expect("a greeting");
    let me = me["user"]["username"]
        .as_str()
        .expect("a username")
        .to_owned();
    let started = Instant::now();
    let retried = Arc::new(AtomicUsize::new(0));
    let retries = retried.clone();
    run_all(count, concurrency, move |i| {
        let (http, base, token, project, retried) = (
            http.clone(),
            base.clone(),
            token.clone(),
            project.clone(),
            retried.clone(),
        );
        let item = seeded_item(i, &me);
        async move {
            // A 503 says "try again shortly" (one project's writers take
            // turns): as a client should, a few times, after a pause.
            for attempt in 0..5 {
                let response = http
                    .post(format!("{base}/projects/{project}/items"))
                    .bearer_auth(&token)
                    .json(&item)
                    .send()
                    .await
                    .expect("POST items");
                if response.status() == 503 && attempt < 4 {
                    retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    continue;
                }
                assert_eq!(response.status(), 201, "{:?}", response.text().await);
                return;
            }
        }
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    json!({
        "count": count,
        "items_per_second": count as f64 / elapsed,
        "retried_after_503": retries.load(Ordering::Relaxed),
    })
}

async fn pages(
    base: String,
    token: String,
    path: String,
    requests: usize,
    first_only: bool,
) -> Value {
    let http = client(1);
    let mut latencies = Vec::with_capacity(requests);
    let (mut returned, mut walks, mut next) = (0, 0, None::<String>);
    for _ in 0..requests {
        let url = match &next {
            None => format!("{base}{path}"),
            Some(cursor) => format!("{base}{path}&cursor={cursor}"),
        };
        let begun = Instant::now();
        let response = http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET a page");
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.expect("a page");
        latencies.push(begun.elapsed().as_secs_f64() * 1000.0);
        returned += page["items"].as_array().expect("items").len();
        next = page["next"].as_str().map(str::to_owned);
        if next.is_none() {
            walks += 1;
        }
        if first_only {
            next = None;
        }
    }
    latencies.sort_by(f64::total_cmp);
    json!({
        "requests": requests,
        "items_per_page": returned as f64 / requests as f64,
        "walks_to_the_end": walks,
        "latency_ms_p50": percentile(&latencies, 50.0),
        "latency_ms_p99": percentile(&latencies, 99.0),
        "latency_ms_max": latencies.last().copied().unwrap_or(f64::NAN),
    })
}

/// Where `"seq":N` says the message's place in its feed, N.
fn seq_of(text: &str) -> Option<u64> {
    let rest = &text[text.find("\"seq\":")? + 6..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

async fn fanout(
    base: String,
    token: String,
    project: String,
    item: String,
    subscribers: usize,
    rounds: usize,
) -> Value {
    use futures_util::{SinkExt, StreamExt};
    use std::sync::atomic::AtomicU64;
    use tokio_tungstenite::tungstenite::Message;

    // The project's creation and the item's are seq 1 and 2.
    const FIRST: u64 = 3;
    let started = Instant::now();
    let arrived: Arc<Vec<AtomicUsize>> =
        Arc::new((0..rounds).map(|_| AtomicUsize::new(0)).collect());
    let last_ns: Arc<Vec<AtomicU64>> = Arc::new((0..rounds).map(|_| AtomicU64::new(0)).collect());
    let url = format!("{}/ws?token={token}", base.replacen("http", "ws", 1));
    let subscribe = json!({"type": "subscribe", "topic": format!("project:{project}")}).to_string();
    let sockets = run_all(subscribers, 64, move |_| {
        let (url, subscribe) = (url.clone(), subscribe.clone());
        async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .expect("a WebSocket");
            ws.send(Message::text(subscribe)).await.expect("subscribe");
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.contains("\"subscribed\"") => ws,
                other => panic!("not subscribed: {other:?}"),
            }
        }
    })
    .await;
    let connected_in = started.elapsed().as_secs_f64();
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let (arrived, last_ns) = (arrived.clone(), last_ns.clone());
            tokio::spawn(async move {
                while let Some(Ok(message)) = ws.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Some(seq) = seq_of(&text) else { continue };
                    let Some(round) = seq.checked_sub(FIRST).and_then(|r| usize::try_from(r).ok())
                    else {
                        continue;
                    };
                    if round < arrived.len() {
                        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        last_ns[round].fetch_max(ns, Ordering::Relaxed);
                        arrived[round].fetch_add(1, Ordering::Release);
                    }
                }
            })
        })
        .collect();
    let http = client(1);
    let (mut round_trips, mut deliveries) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let sent = started.elapsed();
        let response = http
            .patch(format!("{base}/projects/{project}/items/{item}"))
            .bearer_auth(&token)
            .json(&json!({"title": format!("edit {round}")}))
            .send()
            .await
            .expect("PATCH");
        assert!(response.status().is_success(), "{}", response.status());
        round_trips.push((started.elapsed() - sent).as_secs_f64() * 1000.0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while arrived[round].load(Ordering::Acquire) < subscribers {
            assert!(
                Instant::now() < deadline,
                "change {round} reached {} of {subscribers} subscribers in 10 s",
                arrived[round].load(Ordering::Acquire)
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let last = Duration::from_nanos(last_ns[round].load(Ordering::Relaxed));
        deliveries.push((last - sent).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for reader in readers {
        reader.abort();
    }
    round_trips.sort_by(f64::total_cmp);
    deliveries.sort_by(f64::total_cmp);
    json!({
        "subscribers": subscribers,
        "rounds": rounds,
        "connect_seconds": connected_in,
        "round_trip_ms_p50": percentile(&round_trips, 50.0),
        "round_trip_ms_p99": percentile(&round_trips, 99.0),
        "delivery_ms_p50": percentile(&deliveries, 50.0),
        "delivery_ms_p99": percentile(&deliveries, 99.0),
        "delivery_ms_max": percentile(&deliveries, 100.0),
    })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| panic!("argument {i} missing; see the module docs"))
    };
    let result = match arg(1).as_str() {
        "delays" => {
            delays(
                arg(2),
                arg(3),
                arg(4).parse().unwrap(),
                arg(5).parse().unwrap(),
                arg(6).parse().unwrap(),
            )
            .await
        }
        "scripts" => {
            scripts(
                arg(2),
                arg(3),
                arg(4).parse().unwrap(),
                arg(5).parse().unwrap(),
                args.get(6).is_some_and(|a| a == "push"),
            )
            .await
        }
        "items" => {
            items(
                arg(2),
                arg(3),
                arg(4),
                arg(5).parse().unwrap(),
                arg(6).parse().unwrap(),
            )
            .await
        }
        "pages" => {
            let first_only = args.get(6).is_some_and(|a| a == "first");
            pages(arg(2), arg(3), arg(4), arg(5).parse().unwrap(), first_only).await
        }
        "fanout" => {
            fanout(
                arg(2),
                arg(3),
                arg(4),
                arg(5),
                arg(6).parse().unwrap(),
                arg(7).parse().unwrap(),
            )
            .await
        }
        other => panic!("unknown benchmark {other:?}"),
    };
    println!("{result}");
}
