//! Artifacts: ZIPs of a workspace, written completely before any row names
//! them, and the sweeper that removes what is past retention or orphaned.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use zip::write::SimpleFileOptions;

use crate::store::workspace_files::WorkspaceFile;
use crate::store::{self, Store};
use crate::workspace::{is_skipped, sync_dir, workspace_dir};

pub fn artifacts_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("artifacts")
}

pub fn artifact_path(data_dir: &Path, zip_id: &str) -> PathBuf {
    artifacts_dir(data_dir).join(format!("{zip_id}.zip"))
}

/// A fresh artifact id: 160 random bits, hex.
pub fn new_zip_id() -> String {
    let mut bytes = [0u8; 20];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// Whether a zip id could be one of ours, so that junk never reaches a path.
pub fn is_valid_zip_id(zip_id: &str) -> bool {
    zip_id.len() == 40
        && zip_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Files that are already compressed gain nothing from deflate.
fn is_compressed(path: &str) -> bool {
    let ext = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    matches!(
        ext.as_str(),
        "zip"
            | "gz"
            | "tgz"
            | "bz2"
            | "xz"
            | "zst"
            | "7z"
            | "jar"
            | "whl"
            | "png"
            | "jpg"
            | "jpeg"
            | "gif"
            | "webp"
            | "mp4"
            | "mp3"
            | "pdf"
            | "woff"
            | "woff2"
    )
}

/// Packs the workspace into `artifacts/<zip_id>.zip`: written under a
/// temporary name, synced, then renamed. Entries are in path order with fixed
/// timestamps, so the same workspace gives the same bytes. Returns the size.
pub fn build_zip(
    data_dir: &Path,
    conversation_id: &str,
    files: &[WorkspaceFile],
    zip_id: &str,
) -> anyhow::Result<u64> {
    let dir = artifacts_dir(data_dir);
    std::fs::create_dir_all(&dir).context("creating the artifacts folder")?;
    let workspace = workspace_dir(data_dir, conversation_id);
    let tmp = dir.join(format!("{zip_id}.zip.tmp"));
    let target = artifact_path(data_dir, zip_id);

    let outcome = (|| -> anyhow::Result<u64> {
        let file = std::fs::File::create(&tmp).context("creating the artifact file")?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::with_capacity(256 * 1024, file));
        let mut paths: Vec<&WorkspaceFile> =
            files.iter().filter(|f| !is_skipped(&f.path)).collect();
        paths.sort_by(|a, b| a.path.cmp(&b.path));
        let mut buffer = vec![0u8; 256 * 1024];
        for entry in paths {
            let method = if is_compressed(&entry.path) {
                zip::CompressionMethod::Stored
            } else {
                zip::CompressionMethod::Deflated
            };
            let options = SimpleFileOptions::default()
                .compression_method(method)
                .large_file(entry.size >= u64::from(u32::MAX))
                .unix_permissions(0o644);
            zip.start_file(entry.path.as_str(), options)
                .context("adding a file to the artifact")?;
            let mut source = std::fs::File::open(workspace.join(&entry.path))
                .with_context(|| format!("reading workspace file {}", entry.path))?;
            loop {
                let n = source.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                zip.write_all(&buffer[..n])?;
            }
        }
        let writer = zip.finish().context("finishing the artifact")?;
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .context("flushing the artifact")?;
        file.sync_all().context("syncing the artifact")?;
        let size = file.metadata()?.len();
        std::fs::rename(&tmp, &target).context("moving the artifact into place")?;
        sync_dir(&dir);
        Ok(size)
    })();
    if outcome.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    outcome
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub expired_artifacts: usize,
    pub idle_workspaces: usize,
    pub orphaned_files: usize,
}

/// Removes artifacts past retention, workspaces of idle conversations, and
/// files that no row references. At start (`at_start`) every unreferenced
/// file is an orphan; later only those older than a grace period are, since a
/// ZIP may be between its rename and its row.
pub async fn sweep(
    store: &Store,
    live: Option<&crate::live::LiveConversations>,
    data_dir: &Path,
    zip_retention: Duration,
    run_retention: Duration,
    at_start: bool,
) -> anyhow::Result<SweepReport> {
    let now = chrono::Utc::now();
    let mut report = SweepReport::default();

    let zip_cutoff =
        crate::time::rfc3339(now - chrono::Duration::from_std(zip_retention).unwrap_or_default());
    let expired = store
        .write(move |conn| store::artifacts::delete_older_than(conn, &zip_cutoff))
        .await?;
    for zip_id in &expired {
        let _ = std::fs::remove_file(artifact_path(data_dir, zip_id));
    }
    report.expired_artifacts = expired.len();

    let run_cutoff =
        crate::time::rfc3339(now - chrono::Duration::from_std(run_retention).unwrap_or_default());
    let idle = store
        .read(move |conn| store::conversations::idle_since(conn, &run_cutoff))
        .await?;
    for id in idle {
        let dir = workspace_dir(data_dir, &id);
        if dir.exists() {
            let clear_id = id.clone();
            store
                .write(move |conn| store::workspace_files::clear(conn, &clear_id))
                .await?;
            if let Some(live) = live {
                live.forget(&id);
            }
            if std::fs::remove_dir_all(&dir).is_ok() {
                report.idle_workspaces += 1;
            }
        }
    }

    let grace = if at_start {
        Duration::ZERO
    } else {
        Duration::from_secs(600)
    };
    let data_dir = data_dir.to_owned();
    let (zip_ids, conversation_ids, manifests) = store
        .read(move |conn| {
            Ok((
                store::artifacts::all_ids(conn)?,
                store::conversations::all_ids(conn)?,
                // Only at start is nothing writing into workspaces, so only
                // then are files missing from a manifest known to be leftovers.
                if at_start {
                    Some(store::workspace_files::all_paths(conn)?)
                } else {
                    None
                },
            ))
        })
        .await?;
    report.orphaned_files = crate::blocking::run(move || {
        let known = Known {
            zip_ids: &zip_ids,
            conversation_ids: &conversation_ids,
            manifests: manifests.as_ref(),
        };
        remove_orphans(&data_dir, &known, grace)
    })
    .await;

    if report != SweepReport::default() {
        tracing::info!(
            expired_artifacts = report.expired_artifacts,
            idle_workspaces = report.idle_workspaces,
            orphaned_files = report.orphaned_files,
            "sweeper removed old and orphaned files"
        );
    }
    Ok(report)
}

fn older_than(path: &Path, grace: Duration) -> bool {
    if grace.is_zero() {
        return true;
    }
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age >= grace)
}

