//! Workspaces: a conversation's files on disk. Every path that reaches one,
//! from an upload, a zip entry or a reply's file block, passes the same guard,
//! and every change is staged outside the workspace first so that a refused
//! request leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::store::workspace_files::WorkspaceFile;

/// Folders that are generated or heavy: never zipped, never sent to a model.
pub const SKIPPED_DIRS: &[&str] = &[
    ".git",
    "node_modules",
    "__pycache__",
    ".venv",
    "target",
    "dist",
];

pub fn workspace_dir(data_dir: &Path, conversation_id: &str) -> PathBuf {
    data_dir.join("workspaces").join(conversation_id)
}

pub fn staging_root(data_dir: &Path) -> PathBuf {
    data_dir.join("tmp")
}

/// Why a change to a workspace was refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The client's input is not acceptable (a bad name, a broken zip, ...).
    #[error("{0}")]
    Refused(String),
    /// Over one of the size limits.
    #[error("{0}")]
    TooLarge(String),
    /// The disk is full.
    #[error("the server's disk is full")]
    DiskFull,
    #[error(transparent)]
    Io(std::io::Error),
}

impl From<std::io::Error> for WorkspaceError {
    fn from(err: std::io::Error) -> Self {
        if err.raw_os_error() == Some(28) || err.kind() == std::io::ErrorKind::StorageFull {
            Self::DiskFull
        } else {
            Self::Io(err)
        }
    }
}

fn refused(message: impl Into<String>) -> WorkspaceError {
    WorkspaceError::Refused(message.into())
}

const MAX_PATH_BYTES: usize = 1024;
const MAX_COMPONENT_BYTES: usize = 255;
const MAX_DEPTH: usize = 32;

fn is_device_name(component: &str) -> bool {
    let stem = component
        .split('.')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit())
}

