//! Prompt text for BERT: BrgSA's cleaning step (`CLIPProjDict.process_text`) and a BERT
//! WordPiece tokenizer equivalent to Hugging Face's `BertTokenizer` (lower-casing, accent
//! stripping, CJK and punctuation splitting, WordPiece with `##` continuations, `[CLS] … [SEP]`,
//! truncation to a maximum length, optional padding).
//!
//! The tokenizer is the `tokenizers` crate pipeline that Hugging Face's own `BertTokenizerFast`
//! uses (BertNormalizer + BertPreTokenizer + WordPiece + BertProcessing), built from a
//! `vocab.txt` or loaded from a `tokenizer.json`.

use std::path::Path;

use crate::error::{ModelError, Result};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// BrgSA's prompt cleaning, step for step as `CLIPProjDict.process_text`:
/// "\n" → " "; split on the regex `[0-9]+\.`, then each piece on "."; in each sentence replace
/// "\u{FFFD}\u{FFFD}" by " ", lower-case, take the `\w+` tokens; drop sentences with at most one
/// token; remove the non-ASCII characters of each token (dropping tokens left empty); join the
/// tokens with " " and the sentences with " ".
///
/// `\w` is Python's Unicode word class (letters, digits, underscore); it is approximated here
/// by `char::is_alphanumeric() || '_'`, which agrees on all ASCII text and differs only for
/// rare combining marks (which the ASCII filter removes anyway).
pub fn process_text(text: &str) -> String {
    let text = text.replace('\n', " ");
    let mut sentences = Vec::new();
    for point in split_numbered_points(&text) {
        for sent in point.split('.') {
            let sent = sent.replace("\u{FFFD}\u{FFFD}", " ").to_lowercase();
            let tokens = word_tokens(&sent);
            if tokens.len() <= 1 {
                continue;
            }
            let kept: Vec<String> =
                tokens.iter().map(|t| t.chars().filter(char::is_ascii).collect::<String>()).filter(|t| !t.is_empty()).collect();
            sentences.push(kept.join(" "));
        }
    }
    sentences.join(" ")
}

