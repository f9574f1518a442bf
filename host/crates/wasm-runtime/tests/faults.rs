//! Fault containment: each misbehaving call fails alone with a clear error while others
//! keep succeeding.

mod common;

use std::sync::Arc;
use std::time::Duration;

use easel_provider::ProviderError;
use easel_wasm::{Runtime, WasmConfig};

fn message(e: &ProviderError) -> String {
    e.to_string()
}

/// What a fault plugin's error must look like.
type Expectation = Box<dyn Fn(&ProviderError) -> bool + Send>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_fail_only_their_own_call() {
    let addr = common::upstream().await;
    let rt = Runtime::new(common::config()).unwrap();
    let p = Arc::new(
        rt.load_bytes(common::guest::guest_component("1.0.0"))
            .await
            .unwrap(),
    );

    // Background load of normal calls during all the faults.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut normal = Vec::new();
    for w in 0..4 {
        let (p, stop) = (p.clone(), stop.clone());
        normal.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = common::submit_text(&*p, &format!("echo:{w}"))
                    .await
                    .expect("normal call failed");
                assert_eq!(t, format!("1.0.0:{w}"));
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        }));
    }

    let cases: Vec<(String, Expectation)> = vec![
        (
            "loop".into(),
            Box::new(
                |e| matches!(e, ProviderError::Internal(m) if m.starts_with("plugin trapped") && m.contains("CPU deadline")),
            ),
        ),
        (
            "alloc".into(),
            Box::new(
                |e| matches!(e, ProviderError::Internal(m) if m.starts_with("plugin trapped") && m.contains("memory limit")),
            ),
        ),
        (
            "panic".into(),
            Box::new(
                |e| matches!(e, ProviderError::Internal(m) if m.starts_with("plugin trapped")),
            ),
        ),
        (
            "fetch:http://evil.example.com/x".into(),
            Box::new(
                |e| matches!(e, ProviderError::UpstreamUnavailable(m) if m.contains("evil.example.com refused") && m.contains("allowed hosts")),
            ),
        ),
        (
            format!("fetch:http://127.0.0.1:{}/slow", addr.port()),
            Box::new(
                |e| matches!(e, ProviderError::UpstreamUnavailable(m) if m.contains("timed out")),
            ),
        ),
        (
            format!("fetch:http://127.0.0.1:{}/big", addr.port()),
            Box::new(
                |e| matches!(e, ProviderError::UpstreamUnavailable(m) if m.contains("response cap") || m.contains("-byte cap")),
            ),
        ),
    ];
    let mut handles = Vec::new();
    for (prompt, check) in cases {
        let p = p.clone();
        handles.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let err = common::submit_text(&*p, &prompt).await.expect_err(&prompt);
            assert!(check(&err), "{prompt}: unexpected error {}", message(&err));
            eprintln!("{prompt}: {} ({:?})", message(&err), started.elapsed());
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    // The upstream itself is fine for an allowed, small request.
    let ok = common::submit_text(&*p, &format!("fetch:http://127.0.0.1:{}/ok", addr.port()))
        .await
        .unwrap();
    assert_eq!(ok, "2 bytes");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for h in normal {
        total += h.await.unwrap();
    }
    assert!(total > 10, "normal calls kept running ({total})");
    // A trapped plugin is not poisoned for the next call.
    assert_eq!(
        common::submit_text(&*p, "echo:after").await.unwrap(),
        "1.0.0:after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_and_operator_allowlist() {
    let addr = common::upstream().await;
    let url = format!("fetch:http://127.0.0.1:{}/ok", addr.port());
    let bytes = common::guest::guest_component("1.0.0");

    let strict = Runtime::new(WasmConfig {
        allow_private_targets: false,
        ..common::config()
    })
    .unwrap();
    let p = strict.load_bytes(bytes.clone()).await.unwrap();
    let e = common::submit_text(&p, &url).await.unwrap_err();
    assert!(
        message(&e).contains("private, loopback or link-local"),
        "{e}"
    );
    let e = common::submit_text(&p, &format!("fetch:http://localhost:{}/ok", addr.port()))
        .await
        .unwrap_err();
    assert!(
        message(&e).contains("private, loopback or link-local"),
        "{e}"
    );

    let narrowed = Runtime::new(WasmConfig {
        operator_allowed_hosts: Some(vec!["*.allowed.test".into()]),
        ..common::config()
    })
    .unwrap();
    let p = narrowed.load_bytes(bytes).await.unwrap();
    let e = common::submit_text(&p, &url).await.unwrap_err();
    assert!(message(&e).contains("127.0.0.1 refused"), "{e}");
}

#[test]
fn private_ranges_are_forbidden_targets() {
    use easel_provider::net::is_forbidden_target;
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
    ] {
        assert!(is_forbidden_target(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
        assert!(!is_forbidden_target(ip.parse().unwrap()), "{ip}");
    }
}

/// The gate's request timeout (1 s in these tests) bounds the wait for an answer and every
/// silence within its body, not the whole body: one that keeps coming is read to its end
/// (a long streamed answer), one that stops is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_keeps_coming_has_no_total_deadline_one_that_stops_is_cut_off() {
    let addr = common::upstream().await;
    let rt = Runtime::new(common::config()).unwrap();
    let p = rt
        .load_bytes(common::guest::guest_component("1.0.0"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let trickle = format!("fetch:http://127.0.0.1:{}/trickle", addr.port());
    assert_eq!(common::submit_text(&p, &trickle).await.unwrap(), "6 bytes");
    assert!(started.elapsed() > Duration::from_millis(1500));

    let stall = format!("fetch:http://127.0.0.1:{}/stall", addr.port());
    let err = common::submit_text(&p, &stall).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::UpstreamUnavailable(m) if m.contains("nothing more for 1s")),
        "{}",
        message(&err)
    );

    // A plugin may ask for less: 200 ms between two bytes, where the trickle pauses 300 ms.
    let within = format!("fetch-within:200:http://127.0.0.1:{}/trickle", addr.port());
    let err = common::submit_text(&p, &within).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::UpstreamUnavailable(m) if m.contains("nothing more for 200ms")),
        "{}",
        message(&err)
    );
}
