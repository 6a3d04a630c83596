//! Passwords where command lines, config files and environment dumps put them: the value
//! after a password flag of a known tool, and the value assigned to a name whose last
//! word says password. The context carries the evidence, so the value itself may be a
//! PIN, a word-made passphrase or anything else a person chose; only references,
//! placeholders, masks and stored hashes are refused.

use regex::Regex;

use crate::rules::identifier_words;
use crate::validate::placeholder;
use crate::{Reach, Rule};

/// A value: quoted (the quotes are not part of the finding) or a run without blanks.
const V: &str = r#"(?P<value>'[^'\n]{1,200}'|"[^"\n]{1,200}"|[^\s'"<](?:[^\s<]{0,198}[^\s'"<])?)"#;

/// Password flags of tools, by the tool: (prefilter keywords, regex with `{V}`).
const FLAGS: &[(&[&str], &str)] = &[
    // mysql -pSECRET: attached, because `-p SECRET` makes mysql prompt.
    (
        &["mysql", "mariadb"],
        r"(?:mysql\w*|mariadb\w*)\b[^\n|;&]*?\s-p{V}",
    ),
    // Long flags whatever the tool: --password=x, --passphrase x, -storepass x.
    (
        &[
            "--pass",
            "storepass",
            "keypass",
            "--client-secret",
            "--secret-key",
            "--db-password",
            "--admin-password",
        ],
        r"(?:^|\s)(?:--(?:password|passwd|passphrase|pass|db-password|admin-password|client-secret|secret-key)|-(?:storepass|keypass|srcstorepass|deststorepass|srckeypass|destkeypass))(?:=|[ \t]+){V}",
    ),
    (
        &["login"],
        r"(?:docker|podman|buildah|skopeo|nerdctl|oras|az|helm\s+registry)\s+login\b[^\n|;&]*?\s-p[ \t]+{V}",
    ),
    (
        &["mongo", "cqlsh"],
        r"(?:mongo\w*|cqlsh)\b[^\n|;&]*?\s-p[ \t]+{V}",
    ),
    (&["sshpass"], r"sshpass\s+-p[ \t]*{V}"),
    (
        &["sqlcmd", "bcp", "zip", "ipmitool", "mosquitto"],
        r"(?:sqlcmd|bcp|unzip|zip|ipmitool|mosquitto_\w+)\b[^\n|;&]*?\s-P[ \t]*{V}",
    ),
    (&["redis-cli"], r"redis-cli\b[^\n|;&]*?\s-a[ \t]+{V}"),
    (&["ldap"], r"ldap\w+\b[^\n|;&]*?\s-w[ \t]+{V}"),
    (&["snmp"], r"snmp\w+\b[^\n|;&]*?\s-[AX][ \t]+{V}"),
    (&["7z"], r"7z\w*\s+\w\b[^\n|;&]*?\s-p{V}"),
    (
        &["smbclient"],
        r#"smbclient\b[^\n|;&]*?\s-U[ \t]+['"]?[^%\s'"]+%(?P<value>[^\s'"]{1,200})"#,
    ),
    (&["lftp"], r#"lftp\b[^\n|;&]*?\s-u[ \t]+['"]?[^,\s'"]+,{V}"#),
    (
        &["net use"],
        r"(?i)net\s+use\s+(?:[a-z]:\s+)?\\\\\S+\s+(?P<value>[^\s/]\S{0,199})\s+/user:",
    ),
    (
        &["rabbitmqctl"],
        r"rabbitmqctl\s+(?:add_user|change_password)\s+\S+\s+{V}",
    ),
    (
        &["htpasswd"],
        r"(?m)htpasswd[ \t]+-\w*b\w*[ \t]+(?:\S+[ \t]+)?\S+[ \t]+{V}[ \t]*(?:$|[;&|])",
    ),
    (&["mc alias"], r"mc\s+alias\s+set\s+\S+\s+\S+\s+\S+\s+{V}"),
    (&["rclone"], r"rclone\b[^\n|;&]*?\spass\s+{V}"),
    (
        &["pass:"],
        r"-(?:passout|passin|pass|password)\s+pass:(?P<value>[^\s'\x22]{1,200})",
    ),
    (
        &["convertto-sec"],
        r"(?i)ConvertTo-SecureString\s+(?:-String\s+)?{V}\s+-AsPlainText",
    ),
    (
        &["--password-stdin"],
        r"echo\s+{V}\s*\|[^\n]*--password-stdin",
    ),
    // .netrc: `machine h login u password p`, or an indented `password p` line.
    (
        &["password"],
        r"(?m)(?:\slogin\s+\S+\s+password|^[ \t]+password)[ \t]+{V}[ \t]*$",
    ),
    // .pgpass: host:port:database:user:password.
    (
        &[":543", ":*:"],
        r"(?m)^[\w.\-*]+:(?:\d{2,5}|\*):[^:\s]+:[^:\s]+:(?P<value>[^:\s]{1,200})$",
    ),
];

/// `- name: NAME` and, on the next line, `value: …`.
const ENV_ENTRY: &str = r#"(?m)-[ \t]*name:[ \t]*["']?(?P<name>[A-Za-z_][A-Za-z0-9_]*)["']?[ \t]*\r?\n[ \t]*value:[ \t]*{V}"#;

/// Names whose last word says the value is a password.
const NAME_ENDINGS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "pw",
    "psk",
    "auth",
];
/// Endings that also count at the end of a word (`PGPASSWORD`, `mysqlpasswd`).
const WORD_ENDINGS: &[&str] = &["password", "passwd", "passphrase"];

