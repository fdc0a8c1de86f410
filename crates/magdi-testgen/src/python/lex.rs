//! A small Python tokenizer: enough to find statements, docstrings, names and literals.
//!
//! It never fails on odd input; text it cannot make sense of becomes an `Error` token, so
//! callers decide whether that matters (a docstring scan does not care, an example does).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Name,
    Number,
    Str,
    Op,
    Comment,
    /// The end of a logical line (only emitted outside brackets).
    Newline,
    /// An unterminated string or a stray character.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.start..self.end).unwrap_or("")
    }
}

const OPS3: [&str; 5] = ["**=", "//=", ">>=", "<<=", "..."];
const OPS2: [&str; 20] = [
    "**", "//", "==", "!=", "<=", ">=", "<<", ">>", "->", ":=", "+=", "-=", "*=", "/=", "%=", "&=",
    "|=", "^=", "@=", "<>",
];

pub fn tokenize(src: &str) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    let mut depth: usize = 0;
    while pos < bytes.len() {
        let Some(c) = src[pos..].chars().next() else {
            break;
        };
        let start = pos;
        match c {
            '\n' => {
                pos += 1;
                if depth == 0 {
                    tokens.push(Token {
                        kind: Kind::Newline,
                        start,
                        end: pos,
                    });
                }
            }
            ' ' | '\t' | '\r' | '\x0c' => pos += c.len_utf8(),
            '#' => {
                while pos < bytes.len() && bytes[pos] != b'\n' {
                    pos += 1;
                }
                tokens.push(Token {
                    kind: Kind::Comment,
                    start,
                    end: pos,
                });
            }
            '\\' => {
                // A line continuation joins two physical lines; anything else is a stray.
                pos += 1;
                if bytes.get(pos) == Some(&b'\r') {
                    pos += 1;
                }
                if bytes.get(pos) == Some(&b'\n') {
                    pos += 1;
                } else {
                    tokens.push(Token {
                        kind: Kind::Error,
                        start,
                        end: pos,
                    });
                }
            }
            '"' | '\'' => {
                let (end, ok) = scan_string(bytes, pos);
                pos = end;
                let kind = if ok { Kind::Str } else { Kind::Error };
                tokens.push(Token { kind, start, end });
            }
            c if c.is_ascii_digit()
                || (c == '.' && bytes.get(pos + 1).is_some_and(|b| b.is_ascii_digit())) =>
            {
                pos = scan_number(bytes, pos);
                tokens.push(Token {
                    kind: Kind::Number,
                    start,
                    end: pos,
                });
            }
            c if c == '_' || c.is_alphabetic() => {
                let mut end = pos;
                for (i, ch) in src[pos..].char_indices() {
                    if ch == '_' || ch.is_alphanumeric() {
                        end = pos + i + ch.len_utf8();
                    } else {
                        break;
                    }
                }
                let word = &src[pos..end];
                let quote = bytes.get(end).copied();
                if matches!(quote, Some(b'"') | Some(b'\'')) && is_string_prefix(word) {
                    let (send, ok) = scan_string(bytes, end);
                    pos = send;
                    let kind = if ok { Kind::Str } else { Kind::Error };
                    tokens.push(Token {
                        kind,
                        start,
                        end: pos,
                    });
                } else {
                    pos = end;
                    tokens.push(Token {
                        kind: Kind::Name,
                        start,
                        end,
                    });
                }
            }
            _ => {
                let rest = &src[pos..];
                let len = if OPS3.iter().any(|op| rest.starts_with(op)) {
                    3
                } else if OPS2.iter().any(|op| rest.starts_with(op)) {
                    2
                } else {
                    c.len_utf8()
                };
                match c {
                    '(' | '[' | '{' => depth = depth.saturating_add(1),
                    ')' | ']' | '}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                pos += len;
                tokens.push(Token {
                    kind: Kind::Op,
                    start,
                    end: pos,
                });
            }
        }
    }
    tokens
}

fn is_string_prefix(word: &str) -> bool {
    word.len() <= 2
        && !word.is_empty()
        && word
            .chars()
            .all(|c| matches!(c.to_ascii_lowercase(), 'r' | 'b' | 'u' | 'f'))
}

/// Scans a string starting at its opening quote; returns the end and whether it was closed.
fn scan_string(bytes: &[u8], open: usize) -> (usize, bool) {
    let quote = bytes[open];
    let triple = bytes.get(open + 1) == Some(&quote) && bytes.get(open + 2) == Some(&quote);
    let mut pos = if triple { open + 3 } else { open + 1 };
    while pos < bytes.len() {
        let b = bytes[pos];
        if b == b'\\' {
            // Raw strings also cannot end on an escaped quote, so one rule fits both kinds.
            pos += 2;
            continue;
        }
        if b == b'\n' && !triple {
            return (pos, false);
        }
        if b == quote {
            if !triple {
                return (pos + 1, true);
            }
            if bytes.get(pos + 1) == Some(&quote) && bytes.get(pos + 2) == Some(&quote) {
                return (pos + 3, true);
            }
        }
        pos += 1;
    }
    (bytes.len(), false)
}

fn scan_number(bytes: &[u8], start: usize) -> usize {
    let hex =
        bytes.get(start) == Some(&b'0') && matches!(bytes.get(start + 1), Some(b'x') | Some(b'X'));
    let mut pos = start;
    while pos < bytes.len() {
        let b = bytes[pos];
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' {
            pos += 1;
            if !hex && (b == b'e' || b == b'E') && matches!(bytes.get(pos), Some(b'+') | Some(b'-'))
            {
                pos += 1;
            }
        } else {
            break;
        }
    }
    pos
}

