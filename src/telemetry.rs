//! Logging: human-readable lines by default, JSON with `MAGDI_LOG_FORMAT=json`;
//! the level from `MAGDI_LOG` (for example `info`, `magdi=debug`). Lines are
//! coloured only on a terminal, and never when `NO_COLOR` is set, so that a
//! log file or journal holds plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("MAGDI_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = json_wanted();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colours_wanted())
        .with_writer(std::io::stderr);
    let outcome = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second call (tests start many servers in one process) keeps the first.
    drop(outcome);
}

fn colours_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether the log is JSON lines (`MAGDI_LOG_FORMAT=json`).
pub fn json_wanted() -> bool {
    std::env::var("MAGDI_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
}
