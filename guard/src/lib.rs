//! The privacy guard's detector engine: finds secrets and personal data in text.
//!
//! No I/O and no state between calls: [`Engine::scan`] takes text and returns findings
//! with byte offsets. A keyword prefilter (Aho-Corasick, one pass over the text) decides
//! which rules' regexes run at all, so the common case — a line with nothing sensitive —
//! costs one automaton pass. Each rule has an id, a kind, and optionally a validator
//! (checksum, entropy, placeholder stop-list) that a regex match must pass.
//!
//! A crate of its own so its benchmarks and fuzz targets build without the server.

pub mod env;
mod gate;
mod keywords;
mod passwords;
pub mod policy;
mod rules;
mod secrets;
mod shape;
pub mod stream;
mod validate;
mod values;

use regex::Regex;

use gate::{gated_lines, is_word, Span};
use keywords::Keywords;

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

/// Every rule id a finding or a redaction can carry (the streaming redactor adds
/// `task-secret` and `private-key-unterminated`). Builds the rules: not for hot paths.
pub fn rule_ids() -> impl Iterator<Item = &'static str> {
    let built: Vec<&'static str> = rules::all().iter().map(|r| r.id).collect();
    built
        .into_iter()
        .chain(["task-secret", "private-key-unterminated"])
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
    /// The value is the group named `value`, else group 1, else the whole match. A match
    /// where the group named `refute` or `refute_before` took part is dropped (what
    /// follows or precedes the value shows it is not one).
    pub regex: Regex,
    /// Extra check on the value and its context, e.g. a checksum. The context is the
    /// group named `name` (the name a value is assigned to) if the regex has one, else
    /// the whole text.
    pub check: Option<fn(&str, &str) -> bool>,
    /// Where the regex runs: around each keyword hit, or on lines that pass a byte gate.
    pub reach: Reach,
    /// Every match starts with one of the keywords, right after a word boundary (vendor
    /// prefixes such as `ghp_`): a hit inside a word (`sk` in `task`) cannot start one.
    pub word_start: bool,
}

/// How much text a rule's regex looks at.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The keyword's line and the next one (a value may follow on the next line, as in
    /// `<token>\n  value\n</token>`).
    Lines,
    /// The whole text (PEM blocks span many lines).
    Whole,
    /// Lines with a run of at least nine digits starting at a word boundary (card, SSN
    /// and phone numbers).
    DigitRuns,
    /// Lines with two capitals at a word boundary followed by two digits (IBAN starts).
    IbanStarts,
}

