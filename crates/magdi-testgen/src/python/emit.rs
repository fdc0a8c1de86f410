//! Turns one docstring's examples into one pytest function.
//!
//! The rule throughout: an emitted assertion must hold whenever the project's own doctest run
//! of that example passes. Where doctest compares text, we compare the same text (or a looser
//! form of it: values instead of reprs, a tolerance for floats); where we cannot tell what
//! doctest would compare, the example is left out and counted.

use std::collections::{BTreeMap, BTreeSet};

use super::doctest::{self, Example, ExpectedError, Flags};
use super::lex::{self, Kind, Token};
use super::literal::{self, Shape};
use super::names::{self, Event};
use crate::pystr::{py_regex, py_str};

/// What the translator needs to know about the module the docstring belongs to.
pub struct ModuleContext<'a> {
    pub module: &'a str,
    pub top_names: &'a BTreeSet<String>,
    pub dynamic_names: bool,
    /// Option flags the project turns on for all its doctests (pytest's doctest_optionflags).
    pub flags: Flags,
    /// Names the project adds to every doctest (pytest's `doctest_namespace`), with the code
    /// that binds each inside a test.
    pub namespace: &'a BTreeMap<String, String>,
    /// The module's functions and classes that print: an example using one is checked on
    /// what doctest shows (printed text and the value's repr), never on the value alone.
    pub printing: &'a BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translation {
    /// The test function, or `None` when no example became an assertion.
    pub code: Option<String>,
    pub found: usize,
    pub asserted: usize,
    /// Examples without expected output, run as steps of the test.
    pub steps: usize,
    /// One reason per example left out.
    pub left_out: Vec<String>,
    pub uses_re: bool,
    /// Whether the code calls [`PRINTED_HELPER`]'s function.
    pub uses_printed: bool,
}

const BODY: &str = "    ";
/// Names for the value and the shown text of an example checked like doctest's display; odd
/// enough not to collide with the example's own names.
const VALUE: &str = "_doctest_value";
const SHOWN: &str = "_doctest_shown";
/// doctest adds a final newline to printed text that lacks one (`print(x, end='')`), since an
/// expected output cannot say that it is missing; printed text is compared through this.
pub const PRINTED_HELPER: &str = "\
def _doctest_text(printed):
    \"\"\"Printed text as doctest compares it: with a final newline when anything was printed.\"\"\"
    return printed if not printed or printed.endswith(\"\\n\") else printed + \"\\n\"
";

pub fn translate(
    test_name: &str,
    title: &str,
    examples: &[Example],
    ctx: &ModuleContext,
) -> Translation {
    let mut t = Translator {
        ctx,
        bound: BTreeSet::new(),
        imports: BTreeSet::new(),
        namespace_used: BTreeSet::new(),
        builtins_read: BTreeSet::new(),
        shadowed_builtins: BTreeSet::new(),
        defined: Vec::new(),
        body: Vec::new(),
        capsys: false,
        stdout_dirty: false,
        printed_before: false,
        out: Translation {
            found: examples.len(),
            ..Translation::default()
        },
    };
    for (i, example) in examples.iter().enumerate() {
        if let Err(reason) = t.example(example) {
            // Later examples may rely on what this one would have done, so they go too.
            t.out.left_out.push(reason.clone());
            for _ in &examples[i + 1..] {
                t.out
                    .left_out
                    .push(format!("follows an example that was left out ({reason})"));
            }
            break;
        }
    }
    if t.out.asserted == 0 {
        // Steps without a single check would make a test that cannot fail.
        for _ in 0..t.out.steps {
            t.out
                .left_out
                .push("has no expected output to check".to_string());
        }
        t.out.steps = 0;
        return t.out;
    }
    let code = t.function(test_name, title);
    t.out.code = Some(code);
    t.out
}

struct Translator<'a> {
    ctx: &'a ModuleContext<'a>,
    bound: BTreeSet<String>,
    imports: BTreeSet<String>,
    namespace_used: BTreeSet<String>,
    builtins_read: BTreeSet<String>,
    shadowed_builtins: BTreeSet<String>,
    defined: Vec<String>,
    body: Vec<String>,
    capsys: bool,
    stdout_dirty: bool,
    printed_before: bool,
    out: Translation,
}

