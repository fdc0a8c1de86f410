//! Which names an example reads and which it binds, in order, so the generated test can
//! import exactly the module globals the example relied on.

use std::collections::BTreeSet;

use super::lex::{self, Kind, Token};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Read(String),
    Bind(String),
}

#[derive(Debug, Clone, Default)]
pub struct NameUse {
    pub events: Vec<Event>,
    /// Bound only inside a smaller scope: comprehension targets, lambda and def parameters.
    pub scoped: BTreeSet<String>,
    /// Classes and functions the example defines (their reprs mention the test, not the module).
    pub defines: Vec<String>,
    /// A construct that cannot move from module level into a test function.
    pub forbidden: Option<String>,
}

const MAX_FSTRING_DEPTH: usize = 3;

pub fn analyze(src: &str) -> NameUse {
    let tokens = lex::tokenize(src);
    let mut out = NameUse::default();
    collect_scoped(src, &tokens, &mut out.scoped);
    let mut in_def = false;
    for line in lex::logical_lines(&tokens) {
        let indent = lex::column_of(src, line[0].start);
        let words: Vec<&str> = line.iter().map(|t| t.text(src)).collect();
        let head = if words[0] == "async" {
            words.get(1).copied().unwrap_or("")
        } else {
            words[0]
        };
        match head {
            "global" | "nonlocal" => out.forbidden = Some(format!("uses `{head}`")),
            "return" | "yield" if !in_def => {
                out.forbidden = Some(format!("uses `{head}` outside a function"))
            }
            _ => {}
        }
        if words.contains(&"await") && !in_def {
            out.forbidden = Some("uses top-level `await`".to_string());
        }
        if indent == 0 {
            in_def = false;
        }
        match head {
            "import" => {
                for part in words[1..].split(|w| *w == ",") {
                    let bound = match part.iter().position(|w| *w == "as") {
                        Some(i) => part.get(i + 1).copied(),
                        None => part.first().copied(),
                    };
                    if let Some(name) = bound {
                        out.events.push(Event::Bind(name.to_string()));
                    }
                }
            }
            "from" => {
                let at = words
                    .iter()
                    .position(|w| *w == "import")
                    .unwrap_or(words.len());
                if words.get(1) == Some(&"__future__") {
                    out.forbidden = Some("imports from `__future__`".to_string());
                }
                let names: Vec<&str> = words[(at + 1).min(words.len())..]
                    .iter()
                    .copied()
                    .filter(|w| !matches!(*w, "(" | ")"))
                    .collect();
                for part in names.split(|w| *w == ",") {
                    match part {
                        ["*"] => out.forbidden = Some("uses `import *`".to_string()),
                        [name] | [_, "as", name] => out.events.push(Event::Bind(name.to_string())),
                        _ => {}
                    }
                }
            }
            "def" | "class" => {
                let at = words.iter().position(|w| *w == head).unwrap_or(0);
                let body = &line[(at + 2).min(line.len())..];
                reads_in(src, body, &out.scoped.clone(), &mut out.events, 0);
                if let Some(name) = words.get(at + 1) {
                    out.events.push(Event::Bind(name.to_string()));
                    if indent == 0 {
                        out.defines.push(name.to_string());
                    }
                }
                if head == "def" {
                    in_def = true;
                }
            }
            _ => statement(src, &line, &words, &mut out),
        }
        for (i, w) in words.iter().enumerate() {
            if matches!(*w, "globals" | "locals" | "vars") && words.get(i + 1) == Some(&"(") {
                out.forbidden = Some(format!("calls `{w}()`"));
            }
        }
    }
    out
}

