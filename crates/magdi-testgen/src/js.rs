//! JavaScript and TypeScript: a `node --test` file per package that loads every module (or,
//! for TypeScript, which Node.js 20 cannot load, checks that it parses when the project has the
//! `typescript` package installed, and says so when it does not).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::{GeneratedFile, ModuleReport, SourceFile, Status, limits};

const EXTENSIONS: [&str; 8] = ["js", "mjs", "cjs", "jsx", "ts", "tsx", "mts", "cts"];
const SKIPPED_DIRS: [&str; 12] = [
    "node_modules",
    "dist",
    "build",
    "coverage",
    "out",
    "test",
    "tests",
    "__tests__",
    "magdi_generated",
    "vendor",
    "public",
    "__MACOSX",
];

pub struct Output {
    pub files: Vec<GeneratedFile>,
    pub modules: Vec<ModuleReport>,
    pub notes: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct Facts {
    specifiers: Vec<String>,
    esm_syntax: bool,
    jsx: bool,
    esm_exports: BTreeSet<String>,
    cjs_exports: BTreeSet<String>,
    side_effect: Option<String>,
    browser: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Load,
    /// TypeScript or JSX: parse with the project's `typescript` package when present.
    Parse,
}

pub fn generate(files: &[SourceFile]) -> Output {
    let mut out = Output {
        files: Vec::new(),
        modules: Vec::new(),
        notes: Vec::new(),
    };
    let sources: BTreeMap<&str, &SourceFile> = files
        .iter()
        .filter(|f| is_module(&f.path))
        .map(|f| (f.path.as_str(), f))
        .collect();
    if sources.is_empty() {
        return out;
    }
    let package_dirs: BTreeSet<&str> = files
        .iter()
        .filter(|f| f.path == "package.json" || f.path.ends_with("/package.json"))
        .filter(|f| !f.path.contains("node_modules/"))
        .map(|f| parent(&f.path))
        .collect();
    let esm_packages: BTreeSet<&str> = files
        .iter()
        .filter(|f| package_dirs.contains(parent(&f.path)) && f.path.ends_with("package.json"))
        .filter(|f| declares_module_type(&f.content))
        .map(|f| parent(&f.path))
        .collect();

    let facts: BTreeMap<&str, Facts> = sources
        .iter()
        .take(limits::MAX_MODULES)
        .map(|(p, f)| {
            let facts = if f.content.len() > limits::MAX_FILE_BYTES {
                Facts::default()
            } else {
                scan(&f.content)
            };
            (*p, facts)
        })
        .collect();

    let mut by_package: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for path in facts.keys() {
        let pkg = nearest(path, &package_dirs);
        by_package.entry(pkg).or_default().push(path);
    }
    for (pkg, paths) in by_package {
        let tests_dir = join(pkg, "tests/magdi_generated");
        let mut cases = Vec::new();
        for path in paths {
            let (report, case) =
                module_case(path, pkg, &facts, &sources, &esm_packages, &package_dirs);
            if let Some(case) = case {
                cases.push(case);
            }
            let mut report = report;
            if !matches!(report.status, Status::LeftOut(_)) {
                report.test_file = Some(format!("{tests_dir}/smoke.test.mjs"));
            }
            out.modules.push(report);
        }
        if !cases.is_empty() {
            out.files.push(GeneratedFile {
                path: format!("{tests_dir}/smoke.test.mjs"),
                content: test_file(pkg, &cases),
            });
        }
    }
    if sources.len() > limits::MAX_MODULES {
        out.notes.push(format!(
            "Only the first {} JavaScript/TypeScript modules were covered.",
            limits::MAX_MODULES
        ));
    }
    out
}

fn is_module(path: &str) -> bool {
    let name = basename(path);
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    if !EXTENSIONS.contains(&ext) || name.ends_with(".d.ts") || name.starts_with('.') {
        return false;
    }
    if [".test", ".spec", ".config", ".conf", ".stories"]
        .iter()
        .any(|s| stem.ends_with(s))
        || stem.starts_with("test-")
        || stem.eq_ignore_ascii_case("gruntfile")
        || stem.eq_ignore_ascii_case("gulpfile")
        || stem == "test"
    {
        return false;
    }
    let dirs: Vec<&str> = path.split('/').collect();
    !dirs[..dirs.len() - 1]
        .iter()
        .any(|d| d.starts_with('.') || SKIPPED_DIRS.contains(d))
}

fn declares_module_type(package_json: &str) -> bool {
    let compact: String = package_json
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    compact.contains("\"type\":\"module\"")
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn basename(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, b)| b)
}

