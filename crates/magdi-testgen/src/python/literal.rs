//! Recognises expected outputs that are Python literals (numbers, strings, containers), so
//! they can be compared as values: a set or dict printed in one order still equals the same
//! value built in another, and floats get a tolerance.

use super::lex::{self, Kind, Token};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Int,
    Float,
    Str,
    Bool(bool),
    None,
    List,
    Tuple,
    Set,
    Dict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Literal {
    pub shape: Shape,
    /// A float somewhere inside.
    pub has_float: bool,
    /// A list, tuple or dict (values) made only of numbers, at least one a float: the shapes
    /// `pytest.approx` compares element by element.
    pub flat_numbers: bool,
    /// A string inside contains a space (matters under NORMALIZE_WHITESPACE).
    pub string_with_space: bool,
}

const MAX_DEPTH: usize = 64;

/// Parses `text` as one literal; `None` if it is anything else.
pub fn parse(text: &str) -> Option<Literal> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    let tokens: Vec<Token> = lex::tokenize(trimmed)
        .into_iter()
        .filter(|t| t.kind != Kind::Comment)
        .collect();
    let mut parser = Parser {
        src: trimmed,
        tokens: &tokens,
        pos: 0,
    };
    let value = parser.value(0)?;
    (parser.pos == tokens.len()).then_some(value.literal)
}

struct Parsed {
    literal: Literal,
    numeric: bool,
}

