//! Rust: an integration test per library crate that names every public module, so it stops
//! compiling when one disappears, and checks the path of a plain public type where there is one.

use std::collections::BTreeMap;

use crate::{GeneratedFile, ModuleReport, SourceFile, Status, limits};

pub struct Output {
    pub files: Vec<GeneratedFile>,
    pub modules: Vec<ModuleReport>,
    pub notes: Vec<String>,
}

const MAX_MODULE_DEPTH: usize = 8;

struct Manifest {
    name: String,
    lib_path: String,
    proc_macro: bool,
    autotests: bool,
}

pub fn generate(files: &[SourceFile]) -> Output {
    let mut out = Output {
        files: Vec::new(),
        modules: Vec::new(),
        notes: Vec::new(),
    };
    let by_path: BTreeMap<&str, &SourceFile> = files.iter().map(|f| (f.path.as_str(), f)).collect();
    for f in files {
        let is_manifest = f.path == "Cargo.toml" || f.path.ends_with("/Cargo.toml");
        if !is_manifest
            || f.path
                .split('/')
                .any(|p| p == "target" || p.starts_with('.'))
        {
            continue;
        }
        let dir = f
            .path
            .strip_suffix("Cargo.toml")
            .unwrap_or("")
            .trim_end_matches('/');
        let Some(manifest) = read_manifest(&f.content) else {
            continue;
        };
        let lib = join(dir, &manifest.lib_path);
        let Some(lib_file) = by_path.get(lib.as_str()) else {
            out.notes.push(format!(
                "Crate `{}` has no library target, so an integration test cannot use its modules.",
                manifest.name
            ));
            continue;
        };
        if manifest.proc_macro {
            out.notes.push(format!(
                "Crate `{}` is a proc-macro crate; its modules are not usable from tests.",
                manifest.name
            ));
            continue;
        }
        let krate = manifest.name.replace('-', "_");
        let mut modules = Vec::new();
        collect_modules(
            &lib,
            &lib_file.content,
            &by_path,
            &mut Vec::new(),
            &mut modules,
            0,
        );
        let test_path = join(dir, "tests/magdi_generated_smoke.rs");
        for (path, source, _) in &modules {
            out.modules.push(ModuleReport {
                language: "Rust",
                module: format!("{krate}::{}", path.join("::")),
                source: source.clone(),
                test_file: Some(test_path.clone()),
                found: 0,
                asserted: 0,
                steps: 0,
                left_out: Vec::new(),
                status: Status::Tested,
                needs: Vec::new(),
            });
        }
        if modules.is_empty() {
            out.notes.push(format!(
                "Crate `{krate}` has no public modules; no Rust test was written."
            ));
            continue;
        }
        if !manifest.autotests {
            out.notes.push(format!("Crate `{krate}` sets `autotests = false`; add a `[[test]]` entry for `{test_path}` to run it."));
        }
        out.files.push(GeneratedFile {
            path: test_path,
            content: test_file(&krate, &modules),
        });
    }
    out
}

fn join(dir: &str, rest: &str) -> String {
    if dir.is_empty() {
        rest.to_string()
    } else {
        format!("{dir}/{rest}")
    }
}

/// The few manifest keys we need, read line by line (no TOML parser needed for them).
fn read_manifest(toml: &str) -> Option<Manifest> {
    let mut section = String::new();
    let mut m = Manifest {
        name: String::new(),
        lib_path: "src/lib.rs".into(),
        proc_macro: false,
        autotests: true,
    };
    let mut lib_name = None;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']', ' ']).to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim().trim_matches('"');
        match (section.as_str(), key) {
            ("package", "name") => m.name = value.to_string(),
            ("package", "autotests") => m.autotests = value != "false",
            ("lib", "path") => m.lib_path = value.to_string(),
            ("lib", "name") => lib_name = Some(value.to_string()),
            ("lib", "proc-macro") | ("lib", "proc_macro") => m.proc_macro = value == "true",
            _ => {}
        }
    }
    if let Some(name) = lib_name {
        m.name = name;
    }
    (!m.name.is_empty()).then_some(m)
}

type Found = (Vec<String>, String, Option<String>);

