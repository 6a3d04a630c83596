//! Passwords where command lines, config files and environment dumps put them: the value
//! after a password flag of a known tool, and the value assigned to a name whose last
//! word says password. The context carries the evidence, so the value itself may be a
//! PIN, a word-made passphrase or anything else a person chose; only references,
//! placeholders, masks and stored hashes are refused.

use regex::Regex;

use crate::rules::identifier_words;
use crate::validate::placeholder;
use crate::{Reach, Rule};

/// A value: quoted (the quotes are not part of the finding) or a run without blanks. A
/// single-quoted value may hold the shell's `'\''` and PowerShell's `''` for a quote;
/// JSON inside a JSON string quotes with `\"`.
/// Unbounded: a counted repetition of a Unicode class compiles to a large automaton,
/// and a line bounds the value anyway.
const V: &str = r#"(?P<value>\\"(?:[^"\\\n]|\\[^"\n])+\\"|'(?:[^'\n]|'\\''|'')+'|"[^"\n]+"|[^\s'"<\\](?:[^\s<]*[^\s'"<\\])?)"#;

/// A quoted value only: an argument of a call.
const Q: &str = r#"(?P<value>\\"(?:[^"\\\n]|\\[^"\n])+\\"|'(?:[^'\n]|'\\''|'')+'|"[^"\n]+")"#;

/// What assigns a value to a name: `=`, `=>`, `:=`, `:`, `?=`, or a type annotation and
/// `=` (`password: String = …`, `DB_PASSWORD: &str = …`, `pass string = …`). Up to two
/// closing characters may end the name (`['password'] = …`), and C's `[]`, VB's
/// `As String =` and a fallback (`process.env.DB_PASSWORD || "…"`) count too.
const ASSIGN: &str = r#"(?:\[\])?(?:\\?["'\x60\]]){0,2}(?:\s+string)?(?:[ \t]*:[ \t]*&?(?:'static[ \t]+)?[A-Za-z_][A-Za-z0-9_:.]*(?:<[^>\n]{0,40}>)?\??[ \t]*=|[ \t]+as[ \t]+(?-u:\w)+[ \t]*=|[ \t]*(?:=>?|:=|:|\?=|<-|：|\|\||\?\?))[ \t]*"#;

/// Password flags of tools, by the tool: (prefilter keywords, regex with `{V}`).
const FLAGS: &[(&[&str], &str)] = &[
    // mysql -pSECRET: attached, because `-p SECRET` makes mysql prompt.
    (
        &["mysql", "mariadb"],
        r"(?:mysql(?-u:\w)*|mariadb(?-u:\w)*)(?-u:\b)[^\n|;&]*?\s-p{V}",
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
        r"(?:docker|podman|buildah|skopeo|nerdctl|oras|az|helm\s+registry)\s+login(?-u:\b)[^\n|;&]*?\s-p[ \t]+{V}",
    ),
    (
        &["mongo", "cqlsh"],
        r"(?:mongo(?-u:\w)*|cqlsh)(?-u:\b)[^\n|;&]*?\s-p[ \t]+{V}",
    ),
    (&["sshpass"], r"sshpass\s+-p[ \t]*{V}"),
    (
        &["sqlcmd", "bcp", "zip", "ipmitool", "mosquitto"],
        r"(?:sqlcmd|bcp|unzip|zip|ipmitool|mosquitto_(?-u:\w)+)(?-u:\b)[^\n|;&]*?\s-P[ \t]*{V}",
    ),
    (&["redis-cli"], r"redis-cli(?-u:\b)[^\n|;&]*?\s-a[ \t]+{V}"),
    (&["ldap"], r"ldap(?-u:\w)+(?-u:\b)[^\n|;&]*?\s-w[ \t]+{V}"),
    (
        &["snmp"],
        r"snmp(?-u:\w)+(?-u:\b)[^\n|;&]*?\s-[AX][ \t]+{V}",
    ),
    (&["7z"], r"7z(?-u:\w)*\s+(?-u:\w)(?-u:\b)[^\n|;&]*?\s-p{V}"),
    (
        &["smbclient"],
        r#"smbclient(?-u:\b)[^\n|;&]*?\s-U[ \t]+['"]?[^%\s'"]+%(?P<value>[^\s'"]{1,200})"#,
    ),
    (
        &["lftp"],
        r#"lftp(?-u:\b)(?:[^\n|;&'"]|"[^"\n]*"|'[^'\n]*')*?\s-u[ \t]+['"]?[^,\s'"]+,{V}"#,
    ),
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
        r"(?m)htpasswd[ \t]+-(?-u:\w)*b(?-u:\w)*[ \t]+(?:\S+[ \t]+)?\S+[ \t]+{V}[ \t]*(?:$|[;&|])",
    ),
    (&["mc alias"], r"mc\s+alias\s+set\s+\S+\s+\S+\s+\S+\s+{V}"),
    (&["rclone"], r"rclone(?-u:\b)[^\n|;&]*?\spass\s+{V}"),
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
    // `curl -u user:password`, `curl -su 'user:password'`, `wget --user` alike.
    (
        &["curl", "http"],
        r#"(?:curl|https?|xh)(?-u:\b)[^\n|;&]*?(?:\s-[A-Za-z]*u[ \t]*|\s--user[= \t]+)['"]?[^\s:'"]{1,64}:(?P<value>[^\s'"]{1,200})"#,
    ),
    // .pgpass: host:port:database:user:password.
    (
        &[":543", ":*:"],
        r"(?m)^[A-Za-z0-9_.\-*]+:(?:\d{2,5}|\*):[^:\s]+:[^:\s]+:(?P<value>[^:\s]{1,200})$",
    ),
];

