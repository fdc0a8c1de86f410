//! Splits a docstring into examples the way Python's `doctest` module does, so that what we
//! assert is what the project's own doctest run would have checked.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub ellipsis: bool,
    pub normalize_whitespace: bool,
    pub ignore_exception_detail: bool,
    pub skip: bool,
    pub dont_accept_blankline: bool,
    /// pytest's NUMBER: floats match to the precision written in the expected output.
    pub number: bool,
    /// pytest's ALLOW_UNICODE: `u'x'` in the expected output matches `'x'`.
    pub allow_unicode: bool,
}

impl Flags {
    /// Applies `+NAME` / `-NAME` options; returns false for a name we do not know.
    pub fn apply(&mut self, option: &str) -> bool {
        let (on, name) = match option.as_bytes().first() {
            Some(b'+') => (true, &option[1..]),
            Some(b'-') => (false, &option[1..]),
            _ => (true, option),
        };
        match name {
            "ELLIPSIS" => self.ellipsis = on,
            "NORMALIZE_WHITESPACE" => self.normalize_whitespace = on,
            "IGNORE_EXCEPTION_DETAIL" => self.ignore_exception_detail = on,
            "SKIP" => self.skip = on,
            "DONT_ACCEPT_BLANKLINE" => self.dont_accept_blankline = on,
            "NUMBER" => self.number = on,
            "ALLOW_UNICODE" => self.allow_unicode = on,
            "DONT_ACCEPT_TRUE_FOR_1"
            | "REPORT_UDIFF"
            | "REPORT_CDIFF"
            | "REPORT_NDIFF"
            | "REPORT_ONLY_FIRST_FAILURE"
            | "FAIL_FAST"
            | "ALLOW_BYTES" => {}
            _ => return false,
        }
        true
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The code, without prompts, lines joined by `\n`.
    pub source: String,
    /// The expected output, ending in `\n` when not empty.
    pub want: String,
    /// Directives written on this example (`# doctest: +ELLIPSIS`), as `+NAME`/`-NAME`.
    pub options: Vec<String>,
    /// 1-based line inside the docstring.
    pub line: usize,
}

/// Why a docstring's examples cannot be read at all; doctest itself would reject them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

pub fn parse(docstring: &str) -> Result<Vec<Example>, Malformed> {
    let text = expand_tabs(docstring);
    let lines: Vec<&str> = text.split('\n').collect();
    let mut examples = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(indent) = prompt_indent(lines[i], ">>>") else {
            i += 1;
            continue;
        };
        let first_line = i;
        check_blank_after_prompt(lines[i], indent)?;
        let mut source_lines = vec![lines[i]];
        i += 1;
        // Like doctest, any following line that starts with `...` continues the source.
        while i < lines.len() && prompt_indent(lines[i], "...").is_some() {
            let line = lines[i];
            let prefix = format!("{}.", " ".repeat(indent));
            if !line.starts_with(&prefix) {
                return Err(Malformed(format!(
                    "line {} has inconsistent indentation",
                    i + 1
                )));
            }
            check_blank_after_prompt(line, indent)?;
            source_lines.push(line);
            i += 1;
        }
        let mut want_lines = Vec::new();
        while i < lines.len()
            && !lines[i].trim_start_matches(' ').is_empty()
            && prompt_indent(lines[i], ">>>").is_none()
        {
            let line = lines[i];
            if line.len() - line.trim_start_matches(' ').len() < indent {
                return Err(Malformed(format!(
                    "line {} of the expected output is less indented than its example",
                    i + 1
                )));
            }
            want_lines.push(&line[indent..]);
            i += 1;
        }
        let source: Vec<&str> = source_lines
            .iter()
            .map(|l| l.get(indent + 4..).unwrap_or(""))
            .collect();
        let source = source.join("\n");
        let mut want = want_lines.join("\n");
        if !want.is_empty() {
            want.push('\n');
        }
        let options = directives(&source);
        examples.push(Example {
            source,
            want,
            options,
            line: first_line + 1,
        });
    }
    Ok(examples)
}

/// The indentation of a line that starts (after spaces) with `prompt`, if it does.
fn prompt_indent(line: &str, prompt: &str) -> Option<usize> {
    let rest = line.trim_start_matches(' ');
    rest.starts_with(prompt).then(|| line.len() - rest.len())
}

