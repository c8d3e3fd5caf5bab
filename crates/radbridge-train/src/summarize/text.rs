//! Sentence splitting and tokenisation of free-text radiology reports.
//!
//! Reports arrive as one run of text (CT-RATE: findings and impression joined, impression items
//! set off by `"` or `•`), or as lines with section headers (chest X-ray style). A sentence ends
//! at `.` followed by a space, a quote or the end, at `?` followed by a space (the `?` stays with
//! its sentence: it marks doubt), at a bullet, a stray quote, or a line break. Decimal points
//! ("5.4 mm") and abbreviations such as "e.g." do not end sentences.

/// One sentence of a report, as written (trimmed).
#[derive(Debug, Clone, PartialEq)]
pub struct Sentence {
    pub text: String,
}

/// A word or punctuation mark of a sentence, with its byte span in the sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Lower-case text of the token.
    pub norm: String,
    pub start: usize,
    pub end: usize,
    /// A word (letters/digits) rather than punctuation.
    pub word: bool,
    /// Joined to the previous word by a hyphen or slash ("effusion-thickening").
    pub joined: bool,
}

fn is_header(line: &str) -> bool {
    // "FINDINGS:", "IMPRESSION:", "PA AND LATERAL CHEST RADIOGRAPH:" — upper-case words and a colon.
    let t = line.trim();
    let Some(head) = t.split(':').next() else { return false };
    t.contains(':')
        && !head.is_empty()
        && head.len() < 60
        && head.chars().any(|c| c.is_ascii_uppercase())
        && !head.chars().any(|c| c.is_ascii_lowercase())
}

fn starts_item(line: &str) -> bool {
    let t = line.trim_start();
    let digits = t.trim_start_matches(|c: char| c.is_ascii_digit());
    (digits.len() < t.len() && (digits.starts_with('.') || digits.starts_with(')')))
        || t.starts_with('-')
        || t.starts_with('•')
        || t.starts_with('*')
}

/// Re-join hard-wrapped lines: a line break inside a paragraph is a space, unless a list item
/// or a section header starts the next line, or a header ends this one.
fn unwrap_lines(report: &str) -> String {
    let lines: Vec<&str> = report.lines().collect();
    let mut out = String::with_capacity(report.len());
    let mut soft = false;
    for (i, l) in lines.iter().enumerate() {
        out.push_str(if soft { l.trim() } else { l.trim_end() });
        soft = false;
        if let Some(next) = lines.get(i + 1) {
            let header_only = is_header(l) && l.split_once(':').is_some_and(|(_, rest)| rest.trim().is_empty());
            let hard = l.trim().is_empty() || next.trim().is_empty() || starts_item(next) || is_header(next) || header_only;
            out.push(if hard { '\n' } else { ' ' });
            soft = !hard;
        }
    }
    out
}

/// Split a report into sentences.
pub fn split_sentences(report: &str) -> Vec<Sentence> {
    let mut out = Vec::new();
    let report = unwrap_lines(report);
    for raw_line in report.split(['\n', '\r', '"', '•', '\u{201c}', '\u{201d}']) {
        let mut line = raw_line.trim();
        // Section headers: keep what follows the colon on the same line.
        if is_header(line) {
            line = line.split_once(':').map(|(_, rest)| rest.trim()).unwrap_or("");
        }
        // Numbered items "1." / "2)" at the start of a line.
        let l = line.trim_start_matches(|c: char| c.is_ascii_digit());
        if l.len() < line.len() && (l.starts_with(". ") || l.starts_with(") ")) {
            line = l[2..].trim();
        }
        split_line(line, &mut out);
    }
    out
}

