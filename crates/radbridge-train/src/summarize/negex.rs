//! Negation and uncertainty scopes in the NegEx style (Chapman et al. 2001), tuned to CT-RATE's
//! translated phrasing.
//!
//! A sentence is cut into clauses at hard boundaries (`;`, `:`, brackets, `?`, and words such
//! as "but", "however", "which"). Inside a clause:
//! - a pre-trigger ("no", "without", "suspicious for", "compatible with") covers the words after
//!   it up to the first assertion verb ("No enlarged lymph nodes were detected"), a scope breaker
//!   ("there", "and there") or the clause end, at most [`MAX_SCOPE`] words;
//! - a post-trigger ("was not observed", "cannot be excluded", "?") covers the words before it
//!   back to the previous assertion verb or the clause start;
//! - pseudo-triggers ("no significant change", "not changed", "did not reach") are read first
//!   and are not negations;
//! - comparisons ("stable", "regressed", "progressed") keep a finding present; "completely
//!   regressed", "resolved", "disappeared", "no longer" mark it absent.
//!
//! A finding in a negated scope is absent, in a hedged scope uncertain (negation wins), else present.

use super::pattern::{word_is, Pattern};
use super::text::Token;
use super::Status;

/// Longest scope of a trigger, in tokens.
pub const MAX_SCOPE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PreNeg,
    PostNeg,
    PreHedge,
    PostHedge,
    Resolved,
    Pseudo,
}

const PSEUDO: &[&str] = &[
    "no significant change*",
    "no change*",
    "no significant difference*",
    "no difference*",
    "no interval change*",
    "not changed",
    "not significantly changed",
    "no significant progression",
    "no progression",
    "no regression",
    "no increase",
    "no significant increase",
    "not increased",
    "no decrease",
    "without change*",
    "without any change*",
    "not ~1 evaluated",
    "could not be evaluated",
    "not reach*",
    "no further",
    "not only",
    "cannot be evaluated",
    "can not be evaluated",
    "not be evaluated",
    "not be optimally",
    "not ~2 optimal*",
    "without contrast",
    "no contrast",
    "no ivcm",
    "not contrast*",
    "non contrast",
];

const PRE_NEG: &[&str] = &[
    "no",
    "not",
    "without",
    "neither",
    "nor",
    "absence of",
    "absent",
    "free of",
    "negative for",
    "no evidence of",
    "no sign*",
    "none",
    "never",
    "lack of",
    "no longer",
    "nothing",
];

const ASSERT_VERBS: &str = "observed|detected|seen|noted|identified|found|present|visualized|visualised|monitored|demonstrated|shown|appreciated|encountered|revealed|distinguished|differentiated|determined|depicted|recognized|viewed|described";

const POST_NEG: &[&str] = &[
    "not ~2 observed|detected|seen|noted|identified|found|present|visualized|visualised|visible|monitored|evident|demonstrated|shown|appreciated|encountered|revealed|distinguished|differentiated|determined|depicted|recognized|apparent|obvious|viewed|described",
    "absent", "excluded", "ruled out", "no longer", "not ~1 exist*", "none", "is|are|was|were normal",
];

/// Comparisons that say a finding of the prior study is gone; they reach back over the whole
/// clause ("the effusion seen in the previous study has completely regressed").
const RESOLVED: &[&str] = &[
    "resolved",
    "disappeared",
    "regressed completely",
    "completely regressed",
    "completely resolved",
    "completely disappeared",
    "regressed totally",
    "totally regressed",
    "no longer",
    "not ~1 observed|seen|detected|visualized|monitored in this|current",
    "not ~1 observed|seen|detected|visualized|monitored in the current",
];

const PRE_HEDGE: &[&str] = &[
    "suspicious for",
    "suspicious of",
    "suspicious",
    "suspicion of",
    "suspicion",
    "suspected",
    "suspect",
    "possible",
    "possibly",
    "probable",
    "probably",
    "may",
    "might",
    "could",
    "questionable",
    "compatible with",
    "rule out",
    "differential diagnosis",
    "differential",
    "versus",
    "vs",
    "cannot exclude",
    "can not exclude",
    "doubtful",
    "equivocal",
    "indeterminate",
    "in terms of",
    "evaluated for",
    "cannot be excluded for",
    "concern for",
    "concerning for",
    "likely",
    "presumably",
    "presumed",
    "to be considered",
    "consider",
    "considered",
];

const POST_HEDGE: &[&str] = &[
    "cannot ~3 excluded",
    "can not ~3 excluded",
    "could not ~3 excluded",
    "cannot ~3 ruled out",
    "can not ~3 ruled out",
    "could not ~3 ruled out",
    "not excluded",
    "not ruled out",
    "should be considered",
    "is|are|was|were considered",
    "?",
    "is|are|was|were suspected",
    "suspected",
    "questionable",
    "cannot ~1 distinguished|differentiated",
    "can not ~1 distinguished|differentiated",
    "could not ~1 distinguished|differentiated",
    "to be excluded",
    "in the foreground",
    "may be",
    "is|are possible",
];

/// Words that end any scope (and split clauses).
const BOUNDARY_WORDS: &str =
    "but|however|although|though|whereas|except|apart|besides|while|which|aside|yet|nevertheless|whose|where|addition|additionally|also";

struct Trigger {
    kind: Kind,
    pattern: Pattern,
}