fn join(dir: &str, rest: &str) -> String {
    if dir.is_empty() {
        rest.to_string()
    } else {
        format!("{dir}/{rest}")
    }
}

/// The closest enclosing folder in `dirs`, or the workspace root.
fn nearest<'a>(path: &str, dirs: &BTreeSet<&'a str>) -> &'a str {
    let mut dir = parent(path);
    loop {
        if let Some(found) = dirs.get(dir) {
            return found;
        }
        if dir.is_empty() {
            return "";
        }
        dir = parent(dir);
    }
}

struct Case {
    rel: String,
    check: Check,
    cjs: bool,
    packages: Vec<String>,
    exports: Vec<String>,
    skip: Option<String>,
}

fn module_case(
    path: &str,
    pkg: &str,
    facts: &BTreeMap<&str, Facts>,
    sources: &BTreeMap<&str, &SourceFile>,
    esm_packages: &BTreeSet<&str>,
    package_dirs: &BTreeSet<&str>,
) -> (ModuleReport, Option<Case>) {
    let ext = path.rsplit('.').next().unwrap_or("");
    let f = &facts[path];
    let typescript = matches!(ext, "ts" | "tsx" | "mts" | "cts");
    let mut report = ModuleReport {
        language: if typescript {
            "TypeScript"
        } else {
            "JavaScript"
        },
        module: path.to_string(),
        source: path.to_string(),
        test_file: None,
        found: 0,
        asserted: 0,
        steps: 0,
        left_out: Vec::new(),
        status: Status::Tested,
        needs: Vec::new(),
    };
    let rel = path
        .strip_prefix(pkg)
        .unwrap_or(path)
        .trim_start_matches('/')
        .to_string();
    let check = if typescript || ext == "jsx" || f.jsx {
        Check::Parse
    } else {
        Check::Load
    };

    // Walk the local imports: their packages and side effects count for this module too.
    let mut packages = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([path.to_string()]);
    let mut trouble: Option<String> = None;
    let mut bundler: Option<String> = None;
    while let Some(current) = queue.pop_front() {
        if !seen.insert(current.clone()) || seen.len() > limits::MAX_MODULES {
            continue;
        }
        let Some(cf) = facts.get(current.as_str()) else {
            continue;
        };
        if let Some(effect) = &cf.side_effect {
            trouble.get_or_insert_with(|| {
                if current == path {
                    effect.clone()
                } else {
                    format!("imports `{current}`, which {effect}")
                }
            });
        }
        if let Some(b) = &cf.browser {
            bundler.get_or_insert_with(|| b.clone());
        }
        let current_esm = cf.esm_syntax;
        for spec in &cf.specifiers {
            if spec.starts_with('.') || spec.starts_with('/') {
                let target = resolve_relative(parent(&current), spec);
                let found = candidates(&target)
                    .into_iter()
                    .find(|c| sources.contains_key(c.as_str()));
                let has_ext = basename(spec).contains('.');
                let asset = spec.rsplit('.').next().filter(|e| {
                    matches!(
                        *e,
                        "css" | "scss" | "less" | "svg" | "png" | "jpg" | "vue" | "svelte"
                    )
                });
                if let Some(asset) = asset
                    && has_ext
                {
                    bundler.get_or_insert_with(|| {
                        format!("imports a `.{asset}` file, which only a bundler can load")
                    });
                    continue;
                }
                if current_esm && !has_ext && check == Check::Load {
                    bundler.get_or_insert_with(|| format!("imports `{spec}` without a file extension, which Node's ES module loader does not resolve (the code is written for a bundler)"));
                }
                if let Some(found) = found {
                    queue.push_back(found);
                }
            } else if !spec.starts_with("node:") {
                let name = package_name(spec);
                if !name.is_empty() {
                    packages.insert(name);
                }
            }
        }
    }
    if let Some(why) = trouble {
        report.status = Status::LeftOut(format!("probably has side effects at load: {why}"));
        return (report, None);
    }
    let in_esm_package = esm_packages.contains(nearest(path, package_dirs));
    let cjs = match ext {
        "cjs" | "cts" => true,
        "mjs" | "mts" => false,
        _ => !f.esm_syntax && !in_esm_package,
    };
    let skip = if check == Check::Parse { None } else { bundler };
    if let Some(why) = &skip {
        report.status = Status::SkippedAtRunTime(why.clone());
    } else if check == Check::Parse {
        report.status = Status::SkippedAtRunTime(
            "Node.js 20 cannot load TypeScript or JSX; the test checks it parses when the `typescript` package is installed, and is skipped otherwise".to_string(),
        );
    }
    let exports = if cjs { &f.cjs_exports } else { &f.esm_exports };
    report.needs = packages.iter().cloned().collect();
    let case = Case {
        rel,
        check,
        cjs,
        packages: packages.into_iter().collect(),
        exports: exports.iter().cloned().collect(),
        skip,
    };
    (report, Some(case))
}