/// Turns a client-supplied name into a clean relative path (`a/b/c.py`), or
/// refuses it: absolute paths, `..`, drive letters, control characters,
/// device names and absurd lengths never pass.
pub fn safe_relative_path(name: &str) -> Result<String, WorkspaceError> {
    let bad = |why: &str| {
        refused(format!(
            "the file name {:?} is not allowed: {why}",
            truncate(name, 120)
        ))
    };
    if name.len() > MAX_PATH_BYTES {
        return Err(bad("it is too long"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || crate::accounts::is_invisible(c))
    {
        return Err(bad("it contains control or invisible characters"));
    }
    let unified = name.replace('\\', "/");
    if unified.starts_with('/') {
        return Err(bad("it is an absolute path"));
    }
    let bytes = unified.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Err(bad("it names a drive"));
    }
    let mut parts = Vec::new();
    for component in unified.split('/') {
        match component {
            "" | "." => continue,
            ".." => return Err(bad("it climbs out of the workspace")),
            c if c.len() > MAX_COMPONENT_BYTES => return Err(bad("a part of it is too long")),
            c if is_device_name(c) => return Err(bad("it is a device name")),
            c if c.trim_end_matches([' ', '.']).is_empty() => {
                return Err(bad("a part of it is only dots or spaces"));
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(bad("it is empty"));
    }
    // Checked again once `.` parts are gone: `./c:x` must not become `c:x`.
    let first = parts[0].as_bytes();
    if first.len() >= 2 && first[1] == b':' && first[0].is_ascii_alphabetic() {
        return Err(bad("it names a drive"));
    }
    if parts.len() > MAX_DEPTH {
        return Err(bad("it is nested too deeply"));
    }
    Ok(parts.join("/"))
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Size limits for one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_request_bytes: u64,
    pub max_workspace_bytes: u64,
}

/// Most entries one zip may have.
pub const MAX_ZIP_ENTRIES: usize = 20_000;
/// A zip entry that inflates more than this many times is treated as a bomb.
pub const MAX_COMPRESSION_RATIO: u64 = 250;

#[derive(Debug, Clone)]
struct Staged {
    tmp: PathBuf,
    size: u64,
    sha256: String,
}

/// Files of one request, written under the data directory's `tmp/` until they
/// are moved into the workspace together. Dropping it removes what is left.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    files: BTreeMap<String, Staged>,
    bytes: u64,
    counter: u64,
    limits: Limits,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.counter > 0 {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes bytes to a file while hashing them and counting them against a cap.
pub struct HashingWriter {
    file: std::fs::File,
    hasher: Sha256,
    written: u64,
    cap: u64,
}

impl HashingWriter {
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), WorkspaceError> {
        self.written += chunk.len() as u64;
        if self.written > self.cap {
            return Err(WorkspaceError::TooLarge(String::new()));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk)?;
        Ok(())
    }
}

impl Staging {
    /// Touches no disk: the folder is made with the first file, since most
    /// chats upload nothing.
    pub fn new(data_dir: &Path, limits: Limits) -> Self {
        let dir = staging_root(data_dir).join(uuid::Uuid::new_v4().to_string());
        Self {
            dir,
            files: BTreeMap::new(),
            bytes: 0,
            counter: 0,
            limits,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn next_tmp(&mut self) -> Result<PathBuf, WorkspaceError> {
        if self.counter == 0 {
            std::fs::create_dir_all(&self.dir)?;
        }
        self.counter += 1;
        Ok(self.dir.join(format!("{}.part", self.counter)))
    }

    /// Starts a staged file; the caller writes chunks then calls `finish_file`.
    pub fn begin_file(&mut self) -> Result<(PathBuf, HashingWriter), WorkspaceError> {
        let tmp = self.next_tmp()?;
        let file = std::fs::File::create(&tmp)?;
        let cap = self
            .limits
            .max_file_bytes
            .min(self.limits.max_request_bytes.saturating_sub(self.bytes));
        Ok((
            tmp,
            HashingWriter {
                file,
                hasher: Sha256::new(),
                written: 0,
                cap,
            },
        ))
    }

    /// Explains a `TooLarge` from a `HashingWriter` in the user's terms.
    pub fn too_large_message(&self, name: &str) -> WorkspaceError {
        let per_file = self.limits.max_file_bytes;
        if self.bytes + per_file > self.limits.max_request_bytes {
            WorkspaceError::TooLarge(format!(
                "the upload is larger than the limit of {} MiB per request",
                self.limits.max_request_bytes / crate::config::MIB
            ))
        } else {
            WorkspaceError::TooLarge(format!(
                "{:?} is larger than the limit of {} MiB per file",
                truncate(name, 120),
                per_file / crate::config::MIB
            ))
        }
    }

    /// Completes a staged file under `name`. A `.zip` is unpacked instead.
    pub fn finish_file(
        &mut self,
        name: &str,
        tmp: PathBuf,
        writer: HashingWriter,
    ) -> Result<(), WorkspaceError> {
        let HashingWriter {
            file,
            hasher,
            written,
            ..
        } = writer;
        file.sync_all()?;
        drop(file);
        self.bytes += written;
        if name.to_ascii_lowercase().ends_with(".zip") {
            self.unpack_zip(&tmp)?;
            std::fs::remove_file(&tmp)?;
            return Ok(());
        }
        let path = safe_relative_path(name)?;
        self.files.insert(
            path,
            Staged {
                tmp,
                size: written,
                sha256: hex::encode(hasher.finalize()),
            },
        );
        Ok(())
    }

    /// Stages a file from memory (a reply's file block).
    pub fn add_bytes(&mut self, name: &str, content: &[u8]) -> Result<(), WorkspaceError> {
        let path = safe_relative_path(name)?;
        if content.len() as u64 > self.limits.max_file_bytes {
            return Err(WorkspaceError::TooLarge(format!(
                "{path:?} is larger than the limit per file"
            )));
        }
        let tmp = self.next_tmp()?;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        self.bytes += content.len() as u64;
        let sha256 = hex::encode(Sha256::digest(content));
        self.files.insert(
            path,
            Staged {
                tmp,
                size: content.len() as u64,
                sha256,
            },
        );
        Ok(())
    }

    fn unpack_zip(&mut self, zip_path: &Path) -> Result<(), WorkspaceError> {
        let file = std::fs::File::open(zip_path)?;
        let mut archive = zip::ZipArchive::new(file)
            .map_err(|_| refused("the zip file is damaged or not a zip"))?;
        if archive.len() > MAX_ZIP_ENTRIES {
            return Err(refused(format!(
                "the zip has more than {MAX_ZIP_ENTRIES} entries"
            )));
        }
        let mut unpacked = 0u64;
        for index in 0..archive.len() {
            let mut entry = archive
                .by_index(index)
                .map_err(|_| refused("the zip file is damaged"))?;
            let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
            if entry.is_dir() {
                safe_relative_path(&name)?;
                continue;
            }
            if entry.is_symlink()
                || entry
                    .unix_mode()
                    .is_some_and(|mode| mode & 0o170000 == 0o120000)
            {
                return Err(refused(format!(
                    "the zip entry {:?} is a link, which is not allowed",
                    truncate(&name, 120)
                )));
            }
            let path = safe_relative_path(&name)?;
            let declared = entry.size();
            if declared > self.limits.max_file_bytes {
                return Err(WorkspaceError::TooLarge(format!(
                    "the zip entry {path:?} is larger than the limit of {} MiB per file",
                    self.limits.max_file_bytes / crate::config::MIB
                )));
            }
            let compressed = entry.compressed_size().max(1);
            if declared > 1024 * 1024 && declared / compressed > MAX_COMPRESSION_RATIO {
                return Err(refused(format!(
                    "the zip entry {path:?} inflates suspiciously much (a zip bomb?)"
                )));
            }
            let tmp = self.next_tmp()?;
            let mut out = std::fs::File::create(&tmp)?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut buffer = vec![0u8; 64 * 1024];
            // Never trust the declared size: count what actually comes out.
            loop {
                let n = entry
                    .read(&mut buffer)
                    .map_err(|_| refused(format!("the zip entry {path:?} is damaged")))?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                unpacked += n as u64;
                if size > self.limits.max_file_bytes {
                    return Err(WorkspaceError::TooLarge(format!(
                        "the zip entry {path:?} is larger than the limit per file"
                    )));
                }
                // What a zip unpacks to counts against the request's limit,
                // so that a small zip cannot fill the disk.
                if self.bytes + unpacked > self.limits.max_request_bytes {
                    return Err(WorkspaceError::TooLarge(format!(
                        "the zip unpacks to more than the limit of {} MiB per request",
                        self.limits.max_request_bytes / crate::config::MIB
                    )));
                }
                hasher.update(&buffer[..n]);
                out.write_all(&buffer[..n])?;
            }
            out.sync_all()?;
            self.files.insert(
                path,
                Staged {
                    tmp,
                    size,
                    sha256: hex::encode(hasher.finalize()),
                },
            );
        }
        self.bytes += unpacked;
        Ok(())
    }

    /// Moves the staged files into the workspace, after checking that they fit
    /// and do not collide with folders. Returns the files now in place.
    pub fn commit(
        mut self,
        workspace: &Path,
        current: &[WorkspaceFile],
    ) -> Result<Vec<WorkspaceFile>, WorkspaceError> {
        let existing: HashMap<&str, u64> =
            current.iter().map(|f| (f.path.as_str(), f.size)).collect();
        let mut total: u64 = current.iter().map(|f| f.size).sum();
        for (path, staged) in &self.files {
            total = total - existing.get(path.as_str()).copied().unwrap_or(0) + staged.size;
        }
        if total > self.limits.max_workspace_bytes {
            return Err(WorkspaceError::TooLarge(format!(
                "the workspace would hold more than its limit of {} MiB",
                self.limits.max_workspace_bytes / crate::config::MIB
            )));
        }

        let is_file = |p: &str| existing.contains_key(p) || self.files.contains_key(p);
        for path in self.files.keys() {
            let mut prefix = String::new();
            for part in path
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map_or(&[][..], |(_, rest)| rest)
            {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if is_file(&prefix) {
                    return Err(refused(format!(
                        "{path:?} would go inside {prefix:?}, which is a file"
                    )));
                }
            }
            let as_dir = format!("{path}/");
            let clashes = current
                .iter()
                .map(|f| f.path.as_str())
                .chain(self.files.keys().map(String::as_str));
            if clashes.clone().any(|other| other.starts_with(&as_dir)) {
                return Err(refused(format!(
                    "{path:?} is already a folder in the workspace"
                )));
            }
        }

        std::fs::create_dir_all(workspace)?;
        let mut placed = Vec::with_capacity(self.files.len());
        for (path, staged) in std::mem::take(&mut self.files) {
            let target = workspace.join(&path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&staged.tmp, &target)?;
            placed.push(WorkspaceFile {
                path,
                size: staged.size,
                sha256: staged.sha256,
            });
        }
        sync_dir(workspace);
        Ok(placed)
    }
}

/// Whether a file at `path` would clash with other files: one of them lies
/// where `path` needs a folder, or `path` is a folder of one of them.
pub fn collides<'a>(path: &str, others: impl IntoIterator<Item = &'a str>) -> bool {
    others.into_iter().any(|other| {
        other != path
            && (path
                .strip_prefix(other)
                .is_some_and(|rest| rest.starts_with('/'))
                || other
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('/')))
    })
}

/// Makes a rename durable. Best effort: not every filesystem allows it.
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// One file proposed by a reply: a fenced block whose info string has `path=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBlock {
    pub path: String,
    pub content: String,
}

/// Finds the file blocks of a reply. Blocks without `path=`, and a block left
/// open at the end, are not files.
pub fn file_blocks(reply: &str) -> Vec<FileBlock> {
    let mut blocks = Vec::new();
    let mut lines = reply.split_inclusive('\n');
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start_matches(' ');
        if line.len() - trimmed.len() > 3 {
            continue;
        }
        let fence_char = match trimmed.chars().next() {
            Some(c @ ('`' | '~')) => c,
            _ => continue,
        };
        let fence_len = trimmed.chars().take_while(|&c| c == fence_char).count();
        if fence_len < 3 {
            continue;
        }
        let info = trimmed[fence_len..].trim();
        if fence_char == '`' && info.contains('`') {
            continue;
        }
        let Some(path) = path_in_info(info) else {
            // Skip over the body of a block that is not a file.
            for inner in lines.by_ref() {
                if closes(inner, fence_char, fence_len) {
                    break;
                }
            }
            continue;
        };
        let mut content = String::new();
        let mut closed = false;
        for inner in lines.by_ref() {
            if closes(inner, fence_char, fence_len) {
                closed = true;
                break;
            }
            content.push_str(inner);
        }
        if closed {
            blocks.push(FileBlock { path, content });
        }
    }
    blocks
}

fn closes(line: &str, fence_char: char, fence_len: usize) -> bool {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return false;
    }
    let run = trimmed.chars().take_while(|&c| c == fence_char).count();
    run >= fence_len && trimmed[run..].trim().is_empty()
}

