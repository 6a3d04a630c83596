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
const V: &str = r#"(?P<value>'[^'\n]{1,200}'|"[^"\n]{1,200}"|[^\s'"<]{1,200})"#;

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
        r"(?m)htpasswd\s+-\w*b\w*\s+(?:\S+\s+)?\S+\s+{V}[ \t]*(?:$|[;&|])",
    ),
    (&["mc alias"], r"mc\s+alias\s+set\s+\S+\s+\S+\s+\S+\s+{V}"),
    (&["rclone"], r"rclone\b[^\n|;&]*?\spass\s+{V}"),
    (
        &["pass:"],
        r"-(?:passout|passin|pass|password)\s+pass:(?P<value>[^\s'\x22]{1,200})",
    ),
    (
        &["convertto-securestring"],
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

/// Names whose last word says the value is a password.
const NAME_ENDINGS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "pw",
    "psk",
];

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
            r#"(?i)(?P<name>[A-Za-z0-9_.\-]{{0,60}}?(?:passw(?:or)?d|passphrase|pass|pwd|psk|pw))["'\x60\]]?(?:\s+string)?[ \t]*(?:=>?|:=|:|\?=|>|\(\s*)[ \t]*{V}"#
        ),
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
fn cli_value(value: &str, _text: &str) -> bool {
    chosen(unquote(value))
}

/// A value assigned to a name whose last word says password.
fn assigned(value: &str, name: &str) -> bool {
    password_name(name) && chosen(unquote(value))
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
        [.., last] => NAME_ENDINGS.contains(&last.as_str()),
    }
}

/// Whether a value refers to a secret kept elsewhere, or stands for none: `$VAR`,
/// `%VAR%`, `{{ .Values.x }}`, `.Values.auth.password`, `<your-password>`, `!vault`,
/// `(hidden)`, `[secure]`, a mask (`********`), a stored hash (`$2b$…`), a file, or a
/// word such as `true`, `null`, `stdin`, `YES`.
pub(crate) fn reference(v: &str) -> bool {
    let lower = v.trim().to_ascii_lowercase();
    let prefixed = [
        "$", "%", "{", "<", "!", "[", "(", "@", "*", "#", "//", "./", "~/", "/run/", "/etc/",
        "/var/", "/tmp/", "file:", "env:", "vault:", "secret:", "arn:", "ref+", "op://",
    ]
    .iter()
    .any(|p| lower.starts_with(p));
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
    prefixed || template_path || word || lower.starts_with("xxxx") || lower.starts_with("****")
}

/// Whether a value is one a person chose ([`reference`] says what it is not), and not
/// the name of another variable (`DB_PASSWORD`) or a sentence.
fn chosen(v: &str) -> bool {
    let v = v.trim();
    if v.chars().count() < 4 || placeholder(v) || reference(v) {
        return false;
    }
    // Another variable's name: `password: DB_PASSWORD`.
    let upper_ident = v.len() > 3
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && v.contains('_');
    // A sentence, not a value: `password is required`.
    let prose = v.split_whitespace().count() > 1 && !v.starts_with(['"', '\'']);
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
        ] {
            assert!(chosen(yes), "{yes}");
        }
        for no in [
            "${DB_PASSWORD}",
            "%ADMIN_PWD%",
            "{{ .Values.password }}",
            "<your-password>",
            "!vault",
            "********",
            "$2b$12$abcdefghijk",
            "true",
            "null",
            "stdin",
            "DB_PASSWORD",
            "/run/secrets/db",
            "abc",
            "is required here",
        ] {
            assert!(!chosen(no), "{no}");
        }
    }
}
