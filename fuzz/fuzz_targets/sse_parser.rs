//! The provider client's SSE parser: a stream fed in pieces, cut anywhere
//! (empty pieces included, as a network read may give), yields exactly the
//! events that the whole stream fed at once yields.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use magdi::llm::sse::{Event, Parser};

#[derive(Debug, Arbitrary)]
struct Input {
    stream: Vec<u8>,
    cuts: Vec<u16>,
}

fn feed<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Event> {
    let mut parser = Parser::new();
    let mut events = Vec::new();
    for piece in pieces {
        events.extend(
            parser
                .push(piece)
                .expect("a small stream is never too large"),
        );
    }
    events
}

fuzz_target!(|input: Input| {
    let stream = &input.stream[..];
    let whole = feed([stream]);

    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .map(|&cut| usize::from(cut) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        pieces.push(&stream[start..cut]);
        start = cut;
    }
    pieces.push(&stream[start..]);
    assert_eq!(feed(pieces.iter().copied()), whole, "cut at {pieces:?}");

    assert_eq!(feed(stream.chunks(1)), whole, "fed byte by byte");
});
