//! Secrets where a name says so: a value assigned to a name whose last word is secret,
//! key, token or salt (`SECRET_KEY = '…'`, `hmac_key = "…"`), given to a setter or a
//! flag of that name, or kept in a cookie jar. The name carries the evidence, so the
//! value must still look drawn at random: identifiers, UUIDs, public data and words are
//! refused.

use crate::passwords::{rule, ASSIGN, ENV_ENTRY, Q, V, WRAP};
use crate::rules::identifier_words;
use crate::values::{chosen, unquote};
use crate::Rule;

/// Secrets assigned to a name that says so, after the generic rules (which keep what
/// they find): `SECRET_KEY = '…'`, `hmac_key = "…"`, `APP_KEY=base64:…`, a random value
/// of any characters.
pub(crate) fn rules() -> Vec<Rule> {
    let secret = |id, keywords, re: &str, check| Rule {
        kind: "generic-secret",
        ..rule(id, keywords, re, check)
    };
    vec![
        secret(
            "secret-assignment",
            &["secret", "key", "token", "salt", "cookie", "dek", "kek"],
            &format!(r#"(?i)(?P<name>[A-Za-z0-9_.\-]{{0,60}}?(?:{SECRET_WORDS})){ASSIGN}{V}"#),
            secret_assigned,
        ),
        // The literal turned into bytes: `hmacKey = []byte("…")`, `Buffer.from('…')`.
        secret(
            "secret-assignment",
            &["secret", "key", "token", "salt"],
            &format!(
                r#"(?i)(?P<name>[A-Za-z0-9_.\-]{{0,60}}?(?:{SECRET_WORDS})){ASSIGN}(?:{WRAP}){Q}"#
            ),
            secret_assigned,
        ),
        // A setter or a constructor given the value: `.setApiKey("…")`,
        // `new SecretKeySpec("…".getBytes(), "AES")`, `WithToken("…")`.
        secret(
            "secret-assignment",
            &["secret", "key", "token", "salt", "cookie"],
            &format!(
                r#"(?i)(?P<name>(?:[A-Za-z_][A-Za-z0-9_.]{{0,60}}?)?(?:{SECRET_WORDS}|keyspec))[ \t]*\([ \t]*(?:{WRAP})?{Q}"#
            ),
            secret_assigned,
        ),
        // Any flag whose name says secret, token or key: `--token …`, `-setcookie …`.
        secret(
            "secret-flag",
            &["secret", "token", "key", "salt", "cookie"],
            &format!(
                r#"(?m)(?:^|\s)--?(?P<name>(?:[A-Za-z][A-Za-z0-9_\-]{{0,40}}?)?(?:{SECRET_WORDS}))(?:=|[ \t]+){V}"#
            ),
            secret_flag,
        ),
        // A cookie jar's line: domain, flag, path, secure, expiry, name, value.
        secret(
            "session-cookie",
            &["\ttrue\t", "\tfalse\t"],
            r"(?m)^(?:#HttpOnly_)?[A-Za-z0-9_.\-]+\t(?:TRUE|FALSE)\t[^\t\n]*\t(?:TRUE|FALSE)\t\d+\t(?P<name>[^\t\n]+)\t(?P<value>[^\t\n]{16,})$",
            jar_cookie,
        ),
        // A name and a value as a call's arguments: `os.Setenv("API_TOKEN", "…")`,
        // `System.setProperty("LINEAR_TOKEN", "…")`, `config.set('hmac_key', '…')`.
        Rule {
            kind: "generic-secret",
            ..rule(
                "secret-assignment",
                &["secret", "key", "token", "salt"],
                r#"(?i)['"](?P<name>[A-Za-z0-9_.\-]{0,60}?(?:secret|key|token|salt))['"][ \t]*,[ \t]*(?P<value>'[^'\n]{1,300}'|"[^"\n]{1,300}")"#,
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
        // A name and its value on two rows, as database shells print a settings table
        // (`name: stripe_webhook_secret` / `value: …`, `key = …` / `value = …`), as
        // `redis-cli` prints a hash (`1) "hmac_key"` / `2) "…"`), or as JSON pairs
        // (`{"ParameterKey": "SigningSecret", "ParameterValue": "…"}`).
        secret(
            "key-value-row",
            &["name:", "name =", "key:", "key =", "key ", "field:", "setting:"],
            &r#"(?im)^[ \t]*(?:name|key|field|setting|parameter|variable)[ \t]*[:=|][ \t]*["']?(?P<name>[A-Za-z0-9_.\-:/]{1,80})["']?[ \t]*\r?\n[ \t]*(?:value|val)[ \t]*[:=|][ \t]*{V}"#
                .replace("{V}", V),
            row_value,
        ),
        secret(
            "key-value-row",
            &[") \""],
            r#"(?m)^\d+\)[ \t]+"(?P<name>[^"\n]{1,80})"[ \t]*\r?\n\d+\)[ \t]+(?P<value>"[^"\n]*")"#,
            row_value,
        ),
        secret(
            "key-value-row",
            &["\"key\"", "\"name\"", "parameterkey", "parameter_key"],
            r#"(?i)"(?:key|name|parameterkey|parameter_key|variable)"[ \t]*:[ \t]*"(?P<name>[^"\n]{1,80})"[ \t]*,[ \t]*"(?:value|parametervalue|parameter_value)"[ \t]*:[ \t]*(?P<value>"[^"\n]*")"#,
            row_value,
        ),
        // A name and a value as attributes: TeamCity's `##teamcity[setParameter
        // name='env.SIGNING_SECRET' value='…']`, `<add name="…" value="…"/>`.
        secret(
            "key-value-row",
            &["name="],
            r#"(?i)name[ \t]*=[ \t]*["'](?P<name>[^"'\n]{1,80})["'][ \t]+value[ \t]*=[ \t]*(?P<value>"[^"\n]{1,300}"|'[^'\n]{1,300}')"#,
            row_value,
        ),
        // A value a library is told is plain text: CDK's `SecretValue.unsafePlainText('…')`.
        secret(
            "secret-assignment",
            &["plaintext("],
            &format!(r"(?i)(?P<name>[A-Za-z0-9_.]{{0,60}}?secret[A-Za-z0-9_.]{{0,30}}?plaintext)\([ \t]*{Q}"),
            declared_value,
        ),
        // What a CI job declares secret so that its log masks it: GitHub's
        // `::add-mask::…`, Azure Pipelines' `##vso[task.setvariable …;issecret=true]…`,
        // Buildkite's `… | buildkite-agent redactor add`.
        secret(
            "ci-declared-secret",
            &["::add-mask::"],
            r"::add-mask::(?P<value>[^\s]+)",
            declared_value,
        ),
        secret(
            "ci-declared-secret",
            &["issecret=true"],
            r"(?i)##vso\[task\.setvariable[^\]\n]*issecret=true[^\]\n]*\](?P<value>[^\s]+)",
            declared_value,
        ),
        secret(
            "ci-declared-secret",
            &["redactor add"],
            r#"(?:printf|echo)[^\n|]*?[ \t](?P<value>'[^'\n]+'|"[^"\n]+")[ \t]*\|[ \t]*buildkite-agent[ \t]+redactor[ \t]+add"#,
            declared_value,
        ),
        // NTP's symmetric keys: `ntp authentication-key 9 hmac-sha256 …` on network
        // gear, and the lines of `ntp.keys` and `chrony.keys` (`2 SHA256 HEX:…`).
        secret(
            "ntp-key",
            &[
                "authentication-key",
                " md5 ",
                " sha1 ",
                " sha256 ",
                " sha384 ",
                " sha512 ",
                " aes128cmac ",
            ],
            r"(?im)(?:authentication-key[ \t]+\d{1,5}[ \t]+(?:md5|sha1?|sha256|sha384|sha512|hmac-sha\d+|aes128cmac|cmac)[ \t]+(?:7[ \t]+)?|^[ \t]*\d{1,5}[ \t]+(?:md5|sha1?|sha256|sha384|sha512|aes128cmac)[ \t]+(?:hex:|ascii:)?)(?P<value>[!-~]{8,})[ \t]*$",
            |value, _| crate::validate::not_placeholder(value, ""),
        ),
    ]
}

/// A value on the row below a name that says secret or password.
fn row_value(value: &str, name: &str) -> bool {
    secret_assigned(value, name) || crate::passwords::assigned(value, name)
}

/// A value a CI job declared secret, or a library was told is plain text: anything but
/// a reference to one (`$TOKEN`, `${{ secrets.X }}`).
fn declared_value(value: &str, _name: &str) -> bool {
    chosen(value)
}

/// Names' last words that say secret (`cookie` as Erlang's and RabbitMQ's, `dek` and
/// `kek` as data and key encryption keys).
const SECRET_WORDS: &str = "secret|key|token|salt|cookie|dek|kek";

/// A random value after a flag whose name says secret, token or key; not the next flag.
fn secret_flag(value: &str, name: &str) -> bool {
    !value.starts_with('-') && secret_assigned(value, name)
}

/// A cookie jar's session cookie: a name that says session, auth or token, and a
/// random value.
fn jar_cookie(value: &str, name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["sess", "sid", "auth", "token", "jwt", "remember", "login"]
        .iter()
        .any(|w| lower.contains(w))
        && crate::rules::cookie_value(value, name)
}

/// A random value assigned to a name whose last word says secret, key, token or salt,
/// unless the name's first word says what kind of non-secret key it is (`cache_key`).
pub(crate) fn secret_assigned(raw: &str, name: &str) -> bool {
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
    // `new SecretKeySpec(…)`: the key's material.
    let key_spec = words.len() >= 2 && last == "spec" && words[words.len() - 2] == "key";
    // A salt is secret whatever kind of hash it seasons (`hash_salt`).
    let salt = last == "salt";
    let says = key_spec
        || [
            "secret",
            "key",
            "token",
            "salt",
            "cookie",
            "dek",
            "kek",
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
        || (!salt && words.iter().any(|w| NOT_SECRET.contains(&w.as_str())))
        || crate::rules::names_no_secret(name)
    {
        return false;
    }
    // A cookie header is the session-cookie rule's to read, cookie by cookie.
    let header = matches!(name.to_ascii_lowercase().as_str(), "cookie" | "set-cookie");
    // A list's or a statement's separator is not part of the value.
    let v = unquote(raw).trim().trim_end_matches([',', ';']);
    // `C.degree)[0:2]`: the tail of an expression, its brackets unbalanced (a quoted
    // value is whatever the quotes hold).
    let quoted = unquote(raw).len() != raw.len();
    // A generated key (Django's alphabet has brackets) is long and has no member access.
    let generated = v.chars().count() >= 32 && !v.contains('.');
    let unbalanced = !quoted
        && !generated
        && (v.matches('(').count() != v.matches(')').count()
            || v.matches('[').count() != v.matches(']').count());
    if header || unbalanced {
        return false;
    }
    if !chosen(raw) || v.contains("://") || v.contains(char::is_whitespace) {
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
    // Shorter than a generated key, a secret is one a person chose (`secret = Hx7!kLm2`,
    // `wifi key: …`): it mixes letters, digits and symbols.
    let length = v.chars().count();
    let symbol = v.bytes().any(|b| !b.is_ascii_alphanumeric());
    let digit = v.bytes().any(|b| b.is_ascii_digit());
    if length < 8 || (length < 16 && (classes < 3 || !symbol || !digit)) {
        return false;
    }
    // Words joined by separators read as an identifier, not a key.
    let identifier = v.split(['_', '.', '-', '/', ':']).all(|w| {
        w.len() <= 12
            && w.bytes().all(|b| b.is_ascii_alphanumeric())
            && w.bytes().filter(u8::is_ascii_digit).count() <= 2
    }) || (v.len() < 32 && v.bytes().all(|b| b.is_ascii_alphabetic()))
        // `InspectionDataKey.AFTER_RESULT_SELECTOR`: words of letters only, however long.
        || v.split(['_', '.', '-', '/', ':'])
            .all(|w| w.bytes().all(|b| b.is_ascii_alphabetic()));
    let uuid = v.len() == 36 && v.split('-').map(str::len).eq([8, 4, 4, 4, 12]);
    let least_entropy = if length < 16 { 2.8 } else { 3.2 };
    classes >= 2
        && !identifier
        && !uuid
        && crate::validate::entropy(v) >= least_entropy
        && crate::validate::not_placeholder(v, "")
        && !crate::rules::public_or_data(v)
}
