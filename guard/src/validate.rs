//! Checks a regex match must pass: checksums, entropy, placeholders.

/// Shannon entropy of `s` in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The Luhn checksum of the digits in `s` (separators ignored).
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 12 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A card number: Luhn-valid, a known issuer's prefix, a length that issuer uses.
pub fn card(value: &str, _text: &str) -> bool {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    let len = digits.len();
    let p = |n: usize| {
        digits
            .get(..n)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let issuer = match len {
        13 | 16 | 19 if digits.starts_with('4') => true,
        16 if (51..=55).contains(&p(2)) || (2221..=2720).contains(&p(4)) => true,
        15 if p(2) == 34 || p(2) == 37 => true,
        16..=19 if p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) => true,
        16..=19 if (3528..=3589).contains(&p(4)) => true,
        14..=19 if p(2) == 36 || p(2) == 38 || p(2) == 39 || (300..=305).contains(&p(3)) => true,
        16..=19 if p(2) == 62 || p(2) == 81 => true,
        12..=19 if [50, 56, 57, 58, 67].contains(&p(2)) || p(2) == 63 => true,
        15 if p(4) == 2014 || p(4) == 2149 || p(4) == 1800 || p(4) == 2131 => true,
        // UATP (airline) cards: 15 digits starting with 1.
        15 if digits.starts_with('1') => true,
        _ => false,
    };
    issuer && luhn_valid(&digits) && card_grouping(value)
}

/// Card numbers are written whole or in their printed groups (4-4-4-4, Amex 4-6-5,
/// Diners 4-6-4, 19 digits 4-4-4-4-3); `4038816 194308` is two columns of numbers.
fn card_grouping(value: &str) -> bool {
    let groups: Vec<usize> = value
        .split([' ', '-'])
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    match groups.as_slice() {
        [_] => true,
        [4, 6, 4] | [4, 6, 5] => true,
        [rest @ .., last] => rest.iter().all(|g| *g == 4) && (1..=4).contains(last),
        [] => false,
    }
}

fn all_same(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(first) => bytes.all(|b| b == first),
        None => true,
    }
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// An IBAN with a registered country, that country's length and a valid mod-97 checksum.
pub fn iban_valid(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let compact = compact.to_ascii_uppercase();
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(cc, _)| compact.starts_with(cc)) else {
        return false;
    };
    if compact.len() != len {
        return false;
    }
    let rearranged = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

pub fn iban(value: &str, _text: &str) -> bool {
    iban_valid(value)
}

/// A US SSN in a valid range: area not 000, 666 or 9xx; group not 00; serial not 0000.
pub fn ssn(value: &str, _text: &str) -> bool {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 9 {
        return false;
    }
    let (area, group, serial) = (&digits[..3], &digits[3..5], &digits[5..]);
    area != "000"
        && area != "666"
        && !area.starts_with('9')
        && group != "00"
        && serial != "0000"
        && !all_same(&digits)
        && digits != "123456789"
        && !zip_plus_four(value, _text)
}

/// `CA 94105-1234`, `ZIP+4: 94105-1234`: five digits, a dash and four are a ZIP+4 code
/// after a state's code or a zip label.
fn zip_plus_four(value: &str, text: &str) -> bool {
    let b = value.as_bytes();
    if !(b.len() == 10 && b[5] == b'-') {
        return false;
    }
    let Some(at) = text.find(value) else {
        return false;
    };
    let before = &text[..at];
    let state = before.len() >= 3 && {
        let t = &before.as_bytes()[before.len() - 3..];
        t[0].is_ascii_uppercase() && t[1].is_ascii_uppercase() && t[2] == b' '
    };
    let tail = before[before.len().saturating_sub(12)..].to_ascii_lowercase();
    state || tail.contains("zip")
}

