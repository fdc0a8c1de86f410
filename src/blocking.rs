//! The one way to run blocking work (SQLite, Argon2, zip, disk walks) from
//! async code: on tokio's blocking pool, inside the caller's tracing span.

use tracing::Instrument;

/// Runs `f` on the blocking pool and returns its result. A panic inside `f`
/// is raised again in the caller, so it is not silently turned into an error.
pub async fn run<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let span = tracing::Span::current();
    let handle = tokio::task::spawn_blocking(move || span.in_scope(f));
    match handle.in_current_span().await {
        Ok(value) => value,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("blocking task was cancelled: {err}"),
    }
}