/// How doctest would have judged the example's output.
enum Check {
    Value,
    Stdout,
    /// Printed text followed by the repr of the value, unless it is None.
    Shown,
}

impl Translator<'_> {
    /// Emits one example; `Err` means it and everything after it are left out.
    fn example(&mut self, example: &Example) -> Result<(), String> {
        let mut flags = self.ctx.flags;
        for option in &example.options {
            if !flags.apply(option) {
                return Err(format!("has an unknown doctest directive `{option}`"));
            }
        }
        if flags.skip {
            self.out
                .left_out
                .push("is marked `doctest: +SKIP`".to_string());
            return Ok(());
        }

        let source = strip_directives(&example.source);
        let tokens = lex::tokenize(&source);
        if tokens.iter().any(|t| t.kind == Kind::Error) {
            return Err("is not Python this generator can read".to_string());
        }
        if tokens
            .iter()
            .all(|t| t.kind == Kind::Comment || t.kind == Kind::Newline)
        {
            if !example.want.is_empty() {
                return Err("has output but no code".to_string());
            }
            return Ok(());
        }
        let uses = names::analyze(&source);
        if let Some(why) = uses.forbidden {
            return Err(why);
        }
        self.resolve_names(&uses.events, &uses.scoped)?;

        let mut want = if flags.dont_accept_blankline {
            example.want.clone()
        } else {
            example.want.replace("<BLANKLINE>", "")
        };
        if flags.allow_unicode {
            // pytest's ALLOW_UNICODE drops the `u` of `u'...'`, which Python 3 never prints.
            want = strip_unicode_prefixes(&want);
        }
        let shape = classify(&source, &tokens);
        let result = if let Some(error) = doctest::expected_error(&want) {
            self.expect_error(&source, &error, flags);
            Ok(())
        } else if want.is_empty() {
            self.push_code(&source, BODY);
            self.out.steps += 1;
            Ok(())
        } else {
            match check_for(&source, &tokens, shape) {
                Ok(Check::Value) => self.expect_value(&source, &want, flags, &uses.defines),
                Ok(Check::Stdout) => {
                    self.expect_stdout(&source, &want, flags);
                    Ok(())
                }
                Ok(Check::Shown) => {
                    self.expect_shown(&source, &want, flags);
                    Ok(())
                }
                Err(why) => Err(why),
            }
        };
        self.defined.extend(uses.defines);
        // A function or class defined here that prints makes later outputs printed text too.
        let head = tokens
            .iter()
            .find(|t| t.kind != Kind::Comment && t.kind != Kind::Newline)
            .map(|t| t.text(&source));
        let defines = matches!(head, Some("def" | "class" | "@"));
        self.printed_before |= source_reads(&source, "print")
            || (defines && self.ctx.printing.iter().any(|n| source_reads(&source, n)));
        self.stdout_dirty = true;
        if let Err(why) = result {
            // The output cannot be checked soundly, but later examples may need what this
            // one does, so it still runs.
            self.push_code(&source, BODY);
            self.out
                .left_out
                .push(format!("{why} (run without a check)"));
        }
        Ok(())
    }

    fn resolve_names(&mut self, events: &[Event], scoped: &BTreeSet<String>) -> Result<(), String> {
        for event in events {
            match event {
                Event::Bind(name) => {
                    if self.builtins_read.contains(name) && !self.imports.contains(name) {
                        self.shadowed_builtins.insert(name.clone());
                    }
                    self.bound.insert(name.clone());
                }
                Event::Read(name) => {
                    if scoped.contains(name) || self.bound.contains(name) {
                        continue;
                    }
                    if self.ctx.top_names.contains(name) {
                        self.imports.insert(name.clone());
                    } else if self.ctx.namespace.contains_key(name) {
                        self.namespace_used.insert(name.clone());
                    } else if is_builtin(name) {
                        self.builtins_read.insert(name.clone());
                    } else if name == "_" {
                        return Err(
                            "reads `_`, the previous result in an interactive session".to_string()
                        );
                    } else if name.starts_with("__") && name.ends_with("__") {
                        return Err(format!("reads `{name}`, which differs inside a test"));
                    } else if self.ctx.dynamic_names {
                        self.imports.insert(name.clone());
                    } else {
                        return Err(format!("reads `{name}`, which the module does not define"));
                    }
                }
            }
        }
        Ok(())
    }

    fn expect_error(&mut self, source: &str, error: &ExpectedError, flags: Flags) {
        let short = error.name.rsplit('.').next().unwrap_or(&error.name);
        let builtin = (!error.name.contains('.') || error.name.starts_with("builtins."))
            && is_builtin_exception(short)
            && !self.ctx.top_names.contains(short);
        let message = match (&error.message, flags.ignore_exception_detail) {
            (Some(m), false) if !m.is_empty() => Some(message_regex(m, flags)),
            _ => None,
        };
        let match_arg = message
            .map(|m| format!(", match={}", py_regex(&m)))
            .unwrap_or_default();
        if builtin {
            self.body
                .push(format!("{BODY}with pytest.raises({short}{match_arg}):"));
        } else {
            self.body.push(format!(
                "{BODY}with pytest.raises(Exception{match_arg}) as excinfo:"
            ));
        }
        self.push_code(source, &format!("{BODY}{BODY}"));
        if !builtin {
            self.body.push(format!(
                "{BODY}assert type(excinfo.value).__name__ == {}",
                py_str(short)
            ));
        }
        self.out.asserted += 1;
    }

    fn expect_value(
        &mut self,
        source: &str,
        want: &str,
        flags: Flags,
        defines: &[String],
    ) -> Result<(), String> {
        let text = want.strip_suffix('\n').unwrap_or(want);
        let mentions_local = self
            .defined
            .iter()
            .chain(defines)
            .any(|name| text.contains('<') && contains_word(text, name));
        if mentions_local {
            return Err("shows the repr of a class or function defined in the example".into());
        }
        let elided = text.contains("...");
        // Code that prints (here, or in a function an earlier example defined) mixes printed
        // text into what doctest shows.
        let mentions_print = self.printed_before
            || source_reads(source, "print")
            || self
                .ctx
                .printing
                .iter()
                .any(|name| source_reads(source, name));
        // doctest never displays None, so an output of `None` was printed, not returned.
        let literal = literal::parse(text).filter(|l| l.shape != Shape::None);
        if let Some(lit) = literal.filter(|_| !elided && !mentions_print) {
            let spaces_matter = flags.normalize_whitespace && lit.string_with_space;
            if !spaces_matter {
                return self.assert_literal(source, text, lit, flags);
            }
        }
        if looks_like_repr(text) && !mentions_print {
            let got = format!("repr({})", inline_or_block(source));
            let check = self.text_check(&got, text, flags);
            self.body.push(format!("{BODY}assert {check}"));
        } else {
            // Prose, or code that prints.
            self.expect_shown(source, want, flags);
            return Ok(());
        }
        self.out.asserted += 1;
        Ok(())
    }

    /// Compares what doctest shows for an expression: printed output followed by the repr of
    /// a value that is not None.
    fn expect_shown(&mut self, source: &str, want: &str, flags: Flags) {
        self.capsys = true;
        if self.stdout_dirty {
            self.body.push(format!("{BODY}capsys.readouterr()"));
        }
        let value = inline_or_block(source);
        let value = if value.contains('\n') {
            format!("({value})")
        } else {
            value
        };
        self.body.push(format!("{BODY}{VALUE} = {value}"));
        self.body.push(format!(
            "{BODY}{SHOWN} = _doctest_text(capsys.readouterr().out + (\"\" if {VALUE} is None else repr({VALUE}) + \"\\n\"))"
        ));
        self.out.uses_printed = true;
        let check = self.text_check(SHOWN, want, flags);
        self.body.push(format!("{BODY}assert {check}"));
        self.stdout_dirty = false;
        self.out.asserted += 1;
    }

    fn assert_literal(
        &mut self,
        source: &str,
        text: &str,
        lit: literal::Literal,
        flags: Flags,
    ) -> Result<(), String> {
        let lhs = lhs_expression(source);
        let rhs = indent_continuation(text, BODY);
        let line = match lit.shape {
            Shape::Bool(true) => format!("assert {lhs}"),
            Shape::Bool(false) => format!("assert not {lhs}"),
            _ if flags.number && lit.has_float => {
                let tolerance = number_tolerance(text)
                    .filter(|_| lit.shape == Shape::Float || lit.flat_numbers)
                    .ok_or("compares nested floats to written precision (NUMBER)")?;
                format!("assert {lhs} == pytest.approx({rhs}, abs={tolerance})")
            }
            Shape::Float => format!("assert {lhs} == pytest.approx({rhs})"),
            _ if lit.flat_numbers => format!("assert {lhs} == pytest.approx({rhs})"),
            _ => format!("assert {lhs} == {rhs}"),
        };
        self.body.push(format!("{BODY}{line}"));
        self.out.asserted += 1;
        Ok(())
    }

    fn expect_stdout(&mut self, source: &str, want: &str, flags: Flags) {
        self.capsys = true;
        if self.stdout_dirty {
            self.body.push(format!("{BODY}capsys.readouterr()"));
        }
        self.push_code(source, BODY);
        let check = self.text_check("_doctest_text(capsys.readouterr().out)", want, flags);
        self.out.uses_printed = true;
        self.body.push(format!("{BODY}assert {check}"));
        self.stdout_dirty = false;
        self.out.asserted += 1;
    }

    /// A boolean expression comparing `got` (Python code for a string) with `want` the way
    /// doctest's output checker would under `flags`, elisions always allowed.
    fn text_check(&mut self, got: &str, want: &str, flags: Flags) -> String {
        let (got, want) = if flags.normalize_whitespace {
            (
                format!("\" \".join({got}.split())"),
                want.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        } else {
            (got.to_string(), want.to_string())
        };
        if want.contains("...") {
            self.out.uses_re = true;
            let pattern: Vec<String> = want.split("...").map(regex_escape).collect();
            format!(
                "re.fullmatch({}, {got}, re.DOTALL)",
                py_regex(&pattern.join(".*"))
            )
        } else if want.contains('\n') && want.len() > 60 {
            let lines: Vec<String> = want
                .split_inclusive('\n')
                .map(|l| format!("{BODY}{BODY}{}", py_str(l)))
                .collect();
            format!("{got} == (\n{}\n{BODY})", lines.join("\n"))
        } else {
            format!("{got} == {}", py_str(&want))
        }
    }

    fn push_code(&mut self, source: &str, prefix: &str) {
        self.body.push(indent_code(source, prefix));
    }

    fn function(&self, test_name: &str, title: &str) -> String {
        let mut out = String::new();
        let params = if self.capsys { "capsys" } else { "" };
        out.push_str(&format!("def {test_name}({params}):\n"));
        out.push_str(&format!("{BODY}{}\n", docstring_line(title)));
        if self.imports.is_empty() {
            out.push_str(&format!(
                "{BODY}importlib.import_module({})\n",
                py_str(self.ctx.module)
            ));
        } else {
            let names: Vec<&str> = self.imports.iter().map(String::as_str).collect();
            out.push_str(&import_line(self.ctx.module, &names));
        }
        if !self.shadowed_builtins.is_empty() {
            // The example rebinds a builtin it read earlier; at module level that works, in a
            // function the name would be local from the start.
            let names: Vec<&str> = self.shadowed_builtins.iter().map(String::as_str).collect();
            out.push_str(&import_line("builtins", &names));
        }
        for name in &self.namespace_used {
            // From the project's conftest `doctest_namespace`.
            for line in self.ctx.namespace[name].lines() {
                out.push_str(&format!("{BODY}{line}\n"));
            }
        }
        for line in &self.body {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

fn docstring_line(title: &str) -> String {
    let clean: String = title.chars().filter(|c| !c.is_control()).collect();
    format!(
        "\"\"\"{}\"\"\"",
        clean.replace('\\', "\\\\").replace('"', "'")
    )
}

fn import_line(module: &str, names: &[&str]) -> String {
    let one = format!("{BODY}from {module} import {}\n", names.join(", "));
    if one.len() <= 100 {
        return one;
    }
    let mut out = format!("{BODY}from {module} import (\n");
    for name in names {
        out.push_str(&format!("{BODY}{BODY}{name},\n"));
    }
    out.push_str(&format!("{BODY})\n"));
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceShape {
    /// One expression: doctest shows its repr.
    Expression,
    /// A simple statement, or several on one line.
    Simple { semicolons: bool },
    /// `for`, `with`, `if`, `def`...: a header and an indented body.
    Compound,
}

const STATEMENT_KEYWORDS: [&str; 21] = [
    "import", "from", "def", "class", "for", "while", "if", "with", "try", "del", "assert",
    "raise", "return", "pass", "break", "continue", "global", "nonlocal", "async", "match", "@",
];

fn classify(source: &str, tokens: &[Token]) -> SourceShape {
    let lines = lex::logical_lines(tokens);
    let Some(first) = lines.first() else {
        return SourceShape::Simple { semicolons: false };
    };
    let head = first[0].text(source);
    if lines.len() > 1
        || (STATEMENT_KEYWORDS.contains(&head)
            && first.last().is_some_and(|t| t.text(source) == ":"))
    {
        return SourceShape::Compound;
    }
    let semicolons = top_level_ops(source, first).any(|w| w == ";");
    if semicolons {
        return SourceShape::Simple { semicolons };
    }
    if STATEMENT_KEYWORDS.contains(&head) {
        return SourceShape::Simple { semicolons: false };
    }
    let assigns = top_level_ops(source, first).any(|w| w == "=" || is_assign_op(w));
    let annotated = first.len() >= 2 && first[1].text(source) == ":" && first[0].kind == Kind::Name;
    let lambda_first = head == "lambda";
    if (assigns && !lambda_first) || annotated {
        return SourceShape::Simple { semicolons: false };
    }
    SourceShape::Expression
}

fn is_assign_op(w: &str) -> bool {
    w.len() >= 2 && w.ends_with('=') && !matches!(w, "==" | "!=" | "<=" | ">=" | ":=")
}

fn top_level_ops<'a>(source: &'a str, line: &'a [Token]) -> impl Iterator<Item = &'a str> + 'a {
    let mut depth = 0usize;
    line.iter().filter_map(move |t| {
        let w = t.text(source);
        match w {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth = depth.saturating_sub(1),
            _ => {}
        }
        (t.kind == Kind::Op && depth == 0).then_some(w)
    })
}

/// Decides how an example with expected output must be checked.
fn check_for(source: &str, tokens: &[Token], shape: SourceShape) -> Result<Check, String> {
    match shape {
        SourceShape::Expression => {
            if outer_callee(source, tokens) == Some("print") {
                Ok(Check::Stdout)
            } else if prints(source, tokens) || writes_stdout(source, tokens) {
                // Named like a printer, it may return a value too, which doctest shows.
                Ok(Check::Shown)
            } else {
                Ok(Check::Value)
            }
        }
        SourceShape::Simple { semicolons: true } => {
            Err("puts several statements with output on one line".into())
        }
        SourceShape::Simple { semicolons: false } => Ok(Check::Stdout),
        SourceShape::Compound => {
            // Inside a compound statement doctest also shows the value of every expression
            // statement; only bodies whose expressions are all print calls are predictable.
            let lines = lex::logical_lines(tokens);
            for line in lines.iter().skip(1) {
                let inner = &source[line[0].start..line[line.len() - 1].end];
                let inner_tokens = lex::tokenize(inner);
                let inner_shape = classify(inner, &inner_tokens);
                if inner_shape == SourceShape::Expression && !prints(inner, &inner_tokens) {
                    return Err("shows values from inside a block".into());
                }
            }
            let head = lines[0][0].text(source);
            if matches!(head, "def" | "class" | "@") {
                return Err("defines something and expects output".into());
            }
            Ok(Check::Stdout)
        }
    }
}

/// A call to print or pprint (or a function named like one) as the whole expression.
fn prints(source: &str, tokens: &[Token]) -> bool {
    let Some(callee) = outer_callee(source, tokens) else {
        return false;
    };
    let last = callee.rsplit('.').next().unwrap_or(callee);
    matches!(last, "print" | "pprint" | "pp")
        || last.starts_with("print_")
        || last.starts_with("pprint_")
}

fn writes_stdout(source: &str, tokens: &[Token]) -> bool {
    outer_callee(source, tokens).is_some_and(|c| c.ends_with("stdout.write"))
}

/// For `a.b.c(...)` where the call spans the whole expression, `a.b.c`.
fn outer_callee<'a>(source: &'a str, tokens: &[Token]) -> Option<&'a str> {
    let code: Vec<&Token> = tokens
        .iter()
        .filter(|t| t.kind != Kind::Comment && t.kind != Kind::Newline)
        .collect();
    let mut i = 0;
    while i < code.len() && (code[i].kind == Kind::Name || code[i].text(source) == ".") {
        i += 1;
    }
    if i == 0 || code.get(i).map(|t| t.text(source)) != Some("(") {
        return None;
    }
    let mut depth = 0usize;
    for (j, t) in code.iter().enumerate().skip(i) {
        match t.text(source) {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth = depth.saturating_sub(1);
                if depth == 0 && j != code.len() - 1 {
                    return None;
                }
            }
            _ => {}
        }
    }
    source.get(code[0].start..code[i - 1].end)
}