pub(crate) fn rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = FLAGS
        .iter()
        .map(|(keywords, re)| rule("cli-password", keywords, &re.replace("{V}", V), cli_value))
        .collect();
    // `NAME=value`, `name: value`, `"name": "value"`, `<password>value`,
    // `setPassword("value")`.
    rules.push(rule(
        "password-assignment",
        &["pass", "pwd", "psk", "pw"],
        &format!(
            r#"(?i)(?P<name>[A-Za-z0-9_.\-]{{0,60}}?(?:passw(?:or)?d|passphrase|pass|pwd|psk|pw))["'\x60\]]?(?:\s+string)?[ \t]*(?:=>?|:=|:|\?=)[ \t]*{V}"#
        ),
        assigned,
    ));
    // `<password>value</password>`.
    rules.push(rule(
        "password-assignment",
        &["pass", "pwd"],
        r"(?i)<(?P<name>[A-Za-z0-9_.\-]{0,60}?(?:passw(?:or)?d|passphrase|pass|pwd))>[ \t]*(?P<value>[^<\n]{1,200})</",
        assigned,
    ));
    // `setPassword("value")`: a quoted argument.
    rules.push(rule(
        "password-assignment",
        &["pass", "pwd"],
        r#"(?i)(?P<name>[A-Za-z0-9_]{0,60}?(?:passw(?:or)?d|passphrase|pass|pwd))\([ \t]*(?P<value>'[^'\n]{1,200}'|"[^"\n]{1,200}")"#,
        assigned,
    ));
    // Kubernetes and compose env entries: `- name: DB_PASSWORD`, then `value: …`.
    rules.push(rule(
        "env-entry",
        &["name:"],
        &ENV_ENTRY.replace("{V}", V),
        assigned,
    ));
    // `define('DB_PASSWORD', 'value')`: a quoted name, a comma, a quoted value.
    rules.push(rule(
        "password-assignment",
        &["pass", "pwd"],
        r#"(?i)['"](?P<name>[A-Za-z0-9_.\-]{0,60}?(?:passw(?:or)?d|passphrase|pass|pwd))['"][ \t]*,[ \t]*(?P<value>'[^'\n]{1,200}'|"[^"\n]{1,200}")"#,
        assigned,
    ));
    // `printenv DB_PASSWORD` and the value on the next line.
    rules.push(rule(
        "password-assignment",
        &["printenv"],
        r"printenv[ \t]+(?P<name>\w+)[ \t]*\r?\n(?P<value>[^\n]{1,200})",
        assigned,
    ));
    rules
}

/// Secrets assigned to a name that says so, after the generic rules (which keep what
/// they find): `SECRET_KEY = '…'`, `hmac_key = "…"`, `APP_KEY=base64:…`, a random value
/// of any characters.
pub(crate) fn secret_rules() -> Vec<Rule> {
    vec![
        Rule {
            kind: "generic-secret",
            ..rule(
                "secret-assignment",
                &["secret", "key", "token", "salt"],
                &format!(
                    r#"(?i)(?P<name>[A-Za-z0-9_.\-]{{0,60}}?(?:secret|key|token|salt))["'\x60\]]?[ \t]*(?:=>?|:=|:|\?=)[ \t]*{V}"#
                ),
                secret_assigned,
            )
        },
        Rule {
            kind: "generic-secret",
            ..rule(
                "env-entry",
                &["name:"],
                &ENV_ENTRY.replace("{V}", V),
                secret_assigned,
            )
        },
    ]
}

fn rule(
    id: &'static str,
    keywords: &'static [&'static str],
    re: &str,
    check: fn(&str, &str) -> bool,
) -> Rule {
    Rule {
        id,
        kind: "generic-password",
        keywords,
        // unwrap: built from constants, compiled by the unit tests.
        regex: Regex::new(re).unwrap(),
        check: Some(check),
        reach: Reach::Lines,
        word_start: false,
    }
}

/// A value after a password flag: anything but a reference, placeholder or mask.
pub(crate) fn cli_value(value: &str, _text: &str) -> bool {
    chosen(value)
}

/// A value assigned to a name whose last word says password.
fn assigned(value: &str, name: &str) -> bool {
    password_name(name) && chosen(value)
}

