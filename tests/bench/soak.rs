//! The long soak (issue 14): every API at once against the real `easel` binary on SQLite, with
//! uploads, webhooks, cancels, a trapping plugin and the demo plugin redeployed every minute,
//! then a drain. Prints the answers by kind and status, resident memory over time, and every
//! problem; exits 1 on any.
//!
//! `cargo run --release -p easel-tests --bin soak -- [minutes=30] [concurrency=8]`
//! (`scripts/soak` builds what it needs first).

use std::time::Duration;

use easel_tests::soak::{Plan, run};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let minutes: f64 = args.next().map_or(30.0, |a| a.parse().expect("minutes"));
    let concurrency: usize = args.next().map_or(8, |a| a.parse().expect("concurrency"));
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let report = run(Plan {
        duration,
        concurrency,
        reload_every: Duration::from_secs(60),
        sample_every: Duration::from_secs(10),
    })
    .await;
    println!(
        "{} requests in {minutes} min, {concurrency} at once",
        report.requests()
    );
    for (answer, count) in &report.answers {
        println!("  {answer:<32} {count}");
    }
    println!("resident memory (s, MiB):");
    for (at, mib) in &report.rss_mib {
        println!("  {at:>7.0} {mib:>8.1}");
    }
    println!(
        "reloads {}, webhooks sent/received {}/{}, reserved after drain {}",
        report.reloads, report.webhooks.0, report.webhooks.1, report.reserved
    );
    let expected_reloads = (minutes as usize).saturating_sub(1);
    let problems = report.problems(0.10, expected_reloads);
    for problem in &problems {
        println!("PROBLEM {problem}");
    }
    std::process::exit(i32::from(!problems.is_empty()));
}