/// Removes `# doctest: ...` comments; they mean nothing inside a pytest function.
fn strip_directives(source: &str) -> String {
    let tokens = lex::tokenize(source);
    let mut out = String::with_capacity(source.len());
    let mut last = 0;
    for t in tokens.iter().filter(|t| t.kind == Kind::Comment) {
        let text = t.text(source);
        if text[1..].trim_start().starts_with("doctest:") {
            out.push_str(source[last..t.start].trim_end_matches([' ', '\t']));
            last = t.end;
        }
    }
    out.push_str(&source[last..]);
    out
}

/// Indents each line of `source` by `prefix`, except lines that start inside a string.
fn indent_code(source: &str, prefix: &str) -> String {
    let tokens = lex::tokenize(source);
    let inside_string = |offset: usize| {
        tokens
            .iter()
            .any(|t| t.kind == Kind::Str && t.start < offset && offset < t.end)
    };
    let mut out = String::with_capacity(source.len() + 16);
    let mut offset = 0;
    for (n, line) in source.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        if inside_string(offset) {
            out.push_str(line);
        } else if line.trim().is_empty() {
            // No trailing whitespace on blank lines.
        } else {
            out.push_str(prefix);
            out.push_str(line);
        }
        offset += line.len() + 1;
    }
    out
}