/// The string prefix letters (lowercased) and the body between the quotes.
pub fn split_string_token(text: &str) -> Option<(String, &str)> {
    let quote_at = text.find(['"', '\''])?;
    let prefix = text[..quote_at].to_ascii_lowercase();
    let rest = &text[quote_at..];
    let q = rest.as_bytes()[0];
    let triple = rest.len() >= 6 && rest.as_bytes()[1] == q && rest.as_bytes()[2] == q;
    let n = if triple { 3 } else { 1 };
    if rest.len() < 2 * n {
        return None;
    }
    Some((prefix, rest.get(n..rest.len() - n)?))
}

/// Decodes the value of a (non f-) string literal token, as Python would.
///
/// Returns `None` for escapes this decoder does not know (such as `\N{...}`), so the caller
/// can leave the text alone rather than guess.
pub fn decode_string(text: &str) -> Option<String> {
    let (prefix, body) = split_string_token(text)?;
    if prefix.contains('f') {
        return None;
    }
    if prefix.contains('r') {
        return Some(body.replace("\r\n", "\n"));
    }
    let bytes_literal = prefix.contains('b');
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if c != '\r' {
                out.push(c);
            }
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        match e {
            '\n' => {}
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
            }
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '0'..='7' => {
                let mut value = e.to_digit(8)?;
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(value)?);
            }
            'x' => out.push(hex_escape(&mut chars, 2)?),
            'u' if !bytes_literal => out.push(hex_escape(&mut chars, 4)?),
            'U' if !bytes_literal => out.push(hex_escape(&mut chars, 8)?),
            'N' if !bytes_literal => return None,
            other => {
                // Unknown escapes keep their backslash in Python.
                out.push('\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

fn hex_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize) -> Option<char> {
    let mut value = 0u32;
    for _ in 0..n {
        value = value.checked_mul(16)? + chars.next()?.to_digit(16)?;
    }
    char::from_u32(value)
}

/// The expressions inside an f-string's `{...}` fields, so their names can be found.
pub fn fstring_fields(body: &str) -> Vec<&str> {
    let bytes = body.as_bytes();
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes[pos] == b'{' {
            if bytes.get(pos + 1) == Some(&b'{') {
                pos += 2;
                continue;
            }
            let start = pos + 1;
            let mut depth = 1;
            pos += 1;
            while pos < bytes.len() && depth > 0 {
                match bytes[pos] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    _ => {}
                }
                pos += 1;
            }
            if let Some(field) = body.get(start..pos.saturating_sub(1)) {
                // The conversion (`!r`) and format spec (`:>10`) are not expressions.
                let end = field.find(['!', ':']).unwrap_or(field.len());
                fields.push(&field[..end]);
            }
        } else {
            pos += 1;
        }
    }
    fields
}

/// The visual column of byte offset `at`, counting tabs to the next multiple of eight.
pub fn column_of(src: &str, at: usize) -> usize {
    let line_start = src[..at.min(src.len())].rfind('\n').map_or(0, |i| i + 1);
    let mut col = 0;
    for c in src[line_start..at.min(src.len())].chars() {
        col = if c == '\t' {
            (col / 8 + 1) * 8
        } else {
            col + 1
        };
    }
    col
}

/// Splits tokens into logical lines (comments and newlines dropped).
pub fn logical_lines(tokens: &[Token]) -> Vec<Vec<Token>> {
    let mut lines = Vec::new();
    let mut current = Vec::new();
    for t in tokens {
        match t.kind {
            Kind::Newline => {
                if !current.is_empty() {
                    lines.push(std::mem::take(&mut current));
                }
            }
            Kind::Comment => {}
            _ => current.push(*t),
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

pub const KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

pub fn is_identifier(word: &str) -> bool {
    let mut chars = word.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c == '_' || c.is_alphanumeric()) && !is_keyword(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, &str)> {
        tokenize(src)
            .iter()
            .map(|t| (t.kind, t.text(src)))
            .collect()
    }

    #[test]
    fn strings_with_prefixes_and_escaped_quotes_are_single_tokens() {
        assert_eq!(
            kinds(r#"rb'a\'b' + "x""#),
            vec![
                (Kind::Str, r"rb'a\'b'"),
                (Kind::Op, "+"),
                (Kind::Str, "\"x\"")
            ]
        );
    }

    #[test]
    fn newlines_inside_brackets_do_not_end_the_logical_line() {
        let src = "f(1,\n  2)\nx";
        let lines = logical_lines(&tokenize(src));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1][0].text(src), "x");
    }

    #[test]
    fn an_unterminated_string_is_an_error_token() {
        assert_eq!(kinds("'abc\n")[0].0, Kind::Error);
    }

    #[test]
    fn string_escapes_decode_like_python() {
        assert_eq!(decode_string(r"'a\nb\x41\u00e9\\'").unwrap(), "a\nbAé\\");
        assert_eq!(decode_string(r"r'a\nb'").unwrap(), r"a\nb");
        assert_eq!(decode_string(r"'\d'").unwrap(), r"\d");
        assert_eq!(decode_string(r"'\N{DASH}'"), None);
    }

    #[test]
    fn fstring_fields_skip_doubled_braces_and_format_specs() {
        assert_eq!(fstring_fields("{{x}} {a.b!r} {c:>10}"), vec!["a.b", "c"]);
    }
}