fn path_in_info(info: &str) -> Option<String> {
    let start = info.find("path=")?;
    if start > 0 && !info[..start].ends_with(char::is_whitespace) {
        return None;
    }
    let rest = &info[start + 5..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next().unwrap_or("")
    } else if let Some(quoted) = rest.strip_prefix('\'') {
        quoted.split('\'').next().unwrap_or("")
    } else {
        rest.split_whitespace().next().unwrap_or("")
    };
    (!value.is_empty()).then(|| value.to_owned())
}

/// Whether a workspace path lies in a folder that is never zipped or read.
pub fn is_skipped(path: &str) -> bool {
    path.split('/').any(|part| SKIPPED_DIRS.contains(&part))
}

/// Reads the workspace's text files for the model: at most `max_file` bytes
/// each and `max_total` in all; binary files are left out.
pub fn read_text_files(
    workspace: &Path,
    files: &[WorkspaceFile],
    max_file: u64,
    max_total: u64,
) -> Vec<magdi_testgen::SourceFile> {
    let mut out = Vec::new();
    let mut total = 0u64;
    for file in files {
        if is_skipped(&file.path) || file.size > max_file || total + file.size > max_total {
            continue;
        }
        let Ok(bytes) = std::fs::read(workspace.join(&file.path)) else {
            continue;
        };
        if bytes.contains(&0) {
            continue;
        }
        let Ok(content) = String::from_utf8(bytes) else {
            continue;
        };
        total += file.size;
        out.push(magdi_testgen::SourceFile {
            path: file.path.clone(),
            content,
        });
    }
    out
}

