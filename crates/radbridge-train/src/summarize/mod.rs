//! Report summarisation: free-text radiology reports → short finding sentences and a
//! present / absent / uncertain status per label (the BrgSA paper's LLM summary step, done
//! deterministically by default).
//!
//! [`Builtin`] splits a report into sentences, finds label mentions with a lexicon of synonyms
//! (`lexicon.rs`), and reads negation and uncertainty scopes in the NegEx style (`negex.rs`).
//! [`ChatEndpoint`] sends the report to an OpenAI-compatible chat server (llama.cpp, vLLM) that
//! the user configures; nothing touches the network otherwise.
//!
//! Per label, a report's status is the strongest of its mentions: present > uncertain >
//! absent; a label never mentioned is absent with empty evidence.

pub mod endpoint;
pub mod lexicon;
pub mod negex;
pub mod pattern;
pub mod text;

use serde::{Deserialize, Serialize};

pub use endpoint::ChatEndpoint;

use negex::NegEx;
use pattern::Pattern;
use radbridge_model::zeroshot;
use text::Token;

/// A finding's status in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Present,
    Absent,
    Uncertain,
}

impl Status {
    fn rank(self) -> u8 {
        match self {
            Status::Absent => 0,
            Status::Uncertain => 1,
            Status::Present => 2,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Present => "present",
            Status::Absent => "absent",
            Status::Uncertain => "uncertain",
        }
    }
}

/// One label's status in a report, with the report words it rests on ("" when not mentioned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelFinding {
    pub label: String,
    pub status: Status,
    pub evidence: String,
}

/// A summarised report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub id: Option<String>,
    /// Short finding sentences: "There is a small right pleural effusion.", "There is no pneumothorax."
    pub sentences: Vec<String>,
    /// One entry per label of the summariser's label list, in that order.
    pub findings: Vec<LabelFinding>,
    /// The status each sentence states, parallel to `sentences` where the summariser knows it
    /// (the built-in one does; an endpoint's free sentences leave it empty). Not serialised.
    #[serde(skip)]
    pub sentence_status: Vec<Status>,
}

impl Summary {
    pub fn status(&self, label: &str) -> Option<Status> {
        self.findings.iter().find(|f| f.label == label).map(|f| f.status)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    #[error("empty report")]
    Empty,
    #[error("chat endpoint {url}: {message}")]
    Endpoint { url: String, message: String },
    #[error("chat endpoint {url}: unreadable answer: {message}")]
    BadAnswer { url: String, message: String },
}

/// Anything that turns a report into a [`Summary`].
pub trait Summarizer {
    fn summarize(&self, report: &str) -> Result<Summary, SummarizeError>;
}

/// The label sets a summary covers by default: CT-RATE, CT-RATE-LT and the extended set,
/// each label once, in that order.
pub fn default_labels() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for set in ["ct-rate", "ct-rate-lt", "ct-rate-extended"] {
        for l in zeroshot::label_set(set).unwrap_or_default() {
            if !out.contains(&l) {
                out.push(l);
            }
        }
    }
    out
}

struct Group {
    patterns: Vec<Pattern>,
    veto_before: Vec<&'static str>,
    veto_after: Vec<Pattern>,
    /// (veto, unless) clause rules.
    rules: Vec<(&'static [&'static str], &'static [&'static str])>,
}

struct CompiledLabel {
    label: String,
    groups: Vec<Group>,
}

/// One mention of a label in a sentence.
#[derive(Debug, Clone)]
pub struct Mention {
    pub label: String,
    pub status: Status,
    /// The clause the status was read from, as written.
    pub evidence: String,
    /// The finding phrase with its modifiers, as written ("sliding type hiatal hernia").
    pub phrase: String,
    /// The phrase's head noun is plural ("nodules").
    pub plural: bool,
    pub sentence: usize,
}

/// The built-in deterministic summariser.
pub struct Builtin {
    labels: Vec<CompiledLabel>,
    negex: NegEx,
}

impl Default for Builtin {
    fn default() -> Self {
        Self::new()
    }
}

impl Builtin {
    /// Covers [`default_labels`].
    pub fn new() -> Builtin {
        Self::with_labels(&default_labels())
    }

