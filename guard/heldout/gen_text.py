#!/usr/bin/env python3
"""Held-out text corpus for the privacy guard: passwords, connection URLs,
generic secrets, phone numbers and other PII, plus many near-miss negatives.

Writes, next to this file:
  text.tune.jsonl     rows from the shared templates (seed SEEDS["tune"])
  text.holdout.jsonl  rows from the shared templates plus templates that
                      exist only here (seed SEEDS["holdout"])

Python 3 standard library only, fully deterministic: running it twice gives
byte-identical files.  Written without looking at the guard's code or at the
development corpus' rows; it follows the labelling policy of
shared/guard-corpus/README.md.

    python3 gen_text.py [--out DIR] [--no-readme]
"""
import argparse
import base64
import collections
import hashlib
import json
import os
import random
import re
import string
import sys
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = {"tune": 20261130, "holdout": 77031977}
SOURCE = "heldout-text"

# ---------------------------------------------------------------------------
# row building: a text is assembled from plain strings and S() fragments; the
# S() fragments are the sensitive values and become the spans.
# ---------------------------------------------------------------------------


class S(str):
    """A sensitive fragment of a text (becomes a span)."""


def mk(*parts):
    out, spans, pos = [], [], 0

    def add(p):
        nonlocal pos
        if isinstance(p, (tuple, list)):
            for q in p:
                add(q)
            return
        if p is None:
            return
        if isinstance(p, S):
            if len(p):
                spans.append([pos, pos + len(p)])
        out.append(str(p))
        pos += len(p)

    for p in parts:
        add(p)
    return "".join(out), spans


def lines(*parts):
    """mk() with a newline between top-level parts."""
    seq = []
    for i, p in enumerate(parts):
        if i:
            seq.append("\n")
        seq.append(p)
    return mk(*seq)


class Template:
    def __init__(self, cls, name, fn, holdout_only):
        self.cls, self.name, self.fn, self.holdout_only = cls, name, fn, holdout_only


TEMPLATES = []


def T(cls, name, ho=False):
    def deco(fn):
        TEMPLATES.append(Template(cls, name, fn, ho))
        return fn
    return deco


# class, label, kind, rows per split
CLASS_SPEC = [
    ("pw-cli", "secret", "generic-password", 125),
    ("pw-url", "secret", "generic-password", 45),
    ("pw-config", "secret", "generic-password", 135),
    ("pw-env", "secret", "generic-password", 70),
    ("db-url", "secret", "db-url", 90),
    ("generic-secret", "secret", "generic-secret", 80),
    ("phone", "pii", "phone", 240),
    ("email", "pii", "email", 50),
    ("credit-card", "pii", "credit-card", 35),
    ("iban", "pii", "iban", 35),
    ("us-ssn", "pii", "us-ssn", 35),
    ("neg-password", "none", "none", 330),
    ("neg-phone", "none", "none", 330),
    ("neg-pii", "none", "none", 170),
    ("neg-secret", "none", "none", 900),
]

# ---------------------------------------------------------------------------
# vocabularies
# ---------------------------------------------------------------------------

WORDS = """
apple anchor arrow autumn badge bakery bamboo banana banner barrel basket
battery beacon beaver bicycle blanket blossom border bottle bracket branch
breeze bridge bright bronze bubble bucket buffalo button cabin cactus camera
candle canyon carbon carpet castle cattle cedar cellar cement cherry chess
chimney circle citrus classic clever cliff clock cloud clover coast cobalt
coffee comet copper coral correct cosmic cotton country cousin coyote crane
crayon cricket crystal dagger daisy dancer desert diamond dinner doctor
dolphin donkey dragon drawer dream driver eagle early earth echo eclipse
effort elbow elder ember empire engine escape evening fabric falcon farmer
feather fence ferry festival fiber field finger forest fossil fountain fox
frame freedom frost fruit galaxy garden garlic gentle giant ginger glacier
glass globe golden gopher gravel green guitar hammer harbor harvest hazel
helmet hollow honey horizon horse island ivory jacket jaguar jelly jungle
kettle kitten ladder lagoon lantern laser lemon letter library lily linen
lion lizard lobster lotus lucky magnet mango maple marble market meadow melon
mercury meteor metro middle mirror monkey morning mosaic motor mountain
muffin museum napkin narrow nectar needle nickel noble north number oasis
ocean olive onion orange orbit orchid otter oyster paddle palace panda paper
parrot pastel peanut pebble pencil pepper piano pickle pigeon pillow pilot
planet plaster pocket polar pony potato prairie pretzel prism puzzle quartz
quiet rabbit radar radio rainbow random raven ribbon river rocket rubber
saddle salmon sandal satin saturn scarlet school season shadow shelter silver
simple sketch sleepy slender smooth socket spider spiral spring square
squirrel stable staple station statue steady stone storm stream summer sunset
sweater switch table tango teapot temple thunder ticket tiger timber toast
tomato torch tower tractor travel treaty tulip tunnel turtle twilight
umbrella uncle unicorn valley velvet violet violin voyage wagon walnut window
winter wizard wonder yellow yogurt zebra zipper almond amber atlas basil
blizzard brick butter canvas cargo carrot cereal chalk cinder compass cookie
copper cradle cricket dawn denim domino dune emerald falcon fern flint forge
gadget gallon glider granite hatch hiking igloo indigo jasmine juniper kayak
kernel koala lava lemur lumber marsh meadow mint moss nutmeg oak opal orbit
paprika pearl pine plum poppy pumpkin quill reef ridge rustic saffron sage
sailor shell sierra slate spruce sugar tawny thistle topaz trail tundra
vapor walrus willow yarn
""".split()
WORDS = sorted(set(WORDS))

FIRST = """Aarav Priya Rahul Ananya Wei Li Jing Hao Mei Chen James Mary Robert
Jennifer Michael Linda Siti Budi Dewi Agus Ayesha Bilal Fatima Usman Hamza
Chinedu Ngozi Emeka Aisha Tunde Lucas Gabriela Mateus Beatriz Rafael Rina
Tanvir Nusrat Farhan Sadia Dmitri Olga Sergei Natalia Ivan Abebe Meron Dawit
Hana Tigist Sofia Diego Alejandro Valeria Carlos Haruto Yui Sota Aoi Ren
Miguel Andrea Joshua Angelica Mohamed Yasmin Omar Nour Lukas Anna Jonas Lea
Felix Oliver Amelia Harry Isla George Camille Louis Chloe Hugo Manon""".split()
LAST = """Sharma Patel Iyer Gupta Wang Zhang Liu Chen Huang Smith Johnson
Williams Brown Garcia Santoso Wijaya Hidayat Khan Ahmed Malik Qureshi Okafor
Adeyemi Eze Bello Silva Santos Oliveira Souza Pereira Rahman Hossain Chowdhury
Ivanov Smirnova Petrov Kuznetsova Tesfaye Bekele Haile Girma Hernandez Lopez
Martinez Gonzalez Sato Suzuki Takahashi Tanaka Watanabe Reyes Cruz Bautista
Mendoza Hassan Mahmoud Ibrahim Mostafa Mueller Schmidt Schneider Fischer Weber
Jones Taylor Davies Evans Martin Bernard Dubois Moreau Laurent""".split()

USERS = ["app", "app_user", "admin", "root", "postgres", "svc_orders",
         "reporting", "etl", "django", "wp_user", "grafana", "keycloak",
         "gitlab", "sonar", "airflow", "readonly", "backup", "replicator",
         "deploy", "ci-bot", "jenkins", "svc-billing", "metabase", "odoo",
         "nextcloud", "matomo", "analytics", "ops", "webapp", "api"]
DBNAMES = ["shop", "app", "orders", "billing", "inventory", "analytics",
           "users", "crm", "wordpress", "keycloak", "airflow", "metrics",
           "production", "payments", "catalog", "ledger"]
ORGDOMAINS = ["acme-corp.net", "globex-systems.com", "initech.cloud",
              "northwind.io", "umbrella-labs.org", "stark-ind.com",
              "wayne-ent.net", "hooli-infra.dev", "piedpiper.tech",
              "vandelay-imports.com", "soylent-foods.eu", "tyrell-corp.co"]
INTDOMAINS = ["internal", "corp.local", "svc.cluster.local", "lan",
              "prod.internal", "int.acme-corp.net", "dc1.globex.lan"]
KSAFE = "bcdfghjklmnpqrstvwxz2456789"   # k8s random-suffix alphabet
SYMS = "!@#%^&*-_=+.?~:;,/$"
B64URL = string.ascii_letters + string.digits + "-_"
CRYPT64 = "./" + string.digits + string.ascii_uppercase + string.ascii_lowercase
DIG = string.digits
ALNUM = string.ascii_letters + string.digits

PW_ENV_NAMES = ["DB_PASS", "DB_PASSWORD", "MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD",
                "POSTGRES_PASSWORD", "ADMIN_PWD", "REDIS_AUTH", "REDIS_PASSWORD",
                "SMTP_PASS", "SMTP_PASSWORD", "PASSPHRASE", "GPG_PASSPHRASE",
                "LDAP_BIND_PASSWORD", "RABBITMQ_DEFAULT_PASS",
                "MONGO_INITDB_ROOT_PASSWORD", "KEYSTORE_PASSWORD",
                "ADMIN_PASSWORD", "PGPASSWORD", "MINIO_ROOT_PASSWORD",
                "ELASTIC_PASSWORD", "SA_PASSWORD", "GF_SECURITY_ADMIN_PASSWORD",
                "SPRING_DATASOURCE_PASSWORD", "WORDPRESS_DB_PASSWORD",
                "APP_PASSWD", "VNC_PASSWORD", "BORG_PASSPHRASE",
                "RESTIC_PASSWORD", "MAIL_PASSWORD", "FTP_PASS",
                "KEYCLOAK_ADMIN_PASSWORD", "MARIADB_ROOT_PASSWORD"]
SECRET_ENV_NAMES = ["JWT_SECRET", "SESSION_SECRET", "COOKIE_SECRET",
                    "APP_SECRET", "SECRET_KEY", "ENCRYPTION_KEY", "HMAC_SECRET",
                    "SIGNING_KEY", "NEXTAUTH_SECRET", "API_SECRET",
                    "CLIENT_SECRET", "WEBHOOK_SECRET", "AUTH_TOKEN",
                    "INTERNAL_API_KEY", "OAUTH_CLIENT_SECRET", "CSRF_SECRET",
                    "TOKEN_SIGNING_SECRET", "SERVICE_API_KEY"]
FILLER_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root", "LANG=C.UTF-8", "TERM=xterm", "NODE_ENV=production",
    "TZ=UTC", "SHLVL=1", "PWD=/app", "GOSU_VERSION=1.17", "PG_MAJOR=16",
    "APP_PORT=8080", "LOG_LEVEL=info", "DB_USER=app", "DB_NAME=shop",
    "PYTHONUNBUFFERED=1", "JAVA_HOME=/opt/java/openjdk", "LC_ALL=C.UTF-8",
    "PGDATA=/var/lib/postgresql/data", "RAILS_ENV=production",
    "WORKERS=4", "MAX_CONNECTIONS=100", "FEATURE_FLAGS=search,export",
]

# ---------------------------------------------------------------------------
# encoders: representation of a raw value inside a given syntax
# ---------------------------------------------------------------------------


def e_json(s):
    return json.dumps(s, ensure_ascii=False)[1:-1]


def e_sq(s):          # POSIX shell single quotes
    return s.replace("'", "'\\''")


def e_dq(s):          # POSIX shell double quotes
    return (s.replace("\\", "\\\\").replace('"', '\\"')
            .replace("$", "\\$").replace("`", "\\`"))


def e_dbl(s):         # doubling a single quote (YAML, SQL, PowerShell)
    return s.replace("'", "''")


def e_php(s):         # PHP single-quoted
    return s.replace("\\", "\\\\").replace("'", "\\'")


def e_xml(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def e_url(s):         # userinfo component
    return urllib.parse.quote(s, safe="-._~!$&'()*+,;=")


def e_qs(s):          # query-string value
    return urllib.parse.quote(s, safe="-._~")


PLAIN_YAML = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-+=/@!%^~,;?]*")
YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def yaml_val(g, s):
    """(open, S(body), close) for a YAML scalar."""
    if PLAIN_YAML.fullmatch(s) and s.lower() not in YAML_WORDS and g.p(0.7):
        return ("", S(s), "")
    if "'" not in s and g.p(0.5):
        return ("'", S(s), "'")
    if g.p(0.5) and "'" in s:
        return ("'", S(e_dbl(s)), "'")
    return ('"', S(e_json(s)), '"')


BARE_OK = re.compile(r"[A-Za-z0-9@%^+=:,./_!#-]+")


def shq(g, s, word=True):
    """(open, S(body), close) for a shell argument."""
    safe = BARE_OK.fullmatch(s) and not (word and s[0] in "-#")
    if safe and g.p(0.6):
        return ("", S(s), "")
    if "'" not in s or g.p(0.5):
        return ("'", S(e_sq(s)), "'")
    return ('"', S(e_dq(s)), '"')


def dotenv_val(g, s):
    if re.fullmatch(r"[A-Za-z0-9_./@%+=:,!^~-]+", s) and g.p(0.7):
        return ("", S(s), "")
    if "'" not in s and g.p(0.4):
        return ("'", S(s), "'")
    return ('"', S(s.replace("\\", "\\\\").replace('"', '\\"')), '"')


# ---------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------


def luhn_ok(d):
    d = [int(c) for c in d]
    tot = 0
    for i, x in enumerate(reversed(d)):
        if i % 2:
            x *= 2
            if x > 9:
                x -= 9
        tot += x
    return tot % 10 == 0


def luhn_complete(prefix_and_body):
    for c in DIG:
        if luhn_ok(prefix_and_body + c):
            return prefix_and_body + c
    raise AssertionError


IBAN_SPEC = {  # country: (total length, bban pattern)
    "DE": (22, "18n"), "GB": (22, "4a14n"), "FR": (27, "23n"),
    "ES": (24, "20n"), "IT": (27, "1a22n"), "NL": (18, "4a10n"),
    "BE": (16, "12n"), "CH": (21, "17n"), "AT": (20, "16n"),
    "PL": (28, "24n"), "SE": (24, "20n"), "NO": (15, "11n"),
    "DK": (18, "14n"), "IE": (22, "4a14n"), "PT": (25, "21n"),
    "FI": (18, "14n"), "SA": (24, "20n"), "AE": (23, "19n"),
    "TR": (26, "22n"), "LU": (20, "16n"), "CZ": (24, "20n"),
    "RO": (24, "4a16n"),
}
IBAN_BANKS = {"GB": ["NWBK", "BARC", "HBUK", "LOYD", "MIDL"],
              "NL": ["ABNA", "INGB", "RABO", "TRIO", "SNSB"],
              "IE": ["AIBK", "BOFI"], "RO": ["BTRL", "RNCB", "BRDE"]}


def iban_num(s):
    return int("".join(str(int(c, 36)) for c in s))


def iban_ok(iban):
    iban = iban.replace(" ", "")
    cc = iban[:2]
    if cc not in IBAN_SPEC or len(iban) != IBAN_SPEC[cc][0]:
        return False
    return iban_num(iban[4:] + iban[:4]) % 97 == 1


def ssn_ok(s):
    a, g_, n = s.split("-")
    a, g_, n = int(a), int(g_), int(n)
    return 0 < a < 900 and a != 666 and g_ > 0 and n > 0


# ---------------------------------------------------------------------------
# the random-value factory
# ---------------------------------------------------------------------------


class G:
    def __init__(self, seed):
        self.r = random.Random(seed)

    # basics
    def ch(self, xs):
        return self.r.choice(xs)

    def ri(self, a, b):
        return self.r.randint(a, b)

    def p(self, x):
        return self.r.random() < x

    def dig(self, n):
        return "".join(self.r.choice(DIG) for _ in range(n))

    def nzdig(self, n):
        return self.ch("123456789") + self.dig(n - 1)

    def hx(self, n):
        return "".join(self.r.choice("0123456789abcdef") for _ in range(n))

    def an(self, n, pool=ALNUM):
        return "".join(self.r.choice(pool) for _ in range(n))

    def rbytes(self, n):
        return bytes(self.r.getrandbits(8) for _ in range(n))

    def b64(self, n):
        return base64.b64encode(self.rbytes(n)).decode()

    def b64url(self, n):
        return base64.urlsafe_b64encode(self.rbytes(n)).decode().rstrip("=")

    @staticmethod
    def b64url_text(t):
        return base64.urlsafe_b64encode(t.encode()).decode().rstrip("=")

    def uuid(self):
        h = self.hx(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{self.ch('89ab')}{h[17:20]}-{h[20:]}"

    def ulid(self):
        return "01" + self.ch("HJK") + self.an(23, "0123456789ABCDEFGHJKMNPQRSTVWXYZ")

    def ksuf(self, n):
        return self.an(n, KSAFE)

    def word(self):
        return self.ch(WORDS)

    def first(self):
        return self.ch(FIRST)

    def last(self):
        return self.ch(LAST)

    def fullname(self):
        return f"{self.first()} {self.last()}"

    def user(self):
        return self.ch(USERS)

    def dbname(self):
        return self.ch(DBNAMES)

    def org(self):
        return self.ch(ORGDOMAINS)

    def host(self, role=None):
        role = role or self.ch(["db", "pg", "mysql", "sql", "data", "cache",
                                "mq", "api", "git", "files", "auth"])
        style = self.ri(0, 3)
        if style == 0:
            return f"{role}.{self.ch(INTDOMAINS)}"
        if style == 1:
            return f"{role}-{self.ch(['prod', 'stg', 'dev', 'eu1', 'us2', '01', '02'])}.{self.ch(INTDOMAINS)}"
        if style == 2:
            return f"{role}{self.ri(1, 9)}.{self.org()}"
        return f"{role}-{self.ch(['primary', 'main', 'rw', 'replica'])}.{self.org()}"

    def date(self, sep="-"):
        return f"{self.ri(2024, 2026)}{sep}{self.ri(1, 12):02d}{sep}{self.ri(1, 28):02d}"

    def time(self):
        return f"{self.ri(0, 23):02d}:{self.ri(0, 59):02d}:{self.ri(0, 59):02d}"

    def iso(self):
        return f"{self.date()}T{self.time()}.{self.dig(3)}Z"

    def semver(self):
        return f"{self.ri(0, 12)}.{self.ri(0, 40)}.{self.ri(0, 30)}"

    # ---- passwords -------------------------------------------------------
    SHAPES = ["random", "word", "leet", "phrase", "alnum", "long", "quote",
              "unicode", "pin"]
    WEIGHTS = [20, 18, 12, 18, 10, 5, 6, 6, 5]

    def pw_random(self):
        while True:
            s = self.an(self.ri(12, 28), ALNUM + SYMS)
            if (any(c.islower() for c in s) and any(c.isupper() for c in s)
                    and any(c.isdigit() for c in s) and any(c in SYMS for c in s)):
                return s

    def pw_word(self):
        w, w2 = self.word().capitalize(), self.word().capitalize()
        sym = self.ch("!@#%&*?.$-_")
        k = self.ri(0, 4)
        if k == 0:
            return f"{w}{self.ri(1970, 2026)}{sym}"
        if k == 1:
            return f"{w}{sym}{self.dig(self.ri(2, 4))}"
        if k == 2:
            return f"{w}{w2}{self.dig(2)}{sym}"
        if k == 3:
            return f"{self.ch(['Spring', 'Summer', 'Autumn', 'Winter', 'Welcome', 'Company'])}{self.ri(2019, 2026)}{sym}"
        return f"{w}_{self.dig(2)}{w2.lower()}{sym}"

    LEET = {"a": "@4", "e": "3", "i": "1!", "o": "0", "s": "$5", "t": "7",
            "l": "1", "g": "9", "b": "8"}

    def pw_leet(self):
        ws = [self.word() for _ in range(self.ri(1, 2))]
        ws = [w.capitalize() if self.p(0.6) else w for w in ws]
        out = []
        for c in "".join(ws):
            lc = c.lower()
            if lc in self.LEET and self.p(0.6):
                out.append(self.ch(self.LEET[lc]))
            else:
                out.append(c)
        s = "".join(out)
        if self.p(0.7):
            s += self.dig(self.ri(1, 4))
        if self.p(0.6):
            s += self.ch("!#?*.")
        return s

    def pw_phrase(self):
        ws = [self.word() for _ in range(self.ri(4, 6))]
        sep = self.ch(["-", "_", " ", "camel", ".", "-"])
        s = "".join(w.capitalize() for w in ws) if sep == "camel" else sep.join(ws)
        if self.p(0.3):
            s += (sep if sep != "camel" else "") + self.dig(self.ri(1, 3))
        return s

    def pw_alnum(self):
        while True:
            s = self.an(self.ri(14, 24))
            if any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s):
                return s

    def pw_long(self):
        return self.an(self.ri(64, 100), ALNUM + "-_.~!@#%^&*+=")

    def pw_quote(self):
        w, w2 = self.word().capitalize(), self.word().capitalize()
        k = self.ri(0, 4)
        if k == 0:
            return f"{w}'s-{w2}{self.dig(2)}!"
        if k == 1:
            return f'{w.lower()}"{w2}"{self.dig(3)}'
        if k == 2:
            return f"It's{w}{self.dig(2)}#"
        if k == 3:
            return f'Say"{w}"{self.dig(2)}&{w2.lower()}'
        return f"O'{w}-{self.dig(4)}?"

    ACC = {"a": "äáà", "o": "öó", "u": "üú", "e": "éè", "n": "ñ", "c": "ç", "i": "í"}

    def pw_unicode(self):
        k = self.ri(0, 5)
        if k == 0:
            w = self.word() + self.word().capitalize()
            s = "".join(self.ch(self.ACC[c]) if c in self.ACC and self.p(0.5) else c for c in w)
            return s.capitalize() + self.dig(2) + self.ch("!#-")
        if k == 1:
            return self.ch(["Пароль", "Секрет", "Москва", "Зима", "Весна", "Ключ", "Солнце"]) + self.dig(self.ri(2, 4)) + self.ch("!#")
        if k == 2:
            return self.ch(["Κλειδί", "Ήλιος", "Θάλασσα", "Ουρανός"]) + "-" + self.word() + self.dig(2)
        if k == 3:
            return self.ch(["密码", "安全", "東京", "さくら", "비밀번호", "ミドリ"]) + self.word().capitalize() + self.dig(2) + self.ch("!#")
        if k == 4:
            return self.ch(["🔑", "🚀", "🌵", "🐙"]) + self.word().capitalize() + "-" + self.word() + self.dig(2)
        return self.ch(["Straße", "Größe", "Fußball", "Mädchen", "Crème", "Mañana", "Café"]) + self.ch(".-_") + self.word() + self.dig(3)

    def pw_pin(self):
        return self.nzdig(self.ri(4, 8))

    def pw(self, forbid="", ascii_only=False, pin=False, shape=None, lead=""):
        for _ in range(500):
            sh = shape or self.r.choices(self.SHAPES, self.WEIGHTS)[0]
            if sh == "pin" and not pin:
                continue
            s = getattr(self, "pw_" + sh)()
            if any(c in forbid for c in s):
                continue
            if lead and s[0] in lead:
                continue
            if ascii_only and not s.isascii():
                continue
            if re.search(r"\$[{(A-Za-z_]|\*\*\*|\{\{|<|>", s):
                continue
            if s != s.strip():
                continue
            return s
        raise RuntimeError("no password fits " + repr(forbid))

    def pw_for_url(self):
        s = self.pw(forbid="\"'\\ ", shape=None)
        if self.p(0.35):
            i = self.ri(1, len(s) - 1)
            s = s[:i] + self.ch("@#%/?") + s[i:]
        return s

    def secret_value(self):
        k = self.ri(0, 5)
        if k == 0:
            return self.an(self.ri(32, 48))
        if k == 1:
            return self.hx(self.ch([32, 40, 64]))
        if k == 2:
            return self.b64(self.ch([24, 32, 48]))
        if k == 3:
            return self.b64url(32)
        if k == 4:
            return self.an(self.ri(24, 40), ALNUM + "-_")
        return self.an(8) + "-" + self.an(16) + "-" + self.an(12)


