//! The accounts that signed-in requests name, kept in memory so that checking
//! a token does not read the database every time: that read was the only one
//! of a chat turn, and after every commit it fetched its pages again.
//!
//! The server forgets an account it changes itself. The command line changes
//! accounts from another process, and says so by writing a new value into the
//! file [`MARKER`] in the data directory. The server keeps that file open and
//! reads its 8 bytes before every lookup (one `pread`, no path to resolve); a
//! new value empties the cache. A change is therefore seen by the first
//! request that starts after the command returns.
//!
//! Every few seconds a lookup also checks that the open file is still the one
//! at the path. A marker deleted or replaced by hand is thus opened again
//! within [`PATH_CHECK_EVERY`]; one cut short is mended on the spot, and until
//! then no account is answered from memory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::store::users::User;

/// The file the command line writes a new value into after changing an account.
pub const MARKER: &str = "accounts.changed";

/// More accounts than this in memory and the cache starts over.
const MAX_ACCOUNTS: usize = 10_000;

/// The cache starts over this often whatever the marker says, which bounds
/// how long a change the server was not told of (the command line could not
/// write the marker) goes unseen.
const MAX_AGE: Duration = Duration::from_secs(60);

/// How often a lookup checks that the open marker is still the file at its
/// path (one `stat`).
const PATH_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Opens the marker, making it (8 zero bytes) when it is missing or shorter,
/// as an older Magdi left it.
fn open_marker(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    if file.metadata()?.len() < 8 {
        file.set_len(8)?;
    }
    Ok(file)
}

/// Says to a running server that accounts changed (the command line).
pub fn mark_changed(data_dir: &Path) -> std::io::Result<()> {
    let path = data_dir.join(MARKER);
    let existed = path.exists();
    let file = open_marker(&path)?;
    // Any value the server has not seen will do, and a random one needs no
    // coordination between commands run at once.
    file.write_all_at(&rand::random::<u64>().to_le_bytes(), 0)?;
    if !existed && crate::data_dir_in_use(data_dir) {
        // The running server still reads the marker that was removed; by the
        // time this returns, its next lookup is due to look at the path.
        std::thread::sleep(PATH_CHECK_EVERY + Duration::from_millis(250));
    }
    Ok(())
}

/// The marker as the server has it open, and which file that is (device and
/// inode), to tell when the path names another.
struct OpenMarker {
    file: File,
    identity: (u64, u64),
}

impl OpenMarker {
    fn open(path: &Path) -> std::io::Result<Self> {
        let file = open_marker(path)?;
        let metadata = file.metadata()?;
        Ok(Self {
            identity: (metadata.dev(), metadata.ino()),
            file,
        })
    }
}

/// The marker's path and the file the server reads.
struct Marker {
    path: PathBuf,
    open: RwLock<OpenMarker>,
}

impl Marker {
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let open = RwLock::new(OpenMarker::open(&path)?);
        Ok(Self { path, open })
    }

    /// The marker's value; `None` when it cannot be read whole (it is then
    /// mended for the next lookup).
    fn read(&self) -> Option<u64> {
        let mut bytes = [0u8; 8];
        let open = self.open.read();
        match open.file.read_exact_at(&mut bytes, 0) {
            Ok(()) => Some(u64::from_le_bytes(bytes)),
            Err(err) => {
                tracing::warn!(error = %err, path = %self.path.display(), "the accounts marker was cut short; mending it");
                let _ = open.file.set_len(8);
                None
            }
        }
    }

    /// Opens the marker again if the path no longer names the open file;
    /// answers whether it did.
    fn reopen_if_replaced(&self) -> bool {
        let at_path = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if at_path == Some(self.open.read().identity) {
            return false;
        }
        match OpenMarker::open(&self.path) {
            Ok(open) => {
                tracing::warn!(path = %self.path.display(), "the accounts marker was replaced or removed; opened it again");
                *self.open.write() = open;
            }
            Err(err) => {
                tracing::warn!(error = %err, path = %self.path.display(), "the accounts marker cannot be opened again");
            }
        }
        true
    }
}

struct Inner {
    /// The marker's value when the cache was last emptied.
    seen: Option<u64>,
    since: Instant,
    path_checked: Instant,
    /// Raised by every change the server makes, so that a read that started
    /// before a change does not put the old account back.
    epoch: u64,
    accounts: HashMap<i64, User>,
}

pub struct AccountCache {
    marker: Marker,
    path_check_every: Duration,
    inner: Mutex<Inner>,
}