fn check_blank_after_prompt(line: &str, indent: usize) -> Result<(), Malformed> {
    match line.as_bytes().get(indent + 3) {
        None | Some(b' ') => Ok(()),
        Some(_) => Err(Malformed(format!(
            "`{}` lacks a blank after the prompt",
            line.trim()
        ))),
    }
}

fn expand_tabs(text: &str) -> String {
    if !text.contains('\t') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut col = 0;
    for c in text.chars() {
        match c {
            '\t' => {
                let n = 8 - col % 8;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            '\n' | '\r' => {
                out.push(c);
                col = 0;
            }
            _ => {
                out.push(c);
                col += 1;
            }
        }
    }
    out
}

/// `# doctest: +ELLIPSIS, -SKIP` comments at the end of the example's lines.
fn directives(source: &str) -> Vec<String> {
    let mut options = Vec::new();
    for line in source.lines() {
        // The directive may follow a `#` inside a string, so try every `#` on the line.
        let Some(rest) = line
            .match_indices('#')
            .find_map(|(at, _)| line[at + 1..].trim_start().strip_prefix("doctest:"))
        else {
            continue;
        };
        if rest.contains(['\'', '"']) {
            continue;
        }
        options.extend(
            rest.split([',', ' ', '\t'])
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    options
}

/// An expected exception: the text after the traceback header, split into name and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedError {
    /// As written, possibly dotted (`pkg.errors.Invalid`).
    pub name: String,
    /// Everything after `Name: `, without the final newline; `None` when nothing follows.
    pub message: Option<String>,
}

pub fn expected_error(want: &str) -> Option<ExpectedError> {
    let mut lines = want.lines();
    let header = lines.next()?.trim_end();
    if header != "Traceback (most recent call last):" && header != "Traceback (innermost last):" {
        return None;
    }
    // The stack lines are indented (or elided with `...`); the message starts at the first
    // line that begins with a word character.
    let rest: Vec<&str> = lines
        .skip_while(|l| {
            !l.chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .collect();
    let first = rest.first()?;
    let (name, first_message) = match first.find(':') {
        Some(at) => (
            &first[..at],
            Some(first[at + 1..].strip_prefix(' ').unwrap_or("")),
        ),
        None => (first.trim_end(), None),
    };
    if name.is_empty() || !name.split('.').all(super::lex::is_identifier) {
        return None;
    }
    let message = first_message.map(|m| {
        let mut all = vec![m];
        all.extend(rest[1..].iter().copied());
        all.join("\n")
    });
    Some(ExpectedError {
        name: name.to_string(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_continuations_and_outputs_are_split_like_doctest() {
        let doc = "Adds.\n\n    >>> def f(x):\n    ...     return x\n    >>> f(1)\n    1\n    >>> x = 2  # doctest: +SKIP\n\n    Tail.\n";
        let examples = parse(doc).unwrap();
        assert_eq!(examples.len(), 3);
        assert_eq!(examples[0].source, "def f(x):\n    return x");
        assert_eq!(examples[0].want, "");
        assert_eq!(examples[1].source, "f(1)");
        assert_eq!(examples[1].want, "1\n");
        assert_eq!(examples[2].options, vec!["+SKIP".to_string()]);
        assert_eq!(examples[1].line, 5);
    }

    #[test]
    fn a_prompt_without_a_blank_is_malformed() {
        assert!(parse(">>>x\n").is_err());
    }

    #[test]
    fn a_line_of_dots_right_after_the_source_belongs_to_the_source() {
        let examples = parse(">>> f()\n...\n").unwrap();
        assert_eq!(examples[0].source, "f()\n");
        assert_eq!(examples[0].want, "");
    }

    #[test]
    fn expected_errors_keep_the_dotted_name_and_every_message_line() {
        let want = "Traceback (most recent call last):\n  ...\npkg.Bad: first\nsecond\n";
        assert_eq!(
            expected_error(want),
            Some(ExpectedError {
                name: "pkg.Bad".into(),
                message: Some("first\nsecond".into())
            })
        );
        let bare = "Traceback (most recent call last):\nStopIteration\n";
        assert_eq!(expected_error(bare).unwrap().message, None);
    }
}
