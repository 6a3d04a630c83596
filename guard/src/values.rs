//! What a value is when a rule has found one where a password or a secret stands: one
//! a person chose, or a reference to one kept elsewhere (`$VAR`, `{{ .Values.x }}`, a
//! file), a stand-in, a mask, a stored hash or code. The rules by context
//! ([`crate::passwords`]) and by name ([`crate::secrets`]) share these checks.

use crate::rules::identifier_words;
use crate::validate::placeholder;

/// A hundred base64 characters or more (`password: AgBy3i4O…`, 700 characters): a
/// sealed or encrypted value, not one a person types.
pub(crate) fn sealed_blob(v: &str) -> bool {
    v.len() >= 100
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
}

/// `sk-proj-hP8t…Mi7u`: the middle left out, what is shown is not the secret.
pub(crate) fn elided(v: &str) -> bool {
    v.contains('…') || v.contains("...")
}

/// Elided, or masked (`eyJhbGciOi***`): as good as left out.
pub(crate) fn masked(v: &str) -> bool {
    elided(v) || v.contains("***")
}

pub(crate) fn unquote(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 4 && v.starts_with("\\\"") && v.ends_with("\\\"") {
        &v[2..v.len() - 2]
    } else if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// Whether a value refers to a secret kept elsewhere, or stands for none: `$VAR`,
/// `%VAR%`, `{{ .Values.x }}`, `.Values.auth.password`, `<your-password>`, `!vault`,
/// `(hidden)`, `[secure]`, a mask (`********`), a stored hash (`$2b$…`), a file, or a
/// word such as `true`, `null`, `stdin`, `YES`.
pub(crate) fn reference(v: &str) -> bool {
    let lower = v.trim().to_ascii_lowercase();
    let prefixed = [
        "$", "{", "<", "[", "//", "./", "~/", "@/", "@./", "@~/", "/run/", "/etc/", "/var/",
        "/tmp/", "/dev/", "file:", "env:", "vault:", "secret:", "arn:", "ref+", "op://", "***",
        "###",
    ]
    .iter()
    .any(|p| lower.starts_with(p));
    // `%DB_PASS%` (not `%E6%9D…`, which is URL encoding), and YAML tags (`!vault |`).
    let batch_var = lower.len() > 2
        && lower.starts_with('%')
        && lower.ends_with('%')
        && lower[1..lower.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let tag = lower.starts_with('!')
        && lower[1..].split_whitespace().next().is_some_and(|t| {
            t.is_empty() || t.bytes().all(|b| b.is_ascii_alphabetic() || b == b'!')
        })
        && (lower.len() < 12 || lower.contains(' '));
    // `(hidden)`, `(sensitive value)`: a word in parentheses stands for a value.
    let parenthesised = lower.starts_with('(')
        && lower[1..]
            .trim_end_matches(')')
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b' ');
    // `(0.07s)`, `(3 ms)`: a duration or a count in brackets, as test runners print.
    let measured = lower.starts_with('(')
        && lower.ends_with(')')
        && lower[1..lower.len() - 1].starts_with(|c: char| c.is_ascii_digit());
    // A reference in HCL or code: `var.db_password`, `local.creds.pw`, and calls or
    // lookups: `File.read(…)`, `os.environ["KEY"]`.
    const ROOTS: &[&str] = &[
        "var",
        "local",
        "locals",
        "module",
        "data",
        "each",
        "self",
        "path",
        "terraform",
        "count",
        "env",
        "process",
        "os",
        "config",
        "settings",
        "values",
        "secrets",
        "vars",
        "inputs",
        "needs",
        "steps",
        "matrix",
        "github",
        "params",
        "props",
        "this",
        "args",
    ];
    let code_path = lower.split_once('.').is_some_and(|(root, rest)| {
        ROOTS.contains(&root)
            && !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    });
    let call = !generated_key(&lower)
        && lower.find(['(', '[']).is_some_and(|at| {
            at > 0
                && lower[..at]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:&*@!".contains(&b))
        });
    // Code, not a value: a path (`mio::Token(0)`, `Self::auth(c)?`), an expression in
    // brackets (`(&priv_key).into()`), a borrowed type (`&EncryptedPrivateKeyInfo`) or a
    // type (`impl AsRef`).
    let code = lower.contains("::")
        || lower.starts_with("(&")
        || lower.starts_with("(*")
        || lower.starts_with("&") && lower[1..].starts_with(|c: char| c.is_ascii_alphabetic())
        || lower == "impl"
        || lower.starts_with("*mut")
        || lower.starts_with("*const")
        // A variable named after a password: `self.password = master_user_password`.
        || (lower.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && lower.contains('_')
            && ["password", "passwd", "pwd", "pass"]
                .iter()
                .any(|w| lower.split('_').any(|part| part == *w)));
    // Manual-page markup left in text: `locked\&.`, `age\fR`, `isn\*(Aqt`.
    let troff = ["\\&", "\\f", "\\*(", "\\("]
        .iter()
        .any(|m| lower.contains(m));
    // A file by its relative path: `tests/trybuild/main-01-basic.rs`.
    let file = lower.contains('/')
        && lower.rsplit_once('.').is_some_and(|(stem, ext)| {
            !stem.is_empty()
                && (1..=4).contains(&ext.len())
                && ext.bytes().all(|b| b.is_ascii_lowercase())
        })
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b));
    // Interpolation: `f"{auth}:{password}"`, `"#{pw}"`, `"${user}"`.
    let interpolated = lower.find('{').is_some_and(|at| {
        lower[at + 1..].find('}').is_some_and(|end| {
            let inner = &lower[at + 1..at + 1 + end];
            !inner.is_empty()
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.[]'\"".contains(&b))
        })
    });
    // A file or directory: `/home/ops`, `/srv/app/config` (two path segments or more).
    let path = lower.starts_with('/')
        && lower[1..].contains('/')
        && !lower.contains("//")
        && lower.split('/').skip(1).all(|seg| {
            seg.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        });
    // A template's path to a value: `.Values.auth.password`.
    let template_path = lower.starts_with('.')
        && lower.len() > 1
        && lower[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    let bare = lower.trim_end_matches([')', ',', ';', '.', ']']);
    let word = [
        "stdin",
        "prompt",
        "required",
        "optional",
        "yes",
        "no",
        "on",
        "off",
        "enabled",
        "disabled",
        "unset",
        "secret",
        "hidden",
        "masked",
        "sensitive",
        "files",
        "compat",
        "string",
        "bool",
        "bytes",
        "none",
        "float",
        "dict",
        "list",
        "optional",
        "any",
        "pass",
        "passwd",
        "password",
    ]
    .contains(&bare);
    prefixed
        || code
        || file
        || interpolated
        || path
        || batch_var
        || tag
        || code_path
        || call
        || parenthesised
        || measured
        || template_path
        || word
        || lower.starts_with("xxxx")
        || troff
        || stand_in_name(&lower)
        || expansion_tail(&lower)
}

