//! The command line: `serve`, `migrate`, `openapi`, `user`, `backup`, `restore`,
//! `healthcheck` and `version`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{MIB, ProviderKind, Secret, Settings};
use crate::store::{Store, users};

/// Magdi: a self-hosted backend for AI QA agents.
///
/// People sign up, pick an agent, upload their project, chat with the agent and
/// download what it produced as a ZIP. Everything lives in one data directory.
#[derive(Debug, Parser)]
#[command(name = "magdi", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server: the API, its documentation at /docs and the web UI at /.
    Serve(Box<ServeArgs>),
    /// Create or upgrade the database in a data directory, then exit.
    Migrate(DataDirArg),
    /// Print the OpenAPI document that the server publishes at /openapi.json.
    Openapi {
        /// Print YAML instead of JSON.
        #[arg(long)]
        yaml: bool,
    },
    /// Manage user accounts directly in the database.
    User(UserArgs),
    /// Take a consistent copy of the database, safe while the server runs.
    Backup(BackupArgs),
    /// Put a backup back into an empty data directory.
    Restore(RestoreArgs),
    /// Exit 0 when a running server answers on its address, 1 otherwise.
    Healthcheck {
        /// The address the server listens on.
        #[arg(long, env = "MAGDI_BIND", default_value = "127.0.0.1:5000")]
        bind: SocketAddr,
    },
    /// Print the version, the git commit and the build time.
    Version,
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    /// Where Magdi keeps its database, workspaces and artifacts.
    #[arg(long, env = "MAGDI_DATA_DIR", default_value = "./magdi-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "MAGDI_BIND", default_value = "127.0.0.1:5000")]
    pub bind: SocketAddr,

    /// Where Magdi keeps its database, workspaces and artifacts.
    #[arg(long, env = "MAGDI_DATA_DIR", default_value = "./magdi-data")]
    pub data_dir: PathBuf,

    /// Which model server to talk to. Defaults to `openai` when --llm-base-url is
    /// given, else to the offline `builtin` model.
    #[arg(long, env = "MAGDI_LLM_PROVIDER", value_enum)]
    pub llm_provider: Option<ProviderKind>,

    /// Base URL of the model server, for example http://127.0.0.1:11434/v1.
    #[arg(long, env = "MAGDI_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,

    /// API key sent to the model server. OPENAI_API_KEY is read when this is not set.
    #[arg(long, env = "MAGDI_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,

    /// Models offered to users, comma separated. Without it, the `openai` provider's
    /// models are read from its /models at start.
    #[arg(long, env = "MAGDI_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,

    /// Model used when neither the turn, the conversation nor the agent names one.
    #[arg(long, env = "MAGDI_DEFAULT_MODEL")]
    pub default_model: Option<String>,

    /// Seconds to wait for a connection to the model server.
    #[arg(long, env = "MAGDI_LLM_CONNECT_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub llm_connect_timeout_secs: u64,

    /// Seconds the model server may stay silent before a turn is given up.
    #[arg(long, env = "MAGDI_LLM_IDLE_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub llm_idle_timeout_secs: u64,

    /// Most tokens one reply may have; reserved against the allowance before a turn.
    /// The offline model's generated tests are not cut: they cover every module.
    #[arg(long, env = "MAGDI_MAX_OUTPUT_TOKENS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_output_tokens: u32,

    /// Tokens of workspace files inlined into the prompt; the rest are listed.
    #[arg(long, env = "MAGDI_CONTEXT_TOKENS", default_value_t = 32_000)]
    pub context_tokens: u32,

    /// Tokens each user may spend per UTC day, unless set per user; 0 means unlimited.
    #[arg(long, env = "MAGDI_DAILY_TOKEN_LIMIT", default_value_t = 100_000)]
    pub daily_token_limit: u64,

    /// Largest uploaded file, and largest file unpacked from a zip, in MiB.
    #[arg(long, env = "MAGDI_MAX_UPLOAD_MB", default_value_t = 50)]
    pub max_upload_mb: u64,

    /// Largest upload request in MiB (default: four times --max-upload-mb).
    #[arg(long, env = "MAGDI_MAX_REQUEST_MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_request_mb: Option<u64>,

    /// Largest workspace of one conversation, in MiB.
    #[arg(long, env = "MAGDI_MAX_WORKSPACE_MB", default_value_t = 500)]
    pub max_workspace_mb: u64,

    /// Secret that signs login tokens. Without it, one is made and kept in the
    /// data directory. Changing it signs everybody out.
    #[arg(long, env = "MAGDI_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Hours a login token stays valid.
    #[arg(long, env = "MAGDI_TOKEN_TTL_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub token_ttl_hours: u64,

    /// A TOML file that replaces the built-in agent catalog.
    #[arg(long, env = "MAGDI_AGENTS")]
    pub agents: Option<PathBuf>,

    /// Days an artifact nobody downloaded is kept.
    #[arg(long, env = "MAGDI_ZIP_RETENTION_DAYS", default_value_t = 3)]
    pub zip_retention_days: u64,

    /// Days an idle conversation's workspace is kept.
    #[arg(long, env = "MAGDI_RUN_RETENTION_DAYS", default_value_t = 14)]
    pub run_retention_days: u64,

    /// Turns one user may have waiting on the model server at once.
    #[arg(long, env = "MAGDI_MAX_CONCURRENT_TURNS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_turns: u16,

    /// Seconds a client may take to send a request's line and headers.
    #[arg(long, env = "MAGDI_REQUEST_HEAD_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_head_timeout_secs: u64,

    /// Seconds a request body may take (JSON), or may stall (uploads).
    #[arg(long, env = "MAGDI_REQUEST_BODY_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_body_timeout_secs: u64,

    /// Seconds a keep-alive connection may stay open with nothing sent
    /// either way between requests.
    #[arg(long, env = "MAGDI_IDLE_CONNECTION_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_connection_timeout_secs: u64,

    /// Origins allowed to call the API from a browser (CORS); none by default.
    #[arg(long, env = "MAGDI_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,

    /// Serve the web UI from this folder instead of the copy inside the binary.
    #[arg(long, env = "MAGDI_UI_DIR", hide = true)]
    pub ui_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// Validates the flags and turns them into settings.
    pub fn into_settings(mut self) -> anyhow::Result<Settings> {
        // An empty value (`MAGDI_LLM_BASE_URL=` in a service file) means none.
        self.llm_base_url = self.llm_base_url.filter(|url| !url.trim().is_empty());
        let provider = match (self.llm_provider, &self.llm_base_url) {
            (Some(kind), _) => kind,
            (None, Some(_)) => ProviderKind::Openai,
            (None, None) => ProviderKind::Builtin,
        };
        if provider == ProviderKind::Openai && self.llm_base_url.is_none() {
            bail!(
                "--llm-provider openai needs --llm-base-url, for example https://api.openai.com/v1"
            );
        }
        if let Some(url) = &self.llm_base_url {
            check_base_url(url)?;
        }
        if self.max_upload_mb == 0 || self.max_workspace_mb == 0 {
            bail!("--max-upload-mb and --max-workspace-mb must be at least 1");
        }
        let api_key = self
            .llm_api_key
            .or_else(|| std::env::var("OPENAI_API_KEY").ok())
            .filter(|key| !key.is_empty())
            .map(Secret::new);
        let models: Vec<String> = self
            .models
            .into_iter()
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect();

        let mut settings = Settings::for_data_dir(self.data_dir);
        settings.bind = self.bind;
        settings.provider = provider;
        settings.llm_base_url = self
            .llm_base_url
            .map(|url| url.trim().trim_end_matches('/').to_owned());
        settings.llm_api_key = api_key;
        settings.models = models;
        settings.default_model = self.default_model;
        settings.llm_connect_timeout = Duration::from_secs(self.llm_connect_timeout_secs);
        settings.llm_idle_timeout = Duration::from_secs(self.llm_idle_timeout_secs);
        settings.max_output_tokens = self.max_output_tokens;
        settings.context_tokens = self.context_tokens;
        settings.daily_token_limit = self.daily_token_limit;
        settings.max_upload_bytes = self.max_upload_mb * MIB;
        settings.max_request_bytes =
            self.max_request_mb.unwrap_or(self.max_upload_mb * 4).max(1) * MIB;
        settings.max_workspace_bytes = self.max_workspace_mb * MIB;
        settings.jwt_secret = self.jwt_secret.filter(|s| !s.is_empty()).map(Secret::new);
        settings.token_ttl = Duration::from_secs(self.token_ttl_hours * 3600);
        settings.agents_file = self.agents;
        settings.zip_retention = Duration::from_secs(self.zip_retention_days * 86_400);
        settings.run_retention = Duration::from_secs(self.run_retention_days * 86_400);
        settings.max_concurrent_turns_per_user = usize::from(self.max_concurrent_turns);
        settings.cors_origins = self.cors_origin;
        settings.head_timeout = Duration::from_secs(self.request_head_timeout_secs);
        settings.body_timeout = Duration::from_secs(self.request_body_timeout_secs);
        settings.idle_timeout = Duration::from_secs(self.idle_connection_timeout_secs);
        settings.ui_dir = self.ui_dir;
        Ok(settings)
    }
}

