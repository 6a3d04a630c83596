//! The privacy guard's detector engine: finds secrets and personal data in text.
//!
//! No I/O and no state between calls: [`Engine::scan`] takes text and returns findings
//! with byte offsets. A keyword prefilter (Aho-Corasick, one pass over the text) decides
//! which rules' regexes run at all, so the common case — a line with nothing sensitive —
//! costs one automaton pass. Each rule has an id, a kind, and optionally a validator
//! (checksum, entropy, placeholder stop-list) that a regex match must pass.
//!
//! A crate of its own so its benchmarks and fuzz targets build without the server.

mod rules;
mod validate;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;

pub use validate::{entropy, iban_valid, luhn_valid};

/// One sensitive value found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule that matched, e.g. `github-pat`.
    pub rule: &'static str,
    /// The family of the value, e.g. `github-token`, `email`.
    pub kind: &'static str,
    /// Byte offsets of the sensitive value in the scanned text.
    pub start: usize,
    pub end: usize,
}

/// Whether a kind is a secret or personal data.
pub fn is_pii(kind: &str) -> bool {
    matches!(kind, "email" | "phone" | "credit-card" | "iban" | "us-ssn")
}

/// A detection rule.
pub(crate) struct Rule {
    pub id: &'static str,
    pub kind: &'static str,
    /// Case-insensitive substrings; the rule runs only where one occurs. Empty = always.
    pub keywords: &'static [&'static str],
    /// The value is capture group 1 if present, else the whole match.
    pub regex: Regex,
    /// Extra check on the value (and the whole text), e.g. a checksum.
    pub check: Option<fn(&str, &str) -> bool>,
}

/// The compiled rule set.
pub struct Engine {
    rules: Vec<Rule>,
    prefilter: AhoCorasick,
    /// Rule indices per prefilter pattern.
    keyword_rules: Vec<Vec<usize>>,
    always: Vec<usize>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// Builds every rule. Panics only if a built-in rule does not compile (a bug caught by
    /// the unit tests).
    pub fn new() -> Self {
        let rules = rules::all();
        let mut keywords: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.keywords.is_empty() {
                always.push(i);
            }
            for kw in rule.keywords {
                let kw = kw.to_ascii_lowercase();
                match keywords.iter().position(|k| *k == kw) {
                    Some(at) => keyword_rules[at].push(i),
                    None => {
                        keywords.push(kw);
                        keyword_rules.push(vec![i]);
                    }
                }
            }
        }
        let prefilter = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&keywords)
            // unwrap: a few hundred short literals always build.
            .unwrap();
        Self {
            rules,
            prefilter,
            keyword_rules,
            always,
        }
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Every finding in `text`, sorted by start, overlaps resolved in favour of the
    /// earlier, longer, more specific finding.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut active = vec![false; self.rules.len()];
        for i in &self.always {
            active[*i] = true;
        }
        for m in self.prefilter.find_overlapping_iter(text) {
            for i in &self.keyword_rules[m.pattern().as_usize()] {
                active[*i] = true;
            }
        }
        let mut found = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !active[i] {
                continue;
            }
            for caps in rule.regex.captures_iter(text) {
                let Some(m) = caps.get(1).or_else(|| caps.get(0)) else {
                    continue;
                };
                if m.is_empty() {
                    continue;
                }
                if let Some(check) = rule.check {
                    if !check(m.as_str(), text) {
                        continue;
                    }
                }
                found.push((
                    i,
                    Finding {
                        rule: rule.id,
                        kind: rule.kind,
                        start: m.start(),
                        end: m.end(),
                    },
                ));
            }
        }
        // Specific rules come first in the table; keep the first of overlapping findings.
        found.sort_by_key(|(i, f)| (f.start, *i));
        let mut out: Vec<Finding> = Vec::new();
        let mut by_rank: Vec<(usize, Finding)> = found;
        by_rank.sort_by_key(|(i, f)| (*i, f.start));
        for (_, f) in by_rank {
            if out.iter().all(|o| f.end <= o.start || f.start >= o.end) {
                out.push(f);
            }
        }
        out.sort_by_key(|f| f.start);
        out
    }
}

#[cfg(test)]
mod tests;
