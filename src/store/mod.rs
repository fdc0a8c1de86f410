//! The SQLite store: a pool of readers, one writer that commits in batches, and
//! the migrations.
//!
//! SQLite allows one writer at a time. Instead of letting every request open its
//! own write transaction (and wait on the others), all writes go to one thread
//! that runs whatever has queued up inside a single transaction and answers
//! each job only after the commit. Under load this turns many small commits
//! into a few large ones. A job checks before it writes; one that fails after
//! writing takes its whole batch down with it (see `run_batch`).

pub mod artifacts;
pub mod conversations;
pub mod usage;
pub mod users;
pub mod workspace_files;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use r2d2::{CustomizeConnection, Pool};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use tokio::sync::oneshot;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// What can go wrong in the store, in terms the callers act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    Conflict,
    #[error("the disk is full")]
    DiskFull,
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Pool(#[from] r2d2::Error),
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// Maps SQLite's constraint and disk errors to the variants callers match on.
    fn classify(err: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        match err.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => Self::Conflict,
            Some(ErrorCode::DiskFull) => Self::DiskFull,
            _ => match err {
                rusqlite::Error::QueryReturnedNoRows => Self::NotFound,
                other => Self::Sqlite(other),
            },
        }
    }
}

/// Lets `?` classify rusqlite errors inside store functions.
pub type StoreResult<T> = Result<T, StoreError>;

pub(crate) fn db_err(err: rusqlite::Error) -> StoreError {
    StoreError::classify(err)
}

/// Per-connection settings: some pragmas only last as long as the connection.
#[derive(Debug)]
struct Pragmas;

impl CustomizeConnection<Connection, rusqlite::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut Connection) -> Result<(), rusqlite::Error> {
        apply_pragmas(conn)
    }
}

/// How long a connection waits for another's lock before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database file is read with pread, not mapped: in WAL mode a
/// connection that sees another's commit drops what it holds of the file, and
/// a mapping is then unmapped and mapped again, page faults and all, on every
/// read after a write (about twice the kernel time per turn). The WAL file is
/// not cut back while the server is busy: cutting a large file took ~50 ms,
/// and every commit waited for it. The checkpointer cuts it once writes pause
/// (`checkpoint_loop`).
fn apply_pragmas(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA mmap_size = 0;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// A queued write. Called with `None` when it cannot run (no transaction).
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;
/// Runs after the batch's commit, with the commit's outcome.
type Completion = (bool, Box<dyn FnOnce(StoreResult<()>) + Send>);

/// A read transaction on a pooled connection, ended when dropped (also when
/// the reader panics), so that the connection goes back to the pool clean.
struct Snapshot<'c>(&'c Connection);

impl<'c> Snapshot<'c> {
    fn begin(conn: &'c Connection) -> StoreResult<Self> {
        control(conn, "BEGIN DEFERRED").map_err(StoreError::classify)?;
        Ok(Self(conn))
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() && control(self.0, "COMMIT").is_err() {
            let _ = control(self.0, "ROLLBACK");
        }
    }
}

/// The database: readers from a pool, writes through the batching writer.
#[derive(Clone)]
pub struct Store {
    readers: Pool<SqliteConnectionManager>,
    /// Connections for `read_now`, taken and put back without waiting.
    quick: Arc<parking_lot::Mutex<Vec<Connection>>>,
    writer: mpsc::SyncSender<Job>,
    path: PathBuf,
    schema_version: i64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Creates the data directory if it is missing. It holds password hashes and
/// everyone's files: a new one is kept to Magdi's own user.
pub fn create_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    let is_new = !data_dir.exists();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    if is_new {
        keep_dir_private(data_dir)?;
    }
    Ok(())
}