BARE_ATT = " \t'\"\\$`;&|<>(){}[]*?~"      # forbidden in a bare, attached shell arg
BARE_WORD = BARE_ATT + "#"


# ===========================================================================
# generic-password: command lines
# ===========================================================================

def pw_any(g, **kw):
    return g.pw(pin=False, **kw)


@T("pw-cli", "mysql-p-attached")
def _(g):
    pw = pw_any(g, forbid="\n")
    tool = g.ch(["mysql", "mysql", "mysqldump", "mysqladmin"])
    tail = {"mysql": f"{g.dbname()} -e 'SHOW TABLES;'", "mysqldump": f"--single-transaction {g.dbname()} > /backup/{g.dbname()}.sql",
            "mysqladmin": "status"}[tool]
    u = g.ch(["root", g.user()])
    if g.p(0.5):
        return mk(f"{tool} -u{u} -p", shq(g, pw, word=False), f" -h {g.host('mysql')} {tail}")
    return mk(f"$ {tool} -h {g.host('mysql')} -u {u} -p", shq(g, pw, word=False), f" {tail}")


@T("pw-cli", "mysql-password-eq")
def _(g):
    pw = pw_any(g)
    tool = g.ch(["mysql", "mysqldump", "mysqlimport", "mysqlsh"])
    return mk(f"{tool} --host={g.host('mysql')} --user={g.user()} --password=", shq(g, pw, word=False),
              f" {g.ch(['--ssl-mode=REQUIRED ', '', '--port=3306 '])}{g.dbname()}")


@T("pw-cli", "pgpassword-env-prefix")
def _(g):
    pw = pw_any(g)
    cmd = g.ch([f"psql -h {g.host('pg')} -U {g.user()} -d {g.dbname()} -c 'select count(*) from pg_stat_activity'",
                f"pg_dump -h {g.host('pg')} -U {g.user()} -Fc {g.dbname()} -f /tmp/{g.dbname()}.dump",
                f"pg_restore -h {g.host('pg')} -U postgres -d {g.dbname()} latest.dump",
                f"createdb -h {g.host('pg')} -U postgres {g.dbname()}_test"])
    return mk("PGPASSWORD=", shq(g, pw, word=False), " " + cmd)


@T("pw-cli", "sshpass-p")
def _(g):
    pw = pw_any(g)
    tgt = f"{g.ch(['deploy', 'ubuntu', 'admin', 'pi', 'ec2-user', 'ops'])}@{g.ch(['web', 'app', 'bastion', 'build', 'nas'])}-{g.ri(1, 40):02d}"
    cmd = g.ch([f"ssh -o StrictHostKeyChecking=no {tgt} 'sudo systemctl restart nginx'",
                f"scp -r ./dist {tgt}:/var/www/html/",
                f"rsync -avz -e ssh ./build/ {tgt}:/srv/app/",
                f"ssh {tgt} uptime"])
    return mk("sshpass -p ", shq(g, pw), " " + cmd)


@T("pw-cli", "htpasswd-b")
def _(g):
    pw = pw_any(g)
    u = g.ch(["admin", "monitor", "prometheus", "kibana", "alice", "dev"])
    if g.p(0.5):
        return mk(f"htpasswd -b{g.ch(['', 'c', 'B', 'cB'])} /etc/nginx/.htpasswd {u} ", shq(g, pw))
    return mk(f"$ htpasswd -nbB {u} ", shq(g, pw), f"\n{u}:$2y$05${g.an(53, CRYPT64)}")


@T("pw-cli", "docker-login-p")
def _(g):
    pw = pw_any(g)
    reg = g.ch(["registry.acme-corp.net", "harbor.corp.local", "nexus.globex-systems.com:5000", "docker.initech.cloud"])
    t, s = mk(f"docker login -u {g.ch(['ci-bot', 'deploy', 'jenkins', 'robot-builder'])} -p ", shq(g, pw), f" {reg}")
    if g.p(0.5):
        t += "\nWARNING! Using --password via the CLI is insecure. Use --password-stdin.\nLogin Succeeded"
    return t, s


@T("pw-cli", "curl-u")
def _(g):
    pw = pw_any(g, forbid="\n")
    u = g.ch(["admin", "jenkins", "ci", "api-user", "elastic", "grafana", "alice"])
    url = g.ch([f"https://{g.host('jenkins')}/api/json?pretty=true", f"https://{g.host('es')}:9200/_cluster/health",
                f"https://{g.host('grafana')}/api/dashboards/home", f"https://{g.host('nexus')}/service/rest/v1/repositories"])
    flag = g.ch(["-u", "--user", "-su"])
    if BARE_OK.fullmatch(pw) and g.p(0.5):
        return mk(f"curl {flag} {u}:", S(pw), f" {url}")
    if "'" not in pw:
        return mk(f"curl {flag} '{u}:", S(pw), f"' {url}")
    return mk(f'curl {flag} "{u}:', S(e_dq(pw)), f'" {url}')


@T("pw-cli", "wget-password")
def _(g):
    pw = pw_any(g)
    flag = g.ch(["--password", "--http-password", "--ftp-password"])
    uflag = {"--password": "--user", "--http-password": "--http-user", "--ftp-password": "--ftp-user"}[flag]
    proto = "ftp" if flag == "--ftp-password" else "https"
    return mk(f"wget {uflag}={g.ch(['mirror', 'build', 'dl-user'])} {flag}=", shq(g, pw, word=False),
              f" {proto}://{g.host('files')}/releases/app-{g.semver()}.tar.gz")


@T("pw-cli", "redis-cli-a")
def _(g):
    pw = pw_any(g)
    t, s = mk(f"redis-cli -h {g.host('cache')} -p 6379 -a ", shq(g, pw), f" {g.ch(['ping', 'INFO memory', 'DBSIZE', '--scan --pattern session:*'])}")
    if g.p(0.4):
        t += "\nWarning: Using a password with '-a' or '-u' option on the command line interface may not be safe."
    return t, s


@T("pw-cli", "mongo-p")
def _(g):
    pw = pw_any(g)
    tool = g.ch(["mongo", "mongosh", "mongodump", "mongorestore", "mongoexport"])
    return mk(f"{tool} --host {g.host('mongo')} --port 27017 -u {g.ch(['admin', 'root', g.user()])} -p ", shq(g, pw),
              f" --authenticationDatabase admin{g.ch(['', ' --db ' + g.dbname(), ' --gzip --archive=/backup/db.gz'])}")


@T("pw-cli", "openssl-passout")
def _(g):
    pw = pw_any(g, forbid=" ")
    k = g.ri(0, 2)
    if k == 0:
        return mk("openssl genrsa -aes256 -passout pass:", shq(g, pw, word=False), f" -out {g.word()}.key 4096")
    if k == 1:
        return mk("openssl pkcs12 -export -in tls.crt -inkey tls.key -out bundle.p12 -name server -passout pass:", shq(g, pw, word=False))
    return mk("openssl req -new -newkey rsa:2048 -keyout server.key -out server.csr -subj '/CN=app' -passout pass:", shq(g, pw, word=False))


@T("pw-cli", "openssl-passin")
def _(g):
    pw = pw_any(g, forbid=" ")
    k = g.ri(0, 2)
    if k == 0:
        return mk("openssl rsa -in server.key -passin pass:", shq(g, pw, word=False), " -out server.nopass.key")
    if k == 1:
        return mk("openssl pkcs12 -in client.p12 -nodes -passin pass:", shq(g, pw, word=False), " -out client.pem")
    return mk("openssl enc -d -aes-256-cbc -pbkdf2 -in backup.tar.enc -out backup.tar -pass pass:", shq(g, pw, word=False))


@T("pw-cli", "zip-P")
def _(g):
    pw = pw_any(g)
    if g.p(0.5):
        return mk("zip -r -P ", shq(g, pw), f" backup-{g.date('')}.zip ./{g.ch(['data', 'reports', 'exports'])}")
    return mk("unzip -o -P ", shq(g, pw), f" {g.ch(['invoices', 'payroll', 'dump'])}.zip -d /tmp/out")


@T("pw-cli", "7z-p")
def _(g):
    pw = pw_any(g)
    if g.p(0.5):
        return mk("7z a -p", shq(g, pw, word=False), f" -mhe=on {g.word()}.7z ./docs")
    return mk("7z x -p", shq(g, pw, word=False), f" -o./restore archive-{g.date('')}.7z")


@T("pw-cli", "net-use")
def _(g):
    pw = pw_any(g, forbid=" \"'", lead="/")
    share = f"\\\\{g.ch(['fileserver', 'nas', 'fs', 'dc'])}{g.ri(1, 9):02d}\\{g.ch(['share', 'backup', 'public', 'finance$'])}"
    dom = g.ch(["CORP", "ACME", "GLOBEX"])
    return mk(f"net use {g.ch(['Z:', 'S:', ''])} {share} ".replace("  ", " "), S(pw),
              f" /user:{dom}\\{g.ch(['jdoe', 'svc_backup', 'administrator'])}{g.ch(['', ' /persistent:yes'])}")


@T("pw-cli", "rclone-config-pass")
def _(g):
    pw = pw_any(g)
    typ = g.ch(["sftp", "ftp", "webdav", "smb"])
    return mk(f"rclone config create {g.word()}-{typ} {typ} host {g.host('files')} user {g.user()} pass ", shq(g, pw))


@T("pw-cli", "smbclient-U")
def _(g):
    pw = pw_any(g, forbid="%")
    u = g.ch(["backup", "scanner", "jdoe", "svc_print"])
    dom = g.ch(["", "CORP\\", "WORKGROUP/"])
    if BARE_OK.fullmatch(pw) and g.p(0.6):
        return mk(f"smbclient //nas{g.ri(1, 4):02d}/{g.ch(['backup', 'scans', 'public'])} -U {dom.replace(chr(92), chr(92) * 2)}{u}%", S(pw), " -c 'ls'")
    return mk(f"smbclient //nas{g.ri(1, 4):02d}/{g.ch(['backup', 'scans', 'public'])} -U '{dom}{u}%", S(e_sq(pw)), "' -c 'recurse; ls'")


@T("pw-cli", "ldapsearch-w")
def _(g):
    pw = pw_any(g)
    dc = g.ch(["dc=corp,dc=local", "dc=acme,dc=net", "dc=globex,dc=com"])
    tool = g.ch(["ldapsearch", "ldapmodify", "ldapwhoami", "ldappasswd"])
    return mk(f'{tool} -x -H ldaps://{g.host("ldap")} -D "cn=admin,{dc}" -w ', shq(g, pw),
              f' -b "{dc}" "(uid={g.first().lower()})"' if tool == "ldapsearch" else "")


@T("pw-cli", "keytool-storepass")
def _(g):
    pw = pw_any(g, forbid=" ")
    a, b = shq(g, pw), shq(g, pw)
    if g.p(0.5):
        return mk("keytool -genkeypair -alias tomcat -keyalg RSA -keysize 2048 -keystore keystore.jks -storepass ", a,
                  " -keypass ", b, " -dname 'CN=app'")
    return mk("keytool -list -v -keystore truststore.jks -storepass ", a)


@T("pw-cli", "ansible-become")
def _(g):
    pw = pw_any(g, forbid="\"'\\ ")
    if g.p(0.5):
        return mk(f'ansible-playbook -i inventories/{g.ch(["prod", "staging"])} site.yml -e "ansible_become_password=', S(pw), '"')
    return mk("ansible-vault decrypt group_vars/all/vault.yml --vault-password-file <(echo '", S(pw), "')")


@T("pw-cli", "helm-repo-add-password")
def _(g):
    pw = pw_any(g)
    return mk(f"helm repo add {g.ch(['internal', 'charts', 'private'])} https://{g.host('charts')}/chartrepo/{g.word()} --username {g.ch(['robot', 'ci', 'deploy'])} --password ", shq(g, pw))


@T("pw-cli", "az-login-sp")
def _(g):
    pw = pw_any(g)
    return mk(f"az login --service-principal -u {g.uuid()} -p ", shq(g, pw), f" --tenant {g.uuid()}")


@T("pw-cli", "mc-alias-set")
def _(g):
    pw = pw_any(g, forbid=" ")
    return mk(f"mc alias set {g.ch(['myminio', 'backup', 's3local'])} https://{g.host('minio')}:9000 {g.ch(['minioadmin', 'backup-user', 'AKIDMINIO01'])} ", shq(g, pw))


@T("pw-cli", "docker-run-e")
def _(g):
    pw = pw_any(g)
    name, img = g.ch([("MYSQL_ROOT_PASSWORD", "mysql:8.0"), ("POSTGRES_PASSWORD", "postgres:16-alpine"),
                      ("MARIADB_ROOT_PASSWORD", "mariadb:11"), ("RABBITMQ_DEFAULT_PASS", "rabbitmq:3-management"),
                      ("MONGO_INITDB_ROOT_PASSWORD", "mongo:7"), ("ELASTIC_PASSWORD", "elasticsearch:8.11.1")])
    return mk(f"docker run -d --name {g.word()} -e {name}=", shq(g, pw, word=False), f" {img}")


@T("pw-cli", "sqlcmd-P")
def _(g):
    pw = pw_any(g)
    return mk(f"sqlcmd -S {g.host('sql')} -U {g.ch(['sa', 'svc_etl'])} -P ", shq(g, pw), f' -Q "SELECT name FROM sys.databases"')


@T("pw-cli", "lftp-u")
def _(g):
    pw = pw_any(g, forbid=", ")
    return mk(f"lftp -u {g.ch(['deploy', 'upload', 'mirror'])},", shq(g, pw, word=False), f" sftp://{g.host('files')} -e 'mirror -R ./dist /www; bye'")


@T("pw-cli", "gpg-passphrase")
def _(g):
    pw = pw_any(g)
    return mk("gpg --batch --yes --pinentry-mode loopback --passphrase ", shq(g, pw), f" -d {g.word()}.tar.gz.gpg")


@T("pw-cli", "rabbitmqctl-user")
def _(g):
    pw = pw_any(g)
    if g.p(0.5):
        return mk(f"rabbitmqctl add_user {g.user()} ", shq(g, pw))
    return mk("rabbitmqctl change_password guest ", shq(g, pw))


@T("pw-cli", "vault-userpass")
def _(g):
    pw = pw_any(g)
    return mk(f"vault login -method=userpass username={g.first().lower()} password=", shq(g, pw, word=False))


@T("pw-cli", "kubectl-from-literal")
def _(g):
    pw = pw_any(g)
    return mk(f"kubectl create secret generic {g.word()}-db -n {g.ch(['prod', 'default', 'payments'])} --from-literal=username={g.user()} --from-literal=password=", shq(g, pw, word=False))


@T("pw-cli", "echo-pipe-password-stdin")
def _(g):
    pw = pw_any(g, forbid="\n")
    q = g.ch(["'", '"'])
    body = e_sq(pw) if q == "'" else e_dq(pw)
    return mk(f"echo {q}", S(body), f"{q} | docker login {g.ch(['ghcr.io', 'registry.gitlab.com', 'quay.io'])} -u {g.ch(['ci-bot', 'deploy'])} --password-stdin")


@T("pw-cli", "cqlsh-p")
def _(g):
    pw = pw_any(g)
    return mk(f"cqlsh {g.host('cassandra')} 9042 -u cassandra -p ", shq(g, pw), f" -e 'DESCRIBE KEYSPACES'")


@T("pw-cli", "snmpwalk-v3")
def _(g):
    a, x = pw_any(g, forbid=" "), pw_any(g, forbid=" ")
    return mk("snmpwalk -v3 -l authPriv -u monitor -a SHA -A ", shq(g, a), " -x AES -X ", shq(g, x), f" {g.ch(['core-sw01', 'edge-rtr02', 'fw-dmz'])} sysDescr")


# --- holdout-only command lines ---------------------------------------------

@T("pw-cli", "xfreerdp-p", ho=True)
def _(g):
    pw = pw_any(g, forbid=" ")
    return mk(f"xfreerdp /v:{g.host('ts')} /u:CORP\\{g.ch(['administrator', 'jdoe', 'svc_rdp'])} /p:", shq(g, pw, word=False), " /cert:ignore /dynamic-resolution")


@T("pw-cli", "ipmitool-P", ho=True)
def _(g):
    pw = pw_any(g)
    return mk(f"ipmitool -I lanplus -H bmc-r{g.ri(1, 40)}u{g.ri(1, 42)} -U ADMIN -P ", shq(g, pw), f" {g.ch(['chassis power status', 'sel list', 'sensor'])}")


@T("pw-cli", "nmcli-wifi-password", ho=True)
def _(g):
    pw = g.pw(forbid="\n")
    while len(pw) < 8:
        pw = g.pw()
    return mk(f'nmcli dev wifi connect "{g.ch(["Office", "Lab", "Guest", "Warehouse"])}-{g.ch(["5G", "2G", "Net"])}" password ', shq(g, pw))


@T("pw-cli", "sqlplus-user-slash-pw", ho=True)
def _(g):
    pw = pw_any(g, forbid="/@ \"'", ascii_only=True)
    return mk(f"sqlplus {g.ch(['system', 'scott', 'app_owner'])}/", S(pw), f"@//{g.host('ora')}:1521/{g.ch(['ORCLPDB1', 'XEPDB1', 'PROD'])}")


@T("pw-cli", "mosquitto-P", ho=True)
def _(g):
    pw = pw_any(g)
    return mk(f"mosquitto_pub -h {g.host('mqtt')} -p 8883 -u sensor{g.ri(1, 99):02d} -P ", shq(g, pw), f" -t 'plant/{g.word()}/temp' -m {g.ri(15, 30)}.{g.ri(0, 9)}")


@T("pw-cli", "echo-chpasswd", ho=True)
def _(g):
    pw = pw_any(g, forbid=":'\n")
    return mk(f"echo '{g.first().lower()}:", S(pw), "' | sudo chpasswd")


@T("pw-cli", "wp-cli-user-pass", ho=True)
def _(g):
    pw = pw_any(g)
    return mk(f"wp user update {g.ri(1, 40)} --user_pass=", shq(g, pw, word=False), " --skip-email")


# ===========================================================================
# generic-password: passwords in non-database URLs
# ===========================================================================

def userinfo(g, user, pw=None):
    pw = pw if pw is not None else g.pw_for_url()
    return (e_url(user) + ":", S(e_url(pw)), "@")


@T("pw-url", "git-clone-https")
def _(g):
    host = g.ch(["git", "gitlab", "gitea", "bitbucket", "code"])
    return mk(f"git clone https://", userinfo(g, g.ch(["deploy", "ci", g.first().lower(), "build-bot"])),
              f"{g.host(host)}/{g.word()}/{g.word()}-{g.ch(['api', 'web', 'infra', 'tools'])}.git")


@T("pw-url", "ftp-url")
def _(g):
    tool = g.ch(["curl -O", "wget", "curl -T report.csv", "lftp"])
    return mk(f"{tool} ftp://", userinfo(g, g.ch(["upload", "partner", "edi", "mirror"])),
              f"{g.host('ftp')}/{g.ch(['pub', 'incoming', 'outbound'])}/{g.word()}-{g.date('')}.{g.ch(['csv', 'zip', 'xml'])}")


@T("pw-url", "smtp-url")
def _(g):
    var = g.ch(["EMAIL_URL", "MAILER_DSN", "SMTP_URL", "MAIL_URL"])
    sch = g.ch(["smtp", "smtps", "submission"])
    port = {"smtp": 587, "smtps": 465, "submission": 587}[sch]
    return mk(f"{var}={sch}://", userinfo(g, g.ch(["mailer", "noreply", "postmaster", "apikey"])), f"{g.host('smtp')}:{port}")


@T("pw-url", "https-basic-in-url")
def _(g):
    k = g.ri(0, 2)
    url = ("https://", userinfo(g, g.ch(["admin", "reader", "svc-monitor"])), f"{g.host(g.ch(['nexus', 'artifactory', 'es', 'jenkins']))}/{g.ch(['repository/npm-group/', '_cat/indices', 'job/deploy/build', 'api/v2/status'])}")
    if k == 0:
        return mk("upstream: ", url)
    if k == 1:
        return mk(f"{g.iso()} DEBUG http.client GET ", url, " -> 200")
    return mk("curl -fsSL ", url)


@T("pw-url", "ldap-url")
def _(g):
    return mk(f"{g.ch(['LDAP_URL', 'AUTH_LDAP_SERVER_URI', 'ldap_uri'])}={g.ch(['ldap', 'ldaps'])}://",
              userinfo(g, g.ch(["binduser", "svc_ldap", "readonly"])), f"{g.host('ldap')}:{g.ch(['389', '636'])}")


@T("pw-url", "pip-index-url")
def _(g):
    return mk(f"pip install --index-url https://", userinfo(g, g.ch(["deploy", "pypi-reader", "ci"])),
              f"{g.host('pypi')}/simple/ {g.word()}-{g.ch(['client', 'utils', 'sdk'])}=={g.semver()}")