    /// Covers the given labels; a label without a lexicon entry is matched by its own name.
    pub fn with_labels(labels: &[String]) -> Builtin {
        let labels = labels
            .iter()
            .map(|l| {
                let mut groups: Vec<Group> = lexicon::entries(l)
                    .map(|en| Group {
                        patterns: en.patterns.iter().map(|p| Pattern::compile(p)).collect(),
                        veto_before: en.veto_before.to_vec(),
                        veto_after: en.veto_after.iter().map(|p| Pattern::compile(p)).collect(),
                        rules: std::iter::once((en.veto_clause, en.unless_clause))
                            .chain(en.more_rules.iter().copied())
                            .filter(|(v, _)| !v.is_empty())
                            .collect(),
                    })
                    .collect();
                // The label's own name always matches (under its first entry's vetoes).
                let own = Pattern::compile(&l.to_lowercase());
                match groups.first_mut() {
                    Some(g) => g.patterns.insert(0, own),
                    None => groups.push(Group { patterns: vec![own], veto_before: vec![], veto_after: vec![], rules: vec![] }),
                }
                CompiledLabel { label: l.clone(), groups }
            })
            .collect();
        Builtin { labels, negex: NegEx::new() }
    }

    pub fn labels(&self) -> Vec<String> {
        self.labels.iter().map(|l| l.label.clone()).collect()
    }

    /// Every label mention of a report, sentence by sentence.
    pub fn mentions(&self, report: &str) -> Vec<Mention> {
        let mut out = Vec::new();
        for (si, sentence) in text::split_sentences(report).iter().enumerate() {
            let s = &sentence.text;
            let tokens = text::tokenize(s);
            for cl in &self.labels {
                let mut spans: Vec<(usize, usize)> = Vec::new();
                for g in &cl.groups {
                    for p in &g.patterns {
                        for (a, b) in p.find_all(&tokens) {
                            if spans.iter().any(|&(x, y)| a < y && x < b) || vetoed(g, &tokens, a, b, self.negex.clause(&tokens, a, b)) {
                                continue;
                            }
                            spans.push((a, b));
                        }
                    }
                }
                spans.sort();
                for (a, b) in spans {
                    let (status, (cs, ce)) = self.negex.status(&tokens, a, b);
                    let (ph, plural) = phrase(s, &tokens, a, b, cs, ce);
                    out.push(Mention {
                        label: cl.label.clone(),
                        status,
                        evidence: span_text(s, &tokens, cs, ce),
                        phrase: ph,
                        plural,
                        sentence: si,
                    });
                }
            }
        }
        out
    }
}

fn vetoed(g: &Group, tokens: &[Token], a: usize, b: usize, (cs, ce): (usize, usize)) -> bool {
    let before = &tokens[a.saturating_sub(3).max(cs)..a];
    if before.iter().any(|t| t.word && g.veto_before.iter().any(|v| pattern::word_is(v, &t.norm))) {
        return true;
    }
    let after = &tokens[b..(b + 3).min(tokens.len())];
    if g.veto_after.iter().any(|p| p.find_all(after).first().is_some_and(|&(x, _)| x == 0)) {
        return true;
    }
    let clause = &tokens[cs..ce];
    let has = |list: &[&str]| clause.iter().any(|t| t.word && list.iter().any(|v| pattern::word_is(v, &t.norm)));
    g.rules.iter().any(|(veto, unless)| has(veto) && !has(unless))
}

/// Text of tokens a..b as written, trimmed of edge punctuation.
fn span_text(s: &str, tokens: &[Token], a: usize, b: usize) -> String {
    if a >= b || b > tokens.len() {
        return String::new();
    }
    let mut a = a;
    let mut b = b;
    while a < b && !tokens[a].word {
        a += 1;
    }
    while b > a && !tokens[b - 1].word && tokens[b - 1].norm != "?" {
        b -= 1;
    }
    if a >= b {
        return String::new();
    }
    s[tokens[a].start..tokens[b - 1].end].trim().to_string()
}

