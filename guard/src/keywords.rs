//! The keyword prefilter: one pass of an Aho-Corasick DFA over the text, reporting every
//! keyword occurrence (overlapping ones too).
//!
//! The DFA is walked here rather than through `AhoCorasick::find_overlapping_iter`: each
//! step waits on the load of the previous transition, so one walk leaves most of the core
//! idle. Cutting the text in two at a line break and advancing both halves in the same
//! loop lets the two chains of loads overlap; no keyword holds a newline, so no
//! occurrence straddles the cut.

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

/// One keyword occurrence: where it starts and ends, and which keyword it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub keyword: usize,
}

/// The compiled keywords (ASCII case-insensitive).
pub(crate) struct Keywords {
    dfa: DFA,
}

impl Keywords {
    /// Builds the automaton. Panics only on an empty or absurdly large keyword list (a
    /// bug caught by the unit tests).
    pub fn new(keywords: &[String]) -> Self {
        let dfa = DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            // A prefilter would make start states special; with hundreds of keywords
            // it cannot skip anything anyway.
            .prefilter(false)
            .build(keywords)
            // unwrap: a few hundred short literals always build.
            .unwrap();
        Self { dfa }
    }

    /// Every keyword occurrence in `bytes`, in order of where it ends.
    pub fn hits(&self, bytes: &[u8]) -> Vec<Hit> {
        let mut first = Vec::new();
        let mut second = Vec::new();
        let half = bytes.len() / 2;
        let cut = memchr::memchr(b'\n', &bytes[half..]).map_or(bytes.len(), |n| half + n + 1);
        let (a, b) = bytes.split_at(cut);
        // unwrap: the DFA is built with unanchored starts.
        let start = self.dfa.start_state(Anchored::No).unwrap();
        let (mut sa, mut sb) = (start, start);
        let both = a.len().min(b.len());
        for i in 0..both {
            sa = self.dfa.next_state(Anchored::No, sa, a[i]);
            sb = self.dfa.next_state(Anchored::No, sb, b[i]);
            if self.dfa.is_special(sa) || self.dfa.is_special(sb) {
                self.report(sa, i, &mut first);
                self.report(sb, cut + i, &mut second);
            }
        }
        for (i, byte) in a.iter().enumerate().skip(both) {
            sa = self.dfa.next_state(Anchored::No, sa, *byte);
            self.report(sa, i, &mut first);
        }
        for (i, byte) in b.iter().enumerate().skip(both) {
            sb = self.dfa.next_state(Anchored::No, sb, *byte);
            self.report(sb, cut + i, &mut second);
        }
        first.append(&mut second);
        first
    }

    /// Records the keywords that end at `at` when the walk is in state `sid`.
    #[inline]
    fn report(&self, sid: aho_corasick::automaton::StateID, at: usize, out: &mut Vec<Hit>) {
        if !self.dfa.is_match(sid) {
            return;
        }
        for k in 0..self.dfa.match_len(sid) {
            let keyword = self.dfa.match_pattern(sid, k);
            let len = self.dfa.pattern_len(keyword);
            out.push(Hit {
                start: at + 1 - len,
                end: at + 1,
                keyword: keyword.as_usize(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::AhoCorasick;

    /// The two-stream walk reports exactly what the library's overlapping search does,
    /// wherever the cut falls.
    #[test]
    fn hits_match_the_library_overlapping_search() {
        let words: Vec<String> = ["sk", "sk_", "key", "@", "+", "-u", "pass", "xox", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ours = Keywords::new(&words);
        let theirs = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&words)
            .unwrap();
        for text in [
            "",
            "sk",
            "\n",
            "task sk_live\nKEY=1 +49 a@b\n-u pass\nxoxb",
            "one line with SK_ and key but no break",
            "a\na\na\na\nsk_sk_\n\n\nPASS",
        ] {
            let want: Vec<Hit> = theirs
                .find_overlapping_iter(text)
                .map(|m| Hit {
                    start: m.start(),
                    end: m.end(),
                    keyword: m.pattern().as_usize(),
                })
                .collect();
            assert_eq!(ours.hits(text.as_bytes()), want, "{text:?}");
        }
    }
}