/// Reserved and example domains are placeholders, not personal data.
pub fn email(value: &str, text: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    let reserved = ["example.com", "example.net", "example.org"]
        .iter()
        .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
        || [".example", ".test", ".invalid", ".localhost", ".local"]
            .iter()
            .any(|t| domain.ends_with(t));
    // `postgresql@15-main.service`: an instance of a systemd unit.
    let unit = [
        ".service",
        ".socket",
        ".timer",
        ".mount",
        ".target",
        ".slice",
        ".path",
        ".device",
        ".scope",
        ".swap",
        ".automount",
    ]
    .iter()
    .any(|t| domain.ends_with(t));
    // `git@github.com:org/repo` is a remote, not an address.
    let remote = local == "git" && text.contains(&format!("{value}:"));
    !reserved && !remote && !unit
}

/// Values that stand in for a secret rather than being one.
pub fn placeholder(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    let bare = lower.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let whole = [
        "password",
        "passwd",
        "secret",
        "changeme",
        "null",
        "none",
        "nil",
        "undefined",
        "true",
        "false",
        "example",
        "dummy",
        "sample",
        "test",
        "todo",
        "fixme",
        "admin",
        "root",
        "token",
        "apikey",
        "api_key",
        "string",
        "value",
        "empty",
    ];
    let inside = [
        "${",
        "{{",
        "<",
        "****",
        "xxxx",
        "....",
        "%(",
        "$(",
        "your_",
        "your-",
        "yourtoken",
        "changeme",
        "change_me",
        "redacted",
        "placeholder",
        "enc[",
        "example",
        "...",
        "abcdefgh",
        "qrstuvw",
    ];
    whole.contains(&bare)
        || inside.iter().any(|w| lower.contains(w))
        || v.starts_with('$')
        // `%VAR%`, but not a URL-encoded first character (`%E6%9D…`).
        || (v.starts_with('%')
            && !v
                .as_bytes()
                .get(1..3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)))
        || v.ends_with("..")
        || all_same(v)
}

/// A generic assigned secret: long enough, random-looking, no placeholder, not a path or
/// a plain identifier.
pub fn generic(value: &str, _text: &str) -> bool {
    let v = value.trim_matches(|c| c == '"' || c == '\'' || c == '`');
    if v.len() < 8 || placeholder(v) || assignment(v) {
        return false;
    }
    if v.contains('/') && !v.contains('+') && v.matches('/').count() > 1 {
        return false; // a path
    }
    if versioned_name(v) {
        return false; // a package and its version: `jjwt-jackson-0.11.2`
    }
    let has_digit = v.bytes().any(|b| b.is_ascii_digit());
    let has_upper = v.bytes().any(|b| b.is_ascii_uppercase());
    let has_lower = v.bytes().any(|b| b.is_ascii_lowercase());
    let classes = [has_digit, has_upper, has_lower]
        .iter()
        .filter(|x| **x)
        .count();
    if classes < 2 {
        return false;
    }
    // Identifiers such as `DOC_Vector_5_32` or `com.example.Thing` read as words.
    let word_like = v
        .split(['_', '.', '-'])
        .all(|w| w.len() <= 7 || w.chars().all(|c| c.is_ascii_alphabetic()));
    if word_like && entropy(v) < 3.6 {
        return false;
    }
    entropy(v) >= 3.0
}

/// `NODE_ENV=production`: the next variable of an environment dump, reached when the
/// one before had no value. Base64 padding (`QUJD==`) is not one.
fn assignment(v: &str) -> bool {
    v.split_once('=').is_some_and(|(name, rest)| {
        name.len() >= 2
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            && !rest.trim_start_matches('=').is_empty()
    })
}