const STOP: &str = "no|not|without|was|were|is|are|be|been|being|has|have|had|the|a|an|and|or|of|in|on|at|to|with|by|for|from|there|this|that|these|those|it|its|any|nor|neither|as|than|which|who|also|both|observed|detected|seen|noted|identified|found|present|monitored|evaluated|favor|favour|suspicious|suspected|possible|possibly|probable|probably|may|might|could|compatible|consistent|cannot|can|excluded|free|absence|evidence|sign|signs|when|after|before|due|secondary|other|significant|obvious|apparent|clear|clearly|definite|new|further";
const CONT: &str = "in|on|at|of|involving|within|along|around|near|adjacent|posterior|anterior|measuring|reaching";
const LEFT_OF: &str = "area|areas|focus|foci|sign|signs|appearance|amount|field|fields";

const VERBS: &str = "was|were|is|are|be|been|being|has|have|had|observed|detected|seen|noted|identified|found|present|monitored|evaluated|visualized|described|considered|shown|demonstrated";
const RIGHT_STOP: &str = "measuring|measured|smaller|larger|than|reaching|extending|showing|causing|containing|accompanying|accompanied|located|localized|approximately|about|up|more|most|less|mm|cm";

/// The finding phrase for a mention: the matched words with up to four modifiers before them,
/// a following noun ("metastatic breast ca") and location phrase ("in the right lower lobe"),
/// within the clause; verbs inside a matched span are dropped ("lesion was detected in the
/// liver" → "lesion in the liver").
fn phrase(s: &str, tokens: &[Token], a: usize, b: usize, cs: usize, ce: usize) -> (String, bool) {
    let stop = |t: &Token| !t.word || pattern::word_is(STOP, &t.norm);
    let is_verb = |t: &Token| t.word && pattern::word_is(VERBS, &t.norm);
    let mut lo = a;
    while lo > cs && a - lo < 4 && !stop(&tokens[lo - 1]) {
        lo -= 1;
    }
    // "areas of consolidation"
    if lo >= cs + 2 && tokens[lo - 1].norm == "of" && pattern::word_is(LEFT_OF, &tokens[lo - 2].norm) {
        lo -= 2;
        while lo > cs && a - lo < 7 && !stop(&tokens[lo - 1]) {
            lo -= 1;
        }
    }
    let mut parts: Vec<(usize, usize)> = Vec::new();
    let mut hi = b;
    if let Some(v) = (a..b).find(|&k| is_verb(&tokens[k])) {
        // Keep the noun before the verbs and what follows the last verb.
        let last = (a..b).rev().find(|&k| is_verb(&tokens[k])).unwrap_or(v);
        parts.push((lo, v));
        lo = last + 1;
        if lo >= hi {
            lo = hi;
        }
    }
    // Hyphenated partners ("effusion-thickening").
    while hi < ce && tokens[hi].joined {
        hi += 1;
    }
    // A following noun or two ("metastatic breast ca", "ground glass areas").
    let mut k = 0;
    while hi < ce
        && k < 2
        && tokens[hi].word
        && !stop(&tokens[hi])
        && !is_verb(&tokens[hi])
        && !pattern::word_is(RIGHT_STOP, &tokens[hi].norm)
        && !pattern::word_is(CONT, &tokens[hi].norm)
        && !tokens[hi].norm.chars().next().is_some_and(|c| c.is_ascii_digit())
    {
        hi += 1;
        k += 1;
        while hi < ce && tokens[hi].joined {
            hi += 1;
        }
    }
    // The head noun decides "There is" / "There are".
    let head_plural = hi > 0 && plural_word(&tokens[hi - 1].norm);
    // A location phrase, kept only when it ends cleanly: not in the middle of a list, not cut by
    // the length limit, not running into an unpunctuated next item ("... right lung Nodule ...").
    const PP_END: &str = "was|were|is|are|and|or|which|that|observed|detected|seen|noted|with|measuring";
    if hi < ce && tokens[hi].word && pattern::word_is(CONT, &tokens[hi].norm) {
        let mut k = hi + 1;
        let mut capital = false;
        while k < ce && k - hi < 9 && tokens[k].word && !pattern::word_is(PP_END, &tokens[k].norm) {
            let w = &s[tokens[k].start..tokens[k].end];
            capital |= w.starts_with(|c: char| c.is_uppercase()) && w.chars().skip(1).any(|c| c.is_lowercase());
            k += 1;
        }
        let natural_end = k >= ce || !tokens[k].word || pattern::word_is(PP_END, &tokens[k].norm);
        let clean_end = natural_end && (k >= ce || tokens[k].norm != ",") && !capital;
        if k > hi + 1 && clean_end {
            hi = k;
        }
    }
    parts.push((lo, hi));
    (parts.into_iter().map(|(x, y)| span_text(s, tokens, x, y)).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" "), head_plural)
}