@T("pw-url", "proxy-env", ho=True)
def _(g):
    v = g.ch(["https_proxy", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"])
    return mk(f"export {v}=http://", userinfo(g, g.ch(["jdoe", "proxyuser", "svc_proxy"])), f"{g.host('proxy')}:{g.ch(['3128', '8080', '8888'])}")


@T("pw-url", "webdav-url", ho=True)
def _(g):
    return mk(f"rclone copy ./photos :webdav: --webdav-url davs://", userinfo(g, g.first().lower()),
              f"cloud.{g.org()}/remote.php/dav/files/{g.first().lower()}/")


@T("pw-url", "gitconfig-remote-url", ho=True)
def _(g):
    return mk('[remote "origin"]\n\turl = https://', userinfo(g, g.ch(["oauth", "deploy", "jenkins"])),
              f"{g.host('gitlab')}/{g.word()}/{g.word()}.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*")


@T("pw-url", "wss-url", ho=True)
def _(g):
    return mk("const ws = new WebSocket('wss://", userinfo(g, g.ch(["feed", "client", "stream"])),
              f"{g.host('stream')}/v1/{g.word()}');")


# ===========================================================================
# db-url: credentials in database / queue connection URLs
# ===========================================================================

DB_SCHEMES = [("postgres", 5432), ("postgresql", 5432), ("mysql", 3306),
              ("mariadb", 3306), ("mongodb", 27017), ("redis", 6379),
              ("rediss", 6380), ("amqp", 5672), ("amqps", 5671),
              ("clickhouse", 9000), ("cockroachdb", 26257), ("sqlserver", 1433),
              ("postgresql+psycopg2", 5432), ("mysql+pymysql", 3306)]


def db_url(g, scheme=None, db=True, query=True):
    sch, port = (scheme, dict(DB_SCHEMES).get(scheme, 5432)) if scheme else g.ch(DB_SCHEMES)
    pw = g.pw_for_url()
    role = {"redis": "cache", "rediss": "cache", "amqp": "mq", "amqps": "mq", "mongodb": "mongo"}.get(sch, "db")
    h = g.host(role)
    if sch.startswith("redis"):
        user = g.ch(["", "", "default", "app"])
        path = f"/{g.ri(0, 15)}"
    elif sch.startswith("amqp"):
        user = g.ch(["guest", "app", "celery", "svc_orders"])
        path = "/" + g.ch(["", "%2F", "prod", "orders"])
    else:
        user = g.user()
        path = "/" + g.dbname() if db else ""
    q = ""
    if query and g.p(0.35):
        q = g.ch(["?sslmode=require", "?ssl=true", "?connect_timeout=10", "?charset=utf8mb4", "?authSource=admin"])
    portpart = f":{port}" if g.p(0.6) else ""
    return (f"{sch}://{e_url(user)}:", S(e_url(pw)), f"@{h}{portpart}{path}{q}")


@T("db-url", "env-database-url")
def _(g):
    var = g.ch(["DATABASE_URL", "DB_URL", "POSTGRES_URL", "MYSQL_URL", "CACHE_URL", "BROKER_URL", "DATABASE_URI"])
    u = db_url(g)
    if g.p(0.3):
        return mk(f'{var}="', u, '"')
    return mk(f"{var}=", u)


@T("db-url", "psql-uri")
def _(g):
    tool = g.ch(["psql", "pg_dump", "pgcli", "pg_isready -d"])
    return mk(f'{tool} "', db_url(g, g.ch(["postgres", "postgresql"])), '"')


@T("db-url", "sqlalchemy-create-engine")
def _(g):
    return mk('engine = create_engine("', db_url(g, g.ch(["postgresql+psycopg2", "mysql+pymysql", "postgresql", "mysql"])),
              f'", pool_size={g.ri(5, 20)}, pool_pre_ping=True)')


@T("db-url", "mongo-srv")
def _(g):
    pw = g.pw_for_url()
    cl = f"cluster{g.ri(0, 3)}.{g.an(5, string.ascii_lowercase + DIG)}.mongodb.net"
    u = ("mongodb+srv://" + g.ch(["app", "admin", "reporting", "svc_api"]) + ":", S(e_url(pw)), f"@{cl}/{g.dbname()}?retryWrites=true&w=majority")
    if g.p(0.5):
        return mk('mongosh "', u, '"')
    return mk("MONGO_URI=", u)


@T("db-url", "redis-url")
def _(g):
    sch = g.ch(["redis", "rediss"])
    pw = g.pw_for_url()
    user = g.ch(["", "default"])
    u = (f"{sch}://{user}:", S(e_url(pw)), f"@{g.host('redis')}:{6379 if sch == 'redis' else 6380}/{g.ri(0, 3)}")
    return mk(g.ch(["REDIS_URL=", "CACHE_LOCATION = '", "redis-cli -u "]), u, "")


@T("db-url", "celery-amqp")
def _(g):
    u = db_url(g, g.ch(["amqp", "amqps"]))
    return mk(g.ch(["CELERY_BROKER_URL = '", "broker_url = '", "app.conf.broker_url = '"]), u, "'")


@T("db-url", "yaml-url")
def _(g):
    k = g.ri(0, 2)
    if k == 0:
        return mk("spring:\n  data:\n    mongodb:\n      uri: ", db_url(g, "mongodb"))
    if k == 1:
        return mk("database:\n  url: \"", db_url(g, g.ch(["postgres", "mysql"])), f"\"\n  pool: {g.ri(5, 30)}")
    return mk("production:\n  adapter: postgresql\n  url: ", db_url(g, "postgres"))


@T("db-url", "jdbc-password-param")
def _(g):
    pw = g.pw_for_url()
    sub = g.ch(["postgresql", "mysql", "mariadb"])
    port = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}[sub]
    return mk(f"spring.datasource.url=jdbc:{sub}://{g.host('db')}:{port}/{g.dbname()}?user={g.user()}&password=", S(e_qs(pw)),
              g.ch(["", "&ssl=true", "&useSSL=false"]))


@T("db-url", "log-connecting")
def _(g):
    return mk(f"{g.date()} {g.time()},{g.dig(3)} INFO [{g.ch(['db.pool', 'migrate', 'alembic.runtime', 'worker'])}] connecting to ",
              db_url(g, g.ch(["postgresql", "mysql", "redis", "amqp", "mongodb"])))


@T("db-url", "go-sql-open", ho=True)
def _(g):
    sch = g.ch(["postgres", "mysql"])
    drv = "postgres" if sch == "postgres" else "mysql"
    return mk(f'db, err := sql.Open("{drv}", "', db_url(g, sch), '")')


@T("db-url", "alembic-ini", ho=True)
def _(g):
    return mk("[alembic]\nscript_location = migrations\nsqlalchemy.url = ", db_url(g, g.ch(["postgresql+psycopg2", "postgresql", "mysql+pymysql"])))


@T("db-url", "nats-url", ho=True)
def _(g):
    pw = g.pw_for_url()
    return mk(f"NATS_URL=nats://{g.ch(['svc', 'app', 'ingest'])}:", S(e_url(pw)), f"@nats-{g.ri(0, 2)}.nats.{g.ch(INTDOMAINS)}:4222")


@T("db-url", "knexfile-connection", ho=True)
def _(g):
    return mk("module.exports = {\n  client: 'mysql2',\n  connection: '", db_url(g, "mysql"), "',\n  pool: { min: 2, max: 10 }\n};")


# ===========================================================================
# generic-secret: other secrets in assignments
# ===========================================================================


@T("generic-secret", "env-secret")
def _(g):
    return mk(f"{g.ch(SECRET_ENV_NAMES)}=", S(g.secret_value()))


@T("generic-secret", "django-secret-key")
def _(g):
    chars = string.ascii_lowercase + DIG + "!@#%^&*(-_=+)"
    v = ("django-insecure-" if g.p(0.4) else "") + g.an(50, chars)
    return mk("SECRET_KEY = '", S(v), "'")


@T("generic-secret", "yaml-client-secret")
def _(g):
    return mk(f"oauth:\n  client_id: {g.word()}-{g.ch(['web', 'portal', 'cli'])}\n  client_secret: ", S(g.secret_value()),
              f"\n  redirect_uri: https://{g.host('app')}/callback")


@T("generic-secret", "json-api-secret")
def _(g):
    k = g.ch(["apiSecret", "clientSecret", "signingSecret", "webhookSecret", "secretKey"])
    return mk('{"service": "' + g.word() + '", "' + k + '": "', S(g.secret_value()), '", "timeout": ' + str(g.ri(5, 60)) + "}")


@T("generic-secret", "rails-secret-key-base")
def _(g):
    return mk("production:\n  secret_key_base: ", S(g.hx(128)))


@T("generic-secret", "laravel-app-key")
def _(g):
    return mk("APP_NAME=Laravel\nAPP_ENV=production\nAPP_KEY=", S("base64:" + g.b64(32)), "\nAPP_DEBUG=false")


@T("generic-secret", "toml-signing-key")
def _(g):
    k = g.ch(["signing_key", "session_secret", "encryption_key", "hmac_key", "cookie_secret"])
    return mk(f"[auth]\nissuer = \"https://{g.host('auth')}\"\n{k} = \"", S(g.secret_value()), '"')


@T("generic-secret", "header-api-key")
def _(g):
    h = g.ch(["X-API-Key", "X-Api-Key", "Api-Key", "X-Auth-Token", "X-Access-Token"])
    return mk(f'curl -s -H "{h}: ', S(g.an(g.ri(32, 40))), f'" https://{g.host("api")}/v1/{g.ch(["orders", "items", "reports"])}')


@T("generic-secret", "bearer-opaque")
def _(g):
    return mk(f"{g.ch(['GET', 'POST'])} /api/{g.word()} HTTP/1.1\nHost: {g.host('api')}\nAuthorization: Bearer ", S(g.an(1) + g.an(g.ri(40, 64), ALNUM + "-_.") + g.an(1)),
              "\nAccept: application/json")


@T("generic-secret", "tfvars-client-secret", ho=True)
def _(g):
    return mk(f'tenant_id     = "{g.uuid()}"\nclient_id     = "{g.uuid()}"\nclient_secret = "', S(g.an(8) + "~" + g.an(31, ALNUM + "._-")), '"')


@T("generic-secret", "spring-jwt-secret", ho=True)
def _(g):
    return mk(f"app.jwt.expiration-ms={g.ri(1, 24) * 3600000}\napp.jwt.secret=", S(g.secret_value()))


@T("generic-secret", "js-object-secret", ho=True)
def _(g):
    return mk("const config = {\n  auth: {\n    secret: '", S(g.secret_value()), f"',\n    ttl: '{g.ri(1, 48)}h',\n  }},\n}};".replace("}},", "},").replace("}};", "};"))


@T("generic-secret", "docker-run-e-secret", ho=True)
def _(g):
    return mk(f"docker run -d -p 3000:3000 -e NODE_ENV=production -e {g.ch(SECRET_ENV_NAMES)}=", S(g.secret_value()), f" {g.word()}-app:{g.semver()}")


# ===========================================================================
# generic-password: configuration files and code
# ===========================================================================

def cpw(g, **kw):
    """A password for a config value: PINs are allowed (assigned to a password key)."""
    return g.pw(pin=True, **kw)


@T("pw-config", "dotenv")
def _(g):
    name = g.ch(PW_ENV_NAMES)
    pre = g.r.sample([f"DB_HOST={g.host('db')}", f"DB_PORT={g.ch(['5432', '3306'])}", f"DB_USER={g.user()}",
                      f"DB_NAME={g.dbname()}", "APP_ENV=production", f"APP_URL=https://{g.host('app')}"], g.ri(1, 3))
    return mk("\n".join(pre) + f"\n{name}=", dotenv_val(g, cpw(g, forbid="\n")), g.ch(["", "\nLOG_LEVEL=warn", "\nCACHE_TTL=300"]))


@T("pw-config", "yaml-password")
def _(g):
    key = g.ch(["password", "pass", "passwd", "pwd", "db_password", "admin_password", "bind_password"])
    top = g.ch(["database", "db", "datasource", "ldap", "smtp", "mail"])
    return mk(f"{top}:\n  host: {g.host(top)}\n  {g.ch(['username', 'user'])}: {g.user()}\n  {key}: ", yaml_val(g, cpw(g, forbid="\n")))


@T("pw-config", "yaml-quoted-db-password")
def _(g):
    pw = cpw(g, forbid="\n")
    key = g.ch(["db_password", "mysql_password", "redis_password", "smtp_password", "keystore_password"])
    return mk(f"{key}: \"", S(e_json(pw)), '"')


@T("pw-config", "json-password")
def _(g):
    pw = cpw(g, forbid="\n")
    key = g.ch(["password", "dbPassword", "db_password", "adminPassword", "pass"])
    val = ("", S(pw), "") if pw.isdigit() and g.p(0.5) else ('"', S(e_json(pw)), '"')
    if g.p(0.5):
        return mk('{"host": "' + g.host("db") + '", "port": ' + g.ch(["5432", "3306", "1433"]) + ', "user": "' + g.user() + '", "' + key + '": ', val, "}")
    return mk('{\n  "database": {\n    "user": "' + g.user() + '",\n    "' + key + '": ', val, ',\n    "name": "' + g.dbname() + '"\n  }\n}')


@T("pw-config", "toml-password")
def _(g):
    pw = cpw(g, forbid="\n")
    return mk(f"[{g.ch(['database', 'db', 'smtp', 'redis'])}]\nhost = \"{g.host()}\"\nuser = \"{g.user()}\"\npassword = \"", S(e_json(pw)), '"')


@T("pw-config", "ini-password")
def _(g):
    pw = cpw(g, forbid="\n;#")
    sec = g.ch(["mysql", "database", "client", "ldap", "smtp", "DEFAULT"])
    sp = g.ch([" = ", "=", " = "])
    return mk(f"[{sec}]\nhost{sp}{g.host()}\nuser{sp}{g.user()}\n{g.ch(['password', 'passwd', 'pass'])}{sp}", S(pw))


@T("pw-config", "xml-password")
def _(g):
    pw = cpw(g, forbid="\n")
    if g.p(0.5):
        return mk(f"<datasource>\n  <url>jdbc:postgresql://{g.host('db')}:5432/{g.dbname()}</url>\n  <username>{g.user()}</username>\n  <password>", S(e_xml(pw)), "</password>\n</datasource>")
    return mk(f'<add key="{g.ch(["DbPassword", "SmtpPassword", "AdminPassword"])}" value="', S(e_xml(pw)), '" />')


@T("pw-config", "java-properties")
def _(g):
    pw = cpw(g, forbid="\n\\", ascii_only=True)
    key = g.ch(["spring.datasource.password", "spring.mail.password", "spring.rabbitmq.password", "db.password",
                "hibernate.connection.password", "spring.redis.password"])
    return mk(f"spring.datasource.username={g.user()}\n{key}=", S(pw))


@T("pw-config", "compose-env")
def _(g):
    pw = cpw(g, forbid="\n")
    name, img = g.ch([("POSTGRES_PASSWORD", "postgres:16"), ("MYSQL_ROOT_PASSWORD", "mysql:8.4"), ("MARIADB_PASSWORD", "mariadb:11"),
                      ("RABBITMQ_DEFAULT_PASS", "rabbitmq:3.13-management"), ("MONGO_INITDB_ROOT_PASSWORD", "mongo:7.0"),
                      ("GF_SECURITY_ADMIN_PASSWORD", "grafana/grafana:11.3.0")])
    svc = img.split(":")[0].split("/")[-1]
    if g.p(0.5):
        return mk(f"services:\n  {svc}:\n    image: {img}\n    environment:\n      {name}: ", yaml_val(g, pw))
    pw = cpw(g, forbid="\n '\"#")
    return mk(f"services:\n  {svc}:\n    image: {img}\n    environment:\n      - {name}=", S(pw), "\n    restart: unless-stopped")


@T("pw-config", "k8s-secret-stringdata")
def _(g):
    return mk(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {g.word()}-credentials\ntype: Opaque\nstringData:\n  username: {g.user()}\n  password: ",
              yaml_val(g, cpw(g, forbid="\n")))


@T("pw-config", "netrc")
def _(g):
    pw = cpw(g, forbid=" \t\n\"'")
    m = g.host(g.ch(["git", "ftp", "api", "files"]))
    if g.p(0.5):
        return mk(f"machine {m} login {g.user()} password ", S(pw))
    return mk(f"machine {m}\n  login {g.user()}\n  password ", S(pw), "\n\ndefault login anonymous password guest")


@T("pw-config", "pgpass")
def _(g):
    pw = cpw(g, forbid=":\\\n")
    return mk(f"{g.host('pg')}:5432:{g.ch([g.dbname(), '*'])}:{g.user()}:", S(pw))


@T("pw-config", "my-cnf")
def _(g):
    pw = cpw(g, forbid="\n#;\"'")
    if g.p(0.5):
        return mk(f"[client]\nuser={g.ch(['root', g.user()])}\npassword=", S(pw), f"\nhost={g.host('mysql')}")
    pw = cpw(g, forbid="\n\"\\")
    return mk(f"[mysqldump]\nuser=backup\npassword=\"", S(pw), '"')


@T("pw-config", "wp-config-define")
def _(g):
    pw = cpw(g, forbid="\n")
    return mk(f"define( 'DB_NAME', 'wordpress' );\ndefine( 'DB_USER', '{g.user()}' );\ndefine( 'DB_PASSWORD', '", S(e_php(pw)), "' );")


@T("pw-config", "php-assign")
def _(g):
    pw = cpw(g, forbid="\n")
    if g.p(0.5):
        return mk(f"$db_{g.ch(['pass', 'password', 'pwd'])} = '", S(e_php(pw)), "';")
    return mk(f"'mysql' => [\n    'host' => '{g.host('mysql')}',\n    'username' => '{g.user()}',\n    'password' => '", S(e_php(pw)), "',\n],")


@T("pw-config", "python-assign")
def _(g):
    pw = cpw(g, forbid="\n")
    if g.p(0.5):
        return mk(f"{g.ch(['DB_PASSWORD', 'PASSWORD', 'SMTP_PASS', 'ADMIN_PASSWORD'])} = \"", S(e_json(pw)), '"')
    return mk(f'conn = psycopg2.connect(host="{g.host("pg")}", dbname="{g.dbname()}", user="{g.user()}", password="', S(e_json(pw)), '")')


@T("pw-config", "js-assign")
def _(g):
    pw = cpw(g, forbid="\n")
    if g.p(0.5):
        return mk(f"const {g.ch(['dbPassword', 'password', 'adminPass', 'smtpPassword'])} = '", S(pw.replace("\\", "\\\\").replace("'", "\\'")), "';")
    return mk(f"const sequelize = new Sequelize('{g.dbname()}', '{g.user()}', \"", S(e_json(pw)), f"\", {{ host: '{g.host('db')}', dialect: 'postgres' }});")


@T("pw-config", "go-assign")
def _(g):
    pw = cpw(g, forbid="\n")
    if g.p(0.5):
        return mk(f"cfg := mysql.Config{{\n\tUser:   \"{g.user()}\",\n\tPasswd: \"", S(e_json(pw)), f"\",\n\tNet:    \"tcp\",\n\tAddr:   \"{g.host('mysql')}:3306\",\n}}")
    return mk(f'const {g.ch(["dbPassword", "adminPassword", "defaultPassword"])} = "', S(e_json(pw)), '"')


@T("pw-config", "java-assign")
def _(g):
    pw = cpw(g, forbid="\n")
    if g.p(0.5):
        return mk('private static final String DB_PASSWORD = "', S(e_json(pw)), '";')
    return mk(f'HikariConfig config = new HikariConfig();\nconfig.setUsername("{g.user()}");\nconfig.setPassword("', S(e_json(pw)), '");')


@T("pw-config", "batch-set")
def _(g):
    pw = cpw(g, forbid="\n&|<>^%\"!")
    name = g.ch(["DB_PASSWORD", "ADMIN_PWD", "SQL_PASS", "PASSWORD"])
    if g.p(0.5):
        return mk("@echo off\nset ", name, "=", S(pw), f"\nsqlcmd -S %DB_HOST% -U sa -P %{name}% -i init.sql")
    return mk('set "', name, "=", S(pw), '"')


@T("pw-config", "powershell-securestring")
def _(g):
    pw = cpw(g, forbid="\n")
    return mk("$secpass = ConvertTo-SecureString '", S(e_dbl(pw)), "' -AsPlainText -Force\n$cred = New-Object System.Management.Automation.PSCredential ('"
              + g.ch(["CORP\\svc_deploy", "administrator", "CORP\\jdoe"]) + "', $secpass)")


@T("pw-config", "connection-string-keywords")
def _(g):
    pw = cpw(g, forbid="\n;'\" ")
    if g.p(0.5):
        return mk('"ConnectionStrings": {\n  "Default": "Server=' + g.host("sql") + ";Database=" + g.dbname() + ";User Id=" + g.ch(["sa", g.user()]) + ";Password=", S(e_json(pw)), ';TrustServerCertificate=True;"\n}')
    return mk(f"dsn = \"host={g.host('pg')} port=5432 dbname={g.dbname()} user={g.user()} password=", S(pw), ' sslmode=require"')


# --- holdout-only config forms ----------------------------------------------

@T("pw-config", "hcl-terraform-password", ho=True)
def _(g):
    pw = cpw(g, forbid="\n$%")
    return mk(f'resource "aws_db_instance" "{g.word()}" {{\n  engine   = "postgres"\n  username = "{g.user()}"\n  password = "', S(e_json(pw)), '"\n}')


@T("pw-config", "dockerfile-env", ho=True)
def _(g):
    pw = cpw(g, forbid="\n \"'$\\")
    return mk(f"FROM {g.ch(['postgres:16', 'mysql:8.0', 'node:20-alpine'])}\n{g.ch(['ENV', 'ARG'])} {g.ch(PW_ENV_NAMES)}=", S(pw), "\nEXPOSE 5432")


@T("pw-config", "makefile-var", ho=True)
def _(g):
    pw = cpw(g, forbid="\n $#\\'\"")
    return mk(f"DB_USER ?= {g.user()}\nDB_PASS ?= ", S(pw), "\n\nmigrate:\n\tmigrate -database \"postgres://$(DB_USER):$(DB_PASS)@localhost/app\" up")


@T("pw-config", "sql-create-user", ho=True)
def _(g):
    pw = cpw(g, forbid="\n\\")
    if g.p(0.5):
        return mk(f"CREATE USER '{g.user()}'@'%' IDENTIFIED BY '", S(e_dbl(pw)), "';")
    return mk(f"ALTER ROLE {g.user()} WITH LOGIN PASSWORD '", S(e_dbl(pw)), "';")


@T("pw-config", "wpa-supplicant-psk", ho=True)
def _(g):
    pw = g.pw(forbid='\n"\\')
    while len(pw) < 8:
        pw = g.pw(forbid='\n"\\')
    return mk(f'network={{\n    ssid="{g.ch(["Office", "HomeNet", "Lab"])}-{g.ri(1, 9)}"\n    psk="', S(pw), '"\n    key_mgmt=WPA-PSK\n}')


# ===========================================================================
# generic-password: environment dumps
# ===========================================================================

def env_lines(g, names_vals, n_fill=(2, 6)):
    """Mix 'NAME=value' lines holding S() values with filler variables."""
    fill = g.r.sample(FILLER_ENV, g.ri(*n_fill))
    items = [("", f) for f in fill] + [(n, v) for n, v in names_vals]
    g.r.shuffle(items)
    parts = []
    for i, (n, v) in enumerate(items):
        if i:
            parts.append("\n")
        if n:
            parts.extend([n + "=", S(v)])
        else:
            parts.append(v)
    return parts


def env_pw(g, k=1, forbid="\n"):
    names = g.r.sample(PW_ENV_NAMES, k)
    return [(n, g.pw(pin=True, forbid=forbid)) for n in names]


@T("pw-env", "env-dump")
def _(g):
    return mk(g.ch(["$ env\n", "# env\n", "root@" + g.hx(12) + ":/app# env\n", ""]), env_lines(g, env_pw(g, g.ch([1, 1, 2]))))


@T("pw-env", "printenv-value")
def _(g):
    name = g.ch(PW_ENV_NAMES)
    return mk(f"$ printenv {name}\n", S(g.pw(forbid="\n")))


@T("pw-env", "docker-inspect-env")
def _(g):
    nv = env_pw(g, 1)
    fill = g.r.sample(FILLER_ENV, g.ri(2, 4))
    items = [(None, f) for f in fill] + nv
    g.r.shuffle(items)
    parts = ['        "Env": [']
    for i, (n, v) in enumerate(items):
        parts.append("\n            \"")
        if n is None:
            parts.append(e_json(v))
        else:
            parts.extend([n + "=", S(e_json(v))])
        parts.append('"' + ("," if i < len(items) - 1 else ""))
    parts.append("\n        ],")
    return mk(*parts)


@T("pw-env", "systemctl-show-environment")
def _(g):
    return mk("$ systemctl show-environment\n", env_lines(g, env_pw(g, 1, forbid="\n '\"\\$"), (2, 4)))


@T("pw-env", "ps-e-line")
def _(g):
    nv = env_pw(g, 1, forbid="\n \t'\"")
    fill = g.r.sample(FILLER_ENV, g.ri(2, 4))
    items = [("", f) for f in fill] + nv
    g.r.shuffle(items)
    parts = [f"  PID TTY      STAT   TIME COMMAND\n{g.ri(300, 60000):>5} ?        Ssl    {g.ri(0, 59)}:{g.ri(0, 59):02d} "
             + g.ch(["node server.js", "python3 app.py", "/usr/local/bin/gunicorn app:app", "java -jar app.jar", "./api --port 8080"])]
    for n, v in items:
        parts.append(" ")
        if n:
            parts.extend([n + "=", S(v)])
        else:
            parts.append(v)
    return mk(*parts)


@T("pw-env", "proc-environ")
def _(g):
    return mk(f"$ cat /proc/{g.ri(1, 900)}/environ | tr '\\0' '\\n'\n", env_lines(g, env_pw(g, 1)))


@T("pw-env", "kubectl-exec-env-grep")
def _(g):
    nv = env_pw(g, g.ch([1, 2]))
    extra = g.ch(["", "\nPASSWORD_MIN_LENGTH=12", "\nPASSWORD_RESET_TTL=3600"])
    parts = [f"$ kubectl exec -n {g.ch(['prod', 'default', 'shop'])} deploy/{g.word()}-api -- env | grep -i pass"]
    for n, v in nv:
        parts.extend(["\n" + n + "=", S(v)])
    parts.append(extra)
    return mk(*parts)


@T("pw-env", "heroku-config", ho=True)
def _(g):
    name = g.ch(["DATABASE_PASSWORD", "SMTP_PASSWORD", "ADMIN_PASSWORD", "REDIS_PASSWORD"])
    pw = g.pw(forbid="\n")
    rows = [(name, S(pw)), ("NODE_ENV", "production"), ("WEB_CONCURRENCY", str(g.ri(2, 8)))]
    g.r.shuffle(rows)
    parts = [f"=== {g.word()}-{g.ch(['api', 'web'])} Config Vars"]
    for n, v in rows:
        parts.extend(["\n" + (n + ":").ljust(20), v])
    return mk(*parts)


@T("pw-env", "bash-set-output", ho=True)
def _(g):
    name = g.ch(["BORG_PASSPHRASE", "RESTIC_PASSWORD", "GPG_PASSPHRASE", "PASSPHRASE"])
    pw = g.pw(forbid="\n")
    if re.fullmatch(r"[A-Za-z0-9_./@%+=:,-]+", pw):
        val = ("", S(pw), "")
    else:
        val = ("'", S(e_sq(pw)), "'")
    return mk(f"$ set | grep -i pass\n{name}=", val)


@T("pw-env", "gha-env-block", ho=True)
def _(g):
    name = g.ch(["SMTP_PASSWORD", "DB_PASSWORD", "ADMIN_PASSWORD"])
    return mk(f"##[group]Run ./scripts/{g.ch(['deploy', 'migrate', 'seed'])}.sh\n./scripts/deploy.sh\nshell: /usr/bin/bash -e {{0}}\nenv:\n  {name}: ",
              S(g.pw(forbid="\n")), "\n##[endgroup]")


@T("pw-env", "powershell-env-table", ho=True)
def _(g):
    name = g.ch(["ADMIN_PASSWORD", "SQL_SA_PASSWORD", "VNC_PASSWORD", "DB_PASS"])
    pw = g.pw(forbid="\n")
    rows = [(name, S(pw)), ("COMPUTERNAME", f"WIN-{g.an(11, string.ascii_uppercase + DIG)}"), ("OS", "Windows_NT"),
            ("PROCESSOR_ARCHITECTURE", "AMD64")]
    g.r.shuffle(rows)
    parts = ["PS C:\\> Get-ChildItem Env: | Format-Table -AutoSize\n\nName                   Value\n----                   -----"]
    for n, v in rows:
        parts.extend(["\n" + n.ljust(23), v])
    return mk(*parts)


# ===========================================================================
# phone numbers
# ===========================================================================
# Each country function returns {format: string}.  Shared formats: e164,
# intl, dash, nat, paren.  Holdout-only formats: i00 (00 prefix), dots.

PHONE_FMTS_SHARED = ["e164", "intl", "dash", "nat", "paren"]
PHONE_FMTS_HO = ["i00", "dots"]


def _f(cc, groups, nat, paren, trunk="0"):
    nsn = "".join(groups)
    return {"e164": f"+{cc}{nsn}", "intl": f"+{cc} " + " ".join(groups),
            "dash": f"+{cc}-" + "-".join(groups), "nat": nat, "paren": paren,
            "i00": f"00{cc} " + " ".join(groups), "dots": f"+{cc}." + ".".join(groups)}


def ph_in(g):
    if g.p(0.75):
        n = g.ch(["98", "99", "97", "96", "94", "93", "91", "90", "89", "88", "87", "86", "85", "84", "83", "82", "81", "80",
                  "79", "78", "77", "76", "75", "74", "73", "72", "70", "63", "62"]) + g.dig(8)
        a, b = n[:5], n[5:]
        return _f("91", [a, b], g.ch([f"0{a} {b}", f"0{n}", f"{a} {b}"]), f"(+91) {a} {b}")
    area = g.ch(["22", "11", "80", "44", "33", "40", "20", "79"])
    sub = g.ch("2346") + g.dig(7)
    return _f("91", [area, sub[:4], sub[4:]], f"0{area} {sub[:4]} {sub[4:]}", f"(0{area}) {sub[:4]} {sub[4:]}")


def ph_cn(g):
    if g.p(0.75):
        p = g.ch(["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "157", "158",
                  "159", "166", "176", "177", "180", "182", "183", "185", "186", "187", "188", "189", "191", "198", "199"])
        a, b = g.dig(4), g.dig(4)
        return _f("86", [p, a, b], g.ch([f"{p} {a} {b}", f"{p}-{a}-{b}", f"{p}{a}{b}"]), f"(+86) {p}-{a}-{b}")
    area = g.ch(["10", "21", "20", "755", "28", "571"])
    sub = g.ch("2345678") + g.dig(7)
    return _f("86", [area, sub[:4], sub[4:]], f"0{area}-{sub}", f"(0{area}) {sub[:4]}-{sub[4:]}")


US_NPA = ["201", "202", "206", "212", "213", "214", "215", "303", "305", "312", "313", "347", "404", "408", "415", "425",
          "469", "503", "512", "602", "617", "646", "650", "702", "713", "718", "720", "773", "786", "801", "813", "832",
          "858", "917", "919", "949", "971", "978"]


def ph_us(g):
    npa = g.ch(US_NPA)
    while True:
        nxx = g.ch("23456789") + g.dig(2)
        if nxx[1:] != "11" and nxx != "555":
            break
    line = g.dig(4)
    d = _f("1", [npa, nxx, line], g.ch([f"({npa}) {nxx}-{line}", f"{npa}-{nxx}-{line}", f"1-{npa}-{nxx}-{line}"]),
           f"+1 ({npa}) {nxx}-{line}")
    d["i00"] = f"001 {npa} {nxx} {line}"
    d["dots"] = f"{npa}.{nxx}.{line}"
    return d


def ph_id(g):
    if g.p(0.8):
        p = g.ch(["811", "812", "813", "821", "822", "823", "852", "853", "851", "857", "858", "815", "817", "818", "819",
                  "859", "877", "878", "895", "896", "897", "898", "881", "882", "838", "831", "832"])
        a, b = g.dig(4), g.dig(g.ch([3, 4, 4]))
        return _f("62", [p, a, b], f"0{p}-{a}-{b}", f"(0{p}) {a}-{b}")
    sub = g.ch("2345678") + g.dig(7)
    return _f("62", ["21", sub[:4], sub[4:]], f"(021) {sub[:4]}-{sub[4:]}", f"(021) {sub[:4]} {sub[4:]}")


def ph_pk(g):
    if g.p(0.8):
        p = g.ch(["300", "301", "302", "303", "304", "305", "306", "307", "308", "309", "311", "312", "313", "314", "315",
                  "320", "321", "322", "323", "331", "332", "333", "334", "335", "336", "340", "341", "342", "343", "345",
                  "346", "347"])
        s = g.dig(7)
        return _f("92", [p, s], g.ch([f"0{p}-{s}", f"0{p} {s}", f"0{p}{s}"]), f"(0{p}) {s}")
    area = g.ch(["21", "42", "51"])
    sub = g.ch("3456") + g.dig(7)
    return _f("92", [area, sub[:4], sub[4:]], f"0{area}-{sub}", f"(0{area}) {sub[:4]} {sub[4:]}")


def ph_ng(g):
    p = g.ch(["803", "806", "703", "706", "813", "816", "810", "814", "903", "906", "805", "807", "705", "815", "811",
              "905", "802", "808", "708", "812", "701", "902", "901", "907", "809", "817", "818", "909", "908"])
    a, b = g.dig(3), g.dig(4)
    return _f("234", [p, a, b], g.ch([f"0{p} {a} {b}", f"0{p}{a}{b}", f"0{p}-{a}-{b}"]), f"(+234) {p} {a} {b}")


def ph_br(g):
    area = g.ch(["11", "12", "13", "19", "21", "22", "24", "27", "31", "41", "43", "47", "48", "51", "61", "62", "71",
                 "81", "85", "91", "92", "98"])
    if g.p(0.75):
        a, b = "9" + g.ch("6789") + g.dig(3), g.dig(4)
    else:
        a, b = g.ch("2345") + g.dig(3), g.dig(4)
    d = _f("55", [area, a, b], f"({area}) {a}-{b}", f"+55 ({area}) {a}-{b}")
    d["intl"] = f"+55 {area} {a}-{b}"
    return d


def ph_bd(g):
    p = "1" + g.ch("3456789") + g.dig(2)
    s = g.dig(6)
    return _f("880", [p, s], g.ch([f"0{p}-{s}", f"0{p}{s}", f"0{p} {s}"]), f"(+880) {p} {s}")


def ph_ru(g):
    if g.p(0.75):
        p = g.ch(["903", "905", "906", "909", "910", "912", "915", "916", "917", "919", "920", "921", "925", "926", "977",
                  "985", "999", "951", "962"])
    else:
        p = g.ch(["495", "499", "812", "343", "383"])
    a, b, c = g.ch("2345678") + g.dig(2), g.dig(2), g.dig(2)
    d = _f("7", [p, a, b, c], g.ch([f"8 ({p}) {a}-{b}-{c}", f"8 {p} {a} {b} {c}", f"8{p}{a}{b}{c}"]), f"+7 ({p}) {a}-{b}-{c}")
    d["intl"] = g.ch([f"+7 {p} {a}-{b}-{c}", f"+7 {p} {a} {b} {c}"])
    return d


def ph_et(g):
    if g.p(0.8):
        p = g.ch(["91", "92", "93", "94", "96", "97", "98", "99", "70", "71"])
        a, b = g.dig(3), g.dig(4)
        return _f("251", [p, a, b], f"0{p} {a} {b}", f"(+251) {p}{a[0]} {a[1:]}{b[0]} {b[1:]}")
    a, b = g.ch("1256") + g.dig(2), g.dig(4)
    return _f("251", ["11", a, b], f"011 {a} {b}", f"(011) {a} {b}")


def ph_mx(g):
    if g.p(0.6):
        area = g.ch(["55", "33", "81"])
        a, b = g.ch("123456789") + g.dig(3), g.dig(4)
    else:
        area = g.ch(["222", "664", "998", "442", "477", "614", "999"])
        a, b = g.ch("123456789") + g.dig(2), g.dig(4)
    d = _f("52", [area, a, b], f"{area} {a} {b}", f"+52 ({area}) {a}-{b}")
    if g.p(0.2):
        d["intl"] = f"+52 1 {area} {a} {b}"
    return d


def ph_jp(g):
    k = g.ri(0, 3)
    if k <= 1:
        p, a, b = g.ch(["90", "80", "70"]), g.ch("123456789") + g.dig(3), g.dig(4)
    elif k == 2:
        p, a, b = g.ch(["3", "6"]), g.ch("2345679") + g.dig(3), g.dig(4)
    else:
        p, a, b = "50", g.ch("123456789") + g.dig(3), g.dig(4)
    d = _f("81", [p, a, b], f"0{p}-{a}-{b}", f"(0{p}) {a}-{b}")
    d["intl"] = g.ch([f"+81 {p}-{a}-{b}", f"+81 {p} {a} {b}"])
    return d


def ph_ph(g):
    if g.p(0.8):
        p = g.ch(["905", "906", "915", "916", "917", "926", "927", "935", "936", "945", "955", "956", "965", "966", "975",
                  "977", "995", "997", "998", "999", "908", "909", "910", "912", "918", "919", "920", "921", "928", "929",
                  "939", "946", "947", "949", "951", "961", "963"])
        a, b = g.dig(3), g.dig(4)
        return _f("63", [p, a, b], g.ch([f"0{p} {a} {b}", f"0{p}-{a}-{b}", f"0{p}{a}{b}"]), f"(0{p}) {a}-{b}")
    a, b = "8" + g.dig(3), g.dig(4)
    return _f("63", ["2", a, b], f"(02) {a} {b}", f"(02) {a}-{b}")


def ph_eg(g):
    if g.p(0.8):
        p = g.ch(["10", "11", "12", "15"])
        a, b = g.dig(4), g.dig(4)
        return _f("20", [p, a, b], f"0{p} {a} {b}", f"(+20) 1{p[1]}{a[0]} {a[1:]} {b}")
    a, b = g.ch("23") + g.dig(3), g.dig(4)
    return _f("20", ["2", a, b], f"02 {a} {b}", f"(02) {a} {b}")


DE_MOB = {"151": 8, "152": 8, "157": 8, "159": 8, "160": 7, "162": 7, "163": 7, "170": 7, "171": 7, "172": 7, "173": 7,
          "174": 7, "175": 7, "176": 8, "177": 8, "178": 8, "179": 8}


def ph_de(g):
    if g.p(0.7):
        p = g.ch(sorted(DE_MOB))
        s = g.dig(DE_MOB[p])
    else:
        p = g.ch(["30", "89", "40", "69", "221", "211", "711"])
        s = g.ch("2345678") + g.dig(g.ch([6, 7]) if len(p) == 2 else 6)
    d = _f("49", [p, s], g.ch([f"0{p} {s}", f"0{p}/{s}", f"0{p}-{s}"]), f"+49 (0){p} {s}")
    return d


def ph_uk(g):
    if g.p(0.7):
        while True:
            p = "7" + g.ch("45789") + g.dig(2)
            s = g.dig(6)
            if not (p == "7700" and s.startswith("900")):
                break
        return _f("44", [p, s], f"0{p} {s}", f"+44 (0){p} {s}")
    if g.p(0.6):
        while True:
            a, b = g.ch("378") + g.dig(3), g.dig(4)
            if not (a == "7946" and b.startswith("0")):
                break
        return _f("44", ["20", a, b], f"020 {a} {b}", f"+44 (0)20 {a} {b}")
    area = g.ch(["161", "131", "121", "113", "117"])
    while True:
        a, b = g.ch("2345") + g.dig(2), g.dig(4)
        if not (a == "496" and b.startswith("0")):
            break
    return _f("44", [area, a, b], f"0{area} {a} {b}", f"+44 (0){area} {a} {b}")


def ph_fr(g):
    lead = g.ch(["6", "7", "6", "1", "4", "3", "9"])
    while True:
        pairs = [g.dig(2) for _ in range(4)]
        if not (lead == "6" and pairs[0] == "39" and pairs[1] == "98"):
            break
    d = _f("33", [lead] + pairs, f"0{lead} " + " ".join(pairs), f"+33 (0){lead} " + " ".join(pairs))
    d["dots"] = f"0{lead}." + ".".join(pairs)
    return d


COUNTRIES = [("IN", ph_in), ("CN", ph_cn), ("US", ph_us), ("ID", ph_id), ("PK", ph_pk), ("NG", ph_ng), ("BR", ph_br),
             ("BD", ph_bd), ("RU", ph_ru), ("ET", ph_et), ("MX", ph_mx), ("JP", ph_jp), ("PH", ph_ph), ("EG", ph_eg),
             ("DE", ph_de), ("GB", ph_uk), ("FR", ph_fr)]
CITY = {"IN": "Mumbai", "CN": "Shanghai", "US": "New York", "ID": "Jakarta", "PK": "Karachi", "NG": "Lagos",
        "BR": "São Paulo", "BD": "Dhaka", "RU": "Moscow", "ET": "Addis Ababa", "MX": "Ciudad de México",
        "JP": "Tokyo", "PH": "Manila", "EG": "Cairo", "DE": "Berlin", "GB": "London", "FR": "Paris"}
PHONE_STATE = {"split": "tune"}


def phone(g, fmts=None):
    """(number, country, format) with country/format chosen at random."""
    cc, fn = g.ch(COUNTRIES)
    d = fn(g)
    allowed = fmts or (PHONE_FMTS_SHARED + (PHONE_FMTS_HO if PHONE_STATE["split"] == "holdout" else []))
    weights = [3 if f in ("intl", "nat", "e164") else 2 if f in PHONE_FMTS_SHARED else 1 for f in allowed]
    f = g.r.choices(allowed, weights)[0]
    return d[f], cc, f


def phone_row(name, build):
    def fn(g, _build=build, _name=name):
        num, cc, f = phone(g)
        t, s = _build(g, num, cc)
        return t, s, None, f"{_name}:{cc}-{f}"
    return fn


SENT = ["Please call me at {} if the deploy fails.", "You can reach the on-call engineer at {}.",
        "Contact {} for access to the staging cluster.", "Customer asked to be called back on {} after 5pm.",
        "My new number is {} — please update the rota.", "For urgent issues ring {} (24/7).",
        "Delivery driver: {}", "WhatsApp me on {} when you land.", "Emergency contact: {}"]


def _sent(g, num, cc):
    a, b = g.ch(SENT).split("{}")
    return mk(a, S(num), b)


def _json(g, num, cc):
    k = g.ch(["phone", "mobile", "phoneNumber", "contact_phone", "tel"])
    return mk('{"id": ' + str(g.ri(100, 99999)) + ', "name": "' + g.fullname() + '", "' + k + '": "', S(num), '", "country": "' + cc + '"}')


def _csv(g, num, cc):
    sep = g.ch([",", ";"])
    n = g.fullname()
    return mk(f"id{sep}name{sep}phone{sep}city\n{g.ri(1, 5000)}{sep}{n}{sep}", S(num), f"{sep}{CITY[cc]}")


def _vcard(g, num, cc):
    f, l_ = g.first(), g.last()
    return mk(f"BEGIN:VCARD\nVERSION:3.0\nN:{l_};{f};;;\nFN:{f} {l_}\nTEL;TYPE={g.ch(['CELL', 'WORK', 'HOME', 'CELL,VOICE'])}:", S(num), "\nEND:VCARD")


def _sig(g, num, cc):
    role = g.ch(["Senior Engineer", "Account Manager", "Head of Operations", "Site Reliability Engineer", "Sales Director"])
    lab = g.ch(["Mobile", "Tel", "Phone", "M", "Office"])
    return mk(f"Best regards,\n{g.fullname()}\n{role} | {g.ch(['Acme Logistics', 'Globex', 'Initech', 'Northwind'])}\n{lab}: ", S(num))


def _yaml(g, num, cc):
    return mk(f"contact:\n  name: {g.fullname()}\n  {g.ch(['phone', 'mobile', 'phone_number'])}: \"", S(num), '"')


def _log(g, num, cc):
    return mk(f"{g.iso()} INFO notify.sms delivered verification code to ", S(num), f" (provider={g.ch(['twilio', 'vonage', 'sns', 'messagebird'])}, id={g.hx(16)})")


def _form(g, num, cc):
    lab = g.ch(["Phone number", "Mobile", "Telephone", "Contact number", "Cell"])
    return mk(f"Name: {g.fullname()}\n{lab}: ", S(num), f"\nCity: {CITY[cc]}")


def _html_tel(g, num, cc):
    d = re.sub(r"[^\d+]", "", num)
    return mk('<a href="tel:', S(d), '">', S(num), "</a>")


def _sql(g, num, cc):
    return mk(f"INSERT INTO customers (name, phone, city) VALUES ('{g.fullname()}', '", S(num), f"', '{CITY[cc]}');")


def _xml(g, num, cc):
    return mk(f'<contact id="{g.ri(1, 9999)}">\n  <name>{g.fullname()}</name>\n  <phone type="{g.ch(["mobile", "work", "home"])}">', S(num), "</phone>\n</contact>")


def _kv(g, num, cc):
    return mk(f"{g.iso()} level=info msg=\"profile updated\" user_id={g.ri(1000, 999999)} phone_number=\"", S(num), "\" verified=true")


for _n, _b, _ho in [("phone-sentence", _sent, False), ("phone-json", _json, False), ("phone-csv", _csv, False),
                    ("phone-vcard", _vcard, False), ("phone-signature", _sig, False), ("phone-yaml", _yaml, False),
                    ("phone-sms-log", _log, False), ("phone-form", _form, False),
                    ("phone-html-tel", _html_tel, True), ("phone-sql-insert", _sql, True), ("phone-xml", _xml, True),
                    ("phone-logfmt", _kv, True)]:
    T("phone", _n, _ho)(phone_row(_n, _b))


@T("phone", "phone-tel-uri")
def _(g):
    num, cc, f = phone(g, ["e164", "dash"])
    pre = g.ch(["Call us: tel:", "[Call support](tel:", "tel:"])
    return (*mk(pre, S(num.replace(" ", "-")), ")" if pre.startswith("[") else ""), None, f"phone-tel-uri:{cc}-{f}")


@T("phone", "phone-whatsapp-link", ho=True)
def _(g):
    num, cc, f = phone(g, ["e164"])
    return (*mk("Chat with us: https://wa.me/", S(num[1:]), g.ch(["", "?text=Hi"])), None, f"phone-whatsapp-link:{cc}-e164")


# ===========================================================================
# e-mail addresses (real-looking, non-reserved domains)
# ===========================================================================

PROVIDERS = ["gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "yahoo.com", "yahoo.co.in", "icloud.com",
             "proton.me", "protonmail.com", "gmx.de", "web.de", "mail.ru", "yandex.ru", "qq.com", "163.com",
             "naver.com", "orange.fr", "free.fr", "libero.it", "rediffmail.com", "uol.com.br", "bol.com.br",
             "yahoo.co.jp", "hotmail.co.uk", "live.com", "aol.com", "zoho.com", "fastmail.com"]
COMPANY = ["acme-logistics.com", "northwind-traders.io", "globex-systems.com", "initech.cloud", "bluefin-analytics.de",
           "sunrise-bank.co.uk", "tanaka-shoji.co.jp", "lagos-fintech.ng", "karachi-textiles.pk", "dhaka-apparel.com.bd",
           "nilecargo.com.eg", "manila-bpo.ph", "andes-mining.mx", "saopaulo-varejo.com.br", "moskva-soft.ru",
           "addis-coffee.et", "umbrella-labs.org", "piedpiper.tech"]


def email(g):
    f, l_ = g.first().lower(), g.last().lower()
    dom = g.ch(PROVIDERS) if g.p(0.6) else g.ch(COMPANY)
    local = g.ch([f"{f}.{l_}", f"{f[0]}{l_}", f"{f}{l_}{g.ri(1, 99)}", f"{f}_{l_}", f"{f}.{l_}+{g.ch(['github', 'news', 'jobs'])}",
                  f"{l_}.{f}", f"{f}{g.ri(1970, 2005)}"])
    return f"{local}@{dom}"


def noreply(g):
    return f"{g.ri(100000, 99999999)}+{g.first().lower()}{g.ch(['', '-dev', g.last().lower(), str(g.ri(1, 99))])}@users.noreply.github.com"


@T("email", "email-from-header")
def _(g):
    return mk(f"From: {g.fullname()} <", S(email(g)), f">\nDate: Mon, {g.ri(1, 28)} Nov 2026 {g.time()} +0000\nSubject: Re: {g.ch(['invoice', 'outage report', 'access request', 'Q4 numbers'])}")


@T("email", "email-json")
def _(g):
    return mk('{"user_id": ' + str(g.ri(1, 999999)) + ', "email": "', S(email(g)), '", "verified": ' + g.ch(["true", "false"]) + "}")


@T("email", "email-csv")
def _(g):
    return mk(f"name,email,signup_date\n{g.fullname()},", S(email(g)), f",{g.date()}")


@T("email", "email-git-config")
def _(g):
    q = g.ch(['"', ''])
    return mk("git config --global user.email ", q, S(email(g) if g.p(0.7) else noreply(g)), q)


@T("email", "email-signed-off-by")
def _(g):
    return mk(f"{g.ch(['fix', 'feat', 'chore'])}: {g.ch(['handle empty config', 'bump deps', 'retry on 503'])}\n\nSigned-off-by: {g.fullname()} <", S(email(g)), ">")


@T("email", "email-mailto-md")
def _(g):
    e = email(g)
    return mk("Questions? Write to [", S(e), "](mailto:", S(e), ").")


@T("email", "email-reset-log")
def _(g):
    return mk(f"{g.iso()} INFO auth.reset password reset link sent to ", S(email(g)), f" request_id={g.uuid()}")


@T("email", "email-git-log-author")
def _(g):
    return mk(f"commit {g.hx(40)}\nAuthor: {g.fullname()} <", S(noreply(g) if g.p(0.5) else email(g)), f">\nDate:   {g.date()} {g.time()} +0100")


@T("email", "email-ldif", ho=True)
def _(g):
    f, l_ = g.first(), g.last()
    return mk(f"dn: uid={f.lower()},ou=people,dc=corp,dc=local\ncn: {f} {l_}\nmail: ", S(email(g)), "\nobjectClass: inetOrgPerson")


@T("email", "email-to-multiple", ho=True)
def _(g):
    return mk("To: ", S(email(g)), ", ", S(email(g)), f"\nSubject: {g.ch(['Meeting notes', 'Payroll update', 'Your order'])}")


@T("email", "email-html-mailto", ho=True)
def _(g):
    e = email(g)
    return mk('<p>Contact: <a href="mailto:', S(e), '">', g.fullname(), "</a></p>")


@T("email", "email-sql-insert", ho=True)
def _(g):
    return mk(f"INSERT INTO users (id, name, email) VALUES ({g.ri(1, 99999)}, '{g.fullname()}', '", S(email(g)), "');")


# ===========================================================================
# credit cards (Luhn-valid)
# ===========================================================================

CARD_BRANDS = [("visa", lambda g: "4" + g.dig(5), 16), ("mc", lambda g: g.ch(["51", "52", "53", "54", "55"]) + g.dig(4), 16),
               ("mc2", lambda g: str(g.ri(2221, 2720)) + g.dig(2), 16), ("amex", lambda g: g.ch(["34", "37"]) + g.dig(4), 15),
               ("discover", lambda g: "6011" + g.dig(2), 16), ("jcb", lambda g: str(g.ri(3528, 3589)) + g.dig(2), 16),
               ("diners", lambda g: "36" + g.dig(4), 14), ("unionpay", lambda g: "62" + g.dig(4), 16)]
KNOWN_TEST_CARDS = {"4111111111111111", "4242424242424242", "5555555555554444", "378282246310005", "4012888888881881",
                    "5105105105105100", "6011111111111117", "3530111333300000"}


def card_digits(g, valid=True):
    while True:
        brand, pre, n = g.ch(CARD_BRANDS)
        body = pre(g)
        body += g.dig(n - 1 - len(body))
        d = luhn_complete(body)
        if not valid:
            d = d[:-1] + str((int(d[-1]) + g.ri(1, 9)) % 10)
        if d not in KNOWN_TEST_CARDS:
            return d, brand


def card_fmt(g, d, dash=False):
    sep = "-" if dash else " "
    if g.p(0.4) and not dash:
        return d
    if len(d) == 15:
        return sep.join([d[:4], d[4:10], d[10:]])
    if len(d) == 14:
        return sep.join([d[:4], d[4:10], d[10:]])
    return sep.join(d[i:i + 4] for i in range(0, len(d), 4))


@T("credit-card", "card-json")
def _(g):
    d, b = card_digits(g)
    return mk('{"card_number": "', S(card_fmt(g, d)), '", "exp_month": ' + str(g.ri(1, 12)) + ', "exp_year": ' + str(g.ri(2026, 2031)) + "}")


@T("credit-card", "card-exp-line")
def _(g):
    d, b = card_digits(g)
    return mk(f"{g.ch(['Card', 'Card no.', 'CC', 'Credit card'])}: ", S(card_fmt(g, d)), f"  exp {g.ri(1, 12):02d}/{g.ri(26, 31)}  name {g.fullname().upper()}")


@T("credit-card", "card-csv")
def _(g):
    d, b = card_digits(g)
    return mk(f"txn_id,card,amount,currency\n{g.ri(10000, 999999)},", S(d), f",{g.ri(1, 999)}.{g.dig(2)},{g.ch(['USD', 'EUR', 'INR', 'BRL'])}")


@T("credit-card", "card-log")
def _(g):
    d, b = card_digits(g)
    return mk(f"{g.iso()} WARN payments.gateway declined charge card=", S(d), f" amount={g.ri(1, 500)}.{g.dig(2)} reason=insufficient_funds")


@T("credit-card", "card-form")
def _(g):
    d, b = card_digits(g)
    return mk(f"Cardholder: {g.fullname()}\nCard number: ", S(card_fmt(g, d)), f"\nExpiry: {g.ri(1, 12):02d}/{g.ri(26, 31)}")


@T("credit-card", "card-xml-pan", ho=True)
def _(g):
    d, b = card_digits(g)
    return mk("<Payment>\n  <PAN>", S(d), f"</PAN>\n  <Expiry>{g.ri(26, 31)}{g.ri(1, 12):02d}</Expiry>\n</Payment>")


@T("credit-card", "card-sentence-dashed", ho=True)
def _(g):
    d, b = card_digits(g)
    return mk("hi, my card number is ", S(card_fmt(g, d, dash=True)), " can you check why it was charged twice?")


@T("credit-card", "card-querystring", ho=True)
def _(g):
    d, b = card_digits(g)
    return mk(f"GET /checkout/confirm?order={g.ri(10000, 99999)}&cc=", S(d), f"&cvv_ok=1 HTTP/1.1\" 302 0")


# ===========================================================================
# IBANs (mod-97 valid)
# ===========================================================================


def iban(g, countries=None, valid=True):
    cc = g.ch(countries or sorted(IBAN_SPEC))
    length, pat = IBAN_SPEC[cc]
    bban = ""
    for num, kind in re.findall(r"(\d+)([an])", pat):
        num = int(num)
        if kind == "a":
            bban += g.ch(IBAN_BANKS[cc]) if cc in IBAN_BANKS and num == 4 else g.an(num, string.ascii_uppercase)
        else:
            bban += g.dig(num)
    if cc == "BE":
        bban = bban[:10] + f"{(int(bban[:10]) % 97) or 97:02d}"
    if cc == "TR":
        bban = bban[:5] + "0" + bban[6:]
    chk = 98 - iban_num(bban + cc + "00") % 97
    s = f"{cc}{chk:02d}{bban}"
    assert len(s) == length and iban_ok(s)
    if not valid:
        while iban_ok(s):
            i = g.ri(4, len(s) - 1)
            if s[i].isdigit():
                s = s[:i] + str((int(s[i]) + g.ri(1, 9)) % 10) + s[i + 1:]
    return s


def iban_fmt(g, s):
    if g.p(0.5):
        return s
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


@T("iban", "iban-label")
def _(g):
    s = iban(g)
    return mk(g.ch(["IBAN", "Account (IBAN)", "Beneficiary IBAN"]) + ": ", S(iban_fmt(g, s)), f"\nBIC: {g.an(4, string.ascii_uppercase)}{s[:2]}{g.an(2, string.ascii_uppercase + DIG)}")


@T("iban", "iban-json")
def _(g):
    return mk('{"beneficiary": "' + g.fullname() + '", "iban": "', S(iban(g)), '", "amount": "' + f"{g.ri(10, 9999)}.{g.dig(2)}" + '"}')


@T("iban", "iban-csv")
def _(g):
    return mk(f"name;iban;amount\n{g.fullname()};", S(iban(g)), f";{g.ri(10, 9999)},{g.dig(2)}")


@T("iban", "iban-sepa-xml")
def _(g):
    return mk(f"<CdtrAcct>\n  <Id>\n    <IBAN>", S(iban(g)), "</IBAN>\n  </Id>\n</CdtrAcct>")


@T("iban", "iban-invoice-sentence")
def _(g):
    return mk(f"Please transfer the amount of EUR {g.ri(50, 5000)}.{g.dig(2)} to IBAN ", S(iban_fmt(g, iban(g))), f" quoting invoice {g.ri(2025, 2026)}-{g.dig(5)}.")


@T("iban", "iban-yaml-payout", ho=True)
def _(g):
    return mk(f"payout:\n  holder: {g.fullname()}\n  iban: ", S(iban(g)), f"\n  schedule: {g.ch(['weekly', 'monthly'])}")


@T("iban", "iban-german-text", ho=True)
def _(g):
    return mk(f"Bitte überweisen Sie den Betrag bis zum {g.ri(1, 28)}.{g.ri(1, 12)}. auf folgendes Konto: ", S(iban_fmt(g, iban(g, ["DE", "AT", "CH"]))), " (Verwendungszweck: Mitgliedsbeitrag)")


@T("iban", "iban-french-text", ho=True)
def _(g):
    return mk("Coordonnées bancaires — IBAN : ", S(iban_fmt(g, iban(g, ["FR", "BE", "LU"]))), " — merci d'indiquer votre numéro de client.")


@T("iban", "iban-mt940", ho=True)
def _(g):
    return mk(f":20:STMT{g.dig(8)}\n:25:", S(iban(g)), f"\n:28C:{g.ri(1, 365):05d}/1\n:60F:C{g.date('')[2:]}EUR{g.ri(100, 99999)},{g.dig(2)}")


# ===========================================================================
# US SSNs (valid ranges)
# ===========================================================================


def ssn(g):
    while True:
        a = g.ri(1, 899)
        if a == 666:
            continue
        s = f"{a:03d}-{g.ri(1, 99):02d}-{g.ri(1, 9999):04d}"
        if s not in ("078-05-1120", "219-09-9999", "123-45-6789"):
            return s


@T("us-ssn", "ssn-label")
def _(g):
    return mk(f"{g.ch(['SSN', 'SSN:', 'Soc. Sec. #', 'Social Security No.'])}".rstrip(":") + ": ", S(ssn(g)))


@T("us-ssn", "ssn-json")
def _(g):
    return mk('{"employee_id": ' + str(g.ri(1000, 99999)) + ', "name": "' + g.fullname() + '", "ssn": "', S(ssn(g)), '", "state": "' + g.ch(["CA", "NY", "TX", "WA", "IL"]) + '"}')


@T("us-ssn", "ssn-csv")
def _(g):
    return mk(f"last_name,first_name,dob,ssn\n{g.last()},{g.first()},{g.ri(1950, 2004)}-{g.ri(1, 12):02d}-{g.ri(1, 28):02d},", S(ssn(g)))


@T("us-ssn", "ssn-form")
def _(g):
    return mk(f"Applicant: {g.fullname()}\nSocial Security Number: ", S(ssn(g)), f"\nDate of birth: {g.ri(1, 12):02d}/{g.ri(1, 28):02d}/{g.ri(1950, 2004)}")


@T("us-ssn", "ssn-w2-box", ho=True)
def _(g):
    return mk("a  Employee's social security number\n   ", S(ssn(g)), f"\nb  Employer identification number (EIN)\n   {g.dig(2)}-{g.dig(7)}")


@T("us-ssn", "ssn-xml", ho=True)
def _(g):
    return mk(f"<Taxpayer>\n  <Name>{g.fullname()}</Name>\n  <SSN>", S(ssn(g)), "</SSN>\n</Taxpayer>")


@T("us-ssn", "ssn-sentence", ho=True)
def _(g):
    return mk(f"{g.ch(['Hi,', 'Hello,', 'Per our call,'])} my social is ", S(ssn(g)), " and I still can't log in to the benefits portal.")


# ===========================================================================
# negatives around passwords
# ===========================================================================

def pwkey(g):
    return g.ch(["password", "db_password", "passwd", "admin_password", "smtp_password", "pass", "redis_password"])


def kv_forms(g, key, val, quoted=True):
    """key/value in a random syntax; val is inserted verbatim."""
    k = g.ri(0, 5)
    if k == 0:
        return f"{key}: {val}"
    if k == 1:
        return f'"{key}": "{val}"' if quoted else f'"{key}": {val}'
    if k == 2:
        return f"{key.upper()}={val}"
    if k == 3:
        return f"{key} = {val}"
    if k == 4:
        return f"<{key}>{val}</{key}>"
    return f"  {key}: '{val}'" if quoted else f"  {key}: {val}"


MASKS = ["********", "*****", "<redacted>", "[REDACTED]", "[FILTERED]", "xxxxxxxx", "••••••••", "<hidden>", "(hidden)",
         "***REDACTED***", "[MASKED]", "****", "<masked>", "[secure]", "*** (masked)"]


@T("neg-password", "masked-value")
def _(g):
    return kv_forms(g, pwkey(g), g.ch(MASKS)), []


@T("neg-password", "env-reference")
def _(g):
    v = g.ch(PW_ENV_NAMES)
    ref = g.ch([f"${{{v}}}", f"${{{v}:?{v} is required}}", f"${{{v}:-}}", f"${v}", f"${{env:{v}}}", f"%{v}%", f"$env:{v}"])
    k = g.ri(0, 3)
    if k == 0:
        return kv_forms(g, pwkey(g), ref), []
    if k == 1:
        expr = g.ch(['os.environ["%s"]', 'os.getenv("%s")', 'process.env.%s', 'System.getenv("%s")', 'os.Getenv("%s")', 'ENV.fetch("%s")']) % v
        return g.ch(["password", "dbPassword", "db_pass"]) + " = " + expr, []
    if k == 2:
        return f"mysql -u root -p\"${v}\" -h {g.host('mysql')} {g.dbname()}", []
    return f"PGPASSWORD=\"${v}\" psql -h {g.host('pg')} -U {g.user()} {g.dbname()}", []


@T("neg-password", "helm-template")
def _(g):
    return g.ch([f"password: {{{{ .Values.{g.ch(['db', 'auth', 'redis', 'postgresql'])}.password | quote }}}}",
                 "  password: {{ .Values.password }}",
                 f"POSTGRES_PASSWORD: {{{{ required \"set .Values.auth.password\" .Values.auth.password | b64enc }}}}",
                 "password: {{ secrets.db_password }}",
                 "admin_password: \"{{ admin_password }}\"",
                 f"  password: {{{{ include \"{g.word()}.password\" . }}}}",
                 "{{- $password := .Values.auth.password | default (randAlphaNum 24) }}"]), []


@T("neg-password", "python-format-placeholder")
def _(g):
    return g.ch(['DSN = "postgresql://%(user)s:%(password)s@%(host)s:%(port)s/%(dbname)s"',
                 "conn_str = 'host={host} user={user} password={password}'.format(**cfg)",
                 'url = f"mysql://{user}:{password}@{host}/{db}"',
                 "cursor.execute(\"UPDATE users SET password = %s WHERE id = %s\", (pw_hash, uid))",
                 "password=%(password)s",
                 "logger.info(\"login ok for %s\", username)",
                 "const uri = `mongodb://${user}:${password}@${host}/${db}`;"]), []


@T("neg-password", "command-substitution")
def _(g):
    v = g.ch(PW_ENV_NAMES)
    return g.ch([f"{v}=$(cat /run/secrets/{g.ch(['db_password', 'db', 'postgres_pw', 'smtp'])})",
                 f"export PGPASSWORD=\"$(vault kv get -field=password secret/{g.word()}/db)\"",
                 f"{v}=$(pass show prod/{g.word()}/db)",
                 f"{v}=\"$(< /run/secrets/{g.word()})\"",
                 f"export {v}=$(aws secretsmanager get-secret-value --secret-id prod/db --query SecretString --output text)",
                 f"{v}=`op read op://Private/{g.word()}/password`"]), []


@T("neg-password", "ansible-vault-blob")
def _(g):
    n = g.ri(3, 6)
    body = "\n".join("          " + g.hx(80) for _ in range(n - 1)) + "\n          " + g.hx(g.ri(10, 80))
    return f"{pwkey(g)}: !vault |\n          $ANSIBLE_VAULT;1.1;AES256\n{body}", []


def bcrypt(g):
    return f"$2{g.ch(['a', 'b', 'y'])}${g.ch(['10', '12', '12', '14'])}${g.an(53, CRYPT64)}"


def argon2(g):
    return f"$argon2id$v=19$m={g.ch(['65536', '19456', '47104'])},t={g.ri(2, 4)},p={g.ri(1, 4)}${g.b64(16).rstrip('=')}${g.b64(32).rstrip('=')}"


def sha512crypt(g):
    return f"$6${g.an(16, CRYPT64[2:])}${g.an(86, CRYPT64)}"


@T("neg-password", "password-hash-field")
def _(g):
    h = g.ch([bcrypt, argon2, sha512crypt])(g)
    k = g.ri(0, 3)
    if k == 0:
        return f"{g.ch(['password_hash', 'hashed_password', 'passwordHash', 'pw_hash'])}: {h}", []
    if k == 1:
        return json.dumps({"id": g.ri(1, 9999), "username": g.first().lower(), "password_hash": h}), []
    if k == 2:
        return f"INSERT INTO users (username, password_digest) VALUES ('{g.first().lower()}', '{h}');", []
    return f"{g.ch(['encrypted_password', 'hashed_password'])} = \"{h}\"", []


@T("neg-password", "null-or-empty")
def _(g):
    return g.ch([f"{pwkey(g)}: null", f"{pwkey(g)}: \"\"", f"{pwkey(g)}: ~", f'"{pwkey(g)}": null', f"{g.ch(PW_ENV_NAMES)}=",
                 f"{pwkey(g)} =", "<password/>", f"{pwkey(g)}: ''", f"{pwkey(g)}:", f'"password": ""']), []


@T("neg-password", "password-policy-setting")
def _(g):
    return g.ch([f"password_min_length: {g.ri(8, 16)}", f"PASSWORD_MAX_AGE={g.ri(30, 365)}", f"minPasswordLength: {g.ri(8, 14)}",
                 f"password_expiry_days = {g.ri(30, 180)}", f"password_history: {g.ri(3, 24)}",
                 "password_complexity: high", f"PASSWORD_HASHERS_ROUNDS={g.ri(10, 14)}", f"passwordResetTokenTTL: {g.ri(15, 120)}m",
                 f"AUTH_PASSWORD_VALIDATORS_MIN={g.ri(8, 12)}", f"max_password_attempts: {g.ri(3, 10)}",
                 f"pin_length: {g.ri(4, 8)}", f"otp:\n  digits: 6\n  period: 30\n  retry_after: {g.ri(30, 900)}"]), []


@T("neg-password", "password-stdin")
def _(g):
    return g.ch([f"cat ~/.docker/{g.word()}.token | docker login --username ci --password-stdin ghcr.io",
                 f"docker login -u {g.ch(['ci', 'deploy'])} --password-stdin registry.{g.org()} < /run/secrets/registry",
                 f"aws ecr get-login-password --region {g.ch(['eu-west-1', 'us-east-1', 'ap-south-1'])} | docker login --username AWS --password-stdin {g.dig(12)}.dkr.ecr.eu-west-1.amazonaws.com",
                 f"echo \"$REGISTRY_PASSWORD\" | helm registry login {g.host('harbor')} --username robot --password-stdin",
                 "printf '%s' \"$CI_JOB_TOKEN\" | docker login -u gitlab-ci-token --password-stdin $CI_REGISTRY"]), []


@T("neg-password", "empty-prompt")
def _(g):
    u = g.first().lower()
    return g.ch(["Password:", "Enter password:", f"[sudo] password for {u}:", "Enter PEM pass phrase:",
                 f"{u}@{g.ch(['bastion', 'web-01', 'build-07'])}'s password:",
                 f"Enter passphrase for key '/home/{u}/.ssh/id_ed25519':", f"Password for 'https://{u}@{g.host('git')}':",
                 "Verifying - Enter PEM pass phrase:", "New password:\nRetype new password:", "Enter host password for user 'admin':"]), []


@T("neg-password", "password-prose")
def _(g):
    return g.ch([f"If you forgot your password, reset it at https://accounts.{g.org()}/reset.",
                 "Passwords must contain at least 12 characters, one number and one symbol.",
                 "The password field cannot be empty.", f"Your password expires in {g.ri(2, 14)} days.",
                 "Never share your password with anyone, including IT staff.",
                 "Use a password manager to generate a unique password for every site.",
                 "error: password authentication is disabled for this account; use an SSH key",
                 "Tip: run `passwd` to change your password after the first login.",
                 "The admin password is stored in the team vault under 'prod/db'."]), []


@T("neg-password", "password-file-path")
def _(g):
    return g.ch([f"PASSWORD_FILE=/run/secrets/{g.word()}", f"POSTGRES_PASSWORD_FILE=/run/secrets/{g.ch(['pg', 'postgres_password'])}",
                 f"password_file: /etc/{g.word()}/db.pass", f"ansible-playbook site.yml --vault-password-file ~/.vault_pass",
                 "vault_password_file = ~/.ansible/vault.txt", f"MYSQL_ROOT_PASSWORD_FILE=/run/secrets/mysql_root",
                 f"--password-file={g.ch(['/etc/rsync.pass', '~/.rsync_pw'])}"]), []


@T("neg-password", "require-password-flag")
def _(g):
    return g.ch(["require_password: true", "PasswordAuthentication no", "auth_password_required = yes",
                 "allow_empty_password: false", "password_login_enabled: false", "passwordless_sudo: true",
                 "PermitEmptyPasswords no", "ChallengeResponseAuthentication no", "MYSQL_ALLOW_EMPTY_PASSWORD=no",
                 "POSTGRES_HOST_AUTH_METHOD=scram-sha-256"]), []


@T("neg-password", "passwd-command")
def _(g):
    u = g.first().lower()
    return g.ch([f"sudo passwd {u}", f"passwd -l {g.user()}", f"$ passwd -S root\nroot P {g.date()} 0 99999 7 -1",
                 "passwd: password updated successfully", f"chage -M 90 {u}", f"usermod -L {u}",
                 f"sudo passwd -e {u}\npasswd: password expiry information changed."]), []


SYS_USERS = [("root", 0, "/root", "/bin/bash"), ("daemon", 1, "/usr/sbin", "/usr/sbin/nologin"),
             ("bin", 2, "/bin", "/usr/sbin/nologin"), ("sys", 3, "/dev", "/usr/sbin/nologin"),
             ("www-data", 33, "/var/www", "/usr/sbin/nologin"), ("nobody", 65534, "/nonexistent", "/usr/sbin/nologin"),
             ("sshd", 110, "/run/sshd", "/usr/sbin/nologin"), ("postgres", 114, "/var/lib/postgresql", "/bin/bash"),
             ("systemd-network", 100, "/run/systemd", "/usr/sbin/nologin"), ("mysql", 116, "/nonexistent", "/bin/false")]


@T("neg-password", "etc-passwd-lines")
def _(g):
    rows = g.r.sample(SYS_USERS, g.ri(2, 5))
    out = [f"{n}:x:{u}:{u}:{n}:{h}:{s}" for n, u, h, s in rows]
    if g.p(0.5):
        f = g.first().lower()
        uid = g.ri(1000, 1010)
        out.append(f"{f}:x:{uid}:{uid}:{f.capitalize()},,,:/home/{f}:/bin/bash")
    return "\n".join(out), []


@T("neg-password", "etc-shadow-locked")
def _(g):
    rows = g.r.sample(SYS_USERS, g.ri(2, 5))
    return "\n".join(f"{n}:{g.ch(['*', '!', '!!', '!*'])}:{g.ri(19000, 20400)}:0:99999:7:::" for n, *_ in rows), []


@T("neg-password", "test-pass-count")
def _(g):
    p, f, s = g.ri(10, 900), g.ri(0, 5), g.ri(0, 20)
    return g.ch([f"summary:\n  pass: {p}\n  fail: {f}\n  skip: {s}", f"pass: {p}/{p + f}", f"PASS: {p} FAIL: {f} SKIP: {s}",
                 f"results:\n  - suite: {g.word()}\n    pass: {p}\n    fail: {f}"]), []


@T("neg-password", "secret-key-ref")
def _(g):
    return g.ch([f"env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n        name: {g.word()}-db\n        key: password",
                 f"secret_key_ref {{\n  name = \"{g.word()}-credentials\"\n  key  = \"password\"\n}}",
                 f"secrets:\n  - db_password\n  - {g.word()}_api_key",
                 f"- name: REDIS_PASSWORD\n  valueFrom:\n    secretKeyRef: {{name: redis, key: redis-password}}",
                 f"envFrom:\n  - secretRef:\n      name: {g.word()}-env"]), []


@T("neg-password", "auth-failed-log")
def _(g):
    u = g.ch([g.user(), g.first().lower(), "admin", "root"])
    return g.ch([f"{g.date()} {g.time()}.{g.dig(3)} UTC [{g.ri(100, 99999)}] FATAL:  password authentication failed for user \"{u}\"",
                 f"ERROR 1045 (28000): Access denied for user '{u}'@'localhost' (using password: YES)",
                 f"{g.ch(['Nov', 'Oct', 'Dec'])} {g.ri(1, 28)} {g.time()} bastion sshd[{g.ri(1000, 60000)}]: Failed password for invalid user {u} from scanner.badhost.example port {g.ri(30000, 65000)} ssh2",
                 f"WARN  [auth] authentication failed for user {u}: invalid credentials (attempt {g.ri(1, 5)}/5)",
                 f"(error) WRONGPASS invalid username-password pair or user is disabled."]), []


@T("neg-password", "url-user-without-password")
def _(g):
    u = g.ch(["alice", "deploy", "ci", "jdoe"])
    return g.ch([f"git clone https://{u}@{g.host('git')}/{g.word()}/{g.word()}.git",
                 f"ssh://git@{g.host('gitlab')}:2222/{g.word()}/{g.word()}.git",
                 f"DATABASE_URL=postgres://{g.user()}@{g.host('db')}:5432/{g.dbname()}",
                 f"REDIS_URL=redis://{g.host('cache')}:6379/0",
                 f"mongodb://mongo-0.{g.ch(INTDOMAINS)},mongo-1.{g.ch(INTDOMAINS)}/{g.dbname()}?replicaSet=rs0",
                 f"postgresql:///{g.dbname()}?host=/var/run/postgresql"]), []


@T("neg-password", "git-ssh-remote")
def _(g):
    org, repo = g.word(), g.word() + g.ch(["", "-api", "-infra", ".github.io"])
    h = g.ch(["github.com", "gitlab.com", "bitbucket.org"])
    return g.ch([f"git clone git@{h}:{org}/{repo}.git",
                 f"origin\tgit@{h}:{org}/{repo}.git (fetch)\norigin\tgit@{h}:{org}/{repo}.git (push)",
                 f"[remote \"origin\"]\n\turl = git@{h}:{org}/{repo}.git"]), []


@T("neg-password", "interactive-p-prompt")
def _(g):
    return g.ch([f"$ mysql -u root -p -h {g.host('mysql')}\nEnter password:",
                 f"$ psql -U {g.user()} -W -h {g.host('pg')} {g.dbname()}\nPassword for user {g.user()}:",
                 f"$ mongosh --host {g.host('mongo')} -u admin -p\nEnter password:",
                 f"$ redis-cli --askpass -h {g.host('cache')}\nPlease input password:",
                 f"$ curl -u {g.first().lower()} https://{g.host('api')}/v1/me\nEnter host password for user '{g.first().lower()}':"]), []


@T("neg-password", "openssl-pass-reference")
def _(g):
    return g.ch(["openssl pkcs12 -export -in tls.crt -inkey tls.key -out bundle.p12 -passout env:P12_PASSWORD",
                 "openssl rsa -in server.key -passin file:/run/secrets/keypass -out server.pem",
                 "openssl enc -aes-256-cbc -pbkdf2 -in db.sql -out db.sql.enc -pass stdin",
                 "openssl genrsa -aes256 -passout fd:3 -out ca.key 4096",
                 "keytool -list -keystore app.jks -storepass:env KEYSTORE_PASSWORD",
                 "keytool -importcert -file ca.crt -keystore trust.jks -storepass:file /run/secrets/storepass"]), []


@T("neg-password", "tool-reads-password-elsewhere")
def _(g):
    return g.ch([f"sshpass -e ssh deploy@web-{g.ri(1, 20):02d} 'uptime'", f"sshpass -f ~/.ssh/{g.word()}.pass scp build.tgz ci@runner-{g.ri(1, 9)}:/tmp/",
                 f"curl --netrc-file ~/.netrc https://{g.host('api')}/export.csv", "curl -u \"$API_USER:$API_PASS\" https://api.internal/health",
                 "ssh-keygen -t ed25519 -N \"\" -f ~/.ssh/id_ed25519 -C ci", "zip -e secrets.zip notes.txt",
                 "htpasswd -B /etc/nginx/.htpasswd alice", f"mysql --login-path={g.ch(['prod', 'local', 'backup'])} {g.dbname()}",
                 f"PGPASSFILE=/home/{g.first().lower()}/.pgpass psql -h {g.host('pg')} {g.dbname()}"]), []


# --- holdout-only password negatives ------------------------------------------

@T("neg-password", "jinja-vault-variable", ho=True)
def _(g):
    return g.ch([f"ansible_become_password: \"{{{{ vault_become_pass }}}}\"",
                 "password: \"{{ lookup('env', 'DB_PASSWORD') }}\"",
                 f"{pwkey(g)}: \"{{{{ lookup('community.hashi_vault.hashi_vault', 'secret=secret/data/{g.word()}:password') }}}}\"",
                 "mysql_root_password: \"{{ vault_mysql_root_password | default(omit) }}\""]), []


@T("neg-password", "cloudformation-ref", ho=True)
def _(g):
    return g.ch(["MasterUserPassword: !Ref DBPassword",
                 '"MasterUserPassword": {"Fn::Sub": "{{resolve:secretsmanager:${DbSecret}:SecretString:password}}"}',
                 "Password: '{{resolve:ssm-secure:/prod/db/password:1}}'",
                 'DBPassword:\n  Type: String\n  NoEcho: true\n  MinLength: 12']), []


@T("neg-password", "terraform-var-reference", ho=True)
def _(g):
    return g.ch(["  password = var.db_password", f"  password = random_password.{g.word()}.result",
                 "  password = data.aws_secretsmanager_secret_version.db.secret_string",
                 'variable "db_password" {\n  type      = string\n  sensitive = true\n}',
                 '  master_password = jsondecode(data.vault_generic_secret.db.data_json)["password"]']), []


@T("neg-password", "ci-mask-and-secret-ref", ho=True)
def _(g):
    v = g.ch(PW_ENV_NAMES)
    return g.ch([f'echo "::add-mask::${v}"', f"      {v}: ${{{{ secrets.{v} }}}}",
                 f"  variables:\n    {v}: $CI_{v}", f"- export {v}=$(buildkite-agent secret get {v.lower()})"]), []


@T("neg-password", "stored-hash-formats", ho=True)
def _(g):
    u = g.first().lower()
    return g.ch([f"{u}:$apr1${g.an(8, CRYPT64[2:])}${g.an(22, CRYPT64)}",
                 f"{u}:{{SHA}}{g.b64(20)}",
                 f"pbkdf2_sha256$600000${g.an(22)}${g.b64(32)}",
                 f"userPassword: {{SSHA}}{g.b64(24)}",
                 f"| {u} | localhost | *{g.hx(40).upper()} |",
                 f"{u}:{sha512crypt(g)}:{g.ri(19000, 20400)}:0:99999:7:::"]), []


@T("neg-password", "angle-placeholder", ho=True)
def _(g):
    return g.ch([f"{pwkey(g)}: <YOUR_PASSWORD>", "DB_PASSWORD=__DB_PASSWORD__", f"\"password\": \"<db-password>\"",
                 "SMTP_PASS=@@SMTP_PASS@@", f"{pwkey(g)} = REPLACE_ME_WITH_REAL_PASSWORD", "ADMIN_PASSWORD=#{AdminPassword}#",
                 "password: [insert password here]"]), []


# ===========================================================================
# negatives around phone numbers: numbers that are not phone numbers
# ===========================================================================


@T("neg-phone", "version-strings")
def _(g):
    a, b, c, d = g.ri(1, 20), g.ri(0, 40), g.ri(0, 300), g.ri(0, 9999)
    return g.ch([f"[assembly: AssemblyVersion(\"{a}.{b}.{c}.{d}\")]", f"Version {a}.{b}.{c}.{d} (build {g.ri(1000, 99999)})",
                 f"Microsoft Windows [Version 10.0.{g.ri(17000, 26100)}.{g.ri(1, 5000)}]",
                 f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{g.ri(110, 135)}.0.{g.ri(5000, 7000)}.{g.ri(10, 250)} Safari/537.36",
                 f"ii  libssl3:amd64  {g.ri(1, 3)}.{g.ri(0, 5)}.{g.ri(0, 20)}-{g.ri(1, 9)}ubuntu{g.ri(0, 3)}.{g.ri(1, 12)}  amd64  Secure Sockets Layer toolkit",
                 f"calver: {g.ri(2024, 2026)}.{g.ri(1, 12)}.{g.ri(1, 28)}", f"kernel {g.ri(5, 6)}.{g.ri(1, 15)}.{g.ri(0, 120)}-{g.ri(1, 200)}-generic",
                 f"firmware {g.ri(1, 9)}.{g.ri(10, 99)}.{g.ri(100, 999)}.{g.ri(1000, 9999)}"]), []


@T("neg-phone", "dates-and-timestamps")
def _(g):
    return g.ch([f"{g.date()} {g.time()}", f"[{g.iso()}] worker ready", f"Last login: {g.ch(['Mon', 'Tue', 'Wed', 'Thu', 'Fri'])} Nov {g.ri(1, 28)} {g.time()} {g.ri(2025, 2026)}",
                 f"{g.date('/')} {g.time()} +0000", f"expires={g.date()}T{g.time()}+05:30", f"modified: {g.ri(1, 28):02d}.{g.ri(1, 12):02d}.{g.ri(2024, 2026)} {g.time()}"]), []


@T("neg-phone", "compact-timestamps")
def _(g):
    ts = g.date("") + g.time().replace(":", "")
    return g.ch([f"backup-{ts}.tar.gz", f"migrations/{ts}_add_{g.word()}_table.rb", f"snapshot id: {ts}",
                 f"{ts}  INFO  rotated log", f"V{ts}__create_{g.word()}.sql", f"release: {ts}-{g.hx(7)}"]), []


@T("neg-phone", "durations")
def _(g):
    return g.ch([f"Finished in {g.ri(0, 2)}:{g.ri(0, 59):02d}:{g.ri(0, 59):02d}.{g.dig(3)}", f"real\t{g.ri(0, 9)}m{g.ri(0, 59)}.{g.dig(3)}s\nuser\t{g.ri(0, 9)}m{g.ri(0, 59)}.{g.dig(3)}s\nsys\t0m{g.ri(0, 9)}.{g.dig(3)}s",
                 f"uptime {g.ri(1, 400)} days, {g.ri(0, 23)}:{g.ri(0, 59):02d}", f"elapsed: {g.ri(1000, 999999)} ms",
                 f"took {g.ri(1, 59)}m {g.ri(0, 59)}s ({g.ri(100000, 9999999)} µs)", f"TTL {g.ri(60, 86400)} s, timeout {g.ri(1000, 30000)} ms"]), []


@T("neg-phone", "port-lists")
def _(g):
    ports = g.r.sample([22, 80, 443, 3000, 3306, 5432, 6379, 8080, 8443, 9090, 9200, 27017, 5672, 15672, 9092, 2181, 11211, 8000, 8888, 5000], g.ri(3, 6))
    return g.ch([f"ports: {', '.join(map(str, ports))}", f"EXPOSE {' '.join(map(str, ports))}",
                 f"ufw allow {','.join(map(str, ports))}/tcp", f"--publish {ports[0]}:{ports[1]} --publish {ports[2]}:{ports[2]}",
                 f"listening on ports {' '.join(map(str, ports))}"]), []


@T("neg-phone", "build-and-run-numbers")
def _(g):
    return g.ch([f"Build #{g.ri(1000, 99999)} succeeded in {g.ri(1, 59)}m", f"CI run {g.ri(6000000000, 12999999999)} attempt {g.ri(1, 3)}",
                 f"Pipeline #{g.ri(100000, 1999999)} passed for {g.hx(8)} on main", f"BUILD_NUMBER={g.ri(100, 99999)}",
                 f"job {g.ri(1000000000, 9999999999)} finished with status success", f"buildId: {g.ri(10000000, 99999999)}"]), []


@T("neg-phone", "order-and-invoice-ids")
def _(g):
    return g.ch([f"Order #{g.nzdig(10)} has shipped", f"invoice INV-{g.ri(2024, 2026)}-{g.dig(6)}", f"Your tracking number is {g.nzdig(12)}",
                 f"ticket {g.ch(['OPS', 'SUP', 'INC'])}-{g.ri(1000, 99999)} closed", f"refund {g.nzdig(11)} processed",
                 f"PO number: {g.nzdig(9)}", f"case id {g.nzdig(10)}"]), []


@T("neg-phone", "snowflake-ids")
def _(g):
    sid = str(g.ri(1100000000000000000, 1899999999999999999))
    return g.ch([f"https://x.com/{g.word()}/status/{sid}", f"\"id\": {sid}, \"id_str\": \"{sid}\"",
                 f"discord: message {sid} in channel {g.ri(700000000000000000, 1299999999999999999)}", f"snowflake={sid}"]), []


@T("neg-phone", "unix-timestamps")
def _(g):
    s = g.ri(1700000000, 1800000000)
    return g.ch([f"\"ts\": {s}{g.dig(3)}", f"created_at={s}", f"{{\"exp\":{s},\"iat\":{s - 3600}}}", f"mtime {s}.{g.dig(9)}",
                 f"Date.now() -> {s}{g.dig(3)}", f"@timestamp: {s}{g.dig(6)}"]), []


@T("neg-phone", "byte-counts")
def _(g):
    n = g.ri(100000, 999999999)
    spaced = f"{n:,}".replace(",", " ")
    return g.ch([f"{spaced} bytes", f"Transferred {n:,} bytes in {g.ri(1, 60)}.{g.ri(0, 9)} s", f"Total: {spaced} octets",
                 f"sent {n:,} bytes  received {g.ri(100, 99999):,} bytes  {g.ri(1000, 999999):,}.{g.dig(2)} bytes/sec",
                 f"{n:,}".replace(",", ".") + " Bytes frei"]), []


def isbn13(g):
    d = "978" + g.dig(9)
    chk = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(d)) % 10) % 10
    return d + str(chk)


