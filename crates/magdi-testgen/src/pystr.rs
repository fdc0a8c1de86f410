//! Writing Python string literals for generated code.

/// A double-quoted Python string literal whose value is exactly `text`.
pub fn py_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            // Characters Python or editors may treat as line breaks or invisible marks.
            '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{80}'..='\u{9f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A regular expression as a raw string when that reads well, else a plain literal.
pub fn py_regex(pattern: &str) -> String {
    let trailing_backslashes = pattern.len() - pattern.trim_end_matches('\\').len();
    let raw_ok = !pattern.contains(['"', '\n', '\r'])
        && trailing_backslashes.is_multiple_of(2)
        && pattern
            .chars()
            .all(|c| !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'));
    if raw_ok {
        format!("r\"{pattern}\"")
    } else {
        py_str(pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(py_str("a\"b\\c\nd\x01é"), r#""a\"b\\c\nd\x01é""#);
    }

    #[test]
    fn regexes_are_raw_unless_they_hold_a_quote() {
        assert_eq!(py_regex(r"^a\(b\)$"), r#"r"^a\(b\)$""#);
        assert_eq!(py_regex("say \"hi\""), r#""say \"hi\"""#);
    }
}
