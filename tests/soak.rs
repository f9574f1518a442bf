//! CI's short soak: a minute of every API at once, with uploads, webhooks, cancels, a
//! trapping plugin and a plugin redeployed every 15 seconds; nothing may answer 5xx, every kind
//! of request must succeed, and nothing may be left running or reserved. `scripts/soak` runs
//! the long one.

use std::time::Duration;

use easel_tests::soak::{Plan, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_mixed_traffic_leaves_nothing_behind() {
    let report = run(Plan {
        duration: Duration::from_secs(60),
        concurrency: 6,
        reload_every: Duration::from_secs(15),
        sample_every: Duration::from_secs(2),
    })
    .await;
    println!("{} requests: {:#?}", report.requests(), report.answers);
    // A minute is too short to judge memory growth; the long soak judges it.
    let problems = report.problems(f64::INFINITY, 3);
    assert!(problems.is_empty(), "{problems:#?}");
}