@T("neg-phone", "isbn")
def _(g):
    d = isbn13(g)
    h = f"{d[:3]}-{d[3]}-{d[4:7]}-{d[7:12]}-{d[12]}"
    return g.ch([f"ISBN {h}", f"ISBN-13: {d}", f"isbn: \"{h}\"", f"{g.word().capitalize()} and the {g.word().capitalize()} (paperback), ISBN {d}"]), []


@T("neg-phone", "coordinates")
def _(g):
    lat, lon = g.r.uniform(-60, 70), g.r.uniform(-170, 170)
    return g.ch([f"lat={lat:.6f}, lon={lon:.6f}", f"\"location\": [{lon:.5f}, {lat:.5f}]", f"{lat:.4f}° N, {lon:.4f}° E",
                 f"geo:{lat:.6f},{lon:.6f};u=35"]), []


@T("neg-phone", "hex-addresses")
def _(g):
    return g.ch([f"0x{g.hx(12)}", f"addr=0x0000{g.hx(12)}", f"fault address 0x{g.hx(16)}", f"mov rax, qword ptr [rbp - 0x{g.hx(2)}]",
                 f"  {g.hx(8)}:\t{g.hx(2)} {g.hx(2)} {g.hx(2)} {g.hx(2)}\tmov    %rsp,%rbp"]), []