/// Any flag whose name's last word says password, whatever the tool: `--rpc-password x`,
/// `--db-pass=x`, `-password x`, `-pw x`.
const ANY_FLAG: &str = r"(?m)(?:^|\s)--?(?P<name>(?:[A-Za-z][A-Za-z0-9_\-]{0,40}?)?(?:passw(?:or)?d|passphrase|pass|pwd|pw))(?:=|[ \t]+){V}";

/// A password flag right after a user flag, whatever the tool: `-u ops -p …`,
/// `-U sa -P …`, `/u:ops /p:…`, `-username ops -password …`. A number there is a port
/// (`psql -U app -p 5432`).
const USER_THEN_PASSWORD: &str = r"(?P<refute_before>(?:mysql|mariadb)(?-u:\w)*(?-u:\b)[^\n|;&]*?)?(?:\s-[uU]|\s--?user(?:name)?|\s/u(?:ser)?:)(?:[ \t]+|=)?[^\s/]+[ \t]+(?:-[pP]|/p(?:assword)?:)[ \t]*{V}";

/// A password a command reads on its standard input: `echo … | sudo -S`,
/// `sudo -S <<< …`, `echo 'user:…' | chpasswd`, `echo -e "…\n…" | passwd`.
const STDIN: [&str; 2] = [
    r"(?:echo|printf)[ \t]+(?:-(?-u:\w)+[ \t]+)?{V}[ \t]*\|[ \t]*(?:sudo(?-u:\b)[^\n|]*\s-S|(?:sudo[ \t]+)?(?:ch|smb)?passwd(?-u:\b)|kinit(?-u:\b))",
    r"(?:sudo(?-u:\b)[^\n|<]*\s-S|(?:ch|smb)?passwd(?-u:\b)[^\n|<]*)[ \t]*<<<[ \t]*{V}",
];

/// SQL that sets a password: `IDENTIFIED BY '…'`, `WITH PASSWORD '…'`, `PASSWORD '…'`.
const SQL: &str = r"(?i)(?:(?:identified[ \t]+(?:with[ \t]+(?-u:\w)+[ \t]+)?by|password)[ \t]+|set[ \t]+password(?:[ \t]+for[ \t]+[^\s=]{1,120})?[ \t]*=[ \t]*){Q}";

