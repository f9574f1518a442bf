//! API keys can be revoked and rotated: `EASEL_API_KEYS` is reconciled at every start (a key
//! removed is revoked, a key changed is rotated), the admin routes list, create, rotate and
//! revoke keys with labels and expiry, and a revocation reaches every host within seconds.

use std::time::{Duration, Instant};

use easel_tests::{ADMIN_KEY, Backend, Host, KEYS, Options, on_both_backends, send};
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    a_client_removed_from_the_environment_is_refused_after_a_restart,
    a_key_changed_in_the_environment_is_rotated,
    an_operators_revocation_outlasts_the_environment,
    admin_routes_create_list_rotate_and_revoke_keys,
    an_expired_key_is_refused,
);

async fn start(backend: Backend) -> Host {
    Host::start(Options::new(backend).env("EASEL_ADMIN_KEY", ADMIN_KEY)).await
}

/// The status a client route answers for `key`.
async fn status_for(host: &Host, key: &str) -> u16 {
    send(host.as_key(Method::GET, "/api/v1/jobs", key)).await.0
}

async fn admin(host: &Host, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = host.as_admin(method, path);
    send(match body {
        Some(body) => request.json(&body),
        None => request,
    })
    .await
}

async fn keys_of(host: &Host, client: &str) -> Vec<Value> {
    let (status, body) = admin(
        host,
        Method::GET,
        &format!("/admin/clients/{client}/keys"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["keys"].as_array().unwrap().clone()
}

/// Without `EASEL_ADMIN_KEY` the operator's routes are off, and say how to turn them on (they
/// answered "Route not found.").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_routes_without_an_admin_key_say_how_to_turn_them_on() {
    let host = Host::start(Options::new(Backend::Sqlite)).await;
    for path in ["/admin/plugins", "/metrics"] {
        let (status, body) = send(host.as_admin(Method::GET, path)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (
                404,
                Some("The operator's routes are off on this host: set EASEL_ADMIN_KEY.")
            ),
            "{path}"
        );
    }
}

/// On a host without `EASEL_API_KEYS` (loopback only), callers without a key, or with one it
/// never issued, are the client `local` until it has a client; a key it issued is its
/// client's, and once revoked it is refused, never served as `local`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_even_where_no_key_is_needed() {
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .env("EASEL_API_KEYS", ""),
    )
    .await;
    let account = |key: Option<&'static str>| {
        let request = host.http.get(host.url("/api/v1/account"));
        send(match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        })
    };
    for key in [None, Some("sk-anything")] {
        let (status, body) = account(key).await;
        assert_eq!(
            (status, &body["client_id"]),
            (200, &json!("local")),
            "{key:?}: {body}"
        );
    }
    // `local` is a client the operator's routes know: it can be granted credits (with credits
    // enforced, a keyless host could run no priced model: "Client local not found.").
    let (status, granted) = admin(
        &host,
        Method::POST,
        "/admin/clients/local/credits",
        Some(json!({"amount": 5})),
    )
    .await;
    assert_eq!(
        (status, &granted["balance"]),
        (200, &json!(5.0)),
        "{granted}"
    );
    let (status, body) = account(None).await;
    assert_eq!((status, &body["balance"]), (200, &json!(5.0)), "{body}");
    let (status, created) = admin(
        &host,
        Method::POST,
        "/admin/clients",
        Some(json!({"id": "acme", "key": "acme-key-0123456789abcdef"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let keys = keys_of(&host, "acme").await;
    let key_id = keys[0]["id"].as_str().unwrap();
    let (status, body) = account(Some("acme-key-0123456789abcdef")).await;
    assert_eq!(
        (status, &body["client_id"]),
        (200, &json!("acme")),
        "{body}"
    );
    // A host with a client serves nobody as `local` any more: not anonymous callers, not
    // unknown keys (a reverse proxy on the same box must not open it to everyone).
    for (key, status) in [(None, 401), (Some("sk-anything"), 401)] {
        let (got, body) = account(key).await;
        assert_eq!(got, status, "{key:?}: {body}");
    }
    let revoke = format!("/admin/clients/acme/keys/{key_id}/revoke");
    let (status, revoked) = admin(&host, Method::POST, &revoke, Some(json!({}))).await;
    assert_eq!(status, 200, "{revoked}");
    let (status, body) = account(Some("acme-key-0123456789abcdef")).await;
    assert_eq!(
        status, 401,
        "a revoked key is refused, not served as local: {body}"
    );
    // Its only key revoked, the host stays closed, also after a restart (a crash, a unit
    // restarted): a host that had clients never serves anyone as `local` again.
    let mut host = host;
    host.kill9_and_restart().await;
    let (status, body) = send(host.http.get(host.url("/api/v1/account"))).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(status_for(&host, "sk-anything").await, 401);
}

/// Keys stored by an earlier run close a host started without `EASEL_API_KEYS` from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_keys_are_needed_on_a_host_started_without_any_configured() {
    let mut host = start(Backend::Sqlite).await;
    host.set_env("EASEL_API_KEYS", "");
    host.kill9_and_restart().await;
    assert_eq!(status_for(&host, "key-a").await, 200);
    let (status, body) = send(host.http.get(host.url("/api/v1/account"))).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(status_for(&host, "sk-anything").await, 401);
}

async fn restart_with_keys(host: &mut Host, keys: &str) {
    host.set_env("EASEL_API_KEYS", keys);
    host.kill9_and_restart().await;
}

async fn a_client_removed_from_the_environment_is_refused_after_a_restart(backend: Backend) {
    let mut host = start(backend).await;
    assert_eq!(status_for(&host, "key-a").await, 200);

    restart_with_keys(&mut host, "partner-b:key-b").await;
    assert_eq!(status_for(&host, "key-a").await, 401, "removed → revoked");
    assert_eq!(status_for(&host, "key-b").await, 200);
    let listed = keys_of(&host, "partner-a").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["source"], "env");
    assert_eq!(listed[0]["active"], false);
    assert_eq!(listed[0]["revoked_reason"], "removed from EASEL_API_KEYS");

    // Listed again, it is valid again.
    restart_with_keys(&mut host, KEYS).await;
    assert_eq!(status_for(&host, "key-a").await, 200);
    assert_eq!(keys_of(&host, "partner-a").await[0]["active"], true);
}

async fn a_key_changed_in_the_environment_is_rotated(backend: Backend) {
    let mut host = start(backend).await;
    assert_eq!(status_for(&host, "key-a").await, 200);

    // Starting at all was the bug: the client's row clashed with its new key.
    restart_with_keys(&mut host, "partner-a:key-a-rotated,partner-b:key-b").await;
    assert_eq!(status_for(&host, "key-a").await, 401, "the old key");
    assert_eq!(status_for(&host, "key-a-rotated").await, 200, "the new key");
    let listed = keys_of(&host, "partner-a").await;
    let active: Vec<bool> = listed.iter().map(|k| k["active"] == true).collect();
    assert_eq!(active, [false, true], "{listed:?}");

    // Several keys per client from the environment, and a key moved to another client.
    restart_with_keys(
        &mut host,
        "partner-a:key-a-rotated,partner-a:key-a2,partner-b:key-a",
    )
    .await;
    assert_eq!(status_for(&host, "key-a2").await, 200);
    assert_eq!(status_for(&host, "key-a-rotated").await, 200);
    assert_eq!(status_for(&host, "key-b").await, 401);
    let (status, jobs) = send(host.as_key(Method::GET, "/api/v1/jobs", "key-a")).await;
    assert_eq!(status, 200, "{jobs}");
    assert_eq!(keys_of(&host, "partner-b").await.len(), 2);
}

async fn an_operators_revocation_outlasts_the_environment(backend: Backend) {
    let mut host = start(backend).await;
    let listed = keys_of(&host, "partner-a").await;
    let id = listed[0]["id"].as_str().unwrap();
    assert!(id.starts_with("key_"), "{id}");
    assert!(
        listed[0].get("key").is_none(),
        "a listing never shows a secret"
    );
    assert_eq!(status_for(&host, "key-a").await, 200);

    let (status, revoked) = admin(
        &host,
        Method::POST,
        &format!("/admin/clients/partner-a/keys/{id}/revoke"),
        Some(json!({"reason": "leaked in a log"})),
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["active"], false);
    assert_eq!(
        revoked["revoked_reason"],
        "revoked by an operator: leaked in a log"
    );
    assert_eq!(
        status_for(&host, "key-a").await,
        401,
        "at once on this host"
    );

    // Still listed in EASEL_API_KEYS, still revoked.
    host.kill9_and_restart().await;
    assert_eq!(status_for(&host, "key-a").await, 401);
    assert_eq!(status_for(&host, "key-b").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_issued_to_one_client_is_never_handed_to_another_by_the_environment() {
    let mut host = start(Backend::Sqlite).await;
    let issued = "issued-to-a-0123456789";
    let (status, created) = admin(
        &host,
        Method::POST,
        "/admin/clients/partner-a/keys",
        Some(json!({"key": issued})),
    )
    .await;
    assert_eq!(status, 201, "{created}");

    host.set_env("EASEL_API_KEYS", &format!("{KEYS},partner-b:{issued}"));
    let refused = host.start_refused();
    assert!(
        refused.contains("issued to partner-a") && refused.contains("for partner-b"),
        "{refused}"
    );
    host.set_env("EASEL_API_KEYS", "partner-a:key-a,partner-b:key-a");
    let refused = host.start_refused();
    assert!(refused.contains("partner-a and partner-b"), "{refused}");

    host.set_env("EASEL_API_KEYS", KEYS);
    host.kill9_and_restart().await;
    let (status, account) = send(host.as_key(Method::GET, "/api/v1/account", issued)).await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["client_id"], "partner-a", "{account}");
}

async fn admin_routes_create_list_rotate_and_revoke_keys(backend: Backend) {
    let host = start(backend).await;
    let path = "/admin/clients/partner-a/keys";

    // Create: a chosen secret with a label and an expiry, and a generated one.
    let (status, ci) = admin(
        &host,
        Method::POST,
        path,
        Some(json!({"key": "ci-key-0123456789abcdef", "label": "ci", "expires_at": "2099-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 201, "{ci}");
    assert_eq!(ci["key"], "ci-key-0123456789abcdef", "the secret, once");
    assert_eq!(ci["label"], "ci");
    assert_eq!(ci["source"], "admin");
    assert_eq!(ci["expires_at"], "2099-01-01T00:00:00.000Z");
    assert_eq!(ci["active"], true);
    let (status, generated) = admin(&host, Method::POST, path, None).await;
    assert_eq!(status, 201, "{generated}");
    let generated_key = generated["key"].as_str().unwrap().to_string();
    assert!(generated_key.len() >= 16);
    for key in ["ci-key-0123456789abcdef", &generated_key, "key-a"] {
        let (status, jobs) = send(host.as_key(Method::GET, "/api/v1/jobs", key)).await;
        assert_eq!(status, 200, "{key}: {jobs}");
    }

    // List: every key, no secrets.
    let listed = keys_of(&host, "partner-a").await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|k| k.get("key").is_none()), "{listed:?}");
    let ci_id = ci["id"].as_str().unwrap();
    assert!(
        listed
            .iter()
            .any(|k| k["id"] == ci_id && k["label"] == "ci")
    );

    // Rotate with a grace time: both work until it ends; the label stays.
    let (status, rotated) = admin(
        &host,
        Method::POST,
        &format!("{path}/{ci_id}/rotate"),
        Some(json!({"grace_secs": 2})),
    )
    .await;
    assert_eq!(status, 201, "{rotated}");
    let ci2 = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(ci2, "ci-key-0123456789abcdef");
    assert_eq!(rotated["label"], "ci");
    // And its lifetime, from now (the new key used to never expire).
    let expires = rotated["expires_at"].as_str().unwrap_or_default();
    assert!(expires.starts_with("2099-01-01T00:00:0"), "{rotated}");
    assert_eq!(rotated["previous"]["id"], ci_id);
    assert_eq!(rotated["previous"]["replaced_by"], rotated["id"]);
    assert_eq!(rotated["previous"]["active"], true);
    assert_eq!(status_for(&host, "ci-key-0123456789abcdef").await, 200);
    assert_eq!(status_for(&host, &ci2).await, 200);
    let (status, again) = admin(&host, Method::POST, &format!("{path}/{ci_id}/rotate"), None).await;
    assert_eq!(status, 409, "a key is rotated once: {again}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        status_for(&host, "ci-key-0123456789abcdef").await,
        401,
        "grace over"
    );
    assert_eq!(status_for(&host, &ci2).await, 200);

    // Rotate without one: the old key stops at once.
    let ci2_id = rotated["id"].as_str().unwrap();
    let (status, rotated) = admin(
        &host,
        Method::POST,
        &format!("{path}/{ci2_id}/rotate"),
        Some(json!({"key": "ci-key-third-0123456789"})),
    )
    .await;
    assert_eq!(status, 201, "{rotated}");
    assert_eq!(rotated["previous"]["active"], false);
    assert_eq!(
        rotated["previous"]["revoked_reason"],
        format!("rotated to {}", rotated["id"].as_str().unwrap())
    );
    assert_eq!(status_for(&host, &ci2).await, 401);
    assert_eq!(status_for(&host, "ci-key-third-0123456789").await, 200);

    // Revoke.
    let generated_id = generated["id"].as_str().unwrap();
    let (status, revoked) = admin(
        &host,
        Method::POST,
        &format!("{path}/{generated_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revoked_reason"], "revoked by an operator");
    assert_eq!(status_for(&host, &generated_key).await, 401);
    let (status, _) = admin(
        &host,
        Method::POST,
        &format!("{path}/{generated_id}/rotate"),
        None,
    )
    .await;
    assert_eq!(status, 409, "a revoked key cannot be rotated");
    assert_eq!(
        keys_of(&host, "partner-a").await.len(),
        5,
        "revoked keys stay listed"
    );

    // Refusals, in the admin routes' error shape.
    let unknown = [
        (Method::GET, "/admin/clients/nobody/keys".to_string()),
        (Method::POST, "/admin/clients/nobody/keys".into()),
        (Method::POST, format!("{path}/key_nothing/revoke")),
        (Method::POST, format!("{path}/key_nothing/rotate")),
        // Another client's key is not found through this client.
        (
            Method::POST,
            format!("/admin/clients/partner-b/keys/{generated_id}/revoke"),
        ),
    ];
    for (method, route) in unknown {
        let (status, answer) = admin(&host, method.clone(), &route, None).await;
        assert_eq!(status, 404, "{method} {route}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let refused = [
        (json!({"key": "key-b"}), 400),
        (json!({"key": "ci-key-third-0123456789"}), 409),
        (json!({"expires_at": "2001-01-01T00:00:00Z"}), 400),
        (json!({"expires_at": "tomorrow"}), 400),
        (
            json!({"expires_at": "2099-01-01T00:00:00Z", "expires_in_secs": 5}),
            400,
        ),
        (json!({"expires_in": 5}), 400),
        (json!({"label": "x".repeat(201)}), 400),
    ];
    for (body, expected) in refused {
        let (status, answer) = admin(&host, Method::POST, path, Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (status, _) = send(host.as_key(Method::GET, path, "key-a")).await;
    assert_eq!(status, 401, "client keys are not admin keys");
    assert_eq!(
        keys_of(&host, "partner-a").await.len(),
        5,
        "refusals stored nothing"
    );
}

async fn an_expired_key_is_refused(backend: Backend) {
    let host = start(backend).await;
    let (status, created) = admin(
        &host,
        Method::POST,
        "/admin/clients/partner-b/keys",
        Some(json!({"label": "short-lived", "expires_in_secs": 1})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap();
    assert_eq!(status_for(&host, key).await, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        status_for(&host, key).await,
        401,
        "expired, though just trusted"
    );
    let listed = keys_of(&host, "partner-b").await;
    let shown = listed.iter().find(|k| k["id"] == created["id"]).unwrap();
    assert_eq!(shown["active"], false);
    assert_eq!(shown["revoked_at"], Value::Null);
}

/// Hosts that share a database: PostgreSQL only.
mod a_key_issued_on_one_host_closes_another_within_seconds {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_key_issued_on_one_host_closes_another_within_seconds().await
    }
}

/// Two loopback hosts on one database, neither with `EASEL_API_KEYS`: a key issued through one
/// host's admin routes closes the other too, so that callers without a key are not served as
/// `local` by the host the operator did not use.
async fn a_key_issued_on_one_host_closes_another_within_seconds() {
    let open = |database: Option<&str>| {
        let options = Options::new(Backend::Postgres)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .env("EASEL_API_KEYS", "");
        match database {
            Some(url) => options.env("DATABASE_URL", url),
            None => options,
        }
    };
    let first = Host::start(open(None)).await;
    let database = first.database_url().unwrap().to_string();
    let second = Host::start(open(Some(&database))).await;
    let anonymous = |host: &Host| send(host.http.get(host.url("/api/v1/account")));
    assert_eq!(anonymous(&second).await.0, 200);
    let (status, created) = admin(
        &first,
        Method::POST,
        "/admin/clients",
        Some(json!({"id": "acme", "key": "acme-key-0123456789abcdef"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(anonymous(&first).await.0, 401);
    let issued = Instant::now();
    while anonymous(&second).await.0 == 200 {
        assert!(
            issued.elapsed() < Duration::from_secs(5),
            "the other host still serves callers without a key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_for(&second, "sk-anything").await, 401);
    assert_eq!(status_for(&second, "acme-key-0123456789abcdef").await, 200);
}

mod a_key_revoked_on_one_host_is_refused_by_another_within_seconds {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_key_revoked_on_one_host_is_refused_by_another_within_seconds().await
    }
}

async fn a_key_revoked_on_one_host_is_refused_by_another_within_seconds() {
    let first = start(Backend::Postgres).await;
    let database = first.database_url().unwrap().to_string();
    let second = Host::start(
        Options::new(Backend::Postgres)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .env("DATABASE_URL", &database),
    )
    .await;
    // Each host trusts the key from memory now.
    assert_eq!(status_for(&first, "key-a").await, 200);
    assert_eq!(status_for(&second, "key-a").await, 200);

    let id = keys_of(&second, "partner-a").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = admin(
        &first,
        Method::POST,
        &format!("/admin/clients/partner-a/keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(status_for(&first, "key-a").await, 401);
    let revoked = Instant::now();
    while status_for(&second, "key-a").await == 200 {
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "the other host still accepts a revoked key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_for(&second, "key-b").await, 200);
}

/// While the database cannot be reached, a key that is not trusted from memory is answered
/// 503 in the API's own shape, not 401: its holder retries instead of taking it for revoked.
/// Once the database is back, the same key works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_cannot_be_read_are_a_503_not_a_401() {
    let host = start(Backend::Postgres).await;
    host.set_database_reachable(false).await;
    let (status, body) = send(host.as_key(Method::GET, "/api/v1/jobs", "key-b")).await;
    host.set_database_reachable(true).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("cannot be checked"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_for(&host, "key-b").await != 200 {
        assert!(Instant::now() < deadline, "the key never worked again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// On a host without keys (loopback, `local` callers), a caller without a key is told the
/// database cannot be read, not that its key is missing, while whether keys were issued
/// meanwhile cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_host_whose_keys_cannot_be_read_answers_503() {
    let host = Host::start(Options::new(Backend::Postgres).env("EASEL_API_KEYS", "")).await;
    let (status, _) = send(host.http.get(host.url("/api/v1/jobs"))).await;
    assert_eq!(status, 200, "a local caller needs no key");
    host.set_database_reachable(false).await;
    // Past the time the host trusts its last reading of the key table (`RECHECK_AFTER`, 2 s).
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let (status, body) = send(host.http.get(host.url("/api/v1/jobs"))).await;
    host.set_database_reachable(true).await;
    assert_eq!(status, 503, "{body}");
}
