//! The accounts that signed-in requests name, kept in memory so that checking
//! a token does not read the database every time: that read was the only one
//! of a chat turn, and after every commit it fetched its pages again.
//!
//! The server forgets an account it changes itself. The command line changes
//! accounts from another process, and says so by replacing the file
//! [`MARKER`] in the data directory; every lookup looks at that file first
//! (one `stat`), and a new file empties the cache. A change is therefore seen
//! by the first request that starts after the command returns.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::store::users::User;

/// The file the command line replaces after changing an account.
pub const MARKER: &str = "accounts.changed";

/// More accounts than this in memory and the cache starts over.
const MAX_ACCOUNTS: usize = 10_000;

/// The cache starts over this often whatever the marker says, which bounds
/// how long a change the server was not told of (the command line could not
/// write the marker) goes unseen.
const MAX_AGE: Duration = Duration::from_secs(60);

/// Which marker file a lookup saw: each replacement is a new file, so its
/// inode and times differ from the one before.
type Stamp = Option<[i64; 6]>;

fn stamp(marker: &Path) -> Stamp {
    std::fs::metadata(marker).ok().map(|m| {
        [
            m.dev() as i64,
            m.ino() as i64,
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ]
    })
}

/// Says to a running server that accounts changed (the command line).
pub fn mark_changed(data_dir: &Path) -> std::io::Result<()> {
    let fresh = data_dir.join(format!("{MARKER}.{}", std::process::id()));
    let placed =
        std::fs::write(&fresh, b"").and_then(|()| std::fs::rename(&fresh, data_dir.join(MARKER)));
    if placed.is_err() {
        let _ = std::fs::remove_file(&fresh);
    }
    placed
}

struct Inner {
    seen: Stamp,
    since: Instant,
    /// Raised by every change the server makes, so that a read that started
    /// before a change does not put the old account back.
    epoch: u64,
    accounts: HashMap<i64, User>,
}

pub struct AccountCache {
    marker: PathBuf,
    inner: Mutex<Inner>,
}

/// What a lookup that missed saw; hand it back with the account it read.
#[derive(Debug)]
pub struct Miss {
    seen: Stamp,
    epoch: u64,
}

/// Names the marker only: the accounts hold password hashes.
impl std::fmt::Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCache")
            .field("marker", &self.marker)
            .finish_non_exhaustive()
    }
}

impl AccountCache {
    pub fn new(data_dir: &Path) -> Self {
        let marker = data_dir.join(MARKER);
        let inner = Inner {
            seen: stamp(&marker),
            since: Instant::now(),
            epoch: 0,
            accounts: HashMap::new(),
        };
        Self {
            marker,
            inner: Mutex::new(inner),
        }
    }

    /// The account `id` as last read, or what to hand to [`Self::keep`] after
    /// reading it.
    pub fn get(&self, id: i64) -> Result<User, Miss> {
        let now = stamp(&self.marker);
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
        let cache = AccountCache::new(dir.path());
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
        let cache = AccountCache::new(dir.path());

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
