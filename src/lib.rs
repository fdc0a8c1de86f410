//! Magdi: a self-hosted backend for AI QA agents.
//!
//! `run` is the whole server: the command line and the tests both start it
//! through this one function, with a bound listener and a shutdown signal.

pub mod account_cache;
pub mod accounts;
pub mod agents;
pub mod artifacts;
pub mod backup;
pub mod blocking;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod http;
pub mod live;
pub mod llm;
pub mod markdown;
pub mod metrics;
pub mod quota;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod workspace;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Settings;
use crate::state::{AppState, State};

/// What `/version` and `magdi version` report.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: &'static str,
    pub git_commit: &'static str,
    pub build_time: &'static str,
}

pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        git_commit: env!("MAGDI_GIT_COMMIT"),
        build_time: env!("MAGDI_BUILD_TIME"),
    }
}

/// Opens the data directory and builds the state every route shares.
pub async fn build_state(settings: Settings) -> anyhow::Result<AppState> {
    let data_dir = settings.data_dir.clone();
    let store = crate::blocking::run(move || store::Store::open(&data_dir)).await?;

    let catalog = match &settings.agents_file {
        Some(path) => agents::Catalog::from_file(path)?,
        None => agents::Catalog::built_in(),
    };
    let secret = match &settings.jwt_secret {
        Some(secret) => secret.clone(),
        None => accounts::load_or_create_secret(&settings.data_dir)
            .context("keeping the login secret")?,
    };
    let providers = llm::Providers::connect(&settings).await?;
    let tokens = accounts::Tokens::new(&secret, settings.token_ttl);

    Ok(Arc::new(State {
        store,
        catalog,
        providers,
        tokens,
        accounts: account_cache::AccountCache::new(&settings.data_dir)
            .context("opening the accounts marker in the data directory")?,
        hasher: accounts::Hasher::new(),
        login_guard: accounts::LoginGuard::default(),
        quota: Arc::new(quota::Quota::default()),
        metrics: metrics::Metrics::new(),
        workspace_locks: workspace::WorkspaceLocks::default(),
        turns_in_flight: conversation::TurnGate::new(settings.max_concurrent_turns_per_user),
        live: live::LiveConversations::new(u64::from(settings.context_tokens)),
        disposable_downloads: Default::default(),
        settings,
    }))
}

/// Serves Magdi on `listener` until `shutdown` completes, then lets requests
/// in flight finish and closes the database.
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let _only_server = lock_data_dir(&settings.data_dir)?;
    let state = build_state(settings).await?;
    serve(state, listener, shutdown).await
}

/// The file in the data directory that a running server holds locked.
pub const LOCK_FILE: &str = "magdi.lock";

/// Makes sure no other Magdi serves the same data directory: two servers
/// would each keep their own in-memory state (allowances, conversations in
/// use) over one database. The lock lasts as long as the returned file is
/// open, and the system releases it when the process ends, however it ends.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    store::create_data_dir(data_dir)?;
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another Magdi is already serving {}; stop it first, or give this one another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Whether a running Magdi holds the lock of `data_dir` (see `lock_data_dir`).
pub fn data_dir_in_use(data_dir: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(data_dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Serves an already built state (tests use it to reach inside).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener
        .local_addr()
        .context("reading the listening address")?;
    let data_dir = state.settings.data_dir.clone();

    artifacts::sweep(
        &state.store,
        Some(&state.live),
        &data_dir,
        state.settings.zip_retention,
        state.settings.run_retention,
        true,
    )
    .await
    .context("sweeping the data directory at start")?;
    http::refresh_gauges(&state).await;
    let background = tokio::spawn(background_tasks(Arc::clone(&state)));

    let runtime = tokio::runtime::Handle::current();
    let scheduler = match runtime.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => "one thread",
        _ => "a thread per core",
    };
    tracing::info!(
        address = %address,
        data_dir = %data_dir.display(),
        provider = state.providers.kind.name(),
        models = ?state.providers.models,
        request_threads = runtime.metrics().num_workers(),
        scheduler,
        "magdi is listening on http://{address} (API docs at http://{address}/docs)"
    );

    let app = http::app(Arc::clone(&state));
    release_free_memory();
    let acceptor =
        poem::listener::TcpAcceptor::from_tokio(listener).context("using the listener")?;
    let acceptor = http::slow_clients::GuardedAcceptor {
        inner: acceptor,
        limits: http::slow_clients::Limits {
            head: state.settings.head_timeout,
            idle: state.settings.idle_timeout,
        },
    };
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown, Some(std::time::Duration::from_secs(30)))
        .await
        .context("serving HTTP")?;

    background.abort();
    state
        .store
        .flush()
        .await
        .context("writing the last changes")?;
    tracing::info!("magdi stopped");
    Ok(())
}

/// Gives the memory that start-up used and freed (migrations, the sweep) back
/// to the system now: mimalloc, the allocator of the `magdi` executable,
/// otherwise keeps freed pages until its next purge, which an idle server
/// never reaches.
fn release_free_memory() {
    // SAFETY: mi_collect takes no pointers; it only returns free pages and may
    // be called from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// The sweeper and the periodic refresh of gauges.
async fn background_tasks(state: AppState) {
    let mut ticker = tokio::time::interval(state.settings.sweep_interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let settings = &state.settings;
        if let Err(err) = artifacts::sweep(
            &state.store,
            Some(&state.live),
            &settings.data_dir,
            settings.zip_retention,
            settings.run_retention,
            false,
        )
        .await
        {
            tracing::warn!(error = %format!("{err:#}"), "sweeping the data directory");
        }
        state.login_guard.prune();
        http::refresh_gauges(&state).await;
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("stopping: finishing the requests in flight");
}
