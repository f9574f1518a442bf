//! Start-up: open storage, fill the registry, start the engine, serve HTTP.
//!
//! Invariant: nothing is served before migrations ran and recovery is possible (the sweeper
//! starts with the workers), and the bind rule (no non-loopback address without keys) is
//! checked before the socket opens.

use std::{collections::HashMap, sync::Arc};

use anyhow::Context;

use crate::{
    api::{self, AppState, auth::Auth},
    assets::Assets,
    config::Config,
    engine::{Engine, EngineParts, WebhookRenderer, registry::Registry},
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

/// Opens storage and builds the engine and API state.
pub async fn build(config: Config) -> anyhow::Result<Host> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating EASEL_DATA_DIR {}", config.data_dir.display()))?;
    let store = Store::open(&config.database_url, &config.sqlite_synchronous).await?;
    tracing::info!(database = %redact(&config.database_url), "storage ready");
    let assets = Assets::new(store.clone(), config.data_dir.join("assets"))?;
    let registry = Arc::new(Registry::default());
    registry.upsert(Arc::new(Offline));
    for (alias, target) in &config.aliases {
        registry.set_alias(alias, target);
    }
    for (capability, model) in &config.defaults {
        registry.set_default(capability, model);
    }
    let auth = Arc::new(Auth::load(store.clone(), &config.api_keys).await?);
    let renderers: HashMap<&'static str, WebhookRenderer> =
        HashMap::from([(api::jobs::API, api::jobs::webhook as WebhookRenderer)]);
    let engine = Engine::new(EngineParts {
        store,
        assets,
        registry,
        config: config.engine.clone(),
        guard: Guard {
            allow_private: config.allow_private_targets,
        },
        webhook_secret: config.webhook_secret.clone(),
        renderers,
    });
    let state = AppState {
        engine: engine.clone(),
        auth,
        config: Arc::new(config),
    };
    Ok(Host { engine, state })
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(config: Config, mode: Mode) -> anyhow::Result<()> {
    if mode == Mode::Serve {
        config.check_bind()?;
    }
    let addr = config.addr;
    let host = build(config).await?;
    // `serve` with `[engine] workers = 0` is API only; `easel worker` processes do the work.
    host.engine
        .start(mode == Mode::Worker || host.state.config.engine.workers > 0);
    match mode {
        Mode::Serve => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            let local = listener.local_addr()?;
            // Tests and scripts read this line to learn the port when EASEL_ADDR ends in :0.
            println!("easel listening on http://{local}");
            axum::serve(listener, api::router(host.state))
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
        Mode::Worker => {
            println!("easel worker running");
            shutdown_signal().await;
        }
    }
    host.engine.shutdown();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