fn resolve_relative(dir: &str, spec: &str) -> String {
    let mut parts: Vec<&str> = if spec.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|p| !p.is_empty()).collect()
    };
    for part in spec.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn candidates(target: &str) -> Vec<String> {
    let mut out = vec![target.to_string()];
    for ext in EXTENSIONS {
        out.push(format!("{target}.{ext}"));
        out.push(format!("{target}/index.{ext}"));
    }
    // TypeScript projects import `./x.js` meaning `./x.ts`.
    if let Some(stem) = target.strip_suffix(".js") {
        out.push(format!("{stem}.ts"));
        out.push(format!("{stem}.tsx"));
    }
    out
}

/// `@scope/pkg/sub` -> `@scope/pkg`, `pkg/sub` -> `pkg`.
fn package_name(spec: &str) -> String {
    let mut parts = spec.split('/');
    let first = parts.next().unwrap_or("");
    if first.starts_with('@') {
        match parts.next() {
            Some(second) => format!("{first}/{second}"),
            None => String::new(),
        }
    } else {
        first.to_string()
    }
}

fn js_str(text: &str) -> String {
    // The escapes Python string literals use (`\n`, `\xHH`, `\uHHHH`) mean the same in
    // JavaScript.
    crate::pystr::py_str(text)
}