fn statement(src: &str, line: &[Token], words: &[&str], out: &mut NameUse) {
    let scoped = out.scoped.clone();
    // `for targets in iterable:` binds its targets after reading the iterable.
    if words[0] == "for" {
        let at = words.iter().position(|w| *w == "in").unwrap_or(words.len());
        reads_in(
            src,
            &line[at.min(line.len())..],
            &scoped,
            &mut out.events,
            0,
        );
        binds_in(src, &line[1..at.min(line.len())], &scoped, out);
        return;
    }
    let mut depth = 0usize;
    let mut targets_end = None;
    let mut augmented = false;
    for (i, w) in words.iter().enumerate() {
        match *w {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth = depth.saturating_sub(1),
            "=" if depth == 0 => targets_end = Some(i),
            "lambda" if depth == 0 => break,
            w if depth == 0 && line[i].kind == Kind::Op && is_augmented(w) => {
                targets_end = Some(i);
                augmented = true;
                break;
            }
            _ => {}
        }
    }
    // `x: int = 1`: the annotation is read, `x` is bound.
    let annotated = words.len() >= 2 && words[1] == ":" && line[0].kind == Kind::Name;
    match targets_end {
        Some(end) => {
            reads_in(src, &line[end + 1..], &scoped, &mut out.events, 0);
            if augmented {
                reads_in(src, &line[..end], &scoped, &mut out.events, 0);
            }
            binds_in(src, &line[..end], &scoped, out);
        }
        None if annotated => {
            reads_in(src, &line[2..], &scoped, &mut out.events, 0);
            out.events.push(Event::Bind(words[0].to_string()));
        }
        None => {
            reads_in(src, line, &scoped, &mut out.events, 0);
        }
    }
    for (i, w) in words.iter().enumerate() {
        if *w == "as" && line.get(i + 1).is_some_and(|t| t.kind == Kind::Name) {
            out.events.push(Event::Bind(words[i + 1].to_string()));
        }
    }
}

fn is_augmented(op: &str) -> bool {
    op.len() >= 2 && op.ends_with('=') && !matches!(op, "==" | "!=" | "<=" | ">=" | ":=")
}

/// Assignment targets: plain names are bound; bases of attributes and subscripts are read.
fn binds_in(src: &str, tokens: &[Token], scoped: &BTreeSet<String>, out: &mut NameUse) {
    let mut access_depth = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let w = t.text(src);
        let prev = i.checked_sub(1).map(|p| tokens[p].text(src));
        match w {
            "(" | "[" | "{" => {
                let access = prev.is_some_and(|p| {
                    tokens[i - 1].kind == Kind::Name || matches!(p, ")" | "]" | "}")
                });
                access_depth.push(access);
                continue;
            }
            ")" | "]" | "}" => {
                access_depth.pop();
                continue;
            }
            _ => {}
        }
        if t.kind != Kind::Name || lex::is_keyword(w) || prev == Some(".") {
            continue;
        }
        let next = tokens.get(i + 1).map(|n| n.text(src));
        let accessed = matches!(next, Some(".") | Some("[") | Some("("));
        if access_depth.iter().any(|a| *a) || accessed {
            if !scoped.contains(w) {
                out.events.push(Event::Read(w.to_string()));
            }
        } else if w != "in" {
            out.events.push(Event::Bind(w.to_string()));
        }
    }
}

/// Every name read in `tokens`: not attributes, keyword arguments or scoped names.
fn reads_in(
    src: &str,
    tokens: &[Token],
    scoped: &BTreeSet<String>,
    events: &mut Vec<Event>,
    fdepth: usize,
) {
    let mut brackets: Vec<&str> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let w = t.text(src);
        match t.kind {
            Kind::Op => match w {
                "(" | "[" | "{" => brackets.push(w),
                ")" | "]" | "}" => {
                    brackets.pop();
                }
                _ => {}
            },
            Kind::Str => {
                if let Some((prefix, body)) = lex::split_string_token(w)
                    && prefix.contains('f')
                    && fdepth < MAX_FSTRING_DEPTH
                {
                    for field in lex::fstring_fields(body) {
                        let inner = lex::tokenize(field);
                        reads_in(field, &inner, scoped, events, fdepth + 1);
                    }
                }
            }
            Kind::Name => {
                if lex::is_keyword(w) || scoped.contains(w) {
                    continue;
                }
                let prev = i.checked_sub(1).map(|p| tokens[p].text(src));
                let next = tokens.get(i + 1).map(|n| n.text(src));
                if prev == Some(".") {
                    continue;
                }
                if next == Some("=") && brackets.last() == Some(&"(") {
                    continue;
                }
                if next == Some(":=") {
                    events.push(Event::Bind(w.to_string()));
                    continue;
                }
                events.push(Event::Read(w.to_string()));
            }
            _ => {}
        }
    }
}

