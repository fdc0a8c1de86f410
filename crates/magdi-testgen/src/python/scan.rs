//! Reads one Python module's source: its docstrings (the ones doctest would collect), the
//! names it defines at top level, what it imports, and signs that importing it does something.

use std::collections::{BTreeMap, BTreeSet};

use super::lex::{self, Kind, Token};

#[derive(Debug, Clone)]
pub struct Docstring {
    /// `None` for the module docstring, else the dotted name inside the module.
    pub qualname: Option<String>,
    pub text: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Dotted module name, with leading dots for a relative import.
    pub module: String,
    /// Names taken with `from module import ...`.
    pub names: Vec<String>,
    /// Inside a `try`, `if` or similar block, so the module may do without it.
    pub conditional: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ModuleScan {
    pub docstrings: Vec<Docstring>,
    pub top_names: BTreeSet<String>,
    /// `from x import *`, `globals()` or a module `__getattr__`: names we cannot list.
    pub dynamic_names: bool,
    pub imports: Vec<Import>,
    /// Why importing this module probably does more than define things.
    pub side_effects: Vec<String>,
    pub python2: bool,
    /// Docstrings whose text could not be decoded (such as `\N{...}` escapes).
    pub undecodable_docstrings: usize,
    /// Top-level functions and classes whose code prints (calls `print`, `pprint` or writes to
    /// `stdout`), directly or through another of them.
    pub printing: BTreeSet<String>,
}

/// What the code of one top-level function or class calls.
#[derive(Debug, Default)]
struct Body {
    prints: bool,
    calls: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Def,
    Class,
    MainGuard,
    Other,
}

struct Block {
    indent: usize,
    kind: BlockKind,
    name: String,
}

pub fn scan(src: &str) -> ModuleScan {
    let tokens = lex::tokenize(src);
    let lines = lex::logical_lines(&tokens);
    let mut out = ModuleScan::default();
    let mut stack: Vec<Block> = Vec::new();
    // The def or class whose docstring, if any, is the next line.
    let mut pending: Option<(Option<String>, usize)> = Some((None, 0));
    let mut first = true;
    let mut bodies: BTreeMap<String, Body> = BTreeMap::new();

    for line in &lines {
        let indent = lex::column_of(src, line[0].start);
        while stack.last().is_some_and(|b| b.indent >= indent) {
            stack.pop();
        }
        let words: Vec<&str> = line.iter().map(|t| t.text(src)).collect();

        if let Some((qualname, header_indent)) = pending.take()
            && (first || indent > header_indent)
            && line[0].kind == Kind::Str
        {
            push_docstring(&mut out, src, line, qualname);
        }
        first = false;

        if let Some(owner) = stack
            .iter()
            .find(|b| matches!(b.kind, BlockKind::Def | BlockKind::Class))
        {
            let body = bodies.entry(owner.name.clone()).or_default();
            for (i, t) in line.iter().enumerate() {
                let called = line.get(i + 1).is_some_and(|n| n.text(src) == "(");
                let w = t.text(src);
                if t.kind != Kind::Name || !called {
                    continue;
                }
                let after_dot = i > 0 && line[i - 1].text(src) == ".";
                let writes = w == "write" && i >= 2 && line[i - 2].text(src).ends_with("stdout");
                if (w == "print" && !after_dot) || w == "pprint" || writes {
                    body.prints = true;
                } else if !after_dot {
                    body.calls.insert(w.to_string());
                }
            }
        }

        let in_def = stack.iter().any(|b| b.kind == BlockKind::Def);
        let in_class = stack.iter().any(|b| b.kind == BlockKind::Class);
        let guarded = stack.iter().any(|b| b.kind == BlockKind::MainGuard);
        let top_level = !in_def && !in_class;

        if words.len() >= 2 && words[0] == "print" && starts_py2_print(line[1]) {
            out.python2 = true;
        }

        let (keyword_at, is_async) = if words[0] == "async" {
            (1, true)
        } else {
            (0, false)
        };
        let head = words.get(keyword_at).copied().unwrap_or("");
        let ends_block = words.last() == Some(&":");
        if (head == "def" || head == "class") && words.len() > keyword_at + 1 {
            let name = words[keyword_at + 1].to_string();
            if top_level {
                out.top_names.insert(name.clone());
                if name == "__getattr__" && head == "def" {
                    out.dynamic_names = true;
                }
            }
            let kind = if head == "def" {
                BlockKind::Def
            } else {
                BlockKind::Class
            };
            if ends_block {
                if !in_def {
                    let mut parts: Vec<&str> = stack
                        .iter()
                        .filter(|b| b.kind == BlockKind::Class)
                        .map(|b| b.name.as_str())
                        .collect();
                    parts.push(&name);
                    pending = Some((Some(parts.join(".")), indent));
                }
                stack.push(Block { indent, kind, name });
            }
            let _ = is_async;
            continue;
        }

        if ends_block && is_compound_keyword(head) {
            let kind = if head == "if" && is_main_guard(&words) {
                BlockKind::MainGuard
            } else {
                BlockKind::Other
            };
            stack.push(Block {
                indent,
                kind,
                name: String::new(),
            });
        }
        if !top_level || guarded {
            continue;
        }
        let conditional = !stack.is_empty();
        record_top_level(&mut out, src, line, &words, conditional);
    }
    out.printing = printing(&bodies);
    out
}

/// The names among `bodies` that print, directly or by calling one that does.
fn printing(bodies: &BTreeMap<String, Body>) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = bodies
        .iter()
        .filter(|(_, b)| b.prints)
        .map(|(name, _)| name.clone())
        .collect();
    loop {
        let more: Vec<String> = bodies
            .iter()
            .filter(|(name, b)| !out.contains(*name) && b.calls.iter().any(|c| out.contains(c)))
            .map(|(name, _)| name.clone())
            .collect();
        if more.is_empty() {
            return out;
        }
        out.extend(more);
    }
}