/// A random value assigned to a name whose last word says secret, key, token or salt,
/// unless the name's first word says what kind of non-secret key it is (`cache_key`).
fn secret_assigned(raw: &str, name: &str) -> bool {
    const NOT_SECRET: &[&str] = &[
        "cache",
        "sort",
        "partition",
        "primary",
        "foreign",
        "public",
        "object",
        "s3",
        "lookup",
        "routing",
        "idempotency",
        "dedup",
        "row",
        "map",
        "hash",
        "group",
        "shard",
        "next",
        "page",
        "continuation",
        "pagination",
        "cursor",
        "csrf",
        "ssh",
        "gpg",
        "pgp",
        "host",
        "fingerprint",
        "registry",
        "license",
        "bucket",
        "table",
        "dict",
        "item",
    ];
    let words = identifier_words(name);
    let Some(last) = words.last() else {
        return false;
    };
    let says = [
        "secret",
        "key",
        "token",
        "salt",
        "apitoken",
        "authtoken",
        "accesstoken",
        "apisecret",
        "clientsecret",
        "secretkey",
        "apikey",
        "signingkey",
        "creds",
        "credential",
        "credentials",
    ]
    .contains(&last.as_str());
    if !says
        || words.iter().any(|w| NOT_SECRET.contains(&w.as_str()))
        || crate::rules::names_no_secret(name)
    {
        return false;
    }
    let v = unquote(raw).trim();
    if !chosen(raw)
        || v.chars().count() < 16
        || v.contains("://")
        || v.contains(char::is_whitespace)
    {
        return false;
    }
    let classes = [
        v.bytes().any(|b| b.is_ascii_lowercase()),
        v.bytes().any(|b| b.is_ascii_uppercase()),
        v.bytes().any(|b| b.is_ascii_digit()),
        v.bytes().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|c| **c)
    .count();
    // Words joined by separators read as an identifier, not a key.
    let identifier = v.split(['_', '.', '-', '/', ':']).all(|w| {
        w.len() <= 12
            && w.bytes().all(|b| b.is_ascii_alphanumeric())
            && w.bytes().filter(u8::is_ascii_digit).count() <= 2
    }) || (v.len() < 32 && v.bytes().all(|b| b.is_ascii_alphabetic()));
    let uuid = v.len() == 36 && v.split('-').map(str::len).eq([8, 4, 4, 4, 12]);
    classes >= 2
        && !identifier
        && !uuid
        && crate::validate::entropy(v) >= 3.2
        && crate::validate::not_placeholder(v, "")
        && !crate::rules::public_or_data(v)
}

fn unquote(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// `DB_PASSWORD`, `smtpPass`, `spring.datasource.password`, `ADMIN_PWD`: the last word
/// says password. Not `PWD` alone (the shell's working directory), nor a name about a
/// password (`password_hash`, `PASSWORD_RESET_TTL`, `password_min_length`).
fn password_name(name: &str) -> bool {
    let words = identifier_words(name);
    match words.as_slice() {
        [] => false,
        [only] if only == "pwd" || only == "oldpwd" => false,
        [.., last] => {
            NAME_ENDINGS.contains(&last.as_str()) || WORD_ENDINGS.iter().any(|e| last.ends_with(e))
        }
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
        "/tmp/", "file:", "env:", "vault:", "secret:", "arn:", "ref+", "op://", "***", "###",
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
    let call = lower.find(['(', '[']).is_some_and(|at| {
        at > 0
            && lower[..at]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
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
    ]
    .contains(&bare);
    prefixed
        || batch_var
        || tag
        || code_path
        || call
        || parenthesised
        || template_path
        || word
        || lower.starts_with("xxxx")
}

/// Whether a value is one a person chose ([`reference`] says what it is not), and not
/// the name of another variable (`DB_PASSWORD`) or a sentence.
fn chosen(raw: &str) -> bool {
    let quoted = unquote(raw).len() != raw.len();
    let v = unquote(raw).trim();
    // `sk-proj-hP8t…Mi7u`: the middle left out, what is shown is not the secret.
    let elided = v.contains('…') || v.contains("...");
    if v.chars().count() < 4 || placeholder(v) || reference(v) || elided {
        return false;
    }
    // Another variable's name: `password: DB_PASSWORD`.
    let upper_ident = v.len() > 3
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && v.contains('_');
    // A sentence, not a value: `password is required` (a quoted one may be a passphrase).
    let prose = !quoted && v.split_whitespace().count() > 1;
    !upper_ident && !prose && !v.chars().all(|c| c == v.chars().next().unwrap_or(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_password_by_their_last_word() {
        for yes in [
            "DB_PASSWORD",
            "smtpPass",
            "spring.datasource.password",
            "ADMIN_PWD",
            "wifi_psk",
            "GPG_PASSPHRASE",
            "ClearTextPassword",
            "setPassword",
            "PGPASSWORD",
            "REDIS_AUTH",
        ] {
            assert!(password_name(yes), "{yes}");
        }
        for no in [
            "PWD",
            "OLDPWD",
            "password_hash",
            "PASSWORD_RESET_TTL",
            "password_min_length",
            "bypass",
            "compass",
            "PASSWORD_FILE",
        ] {
            assert!(!password_name(no), "{no}");
        }
    }

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
