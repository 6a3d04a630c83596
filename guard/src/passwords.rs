//! Passwords where command lines, config files and environment dumps put them: the value
//! after a password flag of a known tool, and the value assigned to a name whose last
//! word says password. The context carries the evidence, so the value itself may be a
//! PIN, a word-made passphrase or anything else a person chose; only references,
//! placeholders, masks and stored hashes are refused.

use regex::Regex;

use crate::rules::identifier_words;
use crate::secrets::secret_assigned;
use crate::values::{chosen, passphrase, sealed_blob, unquote};
use crate::{Reach, Rule};

/// A value: quoted (the quotes are not part of the finding) or a run without blanks. A
/// single-quoted value may hold the shell's `'\''` and PowerShell's `''` for a quote;
/// JSON inside a JSON string quotes with `\"`.
/// Unbounded: a counted repetition of a Unicode class compiles to a large automaton,
/// and a line bounds the value anyway.
pub(crate) const V: &str = r#"(?P<value>\\"(?:[^"\\\n]|\\[^"\n])+\\"|'(?:[^'\n]|'\\''|'')+'|"[^"\n]+"|[^\s'"<\\](?:[^\s<]*[^\s'"<\\])?)"#;

/// A quoted value only: an argument of a call.
pub(crate) const Q: &str =
    r#"(?P<value>\\"(?:[^"\\\n]|\\[^"\n])+\\"|'(?:[^'\n]|'\\''|'')+'|"[^"\n]+")"#;

