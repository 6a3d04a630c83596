//! The line gates of the keyword-less rules (card, SSN and phone numbers, IBANs): which
//! lines can hold a match at all, found without looking at every byte.
//!
//! Every match of those rules is a stretch of at least [`SHORTEST`] bytes drawn from a
//! small set (digits, capitals, separators; see [`IN_RUN`]). So the scan first marks, 64
//! bytes at a time and with vector instructions, which bytes are in the set, and finds
//! where `SHORTEST` marked bytes follow each other; only those runs are read byte by byte
//! by the exact gates. Log text is mostly lower-case words and short numbers, so most
//! blocks have no such run.

/// Bytes that can appear in a number or IBAN: digits, capitals and the separators the
/// number rules allow (ASCII white space stands for the regexes' `\s`).
const IN_RUN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_digit() || c.is_ascii_uppercase() || is_sep(c);
        b += 1;
    }
    t
};

/// The fewest bytes a match of a gated rule spans: nine digits (an SSN without
/// separators; cards, phones and IBANs are longer).
const SHORTEST: usize = 9;

/// Separators the number rules allow between digits.
const fn is_sep(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'-' | b'.' | b'(' | b')' | b'\t' | b'\r' | b'\x0b' | b'\x0c'
    )
}

/// A byte of the regexes' ASCII `\w` (what `(?-u:\b)` looks at): a match of a gated
/// rule never starts or ends next to one.
pub(crate) fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// A byte range of the scanned text.
pub(crate) type Span = (usize, usize);

/// The lines (without their newline) that may hold a card, SSN or phone number, and the
/// lines that may hold an IBAN, each in text order.
pub(crate) fn gated_lines(bytes: &[u8]) -> (Vec<Span>, Vec<Span>) {
    let (mut digit_lines, mut iban_lines) = (Vec::new(), Vec::new());
    // Bytes before `done` belong to runs already read.
    let (mut done, mut prev) = (0, 0u64);
    let mut tail = [0u8; 64];
    for (n, block) in bytes.chunks(64).enumerate() {
        let block: &[u8; 64] = match block.try_into() {
            Ok(full) => full,
            Err(_) => {
                tail[..block.len()].copy_from_slice(block);
                &tail
            }
        };
        let mask = run_mask(block);
        // Bit j: the SHORTEST bytes ending at byte j of this block are all in the set.
        let w = u128::from(mask) << 64 | u128::from(prev);
        let two = w & (w << 1);
        let four = two & (two << 2);
        let eight = four & (four << 4);
        let mut ends = ((eight & (w << 8)) >> 64) as u64;
        prev = mask;
        while ends != 0 {
            let at = n * 64 + ends.trailing_zeros() as usize;
            ends &= ends - 1;
            if at < done {
                continue;
            }
            let mut from = at;
            while from > 0 && IN_RUN[usize::from(bytes[from - 1])] {
                from -= 1;
            }
            let mut to = at + 1;
            while to < bytes.len() && IN_RUN[usize::from(bytes[to])] {
                to += 1;
            }
            done = to;
            // A run holds no newline, so it lies on one line.
            if digit_run(bytes, from, to) {
                push_line(&mut digit_lines, bytes, from, to);
            }
            if iban_start(bytes, from, to) {
                push_line(&mut iban_lines, bytes, from, to);
            }
        }
    }
    (digit_lines, iban_lines)
}

/// One bit per byte of `block`: whether it is in the set. Written as comparisons into a
/// byte array, then packed eight bytes at a time, so that the compiler turns the first
/// loop into vector instructions.
fn run_mask(block: &[u8; 64]) -> u64 {
    let mut flags = [0u8; 64];
    for (f, &c) in flags.iter_mut().zip(block) {
        let inside = (c.wrapping_sub(b'0') < 10)
            | (c.wrapping_sub(b'A') < 26)
            | (c == b' ')
            | (c == b'\t')
            | (c.wrapping_sub(b'\x0b') < 3)
            | (c.wrapping_sub(b'(') < 2)
            | (c.wrapping_sub(b'-') < 2);
        *f = u8::from(inside) << 7;
    }
    let mut mask = 0u64;
    for (k, eight) in flags.chunks_exact(8).enumerate() {
        // unwrap: chunks_exact(8) yields eight bytes.
        let high_bits = u64::from_le_bytes(eight.try_into().unwrap());
        // Gathers the high bit of each byte into the top byte (bit i from byte i).
        mask |= (high_bits.wrapping_mul(0x0002_0408_1020_4081) >> 56) << (8 * k);
    }
    mask
}