fn test_file(pkg: &str, cases: &[Case]) -> String {
    let mut out = format!(
        "// Generated offline by Magdi's builtin model (no LLM) for the package at `{}`.\n\
         // Loads every module (TypeScript and JSX: checks that it parses) so a broken import or a\n\
         // syntax error fails here. Modules whose npm dependencies are not installed are skipped\n\
         // with their names. Run with `node --test` (Node.js 20 or later).\n",
        if pkg.is_empty() { "." } else { pkg }
    );
    out.push_str(SUPPORT);
    for c in cases {
        let packages: Vec<String> = c.packages.iter().map(|p| js_str(p)).collect();
        let verb = if c.check == Check::Load {
            "loads"
        } else {
            "parses"
        };
        out.push_str(&format!(
            "\ntest({}, async (t) => {{\n",
            js_str(&format!("{} {verb}", c.rel))
        ));
        if let Some(why) = &c.skip {
            out.push_str(&format!("  t.skip({});\n}});\n", js_str(why)));
            continue;
        }
        out.push_str(&format!("  const file = join(root, {});\n", js_str(&c.rel)));
        match c.check {
            Check::Load => {
                out.push_str(&format!(
                    "  const missing = missingPackages([{}]);\n  if (missing.length > 0) {{\n    t.skip(`needs ${{missing.join(', ')}}, not installed (run npm install)`);\n    return;\n  }}\n",
                    packages.join(", ")
                ));
                out.push_str("  const mod = await import(pathToFileURL(file).href);\n");
                let target = if c.cjs { "mod.default" } else { "mod" };
                if c.exports.is_empty() {
                    out.push_str("  assert.equal(typeof mod, 'object');\n");
                } else {
                    let names: Vec<String> = c.exports.iter().map(|e| js_str(e)).collect();
                    out.push_str(&format!(
                        "  for (const name of [{}]) {{\n    assert.ok(name in Object({target}), `exports ${{name}}`);\n  }}\n",
                        names.join(", ")
                    ));
                }
            }
            Check::Parse => {
                out.push_str(
                    "  const ts = loadTypeScript();\n  if (!ts) {\n    t.skip('Node.js cannot load TypeScript or JSX by itself and the typescript package is not installed here (run npm install to enable this parse check)');\n    return;\n  }\n",
                );
                out.push_str(
                    "  const result = ts.transpileModule(readFileSync(file, 'utf8'), {\n    fileName: file,\n    reportDiagnostics: true,\n    compilerOptions: { jsx: 'preserve' },\n  });\n  const problems = (result.diagnostics || []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\\n'));\n  assert.deepEqual(problems, []);\n",
                );
            }
        }
        out.push_str("});\n");
    }
    out
}

const SUPPORT: &str = r#"
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

// A package counts as installed when node_modules/<name> exists here or in a parent folder,
// the way Node looks for it.
function missingPackages(names) {
  return names.filter((name) => {
    for (let dir = root; ; dir = dirname(dir)) {
      if (existsSync(join(dir, 'node_modules', name, 'package.json'))) return false;
      if (dirname(dir) === dir) return true;
    }
  });
}

function loadTypeScript() {
  try {
    return createRequire(join(root, 'package.json'))('typescript');
  } catch {
    return null;
  }
}
"#;

/// Reads imports, exports and load-time behaviour from JavaScript or TypeScript source.
fn scan(src: &str) -> Facts {
    let tokens = tokenize(src);
    let mut f = Facts::default();
    let mut depth = 0usize;
    let word = |i: usize| tokens.get(i).map(|t: &Tok| t.text.as_str()).unwrap_or("");
    for i in 0..tokens.len() {
        let t = &tokens[i];
        match t.text.as_str() {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" => depth = depth.saturating_sub(1),
            _ => {}
        }
        if t.kind != TokKind::Word {
            continue;
        }
        let prev = if i > 0 { word(i - 1) } else { "" };
        let member = prev == ".";
        match t.text.as_str() {
            "listen" | "createServer" | "connect" | "exit" | "stdin"
                if depth == 0 && member && is_member_call(&tokens, i) =>
            {
                f.side_effect
                    .get_or_insert_with(|| format!("calls `.{}` at load", t.text));
            }
            _ if member => {}
            "import" if depth == 0 && word(i + 1) != "(" && word(i + 1) != "." => {
                f.esm_syntax = true;
                if let Some(s) = tokens[i + 1..]
                    .iter()
                    .take(200)
                    .find(|t| t.kind == TokKind::Str)
                {
                    f.specifiers.push(s.value.clone());
                }
            }
            "import" | "require" if word(i + 1) == "(" => {
                if let Some(s) = tokens.get(i + 2).filter(|t| t.kind == TokKind::Str) {
                    f.specifiers.push(s.value.clone());
                }
            }
            "export" if depth == 0 => {
                f.esm_syntax = true;
                esm_export(&tokens, i, &mut f);
            }
            "exports" if word(i + 1) == "." && word(i + 3) == "=" => {
                f.cjs_exports.insert(word(i + 2).to_string());
            }
            "module"
                if word(i + 1) == "."
                    && word(i + 2) == "exports"
                    && word(i + 3) == "."
                    && word(i + 5) == "=" =>
            {
                f.cjs_exports.insert(word(i + 4).to_string());
            }
            "window" | "document" | "localStorage" | "navigator" if depth == 0 => {
                f.browser
                    .get_or_insert_with(|| format!("uses the browser global `{}` at load", t.text));
            }
            "setInterval" | "fetch" if depth == 0 && word(i + 1) == "(" => {
                f.side_effect
                    .get_or_insert_with(|| format!("calls `{}` at load", t.text));
            }
            _ => {}
        }
    }
    f.jsx = looks_like_jsx(&tokens);
    f
}