/// A config directive whose name says password and whose one value ends the line:
/// `requirepass …`, `masterauth …`, `bindpw …`, `rootpw …`, `enable secret …`,
/// `username admin password 0 …`, `key-string …`, `pre-shared-key …`; and the same
/// words in a command (`nmcli … password …`). The value must look like a password: a
/// bare word after `password` is prose (`password changed`).
const DIRECTIVE: &str = r"(?im)(?:^|[ \t])(?P<name>(?:[A-Za-z][A-Za-z0-9_.\-]{0,40}?)?(?:passw(?:or)?d|pass|pwd|pw|auth|secret|key-string|pre-shared-key|psk|passphrase))(?:[ \t]+0)?[ \t]+{V}[ \t]*$";

/// OpenWrt's uci: `option key '…'` under a wireless interface, `option password '…'`.
const UCI_OPTION: &str = r"(?m)^[ \t]*option[ \t]+(?P<name>key|password|psk|sae_password|auth_secret|passphrase)[ \t]+{V}";

/// Prose: `the password is …`, `password was …`, `passphrase (LUKS): …`, `password for
/// the office: …`, `[sudo] password for ops: …`, `pw for the shared account → …`, `the
/// root pass is …`.
const PROSE: &str = r"(?i)(?P<name>passw(?:or)?d|passphrase|pin|passcode|pass|pw)(?:(?:[ \t]+\([^)\n]{1,30}\))?[ \t]+(?:for|of|to)(?:[ \t]+[^\s:→]{1,30}){1,5}?[ \t]*(?::|=|→|->|=>|[ \t]is|[ \t]was)|[ \t]+\([^)\n]{1,30}\)[ \t]*:|[ \t]+(?:is|was|=)[ \t]*:?|[ \t]*(?:→|->|=>))[ \t]*{V}";

/// `PIN: 4821`, `sim_pin=4821`, `pin code 4821`, `passcode: 220719`.
const PIN: &str = r#"(?im)(?:^|[^A-Za-z0-9])(?P<name>(?:[A-Za-z][A-Za-z0-9_.\-]{0,30}?[_.\- ])?(?:pin(?:[ _\-]?code)?|passcode))["']?[ \t]*(?:[:=]|is)?[ \t]*["']?(?P<value>\d{4,8})(?:$|[^A-Za-z0-9_.\-:/])"#;

/// `<property name="password" value="…"/>`.
const XML_PROPERTY: &str = r#"(?i)name[ \t]*=[ \t]*["'](?P<name>[^"'\n]{0,40}?(?:passw(?:or)?d|pass|pwd))["'][ \t]+value[ \t]*=[ \t]*(?P<value>"[^"\n]{1,200}"|'[^'\n]{1,200}')"#;

/// `<param name="password">…</param>`.
const XML_PARAM: &str = r#"(?i)name[ \t]*=[ \t]*["'](?P<name>[^"'\n]{0,40}?(?:passw(?:or)?d|pass|pwd))["'][ \t]*>(?P<value>[^<\n]{1,200})</"#;

/// A tool's `set NAME VALUE`: `aws configure set aws_secret_access_key …`,
/// `gh secret set DB_PASSWORD --body …`.
const SET: &str = r"(?:configure|config|secret|variable)[ \t]+set[ \t]+(?P<name>[A-Za-z0-9_.\-]{2,80})[ \t]+(?:(?:--body|-b)[ \t=]+)?{V}";

/// A call that takes a user, then a password: `HTTPBasicAuth('u', 'p')`,
/// `smtp.login("u", "p")`, `new NetworkCredential("u", "p")`, `req.SetBasicAuth("u", "p")`.
const CREDENTIAL_CALL: &str = r#"(?i)[A-Za-z_][A-Za-z0-9_.]{0,60}?(?:auth|authentication|login|logon|signin|credentials?)\s*\(\s*(?:(?:[A-Za-z_][A-Za-z0-9_.]*|'[^'\n]{0,64}'|"[^"\n]{0,64}")\s*,\s*)?(?P<name>'[^'\n]{1,64}'|"[^"\n]{1,64}")\s*,\s*{Q}"#;

/// A user and a password as a pair: `auth=('u', 'p')`, `:basic_auth => ['u', 'p']`.
const CREDENTIAL_PAIR: &str = r#"(?i)[A-Za-z0-9_.]{0,40}?(?:auth|credentials?|creds|login)["']?\s*(?:=>?|:)\s*[(\[]\s*(?P<name>'[^'\n]{1,64}'|"[^"\n]{1,64}")\s*,\s*{Q}"#;