/// What assigns a value to a name: `=`, `=>`, `:=`, `:`, `?=`, or a type annotation and
/// `=` (`password: String = …`, `DB_PASSWORD: &str = …`, `pass string = …`). Up to two
/// closing characters may end the name (`['password'] = …`), and C's `[]`, VB's
/// `As String =` and a fallback (`process.env.DB_PASSWORD || "…"`) count too.
pub(crate) const ASSIGN: &str = r#"(?:\[\])?(?:\\?["'\x60\]]){0,2}(?:\s+string)?(?:[ \t]*:[ \t]*&?(?:'static[ \t]+)?[A-Za-z_][A-Za-z0-9_:.]*(?:<[^>\n]{0,40}>)?\??[ \t]*=|[ \t]+as[ \t]+(?-u:\w)+[ \t]*=|[ \t]*(?:=>?|:=|:|\?=|<-|：|\|\||\?\?))[ \t]*"#;

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
    (&["vmrun"], r"vmrun(?-u:\b)[^\n]*?\s-gp[ \t]+{V}"),
    (
        &["ejabberdctl"],
        r"ejabberdctl[ \t]+(?:register|change_password)[ \t]+\S+[ \t]+\S+[ \t]+{V}",
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
const DIRECTIVE: &str = r"(?im)(?:^|[ \t])(?P<name>(?:[A-Za-z][A-Za-z0-9_.\-]{0,40}?)?(?:passw(?:or)?d|pass|pwd|pw|auth|secret|key-string|pre-shared-key|psk|passphrase))(?:[ \t]+(?:0|irreversible-cipher|cipher|simple|plain))?[ \t]+{V}[ \t]*$";

/// OpenWrt's uci: `option key '…'` under a wireless interface, `option password '…'`.
const UCI_OPTION: &str = r"(?m)^[ \t]*option[ \t]+(?P<name>key|password|psk|sae_password|auth_secret|passphrase)[ \t]+{V}";

/// Prose: `the password is …`, `password was …`, `passphrase (LUKS): …`, `password for
/// the office: …`, `[sudo] password for ops: …`, `pw for the shared account → …`, `the
/// root pass is …`.
const PROSE: &str = r"(?i)(?P<name>passw(?:or)?d|passphrase|pin|passcode|pass|pw)(?:(?:[ \t]+\([^)\n]{1,30}\))?[ \t]+(?:for|of|to|on|at)(?:[ \t]+[^\s:→]{1,30}){1,5}?[ \t]*(?::|=|→|->|=>|[ \t]is|[ \t]was)|[ \t]+\([^)\n]{1,30}\)[ \t]*:|[ \t]+(?:is|was|=)[ \t]*:?|[ \t]*(?:→|->|=>))[ \t]*(?:<code>|<b>|<strong>)?{V}";

/// `PIN: 4821`, `sim_pin=4821`, `pin code 4821`, `passcode: 220719`.
const PIN: &str = r#"(?im)(?:^|[^A-Za-z0-9])(?P<name>(?:[A-Za-z][A-Za-z0-9_.\-]{0,30}?[_.\- ])?(?:pin(?:[ _\-]?code)?|passcode))["']?[ \t]*(?:[:=]|is)?[ \t]*["']?(?P<value>\d{4,8})(?:$|[^A-Za-z0-9_.\-:/])"#;

/// `<property name="password" value="…"/>`.
const XML_PROPERTY: &str = r#"(?i)name[ \t]*=[ \t]*["'](?P<name>[^"'\n]{0,40}?(?:passw(?:or)?d|pass|pwd))["'][ \t]+value[ \t]*=[ \t]*(?P<value>"[^"\n]{1,200}"|'[^'\n]{1,200}')"#;

/// `<param name="password">…</param>`.
const XML_PARAM: &str = r#"(?i)name[ \t]*=[ \t]*["'](?P<name>[^"'\n]{0,40}?(?:passw(?:or)?d|pass|pwd))["'][ \t]*>(?P<value>[^<\n]{1,200})</"#;

/// A tool's `set NAME VALUE`: `aws configure set aws_secret_access_key …`,
/// `gh secret set DB_PASSWORD --body …`.
const SET: &str = r"(?:configure|config|secret|variable)[ \t]+set[ \t]+(?:--?[a-z][a-z\-]{1,20}[ \t]+)*(?P<name>[A-Za-z0-9_.\-:]{2,80})[ \t]+(?:(?:--body|-b)[ \t=]+)?{V}";

/// A call that takes a user, then a password: `HTTPBasicAuth('u', 'p')`,
/// `smtp.login("u", "p")`, `new NetworkCredential("u", "p")`, `req.SetBasicAuth("u", "p")`.
const CREDENTIAL_CALL: &str = r#"(?i)[A-Za-z_][A-Za-z0-9_.]{0,60}?(?:auth|authentication|login|logon|signin|credentials?)\s*\(\s*(?:(?:[A-Za-z_][A-Za-z0-9_.]*|'[^'\n]{0,64}'|"[^"\n]{0,64}")\s*,\s*)?(?P<name>'[^'\n]{1,64}'|"[^"\n]{1,64}")\s*,\s*{Q}"#;

/// A user and a password as a pair: `auth=('u', 'p')`, `:basic_auth => ['u', 'p']`.
const CREDENTIAL_PAIR: &str = r#"(?i)[A-Za-z0-9_.]{0,40}?(?:auth|credentials?|creds|login)["']?\s*(?:=>?|:)\s*[(\[]\s*(?P<name>'[^'\n]{1,64}'|"[^"\n]{1,64}")\s*,\s*{Q}"#;

/// A database connection's third argument, after a database or host and a user:
/// `new Sequelize('db', 'user', 'p')`, `DriverManager.getConnection(url, "u", "p")`,
/// `mysqli_connect("h", "u", "p")`, `MySQLdb.connect("h", "u", "p", "db")`.
const CONNECTION_CALL: &str = r#"(?i)(?:sequelize|getconnection|getsession|mysqli|pdo|[A-Za-z0-9_.]*connect)\s*\(\s*(?:'[^'\n]{0,200}'|"[^"\n]{0,200}"|[A-Za-z_][A-Za-z0-9_.]*)\s*,\s*(?:\d{1,5}\s*,\s*)?(?P<name>'[^'\n]{1,64}'|"[^"\n]{1,64}"|[A-Za-z_][A-Za-z0-9_.]*)\s*,\s*{Q}"#;

/// `- name: NAME` and, on the next line, `value: …`.
pub(crate) const ENV_ENTRY: &str = r#"(?m)-[ \t]*name:[ \t]*["']?(?P<name>[A-Za-z_][A-Za-z0-9_]*)["']?[ \t]*\r?\n[ \t]*value:[ \t]*{V}"#;

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
            "pw on",
            "pass for",
            "pass on",
            "pin for",
        ],
        &PROSE.replace("{V}", V),
        prose_value,
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
                "getsession(",
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
    // A constant that names a password, then the literal: `curl_easy_setopt(curl,
    // CURLOPT_PASSWORD, "…")`, `ldap_set_option(ld, LDAP_OPT_PASSWD, "…")`.
    rules.push(rule(
        "password-assignment",
        &["password,", "passwd,", "pwd,", "password ,"],
        &format!(
            r"(?P<name>[A-Z][A-Z0-9_]{{0,40}}(?:PASSWORD|PASSWD|USERPWD|PWD))[ \t]*,[ \t]*{Q}"
        ),
        assigned,
    ));
    // PPP's `chap-secrets` and `pap-secrets`: the column headed secret.
    rules.push(rule(
        "password-directive",
        &["server\tsecret", "server secret", "server  secret"],
        r#"(?im)^#[ \t]*client[ \t]+server[ \t]+secret[^\n]*\r?\n[^\s#]+[ \t]+\S+[ \t]+(?P<value>"[^"\n]+"|[^\s"]+)"#,
        cli_value,
    ));
    // Exim's `passwd.client`: `host:user:password` under the file's name.
    rules.push(rule(
        "password-directive",
        &["passwd.client"],
        r"(?m)passwd\.client[^\n]*\r?\n[ \t]*[^\s:#]+:[^\s:]+:(?P<value>\S+)[ \t]*$",
        cli_value,
    ));
    // A password stored with a plain-text scheme: Dovecot's `user:{PLAIN}…:uid:gid::`.
    rules.push(rule(
        "password-assignment",
        &["{plain}", "{clear"],
        r"(?i)\{(?:plain|clear|cleartext)\}(?P<value>[^:\s]+)",
        cli_value,
    ));
    // strongSwan's `ipsec.secrets`: `host %any : PSK "…"`, `user : XAUTH "…"`.
    rules.push(rule(
        "password-directive",
        &[": psk", ": xauth", ": eap"],
        &r"(?i):[ \t]*(?:psk|xauth|eap)[ \t]+{V}".replace("{V}", V),
        cli_value,
    ));
    // auditd's EXECVE record: a password flag's value is the next argument.
    rules.push(rule(
        "cli-password",
        &["type=execve"],
        r#"a\d+="(?:-p|-pw|-w|-P|--password|--pass|--passwd|-passwd|-password)"[ \t]+a\d+=(?P<value>"[^"\n]*")"#,
        not_a_port,
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
        r"printenv[ \t]+(?P<name>(?-u:\w)+)[ \t]*\r?\n(?P<value>[^\n]{1,200})",
        assigned,
    ));
    rules
}