/// A model server's base URL must be an absolute http(s) URL: anything else
/// would only fail on the first turn, far from the flag that caused it.
fn check_base_url(url: &str) -> anyhow::Result<()> {
    let example = "for example http://127.0.0.1:11434/v1 or https://api.openai.com/v1";
    match reqwest::Url::parse(url.trim()) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        Ok(_) => bail!("--llm-base-url must start with http:// or https://, {example}"),
        Err(err) => bail!("--llm-base-url {url:?} is not a URL ({err}); give one {example}"),
    }
}

#[derive(Debug, Args)]
pub struct UserArgs {
    /// Where Magdi keeps its database, workspaces and artifacts.
    #[arg(
        long,
        env = "MAGDI_DATA_DIR",
        default_value = "./magdi-data",
        global = true
    )]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub action: UserAction,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create an account. The password is read from standard input.
    Create {
        #[arg(long, value_parser = trimmed)]
        email: String,
        /// Read the password from standard input (the only way, so that it stays
        /// out of the shell history).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List accounts with their allowance and today's usage.
    List,
    /// Set one user's daily token allowance (0 means unlimited).
    SetLimit {
        #[arg(long, value_parser = trimmed)]
        email: String,
        /// A whole number of tokens, 0 for no limit. (A negative number is
        /// read as a value, so that it is refused as one.)
        #[arg(long, allow_hyphen_values = true)]
        tokens: u64,
    },
    /// Set a user's password, read from standard input.
    SetPassword {
        #[arg(long, value_parser = trimmed)]
        email: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Stop a user from signing in; their tokens stop working at once.
    Disable {
        #[arg(long, value_parser = trimmed)]
        email: String,
    },
    /// Let a disabled user sign in again.
    Enable {
        #[arg(long, value_parser = trimmed)]
        email: String,
    },
    /// Delete a user with their conversations, workspaces and artifacts.
    Delete {
        #[arg(long, value_parser = trimmed)]
        email: String,
    },
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where Magdi keeps its database, workspaces and artifacts.
    #[arg(long, env = "MAGDI_DATA_DIR", default_value = "./magdi-data")]
    pub data_dir: PathBuf,
    /// The file to write. With --with-files it is a tar archive, else a SQLite file.
    #[arg(long)]
    pub to: PathBuf,
    /// Also put the workspaces and artifacts into the backup (as a tar archive).
    #[arg(long)]
    pub with_files: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// An empty (or missing) data directory to restore into.
    #[arg(long, env = "MAGDI_DATA_DIR", default_value = "./magdi-data")]
    pub data_dir: PathBuf,
    /// The backup file made by `magdi backup`.
    #[arg(long)]
    pub from: PathBuf,
}

/// Runs one command and turns its outcome into an exit code.
pub fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Migrate(args) => migrate(&args.data_dir),
        Command::Openapi { yaml } => {
            let spec = crate::http::openapi_document(yaml);
            println!("{spec}");
            Ok(())
        }
        Command::User(args) => user(args),
        Command::Backup(args) => crate::backup::backup(&args.data_dir, &args.to, args.with_files),
        Command::Restore(args) => crate::backup::restore(&args.from, &args.data_dir),
        Command::Healthcheck { bind } => healthcheck(bind),
        Command::Version => {
            let v = crate::build_info();
            println!(
                "magdi {} (commit {}, built {})",
                v.version, v.git_commit, v.build_time
            );
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("magdi: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    crate::telemetry::init();
    let outcome = serve_until_stopped(args);
    if let Err(err) = &outcome
        && crate::telemetry::json_wanted()
    {
        // Whoever reads a JSON log looks for the reason there; it is also
        // printed as plain text, like every command's error.
        tracing::error!(error = %format!("{err:#}"), "magdi stopped serving");
    }
    outcome
}

fn serve_until_stopped(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.into_settings()?;
    // On one core (a small VM, or a process pinned with `taskset`), threads
    // that steal work from each other only add hand-offs: one thread serves
    // every request, and answered 12% more turns per second in
    // benches/compare.sh than the multi-threaded scheduler with one worker.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(settings.bind)
            .await
            .with_context(|| format!("listening on {}", settings.bind))?;
        crate::run(settings, listener, crate::shutdown_signal()).await
    })
}