/// A database connection's third argument, after a database or host and a user:
/// `new Sequelize('db', 'user', 'p')`, `DriverManager.getConnection(url, "u", "p")`,
/// `mysqli_connect("h", "u", "p")`, `MySQLdb.connect("h", "u", "p", "db")`.
const CONNECTION_CALL: &str = r#"(?i)(?:sequelize|getconnection|mysqli|pdo|[A-Za-z0-9_.]*connect)\s*\(\s*(?:'[^'\n]{0,200}'|"[^"\n]{0,200}"|[A-Za-z_][A-Za-z0-9_.]*)\s*,\s*(?P<name>'[^'\n]{1,64}'|"[^"\n]{1,64}"|[A-Za-z_][A-Za-z0-9_.]*)\s*,\s*{Q}"#;

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
    "passcode",
];
/// Endings that also count at the end of a word (`PGPASSWORD`, `mysqlpasswd`).
const WORD_ENDINGS: &[&str] = &["password", "passwd", "passphrase"];

/// Other languages' words for password, as a name ends (`db_passwort`, `contraseña`,
/// `mot_de_passe`, `пароль`), in lower case and, where the prefilter's ASCII case folding
/// does not reach, capitalised: they are the rule's keywords too.
const FOREIGN: &[&str] = &[
    "passwort",
    "kennwort",
    "contraseña",
    "contrasena",
    "contrasenya",
    "senha",
    "mot_de_passe",
    "motdepasse",
    "wachtwoord",
    "hasło",
    "haslo",
    "heslo",
    "jelszó",
    "jelszo",
    "salasana",
    "lösenord",
    "losenord",
    "passord",
    "adgangskode",
    "şifre",
    "Şifre",
    "sifre",
    "parola",
    "пароль",
    "Пароль",
    "ПАРОЛЬ",
    "密码",
    "密碼",
    "パスワード",
    "비밀번호",
    "mật_khẩu",
    "matkhau",
    "kata_sandi",
    "kata_laluan",
    "كلمة_المرور",
    "كلمة المرور",
    "كلمة_السر",
    "رمز_عبور",
    "گذرواژه",
    "پاس_ورڈ",
    "पासवर्ड",
    "পাসওয়ার্ড",
    "รหัสผ่าน",
    "סיסמה",
    "סיסמא",
    "κωδικός",
    "neno_siri",
    "nenosiri",
    "neno_la_siri",
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
        &[
            "pass", "pwd", "psk", "pw", "_auth", "auth=", "auth:", "auth\"", "auth'", "auth ",
            "creds", "credential", "userpass", "login",
        ],
        &format!(
            r#"(?i)(?P<name>[A-Za-z0-9_.\-]{{0,60}}?(?:passw(?:or)?d|passphrase|passcode|pass|pwd|psk|pw|auth|creds|credentials?|userpass|login)){ASSIGN}{V}"#
        ),
        assigned,
    ));
    // The same in other languages: `passwort = …`, `"contraseña": …`, `пароль: …`.
    rules.push(rule(
        "password-assignment",
        FOREIGN,
        &format!(
            r#"(?i)(?P<name>[A-Za-z0-9_.\-]{{0,60}}?(?:{})){ASSIGN}{V}"#,
            FOREIGN.join("|")
        ),
        assigned,
    ));
    // The literal turned into a string or bytes: `String::from("…")`, `[]byte("…")`.
    rules.push(rule(
        "password-assignment",
        &["pass", "pwd"],
        &format!(
            r#"(?i)(?P<name>[A-Za-z0-9_.\-]{{0,60}}?(?:passw(?:or)?d|passphrase|pass|pwd)){ASSIGN}(?:{WRAP}){Q}"#
        ),
        assigned,
    ));
    // Any flag whose name says password.
    rules.push(rule(
        "cli-password",
        &["pass", "pwd", "-pw"],
        &ANY_FLAG.replace("{V}", V),
        flag_assigned,
    ));
    rules.push(rule(
        "cli-password",
        &[" -p", " -P", "/p:", "/password:"],
        &USER_THEN_PASSWORD.replace("{V}", V),
        not_a_port,
    ));
    for re in STDIN {
        rules.push(rule(
            "cli-password",
            &["<<<", "sudo", "passwd", "kinit"],
            &re.replace("{V}", V),
            cli_value,
        ));
    }
    rules.push(rule(
        "cli-password",
        &["identified", "password"],
        &SQL.replace("{Q}", Q),
        cli_value,
    ));
    rules.push(rule(
        "cli-password",
        &[" set "],
        &SET.replace("{V}", V),
        set_value,
    ));
    // Directives and prose: the value must look like a password.
    rules.push(rule(
        "password-directive",
        &[
            "pass",
            "pwd",
            "pw",
            "auth",
            "secret",
            "key-string",
            "pre-shared-key",
            "psk",
        ],
        &DIRECTIVE.replace("{V}", V),
        looks_assigned,
    ));
    rules.push(rule(
        "password-directive",
        &[
            "password",
            "passwd",
            "passphrase",
            "pin is",
            "pin was",
            "passcode",
            "pass is",
            "pass was",
            "pw for",
            "pw is",
        ],
        &PROSE.replace("{V}", V),
        looks_assigned,
    ));
    rules.push(rule(
        "password-directive",
        &["option"],
        &UCI_OPTION.replace("{V}", V),
        cli_value,
    ));
    rules.push(rule(
        "pin",
        &[
            "pin:", "pin=", "pin ", "pin\"", "pin'", "_pin", "pincode", "pin_code", "pin-code",
            "passcode",
        ],
        PIN,
        pin_value,
    ));
    for re in [XML_PROPERTY, XML_PARAM] {
        rules.push(rule(
            "password-assignment",
            &["name=", "name ="],
            re,
            assigned,
        ));
    }
    // Calls and pairs that take a user and a password, and connections' third argument.
    for (keywords, re) in [
        (
            &[
                "auth(",
                "auth (",
                "authentication(",
                "login(",
                "logon(",
                "signin(",
                "credential(",
                "credentials(",
            ][..],
            CREDENTIAL_CALL,
        ),
        (
            &[
                "auth=",
                "auth =",
                "auth:",
                "auth\"",
                "auth'",
                "creds",
                "credential",
                "login=",
            ][..],
            CREDENTIAL_PAIR,
        ),
        (
            &[
                "sequelize(",
                "getconnection(",
                "mysqli(",
                "connect(",
                "pdo(",
            ][..],
            CONNECTION_CALL,
        ),
    ] {
        rules.push(rule(
            "credential-call",
            keywords,
            &re.replace("{Q}", Q),
            call_password,
        ));
    }
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
        r"printenv[ \t]+(?P<name>(?-u:\w)+)[ \t]*\r?\n(?P<value>[^\n]{1,200})",
        assigned,
    ));
    rules
}

