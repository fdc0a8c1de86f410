//! Token counting with a real BPE vocabulary (o200k_base, shipped inside the
//! binary), for providers that report no usage and for the prompt budget.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

fn bpe() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().expect("the embedded o200k_base vocabulary loads"))
}

/// BPE merges within one pre-tokenised piece take time that grows with the
/// square of its length, and a long run of letters (a minified file, a base64
/// blob, a million `A`s) is a single piece. So text is counted in pieces: a
/// run without whitespace is cut every `MAX_RUN_BYTES`, and pieces end after
/// whitespace once they pass `PIECE_BYTES`. For prose the sum equals a whole
/// count to within a token per cut.
const MAX_RUN_BYTES: usize = 64;
const PIECE_BYTES: usize = 4096;

/// Tokens in `text`. Blocking and CPU-bound: call from blocking code.
pub fn count(text: &str) -> u64 {
    let bpe = bpe();
    let mut total = 0u64;
    let mut start = 0;
    let mut run = 0;
    for (at, c) in text.char_indices() {
        let end = at + c.len_utf8();
        if c.is_whitespace() {
            run = 0;
            if end - start >= PIECE_BYTES {
                total += bpe.encode_ordinary(&text[start..end]).len() as u64;
                start = end;
            }
        } else {
            run += c.len_utf8();
            if run >= MAX_RUN_BYTES {
                total += bpe.encode_ordinary(&text[start..end]).len() as u64;
                start = end;
                run = 0;
            }
        }
    }
    if start < text.len() {
        total += bpe.encode_ordinary(&text[start..]).len() as u64;
    }
    total
}

/// Tokens a chat message costs beyond its text (role and separators), as
/// OpenAI documents for its chat format.
pub const PER_MESSAGE_OVERHEAD: u64 = 4;

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_are_bpe_tokens_not_words() {
        assert_eq!(count(""), 0);
        assert_eq!(count("hello"), 1);
        assert!(count("internationalisation") > 1);
    }

    #[test]
    fn a_megabyte_of_one_character_is_counted_quickly_and_without_a_crash() {
        let started = std::time::Instant::now();
        let n = count(&"A".repeat(1024 * 1024));
        assert!(n > 1000, "{n}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn long_prose_counts_about_the_same_in_pieces() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(2000);
        let whole = super::bpe().encode_ordinary(&text).len() as u64;
        let pieces = count(&text);
        assert!(pieces.abs_diff(whole) <= whole / 100, "{pieces} vs {whole}");
    }
}