fn migrate(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let store = Store::open(data_dir)?;
    println!(
        "database in {} is at schema version {}",
        data_dir.display(),
        store.schema_version()
    );
    Ok(())
}

fn read_password_from_stdin() -> anyhow::Result<crate::config::Secret> {
    let mut input = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input.trim_end_matches(['\r', '\n']).to_owned();
    crate::accounts::check_password_rules(&password).map_err(|e| anyhow::anyhow!(e))?;
    Ok(Secret::new(password))
}

/// Runs `change` on the account `email` through the database writer; a
/// missing or already taken account is said in the words a shell user needs.
fn run_on_account<T: Send + 'static>(
    store: &Store,
    email: &str,
    change: impl FnOnce(&rusqlite::Connection, &str) -> crate::store::StoreResult<T> + Send + 'static,
) -> anyhow::Result<T> {
    let who = email.to_owned();
    store
        .blocking(move |conn| change(conn, &who))
        .map_err(|err| match err {
            crate::store::StoreError::NotFound => anyhow::anyhow!("there is no account {email}"),
            crate::store::StoreError::Conflict => anyhow::anyhow!("{email} is already registered"),
            err => err.into(),
        })
}

/// As `run_on_account`, and a server running on the same data directory is
/// told, so that it stops answering from the accounts it keeps in memory.
fn change_account<T: Send + 'static>(
    store: &Store,
    data_dir: &Path,
    email: &str,
    change: impl FnOnce(&rusqlite::Connection, &str) -> crate::store::StoreResult<T> + Send + 'static,
) -> anyhow::Result<T> {
    let changed = run_on_account(store, email, change)?;
    crate::account_cache::mark_changed(data_dir).with_context(|| {
        format!(
            "the change is saved, but a running magdi serve could not be told of it ({}); restart it to be sure it applies",
            data_dir.join(crate::account_cache::MARKER).display()
        )
    })?;
    Ok(changed)
}

