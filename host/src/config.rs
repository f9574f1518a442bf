//! The operator interface: environment variables (names are stable, see DESIGN.md) over an
//! optional `easel.toml` over built-in defaults.
//!
//! `easel.toml` is read from `EASEL_CONFIG` when set, else `./easel.toml`, else
//! `easel.toml` in the data folder (`EASEL_DATA_DIR`, else `./easel-data`). An environment
//! variable always wins over the file.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::engine::provider::LOCAL_PROVIDER;

/// The data folder when neither `EASEL_DATA_DIR` nor the file names one.
const DEFAULT_DATA_DIR: &str = "easel-data";

/// Everything the host reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// Database, assets, compiled-plugin cache.
    pub data_dir: PathBuf,
    /// Watched folder of provider `.wasm` components: `EASEL_PLUGINS_DIR`, else
    /// `$EASEL_DATA_DIR/plugins` when that folder exists.
    pub plugins_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…`; SQLite in the data dir when unset.
    pub database_url: String,
    /// `(client, key)` pairs.
    pub api_keys: Vec<(String, String)>,
    /// Signs webhooks when set.
    pub webhook_secret: Option<String>,
    /// Guards `/admin/*`.
    pub admin_key: Option<String>,
    /// Lets webhooks and URLs reach private addresses (tests only).
    pub allow_private_targets: bool,
    /// Registers the built-in `offline` provider, free and with its test knobs
    /// (`EASEL_OFFLINE_PROVIDER`, tests only).
    pub offline_provider: bool,
    /// Local diffusion checkpoint or diffusers folder.
    pub sd_model: Option<PathBuf>,
    /// Watched folder of the local model's adapters (LoRA, LoHa, LoKr `.safetensors`):
    /// `EASEL_LORA_DIR`, else `$EASEL_DATA_DIR/loras`.
    pub lora_dir: PathBuf,
    /// Engine tuning.
    pub engine: EngineConfig,
    /// Request limits.
    pub limits: Limits,
    /// SQLite `synchronous` setting (`NORMAL` or `FULL`).
    pub sqlite_synchronous: String,
    /// Model aliases, `alias = "provider/key"`.
    pub aliases: HashMap<String, String>,
    /// Default model per capability.
    pub defaults: HashMap<String, String>,
    /// Sandbox limits of provider plugins.
    pub plugins: PluginSettings,
    /// Prices and whether balances are enforced.
    pub credits: CreditSettings,
    /// Base of the links easel hands out for outputs (`EASEL_PUBLIC_URL`); the request's
    /// `Host` when unset.
    pub public_url: Option<String>,
    /// Peers whose `X-Forwarded-Host`/`-Proto` are believed (`EASEL_TRUSTED_PROXIES`, a comma
    /// list of addresses or CIDR blocks); none when unset.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long a public file link stays valid after it is handed out, seconds
    /// (`EASEL_LINK_TTL_SECS`); links never expire when unset.
    pub link_ttl_secs: Option<u64>,
    /// Where stored files live (`[assets]`): the data folder, or an S3-compatible bucket.
    pub assets: AssetSettings,
    /// How many tasks of a provider or model run at once (`[capacity]`).
    pub capacity: CapacitySettings,
    /// The only providers this process loads and claims tasks of (`easel worker
    /// --providers`, `EASEL_PROVIDERS`); every provider it can load when `None`.
    pub providers: Option<std::collections::BTreeSet<String>>,
    /// Where an `easel worker` serves its own `/metrics` and `/admin/plugins`
    /// (`EASEL_METRICS_ADDR`), so that the fleet's workers can be scraped and inspected;
    /// nowhere when unset.
    pub metrics_addr: Option<SocketAddr>,
}

/// `[assets]` in `easel.toml`. Without `bucket`, stored files live in `$EASEL_DATA_DIR/assets`;
/// with it, in that S3-compatible bucket, with credentials (and, unless set here, endpoint and
/// region) from the usual `AWS_*` variables. Files are received into the data folder either way.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssetSettings {
    /// The bucket; the local folder when unset.
    pub bucket: Option<String>,
    /// `https://s3.example.com` (`http://` is allowed, for a store on a private network);
    /// `AWS_ENDPOINT` or AWS itself when unset.
    pub endpoint: Option<String>,
    /// The bucket's region; `AWS_REGION` (or `us-east-1`) when unset.
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), as MinIO, Garage and most self-hosted
    /// stores want, rather than virtual-hosted ones (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Prepended to every object key (`easel/` stores `easel/asset_…`).
    pub key_prefix: String,
    /// A stored object without its row (the process died between the two) is deleted once it
    /// is this old, seconds; longer than any upload takes.
    pub orphan_grace_secs: u64,
    /// How long one request to the bucket is retried while the store is unreachable,
    /// seconds; the request fails after that.
    pub retry_timeout_secs: u64,
    /// Stored files (uploads and outputs) are deleted, with their rows, this long after they
    /// were stored, seconds, unless a queued or running task names them; 0 keeps them.
    pub keep_secs: u64,
}

impl Default for AssetSettings {
    fn default() -> Self {
        Self {
            bucket: None,
            endpoint: None,
            region: None,
            path_style: false,
            key_prefix: String::new(),
            orphan_grace_secs: 3600,
            retry_timeout_secs: 30,
            keep_secs: 0,
        }
    }
}

/// `[capacity]` in `easel.toml`: how many tasks may be in flight at once (being submitted,
/// streaming, or pending on the vendor). `providers` and `models` are counted across every
/// host on the database, so give every host the same table; `per_process` is counted in each
/// worker process.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacitySettings {
    /// `max_in_flight` by provider id, on all hosts together (`dashscope = 4`).
    pub providers: HashMap<String, i64>,
    /// `max_in_flight` by model id, `provider/key`, on all hosts together.
    pub models: HashMap<String, i64>,
    /// Tasks a provider runs at once in one worker process; `local = 1` unless set, since one
    /// process's diffusion model runs one task at a time.
    pub per_process: HashMap<String, usize>,
}

impl Default for CapacitySettings {
    fn default() -> Self {
        Self {
            providers: HashMap::new(),
            models: HashMap::new(),
            per_process: HashMap::from([(LOCAL_PROVIDER.to_string(), 1)]),
        }
    }
}

impl CapacitySettings {
    /// Refuses a negative limit or a model named without its provider.
    fn check(&self) -> anyhow::Result<()> {
        for (name, most) in self.providers.iter().chain(&self.models) {
            if *most < 0 {
                bail!("[capacity] {name} = {most}: a limit cannot be negative");
            }
        }
        for model in self.models.keys() {
            if model
                .split_once('/')
                .is_none_or(|(provider, key)| provider.is_empty() || key.is_empty())
            {
                bail!("[capacity] models: {model:?} is not a model id (provider/key)");
            }
        }
        Ok(())
    }
}

/// `[plugins]` in `easel.toml`: the sandbox of every provider plugin, and per plugin
/// (`[plugins.<id>]`) the secrets the operator assigns to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PluginSettings {
    /// Linear memory of one call, MiB.
    pub memory_limit_mb: usize,
    /// Guest CPU time of one call, milliseconds.
    pub cpu_deadline_ms: u64,
    /// Wall-clock time of one call, seconds.
    pub call_timeout_secs: u64,
    /// Chat instances kept for their clients' next chats; 0 starts every chat in a fresh one.
    pub kept_instances: usize,
    /// Operator allowlist intersected with each manifest's (`*.example.com`, `*`); every
    /// manifest host when unset.
    pub allowed_hosts: Option<Vec<String>>,
    /// Tests only (needs `EASEL_ALLOW_PRIVATE_TARGETS`): `"vendor.host" = "127.0.0.1:PORT"`
    /// sends that vendor's requests in plain HTTP to a fake on loopback.
    pub connect_to: HashMap<String, SocketAddr>,
    /// Writes `/tmp/perf-<pid>.map` naming the plugins' compiled functions for `perf`.
    pub perf_map: bool,
    /// `[plugins.<id>]` tables, by plugin id (any other key is refused as unknown).
    #[serde(flatten, deserialize_with = "per_plugin")]
    pub per_plugin: HashMap<String, PluginGrant>,
}

/// `[plugins.<id>]`: what the operator assigns to one plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginGrant {
    /// Environment variables this plugin may read under their own names (easel's own
    /// settings never); replaces the shipped vendor default for this id.
    pub secrets: Vec<String>,
}

/// Reads the keys of `[plugins]` that are not settings as `[plugins.<id>]` tables, so that a
/// misspelt setting is refused by name rather than taken for a plugin.
fn per_plugin<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<HashMap<String, PluginGrant>, D::Error> {
    use serde::de::Error;
    let rest = HashMap::<String, toml::Value>::deserialize(deserializer)?;
    rest.into_iter()
        .map(|(key, value)| match value {
            table @ toml::Value::Table(_) => PluginGrant::deserialize(table)
                .map(|grant| (key.clone(), grant))
                .map_err(|e| D::Error::custom(format!("[plugins.{key}]: {e}"))),
            _ => Err(D::Error::custom(format!(
                "unknown [plugins] setting `{key}` ([plugins.<id>] tables assign secrets to a plugin)"
            ))),
        })
        .collect()
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            memory_limit_mb: 64,
            cpu_deadline_ms: 10_000,
            call_timeout_secs: 300,
            kept_instances: 64,
            allowed_hosts: None,
            connect_to: HashMap::new(),
            perf_map: false,
            per_plugin: HashMap::new(),
        }
    }
}

/// Most chat instances `[plugins] kept_instances` may keep: each holds a pooled slot.
const MOST_KEPT_INSTANCES: usize = 1000;

impl PluginSettings {
    /// Refuses more kept instances than the pool is sized for, no memory or time at all, and
    /// an allowed host that no host name could match.
    fn check(&self) -> anyhow::Result<()> {
        at_least(
            "plugins",
            "memory_limit_mb",
            self.memory_limit_mb as u64,
            1,
            "no plugin starts in 0 MB",
        )?;
        at_least(
            "plugins",
            "cpu_deadline_ms",
            self.cpu_deadline_ms,
            1,
            "no call runs in 0 ms",
        )?;
        at_least(
            "plugins",
            "call_timeout_secs",
            self.call_timeout_secs,
            1,
            "no call ends in 0 s",
        )?;
        if let Some(bad) = self
            .allowed_hosts
            .iter()
            .flatten()
            .find(|pattern| !easel_allowlist::valid_pattern(pattern.trim()))
        {
            bail!(
                "[plugins] allowed_hosts: {bad:?} is not a host name or pattern \
                 (`api.example.com`, `*.example.com`, `*`; no scheme, port or path)"
            );
        }
        if self.kept_instances > MOST_KEPT_INSTANCES {
            bail!(
                "[plugins] kept_instances = {}: at most {MOST_KEPT_INSTANCES} (each holds a pooled instance slot)",
                self.kept_instances
            );
        }
        Ok(())
    }

    /// The operator's secret assignments by plugin id.
    pub fn secret_grants(&self) -> HashMap<String, Vec<String>> {
        self.per_plugin
            .iter()
            .map(|(id, grant)| (id.clone(), grant.secrets.clone()))
            .collect()
    }
}

/// `[credits]` in `easel.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreditSettings {
    /// Refuse work a client's balance cannot pay for (429 `Insufficient balance`).
    pub enforce: bool,
    /// Credits per output by model id (`provider/key`); the model's price hint otherwise.
    pub prices: HashMap<String, f64>,
}

impl CreditSettings {
    /// Refuses a price that is negative or not a number: a charge would then pay the client.
    fn check(&self) -> anyhow::Result<()> {
        for (model, price) in &self.prices {
            if !price.is_finite() || *price < 0.0 {
                bail!(
                    "[credits] prices: {model} = {price}: a price must be a number of credits, 0 or more"
                );
            }
        }
        Ok(())
    }
}

/// Engine tuning; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Concurrent submit workers per process; 0 makes `serve` API-only (run `easel worker`).
    pub workers: usize,
    /// A queued task older than this expires, seconds.
    pub queue_timeout_secs: u64,
    /// How long a worker's claim on a submitting task lasts without a heartbeat, seconds.
    pub lease_secs: f64,
    /// Concurrent provider polls.
    pub poll_concurrency: usize,
    /// Longest wait between two polls of a pending task, seconds, whatever the provider
    /// hinted (a `Retry-After` included).
    pub max_poll_interval_secs: f64,
    /// Longest a task may stay pending at its vendor (from its start), seconds: then it is
    /// cancelled there (where the vendor can; its reason says which) and fails, refunded,
    /// instead of being polled forever.
    pub pending_timeout_secs: f64,
    /// First webhook retry delay, seconds; doubles each attempt.
    pub webhook_backoff_secs: f64,
    /// Webhook attempts before giving up.
    pub webhook_max_attempts: u32,
    /// Per-attempt webhook timeout, seconds.
    pub webhook_timeout_secs: u64,
    /// Claims a task may get in all: one interrupted more often (its worker died each time),
    /// or refused by its vendor for now more often (rate limited), fails instead of being
    /// queued again.
    pub max_attempts: u32,
    /// How long the models of a worker that stopped heartbeating stay listed and accepted
    /// after its lease, seconds: tasks for them wait for a worker that serves them.
    pub model_grace_secs: f64,
    /// How long a stopping process (SIGTERM, Ctrl-C) lets the submits in flight finish before
    /// it leaves them to the sweeper, seconds.
    pub shutdown_grace_secs: f64,
    /// Submits of one provider that failed unavailable in a row (on any host) that open its
    /// breaker; 0 never opens one.
    pub breaker_failures: u32,
    /// How long an open breaker keeps the provider's queued tasks waiting, seconds.
    pub breaker_cooldown_secs: f64,
    /// How long an ended task is kept, seconds from its end: then it is deleted with its
    /// idempotency key and webhook records (the credit ledger keeps its rows); 0 keeps every
    /// task.
    pub keep_ended_secs: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 8,
            queue_timeout_secs: 24 * 3600,
            lease_secs: 30.0,
            poll_concurrency: 256,
            max_poll_interval_secs: 60.0,
            pending_timeout_secs: 24.0 * 3600.0,
            // 30 s doubling over 9 attempts spans a little over two hours.
            webhook_backoff_secs: 30.0,
            webhook_max_attempts: 9,
            webhook_timeout_secs: 10,
            max_attempts: 3,
            model_grace_secs: 300.0,
            // Below systemd's 90 s stop timeout.
            shutdown_grace_secs: 30.0,
            breaker_failures: 5,
            breaker_cooldown_secs: 30.0,
            keep_ended_secs: 0,
        }
    }
}

/// Refuses `value` unless it is a finite number of seconds of at least `least`.
fn seconds_at_least(table: &str, name: &str, value: f64, least: f64) -> anyhow::Result<()> {
    if !value.is_finite() || value < least {
        bail!("[{table}] {name} = {value}: must be a number of seconds, at least {least}");
    }
    Ok(())
}

/// Refuses a count or size below `least`.
fn at_least(table: &str, name: &str, value: u64, least: u64, why: &str) -> anyhow::Result<()> {
    if value < least {
        bail!("[{table}] {name} = {value}: must be at least {least} ({why})");
    }
    Ok(())
}

impl EngineConfig {
    /// Refuses settings that would break the engine rather than tune it: a lease a live
    /// worker cannot renew in time (its task would be claimed again, and its vendor called
    /// again), a duration that is negative or not a number, a count of zero.
    fn check(&self) -> anyhow::Result<()> {
        // Claims are renewed every third of the lease, at most every 100 ms.
        seconds_at_least("engine", "lease_secs", self.lease_secs, 0.5)?;
        seconds_at_least(
            "engine",
            "max_poll_interval_secs",
            self.max_poll_interval_secs,
            0.01,
        )?;
        seconds_at_least(
            "engine",
            "pending_timeout_secs",
            self.pending_timeout_secs,
            0.01,
        )?;
        seconds_at_least(
            "engine",
            "webhook_backoff_secs",
            self.webhook_backoff_secs,
            0.0,
        )?;
        seconds_at_least("engine", "model_grace_secs", self.model_grace_secs, 0.0)?;
        seconds_at_least(
            "engine",
            "shutdown_grace_secs",
            self.shutdown_grace_secs,
            0.0,
        )?;
        seconds_at_least(
            "engine",
            "breaker_cooldown_secs",
            self.breaker_cooldown_secs,
            0.01,
        )?;
        let e = "engine";
        at_least(
            e,
            "queue_timeout_secs",
            self.queue_timeout_secs,
            1,
            "seconds a task may wait",
        )?;
        at_least(
            e,
            "webhook_timeout_secs",
            self.webhook_timeout_secs,
            1,
            "seconds per attempt",
        )?;
        at_least(
            e,
            "webhook_max_attempts",
            self.webhook_max_attempts.into(),
            1,
            "attempts",
        )?;
        at_least(
            e,
            "max_attempts",
            self.max_attempts.into(),
            1,
            "claims a task may get",
        )?;
        at_least(
            e,
            "poll_concurrency",
            self.poll_concurrency as u64,
            1,
            "polls at once",
        )?;
        Ok(())
    }

    /// How long to wait before polling, given the provider's hint.
    pub fn poll_delay(&self, hint: Duration) -> Duration {
        hint.min(Duration::from_secs_f64(self.max_poll_interval_secs))
    }

    /// The lease as a duration.
    pub fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.lease_secs)
    }

    /// The shutdown grace as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace_secs)
    }
}

/// Body and upload limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest JSON body, bytes.
    pub max_body_bytes: usize,
    /// Largest multipart upload (all files), bytes.
    pub max_upload_bytes: usize,
    /// Most parts (files and fields) of one multipart upload: each file holds an open file
    /// until the request ends.
    pub max_upload_parts: usize,
}

impl Limits {
    /// Refuses limits no request could fit.
    fn check(&self) -> anyhow::Result<()> {
        let why = "bytes; no request would fit";
        at_least(
            "limits",
            "max_body_bytes",
            self.max_body_bytes as u64,
            1024,
            why,
        )?;
        at_least(
            "limits",
            "max_upload_bytes",
            self.max_upload_bytes as u64,
            1024,
            why,
        )?;
        at_least(
            "limits",
            "max_upload_parts",
            self.max_upload_parts as u64,
            1,
            "parts; no upload would fit",
        )
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // A phone photo inline (OpenAI's vision input, seed 003's `init_image`) fits.
            max_body_bytes: 10 * 1024 * 1024,
            max_upload_bytes: 100 * 1024 * 1024,
            max_upload_parts: 100,
        }
    }
}

/// The shape of `easel.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    addr: Option<String>,
    data_dir: Option<PathBuf>,
    plugins_dir: Option<PathBuf>,
    database_url: Option<String>,
    sd_model: Option<PathBuf>,
    lora_dir: Option<PathBuf>,
    engine: EngineConfig,
    limits: Limits,
    storage: StorageConfig,
    models: ModelsConfig,
    plugins: PluginSettings,
    credits: CreditSettings,
    public_url: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    link_ttl_secs: Option<u64>,
    assets: AssetSettings,
    capacity: CapacitySettings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StorageConfig {
    sqlite_synchronous: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ModelsConfig {
    aliases: HashMap<String, String>,
    defaults: HashMap<String, String>,
}

/// Refuses a database URL of a scheme easel does not speak (`mysql://`, a misspelt
/// `postgress://`), which would otherwise be opened as the path of a SQLite file. A bare path
/// is a SQLite file.
fn check_database_url(url: &str) -> anyhow::Result<()> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Ok(());
    };
    if matches!(scheme, "postgres" | "postgresql" | "sqlite") {
        return Ok(());
    }
    anyhow::bail!(
        "DATABASE_URL (or database_url in easel.toml) is a {scheme}:// URL: easel speaks \
         postgres://… (PostgreSQL) and sqlite://<file> (SQLite, the default in the data folder)"
    )
}

/// An on/off environment variable's setting: unset or empty is off; a value that is neither
/// on nor off is refused, so that a switch meant on is never quietly off.
fn switch(name: &str, value: Option<&str>) -> anyhow::Result<bool> {
    let Some(value) = value else {
        return Ok(false);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => anyhow::bail!(
            "{name}={value:?} is neither on (1, true, yes, on) nor off (0, false, no, off)"
        ),
    }
}

impl Config {
    /// Reads the environment and the optional file.
    pub fn from_env() -> anyhow::Result<Self> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let flag = |name: &str| switch(name, env(name).as_deref());
        let file_path = env("EASEL_CONFIG").map(PathBuf::from).or_else(|| {
            let local = PathBuf::from("easel.toml");
            local.exists().then_some(local)
        });
        let data_dir_env = env("EASEL_DATA_DIR").map(PathBuf::from);
        // The file cannot name the folder it is looked for in: the environment's, else the
        // default one.
        let file_path = file_path.or_else(|| {
            let data_dir = data_dir_env
                .clone()
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
            let in_data = data_dir.join("easel.toml");
            in_data.exists().then_some(in_data)
        });
        let file: FileConfig = match &file_path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };

        let addr = match (env("EASEL_ADDR"), file.addr) {
            (Some(text), _) => socket_addr("EASEL_ADDR", &text)?,
            (None, Some(text)) => socket_addr("addr in easel.toml", &text)?,
            (None, None) => SocketAddr::from(([127, 0, 0, 1], 8000)),
        };
        let data_dir = data_dir_env
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = env("DATABASE_URL")
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("easel.db").display()));
        check_database_url(&database_url)?;
        let plugins_dir = env("EASEL_PLUGINS_DIR")
            .map(PathBuf::from)
            .or(file.plugins_dir)
            .or_else(|| Some(data_dir.join("plugins")).filter(|dir| dir.is_dir()));
        let keys_text = env("EASEL_API_KEYS")
            .or_else(|| env("ZHINIAN_API_KEYS"))
            .unwrap_or_default();
        let api_keys = parse_api_keys(&keys_text)?;
        let sqlite_synchronous = file
            .storage
            .sqlite_synchronous
            .unwrap_or_else(|| "NORMAL".into())
            .to_uppercase();
        if !matches!(sqlite_synchronous.as_str(), "NORMAL" | "FULL") {
            bail!("storage.sqlite_synchronous must be NORMAL or FULL");
        }
        let trusted_proxies = match env("EASEL_TRUSTED_PROXIES") {
            Some(text) => parse_networks(text.split(','))?,
            None => parse_networks(file.trusted_proxies.unwrap_or_default().iter())?,
        };
        let link_ttl_secs = match env("EASEL_LINK_TTL_SECS") {
            Some(text) => Some(text.trim().parse::<u64>().with_context(|| {
                format!("EASEL_LINK_TTL_SECS {text:?} is not a number of seconds")
            })?),
            None => file.link_ttl_secs,
        }
        .filter(|secs| *secs > 0);
        let metrics_addr = match env("EASEL_METRICS_ADDR") {
            Some(text) => Some(socket_addr("EASEL_METRICS_ADDR", text.trim())?),
            None => None,
        };
        file.capacity.check()?;
        file.plugins.check()?;
        file.engine.check()?;
        file.limits.check()?;
        file.credits.check()?;
        Ok(Self {
            addr,
            lora_dir: env("EASEL_LORA_DIR")
                .map(PathBuf::from)
                .or(file.lora_dir)
                .unwrap_or_else(|| data_dir.join("loras")),
            data_dir,
            plugins_dir,
            database_url,
            api_keys,
            webhook_secret: env("EASEL_WEBHOOK_SECRET").or_else(|| env("ZHINIAN_WEBHOOK_SECRET")),
            admin_key: env("EASEL_ADMIN_KEY"),
            allow_private_targets: flag("EASEL_ALLOW_PRIVATE_TARGETS")?,
            offline_provider: flag("EASEL_OFFLINE_PROVIDER")?,
            sd_model: env("EASEL_SD_MODEL").map(PathBuf::from).or(file.sd_model),
            engine: file.engine,
            limits: file.limits,
            sqlite_synchronous,
            aliases: file.models.aliases,
            defaults: file.models.defaults,
            plugins: file.plugins,
            credits: file.credits,
            public_url: env("EASEL_PUBLIC_URL")
                .or(file.public_url)
                .map(|url| url.trim_end_matches('/').to_string()),
            trusted_proxies,
            link_ttl_secs,
            assets: file.assets,
            capacity: file.capacity,
            providers: None,
            metrics_addr,
        })
    }

    /// The embedded defaults with everything under `data_dir` (tests, tools).
    pub fn embedded(data_dir: PathBuf) -> Self {
        Self {
            addr: "127.0.0.1:0".parse().expect("literal address"),
            database_url: format!("sqlite://{}", data_dir.join("easel.db").display()),
            lora_dir: data_dir.join("loras"),
            data_dir,
            plugins_dir: None,
            api_keys: Vec::new(),
            webhook_secret: None,
            admin_key: None,
            allow_private_targets: false,
            offline_provider: false,
            sd_model: None,
            engine: EngineConfig::default(),
            limits: Limits::default(),
            sqlite_synchronous: "NORMAL".into(),
            aliases: HashMap::new(),
            defaults: HashMap::new(),
            plugins: PluginSettings::default(),
            credits: CreditSettings::default(),
            public_url: None,
            trusted_proxies: Vec::new(),
            link_ttl_secs: None,
            assets: AssetSettings::default(),
            capacity: CapacitySettings::default(),
            providers: None,
            metrics_addr: None,
        }
    }

    /// Refuses a non-loopback bind without keys (DESIGN.md's operator rule).
    pub fn check_bind(&self) -> anyhow::Result<()> {
        if !self.addr.ip().is_loopback() && self.api_keys.is_empty() {
            bail!(
                "refusing to serve {} without API keys: set EASEL_API_KEYS=client:key,… or bind to 127.0.0.1",
                self.addr
            );
        }
        Ok(())
    }
}

/// Parses addresses (`10.0.0.1`, one host) and CIDR blocks (`10.0.0.0/8`).
fn parse_networks<S: AsRef<str>>(
    entries: impl Iterator<Item = S>,
) -> anyhow::Result<Vec<ipnet::IpNet>> {
    entries
        .map(|entry| entry.as_ref().trim().to_string())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .with_context(|| format!("trusted proxy {entry:?} is not an address or CIDR block"))
        })
        .collect()
}

/// Parses `client:key,client:key`. One key listed for two clients is refused: whichever came
/// last would silently own it, with the other's requests and credits.
pub fn parse_api_keys(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let pairs = text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once(':') {
            Some((client, key)) if !client.trim().is_empty() && !key.trim().is_empty() => {
                let client = client.trim();
                if !crate::store::keys::valid_client_id(client) {
                    bail!(
                        "API key entry for {client:?}: a client id is {}",
                        crate::store::keys::CLIENT_ID_RULE
                    );
                }
                Ok((client.to_string(), key.trim().to_string()))
            }
            _ => bail!("API key entry {pair:?} is not client:key"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut owners = HashMap::new();
    for (client, key) in &pairs {
        if let Some(other) = owners.insert(key.as_str(), client.as_str())
            && other != client
        {
            bail!(
                "EASEL_API_KEYS lists one key for both {other} and {client}: a key belongs to one client"
            );
        }
    }
    Ok(pairs)
}

/// `text`, the setting `name`, as a socket address: an IP address and port, or a host name and
/// port (`localhost:8000`) resolved now, to its first address.
fn socket_addr(name: &str, text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    std::net::ToSocketAddrs::to_socket_addrs(text)
        .ok()
        .and_then(|mut resolved| resolved.next())
        .with_context(|| {
            format!("{name} {text:?} is not an address and port (such as 127.0.0.1:8000 or localhost:8000)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_tables_assign_secrets_and_misspelt_settings_are_refused() {
        let file: FileConfig = toml::from_str(
            "[plugins]\nmemory_limit_mb = 32\n[plugins.dashscope]\nsecrets = [\"DASHSCOPE_API_KEY\"]\n",
        )
        .unwrap();
        assert_eq!(file.plugins.memory_limit_mb, 32);
        assert_eq!(file.plugins.kept_instances, 64);
        file.plugins.check().unwrap();
        let too_many: FileConfig = toml::from_str("[plugins]\nkept_instances = 100000\n").unwrap();
        let refused = too_many.plugins.check().unwrap_err().to_string();
        assert!(refused.contains("kept_instances"), "{refused}");
        assert_eq!(
            file.plugins.secret_grants()["dashscope"],
            ["DASHSCOPE_API_KEY"]
        );
        let typo = toml::from_str::<FileConfig>("[plugins]\nmemory_limt_mb = 32\n").unwrap_err();
        assert!(typo.to_string().contains("memory_limt_mb"), "{typo}");
        let bad = toml::from_str::<FileConfig>("[plugins.acme]\nsecret = [\"X\"]\n").unwrap_err();
        assert!(bad.to_string().contains("[plugins.acme]"), "{bad}");
    }

    #[test]
    fn capacity_limits_models_by_id_and_local_one_per_process() {
        let file: FileConfig = toml::from_str(
            "[capacity]\nproviders = { dashscope = 2 }\nmodels = { \"kling/kling-v2\" = 1 }\n",
        )
        .unwrap();
        file.capacity.check().unwrap();
        assert_eq!(file.capacity.providers["dashscope"], 2);
        assert_eq!(file.capacity.per_process["local"], 1);
        let bare: FileConfig = toml::from_str("[capacity]\nmodels = { kling = 1 }\n").unwrap();
        assert!(bare.capacity.check().is_err());
        let negative: FileConfig =
            toml::from_str("[capacity]\nproviders = { kling = -1 }\n").unwrap();
        assert!(negative.capacity.check().is_err());
    }

    #[test]
    fn a_database_url_of_another_scheme_is_refused_by_name() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u@h/db",
            "sqlite:///tmp/x.db",
            "/tmp/x.db",
        ] {
            super::check_database_url(url).unwrap();
        }
        let refused = super::check_database_url("mysql://u@h/db").unwrap_err();
        assert!(refused.to_string().contains("DATABASE_URL"), "{refused}");
        assert!(refused.to_string().contains("mysql://"), "{refused}");
    }

    #[test]
    fn a_switch_is_on_off_or_refused_by_name() {
        for on in ["1", "true", "TRUE", "Yes", "on", " on "] {
            assert!(super::switch("EASEL_X", Some(on)).unwrap(), "{on}");
        }
        for off in ["0", "false", "No", "OFF", ""] {
            assert!(!super::switch("EASEL_X", Some(off)).unwrap(), "{off}");
        }
        assert!(!super::switch("EASEL_X", None).unwrap());
        let refused = super::switch("EASEL_X", Some("enabled")).unwrap_err();
        assert!(
            refused.to_string().contains("EASEL_X=\"enabled\""),
            "{refused}"
        );
    }

    #[test]
    fn settings_that_would_break_the_engine_are_refused() {
        for (text, names) in [
            ("[engine]\nlease_secs = 0\n", "lease_secs"),
            ("[engine]\nlease_secs = -1\n", "lease_secs"),
            ("[engine]\nlease_secs = nan\n", "lease_secs"),
            (
                "[engine]\nmax_poll_interval_secs = -1\n",
                "max_poll_interval_secs",
            ),
            ("[engine]\nmodel_grace_secs = inf\n", "model_grace_secs"),
            ("[engine]\nmax_attempts = 0\n", "max_attempts"),
            (
                "[engine]\nwebhook_timeout_secs = 0\n",
                "webhook_timeout_secs",
            ),
            ("[limits]\nmax_body_bytes = 0\n", "max_body_bytes"),
            ("[plugins]\nmemory_limit_mb = 0\n", "memory_limit_mb"),
            ("[plugins]\ncall_timeout_secs = 0\n", "call_timeout_secs"),
            ("[plugins]\ncpu_deadline_ms = 0\n", "cpu_deadline_ms"),
            (
                "[plugins]\nallowed_hosts = [\"http://127.0.0.1:9000\"]\n",
                "allowed_hosts",
            ),
            ("[plugins]\nallowed_hosts = [\"**.com\"]\n", "allowed_hosts"),
            (
                "[credits]\nprices = { \"demo/image\" = -3 }\n",
                "demo/image",
            ),
        ] {
            let file: FileConfig = toml::from_str(text).unwrap();
            let refused = [
                file.engine.check(),
                file.limits.check(),
                file.plugins.check(),
                file.credits.check(),
            ]
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| panic!("{text} must be refused"));
            assert!(refused.to_string().contains(names), "{text}: {refused}");
        }
        let tuned: FileConfig = toml::from_str(
            "[engine]\nlease_secs = 0.5\nmodel_grace_secs = 0.0\nmax_poll_interval_secs = 0.2\n",
        )
        .unwrap();
        tuned.engine.check().unwrap();
        FileConfig::default().engine.check().unwrap();
    }

    #[test]
    fn api_keys_parse_and_reject_malformed_pairs() {
        let keys = parse_api_keys("partner-a:key-a, partner-b:key-b").unwrap();
        assert_eq!(
            keys,
            vec![
                ("partner-a".into(), "key-a".into()),
                ("partner-b".into(), "key-b".into())
            ]
        );
        assert!(parse_api_keys("just-a-key").is_err());
        assert!(parse_api_keys("a:").is_err());
        assert!(parse_api_keys("").unwrap().is_empty());
        let shared = parse_api_keys("acme:k1,beta:k1").unwrap_err().to_string();
        assert!(shared.contains("acme and beta"), "{shared}");
        assert_eq!(parse_api_keys("acme:k1,acme:k1").unwrap().len(), 2);
        // The admin routes' rule for client ids, so every client has a path of its own.
        for odd in ["team/a:k", "big team:k", "ünï:k"] {
            assert!(parse_api_keys(odd).is_err(), "{odd}");
        }
    }

    #[test]
    fn listen_addresses_are_ips_or_host_names_with_a_port() {
        let named = super::socket_addr("EASEL_ADDR", "localhost:18113").unwrap();
        assert!(named.ip().is_loopback() && named.port() == 18113, "{named}");
        let ip = super::socket_addr("EASEL_ADDR", "0.0.0.0:80").unwrap();
        assert_eq!(ip.to_string(), "0.0.0.0:80");
        let refused = super::socket_addr("addr in easel.toml", "not-an-addr").unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("addr in easel.toml \"not-an-addr\""),
            "{refused}"
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_cidr_blocks() {
        let nets = parse_networks(["10.0.0.0/8", " 127.0.0.1 ", "", "::1"].iter()).unwrap();
        assert_eq!(nets.len(), 3);
        assert!(nets[0].contains(&"10.2.3.4".parse::<std::net::IpAddr>().unwrap()));
        assert!(nets[1].contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_networks(["proxy.local"].iter()).is_err());
    }
}
