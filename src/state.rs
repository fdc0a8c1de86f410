//! The application state handed to every route.

use std::sync::Arc;

use crate::accounts::{Hasher, LoginGuard, Tokens};
use crate::agents::Catalog;
use crate::config::Settings;
use crate::llm::Providers;
use crate::metrics::Metrics;
use crate::quota::Quota;
use crate::store::Store;
use crate::workspace::WorkspaceLocks;

pub type AppState = Arc<State>;

#[derive(Debug)]
pub struct State {
    pub settings: Settings,
    pub store: Store,
    pub catalog: Catalog,
    pub providers: Providers,
    pub tokens: Tokens,
    /// The accounts tokens name, so that a request need not read them.
    pub accounts: crate::account_cache::AccountCache,
    pub hasher: Hasher,
    pub login_guard: LoginGuard,
    pub quota: Arc<Quota>,
    pub metrics: Metrics,
    pub workspace_locks: WorkspaceLocks,
    pub turns_in_flight: crate::conversation::TurnGate,
    /// Conversations in use, as their turns read them.
    pub live: crate::live::LiveConversations,
    /// Disposable artifacts being downloaded right now: one download at a time.
    pub disposable_downloads: parking_lot::Mutex<std::collections::HashSet<String>>,
}