/// Secrets assigned to a name that says so, after the generic rules (which keep what
/// they find): `SECRET_KEY = '…'`, `hmac_key = "…"`, `APP_KEY=base64:…`, a random value
/// of any characters.
pub(crate) fn secret_rules() -> Vec<Rule> {
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
    ]
}

/// Names' last words that say secret (`cookie` as Erlang's and RabbitMQ's, `dek` and
/// `kek` as data and key encryption keys).
const SECRET_WORDS: &str = "secret|key|token|salt|cookie|dek|kek";

/// What may turn a literal into the value: `[]byte("…")`, `Buffer.from("…")`.
const WRAP: &str = r"\[\]byte\(|bytes\(|bytearray\(|Buffer\.from\(|(?:new[ \t]+)?String\(|str\(|(?:String|str)::from\(";

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

/// A value assigned to a name whose last word says password. After `auth` (`REDIS_AUTH`,
/// but also `auth: ldap`), a plain lower-case word names a method, not a password.
fn assigned(value: &str, name: &str) -> bool {
    let words = identifier_words(name);
    let last_word = words.last().map_or("", String::as_str);
    // After `auth`, a plain word names a method or a type (`ldap`, `oauth2`,
    // `allHosts`, `Authorization`), not a password: that needs a digit or a symbol and
    // more than lower case.
    let plain = unquote(value).trim_end_matches([',', ';']);
    let word = plain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let method = last_word == "auth"
        && word
        && (!plain.bytes().any(|b| b.is_ascii_digit())
            || !plain.bytes().any(|b| b.is_ascii_uppercase()));
    // `selective_auth=selective_auth,`, `"auth": self.auth`: a variable passed on.
    let last = name
        .rsplit(['.', '[', '\'', '"', ' '])
        .next()
        .unwrap_or(name);
    let passed = plain.rsplit('.').next().unwrap_or(plain);
    // `"password": validate_password,`: a variable or function named after it.
    let name_words = identifier_words(last);
    let passed_words = identifier_words(passed);
    let passed_on = word_or_path(plain)
        && (passed_words == name_words
            || name_words
                .last()
                .is_some_and(|w| passed_words.len() > 1 && passed_words.contains(w)));
    // `auth=true|false`: the options a setting takes.
    let options = plain.contains('|')
        && plain
            .split('|')
            .all(|o| ["true", "false", "yes", "no", "on", "off"].contains(&o));
    // `auth = ('user', 'password')`: a structure, not a value (the pair rule reads it).
    let structure = value.starts_with(['(', '[', '{']) && value.contains(['\'', '"', ',']);
    let not_real = last_word == "auth" && crate::rules::names_no_secret(name);
    // `credentials: user:password`: a user and a password, or nothing.
    let pair_name =
        ["creds", "credential", "credentials", "userpass", "login"].contains(&last_word);
    if pair_name {
        let v = unquote(value);
        return v.split_once(':').is_some_and(|(user, pass)| {
            !user.is_empty()
                && !user.contains(char::is_whitespace)
                && !pass.starts_with("//")
                && chosen(pass)
        }) && !not_real;
    }
    // `PWD=/app`, `OLDPWD=~`: the shell's working directory; `"pwd": "…"` is a password.
    let cwd = matches!(words.as_slice(), [w] if w == "pwd" || w == "oldpwd")
        && plain.starts_with(['/', '~', '.']);
    password_name(name)
        && chosen(value)
        && !cwd
        && !sealed_blob(plain)
        && !method
        && !structure
        && !not_real
        && !passed_on
        && !options
}

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