/// Makes a data directory readable by Magdi's own user only.
pub fn keep_dir_private(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// Makes a file that holds password hashes (the database, a backup) readable
/// by Magdi's own user only.
pub fn keep_private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

/// The newest schema version this binary knows.
pub fn latest_schema_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) `magdi.db` in `data_dir` and migrates it.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        create_data_dir(data_dir)?;
        let path = data_dir.join("magdi.db");

        let mut conn = Connection::open(&path)
            .with_context(|| format!("opening database {}", path.display()))?;
        // SQLite gives its write-ahead log and index the database file's mode.
        // An administrator reading someone else's data directory may not be
        // allowed to change it: that is no reason to stop.
        if let Err(err) = keep_private(&path) {
            tracing::warn!(error = %err, "could not make the database private to its owner");
        }
        apply_pragmas(&conn).context("configuring the database")?;
        let schema_version = migrate(&mut conn)?;

        let manager = SqliteConnectionManager::file(&path);
        let readers = Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .connection_customizer(Box::new(Pragmas))
            .build(manager)
            .context("opening the database connection pool")?;

        // Checkpoints (copying the WAL back into the database, with an
        // fsync) run on their own connection and thread, so that commits never
        // wait for one. The writer checkpoints itself only if the WAL grows
        // far beyond what the checkpointer normally lets it.
        conn.pragma_update(None, "wal_autocheckpoint", FALLBACK_CHECKPOINT_PAGES)
            .context("configuring the database writer")?;
        let checkpointer = Connection::open(&path)
            .with_context(|| format!("opening database {}", path.display()))?;
        apply_pragmas(&checkpointer).context("configuring the database")?;
        let (committed, commits) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("magdi-db-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpointer, &commits))
            .context("starting the database checkpointer")?;

        let (sender, receiver) = mpsc::sync_channel::<Job>(4096);
        std::thread::Builder::new()
            .name("magdi-db-writer".into())
            .spawn(move || writer_loop(conn, receiver, committed))
            .context("starting the database writer")?;

        Ok(Self {
            readers,
            quick: Arc::default(),
            writer: sender,
            path,
            schema_version,
        })
    }

    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on a pooled connection, off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        crate::blocking::run(move || {
            let conn = pool.get()?;
            // One snapshot for all of `f`'s statements: consistent, and one
            // read transaction instead of one per statement.
            let snapshot = Snapshot::begin(&conn)?;
            let outcome = f(snapshot.0);
            drop(snapshot);
            outcome
        })
        .await
    }

    /// Runs a short read (lookups by key on an index) on the calling thread,
    /// in one read transaction. A request's own lookups are a few microseconds
    /// of work on pages already in memory, far less than the two thread
    /// switches a trip to the blocking pool costs; in WAL mode a reader never
    /// waits for the writer. Anything that scans, or reads files, goes through
    /// `read` instead.
    pub fn read_now<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let idle = self.quick.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = Connection::open(&self.path).map_err(StoreError::classify)?;
                apply_pragmas(&conn).map_err(StoreError::classify)?;
                conn
            }
        };
        let outcome = Snapshot::begin(&conn).and_then(|snapshot| f(snapshot.0));
        let mut idle = self.quick.lock();
        if idle.len() < QUICK_READERS {
            idle.push(conn);
        }
        outcome
    }

    /// Runs a write in the writer's next batch and waits for its commit.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        self.enqueue(f, sender)?;
        receiver
            .await
            .map_err(|_| StoreError::Other("the database writer stopped".into()))?
    }

    /// Runs a write and waits for its commit, from a thread that may block
    /// (the command line, tests, the sweeper's blocking part).
    pub fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        self.enqueue(f, sender)?;
        receiver
            .blocking_recv()
            .map_err(|_| StoreError::Other("the database writer stopped".into()))?
    }

    fn enqueue<T, F>(&self, f: F, reply: oneshot::Sender<StoreResult<T>>) -> StoreResult<()>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let job: Job = Box::new(move |conn| {
            let outcome = match conn {
                Some(conn) => std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
                    .unwrap_or_else(|_| Err(StoreError::Other("a database job panicked".into()))),
                None => Err(StoreError::Other("the database is unavailable".into())),
            };
            let succeeded = outcome.is_ok();
            let finish = Box::new(move |commit: StoreResult<()>| {
                let _ = reply.send(commit.and(outcome));
            });
            (succeeded, finish)
        });
        self.writer
            .send(job)
            .map_err(|_| StoreError::Other("the database writer stopped".into()))
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) -> StoreResult<()> {
        self.write(|_| Ok(())).await
    }

    /// Answers whether the database responds.
    pub async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err))
            .await
    }

    /// A consistent copy of the database into `target`, while others keep writing.
    pub fn backup_to(&self, target: &Path) -> anyhow::Result<()> {
        let conn = self.readers.get().context("taking a database connection")?;
        let mut dest = Connection::open(target)
            .with_context(|| format!("creating backup file {}", target.display()))?;
        keep_private(target)?;
        let backup =
            rusqlite::backup::Backup::new(&conn, &mut dest).context("starting the backup")?;
        backup
            .run_to_completion(256, Duration::from_millis(5), None)
            .context("copying the database")?;
        Ok(())
    }
}