/// The compiled trigger lists.
pub struct NegEx {
    triggers: Vec<Trigger>,
}

impl Default for NegEx {
    fn default() -> Self {
        Self::new()
    }
}

/// One trigger found in a clause.
#[derive(Debug, Clone, Copy)]
struct Found {
    kind: Kind,
    start: usize,
    end: usize,
}

impl NegEx {
    pub fn new() -> NegEx {
        let mut triggers = Vec::new();
        // Longer phrases first so "no evidence of" beats "no", "cannot be excluded" beats "not".
        for (kind, list) in [
            (Kind::Pseudo, PSEUDO),
            (Kind::PostHedge, POST_HEDGE),
            (Kind::PreHedge, PRE_HEDGE),
            (Kind::Resolved, RESOLVED),
            (Kind::PostNeg, POST_NEG),
            (Kind::PreNeg, PRE_NEG),
        ] {
            for p in list {
                triggers.push((kind, p.split_whitespace().count(), Pattern::compile(p)));
            }
        }
        triggers.sort_by_key(|t| std::cmp::Reverse(t.1));
        NegEx { triggers: triggers.into_iter().map(|(kind, _, pattern)| Trigger { kind, pattern }).collect() }
    }

    /// The clause (token range) holding tokens `s..e`.
    pub fn clause(&self, tokens: &[Token], s: usize, e: usize) -> (usize, usize) {
        let hard = |t: &Token| {
            (!t.word && matches!(t.norm.as_str(), ";" | ":" | "(" | ")" | "[" | "]" | "?" | "!" | "."))
                || (t.word && word_is(BOUNDARY_WORDS, &t.norm))
        };
        let mut cs = s;
        while cs > 0 && !hard(&tokens[cs - 1]) {
            cs -= 1;
        }
        let mut ce = e;
        while ce < tokens.len() && !hard(&tokens[ce]) {
            ce += 1;
        }
        // A "?" closing the clause belongs to it (a hedge on what precedes it).
        if ce < tokens.len() && tokens[ce].norm == "?" {
            ce += 1;
        }
        (cs, ce)
    }

    fn find(&self, tokens: &[Token], cs: usize, ce: usize) -> Vec<Found> {
        let slice = &tokens[cs..ce];
        let mut taken = vec![false; slice.len()];
        let mut out = Vec::new();
        for t in &self.triggers {
            for (a, b) in find_punct_aware(&t.pattern, slice) {
                if taken[a..b].iter().any(|&x| x) {
                    continue;
                }
                taken[a..b].iter_mut().for_each(|x| *x = true);
                out.push(Found { kind: t.kind, start: cs + a, end: cs + b });
            }
        }
        out.sort_by_key(|f| f.start);
        out
    }

    /// The status of a finding mentioned at tokens `s..e`, and its clause.
    pub fn status(&self, tokens: &[Token], s: usize, e: usize) -> (Status, (usize, usize)) {
        let (cs, ce) = self.clause(tokens, s, e);
        let found = self.find(tokens, cs, ce);
        let is_assert = |t: &Token| t.word && word_is(ASSERT_VERBS, &t.norm);
        let is_breaker = |t: &Token| t.word && (t.norm == "there" || is_assert(t));
        let inside = |f: &Found| f.start >= s && f.end <= e;
        let mut negated = false;
        let mut hedged = false;
        for f in &found {
            match f.kind {
                Kind::Pseudo => {}
                Kind::Resolved => {
                    if f.start >= e && f.start - e <= MAX_SCOPE {
                        negated = true;
                    }
                }
                Kind::PreNeg | Kind::PreHedge => {
                    let applies = if inside(f) {
                        true
                    } else if f.end <= s {
                        let between = &tokens[f.end..s];
                        // A trigger's scope ends at the first assertion verb after it.
                        between.len() <= MAX_SCOPE
                            && !between.iter().any(is_breaker)
                            && !found.iter().any(|g| g.kind == Kind::PostNeg && g.start >= f.end && g.end <= s)
                    } else {
                        false
                    };
                    if applies {
                        if f.kind == Kind::PreNeg {
                            negated = true
                        } else {
                            hedged = true
                        }
                    }
                }
                Kind::PostNeg | Kind::PostHedge => {
                    let applies = if f.start >= e {
                        let between = &tokens[e..f.start];
                        // "Atelectasis was observed and effusion was not detected": the
                        // post-trigger reaches back only to the previous assertion verb.
                        between.len() <= MAX_SCOPE && !between.iter().any(is_breaker)
                    } else {
                        inside(f)
                    };
                    if applies {
                        if f.kind == Kind::PostNeg {
                            negated = true
                        } else {
                            hedged = true
                        }
                    }
                }
            }
        }
        let status = if negated {
            Status::Absent
        } else if hedged {
            Status::Uncertain
        } else {
            Status::Present
        };
        (status, (cs, ce))
    }
}

/// Pattern matches where "?" (a punctuation token) is allowed as a one-token pattern.
fn find_punct_aware(p: &Pattern, tokens: &[Token]) -> Vec<(usize, usize)> {
    if *p == Pattern::compile("?") {
        return tokens.iter().enumerate().filter(|(_, t)| t.norm == "?").map(|(i, _)| (i, i + 1)).collect();
    }
    p.find_all(tokens)
}
