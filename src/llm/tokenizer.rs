//! Token counting with a real BPE vocabulary (o200k_base, shipped inside the
//! binary), for providers that report no usage and for the prompt budget.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

fn bpe() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().expect("the embedded o200k_base vocabulary loads"))
}

/// Loads the vocabulary now, so that the first turn does not pay for it.
pub fn warm_up() {
    let _ = bpe();
}

/// Tokens in `text`. Blocking and CPU-bound: call from blocking code.
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    bpe().encode_ordinary(text).len() as u64
}

/// Tokens a chat message costs beyond its text (role and separators), as
/// OpenAI documents for its chat format.
pub const PER_MESSAGE_OVERHEAD: u64 = 4;

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_bpe_tokens_not_words() {
        assert_eq!(super::count(""), 0);
        assert_eq!(super::count("hello"), 1);
        assert!(super::count("internationalisation") > 1);
    }
}
