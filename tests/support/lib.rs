//! The end-to-end harness: starts the real `easel` binary on a free loopback port with its
//! own data folder (and, for PostgreSQL, its own database), and talks to it over HTTP.
//!
//! The binary is the one cargo built beside the test executable (`target/<profile>/easel`),
//! or `EASEL_BIN`. PostgreSQL tests need `EASEL_TEST_POSTGRES` (an admin URL such as
//! `postgres://postgres@127.0.0.1:5433/postgres`), which `scripts/test` sets after starting a
//! throwaway server; without it they fail with that explanation.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

pub mod deploy;
pub mod exposition;
pub mod s3;
pub mod soak;

/// Which database a host runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in the data folder.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// Runs the async test body once per backend, each in its own test.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        )*
    };
}

/// The API keys every test host accepts.
pub const KEYS: &str = "partner-a:key-a,partner-b:key-b";

/// The admin key of the test hosts that serve the admin routes (`EASEL_ADMIN_KEY`).
pub const ADMIN_KEY: &str = "admin-secret";

/// `easel.toml`'s `[credits]`, enforced at `prices` (model id, credits per output).
pub fn charging(prices: &[(&str, f64)]) -> String {
    let prices: Vec<String> = prices
        .iter()
        .map(|(model, price)| format!("\"{model}\" = {price}"))
        .collect();
    format!(
        "[credits]\nenforce = true\nprices = {{ {} }}",
        prices.join(", ")
    )
}

/// An `easel worker` process, killed (`kill -9`) when dropped.
pub struct Worker(pub Child);

impl Worker {
    /// Kills the process (`kill -9`) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The address an easel process prints after `prefix` on its stdout once it listens (tests
/// bind port 0); the rest of its stdout is read away so the process never blocks on it.
pub fn announced_address(child: &mut Child, prefix: &'static str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix(prefix) {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            let status = child.try_wait().ok().flatten();
            panic!("easel did not print {prefix:?} and its address (exit status: {status:?})")
        })
}

/// How a test host is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Database.
    pub backend: Backend,
    /// Extra `easel.toml` text appended to the fast test defaults.
    pub toml: String,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Whether private targets (the test's own webhook receiver) are allowed.
    pub allow_private: bool,
    /// Where the host's log goes instead of the test's stderr (appended to, over restarts).
    pub log_file: Option<PathBuf>,
}

impl Options {
    /// Fast test settings on `backend`.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            toml: String::new(),
            env: Vec::new(),
            allow_private: true,
            log_file: None,
        }
    }

    /// Writes the host's log to `path` (appending) instead of the test's stderr.
    pub fn log_to(mut self, path: &std::path::Path) -> Self {
        self.log_file = Some(path.to_path_buf());
        self
    }

    /// Appends `easel.toml` text.
    pub fn toml(mut self, text: &str) -> Self {
        self.toml.push_str(text);
        self.toml.push('\n');
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
}

/// A running easel process plus what it needs to restart on the same state.
pub struct Host {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Client with no default headers.
    pub http: reqwest::Client,
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    database_url: Option<String>,
    options: Options,
}

/// The `easel` binary under test.
pub fn easel_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("EASEL_BIN") {
        return PathBuf::from(path);
    }
    // Tests run from target/<profile>/deps, benchmarks from target/<profile>.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("executable folder");
    let bin = [dir.join("easel"), dir.parent().unwrap_or(dir).join("easel")]
        .into_iter()
        .find(|candidate| candidate.exists())
        .unwrap_or_else(|| dir.join("easel"));
    assert!(
        bin.exists(),
        "{} is missing: build it first (scripts/test does: cargo build --release --workspace)",
        bin.display()
    );
    bin
}

/// The `easel` binary under test with an environment of its own: only `PATH` and quiet logs
/// (`EASEL_LOG=warn`); its errors go to the test's.
pub fn easel_command() -> Command {
    let mut command = Command::new(easel_bin());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EASEL_LOG", "warn")
        .stderr(Stdio::inherit());
    command
}

