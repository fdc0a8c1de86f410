//! Settings for `magdi serve`, gathered from flags and `MAGDI_*` variables.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A secret value: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which kind of model server the provider talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    /// Any OpenAI-compatible Chat Completions server.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// The offline model built into Magdi.
    Builtin,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Builtin => "builtin",
        }
    }
}

/// Everything `magdi serve` needs, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub provider: ProviderKind,
    pub llm_base_url: Option<String>,
    pub llm_api_key: Option<Secret>,
    /// Models offered to clients; empty means "ask the provider at start".
    pub models: Vec<String>,
    pub default_model: Option<String>,
    pub llm_connect_timeout: Duration,
    pub llm_idle_timeout: Duration,
    pub max_output_tokens: u32,
    pub context_tokens: u32,
    pub daily_token_limit: u64,
    pub max_upload_bytes: u64,
    pub max_request_bytes: u64,
    pub max_workspace_bytes: u64,
    pub jwt_secret: Option<Secret>,
    pub token_ttl: Duration,
    pub agents_file: Option<PathBuf>,
    pub zip_retention: Duration,
    pub run_retention: Duration,
    pub sweep_interval: Duration,
    pub max_concurrent_turns_per_user: usize,
    pub cors_origins: Vec<String>,
    /// How long a client may take to send a request's head.
    pub head_timeout: Duration,
    /// How long a connection may sit between requests, nothing sent either
    /// way, before it is closed.
    pub idle_timeout: Duration,
    /// How long a JSON body may take, and how long any part of a form may stall.
    pub body_timeout: Duration,
    /// Serve the web UI from this folder instead of the embedded copy (development).
    pub ui_dir: Option<PathBuf>,
}

impl Settings {
    /// Settings for tests and examples: everything at its default, data in `data_dir`.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            provider: ProviderKind::Builtin,
            llm_base_url: None,
            llm_api_key: None,
            models: Vec::new(),
            default_model: None,
            llm_connect_timeout: Duration::from_secs(10),
            llm_idle_timeout: Duration::from_secs(120),
            max_output_tokens: 4096,
            context_tokens: 32_000,
            daily_token_limit: 100_000,
            max_upload_bytes: 50 * MIB,
            max_request_bytes: 200 * MIB,
            max_workspace_bytes: 500 * MIB,
            jwt_secret: None,
            token_ttl: Duration::from_secs(24 * 3600),
            agents_file: None,
            zip_retention: Duration::from_secs(3 * 86_400),
            run_retention: Duration::from_secs(14 * 86_400),
            sweep_interval: Duration::from_secs(3600),
            max_concurrent_turns_per_user: 4,
            cors_origins: Vec::new(),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(30),
            ui_dir: None,
        }
    }
}

pub const MIB: u64 = 1024 * 1024;
