//! Runs the generator on a folder and writes the generated files into it, the way the server
//! does for a workspace: `cargo run -p magdi-testgen --example generate -- DIR`.
//!
//! Prints the Markdown summary, then one `magdi-testgen-stats:` line for scripts.

use std::fs;
use std::path::{Path, PathBuf};

use magdi_testgen::{SourceFile, Status, generate};

fn main() {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: generate DIR");
        std::process::exit(2);
    };
    let mut files = Vec::new();
    collect(&dir, &dir, &mut files);
    let report = generate(&files);
    for file in &report.files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        fs::write(&path, &file.content)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    println!("{}", report.summary);

    let python: Vec<_> = report
        .modules
        .iter()
        .filter(|m| m.language == "Python")
        .collect();
    let with_examples = python
        .iter()
        .filter(|m| m.found > 0 && matches!(m.status, Status::Tested));
    let unasserted = with_examples.filter(|m| m.asserted == 0).count();
    println!(
        "magdi-testgen-stats: modules={} found={} asserted={} left_out={} modules_with_examples_but_no_assertion={}",
        python.len(),
        python.iter().map(|m| m.found).sum::<usize>(),
        python.iter().map(|m| m.asserted).sum::<usize>(),
        python.iter().map(|m| m.left_out.len()).sum::<usize>(),
        unasserted,
    );
}

/// Every UTF-8 text file under `dir`, skipping version control, dependencies and build output.
fn collect(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !matches!(
                name.as_str(),
                ".git" | "node_modules" | "target" | ".venv" | "__pycache__"
            ) {
                collect(root, &path, out);
            }
        } else if kind.is_file() {
            let Ok(content) = fs::read_to_string(&path) else {
                continue;
            };
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(SourceFile {
                path: rel.join("/"),
                content,
            });
        }
    }
}
