//! Values that read as a password by their shape: upper and lower case letters, a digit
//! and a symbol of the kind password policies ask for (`Hx7!kLm2qq`, `P@ssw0rd2024`),
//! near a word that says a credential is about. Context rules know the places a password
//! is written (flags, names, URLs); a value of this shape is one in places no rule names
//! (`net user ops Hx7!kLm2qq /add`, `login ops / Hx7!kLm2qq`).
//!
//! Without the credential word the shape is a weak witness: formulas (`pR1*s^2`),
//! standards (`PKCS#5v2`) and symbol versions (`Symbol1@Base`) have it too. Code, paths,
//! addresses and formats have symbols, so the shape is also refused where the symbol
//! plays its usual part: a variable (`$HOME1`), a pointer or reference (`*Ptr1`,
//! `&Buf1`), an address (`Ops1@corp.com`), a format (`%5dA`), a mention or anchor, a
//! placeholder.

use regex::Regex;

use crate::validate::{entropy, placeholder};
use crate::values::{masked, reference};
use crate::{Reach, Rule};

/// The symbols password policies ask for and that code rarely puts inside a word.
const SYMBOLS: &[u8] = b"!#$%^&*?~@";

/// Words on the line (or the one before) that say a credential is near: the shape alone
/// is as often a formula, an anchor or a symbol version in prose and code.
const CONTEXT: &[&str] = &[
    "pass",
    "pwd",
    "pw ",
    "pw:",
    "login",
    "logon",
    "user",
    "auth",
    "cred",
    "secret",
    "community",
    "phrase",
    "runas",
    "psk",
    "account",
    "wifi",
    "key",
    "token",
    "sign in",
    "sign-in",
];

/// The rule: a token between white space, quotes or brackets, of 8 to 64 characters.
pub(crate) fn rule() -> Rule {
    Rule {
        id: "password-shaped",
        kind: "generic-password",
        keywords: CONTEXT,
        // unwrap: a constant, compiled by the unit tests.
        regex: Regex::new(
            r#"(?m)(?:^|[\s'"=:,(\[{>])(?P<value>[A-Za-z0-9!#$%^&*?~@_\-.+]{8,64})(?:$|[\s'",;)\]}<])"#,
        )
        .unwrap(),
        check: Some(password_shaped),
        reach: Reach::Lines,
        word_start: false,
    }
}

/// Whether `value` has a password's shape and none of the marks of code, an address, a
/// format or a stand-in.
fn password_shaped(value: &str, _text: &str) -> bool {
    let b = value.as_bytes();
    let (mut lower, mut upper, mut digit, mut symbol) = (false, false, false, false);
    for &c in b {
        lower |= c.is_ascii_lowercase();
        upper |= c.is_ascii_uppercase();
        digit |= c.is_ascii_digit();
        symbol |= SYMBOLS.contains(&c);
    }
    if !(lower && upper && digit && symbol) {
        return false;
    }
    // `$VAR1`, `%TEMP%`, `&Buf1`, `*Ptr1`, `~User1`, `#Anchor1`, `@Mention1`, `--Flag`.
    if matches!(
        b[0],
        b'$' | b'%' | b'&' | b'*' | b'~' | b'#' | b'@' | b'-' | b'.'
    ) {
        return false;
    }
    // An address or a host: `Ops1!@corp.com`, `User1@Host-2.lan`.
    if let Some((_, host)) = value.rsplit_once('@') {
        let dotted = host.contains('.')
            && host
                .rsplit('.')
                .next()
                .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic()));
        if dotted {
            return false;
        }
    }
    // An object's identity in Java's `toString` (`ResourceKey@1b6d3586`).
    let identity = value
        .rsplit_once('@')
        .is_some_and(|(_, h)| !h.is_empty() && h.bytes().all(|c| c.is_ascii_hexdigit()));
    // A standard's number: `PKCS#8-encoded`, `RFC#2822`.
    let standard = value
        .split_once('#')
        .is_some_and(|(name, _)| name.len() >= 2 && name.bytes().all(|c| c.is_ascii_uppercase()));
    // A crypt or PHC hash's fields: `$6$salt$hash`, `p=4$c2FsdA$Kq8v…`.
    let hash_fields = value.matches('$').count() >= 2;
    if identity || standard || hash_fields {
        return false;
    }
    // A format: `%5dRow1`, `%-8sName!`.
    let format = b.windows(2).any(|w| {
        w[0] == b'%' && (w[1].is_ascii_digit() || matches!(w[1], b's' | b'd' | b'f' | b'x' | b'-'))
    });
    // A run of the same symbol is a mask or a rule line (`##`, `**`, `!!`).
    let doubled = b
        .windows(2)
        .any(|w| w[0] == w[1] && SYMBOLS.contains(&w[0]));
    !format
        && !doubled
        && !placeholder(value)
        && !reference(value)
        && !masked(value)
        && entropy(value) >= 2.8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finds(line: &str) -> Vec<String> {
        let rule = rule();
        rule.regex
            .captures_iter(line)
            .filter_map(|c| c.name("value"))
            .filter(|m| password_shaped(m.as_str(), line))
            .map(|m| m.as_str().to_string())
            .collect()
    }

    #[test]
    fn password_shapes_are_found_where_no_rule_names_the_place() {
        for (line, want) in [
            ("net user ops Hx7!kLm2qq /add", "Hx7!kLm2qq"),
            ("login ops / Hx7!kLm2qq", "Hx7!kLm2qq"),
            ("snmp-server community Hx7!kLm2qq RO", "Hx7!kLm2qq"),
            ("wpa_passphrase Home 'Tr0ub4dor&3x'", "Tr0ub4dor&3x"),
            ("creds: ops P@ssw0rd2024", "P@ssw0rd2024"),
        ] {
            assert_eq!(finds(line), [want], "{line}");
        }
    }

    #[test]
    fn code_addresses_formats_and_stand_ins_are_not_passwords() {
        for line in [
            "echo $HOME1/Bin",
            "printf '%5dRow1'",
            "mail Ops1@corp.com now",
            "let p = &mut Buf1;",
            "int *Ptr1x = 0;",
            "see #Anchor1-x",
            "## Heading2 ##",
            "if (a!=B1) return",
            "value: ${DB_PASS1}",
            "token: ********",
            "rev HEAD~1 master",
            "NEWS: Release1!",
            "Deserialize PKCS#8-encoded Key",
            "key: [\"com.example.ResourceKey@12345\"]",
        ] {
            assert!(finds(line).is_empty(), "{line}: {:?}", finds(line));
        }
    }
}