fn starts_py2_print(next: Token) -> bool {
    matches!(next.kind, Kind::Str | Kind::Number)
}

fn is_compound_keyword(word: &str) -> bool {
    matches!(
        word,
        "if" | "elif" | "else" | "for" | "while" | "try" | "except" | "finally" | "with" | "match"
    )
}

fn is_main_guard(words: &[&str]) -> bool {
    words.contains(&"__name__") && words.iter().any(|w| w.contains("__main__"))
}

fn push_docstring(out: &mut ModuleScan, src: &str, line: &[Token], qualname: Option<String>) {
    let mut text = String::new();
    for t in line {
        if t.kind != Kind::Str {
            // `"a" + x` is an expression, not a docstring.
            return;
        }
        match lex::decode_string(t.text(src)) {
            Some(part) => text.push_str(&part),
            None => {
                out.undecodable_docstrings += 1;
                return;
            }
        }
    }
    let line_no = src[..line[0].start].matches('\n').count() + 1;
    out.docstrings.push(Docstring {
        qualname,
        text,
        line: line_no,
    });
}

fn record_top_level(
    out: &mut ModuleScan,
    src: &str,
    line: &[Token],
    words: &[&str],
    conditional: bool,
) {
    match words[0] {
        "import" => {
            for part in split_commas(&line[1..], src) {
                let module = dotted(&part);
                if module.is_empty() {
                    continue;
                }
                let bound = match part.iter().position(|w| *w == "as") {
                    Some(i) => part.get(i + 1).map(|s| s.to_string()),
                    None => module.split('.').next().map(str::to_string),
                };
                out.top_names.extend(bound);
                out.imports.push(Import {
                    module,
                    names: Vec::new(),
                    conditional,
                });
            }
            return;
        }
        "from" => {
            let Some(import_at) = words.iter().position(|w| *w == "import") else {
                return;
            };
            let module: String = words[1..import_at].concat();
            let mut names = Vec::new();
            for part in split_commas(&line[import_at + 1..], src) {
                let part: Vec<&str> = part
                    .into_iter()
                    .filter(|w| !matches!(*w, "(" | ")"))
                    .collect();
                match part.as_slice() {
                    ["*"] => out.dynamic_names = true,
                    [name] => {
                        names.push(name.to_string());
                        out.top_names.insert(name.to_string());
                    }
                    [name, "as", alias] => {
                        names.push(name.to_string());
                        out.top_names.insert(alias.to_string());
                    }
                    _ => {}
                }
            }
            if module != "__future__" {
                out.imports.push(Import {
                    module,
                    names,
                    conditional,
                });
            }
            return;
        }
        "for" => {
            let end = words.iter().position(|w| *w == "in").unwrap_or(0);
            for (i, w) in words.iter().enumerate().take(end).skip(1) {
                if line[i].kind == Kind::Name && lex::is_identifier(w) {
                    out.top_names.insert(w.to_string());
                }
            }
        }
        _ => {}
    }

    for (i, w) in words.iter().enumerate() {
        if *w == "as" && line.get(i + 1).is_some_and(|t| t.kind == Kind::Name) {
            out.top_names.insert(words[i + 1].to_string());
        }
        if matches!(*w, "globals" | "exec") && words.get(i + 1) == Some(&"(") {
            out.dynamic_names = true;
        }
    }
    record_assignment(out, line, words);
    record_side_effects(out, line, words);
}