fn is_member_call(tokens: &[Tok], i: usize) -> bool {
    let dotted = i > 0 && tokens[i - 1].text == ".";
    let called = tokens.get(i + 1).is_some_and(|t| t.text == "(");
    dotted && (called || tokens[i].text == "stdin")
}

fn esm_export(tokens: &[Tok], i: usize, f: &mut Facts) {
    let word = |j: usize| tokens.get(j).map(|t| t.text.as_str()).unwrap_or("");
    let mut j = i + 1;
    if word(j) == "default" {
        f.esm_exports.insert("default".to_string());
        return;
    }
    if word(j) == "async" {
        j += 1;
    }
    match word(j) {
        "function" | "class" | "const" | "let" | "var" => {
            let name_at = if word(j + 1) == "*" { j + 2 } else { j + 1 };
            let name = word(name_at);
            if is_js_identifier(name) {
                f.esm_exports.insert(name.to_string());
            }
        }
        "{" => {
            let mut k = j + 1;
            let mut names = Vec::new();
            while k < tokens.len() && word(k) != "}" {
                let name = if word(k + 1) == "as" {
                    word(k + 2)
                } else {
                    word(k)
                };
                if word(k) == "type" && is_js_identifier(word(k + 1)) {
                    k += 1;
                    continue;
                }
                if is_js_identifier(name) {
                    names.push(name.to_string());
                }
                k += if word(k + 1) == "as" { 3 } else { 1 };
                if word(k) == "," {
                    k += 1;
                }
            }
            // `export { x } from './y'` re-exports; still a name of this module.
            f.esm_exports.extend(names);
        }
        _ => {}
    }
}

fn is_js_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c == '$' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c == '$' || c.is_alphanumeric())
        && !matches!(s, "default" | "as" | "from" | "type")
}

fn looks_like_jsx(tokens: &[Tok]) -> bool {
    tokens.windows(3).any(|w| {
        w[1].text == "<"
            && (w[2].kind == TokKind::Word || w[2].text == ">")
            && matches!(
                w[0].text.as_str(),
                "(" | "return" | "=" | "=>" | "?" | ":" | "," | "&&" | "||"
            )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokKind {
    Word,
    Str,
    Punct,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: TokKind,
    text: String,
    /// For strings: the contents without quotes (escapes left as written).
    value: String,
}

/// A forgiving JavaScript tokenizer: comments, strings, template literals and (by context)
/// regular expression literals are skipped so their contents are not read as code.
fn tokenize(src: &str) -> Vec<Tok> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' || c == '\'' || c == '`' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                } else if chars[i] == '\n' && c != '`' {
                    break;
                }
                i += 1;
            }
            let value: String = chars[start..i.min(chars.len())].iter().collect();
            i += 1;
            let kind = if c == '`' && value.contains("${") {
                TokKind::Punct
            } else {
                TokKind::Str
            };
            tokens.push(Tok {
                kind,
                text: String::from("\"\""),
                value,
            });
        } else if c == '/' && regex_allowed(tokens.last()) {
            i += 1;
            let mut in_class = false;
            while i < chars.len() && chars[i] != '\n' {
                match chars[i] {
                    '\\' => i += 1,
                    '[' => in_class = true,
                    ']' => in_class = false,
                    '/' if !in_class => break,
                    _ => {}
                }
                i += 1;
            }
            i += 1;
            while i < chars.len() && chars[i].is_alphabetic() {
                i += 1;
            }
            tokens.push(Tok {
                kind: TokKind::Punct,
                text: "/re/".into(),
                value: String::new(),
            });
        } else if c == '_' || c == '$' || c.is_alphanumeric() {
            let start = i;
            while i < chars.len()
                && (chars[i] == '_' || chars[i] == '$' || chars[i].is_alphanumeric())
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            tokens.push(Tok {
                kind: TokKind::Word,
                text,
                value: String::new(),
            });
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let text = if matches!(two.as_str(), "=>" | "&&" | "||" | "==" | "?." | "..") {
                two
            } else {
                c.to_string()
            };
            i += text.chars().count();
            tokens.push(Tok {
                kind: TokKind::Punct,
                text,
                value: String::new(),
            });
        }
    }
    tokens
}