/// A key drawn at random from letters, digits and symbols (Django's `SECRET_KEY`): long,
/// no member access, no quotes, no spaces, many symbols.
fn generated_key(v: &str) -> bool {
    let symbols = v.bytes().filter(|b| !b.is_ascii_alphanumeric()).count();
    v.len() >= 32
        && symbols >= 4
        && !v.contains(['.', '"', '\'', ' '])
        && crate::validate::entropy(v) >= 4.0
}

/// A name between markers that a template or a build step replaces: `@@DB_PASS@@`,
/// `__API_TOKEN__`, `%%SECRET%%`.
fn stand_in_name(v: &str) -> bool {
    ["@@", "__", "%%"].iter().any(|m| {
        v.len() > 2 * m.len()
            && v.starts_with(m)
            && v.ends_with(m)
            && v[m.len()..v.len() - m.len()]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// The rest of a shell expansion after its name: `?missing}` of `${PASS:?missing}`,
/// `-default}` of `${PASS:-default}`.
fn expansion_tail(v: &str) -> bool {
    v.ends_with('}') && !v.contains('{') && matches!(v.as_bytes()[0], b'?' | b'-' | b'+' | b'=')
}

/// Whether a value is one a person chose ([`reference`] says what it is not), and not
/// the name of another variable (`DB_PASSWORD`) or a sentence.
pub(crate) fn chosen(raw: &str) -> bool {
    let quoted = unquote(raw).len() != raw.len();
    let v = unquote(raw).trim();

    // A stored hash: MySQL's `*` and 40 hex digits, PostgreSQL's `md5` and 32, SCRAM.
    let hex_after = |prefix: &str, len: usize| {
        v.strip_prefix(prefix)
            .is_some_and(|rest| rest.len() == len && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    if hex_after("*", 40) || hex_after("md5", 32) || v.starts_with("SCRAM-SHA-256$") {
        return false;
    }
    // Unquoted, what follows a colon is the rest of an expression (`:EXP).expect(…)`).
    let rest = !quoted && v.starts_with(':');
    if v.chars().count() < 4 || placeholder(v) || reference(v) || masked(v) || rest {
        return false;
    }
    // Another variable's name: `password: DB_PASSWORD`.
    // `new-password`, `your_password`, `MyPassword`: words that stand for a password.
    const STAND_IN: &[&str] = &[
        "new",
        "old",
        "my",
        "your",
        "the",
        "a",
        "some",
        "strong",
        "secure",
        "secret",
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "here",
        "default",
        "dummy",
        "example",
        "test",
        "changeme",
        "change",
        "me",
        "user",
        "admin",
    ];
    let words = identifier_words(v);
    let stand_in = words.len() >= 2
        && words.iter().all(|w| STAND_IN.contains(&w.as_str()))
        && words
            .iter()
            .any(|w| ["password", "passwd", "pass", "pwd", "passphrase"].contains(&w.as_str()));
    if stand_in {
        return false;
    }
    let upper_ident = v.len() > 3
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && v.contains('_');
    // A sentence, not a value: `password is required` (a quoted one may be a passphrase).
    let prose = !quoted && v.split_whitespace().count() > 1;
    !upper_ident && !prose && !v.chars().all(|c| c == v.chars().next().unwrap_or(' '))
}

/// Words made into a passphrase: three or more words of three letters or more, joined
/// by one separator (`cotton-papaya-drift`, `apple.lagoon.horse.jasmine22`) or written
/// in capitals (`SilverReefOnyxForest`). The last word may end in digits. Words of a
/// sentence joined by hyphens (`deprecated-use-token-instead`) are not one.
pub(crate) fn passphrase(v: &str) -> bool {
    const GRAMMAR: &[&str] = &[
        "the", "and", "for", "use", "not", "with", "instead", "from", "this", "that", "only",
        "see", "are", "was", "has", "have", "per", "via", "into", "your", "our", "its", "all",
        "any", "can", "will", "must", "should", "when", "then", "than",
    ];
    let word = |w: &str, last: bool| {
        let letters = if last {
            w.trim_end_matches(|c: char| c.is_ascii_digit())
        } else {
            w
        };
        (3..=12).contains(&letters.len())
            && letters.bytes().all(|b| b.is_ascii_alphabetic())
            && !GRAMMAR.contains(&letters.to_ascii_lowercase().as_str())
    };
    let joined = ['-', '.', '_'].iter().any(|sep| {
        let words: Vec<&str> = v.split(*sep).collect();
        words.len() >= 3
            && words
                .iter()
                .enumerate()
                .all(|(i, w)| word(w, i + 1 == words.len()))
    });
    let capitals = v.bytes().filter(u8::is_ascii_uppercase).count();
    let camel = capitals >= 3
        && v.starts_with(|c: char| c.is_ascii_uppercase())
        && v.split(|c: char| c.is_ascii_uppercase())
            .skip(1)
            .all(|w| (2..=11).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase()));
    joined || camel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_values_pass_and_references_do_not() {
        for yes in [
            "1108",
            "Tulip2",
            "ferry-bakery-zipper-orange",
            "Say\"Monkey\"56",
            "Ουρανός-paddle50",
            "S3cret!",
            "'paper morning marsh season'",
            "violin.green.hazel.buffalo.frost",
            "!nd!g0r4v3n502.",
            "*6oJkTzhHTpAfMj",
            "%E6%9D%B1Marsh72%23",
            "@WDo_VX#3G4J",
        ] {
            assert!(chosen(yes), "{yes}");
        }
        for no in [
            "${DB_PASSWORD}",
            "%ADMIN_PWD%",
            "{{ .Values.password }}",
            ".Values.auth.password",
            "<your-password>",
            "!vault",
            "!vault |",
            "********",
            "$2b$12$abcdefghijk",
            "true",
            "YES)",
            "null",
            "stdin",
            "DB_PASSWORD",
            "/run/secrets/db",
            "/home/ops",
            "files",
            "mio::Token(0);",
            "(&priv_key).into();",
            "@/run/pw.txt",
            "(hidden)",
            "(sensitive value)",
            "[secure]",
            "var.db_password",
            "File.read(ENV.fetch('K'))",
            "os.environ[\"KEY\"]",
            "sk-proj-hP8t…Mi7u",
            "abc",
            "is required here",
        ] {
            assert!(!chosen(no), "{no}");
        }
    }
}