/// Whether the run `bytes[from..to]` holds nine digits or more that start at a word
/// boundary, with at most two separators between consecutive digits, followed by a
/// non-word byte: the shape every card, SSN and phone match has.
fn digit_run(bytes: &[u8], from: usize, to: usize) -> bool {
    let mut prev_word = from > 0 && is_word(bytes[from - 1]);
    let (mut in_number, mut digits, mut seps) = (false, 0u32, 0u32);
    for &c in &bytes[from..to] {
        if c.is_ascii_digit() {
            if in_number {
                digits += 1;
                seps = 0;
            } else if !prev_word {
                (in_number, digits, seps) = (true, 1, 0);
            }
        } else if is_sep(c) {
            if in_number && digits as usize >= SHORTEST {
                return true;
            }
            seps += 1;
            in_number &= seps <= 2;
        } else {
            in_number = false;
        }
        prev_word = is_word(c);
    }
    in_number && digits as usize >= SHORTEST && bytes.get(to).is_none_or(|c| !is_word(*c))
}

/// Whether the run `bytes[from..to]` holds two capitals at a word boundary followed by
/// two digits: the start of every IBAN.
fn iban_start(bytes: &[u8], from: usize, to: usize) -> bool {
    (from..to.saturating_sub(3)).any(|i| {
        (i == 0 || !is_word(bytes[i - 1]))
            && bytes[i].is_ascii_uppercase()
            && bytes[i + 1].is_ascii_uppercase()
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit()
    })
}

/// Appends the line holding `bytes[from..to]`, unless it is the last one appended.
fn push_line(lines: &mut Vec<Span>, bytes: &[u8], from: usize, to: usize) {
    let start = memchr::memrchr(b'\n', &bytes[..from]).map_or(0, |n| n + 1);
    if lines.last().is_some_and(|l| l.0 == start) {
        return;
    }
    let end = memchr::memchr(b'\n', &bytes[to..]).map_or(bytes.len(), |n| to + n);
    lines.push((start, end));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digit_gate(text: &str) -> bool {
        !gated_lines(text.as_bytes()).0.is_empty()
    }

    #[test]
    fn numbers_at_word_boundaries_open_the_gate() {
        for text in [
            "card 4111 1111 1111 1111 ok",
            "ssn 078-05-1120",
            "(555) 123-4567",
            "call 0 (512) 345 67 89",
            "4111111111111111",
            "x\n078051120",
        ] {
            assert!(digit_gate(text), "{text:?}");
        }
    }

    #[test]
    fn digits_inside_words_and_short_numbers_keep_it_shut() {
        for text in [
            "commit 8f3c2a1b9d4e123456789a7e8f9a0b1c2",
            "2026-11-25T20:01:02.123Z INFO done",
            "-rw-r--r-- 1 root root  12345678 Nov 25 20:01 a.log",
            "id=a123456789012 x",
            "12345678",
        ] {
            assert!(!digit_gate(text), "{text:?}");
        }
    }

    #[test]
    fn iban_gate_wants_two_capitals_at_a_word_start_then_two_digits() {
        assert!(!gated_lines(b"IBAN GB82 WEST 1234 5698 7654 32")
            .1
            .is_empty());
        assert!(gated_lines(b"IBAN XGB82 WEST 1234 5698 7654 32")
            .1
            .is_empty());
        assert!(gated_lines(b"lowercase gb82 west 1234 5698").1.is_empty());
    }

    /// The gate may let through lines no rule matches, never the reverse: on random text
    /// over the bytes that matter, every line on which a gated rule finds a value (its
    /// regex matches and its check passes) is gated.
    #[test]
    fn the_gate_never_hides_a_line_a_gated_regex_matches() {
        let rules: Vec<crate::Rule> = crate::rules::all()
            .into_iter()
            .filter(|r| r.keywords.is_empty())
            .collect();
        assert_eq!(rules.len(), 8);
        let alphabet = b"0123456789012345678901234567890123456789 -.()\t_aZGB:/+\n";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut matched = 0;
        for _ in 0..60_000 {
            let len = 8 + (state % 40) as usize;
            let text: String = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(alphabet[(state % alphabet.len() as u64) as usize])
                })
                .collect();
            let (digit_lines, iban_lines) = gated_lines(text.as_bytes());
            let mut start = 0;
            for line in text.split('\n') {
                let span = (start, start + line.len());
                for rule in &rules {
                    if finds(rule, line) {
                        matched += 1;
                        let gated = if rule.id == "iban" {
                            &iban_lines
                        } else {
                            &digit_lines
                        };
                        assert!(gated.contains(&span), "{line:?} in {text:?}");
                    }
                }
                start += line.len() + 1;
            }
        }
        assert!(
            matched > 100,
            "the random text matched only {matched} times"
        );
    }

    /// Whether `rule` finds a value in `line`, as the engine decides it.
    fn finds(rule: &crate::Rule, line: &str) -> bool {
        rule.regex.captures_iter(line).any(|caps| {
            let refuted = caps.name("refute").is_some() || caps.name("refute_before").is_some();
            let value = caps.name("value").or_else(|| caps.get(1));
            let Some(m) = value.or_else(|| caps.get(0)) else {
                return false;
            };
            !refuted && rule.check.is_none_or(|check| check(m.as_str(), line))
        })
    }
}