fn regex_allowed(prev: Option<&Tok>) -> bool {
    match prev {
        None => true,
        Some(t) if t.kind == TokKind::Word => matches!(
            t.text.as_str(),
            "return" | "typeof" | "case" | "in" | "of" | "new" | "delete" | "void" | "throw"
        ),
        Some(t) if t.kind == TokKind::Str => false,
        Some(t) => !matches!(t.text.as_str(), ")" | "]" | "}" | "/re/"),
    }
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
    fn esm_exports_and_imports_are_read() {
        let f = scan(
            "import x from 'lodash';\nimport { y } from './y.js';\nexport function add(a, b) { return a + b; }\nexport const K = 1;\nexport { y as why };\nexport default add;\n",
        );
        assert_eq!(f.specifiers, vec!["lodash", "./y.js"]);
        assert!(f.esm_syntax);
        assert_eq!(
            f.esm_exports.into_iter().collect::<Vec<_>>(),
            vec!["K", "add", "default", "why"]
        );
    }

    #[test]
    fn commonjs_exports_and_requires_are_read_and_strings_are_not_code() {
        let f = scan(
            "const fs = require('fs');\n// import nothing from 'comment'\nexports.read = () => 'export const fake = 1';\nmodule.exports.write = 1;\n",
        );
        assert_eq!(f.specifiers, vec!["fs"]);
        assert!(!f.esm_syntax);
        assert_eq!(
            f.cjs_exports.into_iter().collect::<Vec<_>>(),
            vec!["read", "write"]
        );
    }

    #[test]
    fn a_server_listening_at_load_is_a_side_effect_but_inside_a_function_is_not() {
        assert!(
            scan("const app = express();\napp.listen(3000);\n")
                .side_effect
                .is_some()
        );
        assert!(
            scan("function start() {\n  setInterval(tick, 10);\n}\n")
                .side_effect
                .is_none()
        );
    }

    #[test]
    fn a_package_gets_one_smoke_file_that_loads_each_module_and_skips_missing_packages() {
        let out = generate(&[
            file("package.json", "{\"name\": \"demo\", \"type\": \"module\"}"),
            file(
                "src/math.js",
                "import _ from 'lodash';\nexport const add = (a, b) => a + b;\n",
            ),
            file("src/app.ts", "export const x: number = 1;\n"),
            file("src/math.test.js", "test('x', () => {});\n"),
        ]);
        assert_eq!(out.files.len(), 1);
        let test = &out.files[0];
        assert_eq!(test.path, "tests/magdi_generated/smoke.test.mjs");
        assert!(test.content.contains("test(\"src/math.js loads\""));
        assert!(test.content.contains("missingPackages([\"lodash\"])"));
        assert!(test.content.contains("for (const name of [\"add\"])"));
        assert!(test.content.contains("test(\"src/app.ts parses\""));
        assert!(!test.content.contains("math.test.js"));
        assert_eq!(out.modules.len(), 2);
    }

    #[test]
    fn extensionless_relative_imports_in_esm_are_skipped_as_bundler_code() {
        let out = generate(&[
            file("package.json", "{\"type\": \"module\"}"),
            file("a.js", "import { b } from './b';\nexport const a = b;\n"),
            file("b.js", "export const b = 1;\n"),
        ]);
        let a = out.modules.iter().find(|m| m.module == "a.js").unwrap();
        assert!(matches!(&a.status, Status::SkippedAtRunTime(why) if why.contains("bundler")));
    }
}
