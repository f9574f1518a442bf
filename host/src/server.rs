//! Start-up: open storage, fill the registry, start the engine, serve HTTP.
//!
//! Invariant: nothing is served or claimed before migrations ran, recovery is possible (the
//! sweeper starts with the workers) and the process has joined the fleet (its first
//! heartbeat written and the workers' models read, see [`fleet`]), and the bind rule (no
//! non-loopback address without keys) is checked before the socket opens.

use std::{future::IntoFuture, sync::Arc, time::Duration};

use anyhow::Context;
use axum::serve::ListenerExt;
use easel_diffusion::LocalDiffusion;
use easel_provider::resolver::Resolver;
use easel_wasm::{PluginHost, WasmConfig};

use crate::{
    api::{self, AppState, auth::Auth, files::Links},
    assets::Assets,
    config::Config,
    engine::{
        Engine, EngineParts, PublicLink, fleet,
        provider::{LOCAL_PROVIDER, OFFLINE_PROVIDER},
        registry::Registry,
    },
    net::Guard,
    providers::offline::Offline,
    store::{Store, redact},
};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// API and workers.
    Serve,
    /// Workers only, against the same database.
    Worker,
}

/// A started host.
pub struct Host {
    /// The engine.
    pub engine: Engine,
    /// Shared state for the HTTP layer.
    pub state: AppState,
}

/// Creates the data folder readable by its owner only: the database in it holds the key that
/// signs download links, and the assets are the clients'. A folder that already exists is
/// left as the operator made it, with a warning when other users may read it.
fn make_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o700);
        return builder
            .create(dir)
            .with_context(|| format!("creating EASEL_DATA_DIR {}", dir.display()));
    }
    #[cfg(unix)]
    if std::fs::metadata(dir)?.permissions().mode() & 0o007 != 0 {
        tracing::warn!(
            folder = %dir.display(),
            "EASEL_DATA_DIR may be read by other users, and its database holds the key that signs download links: chmod o-rwx it"
        );
    }
    Ok(())
}

/// Opens storage and builds the engine and API state.
pub async fn build(config: Config) -> anyhow::Result<Host> {
    make_data_dir(&config.data_dir)?;
    let store = Store::open(&config.database_url, &config.sqlite_synchronous).await?;
    tracing::info!(database = %redact(&config.database_url), "storage ready");
    let assets = Assets::configured(
        store.clone(),
        config.data_dir.join("assets"),
        &config.assets,
    )?;
    let registry = Arc::new(Registry::serving_only(config.providers.clone()));
    if config.offline_provider && registry.admits(OFFLINE_PROVIDER) {
        // Free, and its knobs hold workers for up to an hour: never for real clients.
        tracing::warn!("EASEL_OFFLINE_PROVIDER is set: the free offline test provider is served");
        registry.upsert(Arc::new(Offline));
    }
    let mut adapters = None;
    if config.sd_model.is_none()
        && config
            .providers
            .as_ref()
            .is_some_and(|p| p.contains(LOCAL_PROVIDER))
    {
        anyhow::bail!("--providers names local, but no EASEL_SD_MODEL is set to load");
    }
    if let Some(path) = config
        .sd_model
        .as_ref()
        .filter(|_| registry.admits(LOCAL_PROVIDER))
    {
        let local = load_local_model(path, &config.lora_dir).await?;
        local.watch_adapters(registry.clone())?;
        adapters = local.adapters().cloned();
        registry.upsert(Arc::new(local));
    }
    for (alias, target) in &config.aliases {
        registry.set_alias(alias, target);
    }
    for (capability, model) in &config.defaults {
        registry.set_default(capability, model);
    }
    // One cache of DNS answers for the plugins' requests and the host's own.
    let resolver = Resolver::default();
    let plugins = match &config.plugins_dir {
        Some(dir) => Some(start_plugins(&config, dir, registry.clone(), &resolver).await?),
        None => {
            // The default folder is watched only when it exists at start: say so, or a
            // plugin copied into a folder made later is ignored without a word.
            tracing::info!(
                folder = %config.data_dir.join("plugins").display(),
                "no plugins folder: no plugins load (create this folder before starting, or set EASEL_PLUGINS_DIR)"
            );
            None
        }
    };
    let auth = Arc::new(Auth::load(store.clone(), &config.api_keys).await?);
    let link_ttl = config.link_ttl_secs.map(Duration::from_secs);
    let links = Arc::new(Links::load(&store, link_ttl).await?);
    let engine = Engine::new(EngineParts {
        store,
        assets,
        registry,
        config: config.engine.clone(),
        guard: Guard {
            allow_private: config.allow_private_targets,
            connect_to: Arc::new(config.plugins.connect_to.clone()),
            resolver,
        },
        webhook_secret: config.webhook_secret.clone(),
        webhook_bodies: api::shape::webhook_renderer(links.clone()),
        public_link: config.public_url.clone().map(|base| {
            let links = links.clone();
            Arc::new(move |asset_id: &str| links.url(&base, asset_id)) as PublicLink
        }),
        credits: config.credits.clone(),
        limits: config.limits.clone(),
        capacity: config.capacity.clone(),
    });
    let state = AppState::new(api::Shared {
        engine: engine.clone(),
        auth,
        config: Arc::new(config),
        links,
        plugins,
        adapters,
    });
    Ok(Host { engine, state })
}

