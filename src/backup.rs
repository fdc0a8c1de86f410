//! `magdi backup` and `magdi restore`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

use crate::store::Store;

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Copies the database consistently (SQLite's online backup, safe while the
/// server writes); with `with_files`, wraps it and the workspaces and
/// artifacts in a tar archive.
pub fn backup(data_dir: &Path, to: &Path, with_files: bool) -> anyhow::Result<()> {
    if !data_dir.join("magdi.db").exists() {
        bail!("there is no Magdi database in {}", data_dir.display());
    }
    let store = Store::open(data_dir)?;
    if !with_files {
        let tmp = to.with_extension("partial");
        let _ = std::fs::remove_file(&tmp);
        store.backup_to(&tmp)?;
        std::fs::rename(&tmp, to).with_context(|| format!("writing {}", to.display()))?;
        println!("database copied to {}", to.display());
        return Ok(());
    }

    let staging = tempfile_dir(to)?;
    let db_copy = staging.join("magdi.db");
    store.backup_to(&db_copy)?;
    let tmp = to.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    crate::store::keep_private(&tmp)?;
    let mut archive = tar::Builder::new(std::io::BufWriter::new(file));
    archive.follow_symlinks(false);
    archive
        .append_path_with_name(&db_copy, "magdi.db")
        .context("adding the database")?;
    for folder in ["workspaces", "artifacts"] {
        let path = data_dir.join(folder);
        if path.is_dir() {
            archive
                .append_dir_all(folder, &path)
                .with_context(|| format!("adding {folder}"))?;
        }
    }
    let writer = archive.into_inner().context("finishing the archive")?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    std::fs::rename(&tmp, to).with_context(|| format!("writing {}", to.display()))?;
    let _ = std::fs::remove_dir_all(&staging);
    println!(
        "database, workspaces and artifacts archived to {}",
        to.display()
    );
    Ok(())
}

fn tempfile_dir(near: &Path) -> anyhow::Result<std::path::PathBuf> {
    let parent = near
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = parent.join(format!(".magdi-backup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Restores a backup into an empty data directory.
pub fn restore(from: &Path, data_dir: &Path) -> anyhow::Result<()> {
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() {
        bail!(
            "{} is not empty; restore only into an empty or new data directory",
            data_dir.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    // It is about to hold everyone's password hashes and files: private to
    // Magdi's own user, as `serve` makes a new one.
    crate::store::keep_dir_private(data_dir)?;
    let mut magic = [0u8; 16];
    let mut file =
        std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let read = file.read(&mut magic)?;
    if read == 16 && magic == SQLITE_MAGIC {
        std::fs::copy(from, data_dir.join("magdi.db")).context("copying the database")?;
    } else {
        let file = std::fs::File::open(from)?;
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().context("reading the archive")? {
            let mut entry = entry?;
            // unpack_in refuses entries that would land outside data_dir.
            if !entry.unpack_in(data_dir)? {
                bail!("the archive has an entry outside the data directory");
            }
        }
        if !data_dir.join("magdi.db").exists() {
            bail!("{} holds no Magdi database", from.display());
        }
    }
    let store = Store::open(data_dir)?;
    println!(
        "restored into {} (schema version {})",
        data_dir.display(),
        store.schema_version()
    );
    Ok(())
}