/// Connections kept for `read_now`: one per thread of the async runtime
/// covers it, since no such read waits while it holds one.
const QUICK_READERS: usize = 16;

/// How many queued jobs one transaction takes at most.
const MAX_BATCH: usize = 512;

/// How long the checkpointer lets commits gather before it copies them.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Writes paused this long: the checkpointer folds the whole WAL back and
/// empties its file.
const QUIET_BEFORE_TRUNCATE: Duration = if cfg!(test) {
    Duration::from_millis(300)
} else {
    Duration::from_secs(10)
};
/// How long the emptying waits for readers (new writes wait meanwhile).
const TRUNCATE_PATIENCE: Duration = Duration::from_millis(200);
/// WAL pages (4 KiB) past which the writer checkpoints by itself.
const FALLBACK_CHECKPOINT_PAGES: i64 = 20_000;

fn writer_loop(conn: Connection, jobs: mpsc::Receiver<Job>, committed: mpsc::SyncSender<()>) {
    wait_for_requests_to_yield();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, batch);
        // Full means a checkpoint is already due: nothing to add.
        let _ = committed.try_send(());
    }
    drop(committed);
    // Every sender is gone: the server is stopping. Fold the WAL back into the
    // main file so that the database is one file again.
    if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %err, "checkpointing the database at shutdown");
    }
}

