//! Phrase patterns over word tokens (syntax in `lexicon.rs`).

use super::text::Token;

#[derive(Debug, Clone, PartialEq)]
enum Elem {
    /// Any of these words; `true` = prefix match.
    Words(Vec<(String, bool)>),
    /// Up to n arbitrary words; `true` = commas may be crossed too.
    Gap(usize, bool),
}

/// A compiled phrase pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    elems: Vec<Elem>,
}

fn word_matches(alts: &[(String, bool)], w: &str) -> bool {
    alts.iter().any(|(a, prefix)| if *prefix { w.starts_with(a.as_str()) } else { w == a })
}

/// Does `word` match the single-word pattern `p` (`x`, `x*`, `a|b*`)?
pub fn word_is(p: &str, word: &str) -> bool {
    p.split('|').any(|a| match a.strip_suffix('*') {
        Some(stem) => word.starts_with(stem),
        None => word == a,
    })
}

impl Pattern {
    pub fn compile(src: &str) -> Pattern {
        let mut elems = Vec::new();
        for part in src.split_whitespace() {
            if let Some(n) = part.strip_prefix("~~") {
                elems.push(Elem::Gap(n.parse().unwrap_or(8), true));
            } else if let Some(n) = part.strip_prefix('~') {
                elems.push(Elem::Gap(n.parse().unwrap_or(3), false));
            } else {
                let alts = part
                    .split('|')
                    .filter(|a| !a.is_empty())
                    .map(|a| match a.strip_suffix('*') {
                        Some(stem) => (stem.to_lowercase(), true),
                        None => (a.to_lowercase(), false),
                    })
                    .collect();
                elems.push(Elem::Words(alts));
            }
        }
        Pattern { elems }
    }

    /// Every match in `tokens`, as (first token, one past the last token), left to right and
    /// not overlapping.
    pub fn find_all(&self, tokens: &[Token]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            if let Some(end) = self.match_at(tokens, i) {
                out.push((i, end));
                i = end.max(i + 1);
            } else {
                i += 1;
            }
        }
        out
    }

    fn match_at(&self, tokens: &[Token], start: usize) -> Option<usize> {
        if self.elems.is_empty() {
            return None;
        }
        self.rec(tokens, 0, start, false)
    }

    /// Match elems[k..] from token j; `skipped` = the one allowed skip is used.
    fn rec(&self, tokens: &[Token], k: usize, j: usize, skipped: bool) -> Option<usize> {
        if k == self.elems.len() {
            return Some(j);
        }
        match &self.elems[k] {
            Elem::Gap(n, commas) => {
                // Shortest gap first.
                for g in 0..=*n {
                    if j + g > tokens.len() {
                        break;
                    }
                    if g > 0 && !tokens[j + g - 1].word && !(*commas && tokens[j + g - 1].norm == ",") {
                        break;
                    }
                    if let Some(end) = self.rec(tokens, k + 1, j + g, skipped) {
                        return Some(end);
                    }
                }
                None
            }
            Elem::Words(alts) => {
                let t = tokens.get(j)?;
                if t.word && word_matches(alts, &t.norm) {
                    return self.rec(tokens, k + 1, j + 1, skipped);
                }
                if k == 0 || skipped || !t.word {
                    return None;
                }
                // "effusion-thickening": skip a word that a hyphen joins to the next.
                if tokens.get(j + 1).is_some_and(|n| n.joined) {
                    if let Some(end) = self.rec(tokens, k, j + 1, true) {
                        return Some(end);
                    }
                }
                // "effusion or thickening" / "and pericardial effusion": skip a word and a conjunction.
                let conj = |x: &Token| x.word && matches!(x.norm.as_str(), "and" | "or");
                if tokens.get(j + 1).is_some_and(conj) && tokens.get(j + 2).is_some_and(|x| x.word) {
                    if let Some(end) = self.rec(tokens, k, j + 2, true) {
                        return Some(end);
                    }
                }
                if conj(t) && tokens.get(j + 1).is_some_and(|x| x.word) && tokens.get(j + 2).is_some() {
                    if let Some(end) = self.rec(tokens, k, j + 2, true) {
                        return Some(end);
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::text::tokenize;
    use super::*;

    fn m(p: &str, s: &str) -> Vec<(usize, usize)> {
        Pattern::compile(p).find_all(&tokenize(s))
    }

    #[test]
    fn words_prefixes_alternatives_and_gaps() {
        assert_eq!(m("pleural effusion*", "small pleural effusions"), vec![(1, 3)]);
        assert_eq!(m("calcif* ~4 aort*", "calcific atheroma plaques in the aortic arch"), vec![(0, 6)]);
        assert!(m("calcif* ~2 aort*", "calcific atheroma plaques in the aortic arch").is_empty());
        assert_eq!(m("hiatal|hiatus hernia", "a hiatus hernia"), vec![(1, 3)]);
        // Gaps do not cross commas.
        assert!(m("heart ~3 enlarged", "heart, liver enlarged").is_empty());
        // `~~N` crosses commas.
        assert_eq!(m("plaque* ~~8 coronar*", "plaques in the arch, aorta, and coronary arteries"), vec![(0, 9)]);
    }

    #[test]
    fn hyphen_and_list_pairs_are_skipped_once() {
        assert_eq!(m("pleural thickening", "pleural effusion-thickening"), vec![(0, 3)]);
        assert_eq!(m("pericardial effusion", "pericardial thickening-effusion"), vec![(0, 3)]);
        assert_eq!(m("pleural thickening", "pleural effusion or thickening"), vec![(0, 4)]);
        assert_eq!(m("pleural effusion", "pleural and pericardial effusion"), vec![(0, 4)]);
        assert!(m("pleural thickening", "pleural effusion, thickening").is_empty());
    }
}