/// A name with a version at its end, `name-1.2` or `name-v1.2.3`.
fn versioned_name(v: &str) -> bool {
    let Some((name, version)) = v.rsplit_once(['-', '_']) else {
        return false;
    };
    let version = version.strip_prefix('v').unwrap_or(version);
    let parts: Vec<&str> = version.split('.').collect();
    name.bytes().any(|b| b.is_ascii_alphabetic())
        && (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A token with a fixed vendor prefix: only obvious stand-ins are refused.
pub fn not_placeholder(value: &str, _text: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    entropy(value) >= 3.0
        && ![
            "xxxxxx",
            "******",
            "<",
            "${",
            "{{",
            "your_",
            "your-",
            "example",
            "redacted",
            "placeholder",
            "dummy",
            "abcdefgh",
            "12345678",
        ]
        .iter()
        .any(|w| lower.contains(w))
}

/// Whether a GitHub-style token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `npm_`: a prefix,
/// 30 random base62 characters, then the CRC32 of those 30 in 6 base62 digits, as GitHub
/// and npm publish the format) carries a valid checksum.
pub fn base62_checksum_ok(token: &str) -> bool {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let Some((_, body)) = token.split_once('_') else {
        return false;
    };
    if body.len() != 36 || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (random, check) = body.split_at(30);
    let mut crc = crc32(random.as_bytes());
    let mut want = [b'0'; 6];
    for slot in want.iter_mut().rev() {
        *slot = DIGITS[(crc % 62) as usize];
        crc /= 62;
    }
    crc == 0 && check.as_bytes() == want
}

/// CRC-32 (IEEE, reflected), bit by bit: tokens are short.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A token whose format has a checksum: a valid one is a token whatever the stop-list
/// says (a random body may hold `example` or `12345678`); one without is judged like any
/// other prefixed value, because a token whose checksum is off must not leak either.
pub fn checksummed(value: &str, text: &str) -> bool {
    base62_checksum_ok(value) || not_placeholder(value, text)
}

/// A password in a URL, not a template or variable.
pub fn url_password(value: &str, _text: &str) -> bool {
    !(value.is_empty() || placeholder(value) && value.len() < 20 || value.starts_with('$'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_and_npm_checksums_are_verified() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926, "the CRC-32 check value");
        // A body with `example` in it: only its valid checksum makes it a token.
        let random = "aexample0123456789ABCDEFGHIJKL";
        let mut crc = crc32(random.as_bytes());
        let digits = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut check = [b'0'; 6];
        for slot in check.iter_mut().rev() {
            *slot = digits[(crc % 62) as usize];
            crc /= 62;
        }
        let token = format!("ghp_{random}{}", std::str::from_utf8(&check).unwrap());
        assert!(base62_checksum_ok(&token));
        assert!(checksummed(&token, ""));
        let npm = token.replacen("ghp_", "npm_", 1);
        assert!(base62_checksum_ok(&npm));
        let off = format!("{}0", &token[..token.len() - 1]);
        let off = if off == token {
            format!("{}1", &token[..token.len() - 1])
        } else {
            off
        };
        assert!(!base62_checksum_ok(&off));
        assert!(
            !checksummed(&off, ""),
            "no checksum, and a placeholder word"
        );
        assert!(!base62_checksum_ok("ghp_short"));
    }

    #[test]
    fn checksums_accept_real_numbers_and_refuse_near_misses() {
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(!luhn_valid("4111 1111 1111 1112"));
        assert!(card("378282246310005", ""));
        assert!(!card("1234567812345678", ""));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(iban_valid("AL47-2121-1009-0000-0002-3569-8741"));
        assert!(!iban_valid("GB82 WEST 1234 5698 7654 33"));
        assert!(!iban_valid("ZZ82WEST12345698765432"));
        assert!(ssn("078-05-1120", ""));
        assert!(!ssn("666-05-1120", ""));
        assert!(!ssn("078-00-1120", ""));
    }

    #[test]
    fn placeholders_and_plain_words_are_not_secrets() {
        for v in [
            "${DB_PASSWORD}",
            "********",
            "<redacted>",
            "changeme",
            "DOC_Vector_5_32",
            "/usr/lib/x86_64",
        ] {
            assert!(!generic(v, ""), "{v}");
        }
        for v in [
            "Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB",
            "Y4x6E179LkHbXM1reJWl0i7dup5rgh",
        ] {
            assert!(generic(v, ""), "{v}");
        }
        assert!(!email("someone@example.com", ""));
        assert!(!email("git@github.com", "git@github.com:org/repo.git"));
        assert!(email("jane.doe@gmail.com", ""));
    }
}