/// Without comments, trimmed, and on one line if it already was.
fn code_only(source: &str) -> String {
    let tokens = lex::tokenize(source);
    let mut out = String::new();
    let mut last = 0;
    for t in tokens.iter().filter(|t| t.kind == Kind::Comment) {
        out.push_str(&source[last..t.start]);
        last = t.end;
    }
    out.push_str(&source[last..]);
    out.trim().to_string()
}

/// True when `expr` is a name, call, attribute or subscript chain, so `expr == x` needs no
/// parentheses around it.
fn is_primary(expr: &str) -> bool {
    let tokens = lex::tokenize(expr);
    let mut depth = 0usize;
    for t in &tokens {
        let w = t.text(expr);
        match w {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            "." => {}
            _ if t.kind == Kind::Name && !lex::is_keyword(w) => {}
            _ if matches!(t.kind, Kind::Number | Kind::Str) => {}
            "True" | "False" | "None" => {}
            _ => return false,
        }
    }
    true
}

fn lhs_expression(source: &str) -> String {
    let code = code_only(source);
    if !code.contains('\n') && is_primary(&code) {
        code
    } else {
        parenthesized(source)
    }
}

fn parenthesized(source: &str) -> String {
    format!("({})", inline_or_block(source))
}

/// The expression on one line when it fits there, else as an indented block whose closing
/// bracket (written by the caller) goes on its own line.
fn inline_or_block(source: &str) -> String {
    let code = code_only(source);
    if !code.contains('\n') {
        return code;
    }
    format!(
        "\n{}\n{BODY}",
        indent_code(source.trim_matches('\n'), &format!("{BODY}{BODY}"))
    )
}

