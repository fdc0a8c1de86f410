//! An incremental reader of Server-Sent Events, for providers' streams.

/// One event: its type (`message` when unnamed) and its data lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub data: String,
}

/// The largest event Magdi accepts from a provider; a bigger one is an error
/// rather than unbounded memory.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event from the model server was larger than {MAX_EVENT_BYTES} bytes")]
pub struct TooLarge;

/// Feed it bytes as they arrive; it hands back the complete events.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    /// A `\r` ended the last chunk; a `\n` starting the next belongs to it.
    after_cr: bool,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLarge> {
        let mut events = Vec::new();
        if chunk.is_empty() {
            // An empty read says nothing about a `\r` that ended the last one.
            return Ok(events);
        }
        let mut bytes = chunk;
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;

        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'\n' || b == b'\r' {
                self.pending.extend_from_slice(&bytes[start..i]);
                let line = std::mem::take(&mut self.pending);
                self.line(&line, &mut events);
                if b == b'\r' {
                    if i + 1 < bytes.len() {
                        if bytes[i + 1] == b'\n' {
                            i += 1;
                        }
                    } else {
                        self.after_cr = true;
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        self.pending.extend_from_slice(&bytes[start..]);
        if self.pending.len() + self.data.len() > MAX_EVENT_BYTES {
            return Err(TooLarge);
        }
        Ok(events)
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<Event>) {
        if line.is_empty() {
            if self.has_data {
                let event = if self.event.is_empty() {
                    "message".to_owned()
                } else {
                    std::mem::take(&mut self.event)
                };
                events.push(Event {
                    event,
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<Event> {
        let mut parser = Parser::new();
        input
            .chunks(piece)
            .flat_map(|c| parser.push(c).unwrap())
            .collect()
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let input =
            b"event: delta\r\ndata: {\"a\":1}\r\n\r\n: comment\n\ndata: one\ndata: two\n\rdata: x\r\r";
        let expected = vec![
            Event {
                event: "delta".into(),
                data: "{\"a\":1}".into(),
            },
            Event {
                event: "message".into(),
                data: "one\ntwo".into(),
            },
            Event {
                event: "message".into(),
                data: "x".into(),
            },
        ];
        for piece in 1..input.len() {
            assert_eq!(parse_in_pieces(input, piece), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn an_empty_piece_after_a_carriage_return_changes_nothing() {
        let mut parser = Parser::new();
        let mut events = parser.push(b"data: x\r").unwrap();
        events.extend(parser.push(b"").unwrap());
        events.extend(parser.push(b"\ndata: y\n\n").unwrap());
        assert_eq!(
            events,
            vec![Event {
                event: "message".into(),
                data: "x\ny".into(),
            }]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = Parser::new();
        let chunk = vec![b'a'; 1024 * 1024];
        let mut outcome = Ok(Vec::new());
        for _ in 0..10 {
            outcome = parser.push(&chunk);
            if outcome.is_err() {
                break;
            }
        }
        assert_eq!(outcome, Err(TooLarge));
    }
}