/// The compiled rule set.
pub struct Engine {
    rules: Vec<Rule>,
    prefilter: Keywords,
    /// Rule indices per keyword.
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
                    Some(at) if keyword_rules[at].contains(&i) => {}
                    Some(at) => keyword_rules[at].push(i),
                    None => {
                        keywords.push(kw);
                        keyword_rules.push(vec![i]);
                    }
                }
            }
        }
        let prefilter = Keywords::new(&keywords);
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
    /// finding of the earlier (more specific) rule.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let bytes = text.as_bytes();
        let mut windows: Vec<Vec<Span>> = vec![Vec::new(); self.rules.len()];
        for hit in self.prefilter.hits(bytes) {
            let in_word = hit.start > 0 && is_word(bytes[hit.start - 1]);
            for i in &self.keyword_rules[hit.keyword] {
                if in_word && self.rules[*i].word_start {
                    continue;
                }
                let w = match self.rules[*i].reach {
                    Reach::Whole => (0, bytes.len()),
                    _ => line_window(bytes, hit.start, hit.end),
                };
                add_window(&mut windows[*i], w);
            }
        }
        if !self.always.is_empty() {
            let (digit_lines, iban_lines) = gated_lines(bytes);
            for i in &self.always {
                let lines = match self.rules[*i].reach {
                    Reach::IbanStarts => &iban_lines,
                    _ => &digit_lines,
                };
                windows[*i].extend_from_slice(lines);
            }
        }
        let mut found: Vec<(usize, Finding)> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            for (ws, we) in &windows[i] {
                let window = &text[*ws..*we];
                let mut at = 0;
                while let Some(caps) = (at <= window.len())
                    .then(|| rule.regex.captures_at(window, at))
                    .flatten()
                {
                    let Some(whole) = caps.get(0) else {
                        break;
                    };
                    let step = window[whole.end()..]
                        .chars()
                        .next()
                        .map_or(1, char::len_utf8);
                    at = if whole.is_empty() {
                        whole.end() + step
                    } else {
                        whole.end()
                    };
                    let value = caps.name("value").or_else(|| caps.get(1));
                    let Some(m) = value.or_else(|| caps.get(0)) else {
                        continue;
                    };
                    let refuted =
                        caps.name("refute").is_some() || caps.name("refute_before").is_some();
                    if refuted || m.is_empty() || masked_after(&bytes[ws + m.end()..]) {
                        continue;
                    }
                    if let Some(check) = rule.check {
                        let context = caps.name("name").map_or(text, |n| n.as_str());
                        if !check(m.as_str(), context) {
                            // A refused value may be the name of the next match
                            // (`token = process.env.TOKEN ?? "…"`): that match, when
                            // one starts right there, is read next.
                            let next = (m.start() > whole.start())
                                .then(|| rule.regex.find_at(window, m.start()))
                                .flatten();
                            if next.is_some_and(|n| n.start() == m.start()) {
                                at = m.start();
                            }
                            continue;
                        }
                    }
                    // A quoted value (the password rules take one whole, quotes and
                    // all): the finding is what is between the quotes.
                    let b = m.as_str().as_bytes();
                    let quoted =
                        b.len() > 2 && matches!(b[0], b'"' | b'\'') && b[b.len() - 1] == b[0];
                    // JSON inside a JSON string: `\"value\"`.
                    let escaped = b.len() > 4 && b.starts_with(b"\\\"") && b.ends_with(b"\\\"");
                    let q = if escaped { 2 } else { usize::from(quoted) };
                    found.push((
                        i,
                        Finding {
                            rule: rule.id,
                            kind: rule.kind,
                            start: ws + m.start() + q,
                            end: ws + m.end() - q,
                        },
                    ));
                }
            }
        }
        // Specific rules come first in the table: keep the first of overlapping findings.
        found.sort_by_key(|(i, f)| (*i, f.start));
        let mut out: Vec<Finding> = Vec::new();
        for (_, f) in found {
            if out.iter().all(|o| f.end <= o.start || f.start >= o.end) {
                out.push(f);
            }
        }
        out.sort_by_key(|f| f.start);
        out
    }
}

/// From the start of the line holding `start` to the end of the line after the one
/// holding `end`.
fn line_window(bytes: &[u8], start: usize, end: usize) -> (usize, usize) {
    let from = memchr::memrchr(b'\n', &bytes[..start]).map_or(0, |n| n + 1);
    let line_end = memchr::memchr(b'\n', &bytes[end..]).map_or(bytes.len(), |n| end + n);
    let to = if line_end < bytes.len() {
        memchr::memchr(b'\n', &bytes[line_end + 1..]).map_or(bytes.len(), |n| line_end + 1 + n)
    } else {
        line_end
    };
    (from, to)
}

/// Whether a value runs straight into a run of mask characters (`xoxp-1234-####`): what
/// was found is the visible part of a masked value. One `#` or `*` may be part of a
/// password; three in a row (or an ellipsis) are a mask.
fn masked_after(rest: &[u8]) -> bool {
    let run = rest.len() >= 3
        && matches!(rest[0], b'*' | b'#' | b'.')
        && rest[1] == rest[0]
        && rest[2] == rest[0];
    // `sk.eyJ1IjoibWFw…gd-A`: the middle left out with an ellipsis.
    run || rest.starts_with("…".as_bytes())
}

/// Appends a window, merging it with the last one when they touch (hits come in order).
fn add_window(windows: &mut Vec<(usize, usize)>, w: (usize, usize)) {
    match windows.last_mut() {
        Some(last) if w.0 <= last.1 => last.1 = last.1.max(w.1),
        _ => windows.push(w),
    }
}

#[cfg(test)]
mod rule_cases;
#[cfg(test)]
mod tests;