/// Walks `pub mod` declarations from a file; records each module's path, file and a plain
/// public type inside it (if any).
fn collect_modules(
    file: &str,
    content: &str,
    by_path: &BTreeMap<&str, &SourceFile>,
    prefix: &mut Vec<String>,
    out: &mut Vec<Found>,
    depth: usize,
) {
    if depth > MAX_MODULE_DEPTH
        || out.len() >= limits::MAX_MODULES
        || content.len() > limits::MAX_FILE_BYTES
    {
        return;
    }
    let code = strip_comments_and_strings(content);
    for item in top_level_items(&code) {
        let Some(name) = item.pub_mod else { continue };
        if item.cfg_gated {
            continue;
        }
        prefix.push(name.clone());
        let (source, body) = match &item.inline_body {
            Some(body) => (file.to_string(), body.clone()),
            None => {
                let base = module_dir(file);
                let candidates = [
                    join(&base, &format!("{name}.rs")),
                    join(&base, &format!("{name}/mod.rs")),
                ];
                match candidates
                    .iter()
                    .find_map(|c| by_path.get(c.as_str()).map(|f| (c.clone(), f)))
                {
                    Some((path, f)) => (path, strip_comments_and_strings(&f.content)),
                    None => {
                        prefix.pop();
                        continue;
                    }
                }
            }
        };
        let witness = top_level_items(&body)
            .into_iter()
            .find_map(|i| i.plain_type.filter(|_| !i.cfg_gated));
        out.push((prefix.clone(), source.clone(), witness));
        if item.inline_body.is_some() {
            // Inline modules nest inside this same file; their children live in `name/`.
            let pseudo = format!("{}/{name}.rs", module_dir(file));
            collect_modules(&pseudo, &body, by_path, prefix, out, depth + 1);
        } else if let Some(f) = by_path.get(source.as_str()) {
            collect_modules(&source, &f.content, by_path, prefix, out, depth + 1);
        }
        prefix.pop();
    }
}

/// Where `mod x;` inside `file` looks for `x.rs`.
fn module_dir(file: &str) -> String {
    let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
    if matches!(name, "lib.rs" | "main.rs" | "mod.rs") {
        dir.to_string()
    } else {
        join(dir, name.trim_end_matches(".rs"))
    }
}

#[derive(Debug, Default)]
struct Item {
    pub_mod: Option<String>,
    inline_body: Option<String>,
    plain_type: Option<String>,
    cfg_gated: bool,
}