fn plural_word(w: &str) -> bool {
    w.len() > 3
        && w.ends_with('s')
        && !w.ends_with("ss")
        && !w.ends_with("sis")
        && !w.ends_with("us")
        && !w.ends_with("ics")
        && !w.ends_with("xis")
}

fn plural(phrase: &str) -> bool {
    let head = phrase.split(" in ").next().unwrap_or(phrase).split(" of ").next().unwrap_or(phrase);
    plural_word(&head.split_whitespace().last().unwrap_or("").to_lowercase())
}

/// The short sentence for a mention: "There is …", "There is no …", "There may be …" (plural
/// guessed from the phrase's head word).
pub fn finding_sentence(phrase: &str, status: Status) -> String {
    sentence_for(phrase, status, plural(phrase))
}

fn sentence_for(phrase: &str, status: Status, plural: bool) -> String {
    let p = lower_first(phrase.trim().trim_end_matches(['.', ',', ';']));
    let be = if plural { "are" } else { "is" };
    match status {
        Status::Present => format!("There {be} {p}."),
        Status::Absent => format!("There {be} no {p}."),
        Status::Uncertain => format!("There may be {p}."),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        // Keep acronyms ("LAP", "ARDS") as written.
        Some(f) if !c.clone().next().is_some_and(|n| n.is_uppercase()) => f.to_lowercase().chain(c).collect(),
        Some(f) => std::iter::once(f).chain(c).collect(),
        None => String::new(),
    }
}

impl Builtin {
    /// Summarise with an id attached.
    pub fn summarize_with_id(&self, id: Option<String>, report: &str) -> Result<Summary, SummarizeError> {
        let mut s = self.summarize(report)?;
        s.id = id;
        Ok(s)
    }
}

impl Summarizer for Builtin {
    fn summarize(&self, report: &str) -> Result<Summary, SummarizeError> {
        if report.trim().is_empty() {
            return Err(SummarizeError::Empty);
        }
        let mentions = self.mentions(report);
        let mut findings: Vec<LabelFinding> =
            self.labels.iter().map(|l| LabelFinding { label: l.label.clone(), status: Status::Absent, evidence: String::new() }).collect();
        for m in &mentions {
            if let Some(f) = findings.iter_mut().find(|f| f.label == m.label) {
                // The strongest mention decides; the first of equal strength keeps its evidence.
                if f.evidence.is_empty() || m.status.rank() > f.status.rank() {
                    f.status = m.status;
                    f.evidence = m.evidence.clone();
                }
            }
        }
        // Sentences in report order, one per distinct phrase and status; a phrase inside a
        // longer phrase of the same status ("pleural effusion" in "bilateral pleural
        // effusion") adds nothing.
        let mut order: Vec<&Mention> = mentions.iter().filter(|m| !m.phrase.is_empty()).collect();
        order.sort_by_key(|m| m.sentence);
        let keys: Vec<(String, Status)> = order.iter().map(|m| (format!(" {} ", m.phrase.to_lowercase()), m.status)).collect();
        let mut sentences: Vec<String> = Vec::new();
        let mut sentence_status: Vec<Status> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (i, m) in order.iter().enumerate() {
            let (k, st) = &keys[i];
            if keys.iter().any(|(o, s2)| s2 == st && o.len() > k.len() && o.contains(k.as_str())) {
                continue;
            }
            let sent = sentence_for(&m.phrase, m.status, m.plural);
            let key = sent.to_lowercase();
            if !seen.contains(&key) {
                seen.push(key);
                sentences.push(sent);
                sentence_status.push(m.status);
            }
        }
        Ok(Summary { id: None, sentences, findings, sentence_status })
    }
}

#[cfg(test)]
mod tests;