fn indent_continuation(text: &str, prefix: &str) -> String {
    let mut lines = text.split('\n');
    let mut out = lines.next().unwrap_or("").to_string();
    for line in lines {
        out.push('\n');
        out.push_str(prefix);
        out.push_str(line);
    }
    out
}

fn strip_unicode_prefixes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let word_before = prev.is_some_and(|p| p.is_alphanumeric() || p == '_');
        let quote_next = matches!(chars.peek(), Some('\'') | Some('"'));
        if matches!(c, 'u' | 'U') && !word_before && quote_next {
            prev = Some(c);
            continue;
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

/// Whether doctest output `text` reads like a repr (`<...>`, `Name(...)`, a bracket, quote or
/// number) rather than printed prose.
fn looks_like_repr(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if matches!(first, '\'' | '"' | '-') || first.is_ascii_digit() {
        // A number or string on the first of several lines is printed output.
        return !text.contains('\n');
    }
    if matches!(first, '<' | '[' | '(' | '{') {
        return true;
    }
    let head: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    !head.is_empty() && text[head.len()..].starts_with('(')
}

/// Whether `source` reads the name `name` anywhere.
fn source_reads(source: &str, name: &str) -> bool {
    lex::tokenize(source)
        .iter()
        .any(|t| t.kind == Kind::Name && t.text(source) == name)
}

fn contains_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '.' | '^' | '$' | '*' | '+' | '?' | '{' | '}' | '[' | ']' | '\\' | '|' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out
}