/// What may turn a literal into the value: `[]byte("…")`, `Buffer.from("…")`.
pub(crate) const WRAP: &str = r"\[\]byte\(|bytes\(|bytearray\(|Buffer\.from\(|(?:new[ \t]+)?String\(|str\(|(?:String|str)::from\(";

pub(crate) fn rule(
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
pub(crate) fn assigned(value: &str, name: &str) -> bool {
    // `--- PASS: TestLogin (0.07s)`: a test's result, not a password.
    if name == "PASS" {
        return false;
    }
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
    // `card: 5382…9859 exp 05/29 auth 1JXPFI`: a payment's approval code.
    let approval = lower == "auth"
        && v.len() == 6
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if approval {
        return false;
    }
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
    let password = ends_in_password_word(&lower);
    says && chosen(value)
        && !flag
        && ((letters && others && v.chars().count() >= 6 && !identifier)
            || pin
            || (password && passphrase(v)))
}

/// Whether a name (in lower case) ends in a word for password, where a word-made
/// passphrase or a word with digits may be the value.
fn ends_in_password_word(lower: &str) -> bool {
    ["pass", "passwd", "password", "pwd", "pw", "passphrase"]
        .iter()
        .any(|w| lower.ends_with(w))
}

/// Prose that says a password is something: what [`looks_assigned`] takes, and a word
/// with digits in it (`root pw on db is iheartcosmic1`), which after a directive's name
/// would as often be a resource's.
fn prose_value(value: &str, name: &str) -> bool {
    let v = unquote(value).trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
    looks_assigned(value, name)
        || (ends_in_password_word(&name.to_ascii_lowercase())
            && chosen(value)
            && v.chars().count() >= 6
            && v.bytes().any(|b| b.is_ascii_digit())
            && v.bytes().any(|b| b.is_ascii_alphabetic())
            && !v.starts_with(['-', '`', ':']))
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
}