/// Marks the calling thread as batch work: woken by a new write, it does not
/// preempt the thread serving requests, which goes on until it waits, so the
/// writes of concurrent turns gather into one transaction instead of each
/// waking the writer (two thread switches) for a commit of its own.
fn wait_for_requests_to_yield() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` during the call only; pid 0
        // is the calling thread.
        #[allow(unsafe_code)]
        let status = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if status != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "the database writer keeps the usual scheduling"
            );
        }
    }
}

/// Runs one transaction-control statement, prepared once per connection:
/// the writer runs several per batch, and parsing them each time showed in
/// profiles.
fn control(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Copies committed WAL frames into the database file a little after each
/// burst of commits (PASSIVE: it never blocks the writer or readers). When
/// writes pause, it also empties the WAL file, which otherwise keeps the size
/// of the largest burst; that briefly holds new writes back, and gives up
/// rather than wait long for readers. Ends when the writer does.
fn checkpoint_loop(conn: &Connection, commits: &mpsc::Receiver<()>) {
    let mut wal_in_use = false;
    loop {
        match commits.recv_timeout(QUIET_BEFORE_TRUNCATE) {
            Ok(()) => {
                std::thread::sleep(CHECKPOINT_EVERY);
                while commits.try_recv().is_ok() {}
                if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %err, "checkpointing the database");
                }
                wal_in_use = true;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if wal_in_use => {
                wal_in_use = !empty_wal(conn);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Folds the whole WAL back into the database and empties its file; false
/// when readers kept it from finishing (it is tried again later).
fn empty_wal(conn: &Connection) -> bool {
    let outcome = conn.busy_timeout(TRUNCATE_PATIENCE).and_then(|()| {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            row.get::<_, i64>(0)
        })
    });
    if let Err(err) = conn.busy_timeout(BUSY_TIMEOUT) {
        tracing::warn!(error = %err, "configuring the database checkpointer");
    }
    match outcome {
        Ok(busy) => busy == 0,
        Err(err) => {
            tracing::debug!(error = %err, "emptying the database's WAL");
            false
        }
    }
}

fn run_batch(conn: &Connection, batch: Vec<Job>) {
    if let Err(err) = control(conn, "BEGIN IMMEDIATE") {
        let err = StoreError::classify(err);
        tracing::error!(error = %err, "starting a write transaction");
        for job in batch {
            let (_, finish) = job(None);
            finish(Ok(()));
        }
        return;
    }

    // A job alone in its transaction is rolled back whole if it fails.
    if batch.len() == 1 {
        let job = batch.into_iter().next().expect("one job");
        let (succeeded, finish) = job(Some(conn));
        let end = if succeeded {
            control(conn, "COMMIT").map_err(StoreError::classify)
        } else {
            if let Err(err) = control(conn, "ROLLBACK") {
                tracing::error!(error = %err, "rolling back a failed write");
            }
            Ok(())
        };
        if end.is_err() {
            let _ = control(conn, "ROLLBACK");
        }
        finish(as_told(&end));
        return;
    }

    // No savepoint per job: every job checks what it needs before it writes,
    // so a job that fails has, nearly always, changed nothing. (A savepoint
    // copies each page a job touches aside first, which cost several percent
    // of a busy server's time.) One that fails after changing rows cannot be
    // undone alone: then the whole batch is rolled back and every job in it
    // is told the error, so that nothing is ever half-written.
    let mut finishers = Vec::with_capacity(batch.len());
    let mut batch_failed = None;
    for job in batch {
        if conn.is_autocommit() {
            // SQLite itself rolled the transaction back (an I/O error, a full
            // disk): the jobs left would each commit on their own.
            let (_, finish) = job(None);
            finishers.push(finish);
            batch_failed.get_or_insert(StoreError::Other(
                "the batch's transaction was rolled back".into(),
            ));
            continue;
        }
        let changes_before = conn.total_changes();
        let (succeeded, finish) = job(Some(conn));
        if !succeeded && batch_failed.is_none() && conn.total_changes() != changes_before {
            tracing::error!("a database write failed halfway; its whole batch is rolled back");
            batch_failed = Some(StoreError::Other(
                "a write in the same batch failed halfway".into(),
            ));
        }
        finishers.push(finish);
    }

    let commit = match batch_failed {
        Some(err) => Err(err),
        None => control(conn, "COMMIT").map_err(StoreError::classify),
    };
    if commit.is_err() {
        let _ = control(conn, "ROLLBACK");
    }
    for finish in finishers {
        finish(as_told(&commit));
    }
}

/// A commit's outcome as each of its jobs is told it.
fn as_told(commit: &StoreResult<()>) -> StoreResult<()> {
    match commit {
        Ok(()) => Ok(()),
        Err(StoreError::DiskFull) => Err(StoreError::DiskFull),
        Err(err) => Err(StoreError::Other(format!("committing: {err}"))),
    }
}

/// Creates (or upgrades) the database at `path` only up to schema `version`,
/// as an older Magdi would have left it. Used by the upgrade tests.
pub fn migrate_up_to(path: &Path, version: i32) -> anyhow::Result<()> {
    let mut conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run(&mut conn)
        .context("migrating the database")?;
    Ok(())
}

/// Applies the embedded migrations; refuses a database from a newer Magdi.
fn migrate(conn: &mut Connection) -> anyhow::Result<i64> {
    let latest = latest_schema_version();
    let applied: Option<i64> = conn
        .query_row(
            "SELECT MAX(version) FROM refinery_schema_history",
            [],
            |row| row.get(0),
        )
        .unwrap_or(None);
    if let Some(applied) = applied
        && applied > latest
    {
        anyhow::bail!(
            "the database is at schema version {applied}, newer than this Magdi knows \
             ({latest}); run the newer Magdi binary, or restore a backup made by this one"
        );
    }
    embedded::migrations::runner()
        .run(conn)
        .context("migrating the database")?;
    Ok(latest)
}

/// Shared handle type for the state.
pub type SharedStore = Arc<Store>;

#[cfg(test)]
mod tests {
    use super::*;

    /// `.cargo/config.toml` sets how SQLite is built; a build without it
    /// would still work, only slower.
    #[test]
    fn sqlite_is_built_without_global_locks_on_pages_and_allocations() {
        let conn = Connection::open_in_memory().unwrap();
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(options.contains(&"THREADSAFE=1".to_owned()), "{options:?}");
        assert!(
            options.contains(&"DEFAULT_MEMSTATUS=0".to_owned()),
            "{options:?}"
        );
        assert!(
            options.contains(&"OMIT_SHARED_CACHE".to_owned()),
            "{options:?}"
        );
        assert!(
            !options.contains(&"ENABLE_MEMORY_MANAGEMENT".to_owned()),
            "{options:?}"
        );
    }

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("magdi.db-wal")).map_or(0, |m| m.len())
    }

    #[tokio::test]
    async fn the_wal_keeps_its_size_while_writes_go_on_and_is_emptied_when_they_pause() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for n in 0..50 {
            store
                .write(move |conn| {
                    conn.execute(
                        "INSERT INTO id_counters (name, value) VALUES (?1, ?2)",
                        rusqlite::params![format!("n{n}"), n],
                    )
                    .map(drop)
                    .map_err(db_err)
                })
                .await
                .unwrap();
        }
        let written = wal_bytes(dir.path());
        assert!(written > 0, "the commits went to the WAL");

        // Past the checkpoint, before the pause is long enough: still there.
        tokio::time::sleep(CHECKPOINT_EVERY + Duration::from_millis(50)).await;
        assert!(wal_bytes(dir.path()) >= written);

        let deadline = std::time::Instant::now() + QUIET_BEFORE_TRUNCATE * 20;
        while wal_bytes(dir.path()) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was not emptied"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rows: i64 = store
            .read(|conn| {
                conn.query_row(
                    "SELECT COUNT(*) FROM id_counters WHERE name LIKE 'n%'",
                    [],
                    |row| row.get(0),
                )
                .map_err(db_err)
            })
            .await
            .unwrap();
        assert_eq!(rows, 50, "everything written is in the database file");
    }

    fn add_counter(conn: &Connection, name: &str) -> StoreResult<()> {
        conn.execute(
            "INSERT INTO id_counters (name, value) VALUES (?1, 1)",
            [name],
        )
        .map(drop)
        .map_err(db_err)
    }

    type TestJob = Box<dyn FnOnce(&Connection) -> StoreResult<()> + Send>;

    /// Runs `jobs` in one batch: a first job holds the writer until all of
    /// them are queued behind it.
    async fn in_one_batch(store: &Arc<Store>, jobs: Vec<TestJob>) -> Vec<StoreResult<()>> {
        let (open_gate, gate) = mpsc::channel::<()>();
        let held = store.clone();
        let gatekeeper = tokio::spawn(async move {
            held.write(move |_| {
                let _ = gate.recv();
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let store = store.clone();
                tokio::spawn(async move { store.write(job).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        open_gate.send(()).unwrap();
        gatekeeper.await.unwrap().unwrap();
        let mut outcomes = Vec::new();
        for job in waiting {
            outcomes.push(job.await.unwrap());
        }
        outcomes
    }

    async fn counters(store: &Store) -> Vec<String> {
        store
            .read(|conn| {
                let mut stmt = conn
                    .prepare("SELECT name FROM id_counters WHERE name LIKE 'job-%' ORDER BY name")
                    .map_err(db_err)?;
                let names = stmt.query_map([], |row| row.get(0)).map_err(db_err)?;
                names.collect::<Result<Vec<String>, _>>().map_err(db_err)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_job_failing_before_it_writes_spares_its_batch_and_one_failing_halfway_undoes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());

        let outcomes = in_one_batch(
            &store,
            vec![
                Box::new(|conn| add_counter(conn, "job-a")),
                Box::new(|_| Err(StoreError::NotFound)),
                Box::new(|conn| add_counter(conn, "job-b")),
            ],
        )
        .await;
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(matches!(outcomes[1], Err(StoreError::NotFound)));
        assert_eq!(counters(&store).await, ["job-a", "job-b"]);

        let outcomes = in_one_batch(
            &store,
            vec![
                Box::new(|conn| add_counter(conn, "job-c")),
                Box::new(|conn| {
                    add_counter(conn, "job-d")?;
                    Err(StoreError::Other("failed after writing".into()))
                }),
                Box::new(|conn| add_counter(conn, "job-e")),
            ],
        )
        .await;
        assert!(outcomes.iter().all(Result::is_err), "{outcomes:?}");
        assert_eq!(
            counters(&store).await,
            ["job-a", "job-b"],
            "nothing of the failed batch is kept"
        );
        store
            .write(|conn| add_counter(conn, "job-f"))
            .await
            .expect("the next batch is written as usual");
        assert_eq!(counters(&store).await, ["job-a", "job-b", "job-f"]);
    }

    #[tokio::test]
    async fn registrations_racing_for_one_email_in_one_batch_spare_the_winner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let register = |email: &'static str| -> TestJob {
            Box::new(move |conn| users::insert(conn, email, "hash").map(drop))
        };
        let outcomes = in_one_batch(
            &store,
            vec![
                register("race@example.com"),
                register("RACE@example.com"),
                register("other@example.com"),
                register("race@example.com"),
            ],
        )
        .await;
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(
            matches!(outcomes[1], Err(StoreError::Conflict)),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[3], Err(StoreError::Conflict)),
            "{outcomes:?}"
        );
        let emails: Vec<String> = store
            .read(|conn| {
                let mut stmt = conn
                    .prepare("SELECT email FROM users ORDER BY id")
                    .map_err(db_err)?;
                let rows = stmt.query_map([], |row| row.get(0)).map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)
            })
            .await
            .unwrap();
        assert_eq!(emails, ["race@example.com", "other@example.com"]);
    }
}