/// A `re.search` pattern that accepts exactly the messages doctest would accept.
fn message_regex(message: &str, flags: Flags) -> String {
    let pieces: Vec<String> = message
        .split("...")
        .map(|piece| {
            if flags.normalize_whitespace {
                let words: Vec<String> = piece.split_whitespace().map(regex_escape).collect();
                let mut joined = words.join("\\s+");
                if piece.starts_with(char::is_whitespace) {
                    joined.insert_str(0, "\\s*");
                }
                if piece.ends_with(char::is_whitespace) {
                    joined.push_str("\\s*");
                }
                joined
            } else {
                regex_escape(piece)
            }
        })
        .collect();
    let body = pieces.join(".*");
    let dotall = if pieces.len() > 1 || message.contains('\n') {
        "(?s)"
    } else {
        ""
    };
    format!("{dotall}^{body}$")
}

/// Half a unit in the last written decimal place of the least precise float in `text`.
fn number_tolerance(text: &str) -> Option<String> {
    let tokens = lex::tokenize(text);
    let digits = tokens
        .iter()
        .filter(|t| t.kind == Kind::Number)
        .map(|t| t.text(text))
        .filter(|n| n.contains('.') && !n.to_ascii_lowercase().contains('e'))
        .map(|n| n.split('.').nth(1).map_or(0, str::len))
        .min()?;
    Some(format!("0.5e-{digits}"))
}

fn is_builtin(name: &str) -> bool {
    crate::pydata::BUILTINS.binary_search(&name).is_ok()
}

fn is_builtin_exception(name: &str) -> bool {
    crate::pydata::BUILTIN_EXCEPTIONS
        .binary_search(&name)
        .is_ok()
}

#[cfg(test)]
mod tests;