/// Splits a token run on commas outside brackets, as text.
fn split_commas<'a>(tokens: &[Token], src: &'a str) -> Vec<Vec<&'a str>> {
    let mut parts = vec![Vec::new()];
    let mut depth = 0usize;
    for t in tokens {
        let w = t.text(src);
        match w {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth = depth.saturating_sub(1),
            "," if depth <= 1 => {
                parts.push(Vec::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = parts.last_mut() {
            last.push(w);
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

fn dotted(part: &[&str]) -> String {
    let end = part.iter().position(|w| *w == "as").unwrap_or(part.len());
    part[..end].concat()
}

fn record_assignment(out: &mut ModuleScan, line: &[Token], words: &[&str]) {
    let mut depth = 0usize;
    let mut last_eq = None;
    for (i, w) in words.iter().enumerate() {
        match *w {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth = depth.saturating_sub(1),
            "=" if depth == 0 => last_eq = Some(i),
            "lambda" => break,
            _ => {}
        }
    }
    // `x: int = 1` and a bare `x: int` both bind `x`.
    if words.len() >= 2 && words[1] == ":" && line[0].kind == Kind::Name {
        out.top_names.insert(words[0].to_string());
        return;
    }
    let Some(end) = last_eq else { return };
    if words[0] == "__all__" {
        out.top_names.insert("__all__".to_string());
    }
    for i in 0..end {
        if line[i].kind != Kind::Name || !lex::is_identifier(words[i]) {
            continue;
        }
        let after_dot = i > 0 && words[i - 1] == ".";
        let before_access = matches!(words.get(i + 1), Some(&".") | Some(&"[") | Some(&"("));
        if !after_dot && !before_access {
            out.top_names.insert(words[i].to_string());
        }
    }
}

/// Calls at import time that mean the module is really a script or touches the network.
fn record_side_effects(out: &mut ModuleScan, line: &[Token], words: &[&str]) {
    if matches!(words[0], "while") && matches!(words.get(1), Some(&"True") | Some(&"1")) {
        out.side_effects
            .push("runs a `while True` loop at import".to_string());
        return;
    }
    for (i, w) in words.iter().enumerate() {
        if words.get(i + 1) != Some(&"(") || line[i].kind != Kind::Name {
            continue;
        }
        let base = if i >= 2 && words[i - 1] == "." {
            words[i - 2]
        } else {
            ""
        };
        let call = if base.is_empty() {
            w.to_string()
        } else {
            format!("{base}.{w}")
        };
        let network = matches!(*w, "urlopen" | "urlretrieve" | "create_connection")
            || (matches!(base, "requests" | "httpx" | "session" | "client")
                && matches!(
                    *w,
                    "get" | "post" | "put" | "patch" | "delete" | "head" | "request"
                ))
            || matches!(*w, "HTTPConnection" | "HTTPSConnection" | "SMTP" | "FTP")
            || (*w == "connect" && base != "sqlite3" && !base.is_empty());
        if network {
            out.side_effects
                .push(format!("calls `{call}(...)` (network) at import"));
            continue;
        }
        let script = (i == 0 && matches!(*w, "main" | "run" | "serve" | "app" | "cli"))
            || matches!(
                *w,
                "input" | "serve_forever" | "mainloop" | "run_forever" | "parse_args"
            )
            || matches!(
                call.as_str(),
                "sys.exit" | "os.system" | "time.sleep" | "asyncio.run"
            )
            || (base == "subprocess")
            || (i == 0 && matches!(*w, "exit" | "quit"))
            || (i == 2 && matches!(base, "app" | "unittest" | "pytest" | "plt"));
        if script {
            out.side_effects
                .push(format!("calls `{call}(...)` at import"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docstrings_of_module_functions_classes_and_methods_are_found_but_not_nested_functions() {
        let src = "\"\"\"Module.\"\"\"\n\ndef f():\n    'F doc'\n    def inner():\n        'hidden'\n\nclass C:\n    \"\"\"C doc\"\"\"\n    @property\n    def m(self):\n        r'''M doc'''\n";
        let found: Vec<(Option<String>, String)> = scan(src)
            .docstrings
            .into_iter()
            .map(|d| (d.qualname, d.text))
            .collect();
        assert_eq!(
            found,
            vec![
                (None, "Module.".to_string()),
                (Some("f".to_string()), "F doc".to_string()),
                (Some("C".to_string()), "C doc".to_string()),
                (Some("C.m".to_string()), "M doc".to_string()),
            ]
        );
    }

    #[test]
    fn top_level_names_come_from_defs_imports_and_assignments() {
        let src = "import os.path\nfrom x import (a, b as c)\nX, Y = 1, 2\nz: int = 3\nobj.attr = 4\ndef f(q=1):\n    inner = 2\n";
        let names: Vec<String> = scan(src).top_names.into_iter().collect();
        assert_eq!(names, vec!["X", "Y", "a", "c", "f", "os", "z"]);
    }

    #[test]
    fn imports_inside_try_are_conditional() {
        let src =
            "import yaml\ntry:\n    import ujson as json\nexcept ImportError:\n    import json\n";
        let imports = scan(src).imports;
        assert_eq!(
            imports[0],
            Import {
                module: "yaml".into(),
                names: vec![],
                conditional: false
            }
        );
        assert!(imports[1].conditional);
    }

    #[test]
    fn a_main_call_outside_a_guard_is_a_side_effect_but_inside_one_is_not() {
        assert_eq!(
            scan("def main():\n    pass\nmain()\n").side_effects.len(),
            1
        );
        let guarded = "def main():\n    pass\nif __name__ == '__main__':\n    main()\n";
        assert!(scan(guarded).side_effects.is_empty());
        assert_eq!(
            scan("import requests\nr = requests.get('http://x')\n")
                .side_effects
                .len(),
            1
        );
    }

    #[test]
    fn functions_and_classes_that_print_directly_or_through_each_other_are_listed() {
        let src = "import sys\n\ndef show(x):\n    print(x, end='')\n\ndef report(x):\n    if x:\n        show(x)\n\ndef emit(x):\n    sys.stdout.write(x)\n\nclass Table:\n    def dump(self):\n        pprint.pprint(self.rows)\n\ndef quiet(x):\n    return self.print(x)\n\nif __name__ == '__main__':\n    print(quiet(1))\n";
        let found = scan(src).printing;
        let names: Vec<&str> = found.iter().map(String::as_str).collect();
        assert_eq!(names, ["Table", "emit", "report", "show"]);
    }

    #[test]
    fn python2_print_statements_are_noticed() {
        assert!(scan("print 'hello'\n").python2);
        assert!(!scan("print('hello')\n").python2);
    }
}
