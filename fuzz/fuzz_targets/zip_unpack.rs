//! The zip unpacker: an uploaded `.zip`, well formed or not, never panics,
//! never puts a file outside the staging folder (nor, once committed, outside
//! the workspace), never leaves a link, and stays within the size limits.
//! Memory is bounded by libFuzzer's `-rss_limit_mb`, which scripts/fuzz sets.

#![no_main]

use std::io::{Cursor, Write};
use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use magdi::workspace::{Limits, Staging, WorkspaceError, safe_relative_path};
use zip::write::SimpleFileOptions;

const MIB: u64 = 1024 * 1024;
const LIMITS: Limits = Limits {
    max_file_bytes: 2 * MIB,
    max_request_bytes: 4 * MIB,
    max_workspace_bytes: 3 * MIB,
};

#[derive(Debug, Arbitrary)]
enum Input {
    /// Bytes as they come: libFuzzer's mutations find the broken archives.
    Raw(Vec<u8>),
    /// A real archive with hostile entries, then damaged a little.
    Built {
        entries: Vec<Entry>,
        damage: Vec<(u16, u8)>,
        cut: Option<u16>,
    },
}

#[derive(Debug, Arbitrary)]
struct Entry {
    name: String,
    kind: Kind,
    content: Vec<u8>,
    /// Repeats `content`, to make large and very compressible entries.
    repeat: u16,
    deflate: bool,
    mode: Option<u32>,
}

#[derive(Debug, Arbitrary)]
enum Kind {
    File,
    Dir,
    Link(String),
}

fn build(entries: &[Entry]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for entry in entries.iter().take(64) {
        let mut options = SimpleFileOptions::default().compression_method(if entry.deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        });
        if let Some(mode) = entry.mode {
            options = options.unix_permissions(mode);
        }
        // The writer refuses some names (duplicates, for one); skip those.
        let _ = match &entry.kind {
            Kind::File => writer
                .start_file(entry.name.as_str(), options)
                .and_then(|()| {
                    let times = usize::from(entry.repeat % 2048).max(1);
                    let times = times.min((5 * MIB as usize) / entry.content.len().max(1));
                    for _ in 0..times {
                        writer.write_all(&entry.content)?;
                    }
                    Ok(())
                }),
            Kind::Dir => writer.add_directory(entry.name.as_str(), options),
            Kind::Link(target) => writer.add_symlink(entry.name.as_str(), target.as_str(), options),
        };
    }
    writer.finish().map(Cursor::into_inner).unwrap_or_default()
}

/// Every path under `root`, with whether it is a link.
fn walk(root: &Path, out: &mut Vec<(std::path::PathBuf, bool)>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries {
        let entry = entry.expect("reading a folder");
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).expect("reading a file's metadata");
        out.push((path.clone(), meta.file_type().is_symlink()));
        if meta.is_dir() {
            walk(&path, out);
        }
    }
}

fn assert_all_under(root: &Path, allowed: &[&Path]) {
    let mut found = Vec::new();
    walk(root, &mut found);
    for (path, is_link) in found {
        assert!(!is_link, "a link was written: {path:?}");
        assert!(
            allowed
                .iter()
                .any(|dir| path.starts_with(dir) || dir.starts_with(&path)),
            "{path:?} is outside {allowed:?}"
        );
    }
}

fuzz_target!(|input: Input| {
    let bytes = match input {
        Input::Raw(bytes) => bytes,
        Input::Built {
            entries,
            damage,
            cut,
        } => {
            let mut bytes = build(&entries);
            if !bytes.is_empty() {
                for (at, value) in damage.into_iter().take(16) {
                    let at = usize::from(at) % bytes.len();
                    bytes[at] = value;
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(usize::from(cut));
            }
            bytes
        }
    };

    let root = tempfile::tempdir().expect("a temporary folder");
    let data = root.path().join("data");
    let staging_root = data.join("tmp");
    let workspace = data.join("workspaces").join("conversation");

    let mut staging = Staging::new(&data, LIMITS).expect("a staging folder");
    let (tmp, mut writer) = staging.begin_file().expect("a staged file");
    if writer.write_chunk(&bytes).is_err() {
        return;
    }
    match staging.finish_file("upload.zip", tmp, writer) {
        Ok(()) => {}
        Err(WorkspaceError::Refused(_) | WorkspaceError::TooLarge(_)) => {
            drop(staging);
            assert_all_under(root.path(), &[&staging_root]);
            assert!(
                std::fs::read_dir(&staging_root).unwrap().next().is_none(),
                "a refused zip left files behind"
            );
            return;
        }
        Err(other) => panic!("unpacking failed on the server's side: {other:?}"),
    }
    assert_all_under(root.path(), &[&staging_root]);

    match staging.commit(&workspace, &[]) {
        Ok(placed) => {
            let mut total = 0;
            for file in &placed {
                assert_eq!(
                    safe_relative_path(&file.path).ok().as_deref(),
                    Some(file.path.as_str())
                );
                let meta = std::fs::symlink_metadata(workspace.join(&file.path))
                    .expect("a placed file exists");
                assert!(meta.is_file());
                assert_eq!(meta.len(), file.size);
                assert!(file.size <= LIMITS.max_file_bytes);
                total += file.size;
            }
            assert!(total <= LIMITS.max_workspace_bytes);
        }
        Err(WorkspaceError::Refused(_) | WorkspaceError::TooLarge(_)) => {}
        Err(other) => panic!("committing failed on the server's side: {other:?}"),
    }
    assert_all_under(root.path(), &[&staging_root, &workspace]);
    assert!(
        std::fs::read_dir(&staging_root).unwrap().next().is_none(),
        "staged files were left behind"
    );
});