@T("neg-phone", "diff-counts")
def _(g):
    a, d = g.ri(0, 200), g.ri(0, 200)
    return g.ch([f"@@ -{g.ri(1, 900)},{g.ri(1, 30)} +{g.ri(1, 900)},{g.ri(1, 30)} @@ fn {g.word()}()", f"+{a} -{d}", f"{a}\t{d}\tsrc/{g.word()}.rs",
                 f"  {g.ri(1, 40)} files changed, {a} insertions(+), {d} deletions(-)", f"{g.word()}.py  +{a} −{d}"]), []


@T("neg-phone", "sleep-and-retry-lists")
def _(g):
    xs = sorted(g.r.sample(range(1, 120), g.ri(3, 5)))
    return g.ch([f"for t in {' '.join(map(str, xs))}; do sleep $t; curl -fs localhost:8080/health && break; done",
                 f"retry backoff: {', '.join(map(str, xs))} seconds", f"sleep {xs[0]} {xs[1]} {xs[2]}",
                 f"BACKOFF_MS=\"{','.join(str(x * 100) for x in xs)}\""]), []


@T("neg-phone", "test-counts")
def _(g):
    p, f, i = g.ri(10, 3000), g.ri(0, 9), g.ri(0, 40)
    return g.ch([f"test result: {'ok' if f == 0 else 'FAILED'}. {p} passed; {f} failed; {i} ignored; 0 measured; {g.ri(0, 900)} filtered out; finished in {g.ri(0, 90)}.{g.dig(2)}s",
                 f"===== {p} passed, {i} skipped, {f} failed in {g.ri(1, 600)}.{g.dig(2)}s =====", f"Tests:       {f} failed, {p} passed, {p + f} total",
                 f"Ran {p} tests in {g.ri(0, 300)}.{g.dig(3)}s\n\nOK (skipped={i})"]), []