/// An email as typed, without the spaces around it (as the database keeps it).
fn trimmed(email: &str) -> Result<String, std::convert::Infallible> {
    Ok(email.trim().to_owned())
}

fn user(args: UserArgs) -> anyhow::Result<()> {
    // Only `create` may start a new data directory: any other command on a
    // directory without a database was given the wrong --data-dir.
    let database = args.data_dir.join("magdi.db");
    let exists = database
        .try_exists()
        .with_context(|| format!("cannot look into {}", args.data_dir.display()))?;
    if !matches!(args.action, UserAction::Create { .. }) && !exists {
        anyhow::bail!(
            "there is no Magdi database in {}: pass the --data-dir (or MAGDI_DATA_DIR) that magdi serve uses",
            args.data_dir.display()
        );
    }
    let store = Store::open(&args.data_dir)?;
    match args.action {
        UserAction::Create { email, .. } => {
            let email = crate::accounts::normalise_email(&email).map_err(|e| anyhow::anyhow!(e))?;
            let password = read_password_from_stdin()?;
            let hash = crate::accounts::hash_password_blocking(&password)?;
            // A new account is nothing a running server holds already.
            let user = run_on_account(&store, &email, move |conn, email| {
                users::insert(conn, email, &hash)
            })?;
            println!("created user {} <{}>", user.id, user.email);
        }
        UserAction::List => {
            let today = crate::quota::utc_day(chrono::Utc::now());
            let rows = store.blocking(move |conn| users::list_with_usage(conn, &today))?;
            println!(
                "{:>6}  {:<40}  {:>12}  {:>12}  status",
                "id", "email", "limit", "used today"
            );
            for row in rows {
                let limit = match row.daily_token_limit {
                    None => "default".to_owned(),
                    Some(0) => "unlimited".to_owned(),
                    Some(limit) => limit.to_string(),
                };
                let status = if row.disabled { "disabled" } else { "active" };
                println!(
                    "{:>6}  {:<40}  {:>12}  {:>12}  {}",
                    row.id, row.email, limit, row.tokens_today, status
                );
            }
        }
        UserAction::SetLimit { email, tokens } => {
            change_account(&store, &args.data_dir, &email, move |conn, email| {
                users::set_limit(conn, email, tokens)
            })?;
            if tokens == 0 {
                println!("daily allowance of {email} is now unlimited");
            } else {
                println!("daily allowance of {email} is now {tokens} tokens");
            }
        }
        UserAction::SetPassword { email, .. } => {
            let password = read_password_from_stdin()?;
            let hash = crate::accounts::hash_password_blocking(&password)?;
            change_account(&store, &args.data_dir, &email, move |conn, email| {
                users::set_password(conn, email, &hash)
            })?;
            println!("password of {email} changed");
        }
        UserAction::Disable { email } => {
            change_account(&store, &args.data_dir, &email, users::disable)?;
            println!("{email} can no longer sign in");
        }
        UserAction::Enable { email } => {
            change_account(&store, &args.data_dir, &email, users::enable)?;
            println!("{email} can sign in again");
        }
        UserAction::Delete { email } => {
            let deleted = change_account(&store, &args.data_dir, &email, users::delete)?;
            for id in &deleted.conversation_ids {
                let dir = crate::workspace::workspace_dir(&args.data_dir, id);
                // A running server may still be writing an upload into it
                // (the upload then fails): try again a few times.
                let mut attempt = 0;
                while dir.exists() {
                    match std::fs::remove_dir_all(&dir) {
                        Ok(()) => break,
                        Err(_) if attempt < 10 => {
                            attempt += 1;
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        Err(err) => {
                            eprintln!(
                                "magdi: warning: could not remove all of {} ({err}); the server removes what is left at its next sweep",
                                dir.display()
                            );
                            break;
                        }
                    }
                }
            }
            for zip_id in &deleted.zip_ids {
                let zip = crate::artifacts::artifact_path(&args.data_dir, zip_id);
                match std::fs::remove_file(&zip) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                        return Err(err).with_context(|| format!("removing {}", zip.display()));
                    }
                    _ => {}
                }
            }
            println!(
                "deleted {email}, {} conversations and {} artifacts",
                deleted.conversation_ids.len(),
                deleted.zip_ids.len()
            );
        }
    }
    Ok(())
}