/// Loads the native diffusion model once, before serving (every request shares it), with
/// the adapters of `lora_dir`.
async fn load_local_model(
    path: &std::path::Path,
    lora_dir: &std::path::Path,
) -> anyhow::Result<LocalDiffusion> {
    let local = LocalDiffusion::load(path)
        .await
        .with_context(|| format!("loading EASEL_SD_MODEL {}", path.display()))?;
    let dir = lora_dir.to_path_buf();
    let local = tokio::task::spawn_blocking(move || local.with_adapter_dir(dir))
        .await?
        .with_context(|| format!("reading EASEL_LORA_DIR {}", lora_dir.display()))?;
    tracing::info!(
        model = %format!("{LOCAL_PROVIDER}/{}", local.model_key()),
        device = %local.device_name(),
        "local diffusion model loaded"
    );
    Ok(local)
}

/// Loads every plugin in `dir`, publishes them into the registry and watches the folder.
async fn start_plugins(
    config: &Config,
    dir: &std::path::Path,
    registry: Arc<Registry>,
    resolver: &Resolver,
) -> anyhow::Result<PluginHost> {
    if !config.plugins.connect_to.is_empty() && !config.allow_private_targets {
        tracing::warn!(
            "[plugins] connect_to is ignored: it takes effect only with EASEL_ALLOW_PRIVATE_TARGETS=1 (tests and trials)"
        );
    }
    let runtime = easel_wasm::Runtime::new(WasmConfig {
        cache_dir: Some(config.data_dir.join("plugin-cache")),
        allow_private_targets: config.allow_private_targets,
        memory_limit_bytes: config.plugins.memory_limit_mb << 20,
        cpu_deadline: Duration::from_millis(config.plugins.cpu_deadline_ms),
        call_timeout: Duration::from_secs(config.plugins.call_timeout_secs),
        kept_instances: config.plugins.kept_instances,
        operator_allowed_hosts: config.plugins.allowed_hosts.clone(),
        connect_to: config.plugins.connect_to.clone(),
        perf_map: config.plugins.perf_map,
        secret_grants: config.plugins.secret_grants(),
        resolver: resolver.clone(),
        ..WasmConfig::default()
    })?;
    // Each file's load or refusal is logged by the plugin host itself.
    PluginHost::start(runtime, dir, registry).await
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(config: Config, mode: Mode) -> anyhow::Result<()> {
    if mode == Mode::Serve {
        config.check_bind()?;
    }
    let addr = config.addr;
    let addr_of_metrics = config.metrics_addr;
    let host = build(config).await?;
    // `serve` with `[engine] workers = 0` is API only; `easel worker` processes do the work.
    let runs_workers = mode == Mode::Worker || host.state.config.engine.workers > 0;
    warn_unloaded(&host, runs_workers);
    warn_unshared_assets(&host.state.config);
    // The fleet sees this process, and it the fleet, before it claims or serves anything.
    let mut membership = fleet::Membership::new(runs_workers);
    membership
        .beat(&host.engine)
        .await
        .context("joining the fleet (the workers table)")?;
    host.engine.start(runs_workers, membership);
    match mode {
        Mode::Serve => {
            if let Some(addr) = addr_of_metrics {
                tracing::warn!(
                    %addr,
                    "EASEL_METRICS_ADDR is read by `easel worker` only: `serve` answers /metrics \
                     on its own address"
                );
            }
            say_which_model_seed_003_runs_on(&host.state);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            let local = listener.local_addr()?;
            // Tests and scripts read this line to learn the port when EASEL_ADDR ends in :0.
            println!("easel listening on http://{local}");
            // The peer address decides whose forwarding headers are believed (api::proxies).
            let app = api::router(host.state)
                .into_make_service_with_connect_info::<std::net::SocketAddr>();
            // Small writes (a stream's chunks) go out at once: with Nagle's algorithm each one
            // after the first waits for the client's delayed ACK, about 40 ms.
            let listener = listener.tap_io(|tcp| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "TCP_NODELAY on an accepted connection failed");
                }
            });
            let serving = axum::serve(listener, app)
                .with_graceful_shutdown(claiming_stopped_at_signal(host.engine.clone()));
            serve_draining(serving.into_future(), &host.engine).await?;
        }
        Mode::Worker => match addr_of_metrics {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding EASEL_METRICS_ADDR {addr}"))?;
                // Tests read this line to learn the port when the address ends in :0.
                println!(
                    "easel worker running; metrics on http://{}",
                    listener.local_addr()?
                );
                let serving = axum::serve(listener, api::worker_router(host.state))
                    .with_graceful_shutdown(claiming_stopped_at_signal(host.engine.clone()));
                serve_draining(serving.into_future(), &host.engine).await?;
            }
            None => {
                println!("easel worker running");
                shutdown_signal().await;
            }
        },
    }
    host.engine.shutdown().await;
    if runs_workers && let Err(error) = fleet::retire(&host.engine).await {
        tracing::warn!(%error, "leaving the fleet failed; the row lapses with its lease");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Names the model seed 003's routes run on when it is not the local one an operator chose
/// with `EASEL_SD_MODEL`: a client of those routes names no model, and the fallback may be a
/// paid vendor's.
fn say_which_model_seed_003_runs_on(state: &AppState) {
    match api::sd::sd_model(state) {
        Some(model) if model.provider.id() != LOCAL_PROVIDER => tracing::info!(
            model = %model.id(),
            "seed 003's /api/v1/generate runs on this model (no EASEL_SD_MODEL; alias `sd` in \
             [models] aliases to choose another)"
        ),
        Some(_) => {}
        None => tracing::info!(
            "seed 003's /api/v1/generate has no model: set EASEL_SD_MODEL, or load a plugin \
             that makes images"
        ),
    }
}

/// Says when hosts share a database but not their files: each keeps its outputs in its own
/// data folder, so a job that succeeded on a worker has outputs no other host can serve.
fn warn_unshared_assets(config: &Config) {
    if config.database_url.starts_with("postgres") && config.assets.bucket.is_none() {
        tracing::warn!(
            "DATABASE_URL is shared (PostgreSQL) but [assets] names no bucket: files stay in \
             this host's data folder, and another host cannot serve them; set [assets] bucket \
             for a fleet"
        );
    }
}

/// Names the providers `--providers` asked for that this process has not loaded (a plugin
/// may still arrive in the watched folder).
fn warn_unloaded(host: &Host, claims: bool) {
    let registry = host.engine.registry();
    let loaded = registry.provider_ids();
    for wanted in host.state.config.providers.iter().flatten() {
        if !loaded.contains(wanted) {
            tracing::warn!(provider = %wanted, "--providers names a provider that is not loaded");
        }
    }
    // Settings that name a model or a provider are taken as written, so a misspelt one would
    // do nothing without a word. Another process of the fleet may serve it; the log says so.
    let config = &host.state.config;
    let models = config
        .aliases
        .iter()
        .chain(&config.defaults)
        .map(|(setting, model)| (setting.as_str(), model.as_str()))
        // `[capacity]` bounds this process's claims: it is shared by every process of the
        // fleet as it is (README), so it names nothing to a process that claims nothing, nor
        // a provider `--providers` leaves out.
        .chain(
            config
                .capacity
                .models
                .keys()
                .filter(|m| claims && m.split('/').next().is_some_and(|p| registry.admits(p)))
                .map(|m| (m.as_str(), m.as_str())),
        );
    for (setting, model) in models {
        if registry.find(model).is_err() {
            tracing::warn!(
                setting,
                model,
                "a setting names a model not served by this process (misspelt, or served only by other processes of the fleet)"
            );
        }
    }
    for provider in config.capacity.providers.keys() {
        if claims && registry.admits(provider) && !loaded.contains(provider) {
            tracing::warn!(%provider, "[capacity] names a provider not loaded in this process (misspelt, or loaded only by other processes of the fleet)");
        }
    }
}

/// Runs `serving` to its end; once the process is stopping, its open connections (a chat
/// being answered) drain for at most `[engine] shutdown_grace_secs`, so that a long stream
/// cannot hold a stop past the service manager's timeout. Then the engine is interrupted: a
/// chat still answering is recorded failed and tells its client why, which its connection gets
/// [`CUT_ANSWERS_WAIT`] to carry before it is closed with the process.
async fn serve_draining(
    serving: impl std::future::Future<Output = std::io::Result<()>>,
    engine: &Engine,
) -> anyhow::Result<()> {
    let outlived = async {
        engine.claiming_stopped().await;
        tokio::time::sleep_until(engine.shutdown_deadline()).await;
    };
    let mut serving = std::pin::pin!(serving);
    tokio::select! {
        served = &mut serving => return Ok(served?),
        () = outlived => {}
    }
    let grace = engine.config().shutdown_grace();
    tracing::warn!(
        ?grace,
        "cutting the answers still streaming after the shutdown grace"
    );
    engine.interrupt();
    match tokio::time::timeout(CUT_ANSWERS_WAIT, serving).await {
        Ok(served) => Ok(served?),
        Err(_) => {
            tracing::warn!("closing the connections still open");
            Ok(())
        }
    }
}

/// How long a cut answer's connection has to record its end and send its error event: a
/// commit and a write, unless the client stopped reading.
const CUT_ANSWERS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves at Ctrl-C or SIGTERM, the engine having stopped claiming tasks: the open
/// connections (a chat being answered, a scrape) drain while no new task starts.
async fn claiming_stopped_at_signal(engine: Engine) {
    shutdown_signal().await;
    engine.stop_claiming();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => tracing::info!("stopping (Ctrl-C): no new tasks are claimed"),
            _ = term.recv() => tracing::info!("stopping (SIGTERM): no new tasks are claimed"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        tracing::info!("stopping (Ctrl-C): no new tasks are claimed");
    }
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[test]
    fn a_new_data_folder_is_its_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a/easel-data");
        super::make_data_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        // One that exists is left as it is.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        super::make_data_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{mode:o}");
    }
}
