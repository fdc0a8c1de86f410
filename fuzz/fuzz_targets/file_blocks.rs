//! The reply file-block parser: any reply text, no panic, and what it finds is
//! really in the reply: whole lines of it, under a non-empty path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use magdi::workspace::file_blocks;

fuzz_target!(|reply: &str| {
    let blocks = file_blocks(reply);

    // A block needs an opening and a closing fence line.
    assert!(blocks.len() <= reply.lines().count() / 2);
    let mut searched_from = 0;
    for block in &blocks {
        assert!(!block.path.is_empty(), "a block with an empty path");
        assert!(
            block.content.is_empty() || block.content.ends_with('\n'),
            "a block's content does not end with a whole line: {:?}",
            block.content
        );
        // Blocks come in the order of the reply and do not overlap.
        let Some(at) = reply[searched_from..].find(&block.content) else {
            panic!(
                "{:?} is not in the reply after the previous block",
                block.content
            );
        };
        searched_from += at + block.content.len();
    }
});