fn healthcheck(bind: SocketAddr) -> anyhow::Result<()> {
    use std::io::Write;
    let mut addr = bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    // The status line is all that is needed; do not wait for the connection to close.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 4096 {
        let n = stream.read(&mut buffer).context("reading the answer")?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or("no answer").to_owned();
    if status.starts_with("HTTP/1.1 200") {
        println!("magdi at {addr} is healthy");
        Ok(())
    } else {
        bail!("magdi at {addr} answered: {status}")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    fn serve(flags: &[&str]) -> Result<crate::config::Settings, String> {
        let cli = Cli::try_parse_from(["magdi", "serve"].iter().chain(flags))
            .map_err(|err| err.to_string())?;
        let Command::Serve(args) = cli.command else {
            unreachable!("parsed as serve")
        };
        args.into_settings().map_err(|err| format!("{err:#}"))
    }

    #[test]
    fn a_zero_that_would_mean_nothing_is_refused_not_quietly_raised() {
        for flag in [
            "--token-ttl-hours",
            "--max-concurrent-turns",
            "--max-output-tokens",
            "--llm-connect-timeout-secs",
            "--llm-idle-timeout-secs",
            "--request-head-timeout-secs",
            "--request-body-timeout-secs",
            "--idle-connection-timeout-secs",
            "--max-request-mb",
        ] {
            let refused = serve(&[flag, "0"]).unwrap_err();
            assert!(
                refused.contains(flag) && refused.contains("0"),
                "{flag}: {refused}"
            );
        }
        let settings = serve(&["--token-ttl-hours", "2", "--max-concurrent-turns", "1"]).unwrap();
        assert_eq!(settings.token_ttl.as_secs(), 7200);
        assert_eq!(settings.max_concurrent_turns_per_user, 1);
        assert_eq!(settings.idle_timeout.as_secs(), 120);
        let settings = serve(&["--idle-connection-timeout-secs", "75"]).unwrap();
        assert_eq!(settings.idle_timeout.as_secs(), 75);
    }

    #[test]
    fn the_model_server_url_must_be_an_http_url() {
        for bad in [
            "notaurl",
            "127.0.0.1:11434/v1",
            "ftp://example.com/v1",
            "http://",
        ] {
            let refused = serve(&["--llm-base-url", bad]).unwrap_err();
            assert!(refused.contains("--llm-base-url"), "{bad}: {refused}");
        }
        let settings = serve(&["--llm-base-url", " http://127.0.0.1:11434/v1/ "]).unwrap();
        assert_eq!(
            settings.llm_base_url.as_deref(),
            Some("http://127.0.0.1:11434/v1")
        );
        let unset = serve(&["--llm-base-url", " "]).unwrap();
        assert_eq!(unset.llm_base_url, None);
        assert_eq!(unset.provider, crate::config::ProviderKind::Builtin);
    }
}