/// Serialises changes to one workspace at a time (uploads, replies' files,
/// ZIP builds), without holding anything during a model call.
#[derive(Debug, Default)]
pub struct WorkspaceLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl WorkspaceLocks {
    pub fn for_conversation(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock();
        if let Some(lock) = locks.get(id).and_then(Weak::upgrade) {
            return lock;
        }
        if locks.len() > 1024 {
            locks.retain(|_, weak| weak.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(id.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_or_hide_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "C:\\x",
            "c:x",
            "a\\..\\..\\x",
            "",
            ".",
            "a/\0b",
            "CON",
            "lpt1.txt",
            "nul.tar.gz",
            "...",
            "a/ /b",
            // Found by fuzz/fuzz_targets/path_guard.rs: a drive hidden behind `./`.
            "./p:././.",
            ".//c:x",
        ] {
            assert!(
                safe_relative_path(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn names_are_cleaned_into_relative_paths() {
        assert_eq!(safe_relative_path("a/./b//c.py").unwrap(), "a/b/c.py");
        assert_eq!(
            safe_relative_path("src\\pkg\\mod.py").unwrap(),
            "src/pkg/mod.py"
        );
        assert_eq!(safe_relative_path("console.py").unwrap(), "console.py");
        assert_eq!(
            safe_relative_path(".github/workflows/ci.yml").unwrap(),
            ".github/workflows/ci.yml"
        );
    }

    #[test]
    fn file_blocks_are_found_by_their_path() {
        let reply = "Intro\n```python path=tests/test_a.py\nimport a\n```\n\
                     ```python\nnot a file\n```\n\
                     ````markdown path=\"docs/x y.md\"\n```\ninner\n```\n````\n\
                     ```text path=open.txt\nnever closed\n";
        assert_eq!(
            file_blocks(reply),
            vec![
                FileBlock {
                    path: "tests/test_a.py".into(),
                    content: "import a\n".into()
                },
                FileBlock {
                    path: "docs/x y.md".into(),
                    content: "```\ninner\n```\n".into()
                },
            ]
        );
    }

    #[test]
    fn a_path_word_inside_another_word_is_not_a_path() {
        assert_eq!(file_blocks("```py xpath=a.py\nx\n```\n"), vec![]);
    }
}
