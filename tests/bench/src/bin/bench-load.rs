//! The load side of the benchmarks (tests/bench/suite.py), where Python
//! would be the bottleneck: many clients at once, each a tokio task with
//! its own connection.
//!
//!     bench-load delays  BASE TOKEN COUNT SECONDS CONCURRENCY
//!     bench-load scripts BASE TOKEN COUNT CONCURRENCY
//!     bench-load items   BASE TOKEN PROJECT COUNT CONCURRENCY
//!     bench-load pages   BASE TOKEN PATH REQUESTS [first]
//!
//! `items` fills a project with COUNT items of a fixed spread (status by
//! turn, three in four dated over two years, one in ten assigned to the
//! token's user); `pages` reads PATH, follows `next` to the end and starts
//! again, one request at a time, until REQUESTS pages are read (with
//! `first`, reads only the first page, REQUESTS times).
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

async fn scripts(base: String, token: String, count: usize, concurrency: usize) -> Value {
    let http = client(concurrency);
    let started = Instant::now();
    let latencies = run_all(count, concurrency, move |_| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
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
        other => panic!("unknown benchmark {other:?}"),
    };
    println!("{result}");
}
