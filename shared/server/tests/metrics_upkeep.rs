//! The metrics recorder's memory stays bounded while nobody scrapes it.
//! A test binary of its own: it reads the resident memory of its process,
//! which other tests running beside it would move.

use std::time::Duration;

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Records `count` request latencies, as the API does for each request,
/// yielding now and then as a server's threads do between requests, and
/// returns how much the process grew (KiB).
async fn record_requests(count: usize) -> u64 {
    let before = rss_kib();
    for chunk in 0..count / 10_000 {
        for i in 0..10_000 {
            taskgate_api::metrics::request(
                "/tasks/{id}",
                &http::Method::GET,
                http::StatusCode::OK,
                Duration::from_micros((chunk * 10_000 + i) as u64 % 5_000),
            );
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    rss_kib().saturating_sub(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latencies_recorded_while_nobody_scrapes_do_not_pile_up() {
    // The recorder, installed as the server installs it, with nothing yet
    // folding its samples.
    taskgate_server::metrics::recorder().unwrap();
    // Each latency is kept as a sample until it is folded in: about 16
    // bytes a request (measured), so 1,000,000 requests left unfolded
    // hold about 16 MiB.
    let unfolded = record_requests(1_000_000).await;
    let addr = "127.0.0.1:0".parse().unwrap();
    let served = taskgate_server::metrics::serve_folding_every(addr, Duration::from_millis(20))
        .await
        .unwrap();
    let folded = record_requests(1_000_000).await;
    assert!(
        unfolded > 8 * 1024,
        "without upkeep the samples should show: grew {unfolded} KiB"
    );
    assert!(
        folded < 4 * 1024,
        "with upkeep running, 1,000,000 requests grew the process by {folded} KiB"
    );
    let text = reqwest::get(format!("http://{served}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Requests are counted exactly. Latencies may miss the odd sample
    // recorded at the instant a fold swaps the sample bucket out
    // (metrics-util's `AtomicBucket::clear_with` does not wait for a writer
    // that loaded the old block just before; seen: 2 of 2,000,000 while
    // the machine was loaded). Piling up is what this test is about: all
    // but a handful are still there.
    assert!(
        text.contains("taskgate_http_requests_total{route=\"/tasks/{id}\",method=\"GET\",status=\"200\"} 2000000\n"),
        "every request is counted:\n{text}"
    );
    let latencies: u64 = text
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "taskgate_http_request_duration_seconds_count{route=\"/tasks/{id}\",method=\"GET\"} ",
            )
        })
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no latency count:\n{text}"));
    assert!(
        (1_999_900..=2_000_000).contains(&latencies),
        "the latencies of 2,000,000 requests are still counted, but for the odd one lost in a fold: {latencies}\n{text}"
    );
}