/// Letters, digits and `_`, in dotted parts: a variable or a field (`self.auth`).
fn word_or_path(v: &str) -> bool {
    !v.is_empty()
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// A password after a user flag: anything chosen but a port number or the next flag.
fn not_a_port(value: &str, _text: &str) -> bool {
    let v = unquote(value);
    // `-p 5432`, `-p 8080:80`, `-p 127.0.0.1:53:53/udp`: ports and port mappings.
    let port = v
        .split(['/', ':', '.'])
        .next()
        .is_some_and(|first| !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()))
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/:.".contains(&b))
        && !v.bytes().any(|b| b.is_ascii_uppercase());
    !port && !v.starts_with('-') && chosen(value)
}

/// A value set by a tool's `set NAME VALUE`: a password's name and a chosen value, or a
/// secret's name and a random value.
fn set_value(value: &str, name: &str) -> bool {
    !value.starts_with('-') && (assigned(value, name) || secret_assigned(value, name))
}

/// A value that looks like a password, for contexts that are not assignments
/// (`requirepass …`, `the password is …`): a password's or secret's name, and a value
/// of at least six characters mixing letters with digits or symbols, or a PIN.
fn looks_assigned(value: &str, name: &str) -> bool {
    // A sentence's end is not part of the value (`… askpass helper).`).
    let v = unquote(value).trim_end_matches(['.', ',', ';', ':', ')', '!', '?', '$', '\\']);
    // `kpasswd 464/tcp`: a service's port, from /etc/services.
    let service = v.split_once('/').is_some_and(|(port, proto)| {
        port.bytes().all(|b| b.is_ascii_digit()) && matches!(proto, "tcp" | "udp" | "sctp")
    });
    if service {
        return false;
    }
    let letters = v.chars().any(char::is_alphabetic);
    let others = v
        .chars()
        .any(|c| c.is_ascii_digit() || c.is_ascii_punctuation());
    let pin = (4..=8).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit());
    let lower = name.to_ascii_lowercase();
    let says = [
        "pass",
        "passwd",
        "password",
        "pwd",
        "pw",
        "auth",
        "secret",
        "string",
        "key",
        "psk",
        "passphrase",
        "pin",
        "passcode",
    ]
    .iter()
    .any(|w| lower.ends_with(w));
    // `kubectl get secret db-creds-7f9x`: a resource's name, not a password.
    let identifier = v
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    // `pass \`--lib\``: the next flag, code in backticks, or a psql variable (`:'pw'`).
    let flag = v.starts_with(['-', '`', ':']);
    let password = ["pass", "passwd", "password", "pwd", "pw", "passphrase"]
        .iter()
        .any(|w| lower.ends_with(w));
    says && chosen(value)
        && !flag
        && ((letters && others && v.chars().count() >= 6 && !identifier)
            || pin
            || (password && passphrase(v)))
}