/// Items at brace depth zero: `pub mod x;`, `pub mod x { .. }`, `pub struct X` / `pub enum X`.
fn top_level_items(code: &str) -> Vec<Item> {
    let chars: Vec<char> = code.chars().collect();
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let mut pending_cfg = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '#' if depth == 0 => {
                let rest: String = chars[i..(i + 40).min(chars.len())].iter().collect();
                let compact: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
                if compact.starts_with("#[cfg(") || compact.starts_with("#[path") {
                    pending_cfg = true;
                }
            }
            ';' if depth == 0 => pending_cfg = false,
            'p' if depth == 0 && (i == 0 || !is_ident_char(chars[i - 1])) => {
                let words = next_words(&chars, i, 4);
                let w: Vec<&str> = words.iter().map(|(w, _)| w.as_str()).collect();
                if w.first() == Some(&"pub") && w.get(1) == Some(&"mod") && w.len() >= 3 {
                    let mut item = Item {
                        pub_mod: Some(w[2].to_string()),
                        cfg_gated: pending_cfg,
                        ..Item::default()
                    };
                    let after = words[2].1;
                    let next = chars[after..]
                        .iter()
                        .position(|c| !c.is_whitespace())
                        .map(|p| after + p);
                    if let Some(open) = next.filter(|&p| chars[p] == '{') {
                        let close = matching_brace(&chars, open);
                        item.inline_body = Some(chars[open + 1..close].iter().collect());
                        i = close;
                    }
                    items.push(item);
                    pending_cfg = false;
                } else if w.first() == Some(&"pub")
                    && matches!(w.get(1), Some(&"struct") | Some(&"enum"))
                    && w.len() >= 3
                {
                    let after = words[2].1;
                    let next = chars[after..].iter().find(|c| !c.is_whitespace());
                    if next != Some(&'<') {
                        items.push(Item {
                            plain_type: Some(w[2].to_string()),
                            cfg_gated: pending_cfg,
                            ..Item::default()
                        });
                    }
                    pending_cfg = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    items
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Up to `n` identifier words from `at`, each with the index just past it.
fn next_words(chars: &[char], mut at: usize, n: usize) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    while out.len() < n {
        while at < chars.len() && chars[at].is_whitespace() {
            at += 1;
        }
        let start = at;
        while at < chars.len() && is_ident_char(chars[at]) {
            at += 1;
        }
        if at == start {
            break;
        }
        out.push((chars[start..at].iter().collect(), at));
    }
    out
}

fn matching_brace(chars: &[char], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    chars.len()
}

/// Blanks out comments, string and char literals so braces and keywords inside them vanish.
fn strip_comments_and_strings(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident_char(chars[i - 1]))
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal closes within a few characters; a lifetime never closes.
            let close = if next == Some('\\') {
                (i + 3..(i + 12).min(chars.len())).find(|&j| chars[j] == '\'')
            } else {
                (chars.get(i + 2) == Some(&'\'')).then_some(i + 2)
            };
            match close {
                Some(j) => {
                    out.push_str("' '");
                    i = j + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn test_file(krate: &str, modules: &[Found]) -> String {
    let mut out = format!(
        "//! Generated offline by Magdi's builtin model (no LLM).\n\
         //! Names every public module of the `{krate}` crate, so this file stops compiling when one\n\
         //! is removed or made private; where a module has a plain public type, checks its path.\n\n\
         #![allow(unused_imports)]\n\n\
         extern crate {krate};\n\n"
    );
    for (path, _, _) in modules {
        // `as _` so two modules with the same last name do not collide.
        out.push_str(&format!("use {krate}::{} as _;\n", path.join("::")));
    }
    for (path, _, witness) in modules {
        let Some(ty) = witness else { continue };
        let module = path.join("::");
        out.push_str(&format!(
            "\n#[test]\nfn {}_is_reachable_through_its_public_path() {{\n    let name = std::any::type_name::<{krate}::{module}::{ty}>();\n    assert!(name.ends_with(\"{module}::{ty}\"), \"{{name}}\");\n}}\n",
            path.join("_").to_lowercase()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            content: content.into(),
        }
    }

    #[test]
    fn every_public_module_is_used_and_plain_types_are_checked() {
        let out = generate(&[
            file(
                "Cargo.toml",
                "[package]\nname = \"my-lib\"\nedition = \"2021\"\n",
            ),
            file(
                "src/lib.rs",
                "//! pub mod fake;\npub mod shapes;\nmod private;\n#[cfg(feature = \"x\")]\npub mod gated;\npub mod inline { pub struct Unit; }\n",
            ),
            file(
                "src/shapes.rs",
                "pub struct Wrapper<T>(T);\npub enum Kind { A }\npub mod circle;\n",
            ),
            file("src/shapes/circle.rs", "pub fn area() -> f64 { 1.0 }\n"),
        ]);
        assert_eq!(out.files.len(), 1);
        let test = &out.files[0];
        assert_eq!(test.path, "tests/magdi_generated_smoke.rs");
        assert!(
            test.content.contains(
                "use my_lib::shapes as _;\nuse my_lib::shapes::circle as _;\nuse my_lib::inline as _;\n"
            ),
            "{}",
            test.content
        );
        assert!(
            test.content
                .contains("std::any::type_name::<my_lib::shapes::Kind>()")
        );
        assert!(
            test.content
                .contains("std::any::type_name::<my_lib::inline::Unit>()")
        );
        assert!(!test.content.contains("gated"));
        assert!(!test.content.contains("fake"));
        assert!(!test.content.contains("::private"));
    }

    #[test]
    fn a_binary_only_crate_gets_a_note_instead_of_a_test() {
        let out = generate(&[
            file("Cargo.toml", "[package]\nname = \"tool\"\n"),
            file("src/main.rs", "fn main() {}\n"),
        ]);
        assert!(out.files.is_empty());
        assert!(out.notes[0].contains("no library target"));
    }
}
