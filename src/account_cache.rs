//! The accounts that signed-in requests name, kept in memory so that checking
//! a token does not read the database every time: that read was the only one
//! of a chat turn, and after every commit it fetched its pages again.
//!
//! The server forgets an account it changes itself. The command line changes
//! accounts from another process, and says so by raising a counter kept in
//! the file [`MARKER`] in the data directory. Both map the file into memory,
//! so every lookup reads the counter without a system call, and a new value
//! empties the cache. A change is therefore seen by the first request that
//! starts after the command returns.
//!
//! Like SQLite's own shared-memory file beside the database, the marker must
//! not be cut short by hand while the server runs.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;

use crate::store::users::User;

/// The file whose counter the command line raises after changing an account.
pub const MARKER: &str = "accounts.changed";

/// More accounts than this in memory and the cache starts over.
const MAX_ACCOUNTS: usize = 10_000;

/// The cache starts over this often whatever the marker says, which bounds
/// how long a change the server was not told of (the command line could not
/// raise the counter) goes unseen.
const MAX_AGE: Duration = Duration::from_secs(60);

/// The marker's counter, mapped into memory.
struct Marker {
    map: MmapRaw,
}

impl Marker {
    /// Opens the marker, making it (8 zero bytes) when it is missing or was
    /// left empty by an older magdi.
    fn open(data_dir: &Path) -> std::io::Result<Self> {
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(data_dir.join(MARKER))?;
        if file.metadata()?.len() < 8 {
            file.set_len(8)?;
        }
        let map = MmapOptions::new().len(8).map_raw(&file)?;
        Ok(Self { map })
    }

    fn counter(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned, covers 8 bytes of the file
        // (which exist) and lives as long as `self`; every process reads and
        // writes them only through this atomic.
        #[allow(unsafe_code)]
        unsafe {
            AtomicU64::from_ptr(self.map.as_mut_ptr().cast::<u64>())
        }
    }

    fn read(&self) -> u64 {
        self.counter().load(Ordering::Acquire)
    }
}

/// Says to a running server that accounts changed (the command line).
pub fn mark_changed(data_dir: &Path) -> std::io::Result<()> {
    Marker::open(data_dir)?
        .counter()
        .fetch_add(1, Ordering::AcqRel);
    Ok(())
}

struct Inner {
    seen: u64,
    since: Instant,
    /// Raised by every change the server makes, so that a read that started
    /// before a change does not put the old account back.
    epoch: u64,
    accounts: HashMap<i64, User>,
}

pub struct AccountCache {
    marker: Marker,
    inner: Mutex<Inner>,
}

/// What a lookup that missed saw; hand it back with the account it read.
#[derive(Debug)]
pub struct Miss {
    seen: u64,
    epoch: u64,
}

/// Names the count of changes only: the accounts hold password hashes.
impl std::fmt::Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCache")
            .field("changes", &self.marker.read())
            .finish_non_exhaustive()
    }
}

impl AccountCache {
    pub fn new(data_dir: &Path) -> std::io::Result<Self> {
        let marker = Marker::open(data_dir)?;
        let inner = Inner {
            seen: marker.read(),
            since: Instant::now(),
            epoch: 0,
            accounts: HashMap::new(),
        };
        Ok(Self {
            marker,
            inner: Mutex::new(inner),
        })
    }

    /// The account `id` as last read, or what to hand to [`Self::keep`] after
    /// reading it.
    pub fn get(&self, id: i64) -> Result<User, Miss> {
        let now = self.marker.read();
        let mut inner = self.inner.lock();
        if inner.seen != now || inner.since.elapsed() > MAX_AGE {
            inner.seen = now;
            inner.since = Instant::now();
            inner.epoch += 1;
            inner.accounts.clear();
        }
        match inner.accounts.get(&id) {
            Some(user) => Ok(user.clone()),
            None => Err(Miss {
                seen: now,
                epoch: inner.epoch,
            }),
        }
    }

    /// Keeps an account read after `miss`, unless it changed since.
    pub fn keep(&self, miss: Miss, user: &User) {
        let mut inner = self.inner.lock();
        if inner.seen != miss.seen || inner.epoch != miss.epoch {
            return;
        }
        if inner.accounts.len() >= MAX_ACCOUNTS {
            inner.accounts.clear();
        }
        inner.accounts.insert(user.id, user.clone());
    }

    /// Forgets an account the server just changed.
    pub fn forget(&self, id: i64) {
        let mut inner = self.inner.lock();
        inner.epoch += 1;
        inner.accounts.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, disabled: bool) -> User {
        User {
            id,
            email: format!("user{id}@example.com"),
            password_hash: String::new(),
            created_at: String::new(),
            daily_token_limit: None,
            disabled,
            selected_category: None,
            password_changed_at: None,
            token_generation: 0,
        }
    }

    #[test]
    fn a_kept_account_is_answered_until_the_command_line_marks_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AccountCache::new(dir.path()).unwrap();
        let miss = cache.get(7).unwrap_err();
        cache.keep(miss, &user(7, false));
        assert!(!cache.get(7).unwrap().disabled);

        mark_changed(dir.path()).unwrap();
        let miss = cache.get(7).expect_err("a marked change empties the cache");
        cache.keep(miss, &user(7, true));
        assert!(cache.get(7).unwrap().disabled);

        // Two changes in a row are both seen, however close together.
        mark_changed(dir.path()).unwrap();
        assert!(cache.get(7).is_err());
        cache.keep(cache.get(7).unwrap_err(), &user(7, false));
        mark_changed(dir.path()).unwrap();
        assert!(cache.get(7).is_err());
    }

    #[test]
    fn a_marker_that_cannot_be_placed_is_an_error_and_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(MARKER)).unwrap();
        assert!(mark_changed(dir.path()).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [MARKER]);
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AccountCache::new(dir.path()).unwrap();

        let before_server_change = cache.get(1).unwrap_err();
        cache.forget(1);
        cache.keep(before_server_change, &user(1, false));
        assert!(cache.get(1).is_err(), "read before the server's change");

        let before_marked_change = cache.get(1).unwrap_err();
        mark_changed(dir.path()).unwrap();
        let _ = cache.get(2);
        cache.keep(before_marked_change, &user(1, false));
        assert!(
            cache.get(1).is_err(),
            "read before the command line's change"
        );
    }
}