/// Words made into a passphrase: three or more words of three letters or more, joined
/// by one separator (`cotton-papaya-drift`, `apple.lagoon.horse.jasmine22`) or written
/// in capitals (`SilverReefOnyxForest`). The last word may end in digits. Words of a
/// sentence joined by hyphens (`deprecated-use-token-instead`) are not one.
fn passphrase(v: &str) -> bool {
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

/// A PIN's name: its last word says pin, pincode or passcode (`sim_pin`, `PIN code`),
/// not a word that ends in those letters (`spin`).
fn pin_name(_value: &str, name: &str) -> bool {
    let words = identifier_words(name);
    matches!(
        words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        [.., "pin"] | [.., "pin", "code"] | [.., "pincode"] | [.., "passcode"]
    ) && !crate::rules::names_no_secret(name)
}

/// A PIN someone chose: not counting up or down (`1234`, `987654`) nor one digit.
fn pin_value(value: &str, name: &str) -> bool {
    let b = value.as_bytes();
    let step = |d: i16| b.windows(2).all(|w| i16::from(w[1]) - i16::from(w[0]) == d);
    !step(1) && !step(-1) && !step(0) && pin_name(value, name)
}

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

/// A value after a flag whose name says password; not the next flag (`--no-password -h`).
fn flag_assigned(value: &str, name: &str) -> bool {
    !value.starts_with('-') && assigned(value, name)
}

/// A password given to a call or pair that takes a user (`user`, the context) and a
/// password: a value a person chose, not an address, and not the user's name again
/// (`login('admin', 'admin')` is a stand-in).
fn call_password(value: &str, user: &str) -> bool {
    let v = unquote(value);
    chosen(value)
        && !v.contains("://")
        && !v.starts_with('/')
        && !v.eq_ignore_ascii_case(unquote(user))
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

fn unquote(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 4 && v.starts_with("\\\"") && v.ends_with("\\\"") {
        &v[2..v.len() - 2]
    } else if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// `DB_PASSWORD`, `smtpPass`, `spring.datasource.password`, `ADMIN_PWD`: the last word
/// says password (`PWD` too: [`assigned`] tells the shell's directory apart), not a name
/// about a password (`password_hash`, `PASSWORD_RESET_TTL`, `password_min_length`).
fn password_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    if FOREIGN.iter().any(|w| lower.ends_with(w)) {
        return true;
    }
    let words = identifier_words(name);
    match words.as_slice() {
        [] => false,
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
        || template_path
        || word
        || lower.starts_with("xxxx")
        || troff
        || stand_in_name(&lower)
        || expansion_tail(&lower)
}

/// A key drawn at random from letters, digits and symbols (Django's `SECRET_KEY`): long,
/// no member access, no quotes, no spaces, many symbols.
pub(crate) fn generated_key(v: &str) -> bool {
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
fn chosen(raw: &str) -> bool {
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
    fn pwd_is_a_password_unless_it_holds_a_directory() {
        assert!(assigned("\"Hx7!kLm2qq\"", "pwd"));
        assert!(assigned("\\\"Hx7!kLm2qq\\\"", "pwd"));
        for dir in ["/app", "~", "./build"] {
            assert!(!assigned(dir, "PWD"), "{dir}");
            assert!(!assigned(dir, "OLDPWD"), "{dir}");
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