/// A new, empty database on the test PostgreSQL server; its URL.
pub async fn fresh_postgres_database() -> String {
    let admin = std::env::var("EASEL_TEST_POSTGRES").expect(
        "EASEL_TEST_POSTGRES is not set: PostgreSQL tests need the server that scripts/test starts (run scripts/test)",
    );
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connecting to the test PostgreSQL");
    let name = format!("easel_{}", uuid_like());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let mut url = url::Url::parse(&admin).expect("admin URL");
    url.set_path(&name);
    url.to_string()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Host {
    /// Starts a host with fast test settings.
    pub async fn start(options: Options) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let database_url = match options.backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_postgres_database().await),
        };
        let config: toml::Table =
            "[engine]\nworkers = 4\nlease_secs = 1.5\nwebhook_backoff_secs = 0.2\nwebhook_timeout_secs = 2\nmax_poll_interval_secs = 0.5".parse().unwrap();
        let config = merge_toml(config, &options.toml);
        std::fs::write(data_dir.path().join("easel.toml"), config.to_string())
            .expect("writing easel.toml");
        let mut host = Self {
            base: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            child: None,
            data_dir,
            database_url,
            options,
        };
        host.spawn().await;
        host
    }

    /// Starts a host on SQLite with default options.
    pub async fn sqlite() -> Self {
        Self::start(Options::new(Backend::Sqlite)).await
    }

    /// The `easel` command with this host's environment.
    fn command(&self, subcommand: &str) -> Command {
        let mut command = easel_command();
        command
            .arg(subcommand)
            .env("EASEL_ADDR", "127.0.0.1:0")
            .env("EASEL_DATA_DIR", self.data_dir.path())
            .env("EASEL_CONFIG", self.data_dir.path().join("easel.toml"))
            .env("EASEL_API_KEYS", KEYS)
            // Most suites drive the free offline provider; `Options::env` can turn it off.
            .env("EASEL_OFFLINE_PROVIDER", "1")
            .stdout(Stdio::piped());
        if self.options.allow_private {
            command.env("EASEL_ALLOW_PRIVATE_TARGETS", "1");
        }
        if let Some(url) = &self.database_url {
            command.env("DATABASE_URL", url);
        }
        for (name, value) in &self.options.env {
            command.env(name, value);
        }
        if let Some(path) = &self.options.log_file {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("opening the host's log file");
            command.stderr(log);
        }
        command
    }

    /// Starts an `easel worker` process on this host's database; the caller kills it.
    pub fn spawn_worker(&self) -> Child {
        self.command("worker")
            .spawn()
            .expect("starting easel worker")
    }

    /// Starts an `easel worker` process on this host's database with extra arguments
    /// (`--providers local`) and environment variables over this host's.
    pub fn spawn_worker_with(&self, args: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut command = self.command("worker");
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        Worker(command.spawn().expect("starting easel worker"))
    }

    async fn spawn(&mut self) {
        let mut command = self.command("serve");
        let mut child = command.spawn().expect("starting easel");
        self.base = announced_address(&mut child, "easel listening on ");
        self.child = Some(child);
    }

    /// `kill -9`, then starts again on the same data folder and database.
    pub async fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// Starts `easel serve` again on this host's data and database, expecting it to refuse to
    /// start; returns what it wrote on stderr. The host stays stopped.
    pub fn start_refused(&mut self) -> String {
        use std::io::Read;
        self.kill9();
        let mut child = self
            .command("serve")
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting easel");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for easel") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("easel started, though it should have refused to");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "easel exited {status} without an error");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut stderr)
            .expect("reading stderr");
        stderr
    }

    /// Asks the host to stop (SIGTERM, as systemd does) and waits until it has exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the host is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        child.wait().expect("waiting for easel")
    }

    /// `kill -9` without restarting.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
        }
    }

    /// Sets an environment variable (over the defaults) for the next start.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.options.env.retain(|(set, _)| set != name);
        self.options.env.push((name.into(), value.into()));
    }

    /// The PostgreSQL database, so that another host can share it (`DATABASE_URL`).
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// Takes this host's PostgreSQL database away (`reachable = false`: its connections are
    /// ended and new ones refused, as in an outage) or gives it back.
    pub async fn set_database_reachable(&self, reachable: bool) {
        self.allow_new_connections(reachable).await;
        if !reachable {
            self.end_connections("TRUE").await;
        }
    }

    /// Lets the PostgreSQL database take new connections, or refuses them (those open go on).
    pub async fn allow_new_connections(&self, allowed: bool) {
        let (server, database) = self.postgres_server().await;
        sqlx::query(&format!(
            "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS {allowed}"
        ))
        .execute(&server)
        .await
        .expect("changing whether the database takes connections");
        server.close().await;
    }

    /// Ends the database's connections (every host's) that have LISTENed, as a network fault
    /// would; the others go on.
    pub async fn end_listening_connections(&self) {
        self.end_connections("query ILIKE 'LISTEN%'").await;
    }

    /// Ends the database's connections whose `pg_stat_activity` row meets `condition`.
    async fn end_connections(&self, condition: &str) {
        let (server, database) = self.postgres_server().await;
        let ended: Vec<(bool,)> = sqlx::query_as(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND ({condition})"
        ))
        .bind(&database)
        .fetch_all(&server)
        .await
        .expect("ending the database's connections");
        assert!(
            ended.iter().all(|(ended,)| *ended),
            "a connection outlived its end"
        );
        server.close().await;
    }

    /// A connection to this host's PostgreSQL server (not its database), and the database's
    /// name.
    async fn postgres_server(&self) -> (sqlx::PgPool, String) {
        let url = self.database_url().expect("a PostgreSQL host");
        let (server, database) = url.rsplit_once('/').expect("a database URL");
        let database = database.split('?').next().unwrap_or(database).to_owned();
        let server = sqlx::PgPool::connect(&format!("{server}/postgres"))
            .await
            .expect("the PostgreSQL server");
        (server, database)
    }

    /// The running `easel serve` process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the host is running").id()
    }

    /// The data folder.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request builder authenticated as `key`.
    pub fn as_key(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(key)
    }

    /// A request builder authenticated as the operator ([`ADMIN_KEY`]).
    pub fn as_admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.as_key(method, path, ADMIN_KEY)
    }

    /// The Prometheus text of `GET /metrics`, read with the admin key.
    pub async fn metrics(&self) -> String {
        self.as_admin(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("request reached easel")
            .text()
            .await
            .expect("a metrics page")
    }

    /// Grants `client` `amount` credits through the admin route; its answer (the balance).
    pub async fn grant(&self, client: &str, amount: f64) -> Value {
        let path = format!("/admin/clients/{client}/credits");
        let (status, granted) = send(
            self.as_admin(reqwest::Method::POST, &path)
                .json(&json!({ "amount": amount })),
        )
        .await;
        assert_eq!(status, 200, "granting {amount} to {client}: {granted}");
        granted
    }

    /// A client's balance, reservations and spending, as the operator reads them.
    pub async fn usage(&self, client: &str) -> Value {
        let path = format!("/admin/clients/{client}/usage");
        let (status, usage) = send(self.as_admin(reqwest::Method::GET, &path)).await;
        assert_eq!(status, 200, "{path}: {usage}");
        usage
    }

    /// POSTs JSON as `key-a`; returns status and body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        send(self.as_key(reqwest::Method::POST, path, "key-a").json(body)).await
    }

    /// Posts `body` as `key-a` and reads the whole answer as text (a stream's events, all of
    /// them).
    pub async fn post_text(&self, path: &str, body: &Value) -> String {
        let answer = self.as_key(reqwest::Method::POST, path, "key-a").json(body);
        answer.send().await.unwrap().text().await.unwrap()
    }

    /// Uploads one file as `key-a` through `POST /api/v1/assets`; status and body.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> (u16, Value) {
        use reqwest::multipart::{Form, Part};
        let form = Form::new().part("files", Part::bytes(bytes).file_name(name.to_string()));
        send(
            self.as_key(reqwest::Method::POST, "/api/v1/assets", "key-a")
                .multipart(form),
        )
        .await
    }

    /// GETs as `key-a`; returns status and body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.as_key(reqwest::Method::GET, path, "key-a")).await
    }

    /// Polls a job as `key-a` until `done(job)` or panics after `timeout`.
    pub async fn wait_job(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let (status, body) = self.get(&format!("/api/v1/jobs/{id}")).await;
            assert_eq!(status, 200, "GET job {id}: {body}");
            if done(&body["job"]) {
                return body["job"].clone();
            }
            assert!(
                start.elapsed() < timeout,
                "job {id} never reached the expected state: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits `body` to the jobs API as `key-a`, which must accept it, and waits until the job
    /// is terminal.
    pub async fn run_job(&self, body: &Value) -> Value {
        let (status, created) = self.post("/api/v1/jobs", body).await;
        assert_eq!(status, 202, "{created}");
        self.wait_terminal(created["job"]["id"].as_str().unwrap())
            .await
    }

    /// Waits until a job is terminal.
    pub async fn wait_terminal(&self, id: &str) -> Value {
        self.wait_job(id, Duration::from_secs(60), |job| {
            matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled" | "expired")
            )
        })
        .await
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `base` with each table of `over` merged into its namesake, key by key.
pub fn merge_toml(mut base: toml::Table, over: &str) -> toml::Table {
    let over: toml::Table = over.parse().expect("toml text");
    for (section, values) in over {
        match (base.get_mut(&section), values) {
            (Some(toml::Value::Table(table)), toml::Value::Table(values)) => table.extend(values),
            (_, values) => {
                base.insert(section, values);
            }
        }
    }
    base
}

/// Sends a request; returns status and JSON body (`Null` when the body is not JSON).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request reached easel");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Downloads a public link (no key), which must answer 200; returns content type and bytes.
pub async fn download(url: &str) -> (String, Vec<u8>) {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (content_type, response.bytes().await.unwrap().to_vec())
}

/// Every call a [`Receiver`] got: headers and raw body.
pub type Calls = std::sync::Arc<std::sync::Mutex<Vec<(reqwest::header::HeaderMap, Vec<u8>)>>>;

/// A PNG of one grey level.
pub fn solid_png(width: u32, height: u32, level: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    let mut writer = encoder.write_header().expect("PNG header");
    writer
        .write_image_data(&vec![level; (width * height * 3) as usize])
        .expect("PNG data");
    drop(writer);
    bytes
}

/// A webhook receiver on loopback that answers 500 to the first `failures` calls.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    /// Every call: headers and raw body.
    pub calls: Calls,
}

impl Receiver {
    /// Starts the receiver.
    pub async fn start(failures: usize) -> Self {
        use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
        let calls: Calls = Default::default();
        let seen = calls.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    let mut calls = seen.lock().unwrap();
                    calls.push((headers, body.to_vec()));
                    if calls.len() <= failures {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, calls }
    }

    /// How many calls arrived.
    pub fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Waits until at least `n` calls arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        while self.count() < n {
            assert!(
                start.elapsed() < timeout,
                "receiver got {} calls, expected {n}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `len` bytes from `seed` that no compressor or cache would shortcut (xorshift).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A plugin component built from `plugins/` (scripts/test builds them for wasm32-wasip2 into
/// the same target folder before the tests run).
pub fn built_plugin(crate_name: &str) -> PathBuf {
    // Tests run from target/<profile>/deps, benchmarks from target/<profile>.
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .find(|dir| dir.join("wasm32-wasip2").is_dir())
        .unwrap_or_else(|| exe.ancestors().nth(3).expect("target dir"));
    let file = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        file.exists(),
        "{} is missing: scripts/test builds plugins/ for wasm32-wasip2 first",
        file.display()
    );
    file
}

/// The checkout's root folder, read at run time: a path compiled in goes stale when clones
/// in different folders share one build cache and the test files did not change.
pub fn checkout() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo")).join("..")
}