/// Python `re.split(r"[0-9]+\.", text)`: the pieces between matches of one or more ASCII
/// digits followed by a full stop.
fn split_numbered_points(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'.' {
                pieces.push(&text[start..i]);
                start = j + 1;
                i = j + 1;
            } else {
                // No match can start inside this run of digits.
                i = j;
            }
        } else {
            i += 1;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// NLTK `RegexpTokenizer(r"\w+").tokenize`: maximal runs of word characters.
fn word_tokens(text: &str) -> Vec<&str> {
    let is_word = |c: char| c == '_' || c.is_alphanumeric();
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_word(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(&text[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// A tokenised sequence, ready for [`super::bert::BertModel::forward`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    pub tokens: Vec<String>,
}

impl Encoding {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of real (unmasked) tokens. Padding is always at the end.
    pub fn real_len(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }

    /// The same encoding without its padding.
    pub fn unpadded(&self) -> Encoding {
        let n = self.real_len();
        Encoding {
            ids: self.ids[..n].to_vec(),
            type_ids: self.type_ids[..n].to_vec(),
            attention_mask: self.attention_mask[..n].to_vec(),
            tokens: self.tokens[..n].to_vec(),
        }
    }

    /// Pads (right) to `len` with `pad_id` / `pad_token`, type 0, mask 0; longer encodings are
    /// returned unchanged.
    pub fn padded(&self, len: usize, pad_id: u32, pad_token: &str) -> Encoding {
        let mut e = self.clone();
        while e.ids.len() < len {
            e.ids.push(pad_id);
            e.type_ids.push(0);
            e.attention_mask.push(0);
            e.tokens.push(pad_token.to_string());
        }
        e
    }
}

/// Hugging Face-compatible BERT tokenizer.
#[derive(Clone)]
pub struct BertTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    pad_token: String,
    cls_id: u32,
    sep_id: u32,
}

impl std::fmt::Debug for BertTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("cls_id", &self.cls_id)
            .field("sep_id", &self.sep_id)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

impl BertTokenizer {
    /// From a WordPiece `vocab.txt` (one token per line, id = line number), with
    /// `BertTokenizer`'s defaults: `do_lower_case` (which also strips accents), CJK splitting,
    /// text cleaning, `[UNK]`, `##` continuations, at most 100 characters per word.
    pub fn from_vocab_file(path: impl AsRef<Path>, lowercase: bool) -> Result<Self> {
        let path = path.as_ref();
        let bad = |reason: String| ModelError::Tokenizer { path: path.to_path_buf(), reason };
        let path_str = path.to_str().ok_or_else(|| bad("non-UTF-8 path".into()))?;
        let wp = WordPiece::from_file(path_str)
            .unk_token("[UNK]".into())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(100)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let mut tok = Tokenizer::new(wp);
        tok.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase))).map_err(|e| bad(e.to_string()))?;
        tok.with_pre_tokenizer(Some(BertPreTokenizer));
        let id = |t: &str| tok.token_to_id(t).ok_or_else(|| bad(format!("vocabulary has no {t}")));
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        tok.with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))));
        // As in Hugging Face, special tokens written in the text are kept whole.
        let specials: Vec<AddedToken> =
            SPECIAL.iter().filter(|t| tok.token_to_id(t).is_some()).map(|t| AddedToken::from(t.to_string(), true)).collect();
        tok.add_special_tokens(specials).map_err(|e| bad(e.to_string()))?;
        Self::wrap(tok, path)
    }

    /// From a Hugging Face `tokenizer.json`. Any truncation or padding configured in the file is
    /// replaced by the arguments of [`BertTokenizer::encode`].
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let tok = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
        Self::wrap(tok, path)
    }

    /// From a model folder: `tokenizer.json` if present, otherwise `vocab.txt` with
    /// `do_lower_case` from `tokenizer_config.json` (default true).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let json = dir.join("tokenizer.json");
        if json.exists() {
            return Self::from_tokenizer_json(json);
        }
        let vocab = dir.join("vocab.txt");
        if !vocab.exists() {
            return Err(ModelError::Invalid { path: dir.to_path_buf(), reason: "neither tokenizer.json nor vocab.txt".into() });
        }
        let mut lowercase = true;
        let cfg = dir.join("tokenizer_config.json");
        if cfg.exists() {
            let text = std::fs::read_to_string(&cfg).map_err(ModelError::io(&cfg, "cannot read"))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(ModelError::json(&cfg, "invalid tokenizer configuration"))?;
            if let Some(b) = v.get("do_lower_case").and_then(|b| b.as_bool()) {
                lowercase = b;
            }
        }
        Self::from_vocab_file(vocab, lowercase)
    }

    /// `path`: the file the tokenizer came from (named in errors).
    fn wrap(mut inner: Tokenizer, path: &Path) -> Result<Self> {
        let bad = |reason: String| ModelError::Tokenizer { path: path.to_path_buf(), reason };
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| bad(e.to_string()))?;
        let id = |t: &str| inner.token_to_id(t).ok_or_else(|| bad(format!("tokenizer has no {t}")));
        let (cls_id, sep_id) = (id("[CLS]")?, id("[SEP]")?);
        let pad_id = id("[PAD]").unwrap_or(0);
        Ok(Self { pad_id, pad_token: "[PAD]".into(), cls_id, sep_id, inner })
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    pub fn cls_id(&self) -> u32 {
        self.cls_id
    }
    pub fn sep_id(&self) -> u32 {
        self.sep_id
    }
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// `[CLS] tokens [SEP]`, truncated (tokens dropped from the end) to at most `max_len`
    /// tokens including the specials; no padding.
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Encoding> {
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| ModelError::Encode { reason: e.to_string() })?;
        let e = tok.encode(text, true).map_err(|e| ModelError::Encode { reason: e.to_string() })?;
        Ok(Encoding {
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
            attention_mask: e.get_attention_mask().to_vec(),
            tokens: e.get_tokens().to_vec(),
        })
    }

    /// As [`BertTokenizer::encode`], padded with `[PAD]` to exactly `max_len` (Hugging Face's
    /// `truncation=True, padding="max_length"`).
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Result<Encoding> {
        Ok(self.encode(text, max_len)?.padded(max_len, self.pad_id, &self.pad_token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_matches_brgsa() {
        assert_eq!(process_text("There is Cardiomegaly"), "there is cardiomegaly");
        // Numbered points and sentences; one-word sentences are dropped.
        assert_eq!(
            process_text("1. Mild cardiomegaly.\n2. No effusion. Normal. 10 mm nodule"),
            "mild cardiomegaly no effusion 10 mm nodule"
        );
        // Digits not followed by a full stop stay; "3." of a decimal number is a split point.
        assert_eq!(process_text("lesion of 3.5 cm size"), "lesion of 5 cm size");
        // Punctuation separates tokens; non-ASCII characters are removed from tokens.
        assert_eq!(process_text("Pleural-effusion, (left) naïve café"), "pleural effusion left nave caf");
        // A sentence whose tokens are all non-ASCII leaves an empty piece, as in Python.
        assert_eq!(process_text("ab cd. ü ß. ef gh"), "ab cd  ef gh");
        assert_eq!(process_text(""), "");
        assert_eq!(process_text("Emphysema"), "");
        assert_eq!(process_text("under_score x"), "under_score x");
    }

    #[test]
    fn numbered_point_split_is_python_re_split() {
        assert_eq!(split_numbered_points("a1.b22.c"), vec!["a", "b", "c"]);
        assert_eq!(split_numbered_points("12 3."), vec!["12 ", ""]);
        assert_eq!(split_numbered_points("x.1"), vec!["x.1"]);
    }

    #[test]
    fn wordpiece_from_vocab() {
        let dir = std::env::temp_dir().join(format!("radbridge-vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthere\nis\ncardio\n##me\n##galy\n,\ncafe\n";
        let p = dir.join("vocab.txt");
        std::fs::write(&p, vocab).unwrap();
        let tok = BertTokenizer::from_dir(&dir).unwrap();
        let e = tok.encode("There is Cardiomegaly, Café xyz", 97).unwrap();
        assert_eq!(e.tokens, ["[CLS]", "there", "is", "cardio", "##me", "##galy", ",", "cafe", "[UNK]", "[SEP]"]);
        assert_eq!(e.ids, [2, 5, 6, 7, 8, 9, 10, 11, 1, 3]);
        assert_eq!(e.type_ids, vec![0; 10]);
        let t = tok.encode("there is cardiomegaly", 4).unwrap();
        assert_eq!(t.tokens, ["[CLS]", "there", "is", "[SEP]"]);
        let p = tok.encode_padded("there is", 6).unwrap();
        assert_eq!(p.ids, [2, 5, 6, 3, 0, 0]);
        assert_eq!(p.attention_mask, [1, 1, 1, 1, 0, 0]);
        assert_eq!(p.real_len(), 4);
        assert_eq!(p.unpadded().ids, [2, 5, 6, 3]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