@T("neg-phone", "free-memory")
def _(g):
    tot = g.ri(2000000, 64000000)
    used = g.ri(tot // 5, tot // 2)
    fr = g.ri(100000, tot - used)
    return (f"               total        used        free      shared  buff/cache   available\nMem:        {tot:>8}    {used:>8}    {fr:>8}      {g.ri(1000, 900000):>6}     {g.ri(100000, 9000000):>7}    {g.ri(100000, tot):>8}\n"
            f"Swap:        {g.ri(0, 4194300):>7}     {g.ri(0, 100000):>7}     {g.ri(0, 4194300):>7}"), []


@T("neg-phone", "ps-pids")
def _(g):
    rows = ["UID          PID    PPID  C STIME TTY          TIME CMD"]
    for _ in range(g.ri(2, 5)):
        rows.append(f"{g.ch(['root', 'www-data', 'postgres', 'dev']):<8} {g.ri(1, 4194304):>7} {g.ri(1, 99999):>7}  0 {g.ri(0, 23):02d}:{g.ri(0, 59):02d} ?        00:00:{g.ri(0, 59):02d} {g.ch(['/usr/sbin/sshd -D', 'nginx: worker process', 'postgres: checkpointer', '/usr/bin/containerd', 'python3 -m http.server'])}")
    return "\n".join(rows), []


@T("neg-phone", "ls-l-sizes")
def _(g):
    rows = [f"total {g.ri(100, 99999)}"]
    for _ in range(g.ri(2, 5)):
        rows.append(f"-rw-r--r-- 1 {g.ch(['dev', 'root', 'www-data'])} {g.ch(['dev', 'root', 'www-data'])} {g.ri(1000, 9999999999):>10} {g.ch(['Nov', 'Oct', 'Dec'])} {g.ri(1, 28):>2} {g.time()[:5]} {g.word()}.{g.ch(['img', 'iso', 'tar.gz', 'log', 'parquet'])}")
    return "\n".join(rows), []


@T("neg-phone", "df-output")
def _(g):
    rows = ["Filesystem     1K-blocks      Used Available Use% Mounted on"]
    for dev, mnt in g.r.sample([("/dev/nvme0n1p2", "/"), ("/dev/nvme0n1p1", "/boot/efi"), ("/dev/sda1", "/data"), ("tmpfs", "/run"), ("/dev/mapper/vg0-home", "/home")], g.ri(2, 4)):
        tot = g.ri(100000, 999999999)
        used = g.ri(0, tot)
        rows.append(f"{dev:<14} {tot:>10} {used:>9} {tot - used:>9} {used * 100 // tot:>3}% {mnt}")
    return "\n".join(rows), []


@T("neg-phone", "top-header")
def _(g):
    return (f"top - {g.time()} up {g.ri(1, 300)} days, {g.ri(0, 23)}:{g.ri(0, 59):02d},  {g.ri(1, 9)} users,  load average: {g.r.uniform(0, 9):.2f}, {g.r.uniform(0, 9):.2f}, {g.r.uniform(0, 9):.2f}\n"
            f"Tasks: {g.ri(100, 900)} total,   {g.ri(1, 9)} running, {g.ri(100, 800)} sleeping,   0 stopped,   0 zombie\n"
            f"MiB Mem :  {g.ri(2000, 64000)}.{g.ri(0, 9)} total,   {g.ri(100, 9000)}.{g.ri(0, 9)} free,   {g.ri(1000, 30000)}.{g.ri(0, 9)} used,  {g.ri(100, 20000)}.{g.ri(0, 9)} buff/cache"), []


@T("neg-phone", "git-diff-stat")
def _(g):
    rows = []
    for _ in range(g.ri(2, 5)):
        n = g.ri(1, 60)
        rows.append(f" {('src/' + g.word() + '/' + g.word() + '.rs'):<34}| {n:>3} {'+' * min(n, 20)}{'-' * g.ri(0, 10)}")
    rows.append(f" {len(rows)} files changed, {g.ri(1, 400)} insertions(+), {g.ri(0, 200)} deletions(-)")
    return "\n".join(rows), []


@T("neg-phone", "vmstat-output", ho=True)
def _(g):
    rows = ["procs -----------memory---------- ---swap-- -----io---- -system-- ------cpu-----",
            " r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy id wa st"]
    for _ in range(g.ri(1, 3)):
        rows.append(f" {g.ri(0, 9)}  0 {g.ri(0, 99999):>6} {g.ri(10000, 9999999):>7} {g.ri(1000, 999999):>6} {g.ri(10000, 9999999):>7}    0    0 {g.ri(0, 999):>5} {g.ri(0, 999):>5} {g.ri(100, 9999):>4} {g.ri(100, 9999):>4} {g.ri(0, 60):>2} {g.ri(0, 20):>2} {g.ri(20, 99):>2}  {g.ri(0, 5)}  0")
    return "\n".join(rows), []


@T("neg-phone", "iostat-output", ho=True)
def _(g):
    rows = ["Device            r/s     rkB/s   rrqm/s  %rrqm r_await rareq-sz     w/s     wkB/s"]
    for dev in g.r.sample(["nvme0n1", "sda", "sdb", "dm-0", "loop0"], g.ri(1, 3)):
        rows.append(f"{dev:<12} {g.r.uniform(0, 999):>8.2f} {g.r.uniform(0, 99999):>9.2f} {g.r.uniform(0, 99):>8.2f} {g.r.uniform(0, 99):>6.2f} {g.r.uniform(0, 9):>7.2f} {g.r.uniform(0, 99):>8.2f} {g.r.uniform(0, 999):>7.2f} {g.r.uniform(0, 99999):>9.2f}")
    return "\n".join(rows), []


@T("neg-phone", "dmesg-lines", ho=True)
def _(g):
    out = []
    for _ in range(g.ri(1, 3)):
        msg = g.ch(["usb 1-1.%d: new high-speed USB device number %d using xhci_hcd" % (g.ri(1, 4), g.ri(2, 30)),
                    "EXT4-fs (nvme0n1p2): mounted filesystem %s ro with ordered data mode" % g.uuid(),
                    'audit: type=1400 audit(%d.%s:%d): apparmor="STATUS" operation="profile_load"' % (g.ri(1700000000, 1800000000), g.dig(3), g.ri(10, 999)),
                    "Memory: %dK/%dK available" % (g.ri(1000000, 64000000), g.ri(1000000, 64000000))])
        out.append("[%6d.%s] %s" % (g.ri(0, 999999), g.dig(6), msg))
    return "\n".join(out), []


@T("neg-phone", "netstat-counters", ho=True)
def _(g):
    return (f"Ip:\n    Forwarding: 2\n    {g.ri(1000000, 999999999)} total packets received\n    {g.ri(0, 999)} with invalid addresses\n"
            f"    {g.ri(1000000, 999999999)} incoming packets delivered\n    {g.ri(1000000, 999999999)} requests sent out"), []


# ===========================================================================
# negatives around other PII
# ===========================================================================

RESERVED = ["example.com", "example.net", "example.org", "mail.example", "corp.example", "app.test", "test",
            "invalid", "acme.test", "shop.invalid", "localhost", "dev.localhost", "sub.example.com", "eu.example.org"]


def placeholder_email(g):
    local = g.ch([g.first().lower(), f"{g.first().lower()}.{g.last().lower()}", "user", "admin", "noreply", "jane.doe",
                  "john.doe", "test", f"user{g.ri(1, 999)}", "support", "alice", "bob"])
    return f"{local}@{g.ch(RESERVED)}"


@T("neg-pii", "email-reserved-domain")
def _(g):
    e = placeholder_email(g)
    return g.ch([f"git config user.email \"{e}\"", f'{{"email": "{e}", "role": "{g.ch(["admin", "viewer"])}"}}', f"From: Test User <{e}>",
                 f"Signed-off-by: CI Bot <{e}>", f"ADMIN_EMAIL={e}", f"curl -X POST -d 'email={e}' https://{g.host('api')}/signup",
                 f"assert user.email == \"{e}\"", f"  - email: {e}\n    name: {g.fullname()}"]), []


@T("neg-pii", "shell-prompt")
def _(g):
    u, h = g.first().lower(), g.ch(["build-07", "devbox", "ip-172-31-9-12", "web01", "raspberrypi", "laptop", g.hx(12)])
    return f"{u}@{h}:~/{g.ch(['src', 'work', 'projects'])}/{g.word()}$ {g.ch(['cargo test', 'git status', 'make', 'ls -la', 'npm run build'])}", []


@T("neg-pii", "git-remote")
def _(g):
    org, repo = g.word(), g.word()
    h = g.ch(["github.com", "gitlab.com", "bitbucket.org", "ssh.dev.azure.com"])
    return g.ch([f"origin\tgit@{h}:{org}/{repo}.git (fetch)\norigin\tgit@{h}:{org}/{repo}.git (push)",
                 f"Cloning into '{repo}'...\ngit@{h}: Permission denied (publickey).",
                 f"remote: Enumerating objects: {g.ri(10, 9999)}, done.\nTo git@{h}:{org}/{repo}.git\n   {g.hx(7)}..{g.hx(7)}  main -> main"]), []


@T("neg-pii", "ssh-target")
def _(g):
    u = g.ch(["deploy", "ubuntu", "ec2-user", "admin", "ci", "root"])
    h = g.ch(["bastion", "web-01", "db-02", "runner-3", "build07", "jump"])
    return g.ch([f"ssh {u}@{h}", f"scp build.tar.gz {u}@{h}:/tmp/", f"rsync -avz ./dist/ {u}@{h}:/srv/www/",
                 f"ssh -J {u}@{h} {u}@{g.ch(['db-01', 'app-02'])}", f"Connection to {h} closed.\n{u}@{h}: Permission denied (publickey)."]), []


@T("neg-pii", "package-at-version")
def _(g):
    return g.ch([f"+ @types/node@{g.ri(16, 22)}.{g.ri(0, 20)}.{g.ri(0, 9)}", f"added lodash@4.17.{g.ri(15, 21)}",
                 f"npm WARN deprecated {g.word()}@{g.semver()}: this library is no longer supported",
                 f"yarn add @{g.word()}/{g.word()}@^{g.semver()}", f"pnpm add react@{g.ri(16, 19)}.{g.ri(0, 3)}.{g.ri(0, 9)}",
                 f"{g.word()}@{g.semver()} /usr/lib/node_modules/{g.word()}"]), []


@T("neg-pii", "mentions-and-handles")
def _(g):
    return g.ch([f"cc @{g.first().lower()}-{g.ch(['dev', 'ops'])} @{g.word()}-team", f"@channel deploy of {g.word()} finished",
                 f"Reviewed-by: @{g.first().lower()}{g.ri(1, 99)}", f"@{g.first().lower()} please take a look at #{g.ri(100, 9999)}",
                 f"@app.route(\"/{g.word()}\", methods=[\"GET\"])", f"@Override\npublic String {g.word()}() {{"]), []


@T("neg-pii", "luhn-invalid-digits")
def _(g):
    d, b = card_digits(g, valid=False)
    f = card_fmt(g, d)
    return g.ch([f"card_number: {f}", f"Card: {f} exp {g.ri(1, 12):02d}/{g.ri(26, 31)}", f"\"pan\": \"{d}\"", f"txn {g.ri(1000, 9999)} card={d} declined",
                 f"reference {d}", f"tracking id {d}"]), []


@T("neg-pii", "iban-bad-checksum")
def _(g):
    s = iban(g, valid=False)
    f = iban_fmt(g, s)
    return g.ch([f"IBAN: {f}", f"\"iban\": \"{s}\"", f"Please transfer to IBAN {f}.", f"<IBAN>{s}</IBAN>", f"iban={s}"]), []


def bad_ssn(g):
    k = g.ri(0, 4)
    if k == 0:
        return f"000-{g.ri(1, 99):02d}-{g.ri(1, 9999):04d}"
    if k == 1:
        return f"666-{g.ri(1, 99):02d}-{g.ri(1, 9999):04d}"
    if k == 2:
        return f"9{g.dig(2)}-{g.ri(1, 99):02d}-{g.ri(1, 9999):04d}"
    if k == 3:
        return f"{g.ri(1, 665):03d}-00-{g.ri(1, 9999):04d}"
    return f"{g.ri(1, 665):03d}-{g.ri(1, 99):02d}-0000"


@T("neg-pii", "ssn-invalid-range")
def _(g):
    s = bad_ssn(g)
    return g.ch([f"SSN: {s}", f"\"ssn\": \"{s}\"", f"Social Security Number: {s}", f"ssn={s}"]), []


@T("neg-pii", "nine-digit-non-ssn")
def _(g):
    return g.ch([f"Order #{g.nzdig(9)} confirmed", f"{g.ch(['San Francisco, CA', 'Austin, TX', 'Seattle, WA', 'Chicago, IL'])} {g.ri(10000, 99999)}-{g.dig(4)}",
                 f"ticket {g.nzdig(9)} updated", f"account id {g.nzdig(9)}", f"ZIP+4: {g.ri(10000, 99999)}-{g.dig(4)}",
                 f"serial no. {g.nzdig(9)}", f"shipment {g.nzdig(3)} {g.dig(3)} {g.dig(3)}", f"batch-{g.nzdig(9)}.csv"]), []


@T("neg-pii", "pubkey-comment", ho=True)
def _(g):
    return f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{g.an(43, ALNUM + '+/')} {g.ch(['deploy', 'ci', g.first().lower()])}@{g.ch(['build-07', 'laptop', 'runner-3', 'bastion'])}", []


@T("neg-pii", "slack-user-refs", ho=True)
def _(g):
    return g.ch([f"<@U{g.an(10, string.ascii_uppercase + DIG)}> approved the deploy", f"<!subteam^S{g.an(10, string.ascii_uppercase + DIG)}> on-call handover",
                 f"user=U{g.an(8, string.ascii_uppercase + DIG)} team=T{g.an(8, string.ascii_uppercase + DIG)}"]), []


@T("neg-pii", "localhost-mail", ho=True)
def _(g):
    u = g.ch(["root", "postmaster", "www-data", "cron", "nobody"])
    return g.ch([f"You have new mail in /var/mail/{u}\nFrom {u}@localhost  {g.ch(['Mon', 'Tue'])} Nov {g.ri(1, 28)} {g.time()} 2026",
                 f"postfix/local[{g.ri(100, 99999)}]: {g.hx(10).upper()}: to=<{u}@localhost>, relay=local, status=sent (delivered to mailbox)",
                 f"MAILTO={u}@localhost"]), []


@T("neg-pii", "message-id-header", ho=True)
def _(g):
    return g.ch([f"Message-ID: <{g.uuid()}@mail.example.net>", f"In-Reply-To: <{g.hx(16)}.{g.ri(1000, 9999)}@app.test>",
                 f"References: <CA+{g.an(30, ALNUM + '-_')}@mail.example.com>"]), []


# ===========================================================================
# negatives a secret detector may trip on
# ===========================================================================

FILES = ["/usr/bin/ls", "/usr/bin/python3.11", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/etc/ssl/certs/ca-certificates.crt",
         "dist/app-{v}.tar.gz", "target/release/{w}", "{w}-{v}-py3-none-any.whl", "node-v20.11.1-linux-x64.tar.xz",
         "{w}.iso", "build/{w}.bin", "release/{w}_{v}_amd64.deb", "{w}-{v}.zip"]


def fname(g):
    return g.ch(FILES).format(v=g.semver(), w=g.word())


@T("neg-secret", "sha256sum-lines")
def _(g):
    return "\n".join(f"{g.hx(64)}  {fname(g)}" for _ in range(g.ri(1, 4))), []


@T("neg-secret", "md5-sha1-sha512-lines")
def _(g):
    n = g.ch([32, 40, 128])
    tool = {32: "md5sum", 40: "sha1sum", 128: "sha512sum"}[n]
    f = fname(g)
    return f"$ {tool} {f}\n{g.hx(n)}  {f}", []


@T("neg-secret", "prefixed-digests")
def _(g):
    return g.ch([f"sha256:{g.hx(64)}", f"SHA256 ({fname(g)}) = {g.hx(64)}", f"checksum: sha512:{g.hx(128)}",
                 f"MD5 ({fname(g)}) = {g.hx(32)}", f"etag: \"{g.hx(32)}\"", f"X-Checksum-Sha1: {g.hx(40)}",
                 f"blake3 {g.hx(64)} {fname(g)}"]), []


@T("neg-secret", "git-log")
def _(g):
    k = g.ri(0, 2)
    msgs = ["fix: handle empty response", "chore(deps): bump serde from 1.0.192 to 1.0.193", "feat: add retry with backoff",
            "docs: update README", "refactor: split parser module", "test: cover edge cases in tokenizer", "Merge pull request #"
            + str(g.ri(10, 9999)) + " from " + g.word() + "/" + g.word(), "ci: cache cargo registry", "perf: avoid clone in hot loop"]
    if k == 0:
        return "\n".join(f"{g.hx(7)} {g.ch(msgs)}" for _ in range(g.ri(2, 6))), []
    if k == 1:
        return "\n".join(f"{g.hx(40)} {g.ch(msgs)}" for _ in range(g.ri(1, 4))), []
    return f"commit {g.hx(40)}\nMerge: {g.hx(7)} {g.hx(7)}\nDate:   {g.date()} {g.time()} +0000\n\n    {g.ch(msgs)}", []


@T("neg-secret", "docker-images")
def _(g):
    rows = ["REPOSITORY                 TAG       IMAGE ID       CREATED        SIZE"]
    for _ in range(g.ri(2, 5)):
        rows.append(f"{g.ch(['postgres', 'redis', 'nginx', g.word() + '-api', 'ghcr.io/' + g.word() + '/' + g.word()]):<26} {g.ch(['latest', '16', '7.2', g.semver()]):<9} {g.hx(12)}   {g.ri(2, 11)} {g.ch(['days', 'weeks', 'months'])} ago   {g.ri(5, 990)}MB")
    return "\n".join(rows), []


@T("neg-secret", "docker-pull-digest")
def _(g):
    img = g.ch(["nginx", "postgres", "redis", "python", "node", "alpine"])
    tag = g.ch(["latest", "alpine", "16", "3.12-slim", "20-bookworm"])
    layers = "\n".join(f"{g.hx(12)}: Pull complete" for _ in range(g.ri(1, 4)))
    return f"{tag}: Pulling from library/{img}\n{layers}\nDigest: sha256:{g.hx(64)}\nStatus: Downloaded newer image for {img}:{tag}", []


@T("neg-secret", "image-ref-digest")
def _(g):
    return g.ch([f"image: ghcr.io/{g.word()}/{g.word()}@sha256:{g.hx(64)}", f"FROM python:3.12-slim@sha256:{g.hx(64)}",
                 f"  containerID: containerd://{g.hx(64)}\n  imageID: docker.io/library/nginx@sha256:{g.hx(64)}"]), []


@T("neg-secret", "base64-ordinary-text")
def _(g):
    txt = g.ch(["Hello, world! This is a plain text message.", f"The quick brown {g.word()} jumps over the lazy {g.word()}.",
                f"version={g.semver()}\nchannel=stable\n", f"<html><body><h1>{g.word().capitalize()}</h1></body></html>",
                f"{{\"kind\": \"report\", \"title\": \"{g.word()} {g.word()}\", \"pages\": {g.ri(1, 99)}}}",
                f"Meeting notes: discuss {g.word()} roadmap and {g.word()} migration."])
    b = base64.b64encode(txt.encode()).decode()
    return g.ch([f"$ echo '{txt[:30]}...' | base64\n{b}", f"Content-Transfer-Encoding: base64\n\n{b}", f"data:text/plain;base64,{b}",
                 f"binaryData:\n  banner.txt: {b}", f"payload (base64): {b}"]), []


@T("neg-secret", "png-data-uri")
def _(g):
    return f"background-image: url(\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAA{g.an(g.ri(40, 120), ALNUM + '+/')}AAAAAElFTkSuQmCC\");", []


@T("neg-secret", "uuid-in-logs")
def _(g):
    return g.ch([f"{g.iso()} INFO request_id={g.uuid()} path=/api/{g.word()} status=200 duration_ms={g.ri(1, 900)}",
                 f"X-Request-ID: {g.uuid()}", f"trace_id={g.hx(32)} span_id={g.hx(16)}", f"correlationId: {g.uuid()}",
                 f"Created volume {g.uuid()}", f"/dev/nvme0n1p2: UUID=\"{g.uuid()}\" TYPE=\"ext4\" PARTUUID=\"{g.uuid()}\""]), []


@T("neg-secret", "ulid-ids")
def _(g):
    return g.ch([f"event {g.ulid()} stored", f"\"id\": \"{g.ulid()}\"", f"job_id={g.ulid()} queued", f"ulid: {g.ulid()}"]), []


@T("neg-secret", "k8s-metadata-uid")
def _(g):
    return (f"metadata:\n  name: {g.word()}-{g.hx(10)[:10]}-{g.ksuf(5)}\n  namespace: {g.ch(['default', 'prod', 'kube-system'])}\n"
            f"  uid: {g.uuid()}\n  resourceVersion: \"{g.ri(100000, 99999999)}\"\n  creationTimestamp: \"{g.date()}T{g.time()}Z\""), []


@T("neg-secret", "aws-arns-and-request-ids")
def _(g):
    acct = g.dig(12)
    return g.ch([f"arn:aws:iam::{acct}:role/{g.word()}-deploy", f"arn:aws:s3:::{g.word()}-{g.word()}-logs/*",
                 f"arn:aws:lambda:eu-west-1:{acct}:function:{g.word()}-handler", f"RequestId: {g.uuid()}",
                 f"x-amz-request-id: {g.an(16, string.ascii_uppercase + DIG)}\nx-amz-id-2: {g.b64(48)}",
                 f"arn:aws:kms:us-east-1:{acct}:key/{g.uuid()}", f"arn:aws:secretsmanager:eu-central-1:{acct}:secret:prod/{g.word()}-{g.an(6)}"]), []


@T("neg-secret", "kubectl-get-pods")
def _(g):
    rows = ["NAME                                READY   STATUS    RESTARTS   AGE"]
    for _ in range(g.ri(2, 5)):
        rows.append(f"{(g.word() + '-' + g.ch(['api', 'web', 'worker']) + '-' + g.ksuf(g.ri(9, 10)) + '-' + g.ksuf(5)):<35} 1/1     Running   {g.ri(0, 4)}          {g.ri(1, 90)}d")
    return "\n".join(rows), []


@T("neg-secret", "npm-integrity")
def _(g):
    return (f"\"node_modules/{g.word()}\": {{\n  \"version\": \"{g.semver()}\",\n  \"resolved\": \"https://registry.npmjs.org/{g.word()}/-/{g.word()}-{g.semver()}.tgz\",\n"
            f"  \"integrity\": \"sha512-{g.b64(64)}\"\n}}"), []


@T("neg-secret", "go-sum-lines")
def _(g):
    rows = []
    for _ in range(g.ri(1, 4)):
        mod = f"github.com/{g.word()}/{g.word()} v{g.semver()}"
        rows.append(f"{mod} h1:{g.b64(32)}")
        rows.append(f"{mod}/go.mod h1:{g.b64(32)}")
    return "\n".join(rows), []


@T("neg-secret", "cargo-lock-checksum")
def _(g):
    return f"[[package]]\nname = \"{g.word()}\"\nversion = \"{g.semver()}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{g.hx(64)}\"", []


@T("neg-secret", "pip-hash-requirements")
def _(g):
    return f"{g.word()}=={g.semver()} \\\n    --hash=sha256:{g.hx(64)} \\\n    --hash=sha256:{g.hx(64)}", []


@T("neg-secret", "semver-build-metadata")
def _(g):
    return g.ch([f"version: {g.semver()}+build.{g.date('')}.g{g.hx(7)}", f"v{g.semver()}-rc.{g.ri(1, 9)}", f"{g.semver()}-{g.ri(1, 99)}-g{g.hx(7)}-dirty",
                 f"rustc {g.ri(1, 1)}.{g.ri(70, 90)}.0 ({g.hx(9)} {g.date()})", f"app {g.semver()} (commit {g.hx(12)}, built {g.date()})",
                 f"image tag: {g.semver()}-{g.hx(8)}"]), []


@T("neg-secret", "dotted-non-jwt-ids")
def _(g):
    return g.ch([f"traceparent: 00-{g.hx(32)}-{g.hx(16)}-01", f"session.{g.hx(12)}.{g.hx(8)}.replica-{g.ri(0, 9)}",
                 f"{g.word()}.{g.word()}.{g.hx(10)}.v{g.ri(1, 9)}", f"consumer-group.{g.word()}.partition-{g.ri(0, 63)}.offset-{g.ri(1, 9999999)}",
                 f"oid 1.2.840.113549.1.1.{g.ri(1, 14)}", f"sentry.event.{g.hx(32)}", f"cache key: {g.word()}.{g.hx(16)}.{g.hx(16)}",
                 "next: /api/v2/items?cursor=" + g.b64url_text('{"page": %d, "sort": "%s"}' % (g.ri(2, 400), g.ch(["asc", "desc"]))),
                 "\"pageToken\": \"" + g.b64url_text('{"offset":%d,"limit":%d}' % (g.ri(0, 9999), g.ch([25, 50, 100]))) + "\""]), []


@T("neg-secret", "gha-secret-reference")
def _(g):
    v = g.ch(["GITHUB_TOKEN", "NPM_TOKEN", "DOCKERHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "SLACK_WEBHOOK_URL", "PYPI_API_TOKEN"])
    return g.ch([f"        env:\n          {v}: ${{{{ secrets.{v} }}}}", f"      - uses: actions/checkout@v4\n        with:\n          token: ${{{{ secrets.{v} }}}}",
                 f"    password: ${{{{ secrets.{v} }}}}", f"run: echo \"//registry.npmjs.org/:_authToken=${{{{ secrets.NPM_TOKEN }}}}\" > .npmrc"]), []


@T("neg-secret", "template-placeholders")
def _(g):
    k = g.ch(["api_key", "secret", "token", "client_secret", "access_key"])
    return g.ch([f"{k}: {{{{ {k} }}}}", f"{k.upper()}=<%= ENV['{k.upper()}'] %>", f"{k} = \"${{var.{k}}}\"", f"{k.upper()}: $({k.upper()})",
                 f"\"{k}\": \"#{{{k}}}\"", f"{k}: ${{{k.upper()}}}", f"{k}=%{k.upper()}%", f"{k}: <your-{k.replace('_', '-')}-here>"]), []


@T("neg-secret", "vault-paths")
def _(g):
    p = f"secret/data/{g.word()}/{g.ch(['prod', 'staging', 'dev'])}"
    return g.ch([f"vault kv get {p.replace('/data', '')}", f"path \"{p}/*\" {{\n  capabilities = [\"read\", \"list\"]\n}}",
                 f"vault.hashicorp.com/agent-inject-secret-config: \"{p}\"", f"VAULT_SECRET_PATH={p}",
                 f"vault kv metadata get -mount=secret {g.word()}/config"]), []


@T("neg-secret", "env-var-names-only")
def _(g):
    v = g.ch(SECRET_ENV_NAMES + ["AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "OPENAI_API_KEY", "STRIPE_SECRET_KEY"])
    return g.ch([f"export {v}", f"unset {v}", f"env | grep -c {v}", f"required env: DATABASE_URL, {v}, REDIS_URL",
                 f"error: environment variable {v} is not set", f"[ -z \"${v}\" ] && echo \"missing {v}\" && exit 1",
                 f"- name: {v}\n  description: set in the deploy pipeline"]), []


@T("neg-secret", "masked-secret-values")
def _(g):
    v = g.ch(SECRET_ENV_NAMES + ["AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"])
    return g.ch([f"{v}=****", f"{v}: [REDACTED]", f"{v}=<redacted>", f"\"{v.lower()}\": \"****************\"",
                 f"token: {g.an(4)}…{g.an(4)} (masked)", f"{v}={'*' * g.ri(8, 40)}", f"Authorization: Bearer [FILTERED]",
                 f"api key ending in …{g.an(4)}"]), []


@T("neg-secret", "terraform-sensitive")
def _(g):
    typ, name = g.ch(['aws_db_instance', 'azurerm_key_vault_secret', 'google_sql_user']), g.word()
    return (f"  # {typ}.{name} will be updated in-place\n"
            f"  ~ resource \"{typ}\" \"{name}\" {{\n"
            f"        id       = \"{g.word()}-{g.hx(8)}\"\n      ~ {g.ch(['password', 'value', 'secret_string'])} = (sensitive value)\n"
            f"        # ({g.ri(2, 60)} unchanged attributes hidden)\n    }}"), []


@T("neg-secret", "kubectl-get-secrets")
def _(g):
    rows = ["NAME                       TYPE                                  DATA   AGE"]
    for _ in range(g.ri(2, 5)):
        n, t = g.ch([(f"{g.word()}-db-creds", "Opaque"), (f"{g.word()}-tls", "kubernetes.io/tls"),
                     (f"default-token-{g.ksuf(5)}", "kubernetes.io/service-account-token"),
                     (f"regcred-{g.word()}", "kubernetes.io/dockerconfigjson"), (f"sh.helm.release.v1.{g.word()}.v{g.ri(1, 40)}", "helm.sh/release.v1")])
        rows.append(f"{n:<26} {t:<37} {g.ri(1, 5)}      {g.ri(1, 400)}d")
    return "\n".join(rows), []


@T("neg-secret", "ci-log-masked")
def _(g):
    return g.ch([f"Run psql \"postgresql://app:***@db:5432/shop\" -c 'select 1'", f"  DB_PASSWORD: ***\n  API_KEY: ***",
                 f"$ curl -H \"Authorization: token ***\" https://api.github.com/repos/{g.word()}/{g.word()}",
                 f"+ docker login -u ci -p [MASKED] registry.{g.org()}", f"Login Succeeded\n[secure] deploying with token ********"]), []


@T("neg-secret", "hashed-asset-names")
def _(g):
    rows = []
    for _ in range(g.ri(2, 5)):
        rows.append(f"  dist/assets/{g.ch(['main', 'index', 'vendor', 'chunk', g.word()])}{g.ch(['.', '-'])}{g.hx(8)}.{g.ch(['js', 'css', 'woff2', 'svg'])}   {g.ri(1, 900)}.{g.ri(0, 99)} kB │ gzip: {g.ri(1, 300)}.{g.ri(0, 99)} kB")
    return "\n".join(rows), []


@T("neg-secret", "minified-js")
def _(g):
    v = [g.an(1, string.ascii_lowercase) for _ in range(6)]
    return (f"!function({v[0]},{v[1]}){{\"object\"==typeof exports&&\"undefined\"!=typeof module?module.exports={v[1]}():\"function\"==typeof define&&define.amd?define({v[1]}):"
            f"({v[0]}=\"undefined\"!=typeof globalThis?globalThis:{v[0]}||self).{g.word().capitalize()}={v[1]}()}}(this,function(){{\"use strict\";var {v[2]}={{{g.word()}:{g.ri(0, 99)},"
            f"{g.word()}:\"{g.hx(6)}\"}},{v[3]}=function({v[4]}){{return {v[4]}&&{v[4]}.__esModule?{v[4]}:{{default:{v[4]}}}}};return {v[2]}}});"), []


@T("neg-secret", "mangled-symbols")
def _(g):
    def sym():
        a, b = g.word(), g.word()
        return f"_ZN{len(a)}{a}{len(b)}{b}17h{g.hx(16)}E"
    return g.ch([f"  = note: undefined reference to `{sym()}'", f"{g.hx(16)} T {sym()}", f"    {g.ri(0, 40)}: 0x{g.hx(12)} - {sym()}",
                 f"  {g.ri(0, 30)}: {g.word()}::{g.word()}::h{g.hx(16)}\n             at ./src/{g.word()}.rs:{g.ri(1, 900)}:{g.ri(1, 80)}"]), []


@T("neg-secret", "rust-backtrace")
def _(g):
    rows = [f"thread 'main' panicked at src/{g.word()}.rs:{g.ri(1, 400)}:{g.ri(1, 60)}:\ncalled `Option::unwrap()` on a `None` value\nstack backtrace:"]
    for i in range(g.ri(2, 4)):
        rows.append(f"  {i:>2}: 0x{g.hx(12)} - {g.ch(['std::panicking::begin_panic_handler', 'core::panicking::panic', 'core::option::unwrap_failed', g.word() + '::main'])}::h{g.hx(16)}")
    return "\n".join(rows), []


@T("neg-secret", "cargo-build-log")
def _(g):
    w = g.word()
    return g.ch([f"   Compiling {w} v{g.semver()}\n   Compiling {g.word()} v{g.semver()}\n    Finished `release` profile [optimized] target(s) in {g.ri(1, 300)}.{g.dig(2)}s",
                 f"     Running `rustc --crate-name {w} --edition=2021 src/lib.rs --crate-type lib -C metadata={g.hx(16)} -C extra-filename=-{g.hx(16)} --out-dir /home/dev/project/target/debug/deps`",
                 f"  Downloaded {w} v{g.semver()}\n  Downloaded {g.word()} v{g.semver()}\n  Downloaded {g.ri(2, 90)} crates ({g.ri(1, 20)}.{g.ri(0, 9)} MB) in {g.ri(1, 9)}.{g.dig(2)}s"]), []


@T("neg-secret", "npm-install-log")
def _(g):
    return g.ch([f"added {g.ri(10, 1500)} packages, and audited {g.ri(10, 1500)} packages in {g.ri(1, 90)}s\n\n{g.ri(10, 300)} packages are looking for funding\n  run `npm fund` for details\n\nfound 0 vulnerabilities",
                 f"npm http fetch GET 200 https://registry.npmjs.org/{g.word()}/-/{g.word()}-{g.semver()}.tgz {g.ri(5, 900)}ms (cache miss)",
                 f"npm verb cache add spec: {g.word()}@^{g.semver()}\nnpm verb stack Error: ENOENT: no such file or directory, open '/home/dev/project/package.json'"]), []


@T("neg-secret", "pip-install-log")
def _(g):
    w = g.word()
    return g.ch([f"  Created wheel for {w}: filename={w}-{g.semver()}-py3-none-any.whl size={g.ri(1000, 999999)} sha256={g.hx(64)}\n  Stored in directory: /home/dev/.cache/pip/wheels/{g.hx(2)}/{g.hx(2)}/{g.hx(2)}/{g.hx(56)}",
                 f"Collecting {w}=={g.semver()}\n  Downloading {w}-{g.semver()}-py3-none-any.whl ({g.ri(10, 999)} kB)\nSuccessfully installed {w}-{g.semver()}",
                 f"Looking in indexes: https://pypi.org/simple\nRequirement already satisfied: {w} in ./venv/lib/python3.12/site-packages ({g.semver()})"]), []


@T("neg-secret", "go-build-log")
def _(g):
    return g.ch([f"go: downloading github.com/{g.word()}/{g.word()} v{g.semver()}\ngo: downloading golang.org/x/sys v0.{g.ri(10, 30)}.0",
                 f"go: finding module for package github.com/{g.word()}/{g.word()}\ngo: found github.com/{g.word()}/{g.word()} in github.com/{g.word()}/{g.word()} v{g.semver()}",
                 f"# github.com/{g.word()}/{g.word()}/internal/{g.word()}\n./{g.word()}.go:{g.ri(1, 300)}:{g.ri(1, 40)}: undefined: {g.word().capitalize()}"]), []


@T("neg-secret", "ls-la-output")
def _(g):
    rows = [f"total {g.ri(8, 9999)}", "drwxr-xr-x  5 dev dev   4096 Nov 30 10:14 .", "drwxr-xr-x 24 dev dev   4096 Nov 29 09:01 .."]
    for _ in range(g.ri(2, 5)):
        name = g.ch([f".{g.word()}rc", f"{g.word()}.{g.ch(['rs', 'py', 'toml', 'lock', 'md'])}", f"{g.word()}-{g.hx(8)}.log", f".env.example", "Dockerfile"])
        rows.append(f"{g.ch(['-rw-r--r--', '-rw-------', '-rwxr-xr-x'])}  1 dev dev {g.ri(10, 999999):>6} {g.ch(['Nov', 'Oct'])} {g.ri(1, 28):>2} {g.time()[:5]} {name}")
    return "\n".join(rows), []


@T("neg-secret", "ps-aux-output")
def _(g):
    rows = ["USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND"]
    for _ in range(g.ri(2, 5)):
        cmd = g.ch(["/usr/lib/systemd/systemd --system --deserialize=42", "/usr/sbin/sshd -D", "nginx: master process /usr/sbin/nginx -g daemon on;",
                    "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock", "postgres: 16/main: walwriter",
                    f"/usr/bin/python3 /opt/{g.word()}/worker.py --queue {g.word()}", "redis-server *:6379", f"node /app/dist/server.js --port {g.ri(3000, 9000)}"])
        rows.append(f"{g.ch(['root', 'www-data', 'postgres', 'redis', 'app']):<10} {g.ri(1, 99999):>6} {g.r.uniform(0, 9):>4.1f} {g.r.uniform(0, 9):>4.1f} {g.ri(1000, 9999999):>7} {g.ri(1000, 999999):>6} ?        Ss   Nov{g.ri(1, 28):02d}   {g.ri(0, 99)}:{g.ri(0, 59):02d} {cmd}")
    return "\n".join(rows), []


@T("neg-secret", "stack-trace-go")
def _(g):
    w = g.word()
    return (f"panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x{g.hx(2)} pc=0x{g.hx(6)}]\n\n"
            f"goroutine {g.ri(1, 500)} [running]:\nmain.(*{w.capitalize()}).Handle(0xc000{g.hx(6)}, 0x{g.hx(6)})\n\t/app/{w}.go:{g.ri(10, 400)} +0x{g.hx(2)}"), []


@T("neg-secret", "stack-trace-java")
def _(g):
    w = g.word()
    return (f"java.lang.IllegalStateException: {w} not initialised\n\tat com.{g.word()}.{w}.{w.capitalize()}Service.load({w.capitalize()}Service.java:{g.ri(10, 500)})\n"
            f"\tat com.{g.word()}.{w}.Main.main(Main.java:{g.ri(5, 80)})\n\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)\n"
            f"Caused by: java.lang.NullPointerException: Cannot invoke \"Object.hashCode()\" because \"key\" is null  [in thread \"pool-{g.ri(1, 9)}-thread-{g.ri(1, 32)}\"] @{g.hx(8)}"), []


@T("neg-secret", "stack-trace-python")
def _(g):
    w = g.word()
    return (f"Traceback (most recent call last):\n  File \"/app/{w}/views.py\", line {g.ri(10, 400)}, in get\n    return self.{g.word()}(request)\n"
            f"  File \"/app/{w}/models.py\", line {g.ri(10, 400)}, in {g.word()}\nAttributeError: '<{w.capitalize()} object at 0x7f{g.hx(10)}>' has no attribute '{g.word()}'"), []


@T("neg-secret", "segfault-and-core")
def _(g):
    return g.ch([f"{g.word()}[{g.ri(1000, 99999)}]: segfault at {g.hx(12)} ip 0000{g.hx(12)} sp 00007ff{g.hx(9)} error 4 in lib{g.word()}.so.{g.ri(1, 9)}[{g.hx(12)}+{g.hx(5)}]",
                 f"Core was generated by `./{g.word()}'.\nProgram terminated with signal SIGSEGV, Segmentation fault.\n#0  0x0000{g.hx(12)} in {g.word()}_init () at src/{g.word()}.c:{g.ri(1, 900)}",
                 f"==={g.ri(1000, 99999)}==ERROR: AddressSanitizer: heap-use-after-free on address 0x60{g.hx(10)} at pc 0x55{g.hx(10)} bp 0x7ff{g.hx(9)}"]), []


@T("neg-secret", "github-commit-urls")
def _(g):
    return g.ch([f"https://github.com/{g.word()}/{g.word()}/commit/{g.hx(40)}", f"https://github.com/{g.word()}/{g.word()}/blob/{g.hx(40)}/src/{g.word()}.rs#L{g.ri(1, 900)}",
                 f"https://gitlab.com/{g.word()}/{g.word()}/-/merge_requests/{g.ri(1, 9999)}/diffs?commit_id={g.hx(40)}",
                 f"Compare: https://github.com/{g.word()}/{g.word()}/compare/{g.hx(12)}...{g.hx(12)}"]), []


@T("neg-secret", "ssh-public-keys-and-fingerprints")
def _(g):
    return g.ch([f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{g.an(43, ALNUM + '+/')}",
                 f"256 SHA256:{g.b64(32).rstrip('=')} {g.ch(['deploy', 'ci'])}@{g.ch(['laptop', 'build-07'])} (ED25519)",
                 f"The key fingerprint is:\nSHA256:{g.b64(32).rstrip('=')} {g.ch(['ci', 'dev'])}@{g.ch(['devbox', 'runner-2'])}",
                 f"{g.host('git')} ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ{g.an(120, ALNUM + '+/')}",
                 f"SHA256 Fingerprint={':'.join(g.hx(2).upper() for _ in range(32))}"]), []


@T("neg-secret", "secret-config-names-not-values")
def _(g):
    return g.ch([f"client_secret: ${{{g.ch(['CLIENT_SECRET', 'OAUTH_CLIENT_SECRET'])}}}", "SECRET_KEY=", f"token_ttl: {g.ri(60, 86400)}",
                 "api_key_header: X-API-Key", f"secret_name: {g.word()}-creds", f"jwt_expiry_seconds: {g.ri(300, 86400)}",
                 f"secretName: {g.word()}-tls", f"api_key_env: {g.word().upper()}_API_KEY", "token_endpoint: /oauth/token",
                 f"secret_rotation_days = {g.ri(7, 180)}"]), []


# --- holdout-only ------------------------------------------------------------

@T("neg-secret", "nix-store-paths", ho=True)
def _(g):
    b32 = "0123456789abcdfghijklmnpqrsvwxyz"
    return "\n".join(f"/nix/store/{g.an(32, b32)}-{g.word()}-{g.semver()}" for _ in range(g.ri(1, 4))), []


@T("neg-secret", "yarn-lock-resolved", ho=True)
def _(g):
    w = g.word()
    v = g.semver()
    return f"{w}@^{v}:\n  version \"{v}\"\n  resolved \"https://registry.yarnpkg.com/{w}/-/{w}-{v}.tgz#{g.hx(40)}\"\n  integrity sha1-{g.b64(20)}", []


@T("neg-secret", "sri-script-tag", ho=True)
def _(g):
    return f"<script src=\"https://cdn.jsdelivr.net/npm/{g.word()}@{g.semver()}/dist/{g.word()}.min.js\" integrity=\"sha384-{g.b64(48)}\" crossorigin=\"anonymous\"></script>", []


@T("neg-secret", "pgp-fingerprints", ho=True)
def _(g):
    fp = g.hx(40).upper()
    return g.ch([f"pub   ed25519 {g.date()} [SC]\n      {fp}\nuid           [ultimate] Release Signing Key",
                 f"gpg: Signature made {g.date()} using RSA key {fp}\ngpg: Good signature from \"{g.word().capitalize()} Release Team\"",
                 f"Key fingerprint = {' '.join(fp[i:i + 4] for i in range(0, 40, 4))}"]), []


@T("neg-secret", "buildkit-log", ho=True)
def _(g):
    n = g.ri(2, 12)
    return (f"#{n} [{g.ri(1, 5)}/{g.ri(5, 9)}] RUN pip install --no-cache-dir -r requirements.txt\n#{n} CACHED\n\n#{n + 1} exporting to image\n"
            f"#{n + 1} exporting layers {g.ri(0, 9)}.{g.ri(0, 9)}s done\n#{n + 1} writing image sha256:{g.hx(64)} done\n#{n + 1} naming to docker.io/library/{g.word()}:latest done"), []


# ===========================================================================
# engine
# ===========================================================================

WRAP_PATHS = ["config/{w}.yml", ".env", "deploy/{w}.sh", "logs/{w}.log", "src/{w}.py", "etc/{w}.conf", "k8s/{w}.yaml",
              "scripts/{w}.ps1", "docs/{w}.md", "notes/{w}.txt", "ci/{w}.yml", "app/{w}.js"]


def wrap(g, text, spans):
    """Prefix a text with a little realistic context (grep -n, cat, a file header)."""
    path = g.ch(WRAP_PATHS).format(w=g.word())
    single = "\n" not in text
    k = g.ri(0, 4)
    if k == 0 and single:
        pre = f"{path}:{g.ri(1, 400)}:"
    elif k == 1:
        pre = f"$ cat {path}\n"
    elif k == 2:
        pre = f"# {path}\n"
    elif k == 3 and single:
        pre = f"{g.ri(1, 400):>6}\t"
    else:
        pre = f"==> {path} <==\n"
    return pre + text, [[s + len(pre), e + len(pre)] for s, e in spans]


EMAIL_RE = re.compile(r"(?<![\w.+%-])[\w.+-]+@([\w-]+(?:\.[\w-]+)+)")
CARD_RE = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
CARD_IIN = re.compile(r"^(?:3[47]|4|5[1-5]|2[2-7]|6011|65|35|36|62)")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
SSN_RE = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
IPV4_RE = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.])")
RESERVED_SUFFIX = (".example", ".test", ".invalid", ".localhost")
RESERVED_DOMAINS = ("example.com", "example.net", "example.org", "localhost")
OK_AT_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "ssh.dev.azure.com")


def reserved(domain):
    d = domain.lower()
    return d in RESERVED_DOMAINS or d.endswith(RESERVED_SUFFIX) or any(d.endswith("." + x) for x in RESERVED_DOMAINS)


def outside(spans, a, b):
    return all(b <= s or a >= e for s, e in spans)


def stray_pii(text, spans):
    """Sensitive-looking values outside the spans that would make the label wrong."""
    for m in EMAIL_RE.finditer(text):
        if not outside(spans, m.start(), m.end()):
            continue
        dom = m.group(1)
        tld = dom.rsplit(".", 1)[-1]
        if not tld.isalpha() or reserved(dom):
            continue
        if dom in OK_AT_HOSTS and text[m.end():m.end() + 1] == ":":
            continue
        tok_start = max(text.rfind(c, 0, m.start()) for c in " \t\n'\"<(=") + 1
        if "://" in text[tok_start:m.start()]:
            continue                       # URL userinfo, not an address
        return f"email-like {m.group(0)!r}"
    for m in CARD_RE.finditer(text):
        d = re.sub(r"\D", "", m.group(0))
        if outside(spans, m.start(), m.end()) and 13 <= len(d) <= 19 and CARD_IIN.match(d) and luhn_ok(d):
            if re.fullmatch(r"\d+", m.group(0)) or re.fullmatch(r"\d{4}([ -])\d{4,6}(\1\d{4,5})+", m.group(0)):
                return f"luhn-valid {m.group(0)!r}"
    for m in IBAN_RE.finditer(text):
        if outside(spans, m.start(), m.end()) and iban_ok(m.group(0)):
            return f"valid IBAN {m.group(0)!r}"
    for m in SSN_RE.finditer(text):
        if outside(spans, m.start(), m.end()) and ssn_ok(m.group(0)):
            return f"valid SSN {m.group(0)!r}"
    return None


def check_row(text, label, kind, spans):
    if label == "none":
        if spans:
            return "negative with spans"
    else:
        if not spans:
            return "positive without spans"
    last = -1
    for s, e in spans:
        if not (0 <= s < e <= len(text)) or s < last:
            return "bad span"
        v = text[s:e]
        if v != v.strip():
            return "span has outer whitespace"
        last = e
        if kind == "credit-card":
            d = re.sub(r"[ -]", "", v)
            if not (d.isdigit() and 13 <= len(d) <= 19 and luhn_ok(d)):
                return "card not Luhn-valid"
        elif kind == "iban" and not iban_ok(v):
            return "IBAN invalid"
        elif kind == "us-ssn" and not (SSN_RE.fullmatch(v) and ssn_ok(v)):
            return "SSN invalid"
        elif kind == "phone":
            n = len(re.sub(r"\D", "", v))
            if not 7 <= n <= 15:
                return "phone length"
        elif kind == "email":
            m = EMAIL_RE.fullmatch(v)
            if not m or reserved(m.group(1)):
                return "email invalid/reserved"
    if kind not in ("credit-card",):
        pass
    return stray_pii(text, spans)


def build_split(split, seed, taken_ids, taken_values):
    g = G(seed)
    PHONE_STATE["split"] = split
    rows, stats = [], collections.Counter()
    for cls, label, kind, n in CLASS_SPEC:
        tpls = [t for t in TEMPLATES if t.cls == cls and (split == "holdout" or not t.holdout_only)]
        assert tpls, cls
        order = list(tpls)
        g.r.shuffle(order)
        made = 0
        i = 0
        exhausted = set()
        while made < n:
            t = order[i % len(order)]
            i += 1
            if t.name in exhausted:
                if len(exhausted) == len(order):
                    raise RuntimeError(f"{split}/{cls}: all templates exhausted")
                continue
            ok = False
            for attempt in range(60):
                res = t.fn(g)
                text, spans = res[0], [list(x) for x in res[1]]
                k = (res[2] if len(res) > 2 and res[2] else kind)
                sub = res[3] if len(res) > 3 and res[3] else t.name
                if attempt >= 4 or g.p(0.2 if label == "none" else 0.1):
                    text, spans = wrap(g, text, spans)
                rid = "ht-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
                if rid in taken_ids:
                    stats["dup"] += 1
                    continue
                vals = [text[s:e] for s, e in spans]
                if any(v in taken_values.get(k, ()) for v in vals):
                    stats["value-reuse"] += 1
                    continue
                err = check_row(text, label, k, spans)
                if err:
                    stats["rejected: " + err.split(" ")[0]] += 1
                    continue
                ok = True
                break
            if not ok:
                exhausted.add(t.name)
                continue
            taken_ids.add(rid)
            for v in vals:
                taken_values.setdefault(k, set()).add(v)
            rows.append({"id": rid, "text": text, "label": label, "kind": k, "spans": spans,
                         "source": SOURCE, "subkind": sub, "_cls": cls, "_ho": t.holdout_only})
            made += 1
    g.r.shuffle(rows)
    return rows, stats


def holdout_only_names():
    out = collections.defaultdict(list)
    for t in TEMPLATES:
        if t.holdout_only:
            out[t.cls].append(t.name)
    return out


def unseen_form(row):
    """True when a holdout row comes from a form the tune file never has."""
    if row["_ho"]:
        return True
    if row["_cls"] == "phone":
        fmt = row["subkind"].rsplit("-", 1)[-1]
        return fmt in PHONE_FMTS_HO
    return False


def count_table(splits):
    keys = sorted({(r["label"], r["kind"]) for rows in splits.values() for r in rows},
                  key=lambda x: (["secret", "pii", "none"].index(x[0]), x[1]))
    lines_ = ["| label | kind | tune | holdout |", "|---|---|---:|---:|"]
    for lab, kind in keys:
        c = [sum(1 for r in splits[s] if r["label"] == lab and r["kind"] == kind) for s in ("tune", "holdout")]
        lines_.append(f"| {lab} | {kind} | {c[0]} | {c[1]} |")
    tot = [len(splits[s]) for s in ("tune", "holdout")]
    pos = [sum(1 for r in splits[s] if r["label"] != "none") for s in ("tune", "holdout")]
    lines_.append(f"| **all** | | {tot[0]} | {tot[1]} |")
    lines_.append(f"| positives | | {pos[0]} ({100 * pos[0] / tot[0]:.1f}%) | {pos[1]} ({100 * pos[1] / tot[1]:.1f}%) |")
    return "\n".join(lines_)


README_BEGIN = "<!-- gen_text.py: begin -->"
README_END = "<!-- gen_text.py: end -->"


def readme_section(splits, sizes):
    ho = holdout_only_names()
    unseen = sum(1 for r in splits["holdout"] if unseen_form(r))
    ho_lines = "\n".join(f"| {cls} | {', '.join('`' + n + '`' for n in names)} |" for cls, names in ho.items())
    return f"""{README_BEGIN}
## Text corpus: `text.tune.jsonl` / `text.holdout.jsonl`

Synthetic one-line-to-few-line texts (command lines, config files, env
dumps, logs, forms, program output) holding passwords, credentials in
connection URLs, generic secrets, phone numbers, e-mail addresses, card
numbers, IBANs and US SSNs — and many more look-alikes that are **not**
sensitive (hashes, ids, masked or templated values, stored password hashes,
vault-encrypted blobs, version strings, timestamps, `ps`/`df`/`ls` output,
placeholder e-mail domains, checksum-invalid cards and IBANs, invalid-range
SSNs, ...).  Negatives outnumber positives about 2:1 because the
false-positive rate matters as much as recall.

**Generator.** `gen_text.py` (Python 3 standard library only; deterministic —
rerunning it rewrites byte-identical files): `python3 guard/heldout/gen_text.py`.
It was written from the labelling policy of `shared/guard-corpus/README.md`
alone: without reading the guard's code, without running the guard, and
without copying rows of the development corpus.  Every text is assembled
from fragments, so each span is exact by construction; the generator then
checks every row (Luhn for cards, mod-97 for IBANs, SSN ranges, span bounds)
and rejects texts with a stray sensitive value outside the spans (a real-
domain e-mail address, a Luhn-valid card-prefixed digit run, a valid IBAN or
SSN) so labels stay right.  Ids are `ht-` + the first 12 hex digits of
sha1(text).  `subkind` names the template (for phones
`template:COUNTRY-format`).

**Row format** as in the development corpus (`id`, `text`, `label`, `kind`,
`spans`, plus `source: "{SOURCE}"` and `subkind`).  Kinds: `generic-password`
(passwords and passphrases in CLIs, non-database URLs, config files, code,
env dumps), `db-url` (database/queue URLs; span = the password),
`generic-secret`, `phone`, `email`, `credit-card`, `iban`, `us-ssn`, `none`.

**Splits.** Same generator, disjoint seeds ({SEEDS["tune"]} / {SEEDS["holdout"]}),
so different values; no text and no sensitive value of the holdout file
occurs in the tune file.  The holdout file also uses templates (and two
phone formats, `00`-prefixed international and dotted) that the tune file
never has — {unseen} of its {len(splits["holdout"])} rows are such unseen forms —
so it measures generalisation rather than memorised shapes:

| class | templates only in holdout |
|---|---|
{ho_lines}
| phone (formats) | `i00` (`0049 151 …`), `dots` (`+33.6.12…`, `06.12.34.56.78`, `212.736.4821`) |

**Rule.** `text.tune.jsonl` may be read, sliced and used to fix the guard.
`text.holdout.jsonl` is only *measured* (aggregate scores with
`shared/guard-corpus/score.py` or `flotilla guard eval`); never open it row by
row, never tune a rule, threshold or allow-list on its misses.  If the
holdout has been looked at, regenerate both files with new seeds.

**Counts** ({sizes["tune"] // 1024} KiB + {sizes["holdout"] // 1024} KiB):

{count_table(splits)}
{README_END}
"""


def write_readme(path, section):
    old = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    if README_BEGIN in old and README_END in old:
        a = old.index(README_BEGIN)
        b = old.index(README_END) + len(README_END)
        new = old[:a] + section.strip("\n") + old[b:]
    elif old:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        new = "# guard/heldout — held-out evaluation data for the privacy guard\n\n" + section
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()

    ho = holdout_only_names()
    for cls, *_ in CLASS_SPEC:
        assert len(ho.get(cls, [])) >= 3, f"{cls}: fewer than 3 holdout-only templates"
    names = [t.name for t in TEMPLATES]
    assert len(names) == len(set(names)), "duplicate template names"

    taken_ids, taken_values = set(), {}
    splits, sizes = {}, {}
    for split in ("tune", "holdout"):
        rows, stats = build_split(split, SEEDS[split], taken_ids, taken_values)
        splits[split] = rows
        path = os.path.join(args.out, f"text.{split}.jsonl")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for r in rows:
                f.write(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}, ensure_ascii=False) + "\n")
        sizes[split] = os.path.getsize(path)
        print(f"{path}: {len(rows)} rows, {sizes[split]} bytes; generator retries: {dict(sorted(stats.items()))}", file=sys.stderr)

    ips = sum(1 for rows in splits.values() for r in rows if IPV4_RE.search(r["text"]))
    print(f"rows with an IPv4-shaped token: {ips}", file=sys.stderr)
    print(count_table(splits))
    print()
    print("holdout-only templates:")
    for cls, nm in ho.items():
        print(f"  {cls}: {', '.join(nm)}")
    print(f"  phone formats: {', '.join(PHONE_FMTS_HO)}")
    unseen = sum(1 for r in splits["holdout"] if unseen_form(r))
    print(f"holdout rows from unseen forms: {unseen} / {len(splits['holdout'])}")
    if not args.no_readme:
        write_readme(os.path.join(args.out, "README.md"), readme_section(splits, sizes))


if __name__ == "__main__":
    main()