/// What the database references, for the orphan check.
struct Known<'a> {
    zip_ids: &'a HashSet<String>,
    conversation_ids: &'a HashSet<String>,
    manifests: Option<&'a std::collections::HashMap<String, HashSet<String>>>,
}

fn remove_orphans(data_dir: &Path, known: &Known<'_>, grace: Duration) -> usize {
    let mut removed = 0;
    let entries = |dir: PathBuf| std::fs::read_dir(dir).into_iter().flatten().flatten();

    for entry in entries(artifacts_dir(data_dir)) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let referenced = name
            .strip_suffix(".zip")
            .is_some_and(|id| known.zip_ids.contains(id));
        if !referenced && older_than(&path, grace) && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    for entry in entries(data_dir.join("workspaces")) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !known.conversation_ids.contains(&name) {
            if older_than(&path, grace) && std::fs::remove_dir_all(&path).is_ok() {
                removed += 1;
            }
            continue;
        }
        if let Some(manifests) = known.manifests {
            let empty = HashSet::new();
            let manifest = manifests.get(&name).unwrap_or(&empty);
            removed += remove_unlisted_files(&path, &path, manifest);
        }
    }
    let staging_grace = if grace.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_secs(3600)
    };
    for entry in entries(crate::workspace::staging_root(data_dir)) {
        let path = entry.path();
        if older_than(&path, staging_grace) && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Removes files of a workspace that its manifest does not list (a crash
/// between moving files in and recording them), and folders left empty.
fn remove_unlisted_files(root: &Path, dir: &Path, manifest: &HashSet<String>) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            removed += remove_unlisted_files(root, &path, manifest);
            let _ = std::fs::remove_dir(&path);
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().replace('\\', "/"));
        let listed = relative
            .as_ref()
            .is_ok_and(|p| manifest.contains(p.as_str()));
        if !listed && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}