struct Parser<'a> {
    src: &'a str,
    tokens: &'a [Token],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<(Kind, &'a str)> {
        self.tokens
            .get(self.pos)
            .map(|t| (t.kind, t.text(self.src)))
    }

    fn eat(&mut self, op: &str) -> bool {
        if self.peek().is_some_and(|(k, t)| k == Kind::Op && t == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn scalar(shape: Shape) -> Parsed {
        let literal = Literal {
            shape,
            has_float: shape == Shape::Float,
            flat_numbers: false,
            string_with_space: false,
        };
        Parsed {
            literal,
            numeric: matches!(shape, Shape::Int | Shape::Float),
        }
    }

    fn value(&mut self, depth: usize) -> Option<Parsed> {
        if depth > MAX_DEPTH {
            return None;
        }
        let (kind, text) = self.peek()?;
        match kind {
            Kind::Number => {
                self.pos += 1;
                number_shape(text).map(Self::scalar)
            }
            Kind::Str => {
                let (prefix, body) = lex::split_string_token(text)?;
                if prefix.contains('f') {
                    return None;
                }
                let mut parsed = Self::scalar(Shape::Str);
                parsed.literal.string_with_space = body.contains(char::is_whitespace);
                self.pos += 1;
                Some(parsed)
            }
            Kind::Name => {
                self.pos += 1;
                match text {
                    "True" => Some(Self::scalar(Shape::Bool(true))),
                    "False" => Some(Self::scalar(Shape::Bool(false))),
                    "None" => Some(Self::scalar(Shape::None)),
                    "set" if self.eat("(") && self.eat(")") => Some(Self::scalar(Shape::Set)),
                    _ => None,
                }
            }
            Kind::Op if text == "-" || text == "+" => {
                self.pos += 1;
                let (kind, text) = self.peek()?;
                if kind != Kind::Number {
                    return None;
                }
                self.pos += 1;
                number_shape(text).map(Self::scalar)
            }
            Kind::Op if text == "[" => {
                self.pos += 1;
                self.items("]", Shape::List, depth)
            }
            Kind::Op if text == "(" => {
                self.pos += 1;
                self.items(")", Shape::Tuple, depth)
            }
            Kind::Op if text == "{" => {
                self.pos += 1;
                self.braces(depth)
            }
            _ => None,
        }
    }

    fn items(&mut self, close: &str, shape: Shape, depth: usize) -> Option<Parsed> {
        let mut acc = Acc::default();
        let mut count = 0;
        let mut trailing_comma = false;
        while !self.eat(close) {
            let item = self.value(depth + 1)?;
            acc.add(&item);
            count += 1;
            trailing_comma = self.eat(",");
            if !trailing_comma && self.peek().map(|(_, t)| t) != Some(close) {
                return None;
            }
        }
        if shape == Shape::Tuple && count == 1 && !trailing_comma {
            // `(1)` is just the number 1; keep it as a plain literal with its own shape.
            return None;
        }
        Some(acc.finish(shape))
    }

    fn braces(&mut self, depth: usize) -> Option<Parsed> {
        if self.eat("}") {
            return Some(Acc::default().finish(Shape::Dict));
        }
        let first = self.value(depth + 1)?;
        let is_dict = self.eat(":");
        let mut acc = Acc::default();
        let mut keys = Acc::default();
        if is_dict {
            keys.add(&first);
            acc.add(&self.value(depth + 1)?);
        } else {
            acc.add(&first);
        }
        loop {
            if self.eat("}") {
                break;
            }
            if !self.eat(",") {
                return None;
            }
            if self.eat("}") {
                break;
            }
            let item = self.value(depth + 1)?;
            if is_dict {
                keys.add(&item);
                if !self.eat(":") {
                    return None;
                }
                acc.add(&self.value(depth + 1)?);
            } else {
                acc.add(&item);
            }
        }
        if is_dict {
            let mut parsed = acc.finish(Shape::Dict);
            parsed.literal.has_float |= keys.has_float;
            parsed.literal.string_with_space |= keys.string_with_space;
            // Float keys would be compared approximately by nothing, so keep exact.
            parsed.literal.flat_numbers &= !keys.has_float;
            Some(parsed)
        } else {
            let mut parsed = acc.finish(Shape::Set);
            parsed.literal.flat_numbers = false;
            Some(parsed)
        }
    }
}

#[derive(Default)]
struct Acc {
    has_float: bool,
    all_numeric: bool,
    any: bool,
    string_with_space: bool,
}

impl Acc {
    fn add(&mut self, item: &Parsed) {
        self.all_numeric = if self.any {
            self.all_numeric && item.numeric
        } else {
            item.numeric
        };
        self.any = true;
        self.has_float |= item.literal.has_float;
        self.string_with_space |= item.literal.string_with_space;
    }

    fn finish(self, shape: Shape) -> Parsed {
        let literal = Literal {
            shape,
            has_float: self.has_float,
            flat_numbers: self.any && self.all_numeric && self.has_float,
            string_with_space: self.string_with_space,
        };
        Parsed {
            literal,
            numeric: false,
        }
    }
}

fn number_shape(text: &str) -> Option<Shape> {
    let lower = text.to_ascii_lowercase();
    if lower.ends_with('j') || lower.ends_with('l') {
        return None;
    }
    if lower.starts_with("0x") || lower.starts_with("0o") || lower.starts_with("0b") {
        return Some(Shape::Int);
    }
    if lower.contains(['.', 'e']) {
        return Some(Shape::Float);
    }
    // `012` is not valid Python 3.
    if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|b| b != b'0' && b != b'_') {
        return None;
    }
    Some(Shape::Int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_of_literals_are_literals() {
        assert_eq!(
            parse("[1, 'a', (2,), {3: None}]").unwrap().shape,
            Shape::List
        );
        assert_eq!(parse("{'b', 'a'}").unwrap().shape, Shape::Set);
        assert_eq!(parse("{}").unwrap().shape, Shape::Dict);
        assert_eq!(parse("set()").unwrap().shape, Shape::Set);
        assert_eq!(parse("-3").unwrap().shape, Shape::Int);
    }

    #[test]
    fn reprs_of_objects_and_elisions_are_not_literals() {
        assert_eq!(parse("Point(x=1, y=2)"), None);
        assert_eq!(parse("[1, 2, ...]"), None);
        assert_eq!(parse("<object at 0x1>"), None);
        assert_eq!(parse("1\n2"), None);
        assert_eq!(parse("(1+2j)"), None);
        assert_eq!(parse("(1)"), None);
    }

    #[test]
    fn flat_number_containers_with_a_float_can_be_approximated() {
        assert!(parse("[0.5, 1]").unwrap().flat_numbers);
        assert!(parse("{'a': 0.25}").unwrap().flat_numbers);
        assert!(!parse("[[0.5]]").unwrap().flat_numbers);
        assert!(!parse("[1, 2]").unwrap().flat_numbers);
        assert!(parse("[[0.5]]").unwrap().has_float);
    }

    #[test]
    fn deep_nesting_is_refused_rather_than_recursed() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse(&deep), None);
    }
}