/// What a lookup that missed saw; hand it back with the account it read.
#[derive(Debug)]
pub struct Miss {
    seen: Option<u64>,
    epoch: u64,
}

/// Names the marker only: the accounts hold password hashes.
impl std::fmt::Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCache")
            .field("marker", &self.marker.path)
            .finish_non_exhaustive()
    }
}

impl AccountCache {
    pub fn new(data_dir: &Path) -> std::io::Result<Self> {
        Self::checking_path_every(data_dir, PATH_CHECK_EVERY)
    }

    fn checking_path_every(data_dir: &Path, path_check_every: Duration) -> std::io::Result<Self> {
        let marker = Marker::open(data_dir.join(MARKER))?;
        let inner = Inner {
            seen: marker.read(),
            since: Instant::now(),
            path_checked: Instant::now(),
            epoch: 0,
            accounts: HashMap::new(),
        };
        Ok(Self {
            marker,
            path_check_every,
            inner: Mutex::new(inner),
        })
    }

    /// The account `id` as last read, or what to hand to [`Self::keep`] after
    /// reading it.
    pub fn get(&self, id: i64) -> Result<User, Miss> {
        let check_path = {
            let mut inner = self.inner.lock();
            let due = inner.path_checked.elapsed() > self.path_check_every;
            if due {
                inner.path_checked = Instant::now();
            }
            due
        };
        let replaced = check_path && self.marker.reopen_if_replaced();
        let now = self.marker.read();
        let mut inner = self.inner.lock();
        if replaced || now.is_none() || inner.seen != now || inner.since.elapsed() > MAX_AGE {
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
        if miss.seen.is_none() || inner.seen != miss.seen || inner.epoch != miss.epoch {
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

    /// Looks `id` up, and keeps it as read from the database after the miss.
    fn remember(cache: &AccountCache, id: i64, disabled: bool) {
        cache.keep(cache.get(id).unwrap_err(), &user(id, disabled));
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
        remember(&cache, 7, false);
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

    #[test]
    fn a_marker_cut_short_is_mended_and_nothing_is_answered_from_memory_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AccountCache::new(dir.path()).unwrap();
        remember(&cache, 7, false);
        assert!(cache.get(7).is_ok());

        std::fs::File::create(dir.path().join(MARKER)).unwrap();
        let miss = cache
            .get(7)
            .expect_err("a marker cut short empties the cache");
        assert_eq!(
            std::fs::metadata(dir.path().join(MARKER)).unwrap().len(),
            8,
            "and is mended"
        );
        cache.keep(miss, &user(7, true));
        let miss = cache
            .get(7)
            .expect_err("what was read while the marker was short is not kept");
        cache.keep(miss, &user(7, true));
        assert!(cache.get(7).unwrap().disabled);
        mark_changed(dir.path()).unwrap();
        assert!(cache.get(7).is_err(), "changes are seen again");
    }

    #[test]
    fn a_marker_removed_or_replaced_is_opened_again_at_the_next_path_check() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join(MARKER);
        let cache = AccountCache::checking_path_every(dir.path(), Duration::ZERO).unwrap();
        remember(&cache, 7, false);

        std::fs::remove_file(&marker).unwrap();
        mark_changed(dir.path()).unwrap();
        let miss = cache.get(7).expect_err("a change after removal is seen");
        cache.keep(miss, &user(7, true));
        assert!(cache.get(7).unwrap().disabled);
        mark_changed(dir.path()).unwrap();
        assert!(
            cache.get(7).is_err(),
            "the marker opened again carries changes"
        );
        remember(&cache, 7, false);

        let fresh = dir.path().join("fresh");
        std::fs::write(&fresh, [0u8; 8]).unwrap();
        std::fs::rename(&fresh, &marker).unwrap();
        assert!(
            cache.get(7).is_err(),
            "a replaced marker counts as a change"
        );
    }

    #[test]
    fn a_change_marked_after_the_marker_was_removed_is_seen_once_the_command_returns() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AccountCache::new(dir.path()).unwrap();
        let lock = std::fs::File::create(dir.path().join(crate::LOCK_FILE)).unwrap();
        lock.lock().unwrap();
        remember(&cache, 7, false);
        assert!(cache.get(7).is_ok());

        std::fs::remove_file(dir.path().join(MARKER)).unwrap();
        mark_changed(dir.path()).unwrap();
        assert!(cache.get(7).is_err());
    }
}
