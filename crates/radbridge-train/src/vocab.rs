//! A WordPiece vocabulary built from the training text, written as a BERT `vocab.txt` (one
//! token per line, id = line number) that [`radbridge_model::text::BertTokenizer`] reads.
//!
//! Layout: the special tokens `[PAD]` (id 0, BERT's `pad_token_id`), `[UNK]`, `[CLS]`, `[SEP]`,
//! `[MASK]`; then every word of the (cleaned, lower-cased) training text seen at least
//! `min_count` times, most frequent first (ties alphabetical); then every single character seen
//! plus the ASCII letters and digits, each also as a `##` continuation. With the characters
//! present, any word — also one the corpus never used, as in a paraphrased prompt — splits
//! into known pieces instead of becoming `[UNK]`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use radbridge_model::text::process_text;

pub const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Words of a text as BrgSA's prompt cleaning leaves them (lower case, `\w+` runs).
pub fn words(text: &str) -> Vec<String> {
    process_text(text).split_whitespace().map(String::from).collect()
}

/// Build the vocabulary from training texts.
pub fn build<'a>(texts: impl IntoIterator<Item = &'a str>, min_count: usize, max_size: usize) -> Vec<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut chars: BTreeSet<char> = ('a'..='z').chain('0'..='9').collect();
    for t in texts {
        for w in words(t) {
            chars.extend(w.chars());
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut vocab: Vec<String> = SPECIAL.iter().map(|s| s.to_string()).collect();
    let mut pieces: Vec<String> = Vec::new();
    for c in &chars {
        pieces.push(c.to_string());
        pieces.push(format!("##{c}"));
    }
    let mut ranked: Vec<(&String, &usize)> = counts.iter().filter(|(w, &n)| n >= min_count.max(1) && w.chars().count() > 1).collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let room = max_size.saturating_sub(vocab.len() + pieces.len());
    let seen: BTreeSet<&String> = pieces.iter().collect();
    let chosen: Vec<String> = ranked.into_iter().map(|(w, _)| w.clone()).filter(|w| !seen.contains(w)).take(room).collect();
    vocab.extend(chosen);
    vocab.extend(pieces);
    vocab
}

/// Write `vocab.txt` (atomically).
pub fn write(vocab: &[String], path: &Path) -> std::io::Result<()> {
    radbridge_volume::atomic::write_lines(path, vocab)
}

#[cfg(test)]
mod tests {
    use super::*;
    use radbridge_model::text::BertTokenizer;

    #[test]
    fn vocab_tokenises_seen_and_unseen_words() {
        let texts = ["There is a small right pleural effusion.", "No pleural effusion.", "Pleural thickening."];
        let v = build(texts.iter().copied(), 2, 1000);
        assert_eq!(&v[..5], &SPECIAL);
        assert_eq!(v[5], "pleural");
        assert!(v.contains(&"effusion".to_string()));
        assert!(!v.contains(&"small".to_string()), "seen once");
        let dir = std::env::temp_dir().join(format!("radbridge-vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("vocab.txt");
        write(&v, &p).unwrap();
        let tok = BertTokenizer::from_vocab_file(&p, true).unwrap();
        assert_eq!(tok.pad_id(), 0);
        let e = tok.encode("pleural effusion zebra", 16).unwrap();
        assert_eq!(e.tokens[..3], ["[CLS]", "pleural", "effusion"]);
        assert_eq!(&e.tokens[3..8], ["z", "##e", "##b", "##r", "##a"]);
        assert!(!e.tokens.iter().any(|t| t == "[UNK]"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