/// Names bound in an inner scope anywhere in the example: `for x in` inside brackets,
/// `lambda a, b:` and `def f(a, b=1):` parameters.
fn collect_scoped(src: &str, tokens: &[Token], scoped: &mut BTreeSet<String>) {
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let w = tokens[i].text(src);
        match w {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth = depth.saturating_sub(1),
            "for" if depth > 0 => {
                let mut j = i + 1;
                while j < tokens.len() && tokens[j].text(src) != "in" {
                    if tokens[j].kind == Kind::Name {
                        scoped.insert(tokens[j].text(src).to_string());
                    }
                    j += 1;
                }
            }
            "lambda" => {
                let mut j = i + 1;
                let mut inner = 0usize;
                while j < tokens.len() {
                    let t = tokens[j].text(src);
                    match t {
                        "(" | "[" | "{" => inner += 1,
                        ")" | "]" | "}" => inner = inner.saturating_sub(1),
                        ":" if inner == 0 => break,
                        _ => {}
                    }
                    let prev = tokens[j - 1].text(src);
                    if inner == 0
                        && tokens[j].kind == Kind::Name
                        && matches!(prev, "lambda" | "," | "*" | "**")
                    {
                        scoped.insert(t.to_string());
                    }
                    j += 1;
                }
            }
            "def" => {
                // Parameters sit right after `(`, `,`, `*` or `**` at the first paren level.
                let mut j = i + 2;
                let mut inner = 0usize;
                while j < tokens.len() {
                    let t = tokens[j].text(src);
                    match t {
                        "(" | "[" | "{" => inner += 1,
                        ")" | "]" | "}" => {
                            inner = inner.saturating_sub(1);
                            if inner == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    let prev = tokens[j - 1].text(src);
                    if inner == 1
                        && tokens[j].kind == Kind::Name
                        && matches!(prev, "(" | "," | "*" | "**")
                    {
                        scoped.insert(t.to_string());
                    }
                    j += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(src: &str) -> Vec<String> {
        analyze(src)
            .events
            .into_iter()
            .filter_map(|e| match e {
                Event::Read(n) => Some(n),
                Event::Bind(_) => None,
            })
            .collect()
    }

    #[test]
    fn attributes_keyword_arguments_and_comprehension_targets_are_not_read() {
        assert_eq!(
            reads("f(x.y, key=z, *[i for i in data])"),
            vec!["f", "x", "z", "data"]
        );
    }

    #[test]
    fn assignment_reads_the_value_before_binding_the_target() {
        let events = analyze("total = add(total, 1)").events;
        assert_eq!(
            events,
            vec![
                Event::Read("add".into()),
                Event::Read("total".into()),
                Event::Bind("total".into())
            ]
        );
    }

    #[test]
    fn subscript_targets_read_their_base_and_index() {
        assert_eq!(reads("d[key] = value"), vec!["value", "d", "key"]);
    }

    #[test]
    fn function_parameters_and_lambda_parameters_are_scoped() {
        let use_ = analyze("def double(n, scale=factor):\n    return n * scale");
        assert_eq!(use_.defines, vec!["double".to_string()]);
        assert!(use_.forbidden.is_none());
        assert_eq!(
            reads("def double(n, scale=factor):\n    return n * scale"),
            vec!["factor"]
        );
        assert_eq!(
            reads("sorted(xs, key=lambda p: p[0])"),
            vec!["sorted", "xs"]
        );
    }

    #[test]
    fn names_inside_fstrings_are_read() {
        assert_eq!(reads("f'{greeting}, {who!r}'"), vec!["greeting", "who"]);
    }

    #[test]
    fn star_imports_and_globals_cannot_move_into_a_function() {
        assert!(analyze("from os import *").forbidden.is_some());
        assert!(analyze("global x").forbidden.is_some());
        assert!(analyze("return 1").forbidden.is_some());
    }
}