fn split_line(line: &str, out: &mut Vec<Sentence>) {
    let bytes = line.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let at_end = i + 1 >= bytes.len();
        let next_space = !at_end && (bytes[i + 1] as char).is_whitespace();
        let ends = match c {
            b'.' => {
                // Not a decimal point, not a one-letter abbreviation ("e.g.", "i.e.").
                let prev_word: &str = line[start..i].rsplit(|ch: char| !ch.is_alphanumeric()).next().unwrap_or("");
                (at_end || next_space) && !(prev_word.len() == 1 && prev_word.chars().all(|ch| ch.is_ascii_lowercase()))
            }
            b'?' | b'!' => at_end || next_space,
            // Run-together impression items: "right pleura  Increased heart size".
            b' ' => {
                i > start
                    && bytes.get(i + 1) == Some(&b' ')
                    && line[i..].trim_start().starts_with(|ch: char| ch.is_uppercase())
                    && !line[start..i].trim().is_empty()
            }
            _ => false,
        };
        if ends {
            push(&line[start..=i], out);
            start = i + 1;
        }
        i += 1;
    }
    if start < line.len() {
        push(&line[start..], out);
    }
}

fn push(s: &str, out: &mut Vec<Sentence>) {
    let t = s.trim().trim_start_matches(['.', ',', ';', ' ', '-']).trim();
    if t.chars().any(|c| c.is_alphabetic()) {
        out.push(Sentence { text: t.to_string() });
    }
}

/// Tokens of a sentence: words (letters and digits) and single punctuation marks; hyphens and
/// slashes between words are dropped and mark the next word as joined.
pub fn tokenize(s: &str) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::new();
    let mut chars = s.char_indices().peekable();
    let mut pending_join = false;
    while let Some((i, c)) = chars.next() {
        if c.is_alphanumeric() {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                // Keep apostrophes inside words ("can't") and decimal points inside numbers.
                if d.is_alphanumeric()
                    || d == '\''
                    || (d == '.' && s[..j].ends_with(|x: char| x.is_ascii_digit()) && s[j + 1..].starts_with(|x: char| x.is_ascii_digit()))
                {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let joined = pending_join && out.last().is_some_and(|t| t.word);
            out.push(Token { norm: s[i..end].to_lowercase(), start: i, end, word: true, joined });
            pending_join = false;
        } else if c == '-' || c == '/' || c == '\u{2013}' {
            pending_join = true;
        } else if c.is_whitespace() {
            pending_join = false;
        } else {
            pending_join = false;
            out.push(Token { norm: c.to_string(), start: i, end: i + c.len_utf8(), word: false, joined: false });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_full_stops_quotes_and_bullets_not_decimals() {
        let s =
            split_sentences("Nodule of 5.4 mm was observed. No effusion was seen (cyst?) here. \" Impression one. • Two  Three  and four");
        let t: Vec<&str> = s.iter().map(|x| x.text.as_str()).collect();
        assert_eq!(
            t,
            vec!["Nodule of 5.4 mm was observed.", "No effusion was seen (cyst?) here.", "Impression one.", "Two", "Three  and four"]
        );
    }

    #[test]
    fn headers_and_numbers_are_stripped() {
        let s = split_sentences("FINDINGS: Heart is enlarged.\nIMPRESSION:\n\n1. Cardiomegaly.\n2. No effusion, e.g. none.");
        let t: Vec<&str> = s.iter().map(|x| x.text.as_str()).collect();
        assert_eq!(t, vec!["Heart is enlarged.", "Cardiomegaly.", "No effusion, e.g. none."]);
        // Hard-wrapped lines join into one sentence.
        let s =
            split_sentences("CHEST, AP:  Tube tip is in the duodenum.  Thoracic aorta\n is tortuous and calcified.\n\nIMPRESSION: Stable.");
        let t: Vec<&str> = s.iter().map(|x| x.text.as_str()).collect();
        assert_eq!(t, vec!["Tube tip is in the duodenum.", "Thoracic aorta is tortuous and calcified.", "Stable."]);
    }

    #[test]
    fn hyphens_join_words() {
        let t = tokenize("Pleural effusion-thickening, 5.4 mm");
        let n: Vec<&str> = t.iter().map(|x| x.norm.as_str()).collect();
        assert_eq!(n, vec!["pleural", "effusion", "thickening", ",", "5.4", "mm"]);
        assert!(t[2].joined && !t[1].joined);
    }
}
