#!/usr/bin/env python3
"""Fresh held-out test corpus for the privacy guard: forms the other generators never use.

Writes `fresh.jsonl` next to this file (and a section of README.md).

Every template here is new with respect to `gen_text.py` and `gen_keys.py`:
other tools, file formats, log formats, languages and surrounding context
(Ansible inventories, pgbouncer userlists, Redis ACLs, HAR dumps, Go panics,
Python tracebacks with locals, Terraform state, CloudTrail events, Jupyter
notebooks, Asterisk logs, HL7 segments, ...), plus about forty token vendors
the key generator does not know.  The labelling policy is the one of
`shared/guard-corpus/README.md` (and of the two sibling generators).

Python 3 standard library only and fully deterministic (fixed seed): private
keys are generated in pure Python (RSA, ECDSA P-256 / secp256k1, Ed25519) and
serialised as PKCS#1, SEC1, PKCS#8 and OpenSSH documents, so no tool output
has to be cached.  `--verify-keys` checks every generated key with OpenSSL
and ssh-keygen (optional; the data does not depend on it).

    python3 gen_fresh.py [--out FILE] [--no-readme] [--verify-keys]
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
import struct
import subprocess
import sys
import tempfile
import urllib.parse
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0x6A3F_2026_F5E1
SOURCE = "heldout-fresh"

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
        if p is None:
            return
        if isinstance(p, (tuple, list)):
            for q in p:
                add(q)
            return
        if isinstance(p, S):
            if len(p):
                spans.append([pos, pos + len(p)])
        out.append(str(p))
        pos += len(p)

    for p in parts:
        add(p)
    return "".join(out), spans


def nl(*parts):
    """mk() with a newline between the top-level parts."""
    seq = []
    for i, p in enumerate(parts):
        if i:
            seq.append("\n")
        seq.append(p)
    return mk(*seq)


def remap(text, spans, esc=None, prefix=None):
    """Rebuild text escaping each char and/or prefixing each line; move spans."""
    out, pos = [], 0
    starts, ends = [0] * len(text), [0] * len(text)
    line, at_start = 0, True
    for i, c in enumerate(text):
        if at_start and prefix is not None:
            p = prefix(line)
            out.append(p)
            pos += len(p)
        at_start = False
        e = esc(c) if esc else c
        starts[i] = pos
        out.append(e)
        pos += len(e)
        ends[i] = pos
        if c == "\n":
            line += 1
            at_start = True
    return "".join(out), [[starts[s], ends[e - 1]] for s, e in spans]


class Tpl:
    def __init__(self, cls, name, fn):
        self.cls, self.name, self.fn = cls, name, fn


TEMPLATES = []


def T(cls, name):
    def deco(fn):
        TEMPLATES.append(Tpl(cls, name, fn))
        return fn
    return deco


# class, label, kind (None: the template says), rows
CLASS_SPEC = [
    ("pw", "secret", "generic-password", 285),
    ("dburl", "secret", "db-url", 60),
    ("gsecret", "secret", "generic-secret", 100),
    ("token", "secret", None, 245),
    ("pkey", "secret", "private-key", 90),
    ("phone", "pii", "phone", 145),
    ("email", "pii", "email", 30),
    ("card", "pii", "credit-card", 25),
    ("iban", "pii", "iban", 25),
    ("ssn", "pii", "us-ssn", 20),
    ("neg-pw", "none", "none", 330),
    ("neg-phone", "none", "none", 330),
    ("neg-pii", "none", "none", 250),
    ("neg-key", "none", "none", 150),
    ("neg-token", "none", "none", 300),
    ("neg-secret", "none", "none", 520),
]

# ---------------------------------------------------------------------------
# alphabets and vocabularies (own lists, not the sibling generators')
# ---------------------------------------------------------------------------

DIG = string.digits
HEX = "0123456789abcdef"
HEXU = "0123456789ABCDEF"
LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
ALNUM = string.ascii_letters + string.digits
LOWERNUM = LOWER + DIG
UPPERNUM = UPPER + DIG
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
B32 = UPPER + "234567"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"
CRYPT64 = "./" + string.digits + string.ascii_uppercase + string.ascii_lowercase

WORDS = sorted(set("""
acorn alder alpine amber anvil apricot archer aspen aurora avocado azure badger
ballad barley basalt beacon bellow birch biscuit bison blaze bluebell bobcat
bonfire boulder bramble brisket bronco buckle bugle burrow butterfly cabana
calico camel canoe caramel cardinal cascade cashew cellar chariot cheetah
chestnut chili cider cinnamon citadel clipper cobble cocoa comet condor coral
corridor cosmos cottage coyote cranberry crater crescent crimson crocus crow
cypress dahlia delta dingo drizzle dromedary dusk dynamo easel egret elm
emerald ember estuary fable falcon fennel ferret fiddle firefly fjord flamingo
flannel flute foxglove fresco gadget galleon gazelle geyser ginkgo glacier
gondola gorge granola grotto gull halibut harbor harpoon hedgehog heron
hickory hillside hornet huckleberry hyacinth ibis icicle iguana inkwell
jackal jamboree javelin jetty juniper kelp kestrel kiwi lagoon lantern larch
lavender ledger lemonade lichen lilac limestone llama locket lodge lynx
macaw magnolia mallard mandolin mango marigold marmot marsh meadow mesa
mistral molasses monsoon moose mulberry mustang nebula nettle nightjar nomad
nougat nutmeg oasis obsidian ocelot octave olive orchard osprey otter paddock
pagoda papaya parsley pelican pepper peregrine persimmon petal pinecone
piston plateau plover polka pomelo poplar porcupine prairie primrose puffin
quarry quince quokka raccoon radish rambler raven redwood reindeer rhubarb
ridge riverbank robin rooster rosemary saffron sapphire sardine savanna
scarab sequoia sherbet shrimp sienna skylark slipper sorrel sparrow spindle
sprocket starling stingray sumac swallow sycamore tadpole tamarind tapir
teal thimble thrush tinder toucan trellis trillium truffle tulip turnip
umber urchin valley vanilla velvet verbena vineyard violet vulture walnut
warbler wasabi waterfall wheat whistle wicker willow wisteria wombat woodland
yak yarrow zeppelin zinnia
""".split()))

FIRST = """Arjun Kavya Vikram Sneha Rohan Deepika Anil Pooja Xiaoming Yan Lei Fang
Jun Ling Ethan Olivia Noah Emma Liam Ava Mason Sophia Putri Rizky Ayu Fajar
Wahyu Indah Imran Sana Zainab Ali Hira Usman Oluwaseun Chiamaka Ifeanyi
Folake Adaeze Babajide Thiago Larissa Gustavo Camila Rodrigo Juliana Arif
Tasnim Rakib Mim Shuvo Nadia Alexei Svetlana Pavel Ekaterina Nikolai Irina
Yonas Selam Bereket Liya Kalkidan Mulugeta Jimena Santiago Ximena Mateo
Renata Emiliano Kenji Sakura Takumi Yuna Daiki Mio Riya Harsh""".split()
LAST = """Verma Reddy Nair Kapoor Mehta Joshi Zhou Wu Xu Sun Ma Zhu Miller Davis
Wilson Moore Thompson Anderson Nugroho Saputra Kusuma Lestari Pratama
Siddiqui Butt Raza Chaudhry Sheikh Okonkwo Adebayo Nwosu Olawale Ogunleye
Costa Rodrigues Almeida Carvalho Ferreira Lima Islam Uddin Akter Begum
Sarkar Volkov Sokolova Morozov Popova Lebedev Alemu Kebede Tadesse Wolde
Ramirez Torres Flores Rivera Morales Jimenez Nakamura Kobayashi Yamamoto
Ito Kato Yoshida""".split()

ORGS = ["lumenfold.io", "quarrybyte.com", "tidewell.net", "orbitra.dev", "kestrelworks.co",
        "brightmoss.org", "northgale.tech", "copperline.eu", "saltmarsh-labs.com", "ferrovia.cloud"]
INTDOM = ["internal", "corp.lan", "svc.cluster.local", "infra.local", "prod.lan", "home.arpa"]

# ---------------------------------------------------------------------------
# escapes
# ---------------------------------------------------------------------------


def e_json(s):
    return json.dumps(s, ensure_ascii=False)[1:-1]


def e_sq(s):           # POSIX shell single quotes
    return s.replace("'", "'\\''")


def e_dq(s):           # POSIX shell double quotes
    return (s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`"))


def e_dbl(s):          # doubled single quote (SQL, YAML single-quoted, PowerShell)
    return s.replace("'", "''")


def e_xml(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def e_bs(s, q):        # backslash-escape quote q and backslash (Ruby/Python/JS/Perl/C#-normal)
    return s.replace("\\", "\\\\").replace(q, "\\" + q)


def e_url(s):          # URL userinfo component
    return urllib.parse.quote(s, safe="-._~!$&'()*+,;=")


def e_qs(s):
    return urllib.parse.quote(s, safe="-._~")


def b64s(b):
    return base64.b64encode(b).decode()


def b64u(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


# ---------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------


def luhn_ok(d):
    tot = 0
    for i, x in enumerate(int(c) for c in reversed(d)):
        if i % 2:
            x *= 2
            if x > 9:
                x -= 9
        tot += x
    return tot % 10 == 0


def luhn_complete(body):
    for c in DIG:
        if luhn_ok(body + c):
            return body + c
    raise AssertionError


IBAN_SPEC = {"DE": (22, "18n"), "GB": (22, "4a14n"), "FR": (27, "23n"), "ES": (24, "20n"), "IT": (27, "1a22n"),
             "NL": (18, "4a10n"), "BE": (16, "12n"), "AT": (20, "16n"), "PL": (28, "24n"), "PT": (25, "21n"),
             "CH": (21, "17n"), "SE": (24, "20n"), "FI": (18, "14n"), "IE": (22, "4a14n"), "DK": (18, "14n"),
             "NO": (15, "11n"), "CZ": (24, "20n"), "HU": (28, "24n"), "GR": (27, "23n"), "SA": (24, "20n"),
             "AE": (23, "19n"), "TR": (26, "22n"), "BR": (29, "23n1a1c"), "PK": (24, "4a16n"), "EG": (29, "25n")}
IBAN_BANKS = {"GB": ["NWBK", "BARC", "LOYD", "HBUK"], "NL": ["INGB", "ABNA", "RABO", "BUNQ"],
              "IE": ["AIBK", "BOFI"], "PK": ["SCBL", "HABB", "MUCB"]}


def iban_num(s):
    return int("".join(str(int(c, 36)) for c in s))


def iban_ok(s):
    s = s.replace(" ", "")
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", s):
        return False
    cc = s[:2]
    if cc not in IBAN_SPEC or len(s) != IBAN_SPEC[cc][0]:
        return False
    return iban_num(s[4:] + s[:4]) % 97 == 1


def ssn_ok(s):
    d = re.sub(r"[ -]", "", s)
    if not re.fullmatch(r"\d{9}", d):
        return False
    a, g_, n = int(d[:3]), int(d[3:5]), int(d[5:])
    if d in ("078051120", "219099999", "123456789"):
        return False
    return 0 < a < 900 and a != 666 and g_ > 0 and n > 0


CARD_RULES = [(r"4", (13, 16, 19)), (r"5[1-5]", (16,)), (r"2(2[2-9]|[3-6]\d|7[01]|720)", (16,)), (r"3[47]", (15,)),
              (r"6011|65|64[4-9]", (16, 19)), (r"35(2[89]|[3-8]\d)", (16, 19)), (r"3(0[0-5]|[68])", (14,)),
              (r"62", (16, 17, 18, 19))]


def card_brand_ok(d):
    return any(re.match(p, d) and len(d) in ls for p, ls in CARD_RULES)


def card_loose(d):
    """What a lenient card detector would accept: 13-19 digits, Luhn-valid, starting with 2-6."""
    return 13 <= len(d) <= 19 and d[0] in "23456" and luhn_ok(d)


# ---------------------------------------------------------------------------
# the random-value factory
# ---------------------------------------------------------------------------

SYMS = "!@#%^&*-_=+.?~:;,/$"


class G:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def ch(self, xs):
        return self.r.choice(xs)

    def ri(self, a, b):
        return self.r.randint(a, b)

    def p(self, x):
        return self.r.random() < x

    def sample(self, xs, k):
        return self.r.sample(xs, k)

    def dig(self, n):
        return "".join(self.r.choice(DIG) for _ in range(n))

    def nz(self, n):
        return self.ch("123456789") + self.dig(n - 1)

    def hx(self, n):
        return "".join(self.r.choice(HEX) for _ in range(n))

    def s(self, n, pool=ALNUM):
        return "".join(self.r.choice(pool) for _ in range(n))

    def rb(self, n):
        return bytes(self.r.getrandbits(8) for _ in range(n))

    def b64(self, n):
        return b64s(self.rb(n))

    def b64u(self, n):
        return b64u(self.rb(n))

    def uuid(self):
        h = self.hx(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{self.ch('89ab')}{h[17:20]}-{h[20:]}"

    def word(self):
        return self.ch(WORDS)

    def first(self):
        return self.ch(FIRST)

    def last(self):
        return self.ch(LAST)

    def name(self):
        return f"{self.first()} {self.last()}"

    def org(self):
        return self.ch(ORGS)

    def host(self, role="db"):
        k = self.ri(0, 3)
        if k == 0:
            return f"{role}{self.ri(1, 9)}.{self.ch(INTDOM)}"
        if k == 1:
            return f"{role}-{self.ch(['prod', 'stage', 'eu', 'us', 'a', 'b'])}.{self.ch(INTDOM)}"
        if k == 2:
            return f"{role}.{self.org()}"
        return f"{role}-{self.ri(1, 40):02d}.{self.org()}"

    def ihost(self, role="srv"):
        return f"{role}{self.ch(['', '-', '0'])}{self.ri(1, 40)}.{self.ch(INTDOM)}"

    def user(self):
        return self.ch(["svc_app", "deploy", "backup", "reporter", "etl_job", "api", "admin", "ops", "monitor",
                        "billing_rw", "jenkins", "gitea", "nextcloud", "sonar", "superset", "keycloak"])

    def db(self):
        return self.ch(["appdb", "orders", "ledger", "inventory", "crm", "warehouse", "events", "payments", "auth"])

    def date(self, sep="-"):
        return f"{self.ri(2025, 2026)}{sep}{self.ri(1, 12):02d}{sep}{self.ri(1, 28):02d}"

    def time(self):
        return f"{self.ri(0, 23):02d}:{self.ri(0, 59):02d}:{self.ri(0, 59):02d}"

    def iso(self, frac=3):
        f = "." + self.dig(frac) if frac else ""
        return f"{self.date()}T{self.time()}{f}Z"

    def ver(self):
        return f"{self.ri(0, 9)}.{self.ri(0, 30)}.{self.ri(0, 20)}"

    def epoch(self):
        return self.ri(1760000000, 1800000000)

    # ---- passwords ---------------------------------------------------------
    def pw_random(self):
        while True:
            s = self.s(self.ri(12, 26), ALNUM + SYMS)
            if (any(c.islower() for c in s) and any(c.isupper() for c in s) and any(c.isdigit() for c in s)
                    and any(c in SYMS for c in s)):
                return s

    def pw_words(self):
        a, b = self.word().capitalize(), self.word().capitalize()
        k = self.ri(0, 4)
        if k == 0:
            return f"{a}{b}{self.dig(self.ri(2, 4))}{self.ch('!#$%&*?')}"
        if k == 1:
            return f"{a}.{b.lower()}.{self.ri(10, 99)}"
        if k == 2:
            return f"{self.ch(['Monday', 'Friday', 'January', 'October', 'Kolkata', 'Lagos', 'Osaka'])}{self.ch('@#!')}{self.ri(2020, 2026)}"
        if k == 3:
            return f"{a}{self.ch('!@#')}{b}{self.dig(2)}"
        return f"{a.lower()}_{b.lower()}_{self.dig(3)}"

    def pw_passphrase(self):
        ws = [self.word() for _ in range(self.ri(3, 5))]
        sep = self.ch(["-", " ", ".", "_", "+", "~"])
        s = sep.join(ws)
        if self.p(0.4):
            s = s[0].upper() + s[1:] + sep + str(self.ri(1, 99))
        return s

    LEET = {"a": "4@", "e": "3", "i": "1!", "o": "0", "s": "5$", "t": "7", "b": "8", "g": "9"}

    def pw_leet(self):
        w = self.word() + self.word()
        s = "".join(self.ch(self.LEET[c]) if c in self.LEET and self.p(0.55) else c for c in w)
        s = s[0].upper() + s[1:]
        return s + self.dig(self.ri(1, 3)) + self.ch(["", "!", "#", "?"])

    def pw_alnum(self):
        while True:
            s = self.s(self.ri(14, 32))
            if any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s):
                return s

    def pw_unicode(self):
        k = self.ri(0, 3)
        if k == 0:
            return self.ch(["Привет", "Облако", "Ракета", "Тайга"]) + self.dig(3) + self.ch("!#%")
        if k == 1:
            return self.ch(["パスワード", "桜", "秘密の", "花火"]) + self.word().capitalize() + self.dig(2)
        if k == 2:
            return self.ch(["São", "Açaí", "Niño", "Jalapeño", "Kümmel"]) + "-" + self.word() + self.dig(3)
        return self.ch(["नमस्ते", "সোনার", "چاند"]) + self.word().capitalize() + self.dig(2) + "!"

    SHAPES = [("random", 24), ("words", 20), ("passphrase", 20), ("leet", 12), ("alnum", 14), ("unicode", 5)]

    def pw(self, forbid="", ascii_only=False, shape=None, minlen=6, lead_forbid=""):
        names = [s for s, _ in self.SHAPES]
        weights = [w for _, w in self.SHAPES]
        for _ in range(1000):
            sh = shape or self.r.choices(names, weights)[0]
            v = getattr(self, "pw_" + sh)()
            if any(c in forbid for c in v) or len(v) < minlen:
                continue
            if ascii_only and not v.isascii():
                continue
            if lead_forbid and v[0] in lead_forbid:
                continue
            if re.search(r"\$[{(A-Za-z_]|\{\{|<|>|\*\*\*|%\(|\$\$", v) or v != v.strip():
                continue
            return v
        raise RuntimeError("no password fits " + repr(forbid))

    def pw_url(self):
        return self.pw(forbid=" \"'\\`")

    def secret(self, kind=None):
        k = kind if kind is not None else self.ri(0, 5)
        if k == 0:
            return self.s(self.ri(32, 48))
        if k == 1:
            return self.hx(self.ch([32, 48, 64]))
        if k == 2:
            return self.b64(self.ch([24, 32, 48]))
        if k == 3:
            return self.b64u(self.ch([32, 48]))
        if k == 4:
            return self.s(self.ri(28, 44), ALNUM + "-_")
        return self.s(self.ri(40, 64), ALNUM + "!@#%^&*()-_=+")


def shq(g, s):
    """(open, S(body), close) for a shell word."""
    if re.fullmatch(r"[A-Za-z0-9@%+=:,./_^-]+", s) and s[0] not in "-" and g.p(0.5):
        return ("", S(s), "")
    if "'" not in s or g.p(0.5):
        return ("'", S(e_sq(s)), "'")
    return ('"', S(e_dq(s)), '"')


def yq(g, s):
    """(open, S(body), close) for a YAML scalar."""
    if (re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+=/@!%^~,?-]*", s) and s.lower() not in
            {"true", "false", "yes", "no", "on", "off", "null", "y", "n"} and not s.isdigit() and g.p(0.6)):
        return ("", S(s), "")
    if "'" not in s and g.p(0.5):
        return ("'", S(s), "'")
    return ('"', S(e_json(s)), '"')


# ---------------------------------------------------------------------------
# private keys, generated in pure Python from the seeded RNG
# ---------------------------------------------------------------------------

SMALL_PRIMES = [p for p in range(3, 3000) if all(p % q for q in range(2, int(p ** 0.5) + 1))]


def probable_prime(n, rng, rounds=12):
    if n < 2:
        return False
    for p in SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        a = rng.randrange(2, n - 2)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def gen_prime(rng, bits):
    while True:
        n = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        if probable_prime(n, rng):
            return n


def rsa_key(rng, bits):
    e = 65537
    while True:
        p, q = gen_prime(rng, bits // 2), gen_prime(rng, bits // 2)
        if p == q:
            continue
        if p < q:
            p, q = q, p
        lam = (p - 1) * (q - 1) // _gcd(p - 1, q - 1)
        if _gcd(e, lam) != 1:
            continue
        n = p * q
        if n.bit_length() != bits:
            continue
        d = pow(e, -1, lam)
        return {"type": "rsa", "bits": bits, "n": n, "e": e, "d": d, "p": p, "q": q,
                "dp": d % (p - 1), "dq": d % (q - 1), "qi": pow(q, -1, p)}


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


CURVES = {
    "p256": {"p": 2 ** 256 - 2 ** 224 + 2 ** 192 + 2 ** 96 - 1, "a": -3,
             "b": 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b,
             "gx": 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296,
             "gy": 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5,
             "n": 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551,
             "oid": "1.2.840.10045.3.1.7", "ssh": "nistp256"},
    "k256": {"p": 2 ** 256 - 2 ** 32 - 977, "a": 0, "b": 7,
             "gx": 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
             "gy": 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
             "n": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
             "oid": "1.3.132.0.10", "ssh": None},
}


def _ec_add(c, P, Q):
    p = c["p"]
    if P is None:
        return Q
    if Q is None:
        return P
    if P[0] == Q[0] and (P[1] + Q[1]) % p == 0:
        return None
    if P == Q:
        lam = (3 * P[0] * P[0] + c["a"]) * pow(2 * P[1], -1, p) % p
    else:
        lam = (Q[1] - P[1]) * pow(Q[0] - P[0], -1, p) % p
    x = (lam * lam - P[0] - Q[0]) % p
    return (x, (lam * (P[0] - x) - P[1]) % p)


def _ec_mul(c, k, P):
    R = None
    while k:
        if k & 1:
            R = _ec_add(c, R, P)
        P = _ec_add(c, P, P)
        k >>= 1
    return R


def ec_key(rng, curve):
    c = CURVES[curve]
    d = rng.randrange(1, c["n"])
    X, Y = _ec_mul(c, d, (c["gx"], c["gy"]))
    return {"type": "ec", "curve": curve, "d": d, "pub": b"\x04" + X.to_bytes(32, "big") + Y.to_bytes(32, "big")}


# Ed25519 (RFC 8032), only what is needed to derive the public key of a seed
_EQ = 2 ** 255 - 19
_ED = -121665 * pow(121666, -1, _EQ) % _EQ
_EI = pow(2, (_EQ - 1) // 4, _EQ)


def _ed_xrecover(y):
    xx = (y * y - 1) * pow(_ED * y * y + 1, -1, _EQ)
    x = pow(xx, (_EQ + 3) // 8, _EQ)
    if (x * x - xx) % _EQ:
        x = x * _EI % _EQ
    if x % 2:
        x = _EQ - x
    return x


_EBY = 4 * pow(5, -1, _EQ) % _EQ
_EB = (_ed_xrecover(_EBY), _EBY)


def _ed_add(P, Q):
    x1, y1 = P
    x2, y2 = Q
    t = _ED * x1 * x2 * y1 * y2
    return ((x1 * y2 + x2 * y1) * pow(1 + t, -1, _EQ) % _EQ, (y1 * y2 + x1 * x2) * pow(1 - t, -1, _EQ) % _EQ)


def _ed_mul(k, P):
    R = (0, 1)
    while k:
        if k & 1:
            R = _ed_add(R, P)
        P = _ed_add(P, P)
        k >>= 1
    return R


def ed25519_key(rng):
    seed = bytes(rng.getrandbits(8) for _ in range(32))
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    x, y = _ed_mul(a, _EB)
    pub = (y | ((x & 1) << 255)).to_bytes(32, "little")
    return {"type": "ed25519", "seed": seed, "pub": pub}


# --- DER / PEM ---------------------------------------------------------------


def _dlen(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlv(tag, body):
    return bytes([tag]) + _dlen(len(body)) + body


def d_int(x):
    b = x.to_bytes(max(1, (x.bit_length() + 8) // 8), "big")
    return _tlv(0x02, b)


def d_seq(*xs):
    return _tlv(0x30, b"".join(xs))


def d_oct(b):
    return _tlv(0x04, b)


def d_bits(b):
    return _tlv(0x03, b"\x00" + b)


def d_null():
    return b"\x05\x00"


def d_oid(s):
    parts = [int(x) for x in s.split(".")]
    out = bytes([40 * parts[0] + parts[1]])
    for v in parts[2:]:
        enc = [v & 0x7f]
        v >>= 7
        while v:
            enc.append(0x80 | (v & 0x7f))
            v >>= 7
        out += bytes(reversed(enc))
    return _tlv(0x06, out)


def d_ctx(n, body):
    return _tlv(0xa0 | n, body)


OID_RSA, OID_EC, OID_ED = "1.2.840.113549.1.1.1", "1.2.840.10045.2.1", "1.3.101.112"


def pem(label, der, width=64):
    b = b64s(der)
    return f"-----BEGIN {label}-----\n" + "\n".join(b[i:i + width] for i in range(0, len(b), width)) + f"\n-----END {label}-----"


def rsa_pkcs1_der(k):
    return d_seq(d_int(0), *(d_int(k[x]) for x in ("n", "e", "d", "p", "q", "dp", "dq", "qi")))


def ec_sec1_der(k, params=True):
    c = CURVES[k["curve"]]
    parts = [d_int(1), d_oct(k["d"].to_bytes(32, "big"))]
    if params:
        parts.append(d_ctx(0, d_oid(c["oid"])))
    parts.append(d_ctx(1, d_bits(k["pub"])))
    return d_seq(*parts)


def pkcs8_der(k):
    if k["type"] == "rsa":
        return d_seq(d_int(0), d_seq(d_oid(OID_RSA), d_null()), d_oct(rsa_pkcs1_der(k)))
    if k["type"] == "ec":
        return d_seq(d_int(0), d_seq(d_oid(OID_EC), d_oid(CURVES[k["curve"]]["oid"])), d_oct(ec_sec1_der(k, False)))
    return d_seq(d_int(0), d_seq(d_oid(OID_ED)), d_oct(d_oct(k["seed"])))


def spki_der(k):
    if k["type"] == "rsa":
        return d_seq(d_seq(d_oid(OID_RSA), d_null()), d_bits(d_seq(d_int(k["n"]), d_int(k["e"]))))
    if k["type"] == "ec":
        return d_seq(d_seq(d_oid(OID_EC), d_oid(CURVES[k["curve"]]["oid"])), d_bits(k["pub"]))
    return d_seq(d_seq(d_oid(OID_ED)), d_bits(k["pub"]))


# --- OpenSSH -------------------------------------------------------------------


def _sstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def _mpint(x):
    if x == 0:
        return _sstr(b"")
    return _sstr(x.to_bytes((x.bit_length() + 8) // 8, "big"))


def ssh_pub_blob(k):
    if k["type"] == "rsa":
        return _sstr("ssh-rsa") + _mpint(k["e"]) + _mpint(k["n"])
    if k["type"] == "ec":
        return _sstr("ecdsa-sha2-nistp256") + _sstr("nistp256") + _sstr(k["pub"])
    return _sstr("ssh-ed25519") + _sstr(k["pub"])


def ssh_keytype(k):
    return {"rsa": "ssh-rsa", "ec": "ecdsa-sha2-nistp256", "ed25519": "ssh-ed25519"}[k["type"]]


def ssh_pub_line(k, comment=""):
    return (ssh_keytype(k) + " " + b64s(ssh_pub_blob(k)) + (" " + comment if comment else "")).rstrip()


def openssh_private(k, comment, rng):
    check = struct.pack(">I", rng.getrandbits(32))
    if k["type"] == "rsa":
        body = _sstr("ssh-rsa") + b"".join(_mpint(k[x]) for x in ("n", "e", "d", "qi", "p", "q"))
    elif k["type"] == "ec":
        body = _sstr("ecdsa-sha2-nistp256") + _sstr("nistp256") + _sstr(k["pub"]) + _mpint(k["d"])
    else:
        body = _sstr("ssh-ed25519") + _sstr(k["pub"]) + _sstr(k["seed"] + k["pub"])
    priv = check + check + body + _sstr(comment)
    i = 1
    while len(priv) % 8:
        priv += bytes([i])
        i += 1
    blob = (b"openssh-key-v1\x00" + _sstr("none") + _sstr("none") + _sstr(b"") + struct.pack(">I", 1)
            + _sstr(ssh_pub_blob(k)) + _sstr(priv))
    b = b64s(blob)
    return ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(b[i:i + 70] for i in range(0, len(b), 70))
            + "\n-----END OPENSSH PRIVATE KEY-----")


def ssh_fp(k):
    return "SHA256:" + b64s(hashlib.sha256(ssh_pub_blob(k)).digest()).rstrip("=")


def jwk_public(k, kid):
    def b(x):
        return b64u(x.to_bytes((x.bit_length() + 7) // 8, "big"))
    if k["type"] == "rsa":
        return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b(k["n"]), "e": b(k["e"])}
    if k["type"] == "ec":
        return {"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256", "x": b64u(k["pub"][1:33]), "y": b64u(k["pub"][33:])}
    return {"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(k["pub"])}


class KeyFactory:
    """Deterministic pool of key documents; each private document is handed out once."""

    KINDS = [("rsa2048-pkcs8", 18), ("rsa2048-pkcs1", 14), ("rsa1024-pkcs1", 5), ("rsa3072-pkcs8", 3),
             ("p256-sec1", 11), ("p256-pkcs8", 7), ("k256-sec1", 4), ("ed25519-pkcs8", 8),
             ("openssh-ed25519", 12), ("openssh-rsa", 5), ("openssh-ecdsa", 3)]

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.keys = []          # (kind, key, private-pem)
        self.made = []          # every key, for the verifier
        self.pub_pool = []

    def _make(self, kind):
        r = self.rng
        if kind.startswith("rsa"):
            bits = int(kind[3:7])
            k = rsa_key(r, bits)
        elif kind.startswith("p256") or kind == "openssh-ecdsa":
            k = ec_key(r, "p256")
        elif kind.startswith("k256"):
            k = ec_key(r, "k256")
        elif kind == "openssh-rsa":
            k = rsa_key(r, 2048)
        else:
            k = ed25519_key(r)
        if kind.endswith("pkcs1"):
            doc = pem("RSA PRIVATE KEY", rsa_pkcs1_der(k))
        elif kind.endswith("sec1"):
            doc = pem("EC PRIVATE KEY", ec_sec1_der(k))
        elif kind.endswith("pkcs8"):
            doc = pem("PRIVATE KEY", pkcs8_der(k))
        else:
            comment = r.choice(["deploy@ci-runner", "backup@nas", "git@buildbox", "ops@bastion", "", "jenkins@agent-3"])
            doc = openssh_private(k, comment, r)
        self.made.append((kind, k, doc))
        return kind, k, doc

    def build(self):
        order = []
        for kind, n in self.KINDS:
            order += [kind] * n
        for kind in order:
            self.keys.append(self._make(kind))
        self.rng.shuffle(self.keys)
        # a separate set of keys whose public halves appear in negatives
        for kind in ["rsa2048-pkcs8"] * 10 + ["p256-sec1"] * 6 + ["ed25519-pkcs8"] * 8:
            self.pub_pool.append(self._make(kind)[1])

    def take(self):
        if not self.keys:       # retries used up the planned pool: make more
            return self._make(self.rng.choice([k for k, _ in self.KINDS]))
        return self.keys.pop()

    def pub(self, g):
        return g.ch(self.pub_pool)


# ---------------------------------------------------------------------------
# vendor tokens
# ---------------------------------------------------------------------------


def b62_crc(s):
    n = zlib.crc32(s.encode()) & 0xFFFFFFFF
    out = ""
    while n:
        out = B62[n % 62] + out
        n //= 62
    return out.rjust(6, "0")


def crc_token(g, prefix):
    body = g.s(30, B62)
    return prefix + body + b62_crc(body)


def jwt_token(g, style=None):
    now = g.epoch()
    style = style or g.ch(["session", "oidc", "service", "refresh"])
    alg = g.ch(["HS256", "HS256", "RS256", "ES256", "HS384"])
    hdr = {"alg": alg, "typ": "JWT"}
    if alg != "HS256" and g.p(0.6):
        hdr["kid"] = g.s(g.ch([8, 16, 27]), B64URL)
    if style == "session":
        pl = {"sid": g.hx(24), "uid": g.ri(100, 9999999), "role": g.ch(["member", "owner", "staff"]), "iat": now, "exp": now + 7200}
    elif style == "oidc":
        pl = {"iss": f"https://login.{g.org()}", "sub": g.uuid(), "aud": g.s(20, LOWERNUM), "email_verified": True,
              "nonce": g.s(16, B64URL), "iat": now, "exp": now + 3600}
    elif style == "service":
        pl = {"iss": f"{g.word()}-svc", "scope": g.ch(["orders:write", "reports:read inventory:read", "admin"]),
              "jti": g.uuid(), "iat": now, "exp": now + 600}
    else:
        pl = {"typ": "refresh", "sub": str(g.ri(10000, 9999999)), "iat": now, "exp": now + 2592000, "ver": g.ri(1, 9)}
    h = b64u(json.dumps(hdr, separators=(",", ":")).encode())
    p = b64u(json.dumps(pl, separators=(",", ":")).encode())
    siglen = {"HS256": 32, "HS384": 48, "RS256": 256, "ES256": 64}[alg]
    return f"{h}.{p}.{b64u(g.rb(siglen))}"


class Vendor:
    def __init__(self, rule, kind, forms, env, key, host, path="/", header=None, qparam=None, ctx=False,
                 weight=3, new=True, pair=None, special=(), public=None, prefix=None):
        self.rule, self.kind, self.forms, self.env, self.key = rule, kind, forms, env, key
        self.host, self.path, self.header, self.qparam, self.ctx = host, path, header, qparam, ctx
        self.weight, self.new, self.pair, self.special = weight, new, pair, special
        self.public, self.prefix = public, prefix

    def cred(self, g):
        """(variant, [(env, key, value, secret?), ...])"""
        if self.pair:
            return self.pair(g)
        variant, fn = g.ch(self.forms)
        return variant, [(g.ch(self.env), self.key, fn(g), True)]

    def single(self):
        return self.pair is None


def F(variant, fn):
    return (variant, fn)


def P(prefix, alphabet, n):
    return lambda g: prefix + g.s(n, alphabet)


def _aws_pair(g):
    kid = "ASIA" + g.s(16, B32)
    return "sts-legacy-session", [("AWS_ACCESS_KEY_ID", "aws_access_key_id", kid, True),
                                  ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", g.s(40, ALNUM + "+/"), True),
                                  ("AWS_SESSION_TOKEN", "aws_session_token", "FwoGZXIvYXdzE" + g.s(g.ch([200, 268, 320]), ALNUM + "+/") + "=", True)]


def _aws_longterm(g):
    return "akia-pair", [("AWS_ACCESS_KEY_ID", "aws_access_key_id", "AKIA" + g.s(16, B32), True),
                         ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", g.s(40, ALNUM + "+/"), True)]


def _intercom(g):
    raw = "tok:" + g.uuid().replace("-", "_") + ":1:0"
    return b64s(raw.encode())


def _tailscale(g):
    kind = g.ch(["auth", "auth", "api"])
    return f"tskey-{kind}-k{g.s(10, ALNUM)}CNTRL-{g.s(33, ALNUM)}"


def VENDORS():
    L = []
    A = L.append
    # ---- vendors the sibling generator does not have -----------------------
    A(Vendor("snyk", "api-key", [F("uuid", lambda g: g.uuid())], ["SNYK_TOKEN"], "snyk_token", "api.snyk.io",
             "/rest/self?version=2024-10-15", ("Authorization", "token "), ctx=True))
    A(Vendor("sumologic", "api-key", None, None, None, "api.sumologic.com", "/api/v1/collectors",
             pair=lambda g: ("access-pair", [("SUMO_ACCESS_ID", "access_id", "su" + g.s(12, ALNUM), True),
                                             ("SUMO_ACCESS_KEY", "access_key", g.s(64, ALNUM), True)])))
    A(Vendor("infracost", "api-key", [F("ico", P("ico-", ALNUM, 32))], ["INFRACOST_API_KEY"], "infracost_api_key",
             "pricing.api.infracost.io", "/graphql", ("X-Api-Key", ""), prefix="ico-"))
    A(Vendor("railway", "api-key", [F("uuid", lambda g: g.uuid())], ["RAILWAY_TOKEN", "RAILWAY_API_TOKEN"], "railway_token",
             "backboard.railway.app", "/graphql/v2", ("Authorization", "Bearer "), ctx=True))
    A(Vendor("upstash", "api-key", [F("rest-token", lambda g: "A" + g.ch("XYZ") + g.s(2, UPPER) + "ASQg" + g.s(g.ch([52, 60]), ALNUM) + "=")],
             ["UPSTASH_REDIS_REST_TOKEN"], "upstash_token", f"eu1-{'gentle'}-otter-31254.upstash.io", "/get/session",
             ("Authorization", "Bearer "), ctx=True))
    A(Vendor("clerk", "api-key", [F("sk_live", P("sk_live_", ALNUM, 46)), F("sk_test", P("sk_test_", ALNUM, 46))],
             ["CLERK_SECRET_KEY"], "clerk_secret_key", "api.clerk.com", "/v1/users?limit=10", ("Authorization", "Bearer "),
             prefix="sk_live_", public=lambda g: "pk_live_" + b64s(f"clerk.{g.org()}$".encode()).rstrip("=")))
    A(Vendor("mailjet", "api-key", None, None, None, "api.mailjet.com", "/v3.1/send",
             pair=lambda g: ("key-pair", [("MJ_APIKEY_PUBLIC", "api_key", g.hx(32), False),
                                          ("MJ_APIKEY_PRIVATE", "secret_key", g.hx(32), True)])))
    A(Vendor("postmark", "api-key", [F("server-token", lambda g: g.uuid())], ["POSTMARK_SERVER_TOKEN", "POSTMARK_API_TOKEN"],
             "postmark_server_token", "api.postmarkapp.com", "/email", ("X-Postmark-Server-Token", ""), ctx=True))
    A(Vendor("pagerduty", "api-key", [F("rest-20", P("", ALNUM + "_-", 20))], ["PAGERDUTY_TOKEN", "PD_API_KEY"],
             "pagerduty_api_token", "api.pagerduty.com", "/incidents?limit=5", ("Authorization", "Token token="), ctx=True))
    A(Vendor("adafruit-io", "api-key", [F("aio", P("aio_", ALNUM, 28))], ["ADAFRUIT_IO_KEY", "AIO_KEY"], "io_key",
             "io.adafruit.com", "/api/v2/user", ("X-AIO-Key", ""), qparam="x-aio-key", prefix="aio_"))
    A(Vendor("clojars", "api-key", [F("deploy-token", P("CLOJARS_", LOWERNUM, 60))], ["CLOJARS_DEPLOY_TOKEN", "CLOJARS_PASSWORD"],
             "deploy_token", "clojars.org", "/repo", prefix="CLOJARS_"))
    A(Vendor("duffel", "api-key", [F("live", P("duffel_live_", B64URL, 43)), F("test", P("duffel_test_", B64URL, 43))],
             ["DUFFEL_ACCESS_TOKEN"], "duffel_access_token", "api.duffel.com", "/air/offer_requests", ("Authorization", "Bearer "),
             prefix="duffel_live_"))
    A(Vendor("dynatrace", "api-key", [F("dt0c01", lambda g: "dt0c01." + g.s(24, UPPERNUM) + "." + g.s(64, UPPERNUM))],
             ["DT_API_TOKEN", "DYNATRACE_API_TOKEN"], "api_token", "kzb41290.live.dynatrace.com", "/api/v2/metrics/ingest",
             ("Authorization", "Api-Token "), qparam="Api-Token", prefix="dt0c01."))
    A(Vendor("easypost", "api-key", [F("EZAK", P("EZAK", ALNUM, 54)), F("EZTK", P("EZTK", ALNUM, 54))],
             ["EASYPOST_API_KEY"], "easypost_api_key", "api.easypost.com", "/v2/shipments", prefix="EZAK"))
    A(Vendor("frameio", "api-key", [F("fio-u", P("fio-u-", B64URL, 64))], ["FRAMEIO_TOKEN"], "frameio_token", "api.frame.io",
             "/v2/me", ("Authorization", "Bearer "), prefix="fio-u-"))
    A(Vendor("prefect", "api-key", [F("pnu", P("pnu_", ALNUM, 36))], ["PREFECT_API_KEY"], "prefect_api_key", "api.prefect.cloud",
             "/api/me/", ("Authorization", "Bearer "), prefix="pnu_"))
    A(Vendor("readme", "api-key", [F("rdme", P("rdme_", LOWERNUM, 70))], ["README_API_KEY", "RDME_API_KEY"], "readme_api_key",
             "dash.readme.com", "/api/v1/categories", prefix="rdme_"))
    A(Vendor("scalingo", "api-key", [F("tk-us", P("tk-us-", B64URL, 48))], ["SCALINGO_API_TOKEN"], "scalingo_token",
             "auth.scalingo.com", "/v1/tokens/exchange", prefix="tk-us-"))
    A(Vendor("shippo", "api-key", [F("live", P("shippo_live_", HEX, 40)), F("test", P("shippo_test_", HEX, 40))],
             ["SHIPPO_API_TOKEN", "SHIPPO_API_KEY"], "shippo_token", "api.goshippo.com", "/shipments/",
             ("Authorization", "ShippoToken "), prefix="shippo_live_"))
    A(Vendor("typeform", "api-key", [F("tfp", lambda g: "tfp_" + g.s(44, B64URL) + "_" + g.s(14, ALNUM))], ["TYPEFORM_TOKEN"],
             "typeform_token", "api.typeform.com", "/forms?page_size=20", ("Authorization", "Bearer "), prefix="tfp_"))
    A(Vendor("fastly", "api-key", [F("32b64url", P("", B64URL, 32))], ["FASTLY_API_TOKEN", "FASTLY_API_KEY"], "fastly_api_token",
             "api.fastly.com", "/service?page=1", ("Fastly-Key", ""), ctx=True))
    A(Vendor("sourcegraph", "api-key", [F("sgp", P("sgp_", HEX, 40)), F("sgp-v2", lambda g: "sgp_" + g.hx(16) + "_" + g.hx(40))],
             ["SRC_ACCESS_TOKEN"], "sourcegraph_token", "sourcegraph.quarrybyte.com", "/.api/graphql", ("Authorization", "token "),
             prefix="sgp_"))
    A(Vendor("harness", "api-key", [F("pat", lambda g: "pat." + g.s(22, B64URL) + "." + g.s(24, ALNUM) + "." + g.s(20, ALNUM)),
                                    F("sat", lambda g: "sat." + g.s(22, B64URL) + "." + g.s(24, ALNUM) + "." + g.s(20, ALNUM))],
             ["HARNESS_API_KEY", "HARNESS_PLATFORM_API_KEY"], "harness_api_key", "app.harness.io", "/ng/api/user/currentUser",
             ("x-api-key", ""), prefix="pat."))
    A(Vendor("octopus", "api-key", [F("API-", P("API-", UPPERNUM, 26))], ["OCTOPUS_API_KEY", "OCTOPUS_CLI_API_KEY"],
             "octopus_api_key", "deploy.kestrelworks.co", "/api/projects/all", ("X-Octopus-ApiKey", ""), qparam="apikey",
             prefix="API-"))
    A(Vendor("linode", "api-key", [F("64hex", P("", HEX, 64))], ["LINODE_TOKEN", "LINODE_CLI_TOKEN"], "linode_token",
             "api.linode.com", "/v4/profile", ("Authorization", "Bearer "), ctx=True))
    A(Vendor("hetzner", "api-key", [F("64alnum", P("", ALNUM, 64))], ["HCLOUD_TOKEN"], "hcloud_token", "api.hetzner.cloud",
             "/v1/servers", ("Authorization", "Bearer "), ctx=True))
    A(Vendor("scaleway", "api-key", None, None, None, "api.scaleway.com", "/instance/v1/zones/fr-par-1/servers",
             ("X-Auth-Token", ""),
             pair=lambda g: ("key-pair", [("SCW_ACCESS_KEY", "access_key", "SCW" + g.s(17, UPPERNUM), False),
                                          ("SCW_SECRET_KEY", "secret_key", g.uuid(), True)])))
    A(Vendor("confluent", "api-key", None, None, None, "api.confluent.cloud", "/org/v2/environments",
             pair=lambda g: ("cloud-key-pair", [("CONFLUENT_CLOUD_API_KEY", "api_key", g.s(16, UPPERNUM), False),
                                                ("CONFLUENT_CLOUD_API_SECRET", "api_secret", g.s(64, ALNUM + "+/"), True)])))
    A(Vendor("cloudinary", "api-key", None, None, None, "api.cloudinary.com", "/v1_1/demo/resources/image",
             pair=lambda g: ("key-pair", [("CLOUDINARY_API_KEY", "api_key", g.nz(15), False),
                                          ("CLOUDINARY_API_SECRET", "api_secret", g.s(27, B64URL), True)]),
             special=("cloudinary-url",)))
    A(Vendor("intercom", "api-key", [F("dG9rOj", _intercom)], ["INTERCOM_ACCESS_TOKEN"], "intercom_token", "api.intercom.io",
             "/me", ("Authorization", "Bearer "), prefix="dG9rO"))
    A(Vendor("yandex-cloud", "api-key", [F("AQVN", P("AQVN", B64URL, 36))], ["YC_API_KEY", "YANDEX_API_KEY"], "api_key",
             "llm.api.cloud.yandex.net", "/foundationModels/v1/completion", ("Authorization", "Api-Key "), prefix="AQVN"))
    A(Vendor("flutterwave", "api-key", [F("live", lambda g: "FLWSECK-" + g.hx(32) + "-X"),
                                        F("test", lambda g: "FLWSECK_TEST-" + g.hx(32) + "-X")],
             ["FLW_SECRET_KEY", "FLUTTERWAVE_SECRET_KEY"], "secret_key", "api.flutterwave.com", "/v3/transactions",
             ("Authorization", "Bearer "), prefix="FLWSECK-",
             public=lambda g: "FLWPUBK-" + g.hx(32) + "-X"))
    A(Vendor("paystack", "api-key", [F("live", P("sk_live_", HEX, 40)), F("test", P("sk_test_", HEX, 40))],
             ["PAYSTACK_SECRET_KEY"], "paystack_secret_key", "api.paystack.co", "/transaction/verify/ref_81x",
             ("Authorization", "Bearer "), prefix="sk_live_", public=lambda g: "pk_live_" + g.hx(40)))
    A(Vendor("mercadopago", "api-key", [F("APP_USR", lambda g: f"APP_USR-{g.nz(16)}-{g.dig(6)}-{g.hx(32)}-{g.nz(9)}"),
                                        F("TEST", lambda g: f"TEST-{g.nz(16)}-{g.dig(6)}-{g.hx(32)}-{g.nz(9)}")],
             ["MP_ACCESS_TOKEN", "MERCADOPAGO_ACCESS_TOKEN"], "access_token", "api.mercadopago.com", "/v1/payments/search",
             ("Authorization", "Bearer "), prefix="APP_USR-"))
    A(Vendor("launchdarkly", "api-key", [F("sdk", lambda g: "sdk-" + g.uuid()), F("api", lambda g: "api-" + g.uuid())],
             ["LAUNCHDARKLY_SDK_KEY", "LD_SDK_KEY", "LD_API_KEY"], "sdk_key", "app.launchdarkly.com", "/api/v2/flags/default",
             ("Authorization", ""), prefix="sdk-"))
    A(Vendor("rollbar", "api-key", [F("32hex", P("", HEX, 32))], ["ROLLBAR_ACCESS_TOKEN", "ROLLBAR_TOKEN"],
             "rollbar_access_token", "api.rollbar.com", "/api/1/item/", ("X-Rollbar-Access-Token", ""), qparam="access_token",
             ctx=True))
    A(Vendor("codecov", "api-key", [F("uuid", lambda g: g.uuid())], ["CODECOV_TOKEN"], "codecov_token", "codecov.io",
             "/upload/v4", ("Authorization", "token "), qparam="token", ctx=True))
    A(Vendor("deno-deploy", "api-key", [F("ddp", P("ddp_", ALNUM, 36))], ["DENO_DEPLOY_TOKEN"], "deploy_token",
             "api.deno.com", "/v1/organizations/acme/projects", ("Authorization", "Bearer "), prefix="ddp_"))
    A(Vendor("kaggle", "api-key", None, None, None, "www.kaggle.com", "/api/v1/datasets/list",
             pair=lambda g: ("kaggle-json", [("KAGGLE_USERNAME", "username", g.first().lower() + g.dig(2), False),
                                             ("KAGGLE_KEY", "key", g.hx(32), True)]),
             special=("kaggle-json",)))
    A(Vendor("trello", "api-key", None, None, None, "api.trello.com", "/1/members/me/boards", qparam="token",
             pair=lambda g: ("ATTA", [("TRELLO_API_KEY", "key", g.hx(32), False),
                                      ("TRELLO_TOKEN", "token", "ATTA" + g.hx(64) + g.s(8, HEXU), True)])))
    A(Vendor("tailscale", "api-key", [F("tskey", _tailscale)], ["TS_AUTHKEY", "TAILSCALE_AUTHKEY", "TS_API_KEY"],
             "authkey", "api.tailscale.com", "/api/v2/tailnet/-/devices", ("Authorization", "Bearer "), prefix="tskey-",
             special=("tailscale-up",)))
    A(Vendor("ngrok", "api-key", [F("authtoken", lambda g: "2" + g.s(26, ALNUM) + "_" + g.s(21, ALNUM))],
             ["NGROK_AUTHTOKEN"], "authtoken", "api.ngrok.com", "/tunnels", ctx=True, special=("ngrok-config",)))
    A(Vendor("azure-sas", "api-key", [F("sig", lambda g: g.b64(32))], ["AZURE_STORAGE_SAS_URL"], "sas_url",
             "acmedata.blob.core.windows.net", "/", special=("azure-sas-url",)))
    A(Vendor("auth0", "api-key", None, None, None, "login.lumenfold.io", "/oauth/token",
             pair=lambda g: ("client-credentials", [("AUTH0_CLIENT_ID", "client_id", g.s(32, ALNUM), False),
                                                    ("AUTH0_CLIENT_SECRET", "client_secret", g.s(64, B64URL), True)])))
    # ---- vendors of the sibling generator, in renderings it never uses ----------
    A(Vendor("aws", "aws-access-key", None, None, None, "sts.amazonaws.com", "/", weight=7, new=False,
             pair=lambda g: _aws_pair(g) if g.p(0.5) else _aws_longterm(g), special=("s3cfg", "rclone-s3", "boto-config")))
    A(Vendor("github", "github-token", [F("ghp", lambda g: crc_token(g, "ghp_")), F("gho", lambda g: crc_token(g, "gho_")),
                                       F("ghs", lambda g: crc_token(g, "ghs_")),
                                       F("github_pat", lambda g: "github_pat_11" + g.s(20, UPPERNUM) + "_" + g.s(59, ALNUM))],
             ["GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN"], "oauth_token", "api.github.com", "/user/repos",
             ("Authorization", "token "), weight=8, new=False, prefix="ghp_", special=("gh-hosts-yml",)))
    A(Vendor("gitlab", "gitlab-token", [F("glpat", P("glpat-", B64URL, 20)), F("glrt", P("glrt-", B64URL, 20)),
                                       F("glptt", P("glptt-", HEX, 40))],
             ["GITLAB_TOKEN", "GITLAB_PRIVATE_TOKEN"], "private_token", "gitlab.com", "/api/v4/projects?membership=true",
             ("PRIVATE-TOKEN", ""), qparam="private_token", weight=6, new=False, prefix="glpat-"))
    A(Vendor("slack", "slack-token", [F("xoxb", lambda g: f"xoxb-{g.nz(12)}-{g.nz(13)}-{g.s(24, ALNUM)}"),
                                      F("xoxp", lambda g: f"xoxp-{g.nz(12)}-{g.nz(12)}-{g.nz(13)}-{g.hx(32)}")],
             ["SLACK_BOT_TOKEN", "SLACK_TOKEN"], "bot_token", "slack.com", "/api/chat.postMessage", ("Authorization", "Bearer "),
             qparam="token", weight=5, new=False, prefix="xoxb-"))
    A(Vendor("slack-webhook", "slack-webhook", [F("services", lambda g: f"https://hooks.slack.com/services/T{g.s(10, UPPERNUM)}/B{g.s(10, UPPERNUM)}/{g.s(24, ALNUM)}")],
             ["SLACK_WEBHOOK_URL"], "webhook_url", "hooks.slack.com", "/", weight=4, new=False, prefix="https://hooks.slack.com/services/"))
    A(Vendor("stripe", "stripe-key", [F("sk_live", P("sk_live_", ALNUM, 99 - 8)), F("rk_live", P("rk_live_", ALNUM, 99 - 8)),
                                      F("sk_live_51", P("sk_live_51", ALNUM, 96)), F("whsec", P("whsec_", ALNUM, 32))],
             ["STRIPE_SECRET_KEY", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"], "secret_key", "api.stripe.com", "/v1/charges?limit=3",
             ("Authorization", "Bearer "), weight=6, new=False, prefix="sk_live_",
             public=lambda g: "pk_live_51" + g.s(96, ALNUM)))
    A(Vendor("google", "google-api-key", [F("AIza", P("AIza", B64URL, 35))], ["GOOGLE_API_KEY", "GEMINI_API_KEY", "PLACES_API_KEY"],
             "api_key", "maps.googleapis.com", "/maps/api/geocode/json?address=Pune", ("x-goog-api-key", ""), qparam="key",
             weight=5, new=False, prefix="AIza"))
    A(Vendor("openai", "openai-key", [F("sk-proj", lambda g: "sk-proj-" + g.s(74, B64URL) + "T3BlbkFJ" + g.s(74, B64URL)),
                                      F("sk-svcacct", lambda g: "sk-svcacct-" + g.s(58, B64URL) + "T3BlbkFJ" + g.s(58, B64URL))],
             ["OPENAI_API_KEY"], "openai_api_key", "api.openai.com", "/v1/responses", ("Authorization", "Bearer "),
             weight=5, new=False, prefix="sk-proj-"))
    A(Vendor("anthropic", "api-key", [F("sk-ant-api03", lambda g: "sk-ant-api03-" + g.s(93, B64URL) + "AA")], ["ANTHROPIC_API_KEY"],
             "anthropic_api_key", "api.anthropic.com", "/v1/messages", ("x-api-key", ""), weight=4, new=False, prefix="sk-ant-"))
    A(Vendor("npm", "api-key", [F("npm", lambda g: crc_token(g, "npm_"))], ["NPM_TOKEN", "NODE_AUTH_TOKEN"], "npm_token",
             "registry.npmjs.org", "/-/whoami", ("Authorization", "Bearer "), weight=3, new=False, prefix="npm_"))
    A(Vendor("huggingface", "api-key", [F("hf", P("hf_", string.ascii_letters, 34))], ["HF_TOKEN", "HUGGINGFACEHUB_API_TOKEN"],
             "hf_token", "huggingface.co", "/api/whoami-v2", ("Authorization", "Bearer "), weight=3, new=False, prefix="hf_"))
    A(Vendor("sendgrid", "api-key", [F("SG", lambda g: "SG." + g.s(22, B64URL) + "." + g.s(43, B64URL))], ["SENDGRID_API_KEY"],
             "sendgrid_api_key", "api.sendgrid.com", "/v3/mail/send", ("Authorization", "Bearer "), weight=3, new=False, prefix="SG."))
    A(Vendor("twilio", "api-key", None, None, None, "api.twilio.com", "/2010-04-01/Accounts.json", weight=3, new=False,
             pair=lambda g: ("account-auth-token", [("TWILIO_ACCOUNT_SID", "account_sid", "AC" + g.hx(32), False),
                                                    ("TWILIO_AUTH_TOKEN", "auth_token", g.hx(32), True)])))
    A(Vendor("digitalocean", "api-key", [F("dop_v1", P("dop_v1_", HEX, 64))], ["DIGITALOCEAN_ACCESS_TOKEN"], "do_token",
             "api.digitalocean.com", "/v2/droplets", ("Authorization", "Bearer "), weight=3, new=False, prefix="dop_v1_"))
    A(Vendor("shopify", "api-key", [F("shpat", P("shpat_", HEX, 32)), F("shpca", P("shpca_", HEX, 32)), F("shppa", P("shppa_", HEX, 32))],
             ["SHOPIFY_ADMIN_TOKEN", "SHOPIFY_ACCESS_TOKEN"], "access_token", "lumenfold.myshopify.com",
             "/admin/api/2025-01/orders.json", ("X-Shopify-Access-Token", ""), weight=3, new=False, prefix="shpat_"))
    A(Vendor("square", "api-key", [F("EAAA", P("EAAA", B64URL, 60))], ["SQUARE_ACCESS_TOKEN"], "square_access_token",
             "connect.squareup.com", "/v2/payments", ("Authorization", "Bearer "), weight=3, new=False, prefix="EAAA"))
    A(Vendor("doppler", "api-key", [F("dp.st", lambda g: "dp.st.prd." + g.s(43, ALNUM)), F("dp.pt", P("dp.pt.", ALNUM, 43))],
             ["DOPPLER_TOKEN"], "doppler_token", "api.doppler.com", "/v3/configs/config/secrets/download?format=json",
             ("Authorization", "Bearer "), weight=3, new=False, prefix="dp.st."))
    A(Vendor("databricks", "api-key", [F("dapi", P("dapi", HEX, 32))], ["DATABRICKS_TOKEN"], "token",
             "adb-5817263541092837.11.azuredatabricks.net", "/api/2.0/clusters/list", ("Authorization", "Bearer "), weight=3,
             new=False, prefix="dapi", special=("databrickscfg",)))
    A(Vendor("terraform-cloud", "api-key", [F("atlasv1", lambda g: g.s(14, ALNUM) + ".atlasv1." + g.s(67, B64URL))],
             ["TFE_TOKEN", "TF_TOKEN_app_terraform_io"], "token", "app.terraform.io", "/api/v2/account/details",
             ("Authorization", "Bearer "), weight=3, new=False, prefix=".atlasv1.", special=("tfrc-json",)))
    A(Vendor("heroku", "api-key", [F("HRKU", P("HRKU-AA", B64URL, 58))], ["HEROKU_API_KEY"], "heroku_api_key",
             "api.heroku.com", "/apps", ("Authorization", "Bearer "), weight=2, new=False, prefix="HRKU-"))
    A(Vendor("datadog", "api-key", [F("32hex", P("", HEX, 32))], ["DD_API_KEY", "DATADOG_API_KEY"], "datadog_api_key",
             "api.datadoghq.eu", "/api/v1/validate", ("DD-API-KEY", ""), weight=3, new=False, ctx=True))
    A(Vendor("sentry", "api-key", [F("sntryu", P("sntryu_", HEX, 64))], ["SENTRY_AUTH_TOKEN"], "auth_token", "sentry.io",
             "/api/0/projects/", ("Authorization", "Bearer "), weight=2, new=False, prefix="sntryu_"))
    A(Vendor("groq", "api-key", [F("gsk", P("gsk_", ALNUM, 52))], ["GROQ_API_KEY"], "groq_api_key", "api.groq.com",
             "/openai/v1/models", ("Authorization", "Bearer "), weight=2, new=False, prefix="gsk_"))
    A(Vendor("linear", "api-key", [F("lin_api", P("lin_api_", ALNUM, 40))], ["LINEAR_API_KEY"], "linear_api_key",
             "api.linear.app", "/graphql", ("Authorization", ""), weight=2, new=False, prefix="lin_api_"))
    A(Vendor("figma", "api-key", [F("figd", P("figd_", B64URL, 40))], ["FIGMA_TOKEN"], "figma_token", "api.figma.com",
             "/v1/me", ("X-Figma-Token", ""), weight=2, new=False, prefix="figd_"))
    A(Vendor("postman", "api-key", [F("PMAK", lambda g: "PMAK-" + g.hx(24) + "-" + g.hx(34))], ["POSTMAN_API_KEY"],
             "postman_api_key", "api.getpostman.com", "/collections", ("X-Api-Key", ""), weight=2, new=False, prefix="PMAK-"))
    A(Vendor("newrelic", "api-key", [F("NRAK", P("NRAK-", UPPERNUM, 27)), F("NRII", P("NRII-", B64URL, 32))],
             ["NEW_RELIC_API_KEY", "NEW_RELIC_INSERT_KEY"], "api_key", "api.eu.newrelic.com", "/graphql", ("API-Key", ""),
             weight=2, new=False, prefix="NRAK-"))
    A(Vendor("grafana", "api-key", [F("glsa", lambda g: "glsa_" + g.s(32, ALNUM) + "_" + g.hx(8))], ["GRAFANA_TOKEN"],
             "grafana_token", "grafana.tidewell.net", "/api/search", ("Authorization", "Bearer "), weight=2, new=False,
             prefix="glsa_"))
    A(Vendor("vault", "api-key", [F("hvs", lambda g: "hvs.CAESI" + g.s(86, B64URL))], ["VAULT_TOKEN"], "vault_token",
             "vault.tidewell.net:8200", "/v1/kv/data/app", ("X-Vault-Token", ""), weight=2, new=False, prefix="hvs."))
    A(Vendor("pulumi", "api-key", [F("pul", P("pul-", HEX, 40))], ["PULUMI_ACCESS_TOKEN"], "pulumi_token", "api.pulumi.com",
             "/api/user/stacks", ("Authorization", "token "), weight=2, new=False, prefix="pul-"))
    A(Vendor("dockerhub", "api-key", [F("dckr_pat", P("dckr_pat_", B64URL, 27))], ["DOCKERHUB_TOKEN"], "dockerhub_token",
             "hub.docker.com", "/v2/repositories/acme/", ("Authorization", "Bearer "), weight=2, new=False, prefix="dckr_pat_"))
    A(Vendor("jwt", "jwt", [F("jwt", lambda g: jwt_token(g))], ["ACCESS_TOKEN", "ID_TOKEN", "SESSION_JWT"], "access_token",
             "api.orbitra.dev", "/v2/me", ("Authorization", "Bearer "), qparam="access_token", weight=10, new=False,
             prefix="eyJ", special=("cookie-header", "oauth-fragment", "localstorage-dump")))
    return L


# ---------------------------------------------------------------------------
# a JSON writer that keeps S() fragments (so spans survive serialisation)
# ---------------------------------------------------------------------------


class C(list):
    """One JSON/config string made of plain and S() pieces."""


def jdump(o, indent=None, compact=False):
    out = []
    isep = "," if (indent is not None or compact) else ", "
    ksep = ":" if compact else ": "

    def w(x, lvl):
        if isinstance(x, dict):
            if not x:
                out.append("{}")
                return
            out.append("{")
            items = list(x.items())
            for i, (k, val) in enumerate(items):
                if indent is not None:
                    out.append("\n" + " " * (indent * (lvl + 1)))
                out.append(json.dumps(k, ensure_ascii=False) + ksep)
                w(val, lvl + 1)
                if i < len(items) - 1:
                    out.append(isep)
            if indent is not None:
                out.append("\n" + " " * (indent * lvl))
            out.append("}")
        elif isinstance(x, C):
            out.append('"')
            for piece in x:
                out.append(S(e_json(piece)) if isinstance(piece, S) else e_json(piece))
            out.append('"')
        elif isinstance(x, list):
            if not x:
                out.append("[]")
                return
            out.append("[")
            for i, val in enumerate(x):
                if indent is not None:
                    out.append("\n" + " " * (indent * (lvl + 1)))
                w(val, lvl + 1)
                if i < len(x) - 1:
                    out.append(isep)
            if indent is not None:
                out.append("\n" + " " * (indent * lvl))
            out.append("]")
        elif isinstance(x, S):
            out.extend(['"', S(e_json(x)), '"'])
        elif isinstance(x, str):
            out.append(json.dumps(x, ensure_ascii=False))
        else:
            out.append(json.dumps(x))

    w(o, 0)
    return out


def camel(k):
    k = k.lstrip(":")
    ps = re.split(r"[_.]", k)
    return ps[0] + "".join(x.capitalize() for x in ps[1:])


def pascal(k):
    c = camel(k)
    return c[:1].upper() + c[1:]


def mainp(parts):
    sec = [p for p in parts if p[3]]
    return (sec or parts)[-1]


# ---------------------------------------------------------------------------
# token renderings (none of them is used by gen_keys.py / gen_text.py)
# parts: [(env, key, value, secret?)]; value is an S() in positive rows
# ---------------------------------------------------------------------------

def rr_tfstate(g, v, parts):
    attrs = {"id": f"{v.rule}-{g.hx(8)}"}
    for env, key, val, _ in parts:
        attrs[key.lstrip(":")] = val
    attrs["description"] = g.ch(["managed by terraform", f"{g.word()} integration", None])
    inst = {"schema_version": 0, "attributes": attrs, "sensitive_attributes": [], "private": "bnVsbA=="}
    res = {"mode": "managed", "type": f"{v.rule.replace('-', '_')}_{g.ch(['integration', 'connection', 'credential'])}",
           "name": g.word(), "provider": f'provider["registry.terraform.io/{g.ch(["acme", "community", "lumenfold"])}/{v.rule}"]',
           "instances": [inst]}
    doc = {"version": 4, "terraform_version": f"1.{g.ri(5, 10)}.{g.ri(0, 5)}", "serial": g.ri(2, 400), "lineage": g.uuid(),
           "outputs": {}, "resources": [res]}
    return jdump(doc, indent=2)


def rr_cloudtrail(g, v, parts):
    variables = {env: val for env, key, val, _ in parts}
    variables["LOG_LEVEL"] = g.ch(["info", "warn"])
    ev = {"eventVersion": "1.09", "userIdentity": {"type": "AssumedRole", "principalId": "AROA" + g.s(17, B32) + ":" + g.word(),
                                                   "accountId": g.dig(12)},
          "eventTime": g.iso(0), "eventSource": "lambda.amazonaws.com",
          "eventName": g.ch(["UpdateFunctionConfiguration20150331v2", "CreateFunction20150331"]),
          "awsRegion": g.ch(["eu-west-1", "ap-south-1", "us-east-2", "sa-east-1"]),
          "requestParameters": {"functionName": f"{g.word()}-{g.ch(['sync', 'webhook', 'notifier'])}",
                                "environment": {"variables": variables}},
          "requestID": g.uuid(), "eventID": g.uuid(), "readOnly": False}
    return jdump(ev, indent=g.ch([None, 4]))


def rr_jupyter(g, v, parts):
    src = ["import os\n"]
    for env, key, val, _ in parts:
        src.append(C(['os.environ["%s"] = "' % env, val, '"\n']))
    src.append(f"client = {pascal(v.rule.replace('-', '_'))}Client()")
    cell = {"cell_type": "code", "execution_count": g.ri(1, 40), "id": g.hx(8), "metadata": {}, "outputs": [], "source": src}
    return jdump({"cells": [cell], "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
                  "nbformat": 4, "nbformat_minor": 5}, indent=1)


def rr_pytest_locals(g, v, parts):
    head = (f"    def test_{g.word()}_sync(monkeypatch):\n>       resp = client.{g.ch(['get', 'post'])}(\"{v.path}\")\n"
            f"E       requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: https://{v.host}{v.path}\n\n")
    out = [head]
    names = [("client", f"<{v.rule.replace('-', '_')}.Client object at 0x7f{g.hx(10)}>")]
    for env, key, val, _ in parts:
        names.append((key.lstrip(":").replace(".", "_"), ("'", val, "'")))
    names.append(("monkeypatch", f"<_pytest.monkeypatch.MonkeyPatch object at 0x7f{g.hx(10)}>"))
    w = max(len(n) for n, _ in names)
    for n, val in names:
        out += [n.ljust(w) + " = ", val, "\n"]
    out.append(f"\ntests/test_{v.rule.replace('-', '_')}.py:{g.ri(10, 200)}: HTTPError")
    return out


def rr_rust_dbg(g, v, parts):
    out = [f"[src/{g.ch(['config', 'main', 'client'])}.rs:{g.ri(10, 300)}:{g.ri(5, 9)}] &cfg = {pascal(v.rule.replace('-', '_'))}Config {{\n",
           f"    endpoint: \"https://{v.host}\",\n"]
    for env, key, val, _ in parts:
        out += [f"    {key.lstrip(':').replace('.', '_')}: \"", val, "\",\n"]
    out.append(f"    timeout: {g.ri(5, 60)}s,\n    retries: {g.ri(0, 5)},\n}}")
    return out


def rr_java_tostring(g, v, parts):
    cls = pascal(v.rule.replace("-", "_")) + "Properties"
    out = [f"{g.date()} {g.time()}.{g.dig(3)}  INFO {g.ri(1000, 99999)} --- [           main] c.{g.word()}.config.{cls}Logger : loaded {cls}{{baseUrl='https://{v.host}'"]
    for env, key, val, _ in parts:
        out += [f", {camel(key)}='", val, "'"]
    out.append(f", maxRetries={g.ri(1, 5)}}}")
    return out


def rr_php_print_r(g, v, parts):
    out = ["Array\n(\n", f"    [base_uri] => https://{v.host}\n"]
    for env, key, val, _ in parts:
        out += [f"    [{key.lstrip(':')}] => ", val, "\n"]
    out.append(f"    [timeout] => {g.ri(5, 30)}\n)")
    return out


def rr_ruby_inspect(g, v, parts):
    out = [f"#<{pascal(v.rule.replace('-', '_'))}::Client:0x0000{g.hx(12)} @base_url=\"https://{v.host}\""]
    for env, key, val, _ in parts:
        out += [f", @{key.lstrip(':').replace('.', '_')}=\"", val, "\""]
    out.append(f", @open_timeout={g.ri(2, 10)}>")
    return out


def rr_go_struct(g, v, parts):
    out = [f"{g.date('/')} {g.time()} {g.ch(['config', 'loaded config', 'client options'])}: &{{BaseURL:https://{v.host}"]
    for env, key, val, _ in parts:
        out += [f" {pascal(key)}:", val]
    out.append(f" Timeout:{g.ri(5, 60)}s Debug:{g.ch(['true', 'false'])}}}\npanic: {v.rule}: unexpected status 401 Unauthorized\n\n"
               f"goroutine 1 [running]:\nmain.main()\n\t/src/cmd/{g.word()}/main.go:{g.ri(20, 200)} +0x{g.hx(3)}\nexit status 2")
    return out


def rr_intellij(g, v, parts):
    out = [f'<component name="RunManager" selected="Application.{g.word()}">\n  <configuration name="{g.word()}-dev" type="Application" factoryName="Application">\n'
           f'    <option name="MAIN_CLASS_NAME" value="com.{g.word()}.App" />\n    <envs>\n']
    for env, key, val, _ in parts:
        out += [f'      <env name="{env}" value="', val, '" />\n']
    out.append('    </envs>\n    <method v="2">\n      <option name="Make" enabled="true" />\n    </method>\n  </configuration>\n</component>')
    return out


def rr_vscode(g, v, parts):
    env = {e: val for e, k, val, _ in parts}
    cfg = {"type": g.ch(["node", "debugpy", "go"]), "request": "launch", "name": f"Debug {g.word()}",
           "program": g.ch(["${workspaceFolder}/src/index.js", "${workspaceFolder}/main.py", "${workspaceFolder}/cmd/api"]),
           "env": env}
    return jdump({"version": "0.2.0", "configurations": [cfg]}, indent=4)


def rr_postman_env(g, v, parts):
    vals = [{"key": "baseUrl", "value": f"https://{v.host}", "type": "default", "enabled": True}]
    for env, key, val, _ in parts:
        vals.append({"key": camel(key), "value": val, "type": g.ch(["secret", "default"]), "enabled": True})
    return jdump({"id": g.uuid(), "name": g.ch(["production", "prod", "live"]), "values": vals,
                  "_postman_variable_scope": "environment", "_postman_exported_at": g.iso(),
                  "_postman_exported_using": f"Postman/11.{g.ri(0, 30)}.{g.ri(0, 9)}"}, indent=2)


def rr_insomnia(g, v, parts):
    data = {"base_url": f"https://{v.host}"}
    for env, key, val, _ in parts:
        data[key.lstrip(":")] = val
    res = [{"_id": "wrk_" + g.hx(32), "_type": "workspace", "name": v.rule},
           {"_id": "env_" + g.hx(32), "_type": "environment", "parentId": "wrk_" + g.hx(32), "name": "Base Environment",
            "data": data}]
    return jdump({"_type": "export", "__export_format": 4, "__export_source": "insomnia.desktop.app:v10." + str(g.ri(0, 3)),
                  "resources": res}, indent=g.ch([None, 2]))


def rr_csv(g, v, parts):
    out = [g.ch(["name,value,environment,updated_at\n", "key;value;scope;last_changed\n"])]
    sep = "," if out[0].startswith("name,") else ";"
    for env, key, val, _ in parts:
        out += [f"{env}{sep}", val, f"{sep}{g.ch(['production', 'shared', 'ci'])}{sep}{g.iso(0)}\n"]
    out.append(f"LOG_LEVEL{sep}info{sep}shared{sep}{g.iso(0)}")
    return out


def rr_sql(g, v, parts):
    out = []
    for env, key, val, _ in parts:
        out += [f"INSERT INTO integration_settings (provider, name, value, created_at) VALUES ('{v.rule}', '{key.lstrip(':')}', '",
                val, f"', '{g.date()} {g.time()}');\n"]
    return out[:-1] + [out[-1].rstrip("\n")]


def rr_cli_set(g, v, parts):
    k = g.ri(0, 6)
    out = []
    app = g.word() + "-" + g.ch(["api", "web", "worker"])
    for i, (env, key, val, _) in enumerate(parts):
        if i:
            out.append("\n")
        if k == 0:
            out += [f"gh secret set {env} --repo {g.word()}/{app} --body \"", val, "\""]
        elif k == 1:
            out += [f"fly secrets set {env}=", val, f" -a {app}"]
        elif k == 2:
            out += [f"heroku config:set {env}=", val, f" --app {app}"]
        elif k == 3:
            out += [f"aws ssm put-parameter --name /{app}/prod/{env.lower()} --type SecureString --overwrite --value ", val]
        elif k == 4:
            out += [f"az keyvault secret set --vault-name kv-{g.word()}-prod --name {env.lower().replace('_', '-')} --value ", val]
        elif k == 5:
            out += [f"doppler secrets set {env}=", val, f" --project {app} --config prd"]
        else:
            out += [f"vault kv put -mount=secret {app}/{v.rule} {key.lstrip(':').replace('.', '_')}=", val]
    return out


def rr_mobile(g, v, parts):
    if g.p(0.5):
        out = ['<?xml version="1.0" encoding="utf-8"?>\n<resources>\n', f'    <string name="app_name">{g.word().capitalize()}</string>\n']
        for env, key, val, _ in parts:
            out += [f'    <string name="{v.rule.replace("-", "_")}_{key.lstrip(":").replace(".", "_")}" translatable="false">', val, "</string>\n"]
        out.append("</resources>")
        return out
    out = ["<plist version=\"1.0\">\n<dict>\n\t<key>CFBundleName</key>\n\t<string>" + g.word().capitalize() + "</string>\n"]
    for env, key, val, _ in parts:
        out += [f"\t<key>{pascal(v.rule.replace('-', '_'))}{pascal(key)}</key>\n\t<string>", val, "</string>\n"]
    out.append("</dict>\n</plist>")
    return out


def rr_elixir(g, v, parts):
    out = [f"config :{g.word()}, :{v.rule.replace('-', '_')},\n  base_url: \"https://{v.host}\""]
    for env, key, val, _ in parts:
        out += [f",\n  {key.lstrip(':').replace('.', '_')}: \"", val, "\""]
    return out


def rr_nix(g, v, parts):
    out = [f"  systemd.services.{g.word()}-sync.environment = {{\n    API_BASE = \"https://{v.host}\";\n"]
    for env, key, val, _ in parts:
        out += [f"    {env} = \"", val, "\";\n"]
    out.append("  };")
    return out


def rr_graphql(g, v, parts):
    inp = {"provider": v.rule.upper().replace("-", "_")}
    for env, key, val, _ in parts:
        inp[camel(key)] = val
    return jdump({"operationName": "ConnectIntegration", "variables": {"input": inp},
                  "query": "mutation ConnectIntegration($input: IntegrationInput!) { connectIntegration(input: $input) { id status } }"},
                 compact=g.p(0.5))


def rr_chat(g, v, parts):
    who = g.first()
    out = [f"[{g.time()[:5]}] {who}: {g.ch(['here are the', 'pasting the', 'found the old'])} {v.rule} creds for {g.ch(['prod', 'the demo', 'staging'])}, rotate after the demo pls\n"]
    for env, key, val, _ in parts:
        out += [f"[{g.time()[:5]}] {who}: `{env}=", val, "`\n"]
    out.append(f"[{g.time()[:5]}] {g.first()}: thx :+1:")
    return out


def rr_dotnet_user_secrets(g, v, parts):
    sec = pascal(v.rule.replace("-", "_"))
    if g.p(0.5):
        out = []
        for i, (env, key, val, _) in enumerate(parts):
            out += ([] if not i else ["\n"]) + [f"dotnet user-secrets set \"{sec}:{pascal(key)}\" \"", val, "\""]
        out.append(f"\nSuccessfully saved {sec}:{pascal(parts[-1][1])} to the secret store.")
        return out
    d = {f"{sec}:{pascal(key)}": val for env, key, val, _ in parts}
    d["Logging:LogLevel:Default"] = "Information"
    return [f"$ cat ~/.microsoft/usersecrets/{g.uuid()}/secrets.json\n"] + jdump(d, indent=2)


def rr_actuator(g, v, parts):
    props = {}
    for env, key, val, _ in parts:
        props[env] = {"value": val, "origin": f'System Environment Property "{env}"'}
    props["JAVA_HOME"] = {"value": "/opt/java/openjdk", "origin": 'System Environment Property "JAVA_HOME"'}
    return [f"$ curl -s https://{g.word()}-svc.{g.ch(INTDOM)}/actuator/env | jq .propertySources[1]\n"] + jdump(
        {"name": "systemEnvironment", "properties": props}, indent=2)


# --- header renderings ----------------------------------------------------------

def _hval(v, parts):
    name, pre = v.header
    return name, pre, mainp(parts)[2]


def rr_har(g, v, parts):
    name, pre, val = _hval(v, parts)
    req = {"method": "GET", "url": f"https://{v.host}{v.path}", "httpVersion": "HTTP/2",
           "headers": [{"name": ":authority", "value": v.host}, {"name": "accept", "value": "application/json"},
                       {"name": name.lower() if g.p(0.5) else name, "value": C([pre, val])},
                       {"name": "user-agent", "value": f"Mozilla/5.0 (X11; Linux x86_64; rv:13{g.ri(0, 4)}.0) Gecko/20100101 Firefox/13{g.ri(0, 4)}.0"}],
           "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0}
    entry = {"startedDateTime": g.iso(), "time": round(g.r.uniform(20, 900), 3), "request": req,
             "response": {"status": g.ch([200, 401, 403]), "statusText": "", "httpVersion": "HTTP/2"}}
    return ['{"log": {"version": "1.2", "creator": {"name": "Firefox", "version": "13' + str(g.ri(0, 4)) + '.0"}, "entries": [\n'] + jdump(entry, indent=2) + ["\n]}}"]


def rr_wget_debug(g, v, parts):
    name, pre, val = _hval(v, parts)
    return [f"Setting --header (header) to {name}: {pre}", val, f"\nDEBUG output created by Wget 1.21.{g.ri(2, 4)} on linux-gnu.\n\n"
            f"Resolving {v.host} ({v.host})... done.\n---request begin---\nGET {v.path} HTTP/1.1\nHost: {v.host}\n"
            f"User-Agent: Wget/1.21.{g.ri(2, 4)}\nAccept: */*\nAccept-Encoding: identity\n{name}: {pre}", val,
            "\nConnection: Keep-Alive\n\n---request end---\nHTTP request sent, awaiting response... "]


def rr_axios(g, v, parts):
    name, pre, val = _hval(v, parts)
    return [f"AxiosError: Request failed with status code {g.ch([401, 403, 429])}\n    at settle (/app/node_modules/axios/dist/node/axios.cjs:{g.ri(1900, 2100)}:12)\n"
            f"    at IncomingMessage.handleStreamEnd (/app/node_modules/axios/dist/node/axios.cjs:{g.ri(3000, 3300)}:11) {{\n"
            f"  code: 'ERR_BAD_REQUEST',\n  config: {{\n    timeout: 0,\n    headers: Object [AxiosHeaders] {{\n"
            f"      Accept: 'application/json, text/plain, */*',\n      '{name}': '{pre}", val,
            f"',\n      'User-Agent': 'axios/1.7.{g.ri(2, 9)}'\n    }},\n    method: 'get',\n    url: 'https://{v.host}{v.path}'\n  }}\n}}"]


def rr_grpc_md(g, v, parts):
    name, pre, val = _hval(v, parts)
    return [f"{g.date('/')} {g.time()} grpc: outgoing call /{g.word()}.v1.{g.word().capitalize()}Service/{g.ch(['List', 'Get', 'Sync'])} "
            f"metadata: map[{name.lower()}:[{pre}", val, f"] user-agent:[grpc-go/1.6{g.ri(0, 9)}.0] x-request-id:[{g.uuid()}]]"]


def rr_nginx_header(g, v, parts):
    name, pre, val = _hval(v, parts)
    return [f"location /{g.ch(['upstream', 'proxy', 'ext'])}/{v.rule}/ {{\n    proxy_pass https://{v.host}/;\n    proxy_set_header Host {v.host};\n"
            f"    proxy_set_header {name} \"{pre}", val, "\";\n    proxy_ssl_server_name on;\n}"]


def rr_pwsh(g, v, parts):
    name, pre, val = _hval(v, parts)
    return [f"PS C:\\src\\{g.word()}> Invoke-RestMethod -Uri \"https://{v.host}{v.path}\" -Headers @{{ \"{name}\" = \"{pre}", val,
            f"\" }} -Method Get"]


def rr_httpie(g, v, parts):
    name, pre, val = _hval(v, parts)
    return [f"$ http --print=HhBb GET https://{v.host}{v.path} '{name}:{pre}", val, f"'\nGET {v.path} HTTP/1.1\nAccept: */*\n"
            f"{name}: {pre}", val, f"\nHost: {v.host}\nUser-Agent: HTTPie/3.2.{g.ri(1, 4)}"]


def rr_httpclient_debug(g, v, parts):
    name, pre, val = _hval(v, parts)
    return [f"send: b'GET {v.path} HTTP/1.1\\r\\nHost: {v.host}\\r\\nUser-Agent: python-requests/2.32.3\\r\\nAccept-Encoding: gzip, deflate\\r\\n"
            f"Accept: */*\\r\\nConnection: keep-alive\\r\\n{name}: {pre}", val, f"\\r\\n\\r\\n'\nreply: 'HTTP/1.1 {g.ch(['200 OK', '401 Unauthorized'])}\\r\\n'"]


def rr_fetch(g, v, parts):
    name, pre, val = _hval(v, parts)
    return [f"const res = await fetch(`https://{v.host}{v.path}`, {{\n  method: \"GET\",\n  headers: {{ \"{name}\": \"{pre}", val,
            "\", Accept: \"application/json\" },\n});"]


# --- query-string renderings -------------------------------------------------------

def _qs(v, parts):
    out = []
    if v.single():
        out += [f"{v.qparam}=", S(e_qs(parts[0][2])) if isinstance(parts[0][2], S) else e_qs(parts[0][2])]
    else:
        for i, (env, key, val, _) in enumerate(parts):
            out += (["&"] if i else []) + [f"{key}=", S(e_qs(val)) if isinstance(val, S) else e_qs(val)]
    return out


def _qpath(v):
    return v.path + ("&" if "?" in v.path else "?")


def rr_alb_log(g, v, parts):
    return [f"https {g.iso(6)} app/{g.word()}-alb/{g.hx(16)} 198.51.100.{g.ri(1, 254)}:{g.ri(30000, 65000)} 10.{g.ri(0, 9)}.{g.ri(0, 9)}.{g.ri(2, 250)}:8080 "
            f"0.000 0.{g.dig(3)} 0.000 {g.ch([200, 401])} {g.ch([200, 401])} {g.ri(100, 900)} {g.ri(200, 9000)} \"GET https://{v.host}:443{_qpath(v)}"] + _qs(v, parts) + [
            f" HTTP/1.1\" \"okhttp/4.12.0\" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:eu-west-1:{g.dig(12)}:targetgroup/{g.word()}/{g.hx(16)} "
            f"\"Root=1-{g.hx(8)}-{g.hx(24)}\" \"{v.host}\" \"-\" 0 {g.iso(6)} \"forward\" \"-\" \"-\" \"10.{g.ri(0, 9)}.{g.ri(0, 9)}.{g.ri(2, 250)}:8080\" \"{g.ch([200, 401])}\" \"-\" \"-\""]


def rr_cloudfront_log(g, v, parts):
    d = g.date()
    return ["#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query\n"
            f"{d}\t{g.time()}\t{g.ch(['BOM78-P1', 'GRU3-C1', 'NRT57-P3', 'FRA56-P8'])}\t{g.ri(300, 90000)}\t203.0.113.{g.ri(1, 254)}\tGET\td{g.s(13, LOWERNUM)}.cloudfront.net\t"
            f"{v.path.split('?')[0]}\t{g.ch([200, 304, 403])}\t-\tMozilla/5.0%20(Linux;%20Android%2014)\t"] + (
            [v.path.split("?")[1] + "&"] if "?" in v.path else []) + _qs(v, parts)


def rr_nginx_error(g, v, parts):
    return [f"{g.date('/')} {g.time()} [error] {g.ri(10, 99)}#{g.ri(0, 9)}: *{g.ri(100, 99999)} upstream timed out (110: Connection timed out) while reading response header from upstream, "
            f"client: 192.0.2.{g.ri(1, 254)}, server: {g.word()}.{g.org()}, request: \"GET {_qpath(v)}"] + _qs(v, parts) + [
            f" HTTP/1.1\", upstream: \"https://{v.host}{v.path.split('?')[0]}\", host: \"{g.word()}.{g.org()}\""]


def rr_sentry_crumb(g, v, parts):
    url = C([f"https://{v.host}{_qpath(v)}"] + _qs(v, parts))
    crumbs = [{"timestamp": g.epoch() + round(g.r.random(), 3), "type": "default", "category": "ui.click", "message": "button#sync"},
              {"timestamp": g.epoch() + round(g.r.random(), 3), "type": "http", "category": "fetch",
               "data": {"method": "GET", "url": url, "status_code": g.ch([401, 403, 500])}, "level": "error"}]
    return jdump({"event_id": g.hx(32), "platform": "javascript", "breadcrumbs": {"values": crumbs}}, indent=2)


def rr_ws_console(g, v, parts):
    return [f"WebSocket connection to 'wss://{v.host}/realtime?"] + _qs(v, parts) + [
            f"' failed: Error during WebSocket handshake: Unexpected response code: {g.ch([401, 403, 502])}\n"
            f"    at connect (main.{g.hx(8)}.js:2:{g.ri(1000, 99999)})"]


KV_RENDERS = [("tfstate-attributes", rr_tfstate), ("cloudtrail-lambda-env", rr_cloudtrail), ("jupyter-cell-source", rr_jupyter),
              ("pytest-showlocals", rr_pytest_locals), ("rust-dbg-struct", rr_rust_dbg), ("java-tostring-log", rr_java_tostring),
              ("php-print-r", rr_php_print_r), ("ruby-inspect", rr_ruby_inspect), ("go-fmt-struct-panic", rr_go_struct),
              ("intellij-run-config", rr_intellij), ("vscode-launch-json", rr_vscode), ("postman-environment", rr_postman_env),
              ("insomnia-export", rr_insomnia), ("csv-secrets-export", rr_csv), ("sql-insert-settings", rr_sql),
              ("cli-secret-set", rr_cli_set), ("mobile-resource-file", rr_mobile), ("elixir-config", rr_elixir),
              ("nix-service-env", rr_nix), ("graphql-variables", rr_graphql), ("chat-paste", rr_chat),
              ("dotnet-user-secrets", rr_dotnet_user_secrets), ("spring-actuator-env", rr_actuator)]
HEADER_RENDERS = [("har-entry", rr_har), ("wget-debug", rr_wget_debug), ("axios-error-object", rr_axios),
                  ("grpc-metadata-log", rr_grpc_md), ("nginx-proxy-set-header", rr_nginx_header),
                  ("powershell-invoke-restmethod", rr_pwsh), ("httpie-print", rr_httpie),
                  ("python-http-client-debug", rr_httpclient_debug), ("js-fetch-headers", rr_fetch)]
QUERY_RENDERS = [("alb-access-log", rr_alb_log), ("cloudfront-access-log", rr_cloudfront_log),
                 ("nginx-error-log", rr_nginx_error), ("sentry-breadcrumb", rr_sentry_crumb),
                 ("browser-websocket-error", rr_ws_console)]


# --- vendor-specific files ---------------------------------------------------------

def _pv(parts, key):
    for env, k, val, _ in parts:
        if k == key:
            return val
    raise KeyError(key)


def rs_cloudinary(g, v, parts):
    return [g.ch(["CLOUDINARY_URL=", "export CLOUDINARY_URL=", "cloudinary_url: "]) + f"cloudinary://{_pv(parts, 'api_key')}:",
            _pv(parts, "api_secret"), f"@{g.word()}-{g.ch(['media', 'cdn', 'assets'])}"]


def rs_kaggle(g, v, parts):
    return ["$ cat ~/.kaggle/kaggle.json\n"] + jdump({"username": _pv(parts, "username"), "key": _pv(parts, "key")}, compact=True)


def rs_tailscale(g, v, parts):
    val = parts[0][2]
    return [g.ch(["sudo tailscale up --authkey=", "tailscale up --ssh --advertise-tags=tag:ci --auth-key="]), val,
            g.ch(["", " --hostname=" + g.word() + "-runner"])]


def rs_ngrok(g, v, parts):
    val = parts[0][2]
    if g.p(0.5):
        return ["$ ngrok config add-authtoken ", val, "\nAuthtoken saved to configuration file: /home/dev/.config/ngrok/ngrok.yml"]
    return ["version: \"3\"\nagent:\n    authtoken: ", val, f"\ntunnels:\n    web:\n        proto: http\n        addr: {g.ch([3000, 5173, 8080])}"]


def rs_azure_sas(g, v, parts):
    sig = parts[0][2]
    st = g.date()
    se = f"{int(st[:4]) + 1}{st[4:]}T{g.ri(0, 23):02d}%3A00%3A00Z"
    sigq = S(e_qs(sig)) if isinstance(sig, S) else e_qs(sig)
    url = [f"https://{g.word()}data.blob.core.windows.net/{g.ch(['exports', 'backups', 'uploads'])}/{g.word()}.{g.ch(['csv', 'parquet', 'zip'])}"
           f"?sp={g.ch(['r', 'racwdl', 'rl'])}&st={st}T08%3A00%3A00Z&se={se}&spr=https&sv=2022-11-02&sr={g.ch(['b', 'c'])}&sig=", sigq]
    return [g.ch(["azcopy copy \"", "AZURE_STORAGE_SAS_URL=\"", "curl -o out.bin \""])] + url + ["\"" + g.ch(["", " ./local/"])]


def rs_s3cfg(g, v, parts):
    return ["[default]\naccess_key = ", _pv(parts, "aws_access_key_id"), "\nsecret_key = ", _pv(parts, "aws_secret_access_key"),
            f"\nbucket_location = {g.ch(['EU', 'us-east-1', 'ap-south-1'])}\nhost_base = s3.amazonaws.com\nuse_https = True"]


def rs_rclone_s3(g, v, parts):
    out = [f"[{g.word()}-s3]\ntype = s3\nprovider = AWS\naccess_key_id = ", _pv(parts, "aws_access_key_id"),
           "\nsecret_access_key = ", _pv(parts, "aws_secret_access_key")]
    if len(parts) > 2:
        out += ["\nsession_token = ", _pv(parts, "aws_session_token")]
    out.append(f"\nregion = {g.ch(['eu-central-1', 'us-west-2', 'ap-northeast-1'])}")
    return out


def rs_boto(g, v, parts):
    return ["[Credentials]\naws_access_key_id = ", _pv(parts, "aws_access_key_id"), "\naws_secret_access_key = ",
            _pv(parts, "aws_secret_access_key"), "\n\n[Boto]\nnum_retries = 3"]


def rs_gh_hosts(g, v, parts):
    u = g.first().lower() + g.dig(2)
    return [f"$ cat ~/.config/gh/hosts.yml\ngithub.com:\n    users:\n        {u}:\n            oauth_token: ", parts[0][2],
            f"\n    git_protocol: https\n    user: {u}"]


def rs_databrickscfg(g, v, parts):
    return [f"[DEFAULT]\nhost  = https://{v.host}\ntoken = ", parts[0][2], f"\n\n[{g.word()}]\nhost = https://adb-{g.dig(16)}.{g.ri(1, 19)}.azuredatabricks.net\nauth_type = azure-cli"]


def rs_tfrc(g, v, parts):
    return ["$ cat ~/.terraform.d/credentials.tfrc.json\n"] + jdump({"credentials": {"app.terraform.io": {"token": parts[0][2]}}}, indent=2)


def rs_cookie(g, v, parts):
    val = parts[0][2]
    if g.p(0.5):
        return [f"GET /dashboard HTTP/1.1\nHost: app.{g.org()}\nCookie: _ga=GA1.1.{g.nz(9)}.{g.epoch()}; {g.ch(['session', 'access_token', '__Host-jwt'])}=", val,
                f"; theme={g.ch(['dark', 'light'])}"]
    return [f"HTTP/2 200\ncontent-type: application/json\nset-cookie: {g.ch(['auth', 'sid', 'access_token'])}=", val,
            f"; Path=/; Max-Age={g.ch([3600, 86400])}; Secure; HttpOnly; SameSite=Lax"]


def rs_fragment(g, v, parts):
    val = parts[0][2]
    return [f"Navigated to https://app.{g.org()}/oauth/callback#access_token=", val,
            f"&token_type=Bearer&expires_in={g.ch([3600, 7200])}&state={g.s(22, B64URL)}"]


def rs_localstorage(g, v, parts):
    val = parts[0][2]
    return ["> Object.entries(localStorage)\n< [ [ \"theme\", \"dark\" ], [ \"", g.ch(["auth.token", "jwt", "accessToken"]), "\", \"", val,
            f"\" ], [ \"lastVisited\", \"/projects/{g.ri(1, 999)}\" ] ]"]


SPECIAL_RENDERS = {"cloudinary-url": rs_cloudinary, "kaggle-json": rs_kaggle, "tailscale-up": rs_tailscale,
                   "ngrok-config": rs_ngrok, "azure-sas-url": rs_azure_sas, "s3cfg": rs_s3cfg, "rclone-s3": rs_rclone_s3,
                   "boto-config": rs_boto, "gh-hosts-yml": rs_gh_hosts, "databrickscfg": rs_databrickscfg,
                   "tfrc-json": rs_tfrc, "cookie-header": rs_cookie, "oauth-fragment": rs_fragment,
                   "localstorage-dump": rs_localstorage}


def renders_for(v):
    out = [] if v.rule == "azure-sas" else list(KV_RENDERS)
    if v.header:
        out += HEADER_RENDERS
    if v.qparam:
        out += QUERY_RENDERS
    for s in v.special:
        out += [(s, SPECIAL_RENDERS[s])] * 2
    return out


# ===========================================================================
# generic-password: tools, formats and languages gen_text.py never uses
# ===========================================================================


@T("pw", "xtrace-sudo-S")
def _(g):
    pw = g.pw(forbid="\n'\"\\$` !&*?;#()<>|~^")
    cmd = g.ch(["apt-get install -y nginx", "systemctl restart postgresql", "cp ./app.conf /etc/nginx/conf.d/",
                "docker compose up -d", "usermod -aG docker deploy"])
    return mk(f"+ cd /opt/{g.word()}\n+ echo ", S(pw), f"\n+ sudo -S {cmd}\n[sudo] password for {g.ch(['deploy', 'ubuntu', 'ci'])}: ")


@T("pw", "expect-send")
def _(g):
    pw = g.pw(forbid="\n\"\\$[]")
    host = g.ihost(g.ch(["sw", "fw", "olt", "rtr"]))
    return mk(f"#!/usr/bin/expect -f\nset timeout 20\nspawn ssh admin@{host}\nexpect \"assword:\"\nsend \"", S(pw),
              "\\r\"\nexpect \"#\"\nsend \"show running-config\\r\"\ninteract")


@T("pw", "plink-pscp-pw")
def _(g):
    pw = g.pw(forbid="\n\" ")
    h = g.ihost(g.ch(["srv", "app", "nas"]))
    if g.p(0.5):
        return mk(f"C:\\Tools> plink.exe -ssh -batch {g.ch(['root', 'admin', 'svc_backup'])}@{h} -pw ", S(pw), f" \"df -h /data\"")
    return mk(f"pscp -pw ", S(pw), f" C:\\exports\\{g.word()}.csv {g.ch(['deploy', 'etl'])}@{h}:/srv/import/")


@T("pw", "psexec-cmdkey")
def _(g):
    pw = g.pw(forbid="\n\" /^&|<>%")
    h = f"\\\\{g.ch(['WS', 'SRV', 'DC'])}{g.ri(1, 99):02d}"
    if g.p(0.5):
        return mk(f"PsExec64.exe {h} -u CORP\\{g.ch(['adm_jdoe', 'svc_patch', 'Administrator'])} -p ", S(pw), " -h cmd /c \"gpupdate /force\"")
    return mk(f"cmdkey /add:{h[2:]}.corp.lan /user:CORP\\{g.ch(['svc_backup', 'adm_ops'])} /pass:", S(pw))


@T("pw", "mongosh-createuser")
def _(g):
    pw = g.pw(forbid='\n"\\')
    return mk(f"use admin\ndb.createUser({{\n  user: \"{g.user()}\",\n  pwd: \"", S(pw),
              f"\",\n  roles: [ {{ role: \"{g.ch(['readWrite', 'read', 'dbOwner'])}\", db: \"{g.db()}\" }} ]\n}})")


@T("pw", "sql-login-variants")
def _(g):
    k = g.ri(0, 3)
    pw = g.pw(forbid="\n'\"\\;")
    if k == 0:
        return mk(f"CREATE LOGIN [{g.user()}] WITH PASSWORD = N'", S(pw), "', CHECK_POLICY = OFF, DEFAULT_DATABASE = [" + g.db() + "];")
    if k == 1:
        return mk(f"ALTER USER {g.ch(['SCOTT', 'APP_OWNER', 'REPORTING'])} IDENTIFIED BY \"", S(pw), "\" ACCOUNT UNLOCK;")
    if k == 2:
        return mk(f"SET PASSWORD FOR '{g.user()}'@'%' = '", S(pw), "';")
    return mk(f"mysql> GRANT ALL ON {g.db()}.* TO '{g.user()}'@'localhost' IDENTIFIED BY '", S(pw), "';\nQuery OK, 0 rows affected, 1 warning (0.01 sec)")


@T("pw", "redis-acl")
def _(g):
    pw = g.pw(forbid="\n \t\"'")
    u = g.ch(["worker", "cache_rw", "sessions", "metrics", "queue"])
    if g.p(0.5):
        return mk(f"{g.ch(['cache-1', 'redis-0', 'sessions-2'])}:6379> ACL SETUSER {u} on >", S(pw), f" ~{g.ch(['jobs', 'sess', 'cache'])}:* +@read +@write -@dangerous\nOK")
    return mk("# /etc/redis/users.acl\nuser default off\nuser ", u, " on >", S(pw), f" ~* &* +@all -flushall\nuser {g.word()} off")


@T("pw", "pgbouncer-userlist")
def _(g):
    pw = g.pw(forbid='\n"')
    other = f'"pgbouncer" "SCRAM-SHA-256$4096:{g.b64(16)}${g.b64(32)}:{g.b64(32)}"' if g.p(0.5) else f'"stats" "md5{g.hx(32)}"'
    lines = [(f'"{g.user()}" "', S(pw), '"'), other]
    g.r.shuffle(lines)
    return mk("$ cat /etc/pgbouncer/userlist.txt\n", lines[0], "\n", lines[1])


@T("pw", "ansible-inventory-ini")
def _(g):
    pw = g.pw(forbid="\n \t'\"#;=")
    var = g.ch(["ansible_password", "ansible_ssh_pass", "ansible_become_pass", "ansible_winrm_password"])
    h = g.ch(["web", "db", "win", "app"])
    return mk(f"[{h}servers]\n{h}01 ansible_host={h}01.{g.ch(INTDOM)}\n{h}02 ansible_host={h}02.{g.ch(INTDOM)}\n\n[{h}servers:vars]\n"
              f"ansible_user={g.ch(['deploy', 'Administrator', 'ansible'])}\n{var}=", S(pw),
              "\n" + ("ansible_connection=winrm" if "winrm" in var else "ansible_python_interpreter=/usr/bin/python3"))


@T("pw", "ansible-inventory-yaml")
def _(g):
    pw = g.pw(forbid="\n")
    return mk(f"all:\n  children:\n    {g.ch(['windows', 'routers', 'appliances'])}:\n      hosts:\n        {g.word()}-01:\n"
              f"      vars:\n        ansible_user: {g.ch(['admin', 'Administrator', 'svc_ansible'])}\n        ansible_password: ", yq(g, pw),
              f"\n        ansible_connection: {g.ch(['winrm', 'network_cli', 'ssh'])}")


@T("pw", "chef-recipe")
def _(g):
    pw = g.pw(forbid="\n'\\")
    k = g.ri(0, 2)
    if k == 0:
        return mk(f"mysql_service '{g.word()}' do\n  port '3306'\n  version '8.0'\n  initial_root_password '", S(pw), "'\n  action [:create, :start]\nend")
    if k == 1:
        return mk(f"user '{g.user()}' do\n  manage_home true\n  shell '/bin/bash'\n  plain_text_password '", S(pw), "'\nend")
    return mk(f"postgresql_user '{g.user()}' do\n  password '", S(pw), f"'\n  createdb false\n  action :create\nend")


@T("pw", "puppet-manifest")
def _(g):
    pw = g.pw(forbid="\n'\\")
    if g.p(0.5):
        return mk(f"mysql::db {{ '{g.db()}':\n  user     => '{g.user()}',\n  password => '", S(pw), "',\n  host     => 'localhost',\n  grant    => ['ALL'],\n}")
    return mk(f"class {{ 'postgresql::server':\n  postgres_password => '", S(pw), "',\n  listen_addresses  => '*',\n}")


@T("pw", "salt-state")
def _(g):
    pw = g.pw(forbid="\n")
    return mk(f"{g.user()}_user:\n  {g.ch(['mysql_user.present', 'postgres_user.present'])}:\n    - name: {g.user()}\n    - host: localhost\n    - password: ",
              yq(g, pw), "\n    - require:\n      - pkg: db-server")


@T("pw", "vagrantfile")
def _(g):
    pw = g.pw(forbid="\n\"\\#")
    k = g.ch(["config.ssh.password", "config.winrm.password", "config.vm.provider.password"])
    box = g.ch(["generic/ubuntu2204", "gusztavvargadr/windows-server", "bento/debian-12"])
    return mk(f"Vagrant.configure(\"2\") do |config|\n  config.vm.box = \"{box}\"\n  config.ssh.username = \"vagrant\"\n  {k} = \"", S(pw), "\"\nend")


@T("pw", "spring-yml-nested")
def _(g):
    pw = g.pw(forbid="\n")
    k = g.ri(0, 2)
    if k == 0:
        return mk(f"spring:\n  datasource:\n    url: jdbc:postgresql://{g.host('pg')}:5432/{g.db()}\n    username: {g.user()}\n    password: ",
                  yq(g, pw), "\n    hikari:\n      maximum-pool-size: " + str(g.ri(5, 30)))
    if k == 1:
        return mk(f"spring:\n  security:\n    user:\n      name: {g.ch(['actuator', 'admin'])}\n      password: ", yq(g, pw), "\n      roles: ACTUATOR")
    return mk(f"spring:\n  mail:\n    host: smtp.{g.org()}\n    port: 587\n    username: {g.ch(['noreply', 'alerts', 'mailer'])}\n    password: ", yq(g, pw),
              "\n    properties:\n      mail.smtp.starttls.enable: true")


@T("pw", "odbc-pwd")
def _(g):
    pw = g.pw(forbid="\n;{}=\"' ")
    k = g.ri(0, 2)
    if k == 0:
        return mk("cnxn = pyodbc.connect(\"DRIVER={ODBC Driver 18 for SQL Server};SERVER=" + g.host("sql") + ";DATABASE=" + g.db() +
                  ";UID=" + g.user() + ";PWD=", S(pw), ";Encrypt=yes\")")
    if k == 1:
        return mk(f"[{g.db().upper()}_DSN]\nDriver      = PostgreSQL Unicode\nServername  = {g.host('pg')}\nPort        = 5432\nDatabase    = {g.db()}\nUID         = {g.user()}\nPWD         = ",
                  S(pw))
    return mk(f"$ isql -v {g.db().upper()}_DSN {g.user()} ", S(pw), "\n+---------------------------------------+\n| Connected!                            |")


@T("pw", "liquibase-flyway-conf")
def _(g):
    pw = g.pw(forbid="\n\\ ", ascii_only=True)
    if g.p(0.5):
        return mk(f"changeLogFile: db/changelog/db.changelog-master.yaml\nurl: jdbc:postgresql://{g.host('pg')}:5432/{g.db()}\nusername: {g.user()}\npassword: ",
                  S(pw), "\nliquibase.hub.mode: off")
    return mk(f"flyway.url=jdbc:mysql://{g.host('mysql')}:3306/{g.db()}\nflyway.user={g.user()}\nflyway.password=", S(pw),
              "\nflyway.locations=filesystem:sql/migrations")


@T("pw", "maven-settings-server")
def _(g):
    pw = g.pw(forbid="\n")
    return mk(f"<settings>\n  <servers>\n    <server>\n      <id>{g.ch(['nexus-releases', 'artifactory', 'internal-snapshots'])}</id>\n"
              f"      <username>{g.ch(['deployer', 'ci-publish', 'mvn-bot'])}</username>\n      <password>", S(e_xml(pw)),
              "</password>\n    </server>\n  </servers>\n</settings>")


@T("pw", "gradle-properties")
def _(g):
    pw = g.pw(forbid="\n\\ :=", ascii_only=True)
    k = g.ch(["nexusPassword", "signing.password", "systemProp.https.proxyPassword", "artifactoryPassword", "ossrhPassword",
              "mavenCentralPassword"])
    return mk(f"org.gradle.jvmargs=-Xmx2g\n{k.replace('Password', 'Username').replace('password', 'keyId')}={g.ch(['ci-bot', 'deploy', '0A1B2C3D'])}\n{k}=", S(pw))


@T("pw", "pypirc-password")
def _(g):
    pw = g.pw(forbid="\n%#; ")
    idx = g.ch(["internal", "nexus", "devpi"])
    return mk(f"[distutils]\nindex-servers =\n    {idx}\n\n[{idx}]\nrepository = https://{g.host('pypi')}/repository/pypi-internal/\nusername = {g.ch(['publisher', 'ci', 'deploy'])}\npassword = ",
              S(pw))


@T("pw", "npmrc-underscore-password")
def _(g):
    pw = g.pw(forbid="\n")
    b = b64s(pw.encode())
    reg = f"//{g.host('npm')}/repository/npm-{g.ch(['private', 'group', 'hosted'])}/"
    return mk(f"registry=https:{reg}\n{reg}:username={g.ch(['ci', 'publish', 'npm-bot'])}\n{reg}:_password=", S(b),
              f"\n{reg}:always-auth=true")


@T("pw", "docker-config-auths")
def _(g):
    pw = g.pw(forbid="\n:")
    reg = g.ch([g.host("registry"), f"harbor.{g.org()}", f"{g.word()}.azurecr.io"])
    auth = b64s(f"{g.ch(['robot$ci', 'deploy', 'pull-bot'])}:{pw}".encode())
    return mk("$ cat ~/.docker/config.json\n{\n\t\"auths\": {\n\t\t\"" + reg + "\": {\n\t\t\t\"auth\": \"", S(auth), "\"\n\t\t}\n\t}\n}")


@T("pw", "systemd-unit-environment")
def _(g):
    pw = g.pw(forbid="\n\"\\% $'")
    var = g.ch(["DB_PASSWORD", "RABBITMQ_PASS", "LDAP_BIND_PW", "SMTP_PASSWORD", "ADMIN_PASS", "KC_DB_PASSWORD"])
    q = g.p(0.5)
    return mk(f"[Unit]\nDescription={g.word().capitalize()} service\nAfter=network-online.target\n\n[Service]\nUser={g.word()}\n",
              f"Environment=\"{var}=" if q else f"Environment={var}=", S(pw), "\"" if q else "",
              f"\nExecStart=/opt/{g.word()}/bin/server\nRestart=on-failure")


@T("pw", "supervisord-conf")
def _(g):
    if g.p(0.5):
        pw = g.pw(forbid="\n\",%")
        return mk(f"[program:{g.word()}-worker]\ncommand=/srv/venv/bin/celery -A app worker\nenvironment=DJANGO_SETTINGS_MODULE=\"app.settings\",DB_PASS=\"", S(pw),
                  "\"\nautorestart=true")
    pw = g.pw(forbid="\n;# ")
    return mk(f"[inet_http_server]\nport=*:9001\nusername={g.ch(['admin', 'ops', 'supervisor'])}\npassword=", S(pw))


@T("pw", "crontab-inline-env")
def _(g):
    pw = g.pw(forbid="\n'%\\")
    k = g.ri(0, 2)
    pre = f"{g.ri(0, 59)} {g.ri(0, 5)} * * {g.ch(['*', '1-5', '0'])} "
    if k == 0:
        return mk(f"# m h dom mon dow command\n{pre}RESTIC_PASSWORD='", S(pw), f"' restic -r sftp:backup@{g.ihost('nas')}:/restic backup /srv >> /var/log/restic.log 2>&1")
    if k == 1:
        return mk(f"{pre}root BORG_PASSPHRASE='", S(pw), "' /usr/bin/borg create ::'{hostname}-{now}' /etc /home")
    return mk(f"{pre}RSYNC_PASSWORD='", S(pw), f"' rsync -a /var/www/ rsync://{g.ch(['mirror', 'backup'])}@{g.ihost('nas')}/www/")


@T("pw", "docker-secret-create")
def _(g):
    pw = g.pw(forbid="\n'")
    name = g.ch(["db_password", "pg_pass", "smtp_pw", "grafana_admin"])
    if g.p(0.5):
        return mk("printf '%s' '", S(e_sq(pw)), f"' | docker secret create {name} -\n{g.s(25, LOWERNUM)}")
    return mk("echo -n '", S(e_sq(pw)), f"' | podman secret create {name} -")


@T("pw", "openssl-passwd-mkpasswd")
def _(g):
    pw = g.pw(forbid="\n'")
    if g.p(0.5):
        return mk("$ openssl passwd -6 '", S(e_sq(pw)), f"'\n$6${g.s(16, CRYPT64[2:])}${g.s(86, CRYPT64)}")
    return mk("$ mkpasswd -m sha-512 '", S(e_sq(pw)), f"'\n$6${g.s(16, CRYPT64[2:])}${g.s(86, CRYPT64)}")


@T("pw", "vnc-passwd")
def _(g):
    pw = g.pw(forbid="\n' ", minlen=6)
    if g.p(0.5):
        return mk("x11vnc -display :0 -forever -shared -passwd ", S(pw), " -rfbport 5900")
    return mk("echo '", S(pw), "' | vncpasswd -f > ~/.vnc/passwd && chmod 600 ~/.vnc/passwd")


@T("pw", "networkmanager-keyfile")
def _(g):
    pw = g.pw(forbid="\n", minlen=8)
    ssid = f"{g.word().capitalize()}-{g.ch(['5G', 'Guest', 'Office', 'IoT'])}"
    return mk(f"$ sudo cat /etc/NetworkManager/system-connections/{ssid}.nmconnection\n[connection]\nid={ssid}\nuuid={g.uuid()}\ntype=wifi\n\n"
              f"[wifi]\nmode=infrastructure\nssid={ssid}\n\n[wifi-security]\nkey-mgmt=wpa-psk\npsk=", S(pw))


@T("pw", "hostapd-conf")
def _(g):
    pw = g.pw(forbid="\n", minlen=8)
    return mk(f"interface=wlan0\ndriver=nl80211\nssid={g.word()}-ap\nhw_mode=g\nchannel={g.ri(1, 11)}\nwpa=2\nwpa_key_mgmt=WPA-PSK\nwpa_passphrase=", S(pw),
              "\nrsn_pairwise=CCMP")


@T("pw", "wifi-qr-payload")
def _(g):
    pw = g.pw(forbid="\n;:,\\\"", minlen=8)
    return mk(f"$ qrencode -t ANSIUTF8 'WIFI:T:WPA;S:{g.word().capitalize()}Net;P:", S(pw), ";H:false;;'")


@T("pw", "python-client-kwargs")
def _(g):
    pw = g.pw(forbid="\n\"\\")
    k = g.ri(0, 4)
    if k == 0:
        return mk(f"client = pymongo.MongoClient(\"{g.host('mongo')}\", 27017, username=\"{g.user()}\", password=\"", S(pw), "\", authSource=\"admin\")")
    if k == 1:
        return mk(f"r = redis.Redis(host=\"{g.host('redis')}\", port=6380, ssl=True, password=\"", S(pw), "\")")
    if k == 2:
        return mk(f"credentials = pika.PlainCredentials(\"{g.user()}\", \"", S(pw), f"\")\nparams = pika.ConnectionParameters(\"{g.host('mq')}\", 5672, \"/\", credentials)")
    if k == 3:
        return mk(f"ssh = paramiko.SSHClient()\nssh.connect(\"{g.host('srv')}\", username=\"{g.ch(['deploy', 'root'])}\", password=\"", S(pw), "\", timeout=10)")
    return mk(f"with smtplib.SMTP_SSL(\"smtp.{g.org()}\", 465) as s:\n    s.login(\"{g.ch(['alerts', 'noreply'])}\", \"", S(pw), "\")")


@T("pw", "python-auth-tuple")
def _(g):
    pw = g.pw(forbid="\n'\\")
    if g.p(0.5):
        return mk(f"resp = requests.get(\"https://{g.host('jira')}/rest/api/2/search\", auth=('{g.ch(['svc-report', 'jira-bot'])}', '", S(pw), "'), timeout=30)")
    return mk(f"session = winrm.Session('{g.host('win')}', auth=('CORP\\\\{g.ch(['svc_winrm', 'adm_ops'])}', '", S(pw), "'), transport='ntlm')")


@T("pw", "ruby-hash-password")
def _(g):
    pw = g.pw(forbid="\n\"\\#")
    if g.p(0.5):
        return mk(f"config.action_mailer.smtp_settings = {{\n  :address => \"smtp.{g.org()}\",\n  :port => 587,\n  :user_name => \"{g.ch(['mailer', 'postmaster'])}\",\n  :password => \"",
                  S(pw), "\",\n  :authentication => :login\n}")
    return mk(f"ActiveRecord::Base.establish_connection(adapter: \"mysql2\", host: \"{g.host('mysql')}\", username: \"{g.user()}\", password: \"", S(pw),
              f"\", database: \"{g.db()}\")")


@T("pw", "go-struct-literal")
def _(g):
    pw = g.pw(forbid="\n\"\\")
    k = g.ri(0, 2)
    if k == 0:
        return mk(f"rdb := redis.NewClient(&redis.Options{{\n\tAddr:     \"{g.host('redis')}:6379\",\n\tPassword: \"", S(pw), "\",\n\tDB:       0,\n})")
    if k == 1:
        return mk(f"d := gomail.NewDialer(\"smtp.{g.org()}\", 587, \"{g.ch(['alerts', 'noreply'])}\", \"", S(pw), "\")")
    return mk(f"if err := conn.Bind(\"cn={g.ch(['reader', 'svc-ldap'])},ou=services,dc=corp,dc=lan\", \"", S(pw), "\"); err != nil {\n\tlog.Fatal(err)\n}")


@T("pw", "rust-builder-literal")
def _(g):
    pw = g.pw(forbid="\n\"\\")
    k = g.ri(0, 2)
    if k == 0:
        return mk(f"let opts = PgConnectOptions::new()\n    .host(\"{g.host('pg')}\")\n    .username(\"{g.user()}\")\n    .password(\"", S(pw), f"\")\n    .database(\"{g.db()}\");")
    if k == 1:
        return mk(f"let creds = Credentials::new(\"{g.ch(['alerts', 'noreply'])}\".to_owned(), \"", S(pw), "\".to_owned());")
    return mk(f"let cfg = DbConfig {{\n    user: \"{g.user()}\".into(),\n    password: \"", S(pw), f"\".into(),\n    host: \"{g.host('db')}\".into(),\n}};")


@T("pw", "csharp-credential")
def _(g):
    pw = g.pw(forbid="\n\"\\{}")
    if g.p(0.5):
        return mk(f"var client = new SmtpClient(\"smtp.{g.org()}\", 587)\n{{\n    EnableSsl = true,\n    Credentials = new NetworkCredential(\"{g.ch(['alerts', 'noreply'])}\", \"", S(pw), "\")\n};")
    return mk(f"var factory = new ConnectionFactory {{ HostName = \"{g.host('mq')}\", UserName = \"{g.user()}\", Password = \"", S(pw), "\" };")


@T("pw", "perl-dbi-connect")
def _(g):
    pw = g.pw(forbid="\n'\\")
    drv = g.ch(["Pg", "mysql", "Oracle"])
    return mk(f"my $dbh = DBI->connect(\"dbi:{drv}:dbname={g.db()};host={g.host('db')}\", '{g.user()}', '", S(pw), "', { RaiseError => 1, AutoCommit => 0 });")


@T("pw", "ldif-userpassword-plain")
def _(g):
    pw = g.pw(forbid="\n", ascii_only=True, lead_forbid=":< ")
    u = g.first().lower()
    return mk(f"dn: uid={u},ou=people,dc={g.word()},dc=lan\nchangetype: modify\nreplace: userPassword\nuserPassword: ", S(pw))


@T("pw", "ci-variables-yaml")
def _(g):
    pw = g.pw(forbid="\n'\\")
    if g.p(0.5):
        return mk(f"variables:\n  POSTGRES_DB: {g.db()}\n  POSTGRES_USER: {g.user()}\n  POSTGRES_PASSWORD: ", yq(g, pw),
                  f"\n\ntest:\n  image: python:3.12\n  services:\n    - postgres:16\n  script:\n    - pytest -q")
    return mk(f"pipeline {{\n  agent any\n  environment {{\n    DEPLOY_USER = '{g.ch(['deploy', 'svc_release'])}'\n    DEPLOY_PASS = '", S(pw),
              "'\n  }\n  stages {\n    stage('Deploy') { steps { sh './deploy.sh' } }\n  }\n}")


@T("pw", "helm-set-cli")
def _(g):
    pw = g.pw(forbid="\n ,'\"\\{}=[]")
    chart, key = g.ch([("bitnami/postgresql", "auth.postgresPassword"), ("bitnami/redis", "auth.password"),
                       ("bitnami/mariadb", "auth.rootPassword"), ("bitnami/rabbitmq", "auth.password"),
                       ("grafana/grafana", "adminPassword")])
    return mk(f"helm upgrade --install {g.word()} {chart} -n {g.ch(['data', 'infra', 'default'])} --set {key}=", S(pw), " --wait")


@T("pw", "kubectl-set-env")
def _(g):
    pw = g.pw(forbid="\n '\"\\$`")
    w = g.word()
    return mk(f"kubectl -n {g.ch(['prod', 'shop', 'billing'])} set env deployment/{w}-api {g.ch(['DB_PASSWORD', 'SMTP_PASS', 'AMQP_PASSWORD'])}=", S(pw),
              f"\ndeployment.apps/{w}-api env updated")


@T("pw", "tomcat-users-xml")
def _(g):
    pw = g.pw(forbid="\n")
    return mk(f"<tomcat-users>\n  <role rolename=\"manager-gui\"/>\n  <user username=\"{g.ch(['admin', 'tomcat', 'deployer'])}\" password=\"", S(e_xml(pw)),
              "\" roles=\"manager-gui,manager-script\"/>\n</tomcat-users>")


@T("pw", "haproxy-userlist-stats")
def _(g):
    pw = g.pw(forbid="\n \t#")
    if g.p(0.5):
        return mk(f"userlist {g.ch(['admins', 'stats_users'])}\n    user {g.ch(['admin', 'ops'])} insecure-password ", S(pw))
    return mk(f"listen stats\n    bind :8404\n    stats enable\n    stats uri /stats\n    stats auth {g.ch(['admin', 'haproxy'])}:", S(pw))


@T("pw", "rsyncd-secrets")
def _(g):
    pw = g.pw(forbid="\n:")
    return mk(f"$ sudo cat /etc/rsyncd.secrets\n{g.ch(['backup', 'mirror', 'www'])}:", S(pw))


@T("pw", "mail-client-rc")
def _(g):
    k = g.ri(0, 2)
    if k == 0:
        pw = g.pw(forbid="\n\"\\$`")
        return mk(f"set smtp_url = \"smtps://{g.first().lower()}@smtp.{g.org()}:465/\"\nset smtp_pass = \"", S(pw), "\"")
    if k == 1:
        pw = g.pw(forbid="\n ")
        return mk(f"account default\nhost smtp.{g.org()}\nport 587\ntls on\nuser {g.ch(['alerts', 'cron'])}\npassword ", S(pw))
    pw = g.pw(forbid="\n'")
    return mk(f"poll imap.{g.org()} protocol IMAP user \"{g.first().lower()}\" password '", S(pw), "' ssl")


@T("pw", "openvpn-auth-file")
def _(g):
    pw = g.pw(forbid="\n")
    return mk(f"$ cat /etc/openvpn/client/auth.txt\n{g.first().lower()}.{g.last().lower()}\n", S(pw))


@T("pw", "ipsec-secrets")
def _(g):
    pw = g.pw(forbid="\n\"")
    if g.p(0.5):
        return mk(f"# /etc/ipsec.secrets\n%any %any : PSK \"", S(pw), "\"")
    return mk(f"{g.first().lower()} : XAUTH \"", S(pw), "\"")


@T("pw", "keepalived-auth")
def _(g):
    pw = g.pw(forbid="\n \t{}", shape=g.ch(["alnum", "random", "words"]))[:8]
    return mk(f"vrrp_instance VI_1 {{\n    state MASTER\n    interface eth0\n    virtual_router_id {g.ri(10, 99)}\n    authentication {{\n        auth_type PASS\n        auth_pass ",
              S(pw), "\n    }\n}")


@T("pw", "windows-unattend")
def _(g):
    pw = g.pw(forbid="\n")
    return mk("<UserAccounts>\n  <AdministratorPassword>\n    <Value>", S(e_xml(pw)),
              "</Value>\n    <PlainText>true</PlainText>\n  </AdministratorPassword>\n</UserAccounts>")


@T("pw", "cloud-init-chpasswd")
def _(g):
    pw = g.pw(forbid="\n:#'\" ")
    if g.p(0.5):
        return mk(f"#cloud-config\nssh_pwauth: true\nchpasswd:\n  expire: false\n  users:\n    - name: {g.ch(['ubuntu', 'ops', 'pi'])}\n      password: ", S(pw), "\n      type: text")
    return mk(f"#cloud-config\nchpasswd:\n  list: |\n    {g.ch(['ubuntu', 'root', 'admin'])}:", S(pw), "\n  expire: False")


@T("pw", "kickstart-preseed")
def _(g):
    pw = g.pw(forbid="\n \t")
    if g.p(0.5):
        return mk(f"lang en_US.UTF-8\nkeyboard us\ntimezone UTC --utc\nrootpw --plaintext ", S(pw), "\nreboot")
    return mk("d-i passwd/root-login boolean true\nd-i passwd/root-password password ", S(pw),
              "\nd-i passwd/root-password-again password ", S(pw))


@T("pw", "kafka-jaas-config")
def _(g):
    pw = g.pw(forbid="\n\"\\;")
    mod = g.ch(["plain.PlainLoginModule", "scram.ScramLoginModule"])
    if g.p(0.5):
        return mk(f"security.protocol=SASL_SSL\nsasl.mechanism={'PLAIN' if 'plain' in mod else 'SCRAM-SHA-512'}\n"
                  f"sasl.jaas.config=org.apache.kafka.common.security.{mod} required username=\"{g.user()}\" password=\"", S(pw), "\";")
    return mk(f"KafkaClient {{\n  org.apache.kafka.common.security.{mod} required\n  username=\"{g.user()}\"\n  password=\"", S(pw), "\";\n};")


@T("pw", "influx-cli")
def _(g):
    pw = g.pw(forbid="\n'")
    if g.p(0.5):
        return mk(f"influx -host {g.host('influx')} -ssl -username admin -password '", S(e_sq(pw)), "' -database telegraf -execute 'SHOW MEASUREMENTS'")
    return mk(f"influx setup --username admin --password '", S(e_sq(pw)), f"' --org {g.word()} --bucket metrics --force")


# ===========================================================================
# db-url: connection strings of schemes and tools gen_text.py never uses
# ===========================================================================


def ui(g, user, pw=None):
    pw = pw if pw is not None else g.pw_url()
    return (e_url(user) + ":", S(e_url(pw)), "@")


@T("dburl", "sqlserver-semicolon-url")
def _(g):
    pw = g.pw(forbid="\n;{}\"' =")
    if g.p(0.5):
        return mk(f"MSSQL_DSN=\"sqlserver://{g.host('sql')}:1433;database={g.db()};user={g.ch(['sa', g.user()])};password=", S(pw),
                  ";encrypt=true;trustServerCertificate=false\"")
    return mk(f"jdbc:sqlserver://{g.host('sql')}:1433;databaseName={g.db()};user={g.user()};password=", S(pw), ";encrypt=true;loginTimeout=30")


@T("dburl", "oracle-thin")
def _(g):
    if g.p(0.5):
        pw = g.pw(forbid="\n/@ \"';:", ascii_only=True)
        return mk(f"db.url=jdbc:oracle:thin:{g.ch(['scott', 'app_owner', 'etl'])}/", S(pw), f"@//{g.host('ora')}:1521/{g.ch(['ORCLPDB1', 'FREEPDB1', 'PRODSVC'])}")
    return mk("engine = create_engine(\"oracle+oracledb://", ui(g, g.ch(["app_owner", "reporting"])), f"{g.host('ora')}:1521/?service_name=FREEPDB1\")")


@T("dburl", "couchdb-url")
def _(g):
    pre, post = g.ch([("COUCHDB_URL=", ""), ("const nano = require('nano')('", "');"), ("curl -s ", "")])
    return mk(pre, "http://", ui(g, g.ch(["admin", "couch_app"])), f"{g.host('couch')}:5984/{g.ch(['_all_dbs', g.db()])}", post)


@T("dburl", "neo4j-url")
def _(g):
    sch = g.ch(["neo4j+s", "bolt+s", "neo4j"])
    h = f"{g.hx(8)}.databases.neo4j.io" if sch != "neo4j" else f"{g.host('graph')}:7687"
    if g.p(0.5):
        return mk(f"NEO4J_URI={sch}://", ui(g, "neo4j"), h)
    return mk(f"cypher-shell -a \"{sch}://", ui(g, "neo4j"), h, "\" \"MATCH (n) RETURN count(n);\"")


@T("dburl", "influxdb-dsn")
def _(g):
    return mk("client = InfluxDBClient.from_dsn(\"influxdb://", ui(g, g.ch(["telegraf", "grafana", "admin"])),
              f"{g.host('influx')}:8086/{g.ch(['telegraf', 'metrics', 'iot'])}\", timeout=5)")


@T("dburl", "elasticsearch-url")
def _(g):
    h = f"{g.host('es')}:9200"
    k = g.ri(0, 2)
    if k == 0:
        return mk("es = Elasticsearch(\"https://", ui(g, "elastic"), h, "\", verify_certs=False)")
    if k == 1:
        return mk("ELASTICSEARCH_HOSTS=https://", ui(g, g.ch(["kibana_system", "logstash_writer"])), h)
    return mk("output.elasticsearch:\n  hosts: [\"https://", ui(g, "beats_writer"), h, "\"]")


@T("dburl", "clickhouse-go-dsn")
def _(g):
    return mk("conn, err := clickhouse.ParseDSN(\"clickhouse://", ui(g, g.ch(["default", "ingest"])),
              f"{g.host('ch')}:9440/{g.ch(['events', 'logs', 'analytics'])}?secure=true&dial_timeout=10s\")")


@T("dburl", "cockroach-cli-url")
def _(g):
    return mk("cockroach sql --url \"postgresql://", ui(g, g.ch(["root", "maxroach", g.user()])),
              f"{g.host('crdb')}:26257/{g.db()}?sslmode=verify-full\" -e 'SHOW TABLES;'")


@T("dburl", "prisma-datasource")
def _(g):
    p = g.ch(["postgresql", "mysql", "mongodb+srv"])
    tail = f"{g.host('db')}:5432/{g.db()}?schema=public" if p == "postgresql" else (
        f"{g.host('db')}:3306/{g.db()}" if p == "mysql" else f"cluster0.{g.s(5, LOWERNUM)}.mongodb.net/{g.db()}")
    return mk(f"datasource db {{\n  provider = \"{p.split('+')[0]}\"\n  url      = \"{p}://", ui(g, g.user()), tail, "\"\n}")


@T("dburl", "mqtt-url")
def _(g):
    return mk(g.ch(["MQTT_BROKER_URL=", "mqtt.connect('", "broker: "]), g.ch(["mqtts", "mqtt", "wss"]), "://",
              ui(g, g.ch(["sensor-gw", "telemetry", "iot_bridge"])), f"{g.host('mqtt')}:{g.ch([8883, 1883, 8884])}")


@T("dburl", "redis-sentinel-url")
def _(g):
    pw = g.pw_url()
    return mk("CACHE_URL=redis-sentinel://:", S(e_url(pw)), f"@sentinel-0.{g.ch(INTDOM)}:26379,sentinel-1.{g.ch(INTDOM)}:26379/{g.ri(0, 3)}?service_name=mymaster")


@T("dburl", "sqlalchemy-exotic-scheme")
def _(g):
    sch, port, path = g.ch([("snowflake", None, f"{g.s(7, UPPER)}-{g.s(7, UPPER)}/{g.db().upper()}/PUBLIC?warehouse=COMPUTE_WH"),
                            ("trino", 443, "hive/default"), ("hive", 10000, "default"), ("ibm_db_sa", 50000, "SAMPLE"),
                            ("vertica+vertica_python", 5433, "VMart"), ("redshift+psycopg2", 5439, "dev"),
                            ("firebird+fdb", 3050, "/data/ledger.fdb"), ("postgis", 5432, g.db())])
    if sch == "snowflake":
        host = ""
    elif sch.startswith("redshift"):
        host = f"{g.word()}-cluster.{g.s(12, LOWERNUM)}.eu-west-1.redshift.amazonaws.com:{port}/"
    else:
        host = f"{g.host(sch.split('+')[0][:5])}:{port}/"
    pre = g.ch(["SQLALCHEMY_DATABASE_URI = \"", "superset_db_uri: \"", "DATABASES[\"default\"] = dj_database_url.parse(\""])
    close = "\")" if pre.endswith("(\"") else "\""
    return mk(pre, f"{sch}://", ui(g, g.ch(["etl_user", "analyst", "dbadmin", "awsuser"])), host, path, close)


@T("dburl", "rabbitmq-management-api")
def _(g):
    return mk("curl -s \"http://", ui(g, g.ch(["monitoring", "admin"])),
              f"{g.host('mq')}:15672/api/queues/%2F\" | jq '.[].messages'")


@T("dburl", "kafka-connect-jdbc-json")
def _(g):
    pw = g.pw_url()
    d = {"name": f"{g.db()}-sink", "config": {"connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
                                               "connection.url": C([f"jdbc:postgresql://{g.host('pg')}:5432/{g.db()}?user={g.user()}&password=", S(e_qs(pw))]),
                                               "topics": f"{g.word()}.{g.word()}", "auto.create": "true"}}
    return mk(*jdump(d, indent=2))


@T("dburl", "go-mysql-driver-dsn")
def _(g):
    pw = g.pw(forbid="\n@/\"'` ")
    dsn = (f"{g.user()}:", S(pw), f"@tcp({g.host('mysql')}:3306)/{g.db()}?parseTime=true&charset=utf8mb4")
    if g.p(0.5):
        return mk("db, err := gorm.Open(mysql.Open(\"", dsn, "\"), &gorm.Config{})")
    return mk("MYSQL_DSN=", dsn)


# ===========================================================================
# generic-secret
# ===========================================================================


@T("gsecret", "rails-master-key-file")
def _(g):
    k = g.hx(32)
    if g.p(0.5):
        return mk("$ cat config/master.key\n", S(k))
    return mk(f"$ cat .kamal/secrets\nKAMAL_REGISTRY_PASSWORD=$KAMAL_REGISTRY_PASSWORD\nRAILS_MASTER_KEY=", S(k))


@T("gsecret", "phoenix-secret-key-base")
def _(g):
    v = g.s(64, ALNUM + "+/")
    return mk(f"config :{g.word()}, {g.word().capitalize()}Web.Endpoint,\n  url: [host: \"{g.word()}.{g.org()}\", port: 443],\n  secret_key_base: \"", S(v), "\"")


@T("gsecret", "flask-secret-key")
def _(g):
    k = g.ri(0, 2)
    if k == 0:
        return mk("app = Flask(__name__)\napp.config[\"SECRET_KEY\"] = \"", S(g.hx(g.ch([32, 48, 64]))), "\"")
    if k == 1:
        raw = g.rb(16)
        lit = "".join(chr(b) if 32 < b < 127 and chr(b) not in "'\\" else "\\x%02x" % b for b in raw)
        return mk("app.secret_key = b'", S(lit), "'")
    return mk("SECRET_KEY = os.environ.get(\"SECRET_KEY\", \"", S(g.s(50, ALNUM + "!@#%^&*(-_=+)")), "\")")


@T("gsecret", "helm-values-nested-secret")
def _(g):
    key = g.ch(["signingKey", "cookieSecret", "sessionSecret", "encryptionKey", "hmacKey"])
    return mk(f"replicaCount: {g.ri(1, 5)}\nimage:\n  repository: ghcr.io/{g.word()}/{g.word()}\n  tag: \"{g.ver()}\"\nconfig:\n  auth:\n    {key}: \"",
              S(g.secret()), "\"\n    ttl: 24h")


@T("gsecret", "cloudformation-parameters")
def _(g):
    k = g.ch(["JwtSecret", "SessionSecret", "WebhookSigningSecret", "OAuthClientSecret"])
    d = [{"ParameterKey": "Environment", "ParameterValue": "prod"}, {"ParameterKey": k, "ParameterValue": S(g.secret())}]
    return mk(f"$ cat params/prod.json\n", *jdump(d, indent=2))


@T("gsecret", "pulumi-config-plain")
def _(g):
    k = g.ch(["sessionSecret", "jwtSecret", "webhookSecret", "encryptionKey"])
    return mk(f"config:\n  aws:region: {g.ch(['eu-west-1', 'ap-south-1'])}\n  {g.word()}:{k}: ", S(g.secret(g.ch([0, 1, 4]))), f"\n  {g.word()}:replicas: \"{g.ri(1, 6)}\"")


@T("gsecret", "gha-workflow-env-literal")
def _(g):
    k = g.ch(["JWT_SECRET", "SESSION_SECRET", "APP_KEY_SECRET", "HMAC_SECRET"])
    return mk(f"jobs:\n  test:\n    runs-on: ubuntu-latest\n    env:\n      NODE_ENV: test\n      {k}: ", S(g.secret(g.ch([0, 1, 4]))),
              "\n    steps:\n      - uses: actions/checkout@v4\n      - run: npm ci && npm test")


@T("gsecret", "k8s-configmap-secret")
def _(g):
    k = g.ch(["SESSION_SECRET", "JWT_SIGNING_KEY", "COOKIE_SECRET", "WEBHOOK_SECRET"])
    return mk(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {g.word()}-config\ndata:\n  LOG_LEVEL: info\n  {k}: \"", S(g.secret()), "\"")


@T("gsecret", "oauth2-proxy-cfg")
def _(g):
    cs = g.b64u(32)
    return mk(f"provider = \"oidc\"\nclient_id = \"{g.word()}-proxy\"\nclient_secret = \"", S(g.s(32, ALNUM)), "\"\ncookie_secret = \"", S(cs),
              f"\"\nemail_domains = [\"*\"]")


@T("gsecret", "hmac-literal-key")
def _(g):
    k = g.secret(g.ch([0, 1, 4]))
    if g.p(0.5):
        return mk("expected = hmac.new(b\"", S(k), "\", request.body, hashlib.sha256).hexdigest()")
    return mk("const sig = crypto.createHmac('sha256', '", S(k), "').update(rawBody).digest('hex');")


@T("gsecret", "jwt-sign-literal")
def _(g):
    k = g.secret(g.ch([0, 1, 3, 4]))
    c = g.ri(0, 2)
    if c == 0:
        return mk("const token = jwt.sign({ sub: user.id }, \"", S(k), "\", { expiresIn: \"1h\" });")
    if c == 1:
        return mk("token = jwt.encode(payload, \"", S(k), "\", algorithm=\"HS256\")")
    return mk("signed, err := token.SignedString([]byte(\"", S(k), "\"))")


@T("gsecret", "express-session-secret")
def _(g):
    return mk("app.use(session({\n  secret: '", S(g.secret(g.ch([0, 1, 4]))), "',\n  resave: false,\n  saveUninitialized: false,\n  cookie: { secure: true }\n}));")


@T("gsecret", "k8s-encryption-config")
def _(g):
    return mk("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n    providers:\n"
              "      - aescbc:\n          keys:\n            - name: key1\n              secret: ", S(g.b64(32)), "\n      - identity: {}")


@T("gsecret", "airflow-fernet-key")
def _(g):
    k = b64s(g.rb(32)).replace("+", "-").replace("/", "_")
    if g.p(0.5):
        return mk("[core]\ndags_folder = /opt/airflow/dags\nexecutor = CeleryExecutor\nfernet_key = ", S(k))
    return mk("AIRFLOW__CORE__FERNET_KEY: '", S(k), "'")


@T("gsecret", "keycloak-adapter-json")
def _(g):
    d = {"realm": g.word(), "auth-server-url": f"https://sso.{g.org()}/", "ssl-required": "external", "resource": f"{g.word()}-backend",
         "credentials": {"secret": S(g.s(32, ALNUM))}, "confidential-port": 0}
    return mk(*jdump(d, indent=2))


@T("gsecret", "gitea-app-ini")
def _(g):
    return mk("[security]\nINSTALL_LOCK = true\nSECRET_KEY = ", S(g.s(64, ALNUM)), f"\n\n[oauth2]\nJWT_SECRET = ", S(g.b64u(32)))


@T("gsecret", "laravel-config-default")
def _(g):
    return mk("'key' => env('APP_KEY', '", S("base64:" + g.b64(32)), "'),\n'cipher' => 'AES-256-CBC',")


@T("gsecret", "aspnet-machinekey")
def _(g):
    return mk("<system.web>\n  <machineKey validationKey=\"", S(g.hx(128).upper()), "\" decryptionKey=\"", S(g.hx(48).upper()),
              "\" validation=\"HMACSHA256\" decryption=\"AES\" />\n</system.web>")


@T("gsecret", "wordpress-salts")
def _(g):
    chars = ALNUM + "!#$%&()*+,-./:;<=>?@[]^_`{|}~"
    name = g.ch(["AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT", "NONCE_SALT"])
    v = g.s(64, chars)
    return mk(f"define( '{name}', '", S(v), "' );")


@T("gsecret", "jupyter-token")
def _(g):
    t = g.hx(48)
    if g.p(0.6):
        return mk(f"[I {g.date()} {g.time()}.{g.dig(3)} ServerApp] Jupyter Server 2.14.{g.ri(0, 2)} is running at:\n[I ServerApp] http://localhost:8888/lab?token=", S(t),
                  "\n[I ServerApp]  or http://127.0.0.1:8888/lab?token=", S(t))
    return mk("c.ServerApp.token = '", S(t), "'\nc.ServerApp.open_browser = False")


@T("gsecret", "consul-nomad-gossip")
def _(g):
    return mk(f"datacenter = \"{g.ch(['dc1', 'eu-west', 'blr'])}\"\ndata_dir = \"/opt/consul\"\nencrypt = \"", S(g.b64(32)), "\"\nserver = true")


@T("gsecret", "wireguard-private-key")
def _(g):
    pk = g.b64(32)
    pub = g.b64(32)
    psk = g.p(0.3)
    return mk(f"[Interface]\nAddress = 10.{g.ri(0, 9)}.0.{g.ri(2, 50)}/24\nPrivateKey = ", S(pk), f"\nListenPort = 51820\n\n[Peer]\nPublicKey = {pub}\n",
              ("PresharedKey = ", S(g.b64(32)), "\n") if psk else "", f"AllowedIPs = 10.{g.ri(0, 9)}.0.0/24\nEndpoint = vpn.{g.org()}:51820")


@T("gsecret", "totp-otpauth-uri")
def _(g):
    sec = g.s(32, B32)
    return mk(f"otpauth://totp/{g.ch(['Lumenfold', 'Quarrybyte', 'Tidewell'])}:{g.first().lower()}?secret=", S(sec), f"&issuer={g.ch(['Lumenfold', 'Quarrybyte'])}&digits=6&period=30")


@T("gsecret", "compose-secret-env")
def _(g):
    k = g.ch(["DRONE_RPC_SECRET", "WOODPECKER_AGENT_SECRET", "OUTLINE_SECRET_KEY", "N8N_ENCRYPTION_KEY", "AUTHENTIK_SECRET_KEY"])
    return mk(f"services:\n  {k.split('_')[0].lower()}:\n    image: {k.split('_')[0].lower()}/{k.split('_')[0].lower()}:latest\n    environment:\n      - {k}=",
              S(g.secret(g.ch([0, 1, 4]))), "\n    restart: unless-stopped")


# ===========================================================================
# private keys in renderings gen_keys.py never uses
# ===========================================================================

KF = None   # KeyFactory, set in main()

KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")


def kspan(text):
    s = KEY_BEGIN.search(text).start()
    ends = list(KEY_END.finditer(text))
    return [[s, ends[-1].end()]]


def take(pref=None):
    if pref:
        for i, (kind, k, doc) in enumerate(KF.keys):
            if any(kind.startswith(p) for p in pref):
                return KF.keys.pop(i)
    return KF.take()


def krow(text, kind):
    return text, kspan(text), {"sub": kind}


@T("pkey", "helm-values-tls-key")
def _(g):
    kind, k, doc = take(["rsa", "p256", "ed25519"])
    key = g.ch(["keyPem", "privateKeyPEM", "tlsKey", "idpSigningKey", "serverKey"])
    body = "\n".join("      " + ln for ln in doc.split("\n"))
    return krow(f"ingress:\n  enabled: true\n  hostname: {g.word()}.{g.org()}\n  tls:\n    enabled: true\n    certManager: false\n    {key}: |-\n{body}\n"
                f"    cert: \"\"\nresources: {{}}", kind)


@T("pkey", "pkcs12-nodes-output")
def _(g):
    kind, k, doc = take(["rsa2048-pkcs8", "rsa3072", "p256-pkcs8"])
    kid = " ".join(g.hx(2).upper() for _ in range(20))
    return krow(f"$ openssl pkcs12 -in {g.ch(['keystore', 'tomcat', 'client'])}.p12 -nodes -nocerts -passin env:P12_PASS\nBag Attributes\n    localKeyID: {kid}\n"
                f"    friendlyName: {g.ch(['tomcat', 'server', 'client-auth', '1'])}\nKey Attributes: <No Attributes>\n{doc}", kind)


@T("pkey", "xml-cdata")
def _(g):
    kind, k, doc = take()
    tag = g.ch(["SigningKey", "PrivateKey", "sp:privateKey", "ssh:key"])
    return krow(f"<ServiceProvider entityId=\"https://{g.word()}.{g.org()}/saml\">\n  <{tag}><![CDATA[\n{doc}\n]]></{tag}>\n</ServiceProvider>", kind)


@T("pkey", "tfstate-tls-private-key")
def _(g):
    kind, k, doc = take(["openssh", "rsa2048-pkcs8", "p256-pkcs8", "ed25519"])
    field = "private_key_openssh" if kind.startswith("openssh") else "private_key_pem_pkcs8"
    d = {"mode": "managed", "type": "tls_private_key", "name": g.word(), "provider": 'provider["registry.terraform.io/hashicorp/tls"]',
         "instances": [{"schema_version": 1, "attributes": {"algorithm": {"rsa": "RSA", "ec": "ECDSA", "ed25519": "ED25519"}[k["type"]],
                                                            "ecdsa_curve": "P256", "id": g.hx(40), field: S(doc + "\n"),
                                                            "public_key_fingerprint_md5": ":".join(g.hx(2) for _ in range(16))},
                        "sensitive_attributes": []}]}
    t, _ = mk(*jdump(d, indent=2))
    return krow(t, kind)


@T("pkey", "windows-crlf")
def _(g):
    kind, k, doc = take(["rsa", "p256", "ed25519"])
    path = g.ch(["C:\\certs\\server.key", "D:\\iis\\ssl\\site.key", "C:\\Users\\svc\\.ssh\\id_rsa"])
    return krow(f"C:\\> type {path}\r\n" + doc.replace("\n", "\r\n") + "\r\n\r\nC:\\>", kind)


@T("pkey", "hash-commented-block")
def _(g):
    kind, k, doc = take()
    c = g.ch(["# ", "#", "## "])
    body = "\n".join(c + ln for ln in doc.split("\n"))
    return krow(f"# old key, replaced {g.date()} -- keep for rollback\n{body}\nssl_certificate_key /etc/ssl/private/{g.word()}.key;", kind)


@T("pkey", "python-triple-quoted")
def _(g):
    kind, k, doc = take()
    v = g.ch(["PRIVATE_KEY", "SIGNING_KEY_PEM", "DEPLOY_KEY", "_TEST_KEY"])
    return krow(f"{v} = \"\"\"{doc}\n\"\"\"\n\nsigner = load_pem_private_key({v}.encode(), password=None)", kind)


@T("pkey", "vault-pki-issue")
def _(g):
    kind, k, doc = take(["rsa2048-pkcs1", "rsa1024", "p256-sec1"])
    typ = "rsa" if kind.startswith("rsa") else "ec"
    cn = f"{g.word()}.{g.ch(INTDOM)}"
    return krow(f"$ vault write pki_int/issue/{g.word()} common_name={cn} ttl=24h\nKey                 Value\n---                 -----\n"
                f"expiration          {g.epoch()}\nissuing_ca          -----BEGIN CERTIFICATE-----\nMIID{g.s(60, B64)}\n...\n-----END CERTIFICATE-----\n"
                f"private_key         {doc}\nprivate_key_type    {typ}\nserial_number       {':'.join(g.hx(2) for _ in range(20))}", kind)


@T("pkey", "ssh-add-heredoc")
def _(g):
    kind, k, doc = take(["openssh", "rsa2048-pkcs1", "rsa1024"])
    cm = g.ch(["deploy@ci-runner", "(stdin)", "git@buildbox"])
    return krow(f"$ ssh-add - <<'EOF'\n{doc}\nEOF\nIdentity added: (stdin) ({cm})", kind)


@T("pkey", "go-raw-string")
def _(g):
    kind, k, doc = take()
    return krow(f"// TODO: move to secret store\nconst {g.ch(['signingKey', 'testKeyPEM', 'serverKey'])} = `{doc}\n`\n\nblock, _ := pem.Decode([]byte(signingKey))", kind)


@T("pkey", "rust-raw-string")
def _(g):
    kind, k, doc = take()
    return krow(f"const {g.ch(['KEY_PEM', 'SIGNING_KEY', 'TLS_KEY'])}: &str = r#\"{doc}\n\"#;", kind)


@T("pkey", "js-concatenated-lines")
def _(g):
    kind, k, doc = take()
    ls = doc.split("\n")
    body = " +\n  ".join('"' + ln + '\\n"' for ln in ls)
    return krow(f"const privateKey =\n  {body};\n\nmodule.exports = {{ privateKey }};", kind)


@T("pkey", "csharp-verbatim-string")
def _(g):
    kind, k, doc = take(["rsa", "p256"])
    return krow(f"private const string Pem = @\"{doc}\";\nvar rsa = RSA.Create();\nrsa.ImportFromPem(Pem);", kind)


@T("pkey", "ruby-squiggly-heredoc")
def _(g):
    kind, k, doc = take()
    body = "\n".join("    " + ln for ln in doc.split("\n"))
    return krow(f"  PRIVATE_KEY = <<~PEM\n{body}\n  PEM\n  KEY = OpenSSL::PKey.read(PRIVATE_KEY)", kind)


@T("pkey", "powershell-here-string")
def _(g):
    kind, k, doc = take()
    return krow(f"$keyPem = @'\n{doc}\n'@\nSet-Content -Path \"$env:USERPROFILE\\.ssh\\id_deploy\" -Value $keyPem -NoNewline", kind)


@T("pkey", "single-line-spaces")
def _(g):
    kind, k, doc = take(["rsa", "p256", "k256", "ed25519"])
    one = doc.replace("\n", " ")
    pre = g.ch(["JWT_PRIVATE_KEY=", "=== app Config Vars\nSIGNING_KEY:   ", "private_key: ", "KEY=\""])
    return krow(pre + one + ("\"" if pre.endswith("\"") else ""), kind)


@T("pkey", "markdown-issue-fence")
def _(g):
    kind, k, doc = take()
    err = g.ch(["error:1E08010C:DECODER routines::unsupported", "Load key \"id_deploy\": invalid format",
                "crypto/x509: failed to parse private key", "ValueError: Could not deserialize key data."])
    return krow(f"Getting `{err}` when the service starts. This is the key from the vault, anyone see what's wrong?\n\n```\n{doc}\n```\n\nThanks!", kind)


@T("pkey", "email-quoted-reply")
def _(g):
    kind, k, doc = take()
    body = "\n".join("> " + ln for ln in doc.split("\n"))
    return krow(f"On {g.ch(['Mon', 'Tue', 'Wed'])}, {g.ri(1, 28)} Oct 2026 at {g.time()[:5]}, {g.name()} wrote:\n> here is the server key you asked for:\n>\n{body}\n>\n> cheers", kind)


@T("pkey", "sql-insert-pem")
def _(g):
    kind, k, doc = take()
    return krow(f"INSERT INTO tenant_keys (tenant_id, kid, private_pem, created_at)\nVALUES ({g.ri(1, 999)}, '{g.hx(16)}', '{doc}\n', now());", kind)


@T("pkey", "jupyter-source-lines")
def _(g):
    kind, k, doc = take()
    src = ["key_pem = \"\"\"" + doc.split("\n")[0] + "\n"] + [ln + "\n" for ln in doc.split("\n")[1:]] + ["\"\"\"\n", "key = serialization.load_pem_private_key(key_pem.encode(), None)"]
    cell = {"cell_type": "code", "execution_count": g.ri(1, 30), "metadata": {}, "outputs": [], "source": src}
    t, _ = mk(*jdump(cell, indent=1))
    return krow(t, kind)


@T("pkey", "docker-secret-printf")
def _(g):
    kind, k, doc = take()
    return krow(f"printf '%s\\n' '{doc}' | docker secret create {g.ch(['tls_key', 'deploy_key', 'jwt_signing_key'])} -", kind)


@T("pkey", "jwk-private")
def _(g):
    kind, k, doc = take(["rsa2048", "rsa1024", "p256", "ed25519"])

    def b(x, n=None):
        return b64u(x.to_bytes(n or (x.bit_length() + 7) // 8, "big"))
    kid = g.s(16, B64URL)
    if k["type"] == "rsa":
        d = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b(k["n"]), "e": b(k["e"]), "d": b(k["d"]), "p": b(k["p"]),
             "q": b(k["q"]), "dp": b(k["dp"]), "dq": b(k["dq"]), "qi": b(k["qi"])}
    elif k["type"] == "ec":
        d = {"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256", "x": b64u(k["pub"][1:33]), "y": b64u(k["pub"][33:]), "d": b(k["d"], 32)}
    else:
        d = {"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(k["pub"]), "d": b64u(k["seed"])}
    body = json.dumps(d, indent=g.ch([None, 2]))
    pre = g.ch(["$ cat jwks-private.json\n{\"keys\": [", "JWT_SIGNING_JWK='", "signing_jwk = "])
    post = {"$ cat jwks-private.json\n{\"keys\": [": "]}", "JWT_SIGNING_JWK='": "'", "signing_jwk = ": ""}[pre]
    return mk(pre, S(body), post) + ({"sub": "jwk-" + k["type"]},)


# ===========================================================================
# phone numbers of the 12 most populous countries, in new renderings
# ===========================================================================


def _ph(cc, groups, nat):
    nsn = "".join(groups)
    return {"e164": f"+{cc}{nsn}", "intl": f"+{cc} " + " ".join(groups), "mixed": f"+{cc} " + "-".join(groups),
            "i00": g_i00(cc, groups), "nat": nat, "bare": f"{cc}{nsn}", "pcc": f"(+{cc}) " + " ".join(groups),
            "pcc2": f"+({cc}) " + " ".join(groups)}


def g_i00(cc, groups):
    return f"00{cc} " + " ".join(groups)


def ph_IN(g):
    if g.p(0.8):
        n = g.ch("6789") + g.dig(9)
        return _ph("91", [n[:5], n[5:]], g.ch([f"0{n[:5]} {n[5:]}", f"0{n}", f"{n[:5]}-{n[5:]}"]))
    a = g.ch(["22", "11", "80", "40", "33"])
    s = g.ch("2345") + g.dig(7)
    return _ph("91", [a, s[:4], s[4:]], f"0{a}-{s[:4]} {s[4:]}")


def ph_CN(g):
    if g.p(0.8):
        p = g.ch(["134", "139", "147", "150", "153", "158", "166", "173", "177", "181", "186", "189", "195", "199"])
        a, b = g.dig(4), g.dig(4)
        return _ph("86", [p, a, b], g.ch([f"{p} {a} {b}", f"{p}-{a}-{b}", f"{p}{a}{b}"]))
    a = g.ch(["10", "21", "755", "20"])
    s = g.ch("2345678") + g.dig(7 if len(a) == 2 else 6)
    return _ph("86", [a, s[:4], s[4:]], f"0{a}-{s}")


NPA = ["205", "210", "217", "224", "248", "267", "281", "314", "330", "336", "352", "385", "402", "410", "414", "470",
       "480", "504", "517", "540", "571", "585", "608", "612", "614", "630", "646", "678", "704", "720", "734", "757",
       "763", "804", "816", "828", "847", "860", "904", "916", "925", "952", "973", "984"]


def ph_US(g):
    npa = g.ch(NPA)
    while True:
        nxx = g.ch("23456789") + g.dig(2)
        if nxx[1:] != "11" and nxx != "555":
            break
    ln = g.dig(4)
    d = _ph("1", [npa, nxx, ln], g.ch([f"({npa}) {nxx}-{ln}", f"{npa}-{nxx}-{ln}", f"{npa}.{nxx}.{ln}"]))
    d["mixed"] = f"+1 {npa}-{nxx}-{ln}"
    d["pcc"] = f"+1 ({npa}) {nxx}-{ln}"
    d["pcc2"] = f"(+1) {npa} {nxx} {ln}"
    return d


def ph_ID(g):
    p = g.ch(["811", "812", "813", "821", "822", "852", "853", "857", "878", "896", "898", "838", "856"])
    a, b = g.dig(4), g.dig(g.ch([3, 4]))
    return _ph("62", [p, a, b], g.ch([f"0{p}-{a}-{b}", f"0{p} {a} {b}", f"0{p}{a}{b}"]))


def ph_PK(g):
    p = g.ch(["300", "301", "303", "305", "311", "315", "321", "324", "331", "333", "345", "346"])
    s = g.dig(7)
    return _ph("92", [p, s], g.ch([f"0{p}-{s}", f"0{p} {s}", f"0{p}{s}"]))


def ph_NG(g):
    p = g.ch(["703", "706", "803", "806", "810", "813", "814", "816", "903", "906", "805", "807", "809", "817", "818", "909"])
    a, b = g.dig(3), g.dig(4)
    return _ph("234", [p, a, b], g.ch([f"0{p} {a} {b}", f"0{p}-{a}-{b}", f"0{p}{a}{b}"]))


def ph_BR(g):
    ddd = g.ch(["11", "21", "31", "41", "51", "61", "71", "81", "85", "92", "19", "48"])
    a, b = "9" + g.ch("6789") + g.dig(3), g.dig(4)
    d = _ph("55", [ddd, a, b], g.ch([f"({ddd}) {a}-{b}", f"0{ddd} {a}-{b}", f"{ddd} {a}{b}"]))
    d["mixed"] = f"+55 {ddd} {a}-{b}"
    return d


def ph_BD(g):
    p = "1" + g.ch("3456789") + g.dig(2)
    s = g.dig(6)
    return _ph("880", [p, s], g.ch([f"0{p}-{s}", f"0{p}{s}", f"0{p} {s}"]))


def ph_RU(g):
    p = g.ch(["903", "905", "909", "915", "916", "919", "925", "926", "977", "985", "999", "495", "812"])
    a, b, c = g.ch("2345678") + g.dig(2), g.dig(2), g.dig(2)
    d = _ph("7", [p, a, b, c], g.ch([f"8 ({p}) {a}-{b}-{c}", f"8-{p}-{a}-{b}-{c}", f"8{p}{a}{b}{c}"]))
    d["pcc2"] = f"+7 ({p}) {a}-{b}-{c}"
    return d


def ph_ET(g):
    p = g.ch(["91", "92", "93", "94", "96", "97", "98", "99", "70"])
    a, b = g.dig(3), g.dig(4)
    return _ph("251", [p, a, b], g.ch([f"0{p} {a} {b}", f"0{p}{a}{b}", f"0{p}-{a}-{b}"]))


def ph_MX(g):
    if g.p(0.6):
        a = g.ch(["55", "33", "81"])
        s = g.ch("123456789") + g.dig(7)
        groups = [a, s[:4], s[4:]]
    else:
        a = g.ch(["222", "442", "477", "614", "664", "998"])
        s = g.ch("123456789") + g.dig(6)
        groups = [a, s[:3], s[3:]]
    return _ph("52", groups, " ".join(groups))


def ph_JP(g):
    p = g.ch(["90", "80", "70"])
    a, b = g.ch("123456789") + g.dig(3), g.dig(4)
    d = _ph("81", [p, a, b], f"0{p}-{a}-{b}")
    d["mixed"] = f"+81 {p}-{a}-{b}"
    return d


COUNTRIES = [("IN", ph_IN), ("CN", ph_CN), ("US", ph_US), ("ID", ph_ID), ("PK", ph_PK), ("NG", ph_NG), ("BR", ph_BR),
             ("BD", ph_BD), ("RU", ph_RU), ("ET", ph_ET), ("MX", ph_MX), ("JP", ph_JP)]
CITY = {"IN": ("Pune", "411001"), "CN": ("Hangzhou", "310000"), "US": ("Columbus, OH", "43215"), "ID": ("Surabaya", "60111"),
        "PK": ("Lahore", "54000"), "NG": ("Abuja", "900001"), "BR": ("Belo Horizonte", "30130-000"), "BD": ("Chattogram", "4000"),
        "RU": ("Kazan", "420111"), "ET": ("Bahir Dar", "6000"), "MX": ("Guadalajara", "44100"), "JP": ("Sapporo", "060-0001")}


def phone(g, fmts=("e164", "intl", "mixed", "i00", "nat", "pcc", "pcc2"), cc=None):
    if cc:
        c, fn = cc, dict(COUNTRIES)[cc]
    else:
        c, fn = g.ch(COUNTRIES)
    d = fn(g)
    f = g.ch(list(fmts))
    return d[f], c, f


def ph_ret(t, spans, c, f):
    return t, spans, {"sub": f"{c}-{f}"}


@T("phone", "phone-csv-export-columns")
def _(g):
    num, c, f = phone(g)
    sep = g.ch([";", ",", "|"])
    hdr = g.ch([["Customer Name", "Mobile No.", "Pincode"], ["contact", "msisdn", "postcode"], ["Nama", "No. HP", "Kode Pos"],
                ["full_name", "primary_contact_number", "zip"], ["Cliente", "Celular", "CEP"]])
    q = '"' if (sep == "," and ("," in num)) else ""
    return ph_ret(*mk(sep.join(hdr) + "\n" + g.name() + sep + q, S(num), q + sep + CITY[c][1]), c, f)


@T("phone", "phone-html-table")
def _(g):
    num, c, f = phone(g)
    return ph_ret(*mk(f"<table class=\"staff\">\n  <tr><th>Name</th><th>Role</th><th>Mobile</th></tr>\n  <tr><td>{g.name()}</td><td>{g.ch(['Driver', 'Store manager', 'Courier'])}</td><td>",
                      S(num), "</td></tr>\n</table>"), c, f)


@T("phone", "phone-markdown-table")
def _(g):
    num, c, f = phone(g)
    return ph_ret(*mk(f"| On-call | Week | Phone |\n|---|---|---|\n| {g.name()} | {g.ri(1, 52)} | ", S(num), " |"), c, f)


@T("phone", "phone-sms-gateway-json")
def _(g):
    num, c, f = phone(g, ("e164", "bare", "e164"))
    key = g.ch([("to", "from", "text"), ("msisdn", "sender", "message"), ("destination", "source", "content")])
    d = {key[0]: S(num), key[1]: g.ch(["ACME", "QBYTE", "TIDEWL"]), key[2]: f"Your verification code is {g.dig(6)}. It expires in 10 minutes.",
         "callback_url": f"https://api.{g.org()}/sms/status"}
    return ph_ret(*mk(f"POST /v1/messages HTTP/1.1\nContent-Type: application/json\n\n", *jdump(d, compact=g.p(0.5))), c, f)


@T("phone", "phone-cdr-csv")
def _(g):
    a, c, f = phone(g, ("e164", "bare"))
    b, c2, f2 = phone(g, ("e164", "bare"), cc=c)
    return ph_ret(*mk("start,src,dst,disposition,billsec,uniqueid\n", f"{g.date()} {g.time()},", S(a), ",", S(b),
                      f",{g.ch(['ANSWERED', 'NO ANSWER', 'BUSY'])},{g.ri(0, 900)},{g.epoch()}.{g.ri(1, 999)}"), c, f)


@T("phone", "phone-asterisk-log")
def _(g):
    num, c, f = phone(g, ("e164", "bare"))
    return ph_ret(*mk(f"[{g.date()} {g.time()}] VERBOSE[{g.ri(1000, 99999)}][C-{g.hx(8)}] pbx.c: Executing [", S(num),
                      f"@from-trunk:1] Dial(\"PJSIP/trunk-{g.hx(8)}\", \"PJSIP/{g.ri(100, 299)}&PJSIP/{g.ri(300, 499)},30\") in new stack"), c, f)


@T("phone", "phone-freeswitch-log")
def _(g):
    num, c, f = phone(g, ("e164", "bare"))
    return ph_ret(*mk(f"{g.date()} {g.time()}.{g.dig(6)} [NOTICE] switch_channel.c:1142 New Channel sofia/external/", S(num),
                      f"@198.51.100.{g.ri(2, 250)} [{g.uuid()}]"), c, f)


@T("phone", "phone-whatsapp-webhook")
def _(g):
    num, c, f = phone(g, ("bare",))
    d = {"object": "whatsapp_business_account", "entry": [{"id": g.nz(15), "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "contacts": [{"profile": {"name": g.name()}, "wa_id": S(num)}],
        "messages": [{"from": S(num), "id": "wamid.HBgM" + g.s(40, ALNUM), "timestamp": str(g.epoch()), "type": "text",
                      "text": {"body": g.ch(["Hi, is my order shipped?", "I want to cancel", "Thanks!"])}}]}}]}]}
    return ph_ret(*mk(*jdump(d, compact=True)), c, f)


@T("phone", "phone-telegram-contact")
def _(g):
    num, c, f = phone(g, ("bare", "e164"))
    d = {"update_id": g.ri(100000000, 999999999), "message": {"message_id": g.ri(1, 9999), "from": {"id": g.ri(10 ** 8, 8 * 10 ** 9), "is_bot": False,
         "first_name": g.first()}, "date": g.epoch(), "contact": {"phone_number": S(num), "first_name": g.first(), "user_id": g.ri(10 ** 8, 8 * 10 ** 9)}}}
    return ph_ret(*mk(f"{g.iso()} DEBUG bot.updates ", *jdump(d, compact=True)), c, f)


@T("phone", "phone-address-block")
def _(g):
    num, c, f = phone(g)
    city, pc = CITY[c]
    return ph_ret(*mk(f"SHIP TO:\n{g.name().upper()}\n{g.ri(1, 400)} {g.word().capitalize()} {g.ch(['Road', 'Street', 'Avenue', 'Marg', 'Rua'])}\n{city} {pc}\n",
                      g.ch(["Tel: ", "Phone: ", "Ph. ", "☎ "]), S(num)), c, f)


@T("phone", "phone-order-dump")
def _(g):
    num, c, f = phone(g)
    return ph_ret(*mk(f"order_id={g.ri(100000, 999999)} status=paid total={g.ri(5, 900)}.{g.dig(2)} billing_name=\"{g.name()}\" billing_phone=\"", S(num),
                      f"\" shipping_method={g.ch(['express', 'standard', 'pickup'])}"), c, f)


@T("phone", "phone-with-extension")
def _(g):
    num, c, f = phone(g, ("intl", "mixed", "nat", "pcc"))
    ext = g.ch([" ext. ", " x", " ext ", " #", ", Durchwahl ", " доб. "]) + str(g.ri(10, 9999))
    return ph_ret(*mk(f"{g.ch(['Front desk', 'Accounts payable', 'IT helpdesk', 'Reception'])}: ", S(num), ext), c, f)


NATIVE = {"IN": ["फ़ोन नंबर: ", "मोबाइल: "], "CN": ["手机：", "联系电话："], "US": ["Cell: ", "Daytime phone: "],
          "ID": ["No. HP: ", "Telepon: "], "PK": ["فون نمبر: ", "Mobile #: "], "NG": ["GSM: ", "Phone No: "],
          "BR": ["Celular: ", "Telefone: "], "BD": ["মোবাইল: ", "ফোন: "], "RU": ["Телефон: ", "Моб.: "],
          "ET": ["ስልክ: ", "Mobile: "], "MX": ["Tel. móvil: ", "Teléfono: "], "JP": ["電話番号：", "携帯："]}


@T("phone", "phone-native-label")
def _(g):
    c, _ = g.ch(COUNTRIES)
    num, c, f = phone(g, ("nat", "intl", "e164"), cc=c)
    return ph_ret(*mk(g.ch(NATIVE[c]), S(num)), c, f)


@T("phone", "phone-twilio-webhook-form")
def _(g):
    num, c, f = phone(g, ("e164",))
    enc = "%2B" + num[1:]
    return ph_ret(*mk(f"POST /sms/inbound HTTP/1.1\nContent-Type: application/x-www-form-urlencoded\n\nToCountry=US&SmsSid=SM{g.hx(32)}&From=", S(enc),
                      f"&Body={g.ch(['STOP', 'HELP', 'Yes'])}&NumMedia=0"), c, "e164-urlencoded")


@T("phone", "phone-psql-table")
def _(g):
    num, c, f = phone(g)
    n = g.name()
    w = max(len(num), 5)
    return ph_ret(*mk(f" id  | name{' ' * (len(n) - 4)} | phone\n-----+{'-' * (len(n) + 2)}+{'-' * (w + 1)}\n {g.ri(100, 999)} | {n} | ", S(num),
                      "\n(1 row)"), c, f)


# ===========================================================================
# e-mail addresses (real-looking, not at reserved domains)
# ===========================================================================

PROVIDERS = ["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "rediffmail.com", "qq.com", "163.com",
             "yandex.ru", "mail.ru", "uol.com.br", "yahoo.co.jp", "hotmail.com", "ymail.com", "zoho.in", "gmx.net"]


def email(g):
    f, l_ = g.first().lower(), g.last().lower()
    dom = g.ch(PROVIDERS) if g.p(0.6) else g.org()
    local = g.ch([f"{f}.{l_}", f"{f[0]}{l_}", f"{f}{g.ri(1, 99)}", f"{f}_{l_}{g.ri(70, 99)}", f"{l_}.{f}", f"{f}.{l_}+{g.word()}"])
    return f"{local}@{dom}"


@T("email", "email-return-path")
def _(g):
    return mk("Return-Path: <", S(email(g)), f">\nReceived: from mail-{g.s(6, LOWERNUM)}.{g.org()} by mx.{g.org()} with ESMTPS id {g.s(12, ALNUM)}")


@T("email", "email-smtp-transcript")
def _(g):
    return mk(f"220 mx.{g.org()} ESMTP\nEHLO client\n250-mx.{g.org()}\nMAIL FROM:<", S(email(g)), ">\n250 2.1.0 Ok\nRCPT TO:<", S(email(g)), ">\n250 2.1.5 Ok")


@T("email", "email-postfix-log")
def _(g):
    return mk(f"{g.ch(['Nov', 'Dec'])} {g.ri(1, 28)} {g.time()} mx1 postfix/smtp[{g.ri(1000, 99999)}]: {g.hx(10).upper()}: to=<", S(email(g)),
              f">, relay={g.ch(['gmail-smtp-in.l.google.com', 'mx.yandex.ru', 'mx1.qq.com'])}[{g.ch(['aspmx', 'mx'])}]:25, delay={g.ri(0, 9)}.{g.ri(1, 9)}, status=sent (250 2.0.0 OK)")


@T("email", "email-ci-env")
def _(g):
    return mk(f"CI_COMMIT_AUTHOR={g.name()} <", S(email(g)), f">\nGITLAB_USER_EMAIL=", S(email(g)), f"\nCI_PIPELINE_ID={g.ri(100000, 999999)}")


@T("email", "email-package-manifest")
def _(g):
    e = email(g)
    if g.p(0.5):
        return mk("{\n  \"name\": \"@" + g.word() + "/" + g.word() + "\",\n  \"version\": \"" + g.ver() + "\",\n  \"author\": \"" + g.name() + " <", S(e), ">\",\n  \"license\": \"MIT\"\n}")
    return mk(f"[project]\nname = \"{g.word()}-{g.word()}\"\nversion = \"{g.ver()}\"\nauthors = [{{ name = \"{g.name()}\", email = \"", S(e), "\" }]")


@T("email", "email-ics-organizer")
def _(g):
    return mk(f"BEGIN:VEVENT\nUID:{g.uuid()}\nDTSTART:{g.date('')}T{g.ri(8, 17):02d}0000Z\nSUMMARY:{g.ch(['Quarterly review', 'Vendor call', 'Sprint demo'])}\nORGANIZER;CN={g.name()}:mailto:",
              S(email(g)), f"\nATTENDEE;ROLE=REQ-PARTICIPANT;CN={g.name()}:mailto:", S(email(g)), "\nEND:VEVENT")


@T("email", "email-keycloak-event")
def _(g):
    return mk(f"{g.date()} {g.time()},{g.dig(3)} WARN  [org.keycloak.events] (executor-thread-{g.ri(1, 40)}) type=\"LOGIN_ERROR\", realmId=\"{g.uuid()}\", clientId=\"{g.word()}-web\", "
              f"userId=\"null\", error=\"user_not_found\", auth_method=\"openid-connect\", username=\"", S(email(g)), "\"")


@T("email", "email-cert-subject")
def _(g):
    return mk(f"subject=C = {g.ch(['IN', 'BR', 'JP', 'NG'])}, O = {g.word().capitalize()} Ltd, CN = {g.name()}, emailAddress = ", S(email(g)),
              f"\nissuer=CN = {g.word().capitalize()} Internal CA")


# ===========================================================================
# card numbers (Luhn-valid), IBANs (mod-97), US SSNs (valid ranges)
# ===========================================================================

BRANDS = [("visa", lambda g: "4" + g.dig(5), 16), ("mc", lambda g: g.ch(["51", "53", "55"]) + g.dig(4), 16),
          ("mc2", lambda g: str(g.ri(2221, 2720)) + g.dig(2), 16), ("amex", lambda g: g.ch(["34", "37"]) + g.dig(4), 15),
          ("discover", lambda g: "6011" + g.dig(2), 16), ("jcb", lambda g: str(g.ri(3528, 3589)) + g.dig(2), 16),
          ("unionpay", lambda g: "62" + g.dig(4), 16), ("rupay", lambda g: g.ch(["6521", "6522"]) + g.dig(2), 16),
          ("elo", lambda g: g.ch(["438935", "451416"]), 16), ("visa19", lambda g: "4" + g.dig(5), 19)]
TEST_CARDS = {"4111111111111111", "4242424242424242", "5555555555554444", "378282246310005", "4012888888881881",
              "5105105105105100", "6011111111111117", "3530111333300000", "4000056655665556", "4000000000000002"}


def card(g, valid=True):
    while True:
        brand, pre, n = g.ch(BRANDS)
        body = pre(g)
        body += g.dig(n - 1 - len(body))
        d = luhn_complete(body)
        if not valid:
            d = d[:-1] + str((int(d[-1]) + g.ri(1, 9)) % 10)
        if d not in TEST_CARDS and (card_brand_ok(d) or not valid):
            return d, brand


def cfmt(g, d, sep=" "):
    if len(d) == 15:
        return sep.join([d[:4], d[4:10], d[10:]])
    if len(d) == 19:
        return sep.join([d[i:i + 4] for i in range(0, 16, 4)] + [d[16:]])
    return sep.join(d[i:i + 4] for i in range(0, len(d), 4))


@T("card", "card-iso8583-trace")
def _(g):
    d, b = card(g)
    return mk(f"ISO8583 MTI=0100\n  DE002 Primary Account Number .... [", S(d), f"]\n  DE003 Processing Code ............ [000000]\n  DE004 Amount, Transaction ........ [{g.ri(1, 99999):012d}]\n"
              f"  DE014 Expiration Date ........... [{g.ri(26, 31)}{g.ri(1, 12):02d}]")


@T("card", "card-track-data")
def _(g):
    d, b = card(g)
    if g.p(0.5):
        return mk("swipe raw: ;", S(d), f"={g.ri(26, 31)}{g.ri(1, 12):02d}{g.ri(101, 221)}{g.dig(10)}?")
    return mk("%B", S(d), f"^{g.last().upper()}/{g.first().upper()}^{g.ri(26, 31)}{g.ri(1, 12):02d}{g.ri(101, 221)}{g.dig(12)}?")


@T("card", "card-chat-other-language")
def _(g):
    d, b = card(g)
    f = cfmt(g, d, g.ch([" ", " ", "-"]))
    pre, post = g.ch([("hola, mi tarjeta es ", f" y vence el {g.ri(1, 12):02d}/{g.ri(27, 31)}"),
                      ("oi, o número do meu cartão é ", f" — vence em {g.ri(1, 12)}/{g.ri(27, 31)}"),
                      ("bonjour, voici ma carte : ", ", merci de vérifier le double débit"),
                      ("こんにちは、カード番号は ", " です。確認をお願いします。"),
                      ("Здравствуйте, номер карты ", ", почему списали дважды?")])
    return mk(pre, S(f), post)


@T("card", "card-psql-table")
def _(g):
    d, b = card(g)
    return mk(f" id | holder            | pan              | exp\n----+-------------------+------------------+-------\n {g.ri(1, 99):>2} | {g.name():<17} | ", S(d),
              f" | {g.ri(1, 12):02d}/{g.ri(27, 31)}\n(1 row)")


@T("card", "card-python-repr")
def _(g):
    d, b = card(g)
    return mk(f">>> order.payment\nCard(number='", S(d), f"', exp_month={g.ri(1, 12)}, exp_year={g.ri(2027, 2031)}, holder='{g.name()}')")


@T("card", "card-soap-account-number")
def _(g):
    d, b = card(g)
    return mk(f"<soapenv:Body>\n  <ns2:AuthorizeRequest>\n    <ns2:AccountNumber>", S(d), f"</ns2:AccountNumber>\n    <ns2:ExpiryDate>{g.ri(1, 12):02d}{g.ri(27, 31)}</ns2:ExpiryDate>\n  </ns2:AuthorizeRequest>\n</soapenv:Body>")


@T("card", "card-yaml-fixture")
def _(g):
    d, b = card(g)
    return mk(f"customer_{g.ri(1, 9)}:\n  name: {g.name()}\n  card:\n    pan: \"", S(cfmt(g, d)), f"\"\n    brand: {b}")


def iban(g, countries=None, valid=True):
    cc = g.ch(countries or sorted(IBAN_SPEC))
    length, pat = IBAN_SPEC[cc]
    bban = ""
    for num, kind in re.findall(r"(\d+)([anc])", pat):
        num = int(num)
        if kind == "a":
            bban += g.ch(IBAN_BANKS[cc]) if cc in IBAN_BANKS and num == 4 else g.s(num, UPPER)
        elif kind == "c":
            bban += g.s(num, UPPERNUM)
        else:
            bban += g.dig(num)
    if cc == "BE":
        bban = bban[:10] + f"{(int(bban[:10]) % 97) or 97:02d}"
    if cc == "TR":
        bban = bban[:5] + "0" + bban[6:]
    chk = 98 - iban_num(bban + cc + "00") % 97
    s = f"{cc}{chk:02d}{bban}"
    assert len(s) == length and iban_ok(s), s
    if not valid:
        while iban_ok(s):
            i = g.ri(4, len(s) - 1)
            if s[i].isdigit():
                s = s[:i] + str((int(s[i]) + g.ri(1, 9)) % 10) + s[i + 1:]
    return s


def ifmt(g, s):
    return s if g.p(0.5) else " ".join(s[i:i + 4] for i in range(0, len(s), 4))


@T("iban", "iban-mt103-field59")
def _(g):
    return mk(f"{{1:F01{g.s(4, UPPER)}DEFFAXXX{g.dig(10)}}}{{2:I103{g.s(4, UPPER)}GB2LXXXXN}}{{4:\n:20:{g.s(10, UPPERNUM)}\n:23B:CRED\n:32A:{g.date('')[2:]}EUR{g.ri(100, 99999)},{g.dig(2)}\n:59:/",
              S(iban(g)), f"\n{g.name().upper()}\n{g.ri(1, 200)} {g.word().upper()} STREET\n:71A:SHA\n-}}")


@T("iban", "iban-other-language")
def _(g):
    k = g.ri(0, 3)
    if k == 0:
        return mk("Por favor, realice la transferencia a la cuenta IBAN ", S(ifmt(g, iban(g, ["ES", "PT"]))), " antes del día " + str(g.ri(1, 28)) + ".")
    if k == 1:
        return mk("Si prega di effettuare il bonifico sul conto IBAN ", S(ifmt(g, iban(g, ["IT"]))), " indicando il numero d'ordine.")
    if k == 2:
        return mk("Gelieve het bedrag over te maken op rekening ", S(ifmt(g, iban(g, ["NL", "BE"]))), " t.n.v. " + g.name() + ".")
    return mk("Proszę o przelew na rachunek ", S(ifmt(g, iban(g, ["PL", "CZ", "HU"]))), " w terminie 14 dni.")


@T("iban", "iban-epc-qr-payload")
def _(g):
    return mk(f"BCD\n002\n1\nSCT\n{g.s(4, UPPER)}{g.ch(['DE', 'AT', 'NL', 'FI'])}{g.s(2, UPPERNUM)}\n{g.name()}\n", S(iban(g, ["DE", "AT", "NL", "FI", "BE", "FR"])),
              f"\nEUR{g.ri(5, 900)}.{g.dig(2)}\n\n\nInvoice {g.ri(1000, 9999)}")


@T("iban", "iban-psql-table")
def _(g):
    s = iban(g)
    return mk(f" vendor_id |        iban{' ' * max(0, len(s) - 12)} | currency\n-----------+-{'-' * len(s)}-+----------\n {g.ri(10, 9999):>9} | ", S(s),
              f" | {g.ch(['EUR', 'GBP', 'CHF', 'PLN', 'SAR', 'AED', 'TRY', 'BRL', 'PKR', 'EGP'])}")


@T("iban", "iban-python-repr")
def _(g):
    return mk(f"Payee(name='{g.name()}', iban='", S(iban(g)), f"', bic='{g.s(4, UPPER)}{g.s(2, UPPER)}{g.s(2, UPPERNUM)}', amount=Decimal('{g.ri(10, 9999)}.{g.dig(2)}'))")


@T("iban", "iban-html-invoice-footer")
def _(g):
    return mk(f"<footer>\n  <p>{g.word().capitalize()} GmbH · Bankverbindung: {g.ch(['Sparkasse', 'Volksbank', 'Commerzbank'])}</p>\n  <p>IBAN: <strong>", S(ifmt(g, iban(g, ["DE", "AT", "CH"]))),
              "</strong></p>\n</footer>")


def ssn(g, fmt="dash"):
    while True:
        a = g.ri(1, 899)
        if a == 666:
            continue
        gr, sn = g.ri(1, 99), g.ri(1, 9999)
        s = f"{a:03d}{gr:02d}{sn:04d}"
        if ssn_ok(s):
            break
    if fmt == "dash":
        return f"{s[:3]}-{s[3:5]}-{s[5:]}"
    if fmt == "space":
        return f"{s[:3]} {s[3:5]} {s[5:]}"
    return s


@T("ssn", "ssn-hl7-pid")
def _(g):
    s = ssn(g, g.ch(["dash", "plain"]))
    return mk(f"MSH|^~\\&|EPIC|{g.word().upper()}|LAB|{g.word().upper()}|{g.date('')}{g.time().replace(':', '')}||ADT^A04|{g.dig(8)}|P|2.5.1\n"
              f"PID|1||{g.dig(8)}^^^MRN||{g.last().upper()}^{g.first().upper()}||{g.ri(1950, 2004)}{g.ri(1, 12):02d}{g.ri(1, 28):02d}|{g.ch('MF')}|||"
              f"{g.ri(1, 999)} {g.word().upper()} ST^^{g.ch(['COLUMBUS', 'DAYTON', 'TOLEDO'])}^OH^{g.ri(43001, 45999)}||||||||", S(s))


@T("ssn", "ssn-edi-834")
def _(g):
    s = ssn(g, "plain")
    return mk(f"INS*Y*18*021*28*A***FT~\nREF*0F*", S(s), f"~\nDTP*356*D8*{g.date('')}~\nNM1*IL*1*{g.last().upper()}*{g.first().upper()}****34*", S(s), "~")


@T("ssn", "ssn-chat-spaced")
def _(g):
    return mk(g.ch(["ok here it is: ", "the agent asked for my social, it's ", "SS# "]), S(ssn(g, g.ch(["space", "dash"]))), g.ch(["", " — please delete this msg after", " thx"]))


@T("ssn", "ssn-1040-text")
def _(g):
    return mk(f"Form 1040 (2025)\nYour first name and middle initial   Last name                  Your social security number\n{g.first():<36} {g.last():<26} ",
              S(ssn(g)), "\nIf joint return, spouse's first name    Last name                  Spouse's social security number")


@T("ssn", "ssn-psql-table")
def _(g):
    n = g.name()
    return mk(f" emp_id | name{' ' * (len(n) - 4)} | ssn\n--------+{'-' * (len(n) + 2)}+-------------\n {g.ri(1000, 99999):>6} | {n} | ", S(ssn(g)), "\n(1 row)")


# ===========================================================================
# negatives around passwords (stored hashes, encrypted values, references,
# masks, policies, logs) in forms gen_text.py never uses
# ===========================================================================

AMB = {"amb": True}


def bcrypt(g, v="2y", cost=None):
    return f"${v}${cost or g.ch(['10', '12', '14'])}${g.s(53, CRYPT64)}"


def argon2(g):
    return f"$argon2id$v=19$m={g.ch(['65536', '19456', '102400'])},t={g.ri(2, 4)},p={g.ri(1, 4)}${g.b64(16).rstrip('=')}${g.b64(32).rstrip('=')}"


def sha512c(g):
    return f"$6${g.s(16, CRYPT64[2:])}${g.s(86, CRYPT64)}"


def yescrypt(g):
    return f"$y$j9T${g.s(22, CRYPT64)}${g.s(43, CRYPT64)}"


@T("neg-pw", "authelia-users-hash")
def _(g):
    u = g.first().lower()
    return (f"users:\n  {u}:\n    disabled: false\n    displayname: \"{g.name()}\"\n    password: \"{g.ch([argon2, lambda g: bcrypt(g, '2b')])(g)}\"\n"
            f"    groups:\n      - {g.ch(['admins', 'dev', 'ops'])}")


@T("neg-pw", "traefik-caddy-basicauth")
def _(g):
    u = g.ch(["admin", "ops", "grafana", "metrics"])
    k = g.ri(0, 2)
    if k == 0:
        h = f"$$apr1$${g.s(8, CRYPT64[2:])}$${g.s(22, CRYPT64)}"
        return f"    labels:\n      - \"traefik.http.middlewares.{g.word()}-auth.basicauth.users={u}:{h}\""
    if k == 1:
        return f"http:\n  middlewares:\n    auth:\n      basicAuth:\n        users:\n          - \"{u}:{bcrypt(g, '2y', '05')}\""
    return f"{g.word()}.{g.org()} {{\n    basicauth /admin/* {{\n        {u} {bcrypt(g, '2a', '14')}\n    }}\n    reverse_proxy localhost:{g.ch([3000, 8080, 9090])}\n}}"


@T("neg-pw", "getent-shadow-yescrypt")
def _(g):
    rows = []
    for u in g.sample(["ubuntu", "deploy", g.first().lower(), "ops", "backup"], g.ri(1, 3)):
        rows.append(f"{u}:{g.ch([yescrypt, sha512c])(g)}:{g.ri(19000, 20500)}:0:99999:7:::")
    return "$ sudo getent shadow " + " ".join(r.split(":")[0] for r in rows) + "\n" + "\n".join(rows)


@T("neg-pw", "doveadm-pw-output")
def _(g):
    s = g.ch(["SHA512-CRYPT", "BLF-CRYPT", "ARGON2ID"])
    h = {"SHA512-CRYPT": sha512c(g), "BLF-CRYPT": bcrypt(g, "2y", "05"), "ARGON2ID": argon2(g)}[s]
    if g.p(0.5):
        return f"$ doveadm pw -s {s}\nEnter new password:\nRetype new password:\n{{{s}}}{h}"
    return f"{g.first().lower()}@{g.ch(['mail.test', 'corp.example'])}:{{{s}}}{h}::::::"


@T("neg-pw", "django-dumpdata-user")
def _(g):
    h = f"pbkdf2_sha256${g.ch(['720000', '870000', '1000000'])}${g.s(22, ALNUM)}${g.b64(32)}"
    d = {"model": "auth.user", "pk": g.ri(1, 999), "fields": {"password": h, "last_login": g.iso(6), "is_superuser": g.ch([True, False]),
                                                             "username": g.first().lower(), "is_active": True}}
    return json.dumps([d], indent=g.ch([None, 2]))


@T("neg-pw", "mosquitto-passwd-file")
def _(g):
    return "\n".join(f"{g.ch(['sensor', 'gw', 'node'])}{g.ri(1, 99):02d}:$7$101${g.b64(12)}${g.b64(64)}" for _ in range(g.ri(1, 3)))


@T("neg-pw", "pg-authid-scram")
def _(g):
    rows = [" rolname  |                                                              rolpassword",
            "----------+---------------------------------------------------------------------------------------------------------------------------------------"]
    for u in g.sample(["postgres", "app", "replicator", "grafana", "metabase"], g.ri(1, 3)):
        rows.append(f" {u:<8} | SCRAM-SHA-256$4096:{g.b64(16)}${g.b64(32)}:{g.b64(32)}")
    return "postgres=# SELECT rolname, rolpassword FROM pg_authid WHERE rolcanlogin;\n" + "\n".join(rows)


@T("neg-pw", "mysql-user-table")
def _(g):
    u = g.user()
    if g.p(0.5):
        return f"mysql> SELECT user, host, plugin FROM mysql.user WHERE user='{u}';\n+{'-' * 12}+------+-----------------------+\n| {u:<10} | %    | caching_sha2_password |\n+{'-' * 12}+------+-----------------------+"
    return f"| {u} | % | mysql_native_password | *{g.hx(40).upper()} | N |"


@T("neg-pw", "network-device-secrets")
def _(g):
    k = g.ri(0, 2)
    if k == 0:
        return f"enable secret 9 $9${g.s(14, CRYPT64)}${g.s(43, CRYPT64)}"
    if k == 1:
        return f"username {g.ch(['admin', 'netops', 'backup'])} privilege 15 secret 8 $8${g.s(14, CRYPT64)}${g.s(43, CRYPT64)}"
    return f"set system root-authentication encrypted-password \"{sha512c(g)}\""


@T("neg-pw", "kickstart-iscrypted")
def _(g):
    if g.p(0.5):
        return f"rootpw --iscrypted {sha512c(g)}\nuser --name={g.ch(['ops', 'ansible'])} --groups=wheel --iscrypted --password={sha512c(g)}"
    return f"d-i passwd/root-password-crypted password {sha512c(g)}"


@T("neg-pw", "jenkins-encrypted-credentials")
def _(g):
    return (f"<com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl>\n  <scope>GLOBAL</scope>\n  <id>{g.word()}-{g.ch(['db', 'nexus', 'deploy'])}</id>\n"
            f"  <username>{g.user()}</username>\n  <password>{{AQAAABAAAAAQ{g.b64(g.ch([51, 57, 63]))}}}</password>\n"
            "</com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl>")


def sops_enc(g, n=None):
    data = g.b64(n or g.ri(10, 30))
    return f"ENC[AES256_GCM,data:{data},iv:{g.b64(32)},tag:{g.b64(16)},type:str]"


@T("neg-pw", "sops-encrypted-file")
def _(g):
    k = g.ri(0, 2)
    meta_age = f"age1{g.s(58, 'qpzry9x8gf2tvdw0s3jn54khce6mua7l')}"
    if k == 0:
        return (f"db:\n    user: {sops_enc(g, 6)}\n    password: {sops_enc(g)}\nsops:\n    age:\n        - recipient: {meta_age}\n"
                f"    lastmodified: \"{g.iso(0)}\"\n    mac: {sops_enc(g, 32)}\n    version: 3.9.{g.ri(0, 4)}")
    if k == 1:
        return json.dumps({"smtp_password": sops_enc(g), "sops": {"kms": [{"arn": f"arn:aws:kms:eu-west-1:{g.dig(12)}:key/{g.uuid()}"}],
                                                                   "version": "3.8.1"}}, indent=2)
    return f"DB_PASSWORD={sops_enc(g)}\nsops_version=3.9.1\nsops_mac={sops_enc(g, 32)}"


@T("neg-pw", "sealed-secret")
def _(g):
    return (f"apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: {g.word()}-db\n  namespace: {g.ch(['prod', 'shop'])}\nspec:\n"
            f"  encryptedData:\n    password: AgB{g.b64(g.ch([300, 380, 420])).rstrip('=')}==\n    username: AgC{g.b64(260).rstrip('=')}==")


@T("neg-pw", "vault-transit-ciphertext")
def _(g):
    ct = f"vault:v{g.ri(1, 4)}:{g.b64(g.ch([28, 44, 60]))}"
    if g.p(0.5):
        return f"Key            Value\n---            -----\nciphertext     {ct}\nkey_version    {ct.split(':')[1][1:]}"
    return f"UPDATE accounts SET smtp_password = '{ct}' WHERE id = {g.ri(1, 999)};"


@T("neg-pw", "pulumi-secure-config")
def _(g):
    return (f"encryptionsalt: v1:{g.b64(8)}:v1:{g.b64(12)}:{g.b64(32)}\nconfig:\n  {g.word()}:dbPassword:\n    secure: v1:{g.b64(12)}:{g.b64(g.ch([24, 32]))}\n"
            f"  {g.word()}:region: {g.ch(['eu-west-1', 'ap-south-1'])}")


MASKS2 = ["(sensitive)", "<sensitive>", "******** (set)", "__MASKED__", "{{redacted}}", "✱✱✱✱✱✱✱✱", "<set>", "(not shown)",
          "<password omitted>", "[secret]", "•••••••••", "[hidden by policy]", "***hidden***", "<concealed>", "xxxx-redacted-xxxx",
          "(value hidden)", "[scrubbed]", "<<masked>>", "▒▒▒▒▒▒▒▒"]


@T("neg-pw", "masked-new-styles")
def _(g):
    m = g.ch(MASKS2)
    k = g.ri(0, 6)
    if k == 0:
        return f"{g.ch(['password', 'db_password', 'smtp_pass'])} = {m}"
    if k == 1:
        return f"Started POST \"/users/sign_in\" for 198.51.100.{g.ri(2, 250)}".split(" for ")[0] + f"\nParameters: {{\"authenticity_token\"=>\"[FILTERED]\", \"user\"=>{{\"login\"=>\"{g.first().lower()}\", \"password\"=>\"[FILTERED]\"}}, \"commit\"=>\"Log in\"}}"
    if k == 2:
        return f"TASK [create db user] ****\nok: [{g.word()}-01] => {{\"censored\": \"the output has been hidden due to the fact that 'no_log: true' was specified for this result\", \"changed\": false}}"
    if k == 3:
        return f"Name:         {g.word()}-db\nNamespace:    {g.ch(['prod', 'default'])}\nType:  Opaque\n\nData\n====\npassword:  {g.ri(8, 40)} bytes\nusername:  {g.ri(3, 12)} bytes"
    if k == 4:
        return json.dumps({"name": "spring.datasource.password", "value": "******", "origin": "class path resource [application.yml] - 7:15"})
    if k == 5:
        return f"| {g.ch(['DB_PASSWORD', 'ADMIN_PASS'])} | {m} | {g.ch(['Secret', 'Masked'])} |"
    return f"<add key=\"SmtpPassword\" value=\"{m}\" />"


@T("neg-pw", "password-policy-configs")
def _(g):
    k = g.ri(0, 5)
    if k == 0:
        return f"# /etc/security/pwquality.conf\nminlen = {g.ri(10, 16)}\ndcredit = -1\nucredit = -1\nocredit = -1\nretry = {g.ri(3, 5)}\nenforce_for_root"
    if k == 1:
        return f"PASS_MAX_DAYS\t{g.ch([90, 180, 365])}\nPASS_MIN_DAYS\t{g.ri(0, 7)}\nPASS_WARN_AGE\t{g.ri(7, 14)}\nENCRYPT_METHOD YESCRYPT"
    if k == 2:
        return f"\"passwordPolicy\": \"length({g.ri(10, 14)}) and digits(1) and upperCase(1) and specialChars(1) and notUsername(undefined) and passwordHistory({g.ri(3, 10)})\""
    if k == 3:
        return (f"PS C:\\> Get-ADDefaultDomainPasswordPolicy\n\nComplexityEnabled           : True\nLockoutThreshold            : {g.ri(3, 10)}\n"
                f"MaxPasswordAge              : {g.ri(42, 90)}.00:00:00\nMinPasswordLength           : {g.ri(8, 14)}\nPasswordHistoryCount        : 24")
    if k == 4:
        return (f"AUTH_PASSWORD_VALIDATORS = [\n    {{\"NAME\": \"django.contrib.auth.password_validation.MinimumLengthValidator\", \"OPTIONS\": {{\"min_length\": {g.ri(10, 14)}}}}},\n"
                "    {\"NAME\": \"django.contrib.auth.password_validation.CommonPasswordValidator\"},\n]")
    return json.dumps({"type": "PASSWORD", "settings": {"password": {"complexity": {"minLength": g.ri(8, 16), "minNumber": 1, "excludeUsername": True},
                                                                     "age": {"maxAgeDays": g.ch([0, 90]), "historyCount": g.ri(4, 12)}}}})


@T("neg-pw", "cm-tool-password-references")
def _(g):
    v = g.ch(["db_password", "smtp_pass", "ldap_bind_pw", "rabbit_password"])
    return g.ch([
        f"withCredentials([usernamePassword(credentialsId: '{g.word()}-db', usernameVariable: 'DB_USER', passwordVariable: 'DB_PASS')]) {{\n  sh './migrate.sh'\n}}",
        f"db_pass = data_bag_item('passwords', '{g.word()}')['{v}']",
        f"$password = lookup('profile::{g.word()}::{v}')",
        f"password: {{{{ pillar['{g.word()}']['{v}'] }}}}",
        f"- script: ./deploy.sh --password \"$({v})\"\n  env:\n    DB_PASSWORD: $(dbPassword)",
        f"environment:\n  DB_PASSWORD:\n    from_secret: {v}",
        f"secrets:\n  {v}:\n    file: ./secrets/{v}.txt",
        f"[Service]\nLoadCredential={v}:/etc/credstore/{v}\nExecStart=/usr/bin/{g.word()} --password-file=${{CREDENTIALS_DIRECTORY}}/{v}",
        f"spring.datasource.password=${{DB_PASSWORD:}}",
        f"  args: [\"--db-password\", \"$(DB_PASSWORD)\"]",
        f"config.ssh.password = ENV.fetch('VAGRANT_SSH_PASSWORD')",
        f"template {{\n  data = <<EOH\n{{{{ with secret \"database/creds/{g.word()}\" }}}}DB_PASSWORD={{{{ .Data.password }}}}{{{{ end }}}}\nEOH\n}}",
        f"echo \"$CI_REGISTRY_PASSWORD\" | docker login $CI_REGISTRY -u $CI_REGISTRY_USER --password-stdin",
    ])


@T("neg-pw", "auth-failure-logs")
def _(g):
    u = g.ch([g.first().lower(), "admin", "oracle", "test", "ubuntu"])
    return g.ch([
        f"{g.ch(['Nov', 'Dec'])} {g.ri(1, 28):>2} {g.time()} bastion sshd[{g.ri(1000, 60000)}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=scanner.badnet.example  user={u}",
        f"{g.ch(['Nov', 'Dec'])} {g.ri(1, 28):>2} {g.time()} web01 sudo[{g.ri(1000, 60000)}]:   {u} : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/{u} ; USER=root ; COMMAND=/usr/bin/apt update",
        f"An account failed to log on.\n  Security ID:   NULL SID\n  Account Name:  {u}\n  Failure Reason: Unknown user name or bad password.\n  Status:        0xC000006D",
        json.dumps({"t": {"$date": g.iso()}, "s": "I", "c": "ACCESS", "id": 20249, "msg": "Authentication failed",
                    "attr": {"mechanism": "SCRAM-SHA-256", "user": u, "db": "admin", "error": "AuthenticationFailed: SCRAM authentication failed, storedKey mismatch"}}),
        f"{g.date()} {g.time()}.{g.dig(3)} [error] <0.{g.ri(100, 999)}.0> PLAIN login refused: user '{u}' - invalid credentials",
        f"Mon {g.ch(['Nov', 'Dec'])} {g.ri(1, 28)} {g.time()} 2026 [pid {g.ri(100, 9999)}] [{u}] FAIL LOGIN: Client \"ftp-gw.corp.lan\"",
    ])


@T("neg-pw", "password-metadata-fields")
def _(g):
    return g.ch([
        f"pwdLastSet: {g.ri(133000000000000000, 134000000000000000)}",
        f"PasswordLastSet      : {g.ri(1, 12)}/{g.ri(1, 28)}/2026 {g.ri(1, 12)}:{g.ri(0, 59):02d}:{g.ri(0, 59):02d} AM\nPasswordNeverExpires : False",
        f"\"password_changed_at\": \"{g.iso()}\", \"must_change_password\": {g.ch(['true', 'false'])}",
        f"passwordExpiresAt: {g.date()}T00:00:00Z",
        f"password_reset_url: https://accounts.{g.org()}/reset?flow={g.uuid()}",
        f"Password expires                     {g.ch(['never', 'Jan 30, 2027', 'password must be changed'])}\nPassword inactive                    never",
        f"has_password: {g.ch(['true', 'false'])}\npassword_login_allowed: false\nmfa_enrolled: true",
    ])


@T("neg-pw", "pass-words-not-passwords")
def _(g):
    return g.ch([
        f"--- PASS: Test{g.word().capitalize()}{g.word().capitalize()} (0.{g.dig(2)}s)\n--- PASS: Test{g.word().capitalize()} (0.00s)\nPASS\nok  \tgithub.com/{g.word()}/{g.word()}\t0.{g.dig(3)}s",
        f"proxy_pass http://{g.word()}_upstream;\nproxy_pass_request_headers on;",
        f"passthrough: true\nbypass_cache: {g.ch(['true', 'false'])}",
        f"Passenger {g.ri(5, 6)}.0.{g.ri(10, 25)} started; spawning {g.ri(2, 8)} application processes",
        f"compass heading: {g.ri(0, 359)}°, passport photo uploaded: yes",
        f"for item in items:\n    if item.skip:\n        pass\n    else:\n        process(item)",
        f"assert response.json()[\"status\"] == \"PASSED\"",
        f"[{g.ri(1, 9)}/{g.ri(10, 20)}] PASSED tests/test_{g.word()}.py::test_{g.word()}",
    ])


@T("neg-pw", "password-prompts-new")
def _(g):
    return g.ch([
        "Enter keystore password:  \nRe-enter new password: ",
        f"Please enter passphrase for disk {g.ch(['nvme0n1p3_crypt', 'cryptroot', 'luks-' + g.uuid()])}:",
        f"Enter the password for CORP\\{g.first().lower()}:",
        f"Enter Auth Username: {g.first().lower()}\nEnter Auth Password:",
        "Password (again):\nThis password is too common.\nBypass password validation and create user anyway? [y/N]: N",
        f"{g.first().lower()}@{g.word()}-vm's password: \nPermission denied, please try again.",
        "Enter PIN for 'PIV Card Holder pin (PIV_II)':",
    ])


@T("neg-pw", "empty-password-new-forms")
def _(g):
    return g.ch([
        "<password></password>", "<Password />", f"[{g.word()}]\nrepository = https://upload.pypi.org/legacy/\nusername = __token__\npassword =",
        "DRIVER={PostgreSQL Unicode};SERVER=localhost;UID=postgres;PWD=;", f"{g.word()}_password: !!null",
        "  password: \"\"  # set via PGPASSWORD", "Password = String.Empty;", "password := \"\" // filled in by init()",
        "AUTH_PASS=\nAUTH_USER=", "\"Password\": \"\",",
    ])


# ===========================================================================
# negatives around phone numbers
# ===========================================================================


def imei(g, tac=None):
    body = (tac or g.ch(["35", "86", "01", "99"])) + g.dig(12)
    body = body[:14]
    return luhn_complete(body)


@T("neg-phone", "imei-iccid")
def _(g):
    k = g.ri(0, 3)
    if k <= 1:
        i = imei(g)
        t = g.ch([f"IMEI: {i}", f"IMEI 1: {i[:2]} {i[2:8]} {i[8:14]} {i[14]}", f"\"imei\": \"{i}\", \"model\": \"SM-A{g.ri(100, 999)}F\"",
                  f"+CGSN: {i}\nOK"])
        return (t, [], AMB) if card_loose(i) else t
    iccid = luhn_complete("89" + g.ch(["91", "86", "234", "55", "880"]) + g.dig(14))[:20]
    return g.ch([f"ICCID: {iccid}", f"+CCID: {iccid}\nOK", f"sim_iccid={iccid} slot=1 state=READY"])


@T("neg-phone", "parcel-tracking-numbers")
def _(g):
    return g.ch([
        f"UPS tracking: 1Z{g.s(6, UPPERNUM)}{g.dig(10)}",
        f"FedEx tracking number {g.nz(12)} — Out for delivery",
        f"USPS: {' '.join(['9400', '1' + g.dig(3)] + [g.dig(4) for _ in range(3)] + [g.dig(2)])}",
        f"AWB {g.nz(10)} (DHL Express)",
        f"India Post consignment EE{g.dig(9)}IN booked",
        f"SF Express 运单号: SF{g.dig(13)}",
        f"Correios: {g.s(2, UPPER)}{g.dig(9)}BR",
    ])


def ean13(g, prefix):
    d = prefix + g.dig(12 - len(prefix))
    return d + str((10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(d)) % 10) % 10)


@T("neg-phone", "barcodes-gtin")
def _(g):
    e = ean13(g, g.ch(["890", "690", "789", "460", "489", "750", "899", "45"]))
    return g.ch([f"EAN-13: {e}", f"gtin13=\"{e}\" sku=\"{g.word().upper()}-{g.ri(10, 999)}\"", f"Barcode {e[0]} {e[1:7]} {e[7:]}",
                 f"<gtin>{e}</gtin>", f"UPC-A: 0 {g.dig(5)} {g.dig(5)} {g.dig(1)}", f"GTIN-14: 1{e}"])


def isbn10(g):
    d = g.dig(9)
    c = sum((10 - i) * int(x) for i, x in enumerate(d)) % 11
    c = (11 - c) % 11
    return d + ("X" if c == 10 else str(c))


@T("neg-phone", "isbn-catalog")
def _(g):
    i10 = isbn10(g)
    i13 = ean13(g, "978")
    return g.ch([f"{{\"title\": \"{g.word().capitalize()} {g.word().capitalize()}\", \"isbn_10\": \"{i10[0]}-{i10[1:4]}-{i10[4:9]}-{i10[9]}\", \"isbn_13\": \"{i13}\"}}",
                 f"@book{{{g.last().lower()}2024,\n  title = {{{g.word().capitalize()} Systems}},\n  isbn = {{{i13[:3]}-{i13[3]}-{i13[4:8]}-{i13[8:12]}-{i13[12]}}},\n  year = {{2024}}\n}}",
                 f"ISBN {i10}"])


@T("neg-phone", "mac-and-serial-numbers")
def _(g):
    mac = ":".join(g.hx(2) for _ in range(6))
    return g.ch([f"link/ether {mac} brd ff:ff:ff:ff:ff:ff", f"Serial Number: {g.ri(1000, 9999)}-{g.ri(1000, 9999)}-{g.ri(1000, 9999)}",
                 f"S/N: {g.s(2, UPPER)}{g.dig(10)}", f"Service Tag: {g.s(7, UPPERNUM)}", f"wlan0  {mac.upper()}  UP",
                 f"  Serial Number:        {g.s(4, UPPER)}{g.dig(8)}\n  Firmware Version:     {g.ri(1, 9)}B2QGXA7"])


@T("neg-phone", "gps-nmea-gpx")
def _(g):
    lat, lon = g.r.uniform(-40, 60), g.r.uniform(-120, 140)
    if g.p(0.5):
        return (f"$GPGGA,{g.ri(0, 23):02d}{g.ri(0, 59):02d}{g.ri(0, 59):02d}.00,{abs(int(lat)):02d}{g.r.uniform(0, 60):07.4f},{'N' if lat > 0 else 'S'},"
                f"{abs(int(lon)):03d}{g.r.uniform(0, 60):07.4f},{'E' if lon > 0 else 'W'},1,{g.ri(4, 12):02d},0.9,{g.ri(1, 900)}.{g.ri(0, 9)},M,46.9,M,,*{g.hx(2).upper()}")
    return f"<trkpt lat=\"{lat:.7f}\" lon=\"{lon:.7f}\"><ele>{g.ri(1, 3000)}.{g.ri(0, 9)}</ele><time>{g.iso(0)}</time></trkpt>"


@T("neg-phone", "votes-and-reactions")
def _(g):
    return g.ch([f"+1 from me, LGTM", f"-1 until the migration is reversible", f"Votes: +{g.ri(2, 99)} / -{g.ri(0, 20)}",
                 f"👍 {g.ri(1, 300)}  👎 {g.ri(0, 30)}  🎉 {g.ri(0, 50)}", f"+{g.ri(1, 9)} (and +1 to the comment above)",
                 f"score: {g.ri(100, 9000)} (+{g.ri(1, 99)} today)", f"Karma: +{g.ri(1000, 99999)}"])


@T("neg-phone", "microsecond-timestamps")
def _(g):
    e = g.epoch()
    return g.ch([f"ts={e}{g.dig(6)}", f"\"start_time_unix_nano\": \"{e}{g.dig(9)}\"", f"last_visit_time={g.ri(13370000000, 13390000000)}{g.dig(6)}",
                 f"offset={g.ri(10 ** 9, 10 ** 11)} partition={g.ri(0, 23)}", f"created_us: {e}{g.dig(6)}",
                 f"  \"@timestamp_nanos\": {e}{g.dig(9)}"])


@T("neg-phone", "integer-limits-constants")
def _(g):
    return g.ch(["pub const MAX: i32 = 2147483647;", "if (n > 4294967295UL) return -ERANGE;", "i64::MAX = 9223372036854775807",
                 "u64::MAX == 18446744073709551615", "#define INT_MIN (-2147483647 - 1)", "assert x < 0x7fffffff  # 2147483647",
                 "Number.MAX_SAFE_INTEGER // 9007199254740991", "max_connections = 65535", "fs.file-max = 9223372036854775807",
                 "ulimit -n 1048576"])


@T("neg-phone", "prometheus-metrics")
def _(g):
    return g.ch([f"process_start_time_seconds {g.epoch()}.{g.dig(2)}",
                 f"node_network_receive_bytes_total{{device=\"eth0\"}} {g.ri(1, 9)}.{g.dig(9)}e+{g.ri(9, 12)}",
                 f"http_requests_total{{code=\"200\",handler=\"/api\"}} {g.ri(10 ** 6, 10 ** 10)}",
                 f"go_memstats_heap_alloc_bytes {g.ri(10 ** 7, 10 ** 10)}",
                 f"# HELP node_boot_time_seconds Node boot time, in unixtime.\n# TYPE node_boot_time_seconds gauge\nnode_boot_time_seconds {g.epoch()}"])


@T("neg-phone", "order-numbers-i18n")
def _(g):
    return g.ch([f"Rechnung Nr. {g.date('-')[:4]}-{g.ri(10, 12)}-{g.dig(4)}", f"N° de commande : {g.nz(10)}",
                 f"注文番号: {g.nz(3)}-{g.dig(7)}-{g.dig(7)}", f"Número do pedido: #{g.nz(9)}", f"Номер заказа: {g.nz(8)}-{g.dig(4)}",
                 f"Pesanan #{g.s(3, UPPER)}{g.dig(12)}", f"ऑर्डर आईडी: OD{g.dig(18)}", f"Factura electrónica {g.s(1, UPPER)}{g.dig(3)}-{g.dig(8)}"])


@T("neg-phone", "science-and-legal-ids")
def _(g):
    return g.ch([f"CAS {g.ri(50, 9999)}-{g.dig(2)}-{g.dig(1)}", f"US {g.ri(10, 12)},{g.dig(3)},{g.dig(3)} B2", f"doi:10.{g.ri(1000, 9999)}/s{g.dig(5)}-0{g.dig(2)}-{g.dig(5)}-{g.dig(1)}",
                 f"PMID: {g.ri(30000000, 39999999)}", f"arXiv:{g.ri(2301, 2512)}.{g.dig(5)}v{g.ri(1, 3)}", f"Case No. {g.ri(1, 9)}:{g.ri(20, 26)}-cv-{g.dig(5)}",
                 f"EC number {g.ri(200, 700)}-{g.dig(3)}-{g.dig(1)}"])


@T("neg-phone", "telegram-discord-numeric-ids")
def _(g):
    return g.ch([f"chat_id=-100{g.nz(10)}", f"\"chat\": {{\"id\": -100{g.nz(10)}, \"type\": \"supergroup\"}}",
                 f"{{\"from\": {{\"id\": {g.ri(10 ** 9, 8 * 10 ** 9)}, \"is_bot\": false, \"first_name\": \"{g.first()}\"}}}}",
                 f"bot.send_message({g.ri(10 ** 9, 8 * 10 ** 9)}, 'build finished')", f"guild_id: {g.ri(10 ** 17, 2 * 10 ** 18)}"])


@T("neg-phone", "scores-rooms-pages")
def _(g):
    return g.ch([f"Final: {g.ri(80, 130)}-{g.ri(80, 130)} (OT)", f"Rooms {g.ri(1, 15)}01-{g.ri(16, 30)}05 are booked", f"pp. {g.ri(100, 400)}-{g.ri(401, 800)}",
                 f"Flight {g.ch(['AI', 'NH', 'LA', 'ET'])} {g.ri(100, 999)} departs Gate {g.s(1, UPPER)}{g.ri(1, 60)}",
                 f"Seats {g.ri(10, 40)}A-{g.ri(10, 40)}F", f"Platform {g.ri(1, 12)}, coach S{g.ri(1, 12)}, berth {g.ri(1, 72)}"])


@T("neg-phone", "dates-i18n")
def _(g):
    y, m, d = g.ri(2025, 2026), g.ri(1, 12), g.ri(1, 28)
    return g.ch([f"{d:02d}.{m:02d}.{y} {g.time()[:5]}", f"{y}年{m}月{d}日 {g.ri(0, 23)}時{g.ri(0, 59)}分", f"{d:02d}/{m:02d}/{y}",
                 f"{y}-{m:02d}-{d:02d} {g.time()} +0530", f"Date: {d} {g.ch(['Jan', 'Feb', 'Mar', 'Apr'])} {y} {g.time()} -0300",
                 f"{m}/{d}/{str(y)[2:]} {g.ri(1, 12)}:{g.ri(0, 59):02d} PM", f"{y}{m:02d}{d:02d}T{g.time().replace(':', '')}"])


@T("neg-phone", "masked-phone-numbers")
def _(g):
    num, c, f = phone(g, ("intl", "nat", "e164"))
    digits = [i for i, ch in enumerate(num) if ch.isdigit()]
    keep = set(digits[-2:]) | set(digits[:2] if num.startswith("+") else [])
    masked = "".join("*" if (i in digits and i not in keep) else ch for i, ch in enumerate(num))
    return g.ch([f"We sent a code to {masked}", f"phone: {masked}", f"Verified number: {masked}",
                 f"{g.ch(['138', '139', '186'])}****{g.dig(4)}", f"(***) ***-{g.dig(4)}", f"SMS delivered to number ending in {g.dig(4)}"])


@T("neg-phone", "fictional-555-numbers")
def _(g):
    return (g.ch([f"Call ({g.ch(NPA)}) 555-01{g.dig(2)} for the demo line", f"phone: \"{g.ch(NPA)}-555-01{g.dig(2)}\"  # fictional (555-01xx)",
                  f"+1 {g.ch(NPA)} 555 01{g.dig(2)}"]), [], AMB)


@T("neg-phone", "svg-css-numbers")
def _(g):
    return g.ch([f"<path d=\"M {g.ri(10, 900)}.{g.dig(2)} {g.ri(10, 900)}.{g.dig(2)} L {g.ri(10, 900)} {g.ri(10, 900)} C {g.ri(10, 900)} {g.ri(10, 900)} {g.ri(10, 900)} {g.ri(10, 900)}\"/>",
                 f"grid-template-columns: {g.ri(80, 300)}px {g.ri(80, 300)}px 1fr;", f"transform: matrix(1, 0, 0, 1, {g.ri(100, 999)}, {g.ri(100, 999)});",
                 f"viewBox=\"0 0 {g.ri(100, 2000)} {g.ri(100, 2000)}\"", f"@media (min-width: {g.ri(320, 1920)}px) and (max-width: {g.ri(320, 1920)}px)"])


@T("neg-phone", "spreadsheet-numbers")
def _(g):
    return g.ch([f"{g.ri(45000, 46500)}.{g.dig(4)}", f"=SUM(B2:B{g.ri(10, 999)})  → {g.ri(10000, 9999999):,}", f"A{g.ri(1, 99)},{g.ri(100000, 9999999)},{g.ri(100, 999)}.{g.dig(2)},{g.ri(1, 99)}%",
                 f"Total: {g.ri(1, 99)} {g.dig(3)} {g.dig(3)},{g.dig(2)} ₽", f"₹{g.ri(1, 99)},{g.dig(2)},{g.dig(3)}.00", f"R$ {g.ri(1, 999)}.{g.dig(3)},{g.dig(2)}"])


@T("neg-phone", "hardware-ids")
def _(g):
    return g.ch([f"wwn-0x5000c500{g.hx(8)} -> ../../sda", f"/dev/nvme0n1  S4EW{g.s(10, UPPERNUM)}  Samsung SSD 980 PRO 1TB",
                 f"0000:{g.hx(2)}:00.0 Ethernet controller [0200]: Intel Corporation Ethernet Controller I225-V [8086:15f3] (rev 03)",
                 f"Bus 00{g.ri(1, 4)} Device 0{g.ri(10, 99)}: ID {g.hx(4)}:{g.hx(4)} SanDisk Corp. Ultra Fit", f"DMI: {g.ch(['Dell Inc.', 'LENOVO', 'HP'])} {g.s(4, UPPERNUM)}/{g.ri(10, 99)}{g.s(4, UPPERNUM)}, BIOS {g.ri(1, 2)}.{g.ri(1, 30)}.0 {g.date('/')}"])


@T("neg-phone", "os-build-strings")
def _(g):
    return g.ch([f"Android 14 (UP1A.{g.ri(230000, 240000)}.{g.dig(3)})", f"iOS 18.{g.ri(0, 2)}.{g.ri(0, 2)} (22B{g.ri(10, 99)})", f"OS Build {g.ri(19041, 26100)}.{g.ri(1000, 5000)}",
                 f"HarmonyOS 4.{g.ri(0, 2)}.0 (build {g.ri(100, 200)}, SP{g.ri(1, 9)}C00E{g.ri(100, 200)}R{g.ri(1, 9)}P{g.ri(1, 9)})", f"MIUI Global V14.0.{g.ri(1, 9)}.0.UMCMIXM",
                 f"Build fingerprint: 'google/{g.word()}/{g.word()}:14/AP2A.{g.ri(240000, 250000)}.{g.dig(3)}/{g.nz(8)}:user/release-keys'"])


@T("neg-phone", "postal-codes")
def _(g):
    return g.ch([f"〒{g.dig(3)}-{g.dig(4)} 東京都", f"CEP {g.dig(5)}-{g.dig(3)}", f"PIN: {g.nz(6)}", f"ZIP {g.dig(5)}-{g.dig(4)}",
                 f"Kode pos {g.nz(5)}", f"индекс {g.nz(6)}", f"C.P. {g.dig(5)}"])


@T("neg-phone", "network-counters-new")
def _(g):
    return (f"    RX:  bytes packets errors dropped  missed   mcast\n    {g.ri(10 ** 8, 10 ** 11):>12} {g.ri(10 ** 5, 10 ** 9):>9}      0       {g.ri(0, 999):>3}       0 {g.ri(0, 99999):>7}\n"
            f"    TX:  bytes packets errors dropped carrier collsns\n    {g.ri(10 ** 8, 10 ** 11):>12} {g.ri(10 ** 5, 10 ** 9):>9}      0       0       0       0")


# ===========================================================================
# negatives around other PII
# ===========================================================================


@T("neg-pii", "systemd-instance-units")
def _(g):
    esc_uuid = g.uuid().replace("-", "\\x2d")
    u = g.ch(["getty@tty1.service", f"openvpn-client@{g.word()}.service", f"wg-quick@wg{g.ri(0, 3)}.service", "serial-getty@ttyS0.service",
              f"user@{g.ri(1000, 1010)}.service", f"container-getty@{g.ri(0, 9)}.service", "systemd-fsck@dev-disk-by\\x2duuid-" + esc_uuid + ".service"])
    t = g.ch([f"● {u} - {g.ch(['Getty on tty1', 'OpenVPN tunnel', 'WireGuard via wg-quick(8)', 'User Manager'])}\n     Loaded: loaded\n     Active: active (running) since {g.date()} {g.time()} UTC",
              f"$ sudo systemctl enable --now {u}\nCreated symlink /etc/systemd/system/multi-user.target.wants/{u}.",
              f"{g.ch(['Nov', 'Dec'])} {g.ri(1, 28)} {g.time()} host systemd[1]: Started {u}."])
    return t


@T("neg-pii", "install-at-version-new")
def _(g):
    return g.ch([f"go install golang.org/x/tools/gopls@v0.{g.ri(14, 18)}.{g.ri(0, 5)}", f"npx create-vite@latest {g.word()}-app --template react-ts",
                 f"bun add zod@3.{g.ri(20, 24)}.{g.ri(0, 9)}", f"cargo install ripgrep@14.1.{g.ri(0, 1)}", f"uvx ruff@0.{g.ri(5, 9)}.{g.ri(0, 9)} check .",
                 f"  /@babel/core@7.{g.ri(20, 26)}.{g.ri(0, 9)}:\n    resolution: {{integrity: sha512-{g.b64(64)}}}", f"brew install node@{g.ch([18, 20, 22])}",
                 f"deno add jsr:@std/assert@1.0.{g.ri(0, 9)}", f"pip install \"{g.word()} @ git+https://github.com/{g.word()}/{g.word()}.git@v{g.ver()}\""])


@T("neg-pii", "git-at-refs")
def _(g):
    return g.ch([f"{g.hx(7)} HEAD@{{0}}: commit: {g.ch(['fix typo', 'wip', 'bump version'])}\n{g.hx(7)} HEAD@{{1}}: checkout: moving from main to {g.word()}",
                 f"stash@{{{g.ri(0, 4)}}}: WIP on {g.word()}: {g.hx(7)} {g.ch(['add tests', 'refactor'])}", "git log --oneline main@{upstream}..HEAD",
                 f"git reset --hard HEAD@{{{g.ri(1, 9)}}}", f"branch.{g.word()}.merge=refs/heads/{g.word()}"])


@T("neg-pii", "code-at-syntax")
def _(g):
    return g.ch([f"@media (prefers-color-scheme: dark) {{ .card {{ background: #{g.hx(6)}; }} }}", "@import url(\"theme.css\") screen;",
                 f"DECLARE @{g.word()}Id INT = {g.ri(1, 999)};\nSELECT * FROM dbo.Orders WHERE CustomerId = @{g.word()}Id;",
                 f"Invoke-Command @params -ScriptBlock {{ Get-Service {g.word()} }}", "@model IEnumerable<Order>\n@foreach (var o in Model) { <li>@o.Id</li> }",
                 "foreach my $f (@ARGV) { print \"$f\\n\"; }", "@MainActor final class ViewModel: ObservableObject {", f"$primary: #{g.hx(6)};\n@mixin card {{ border-radius: 4px; }}",
                 "weights = features @ W.T + b", "@JvmStatic fun main(args: Array<String>) {"])


@T("neg-pii", "chat-handles-new")
def _(g):
    return g.ch([f"@{g.first().lower()}:matrix.org invited @{g.word()}bot:matrix.org", f"<{g.first().lower()}!~{g.first().lower()}@user/{g.first().lower()}> hi all",
                 f"keybase: {g.first().lower()}@github", f"mention: @{g.first().lower()}.{g.last().lower()} please review", f"@{g.word()}-oncall ack"])


@T("neg-pii", "kube-contexts")
def _(g):
    k = g.ri(0, 2)
    if k == 0:
        return f"current-context: kubernetes-admin@kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: kubernetes-admin\n  name: kubernetes-admin@kubernetes"
    if k == 1:
        return f"$ kubectl config get-contexts\nCURRENT   NAME                     CLUSTER     AUTHINFO\n*         admin@{g.word()}-prod        {g.word()}-prod   admin"
    return (f"$ kubectl config current-context\n{g.first().lower()}@{g.word()}-{g.ch(['prod', 'dev'])}.{g.ch(['eu-west-1', 'ap-south-1'])}.eksctl.io", [], AMB)


@T("neg-pii", "reserved-domain-emails-new")
def _(g):
    e = f"{g.first().lower()}@{g.ch(['example.com', 'example.org', 'shop.test', 'corp.example', 'mail.invalid', 'app.localhost'])}"
    return g.ch([f"      example: {e}\n      format: email", f"{g.name()} <{e}> <old-{e}>", f"user = User.objects.create_user(\"{g.first().lower()}\", \"{e}\", password=None)",
                 f"MAIL FROM:<{e}>\n250 2.1.0 Ok", f"ORGANIZER;CN=Demo:mailto:{e}", f"fake.email() -> '{e}'"])


@T("neg-pii", "luhn-invalid-new-contexts")
def _(g):
    d, b = card(g, valid=False)
    return g.ch([f"  DE002 Primary Account Number .... [{d}]", f"Card(number='{d}', exp_month={g.ri(1, 12)})", f" {g.ri(1, 99)} | {g.name()} | {d} | 0{g.ri(1, 9)}/{g.ri(27, 31)}",
                 f"<ns2:AccountNumber>{d}</ns2:AccountNumber>", f"pan: \"{cfmt(g, d)}\""])


@T("neg-pii", "masked-cards-new")
def _(g):
    l4 = g.dig(4)
    return g.ch([f"{g.ch(['VISA', 'Mastercard', 'RuPay', 'Elo'])} ending {l4}", f"•••• •••• •••• {l4}", f"\"card\": {{\"brand\": \"visa\", \"last4\": \"{l4}\", \"exp_month\": {g.ri(1, 12)}}}",
                 f"{g.ch(['4', '5'])}{g.dig(5)}******{l4}", f"bin={g.ch(['4', '5'])}{g.dig(5)} last4={l4}", f"XXXX-XXXX-XXXX-{l4}",
                 f"Apple Pay (Device Account Number ••{l4})"])


@T("neg-pii", "documented-test-cards")
def _(g):
    c = g.ch(["4242 4242 4242 4242", "4000 0566 5566 5556", "5555 5555 5555 4444", "4111 1111 1111 1111", "3782 822463 10005"])
    return (g.ch([f"Use the test card {c} with any future expiry and any CVC.", f"# Stripe test mode\nTEST_CARD=\"{c.replace(' ', '')}\"",
                  f"cy.get('#cardnumber').type('{c}')"]), [], AMB)


@T("neg-pii", "iban-invalid-new-contexts")
def _(g):
    s = iban(g, valid=False)
    return g.ch([f":59:/{s}\n{g.name().upper()}", f"BCD\n002\n1\nSCT\n\n{g.name()}\n{s}\nEUR{g.ri(5, 900)}.00", f"Payee(name='{g.name()}', iban='{s}')",
                 f"Proszę o przelew na rachunek {s}.", f"<strong>{' '.join(s[i:i + 4] for i in range(0, len(s), 4))}</strong>"])


@T("neg-pii", "bank-and-security-codes")
def _(g):
    return g.ch([f"BIC/SWIFT: {g.ch(['DEUT', 'COBA', 'BNPA', 'HDFC', 'ICIC', 'BRAS', 'MUFG'])}{g.ch(['DE', 'FR', 'IN', 'BR', 'JP'])}{g.s(2, UPPERNUM)}XXX",
                 f"IFSC: {g.ch(['SBIN', 'HDFC', 'ICIC', 'UTIB'])}0{g.dig(6)}", f"ISIN US{g.dig(9)}{g.dig(1)}", f"ISIN {g.ch(['IN', 'JP', 'BR', 'DE'])}{g.s(9, UPPERNUM)}{g.dig(1)}",
                 f"CUSIP {g.dig(6)}{g.s(2, UPPERNUM)}{g.dig(1)}", f"LEI: {g.s(4, UPPERNUM)}00{g.s(12, UPPERNUM)}{g.dig(2)}", f"MCC {g.ch(['5411', '5812', '4111', '7011'])} (merchant category)"])


@T("neg-pii", "ssn-invalid-new-contexts")
def _(g):
    a = g.ch(["000", "666", f"9{g.dig(2)}"])
    s = f"{a}-{g.ri(1, 99):02d}-{g.ri(1, 9999):04d}"
    if g.p(0.3):
        s = f"{g.ri(1, 665):03d}-00-{g.ri(1, 9999):04d}"
    return g.ch([f"PID|1||{g.dig(8)}^^^MRN||{g.last().upper()}^{g.first().upper()}||{g.ri(1950, 2004)}0101|F|||||||||||{s}",
                 f"Your social security number\n{g.first()} {g.last()} {s}", f"ssn: '{s}'  # synthetic, invalid area number", f"REF*0F*{s.replace('-', '')}~"])


@T("neg-pii", "other-us-ids-not-ssn")
def _(g):
    return g.ch([f"EIN: {g.ri(10, 99)}-{g.dig(7)}", f"Employer identification number (EIN) {g.ri(10, 99)}-{g.dig(7)}", f"NPI {g.ch('12')}{g.dig(9)}",
                 f"DUNS {g.dig(2)}-{g.dig(3)}-{g.dig(4)}", f"FEIN {g.ri(10, 99)}{g.dig(7)}", f"USDOT {g.ri(1000000, 3999999)}", f"CAGE code {g.s(5, UPPERNUM)}"])


@T("neg-pii", "names-without-contact")
def _(g):
    return g.ch([f"Reviewed-by: {g.name()}", f"Assignee: {g.name()}  Reporter: {g.name()}", f"Co-authored-by: {g.name()}",
                 f"Thanks to {g.name()} and {g.name()} for the fixes.", f"| {g.name()} | {g.ch(['Backend', 'SRE', 'QA'])} | {g.ch(['Pune', 'Lagos', 'Osaka', 'Recife'])} |"])


@T("neg-pii", "at-signs-in-urls-and-logs")
def _(g):
    return g.ch([f"docker pull ghcr.io/{g.word()}/{g.word()}@sha256:{g.hx(64)}", f"https://www.npmjs.com/package/@{g.word()}/{g.word()}",
                 f"https://mastodon.social/@{g.first().lower()}", f"source = \"git::https://github.com/{g.word()}/terraform-modules.git//vpc?ref=v{g.ver()}\"",
                 f"{g.time()} worker@{g.s(12, LOWERNUM)} ready", f"celery@{g.word()}-worker-{g.ri(0, 9)} ready.", f"[{g.word()}@{g.word()}-7f9c ~]$ make test"])


# ===========================================================================
# negatives around private keys: public halves, placeholders, paths, metadata
# ===========================================================================


@T("neg-key", "spki-public-pem-new-contexts")
def _(g):
    k = KF.pub(g)
    p = pem("PUBLIC KEY", spki_der(k))
    return g.ch([
        f"jwt:\n  issuer: https://auth.{g.org()}\n  publicKey: |\n" + "\n".join("    " + ln for ln in p.split("\n")),
        f"plugins:\n  - name: jwt\n    config:\n      rsa_public_key: \"{p.replace(chr(10), chr(92) + 'n')}\"",
        f"\"publicKey\": \"{b64s(spki_der(k))}\",",
        f"JWT_PUBLIC_KEY=\"{p}\"",
        f"$ openssl pkey -in server.key -pubout\n{p}",
    ])


@T("neg-key", "authorized-keys-options")
def _(g):
    k = KF.pub(g)
    line = ssh_pub_line(k, g.ch(["backup@nas", "ci@runner", f"{g.first().lower()}@laptop"]))
    return g.ch([f"command=\"/usr/bin/rrsync -ro /srv/backup\",restrict {line}", f"from=\"*.corp.lan\",no-port-forwarding,no-X11-forwarding {line}",
                 f"cert-authority,principals=\"ops\" {line}", f"$ ssh-keygen -y -f ~/.ssh/id_{g.ch(['ed25519', 'rsa', 'ecdsa'])}\n{line}",
                 f"ssh_authorized_keys:\n  - {line}"])


@T("neg-key", "jwks-public")
def _(g):
    keys = [jwk_public(KF.pub(g), g.s(16, B64URL)) for _ in range(g.ri(1, 2))]
    return g.ch([f"$ curl -s https://auth.{g.org()}/.well-known/jwks.json\n", ""]) + json.dumps({"keys": keys}, indent=g.ch([None, 2]))


@T("neg-key", "placeholder-key-blocks")
def _(g):
    label = g.ch(["PRIVATE KEY", "RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"])
    body = g.ch(["...", "<your key here>", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC...", "(redacted)", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                 "b3BlbnNzaC1rZXktdjEAAAAA... (truncated)", "{{ .Values.tls.key }}", "${SSH_PRIVATE_KEY}"])
    return g.ch([f"-----BEGIN {label}-----\n{body}\n-----END {label}-----", f"private_key: |\n  -----BEGIN {label}-----\n  {body}\n  -----END {label}-----",
                 f"# Paste the key between the markers:\n# -----BEGIN {label}-----\n# {body}\n# -----END {label}-----"])


@T("neg-key", "key-paths-and-commands")
def _(g):
    return g.ch([f"Host {g.word()}\n  HostName {g.word()}.{g.org()}\n  User git\n  IdentityFile ~/.ssh/id_{g.ch(['ed25519', 'rsa', 'deploy'])}\n  IdentitiesOnly yes",
                 f"ssl_certificate     /etc/ssl/certs/{g.word()}.crt;\nssl_certificate_key /etc/ssl/private/{g.word()}.key;",
                 f"openssl genpkey -algorithm {g.ch(['ed25519', 'RSA -pkeyopt rsa_keygen_bits:3072', 'EC -pkeyopt ec_paramgen_curve:P-256'])} -out {g.word()}.key",
                 "# secrets\n*.pem\n*.key\nid_rsa*\n!*.pub", f"chmod 600 ~/.ssh/id_{g.ch(['ed25519', 'rsa'])} && ssh-add ~/.ssh/id_{g.ch(['ed25519', 'rsa'])}",
                 f"ssh-keygen -t ed25519 -C \"{g.word()}-deploy\" -f ./deploy_key -N ''", f"--tls-private-key-file=/var/lib/kubelet/pki/kubelet.key",
                 f"GIT_SSH_COMMAND='ssh -i /run/secrets/deploy_key -o IdentitiesOnly=yes' git fetch"])


@T("neg-key", "ssh-add-list")
def _(g):
    rows = []
    for _ in range(g.ri(1, 3)):
        k = KF.pub(g)
        bits = {"rsa": k.get("bits", 2048), "ec": 256, "ed25519": 256}[k["type"]]
        rows.append(f"{bits} {ssh_fp(k)} {g.ch(['deploy@ci', g.first().lower() + '@laptop', 'backup@nas'])} ({ {'rsa': 'RSA', 'ec': 'ECDSA', 'ed25519': 'ED25519'}[k['type']] })")
    return "$ ssh-add -l\n" + "\n".join(rows)


@T("neg-key", "k8s-tls-secret-describe")
def _(g):
    return (f"Name:         {g.word()}-tls\nNamespace:    {g.ch(['ingress-nginx', 'prod', 'cert-manager'])}\nLabels:       <none>\n"
            f"Annotations:  cert-manager.io/issuer-name: letsencrypt-prod\n\nType:  kubernetes.io/tls\n\nData\n====\ntls.crt:  {g.ri(1800, 5200)} bytes\ntls.key:  {g.ch([227, 241, 1675, 1704, 3243])} bytes")


@T("neg-key", "sensitive-key-output")
def _(g):
    return g.ch([f"Outputs:\n\nprivate_key_pem = <sensitive>\npublic_key_openssh = \"{ssh_pub_line(KF.pub(g))}\"",
                 f"Key                 Value\n---                 -----\nprivate_key         <sensitive>\nprivate_key_type    rsa",
                 f"  + private_key_pem = (sensitive value)\n  + public_key_fingerprint_sha256 = \"{ssh_fp(KF.pub(g))}\"",
                 f"tls.key: <redacted {g.ri(200, 3300)} bytes>"])


@T("neg-key", "minisign-signify-pub")
def _(g):
    kid = g.hx(16).upper()
    if g.p(0.5):
        return f"untrusted comment: minisign public key {kid}\n{b64s(b'Ed' + g.rb(40))}"
    return f"untrusted comment: signify public key\n{b64s(b'Ed' + g.rb(40))}"


@T("neg-key", "wireguard-public-only")
def _(g):
    return g.ch([f"[Peer]\n# {g.first()}'s laptop\nPublicKey = {g.b64(32)}\nPersistentKeepalive = 25",
                 f"interface: wg0\n  public key: {g.b64(32)}\n  private key: (hidden)\n  listening port: 51820",
                 f"peer: {g.b64(32)}\n  latest handshake: {g.ri(1, 59)} seconds ago\n  transfer: {g.ri(1, 900)}.{g.ri(0, 99)} MiB received, {g.ri(1, 900)}.{g.ri(0, 99)} MiB sent"])


@T("neg-key", "encrypted-message-blocks")
def _(g):
    b = g.b64(g.ch([180, 240, 300]))
    lines = "\n".join(b[i:i + 64] for i in range(0, len(b), 64))
    return g.ch([f"-----BEGIN PGP MESSAGE-----\n\n{lines}\n={g.b64(3)}\n-----END PGP MESSAGE-----",
                 f"-----BEGIN AGE ENCRYPTED FILE-----\n{lines}\n-----END AGE ENCRYPTED FILE-----",
                 f"sops:\n    age:\n        - recipient: age1{g.s(58, 'qpzry9x8gf2tvdw0s3jn54khce6mua7l')}\n          enc: |\n            -----BEGIN AGE ENCRYPTED FILE-----\n" +
                 "\n".join("            " + b[i:i + 64] for i in range(0, len(b), 64)) + "\n            -----END AGE ENCRYPTED FILE-----"])


@T("neg-key", "realm-certificate-b64")
def _(g):
    cert = "MIIC" + g.s(g.ch([600, 700, 800]), B64) + "=="
    return g.ch([json.dumps({"kid": g.s(43, B64URL), "kty": "RSA", "alg": "RS256", "use": "sig", "x5c": [cert], "x5t": g.s(27, B64URL)}),
                 f"<ds:X509Certificate>{cert}</ds:X509Certificate>", f"\"certificate\": \"{cert}\""])


# ===========================================================================
# negatives around vendor tokens: near misses in the new renderings
# ===========================================================================

VLIST = []          # filled in main()
ID_AMB = ("mailjet", "confluent", "trello", "scaleway", "auth0")   # their public half looks like a key
SAFE_QUERY = [r for r in QUERY_RENDERS if r[0] in ("sentry-breadcrumb", "browser-websocket-error")]


def nm_render(g, v, parts, single_value=True):
    rs_ = list(KV_RENDERS)
    if v.header and single_value:
        rs_ += HEADER_RENDERS
    if v.qparam and single_value:
        rs_ += SAFE_QUERY
    name, fn = g.ch(rs_)
    text, _ = mk(*fn(g, v, parts))
    return text, name


def _vendor(g, pred=lambda v: True):
    return g.ch([v for v in VLIST if pred(v) and v.rule not in ("azure-sas",)])


def _cred_parts(g, v):
    variant, parts = v.cred(g)
    return parts


def masked_like(g, val, v):
    pre = v.prefix if v.prefix and val.startswith(v.prefix) else ""
    body = val[len(pre):]
    k = g.ri(0, 7)
    if k == 0:
        return pre + "•" * g.ri(6, 12) + body[-4:]
    if k == 1:
        return (pre or val[:3]) + "…" + body[-4:]
    if k == 2:
        return f"«redacted:{v.rule}»"
    if k == 3:
        return pre + "*" * len(body)
    if k == 4:
        return f"[secure:{v.rule.upper()}]"
    if k == 5:
        return "<" + "hidden" + f" {len(val)} chars>"
    if k == 6:
        return f"{val[:4]}{'x' * 6}{val[-2:]} (masked)"
    return "****************"


@T("neg-token", "nm-masked-new-style")
def _(g):
    v = _vendor(g)
    parts = [(e, k, masked_like(g, val, v) if sec else val, False) for e, k, val, sec in _cred_parts(g, v)]
    t, r = nm_render(g, v, parts)
    return t, [], {"sub": f"{r}:{v.rule}", "amb": v.rule in ID_AMB}


REF_STYLES = ["{{{{ op://{vault}/{item}/credential }}}}", "$({env})", "#{{{env}}}", "@Microsoft.KeyVault(SecretUri=https://kv-{vault}.vault.azure.net/secrets/{item}/)",
              "${{ssm:/prod/{item}/{env_l}}}", "${{vault:secret/data/{item}#{env_l}}}", "{{{{ .Env.{env} }}}}", "%({env_l})s", "<%= ENV.fetch('{env}') %>",
              "{{{{ lookup('aws_ssm', '/prod/{item}') }}}}", "${{file(\"/run/secrets/{env_l}\")}}", "!ENV ${{{env}}}", "((vault:{item}.{env_l}))",
              "${{sm://projects/{vault}/secrets/{env_l}/versions/latest}}", "[[ secrets.{env_l} ]]"]
PLACEHOLDER_BODIES = ["x", "X", "0", "<redacted>"]


@T("neg-token", "nm-reference-or-placeholder")
def _(g):
    v = _vendor(g)
    parts = _cred_parts(g, v)
    out = []
    for e, k, val, sec in parts:
        if not sec:
            out.append((e, k, val, False))
            continue
        if g.p(0.75) or not v.prefix:
            ref = g.ch(REF_STYLES).format(vault=g.word(), item=f"{v.rule}-{g.word()}", env=e, env_l=e.lower())
        else:
            c = g.ch(PLACEHOLDER_BODIES)
            ref = v.prefix + (c * (len(val) - len(v.prefix)) if len(c) == 1 else c)
        out.append((e, k, ref, False))
    t, r = nm_render(g, v, out)
    return t, [], {"sub": f"{r}:{v.rule}", "amb": v.rule in ID_AMB}


@T("neg-token", "nm-too-short")
def _(g):
    v = _vendor(g, lambda v: v.prefix and v.single() and v.kind != "jwt" and v.prefix != ".atlasv1." and not v.prefix.startswith("https"))
    val = _cred_parts(g, v)[0][2]
    short = val[:len(v.prefix) + g.ri(3, max(4, (len(val) - len(v.prefix)) // 3))]
    t, r = nm_render(g, v, [(v.env[0], v.key, short, False)])
    return t, [], {"sub": f"{r}:{v.rule}", "amb": True}


@T("neg-token", "nm-publishable-counterpart")
def _(g):
    v = _vendor(g, lambda v: v.public is not None)
    pub = v.public(g)
    env = {"clerk": "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY", "flutterwave": "FLW_PUBLIC_KEY", "paystack": "PAYSTACK_PUBLIC_KEY",
           "stripe": "STRIPE_PUBLISHABLE_KEY"}[v.rule]
    k = g.ri(0, 3)
    if k == 0:
        t = f"{env}={pub}"
    elif k == 1:
        t = f"const stripePromise = loadStripe(\"{pub}\");" if v.rule == "stripe" else f"<script>window.{v.rule.upper()}_KEY = \"{pub}\";</script>"
    elif k == 2:
        t = json.dumps({"publishableKey": pub, "environment": "live"})
    else:
        t, _ = mk(*rr_vscode(g, v, [(env, "publishable_key", pub, False)]))
    return t, [], {"sub": f"publishable:{v.rule}", "amb": True}


@T("neg-token", "nm-id-half-of-pair")
def _(g):
    v = _vendor(g, lambda v: v.pair is not None and v.rule not in ("aws", "sumologic"))
    parts = [(e, k, val, False) for e, k, val, sec in _cred_parts(g, v) if not sec]
    if not parts:
        return None
    t, r = nm_render(g, v, parts)
    amb = v.rule in ID_AMB
    return t, [], {"sub": f"{r}:{v.rule}", "amb": amb}


@T("neg-token", "nm-aws-doc-example")
def _(g):
    v = [x for x in VLIST if x.rule == "aws"][0]
    parts = [("AWS_ACCESS_KEY_ID", "aws_access_key_id", "AKIAIOSFODNN7EXAMPLE", False),
             ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", False)]
    if g.p(0.3):
        t, r = mk(*g.ch([rs_s3cfg, rs_rclone_s3, rs_boto])(g, v, parts))[0], "aws-config-file"
    else:
        t, r = nm_render(g, v, parts)
    return t, [], {"sub": f"{r}:aws"}


@T("neg-token", "nm-token-digest-metadata")
def _(g):
    v = _vendor(g)
    return g.ch([f"token_sha256: {g.hx(64)}\ntoken_prefix: {(v.prefix or '')[:8]}\nlast_used: {g.iso(0)}",
                 json.dumps({"name": f"{v.rule}-ci", "fingerprint": "sha256:" + g.hx(64), "last4": g.s(4, ALNUM), "expires_at": g.iso(0)}),
                 f"{v.rule}: key id {g.s(12, LOWERNUM)} (created {g.date()}, scopes: read,write) — value not shown",
                 f"INSERT INTO api_tokens (user_id, token_hash, created_at) VALUES ({g.ri(1, 9999)}, '{g.hx(64)}', now());"]), [], {"sub": f"digest:{v.rule}"}


@T("neg-token", "nm-scanner-rule-definitions")
def _(g):
    v = _vendor(g, lambda v: v.prefix and not v.prefix.startswith("https"))
    pre = re.escape(v.prefix)
    return g.ch([f"[[rules]]\nid = \"{v.rule}-token\"\ndescription = \"{v.rule.capitalize()} API token\"\nregex = '''{pre}[A-Za-z0-9_-]{{20,}}'''\nkeywords = [\"{v.prefix.lower()}\"]",
                 f"rules:\n  - id: hardcoded-{v.rule}-key\n    pattern-regex: \"{pre}[0-9a-zA-Z]{{16,}}\"\n    message: Possible {v.rule} credential\n    severity: ERROR",
                 f"CHANGELOG: tokens issued after {g.date()} use the `{v.prefix}` prefix; update secret scanners accordingly.",
                 f"    if token.startswith(\"{v.prefix}\"):\n        raise ValueError(\"refusing to log a {v.rule} token\")"]), [], {"sub": f"rule-def:{v.rule}"}


@T("neg-token", "nm-vendor-object-ids")
def _(g):
    k = g.ri(0, 7)
    if k == 0:
        d = {"id": "evt_" + g.s(24, ALNUM), "object": "event", "type": "payment_intent.succeeded", "livemode": True,
             "data": {"object": {"id": "pi_" + g.s(24, ALNUM), "customer": "cus_" + g.s(14, ALNUM), "latest_charge": "ch_" + g.s(24, ALNUM),
                                 "payment_method": "pm_" + g.s(24, ALNUM), "amount": g.ri(100, 99999), "currency": g.ch(["inr", "brl", "usd"])}}}
        return json.dumps(d), [], {"sub": "object-ids:stripe"}
    if k == 1:
        return (f"<Response><Message>Thanks!</Message></Response>\n{g.iso()} twilio MessageSid=SM{g.hx(32)} AccountSid=AC{g.hx(32)} "
                f"MessagingServiceSid=MG{g.hx(32)} Status=delivered"), [], {"sub": "object-ids:twilio"}
    if k == 2:
        return f"gid://shopify/Order/{g.nz(13)}  gid://shopify/Customer/{g.nz(13)}  gid://shopify/ProductVariant/{g.nz(14)}", [], {"sub": "object-ids:shopify"}
    if k == 3:
        return f"LDClient initialised with client-side id {g.hx(24)} (environment: production)", [], {"sub": "object-ids:launchdarkly"}
    if k == 4:
        return json.dumps({"id": "user_2" + g.s(26, ALNUM), "object": "user", "primary_email_address_id": "idn_2" + g.s(26, ALNUM),
                           "organization_id": "org_2" + g.s(26, ALNUM)}), [], {"sub": "object-ids:clerk"}
    if k == 5:
        return f"fastly service {g.s(22, ALNUM)} version {g.ri(2, 300)} activated", [], {"sub": "object-ids:fastly"}
    if k == 6:
        return f"Incident #{g.ri(1000, 99999)} ({g.s(14, UPPERNUM)}) triggered on service {g.s(7, UPPERNUM)} — escalation policy {g.s(7, UPPERNUM)}", [], {"sub": "object-ids:pagerduty"}
    return f"\"app_id\": \"app{g.s(14, ALNUM)}\", \"table_id\": \"tbl{g.s(14, ALNUM)}\", \"record_id\": \"rec{g.s(14, ALNUM)}\"", [], {"sub": "object-ids:airtable"}


@T("neg-token", "nm-webhook-signatures")
def _(g):
    return g.ch([f"X-GitHub-Delivery: {g.uuid()}\nX-GitHub-Event: push\nX-Hub-Signature-256: sha256={g.hx(64)}",
                 f"Stripe-Signature: t={g.epoch()},v1={g.hx(64)},v0={g.hx(64)}", f"X-Slack-Request-Timestamp: {g.epoch()}\nX-Slack-Signature: v0={g.hx(64)}",
                 f"X-Shopify-Hmac-Sha256: {g.b64(32)}\nX-Shopify-Topic: orders/create", f"webhook-id: msg_{g.s(27, ALNUM)}\nwebhook-signature: v1,{g.b64(32)}",
                 f"X-Twilio-Signature: {g.b64(20)}"]), [], {"sub": "signature-headers"}


@T("neg-token", "nm-token-audit-log")
def _(g):
    v = _vendor(g)
    return g.ch([f"{g.iso()} audit action=token.revoke actor={g.first().lower()} token_id=tok_{g.s(20, ALNUM)} provider={v.rule} reason=rotation",
                 f"{v.rule}: personal access token \"{g.word()}-ci\" expires in {g.ri(1, 14)} days (id {g.ri(100000, 9999999)})",
                 f"WARN secret-scanning alert #{g.ri(1, 999)} ({v.rule} token) in {g.word()}/{g.word()} resolved as revoked"]), [], {"sub": f"audit:{v.rule}"}


# ===========================================================================
# negatives a secret detector may trip on: ids, digests, encrypted values
# ===========================================================================


def nixhash(g):
    return "sha256-" + g.b64(32)


@T("neg-secret", "flake-lock-narhash")
def _(g):
    return json.dumps({"nodes": {"nixpkgs": {"locked": {"lastModified": g.epoch(), "narHash": nixhash(g), "owner": "NixOS", "repo": "nixpkgs",
                                                         "rev": g.hx(40), "type": "github"}, "original": {"owner": "NixOS", "ref": "nixos-24.11", "repo": "nixpkgs", "type": "github"}}},
                       "root": "root", "version": 7}, indent=g.ch([None, 2]))


@T("neg-secret", "nix-fetcher-hashes")
def _(g):
    return g.ch([f"src = fetchFromGitHub {{\n  owner = \"{g.word()}\";\n  repo = \"{g.word()}\";\n  rev = \"v{g.ver()}\";\n  hash = \"{nixhash(g)}\";\n}};",
                 f"$ nix-prefetch-url https://github.com/{g.word()}/{g.word()}/archive/v{g.ver()}.tar.gz\npath is '/nix/store/{g.s(32, NIX32)}-v{g.ver()}.tar.gz'\n{g.s(52, NIX32)}",
                 f"cargoHash = \"{nixhash(g)}\";\nvendorHash = \"{nixhash(g)}\";"])


@T("neg-secret", "ipfs-content-ids")
def _(g):
    qm = "Qm" + g.s(44, B58)
    bafy = "bafybei" + g.s(52, "abcdefghijklmnopqrstuvwxyz234567")
    return g.ch([f"$ ipfs add -r site/\nadded {qm} site/index.html\nadded {'Qm' + g.s(44, B58)} site", f"_dnslink.{g.word()}.{g.org()}. 300 IN TXT \"dnslink=/ipfs/{bafy}\"",
                 f"$ ipfs pin ls --type=recursive\n{bafy} recursive", f"https://{bafy}.ipfs.dweb.link/{g.word()}.json"])


@T("neg-secret", "crypto-wallet-public-ids")
def _(g):
    return g.ch([f"Deploying {g.word().capitalize()}Token...\n  deployed to: 0x{g.hx(40)}\n  tx: 0x{g.hx(64)}\n  gas used: {g.ri(100000, 3000000)}",
                 f"bc1q{g.s(38, 'qpzry9x8gf2tvdw0s3jn54khce6mua7l')}", f"xpub6{g.s(106, B58)}",
                 f"Solana tx {g.s(88, B58)} confirmed (slot {g.ri(2 * 10 ** 8, 3 * 10 ** 8)})", f"ENS {g.word()}.eth -> 0x{g.hx(40)}",
                 f"receive address: 1{g.s(33, B58)}"])


@T("neg-secret", "oci-manifest-json")
def _(g):
    d = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + g.hx(64), "size": g.ri(1000, 9000)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + g.hx(64), "size": g.ri(10 ** 5, 10 ** 8)}
                    for _ in range(g.ri(1, 3))],
         "annotations": {"org.opencontainers.image.revision": g.hx(40), "org.opencontainers.image.created": g.iso(0)}}
    return json.dumps(d, indent=g.ch([None, 2]))


@T("neg-secret", "registry-digest-tools")
def _(g):
    img = f"{g.ch(['ghcr.io', 'quay.io', 'registry.k8s.io'])}/{g.word()}/{g.word()}:{g.ver()}"
    return g.ch([f"$ crane digest {img}\nsha256:{g.hx(64)}", f"$ skopeo inspect docker://{img} | jq .Digest\n\"sha256:{g.hx(64)}\"",
                 f"$ ctr -n k8s.io images ls -q | grep {g.word()}\n{img}@sha256:{g.hx(64)}",
                 f"cosign verify {img}@sha256:{g.hx(64)} --certificate-identity-regexp '.*'"])


@T("neg-secret", "lockfile-hashes-other")
def _(g):
    w = g.word()
    v = g.ver()
    return g.ch([f"[[package]]\nname = \"{w}\"\nversion = \"{v}\"\nfiles = [\n    {{file = \"{w}-{v}-py3-none-any.whl\", hash = \"sha256:{g.hx(64)}\"}},\n]",
                 f"\"{w}\": {{\n    \"hashes\": [\n        \"sha256:{g.hx(64)}\",\n        \"sha256:{g.hx(64)}\"\n    ],\n    \"version\": \"=={v}\"\n}}",
                 f"  /{w}@{v}:\n    resolution: {{integrity: sha512-{g.b64(64)}}}\n    engines: {{node: '>=18'}}",
                 f"\"dist\": {{\"type\": \"zip\", \"url\": \"https://api.github.com/repos/{w}/{w}/zipball/{g.hx(40)}\", \"reference\": \"{g.hx(40)}\", \"shasum\": \"\"}}",
                 f"CHECKSUMS\n  {w} ({v}) sha256={g.hx(64)}\n  {g.word()} ({g.ver()}) sha256={g.hx(64)}",
                 f"  \"{w}\": {{:hex, :{w}, \"{v}\", \"{g.hx(64)}\", [:mix], [], \"hexpm\", \"{g.hx(64)}\"}},",
                 f"provider \"registry.terraform.io/hashicorp/{g.ch(['aws', 'google', 'random'])}\" {{\n  version = \"{v}\"\n  hashes = [\n    \"h1:{g.b64(32)}\",\n    \"zh:{g.hx(64)}\",\n  ]\n}}",
                 f"<component group=\"org.{w}\" name=\"{w}-core\" version=\"{v}\">\n   <artifact name=\"{w}-core-{v}.jar\">\n      <sha256 value=\"{g.hx(64)}\" origin=\"Generated by Gradle\"/>\n   </artifact>\n</component>",
                 f"{{\n  \"identity\" : \"{w}\",\n  \"kind\" : \"remoteSourceControl\",\n  \"location\" : \"https://github.com/{w}/{w}\",\n  \"state\" : {{ \"revision\" : \"{g.hx(40)}\", \"version\" : \"{v}\" }}\n}}"])


@T("neg-secret", "tfstate-resource-ids")
def _(g):
    attrs = {"id": g.ch([f"i-0{g.hx(16)}", f"sg-0{g.hx(16)}", f"vpc-0{g.hx(16)}", f"subnet-0{g.hx(16)}"]),
             "arn": f"arn:aws:ec2:{g.ch(['eu-west-1', 'ap-south-1'])}:{g.dig(12)}:instance/i-0{g.hx(16)}",
             "ami": f"ami-0{g.hx(16)}", "instance_type": g.ch(["t3.micro", "m7g.large"]), "tags": {"Name": f"{g.word()}-{g.ri(1, 9)}"}}
    return json.dumps({"version": 4, "serial": g.ri(1, 500), "lineage": g.uuid(), "resources": [{"mode": "managed", "type": "aws_instance", "name": g.word(),
                                                                                               "instances": [{"schema_version": 1, "attributes": attrs}]}]}, indent=2)


@T("neg-secret", "k8s-events-owner-uids")
def _(g):
    d = {"kind": "Event", "apiVersion": "v1", "metadata": {"name": f"{g.word()}-{g.s(10, 'bcdfghjklmnpqrstvwxz2456789')}.{g.hx(16)}", "uid": g.uuid(),
                                                          "resourceVersion": str(g.ri(10 ** 6, 10 ** 9))},
         "involvedObject": {"kind": "Pod", "name": f"{g.word()}-{g.s(5, 'bcdfghjklmnpqrstvwxz2456789')}", "uid": g.uuid(), "resourceVersion": str(g.ri(10 ** 6, 10 ** 9))},
         "reason": g.ch(["Pulled", "Scheduled", "BackOff"]), "firstTimestamp": g.iso(0)}
    if g.p(0.5):
        return json.dumps(d)
    return f"  ownerReferences:\n  - apiVersion: apps/v1\n    blockOwnerDeletion: true\n    controller: true\n    kind: ReplicaSet\n    name: {g.word()}-{g.s(10, 'bcdfghjklmnpqrstvwxz2456789')}\n    uid: {g.uuid()}"


@T("neg-secret", "otel-trace-json")
def _(g):
    span = {"traceId": g.hx(32), "spanId": g.hx(16), "parentSpanId": g.hx(16), "name": f"GET /api/{g.word()}", "kind": 2,
            "startTimeUnixNano": str(g.epoch()) + g.dig(9), "endTimeUnixNano": str(g.epoch()) + g.dig(9),
            "attributes": [{"key": "http.status_code", "value": {"intValue": str(g.ch([200, 404, 500]))}}]}
    return g.ch([json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}), f"X-B3-TraceId: {g.hx(32)}\nX-B3-SpanId: {g.hx(16)}\nX-B3-Sampled: 1",
                 f"https://jaeger.{g.ch(INTDOM)}/trace/{g.hx(32)}?uiFind={g.hx(16)}"])


@T("neg-secret", "sentry-event-ids")
def _(g):
    eid = g.hx(32)
    return g.ch([f"{{\"event_id\":\"{eid}\",\"sent_at\":\"{g.iso()}\",\"sdk\":{{\"name\":\"sentry.python\",\"version\":\"2.{g.ri(10, 19)}.0\"}}}}\n{{\"type\":\"event\",\"length\":{g.ri(500, 9000)}}}",
                 f"Sentry is attempting to send 1 pending event\nevent {eid} captured", f"https://sentry.io/organizations/{g.word()}/issues/?query={eid}",
                 f"sentry-trace: {g.hx(32)}-{g.hx(16)}-1\nbaggage: sentry-trace_id={g.hx(32)},sentry-environment=production,sentry-release={g.ver()}"])


@T("neg-secret", "iam-policy-arns")
def _(g):
    acct = g.dig(12)
    d = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "kms:Decrypt"],
                                                 "Resource": [f"arn:aws:s3:::{g.word()}-{g.word()}/*", f"arn:aws:kms:eu-west-1:{acct}:key/{g.uuid()}"]},
                                                {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{acct}:role/{g.word()}-deploy"}]}
    return json.dumps(d, indent=g.ch([None, 2]))


@T("neg-secret", "ci-secret-references-new")
def _(g):
    s = g.ch(["REGISTRY_PASSWORD", "DEPLOY_TOKEN", "NPM_TOKEN", "SONAR_TOKEN", "SLACK_WEBHOOK_URL"])
    return g.ch([f"      - name: SonarCloud scan\n        if: ${{{{ secrets.{s} != '' }}}}\n        run: ./gradlew sonar",
                 f"jobs:\n  call-deploy:\n    uses: {g.word()}/workflows/.github/workflows/deploy.yml@main\n    secrets: inherit",
                 f"inputs:\n  token:\n    description: API token\n    required: true\nruns:\n  using: composite\n  steps:\n    - run: ./publish.sh\n      env:\n        TOKEN: ${{{{ inputs.token }}}}",
                 f"- script: npm publish\n  env:\n    NODE_AUTH_TOKEN: $({s})", f"      - run:\n          command: ./release.sh\n          context: {g.word()}-secrets",
                 f"steps:\n  - name: publish\n    environment:\n      {s}:\n        from_secret: {s.lower()}", f"env:\n  {s}: \"{{{{ env.{s} }}}}\"  # injected by buildkite secrets"])


@T("neg-secret", "git-plumbing-output")
def _(g):
    return g.ch([f"$ git fsck --lost-found\nChecking object directories: 100% (256/256), done.\ndangling commit {g.hx(40)}\ndangling blob {g.hx(40)}",
                 f"$ git submodule status\n+{g.hx(40)} vendor/{g.word()} (v{g.ver()}-{g.ri(1, 40)}-g{g.hx(7)})\n {g.hx(40)} third_party/{g.word()} (heads/main)",
                 f"$ git cat-file -p HEAD^{{tree}}\n100644 blob {g.hx(40)}\t.gitignore\n040000 tree {g.hx(40)}\tsrc\n100755 blob {g.hx(40)}\tbuild.sh",
                 f"$ git bisect good\nBisecting: {g.ri(2, 90)} revisions left to test after this (roughly {g.ri(1, 7)} steps)\n[{g.hx(40)}] {g.ch(['refactor cache', 'bump deps'])}",
                 f"$ git rev-list --max-count=3 HEAD\n{g.hx(40)}\n{g.hx(40)}\n{g.hx(40)}"])


@T("neg-secret", "machine-ids-and-guids")
def _(g):
    gu = g.uuid().upper()
    return g.ch([f"$ cat /etc/machine-id\n{g.hx(32)}", f"$ cat /proc/sys/kernel/random/boot_id\n{g.uuid()}",
                 f"Project(\"{{FAE04EC0-301F-11D3-BF4B-00C04F79EFBC}}\") = \"{g.word().capitalize()}\", \"src\\{g.word()}.csproj\", \"{{{gu}}}\"",
                 f"<ProjectGuid>{{{gu}}}</ProjectGuid>", f"User SID: S-1-5-21-{g.ri(10 ** 9, 4 * 10 ** 9)}-{g.ri(10 ** 9, 4 * 10 ** 9)}-{g.ri(10 ** 8, 4 * 10 ** 9)}-{g.ri(1000, 9999)}",
                 f"ProductCode = \"{{{gu}}}\""])


@T("neg-secret", "binary-build-ids")
def _(g):
    return g.ch([f"Displaying notes found in: .note.gnu.build-id\n  Owner                Data size \tDescription\n  GNU                  0x00000014\tNT_GNU_BUILD_ID (unique build ID bitstring)\n    Build ID: {g.hx(40)}",
                 f"$ go tool buildid ./bin/{g.word()}\n{g.s(20, B64URL)}/{g.s(20, B64URL)}/{g.s(20, B64URL)}/{g.s(20, B64URL)}",
                 f"bazel: remote cache hit for //src/{g.word()}:{g.word()} (action digest {g.hx(64)}/{g.ri(100, 9999)})",
                 f"ccache: hit {g.hx(32)}{g.ri(10000, 99999)}", f"dSYM UUID: {g.uuid().upper()} (arm64)"])


@T("neg-secret", "wheel-record-lines")
def _(g):
    w = g.word()
    rows = [f"{w}/{x}.py,sha256={g.b64u(32)},{g.ri(100, 90000)}" for x in g.sample(["__init__", "cli", "core", "utils", "models", "api"], g.ri(2, 4))]
    rows.append(f"{w}-{g.ver()}.dist-info/RECORD,,")
    return "\n".join(rows)


@T("neg-secret", "source-map-mappings")
def _(g):
    segs = ",".join(g.s(g.ri(4, 8), ALNUM + "+/") for _ in range(g.ri(8, 20)))
    return json.dumps({"version": 3, "file": f"{g.word()}.{g.hx(8)}.js", "sources": [f"../src/{g.word()}.ts"], "names": [g.word(), g.word()],
                       "mappings": f"AAAA,SAASA,{segs};;AAC"})


@T("neg-secret", "csp-nonces-and-hashes")
def _(g):
    return g.ch([f"Content-Security-Policy: script-src 'self' 'nonce-{g.b64(16)}' 'strict-dynamic'; object-src 'none'",
                 f"Content-Security-Policy: style-src 'self' 'sha256-{g.b64(32)}' 'sha256-{g.b64(32)}'",
                 f"<script nonce=\"{g.b64(16)}\">window.__INITIAL_STATE__ = {{}};</script>"])


@T("neg-secret", "request-trace-headers")
def _(g):
    return g.ch([f"X-Amzn-Trace-Id: Root=1-{g.hx(8)}-{g.hx(24)};Parent={g.hx(16)};Sampled=1", f"cf-ray: {g.hx(16)}-{g.ch(['BOM', 'GRU', 'NRT', 'LOS', 'FRA'])}",
                 f"X-Cloud-Trace-Context: {g.hx(32)}/{g.ri(10 ** 15, 10 ** 19)};o=1", f"x-ms-request-id: {g.uuid()}\nx-ms-correlation-request-id: {g.uuid()}",
                 f"x-request-id: req_{g.s(24, ALNUM)}\nx-envoy-upstream-service-time: {g.ri(1, 900)}", f"Idempotency-Key: {g.uuid()}"])


@T("neg-secret", "oauth-public-params")
def _(g):
    return (f"https://login.{g.org()}/oauth2/v2/authorize?client_id={g.uuid()}&response_type=code&redirect_uri=https%3A%2F%2Fapp.{g.org()}%2Fcallback"
            f"&scope=openid%20profile&state={g.s(32, B64URL)}&code_challenge={g.b64u(32)}&code_challenge_method=S256&nonce={g.s(22, B64URL)}")


@T("neg-secret", "random-ids-various")
def _(g):
    return g.ch([f"ksuid: {g.s(27, ALNUM)}", f"\"_id\": {{\"$oid\": \"{g.hx(24)}\"}}", f"doc path: users/{g.s(28, ALNUM)}/orders/{g.s(20, ALNUM)}",
                 f"https://youtu.be/{g.s(11, B64URL)}?t={g.ri(1, 900)}", f"short link: https://lnk.{g.org()}/{g.s(8, ALNUM)}", f"cuid: c{g.s(24, LOWERNUM)}",
                 f"nanoid: {g.s(21, B64URL)}", f"Request {g.s(26, '0123456789ABCDEFGHJKMNPQRSTVWXYZ')} accepted"])


@T("neg-secret", "base64-payloads-nonsecret")
def _(g):
    body = json.dumps({"orderId": g.ri(1000, 99999), "status": g.ch(["shipped", "packed"]), "items": g.ri(1, 9)}).encode()
    return g.ch([json.dumps({"specversion": "1.0", "type": f"com.{g.word()}.order.updated", "source": f"/{g.word()}", "id": g.uuid(), "data_base64": b64s(body)}),
                 f"GET /sso/saml?SAMLRequest={e_qs(g.b64(g.ri(200, 400)))}&RelayState={g.s(16, ALNUM)} HTTP/1.1",
                 f"% Reached end of topic {g.word()} [0] at offset {g.ri(100, 99999)}\nkey={g.ri(1, 9999)} value={b64s(body)}",
                 f"grpc-web payload: AAAAA{g.b64(g.ri(20, 60))}"])


@T("neg-secret", "file-hash-tools-new")
def _(g):
    f = f"{g.word()}-{g.ver()}.{g.ch(['tar.zst', 'msi', 'AppImage', 'dmg'])}"
    return g.ch([f"$ b3sum {f}\n{g.hx(64)}  {f}", f"$ xxhsum {f}\n{g.hx(16)}  {f}",
                 f"PS> Get-FileHash .\\{f}\n\nAlgorithm       Hash                                                                   Path\n---------       ----                                                                   ----\nSHA256          {g.hx(64).upper()}       C:\\dl\\{f}",
                 f"C:\\> certutil -hashfile {f} SHA256\nSHA256 hash of {f}:\n{g.hx(64)}\nCertUtil: -hashfile command completed successfully.",
                 f"$ rhash --sha3-256 {f}\n{g.hx(64)}  {f}"])


@T("neg-secret", "content-addressed-storage")
def _(g):
    return g.ch([f"version https://git-lfs.github.com/spec/v1\noid sha256:{g.hx(64)}\nsize {g.ri(1000, 10 ** 9)}",
                 f"\"rootfs\": {{\"type\": \"layers\", \"diff_ids\": [\"sha256:{g.hx(64)}\", \"sha256:{g.hx(64)}\"]}}",
                 f"  - apiVersion: v2\n    name: {g.word()}\n    version: {g.ver()}\n    digest: {g.hx(64)}\n    urls:\n    - https://charts.{g.org()}/{g.word()}-{g.ver()}.tgz",
                 f"$ restic snapshots --compact\nID        Time                 Host        Tags\n{g.hx(8)}  {g.date()} {g.time()}  {g.word()}-srv",
                 f"Archive fingerprint: {g.hx(64)}"])


@T("neg-secret", "totp-doc-example")
def _(g):
    return (g.ch(["otpauth://totp/Example:alice@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Example",
                  "Enter this key in your authenticator app: JBSW Y3DP EHPK 3PXP (example from the docs)",
                  "pyotp.TOTP('JBSWY3DPEHPK3PXP').now()  # the well-known documentation secret"]), [], AMB)


@T("neg-secret", "publishable-site-keys")
def _(g):
    return (g.ch([f"<div class=\"g-recaptcha\" data-sitekey=\"6L{g.s(38, B64URL)}\"></div>", f"NEXT_PUBLIC_RECAPTCHA_SITE_KEY=6L{g.s(38, B64URL)}",
                  f"hcaptcha sitekey: {g.uuid()}", f"data-sitekey=\"0x4AAAAAAA{g.s(14, B64URL)}\""]), [], AMB)


@T("neg-secret", "analytics-public-ids")
def _(g):
    return g.ch([f"gtag('config', 'G-{g.s(10, UPPERNUM)}');", f"<!-- Google Tag Manager -->\n(window,document,'script','dataLayer','GTM-{g.s(7, UPPERNUM)}');",
                 f"fbq('init', '{g.nz(15)}');",
                 f"plausible: data-domain=\"{g.word()}.{g.org()}\"", f"_paq.push(['setSiteId', '{g.ri(1, 99)}']);"])


@T("neg-secret", "encrypted-config-values")
def _(g):
    return g.ch([f"spring.datasource.password={{cipher}}{g.hx(g.ch([96, 128]))}", f"db.password=ENC({g.b64(g.ch([32, 48]))})",
                 f"smtp_password: !encrypted/pkcs1-oaep [ENC[PKCS7,{g.b64(256)}]]", f"password: ENC[PKCS7,{g.b64(256)}]",
                 f"\"secretString\": \"AQICAHh{g.b64(120)}\""])


@T("neg-secret", "hex-and-b64-non-secret-config")
def _(g):
    return g.ch([f"theme_color: \"#{g.hx(6)}\"\naccent: \"#{g.hx(6)}\"", f"network_id: {g.hx(16)}  # zerotier network (public)",
                 f"tailnet: {g.word()}-{g.word()}.ts.net", f"cluster_id: {g.uuid()}\nnode_id: {g.hx(32)}", f"app_version_hash: {g.hx(40)}",
                 f"etag: W/\"{g.hx(8)}-{g.b64(20).rstrip('=')}\"", f"fingerprint: {':'.join(g.hx(2).upper() for _ in range(20))}"])


# ===========================================================================
# checks
# ===========================================================================

EMAIL_RE = re.compile(r"(?<![\w.+%-])[\w.+-]+@([\w-]+(?:\.[\w-]+)+)")
REAL_TLDS = set("""com net org io dev co tech cloud eu de fr uk in jp cn br ru mx ng pk bd et id us me app ai info biz edu gov
in co.in ca au it es nl pl se ch at be tr sa ae eg za ke gh ar cl pe ve kr tw hk sg my th vn ph nz ie pt gr cz hu ro""".split())
RESERVED_SUFFIX = (".example", ".test", ".invalid", ".localhost", ".local", ".lan", ".internal", ".arpa")
RESERVED_DOMAINS = ("example.com", "example.net", "example.org", "localhost")
CARD_RE = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
SSN_RE = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
IPV4_RE = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.])")
PHONEISH_RE = re.compile(r"(?<![\w+%])\+\d[\d \-().]{7,18}\d")
SECRET_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/=\s]{100,}"),
    re.compile(r"\b(?:AKIA|ASIA)(?!IOSFODNN7EXAMPLE)[A-Z2-7]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"), re.compile(r"\bgithub_pat_[A-Za-z0-9_]{60,}"),
    re.compile(r"\bglpat-[\w-]{20}\b"), re.compile(r"\bxox[bpars]-\d+-"), re.compile(r"\b(?:sk|rk)_live_[A-Za-z0-9]{20,}"),
    re.compile(r"\bwhsec_[A-Za-z0-9]{20,}"), re.compile(r"\bAIza[\w-]{35}\b"), re.compile(r"\bsk-(?:proj|svcacct|ant-api03)-[\w-]{20,}"),
    re.compile(r"hooks\.slack\.com/services/T[A-Z0-9]+/B"), re.compile(r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{16,}"),
    re.compile(r"\b(?:ico-|aio_|pnu_|ddp_|rdme_|tk-us-|tfp_|sgp_|dt0c01\.|EZAK|EZTK|duffel_live_|duffel_test_|shippo_live_|CLOJARS_|FLWSECK[-_]|APP_USR-|tskey-|dapi|dop_v1_|shpat_|shpca_|shppa_|sntryu_|gsk_|lin_api_|figd_|PMAK-|NRAK-|glsa_|hvs\.|pul-|dckr_pat_|npm_|HRKU-|SG\.|fio-u-|AQVN)[A-Za-z0-9_\-]{16,}"),
]


def email_is_real(dom):
    d = dom.lower()
    if d in RESERVED_DOMAINS or d.endswith(RESERVED_SUFFIX) or any(d.endswith("." + x) for x in RESERVED_DOMAINS):
        return False
    return d.rsplit(".", 1)[-1] in REAL_TLDS


def outside(spans, a, b):
    return all(b <= s or a >= e for s, e in spans)


def stray_pii(text, spans):
    out = []
    for m in EMAIL_RE.finditer(text):
        if outside(spans, m.start(), m.end()) and email_is_real(m.group(1)):
            tok = max(text.rfind(c, 0, m.start()) for c in " \t\n'\"<(=[") + 1
            if "://" not in text[tok:m.start()]:
                out.append(("email", m.group(0)))
    for m in CARD_RE.finditer(text):
        d = re.sub(r"\D", "", m.group(0))
        if outside(spans, m.start(), m.end()) and card_brand_ok(d) and luhn_ok(d):
            if re.fullmatch(r"\d+", m.group(0)) or re.fullmatch(r"\d{4}([ -])\d{4,6}(\1\d{4,5})+", m.group(0)):
                out.append(("card", m.group(0)))
    for m in IBAN_RE.finditer(text):
        if outside(spans, m.start(), m.end()) and iban_ok(m.group(0)):
            out.append(("iban", m.group(0)))
    for m in SSN_RE.finditer(text):
        if outside(spans, m.start(), m.end()) and ssn_ok(m.group(0)):
            out.append(("ssn", m.group(0)))
    return out


def stray_secret(text):
    for p in SECRET_PATTERNS:
        for m in p.finditer(text):
            if len(set(m.group(0)[-12:])) <= 2:      # placeholder body (xxxx, 0000, ****)
                continue
            return m.group(0)[:40]
    return None


def value_ok(kind, v):
    if kind == "credit-card":
        d = re.sub(r"[ -]", "", v)
        return d.isdigit() and card_brand_ok(d) and luhn_ok(d) and d not in TEST_CARDS
    if kind == "iban":
        return iban_ok(v)
    if kind == "us-ssn":
        return bool(re.fullmatch(r"\d{3}([ -]?)\d{2}\1\d{4}", v)) and ssn_ok(v)
    if kind == "phone":
        n = len(re.sub(r"\D", "", v.replace("%2B", "")))
        return 7 <= n <= 15
    if kind == "email":
        m = EMAIL_RE.fullmatch(v)
        return bool(m) and email_is_real(m.group(1))
    if kind == "private-key":
        if v.startswith("{"):
            return '"d"' in v and '"kty"' in v
        return bool(KEY_BEGIN.match(v)) and bool(KEY_END.search(v[-60:])) and v.endswith("-----")
    if kind == "github-token" and re.fullmatch(r"gh[pousr]_[0-9A-Za-z]{36}", v):
        return b62_crc(v[4:-6]) == v[-6:]
    return True


def check_row(text, label, kind, spans, amb=False):
    if label == "none":
        if spans:
            return "negative with spans"
    elif not spans:
        return "positive without spans"
    last = -1
    for s, e in spans:
        if not (0 <= s < e <= len(text)) or s < last:
            return "bad span"
        v = text[s:e]
        if v != v.strip():
            return "span not trimmed"
        if not value_ok(kind, v):
            return f"invalid {kind} value"
        last = e
    issues = [i for i in stray_pii(text, spans) if not (amb and i[0] in ("card", "email"))]
    if issues:
        return f"stray {issues[0][0]} {issues[0][1]!r}"
    if label == "none":
        sec = stray_secret(text)
        if sec and not amb:
            return f"stray secret {sec!r}"
        if IPV4_RE.search(text):
            return "ipv4 in negative"
        for m in CARD_RE.finditer(text):         # what a lenient card detector would take
            d = re.sub(r"\D", "", m.group(0))
            if card_loose(d) and not amb and (re.fullmatch(r"\d+", m.group(0)) or re.fullmatch(r"\d{4}([ -])\d{4,6}(\1\d{4,5})+", m.group(0))):
                return f"card-like {m.group(0)!r}"
        for m in PHONEISH_RE.finditer(text):
            if 9 <= len(re.sub(r"\D", "", m.group(0))) <= 15 and not amb:
                return f"phone-like {m.group(0)!r}"
    return None


# ===========================================================================
# engine
# ===========================================================================


class Deck:
    def __init__(self, g, items):
        self.g, self.items, self.cur = g, list(items), []

    def draw(self):
        if not self.cur:
            self.cur = self.items[:]
            self.g.r.shuffle(self.cur)
        return self.cur.pop()


def norm(res):
    if isinstance(res, str):
        return res, [], {}
    if len(res) == 2:
        return res[0], [list(x) for x in res[1]], {}
    return res[0], [list(x) for x in res[1]], dict(res[2])


def make_row(text, label, kind, spans, sub, amb):
    r = {"id": "hf-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12], "text": text, "label": label,
         "kind": kind if label != "none" else "none", "spans": sorted(spans), "source": SOURCE, "subkind": sub}
    if amb and label == "none":
        r["ambiguous"] = True
    return r


def token_rows(g, ids, stats):
    """Vendor tokens: each vendor gets its weight in rows; the rendering is the least used one so far
    among those that fit the vendor (its own config files first), so renderings are spread evenly."""
    rows, used = [], collections.Counter()
    order = [v for v in VLIST for _ in range(v.weight)]
    g.r.shuffle(order)
    done_special = collections.defaultdict(set)
    for v in order:
        cands = renders_for(v)
        special = [(n, f) for n, f in cands if n in v.special and n not in done_special[v.rule]]
        if special:
            name, fn = special[0]
            done_special[v.rule].add(name)
        else:
            cands = [(n, f) for n, f in cands if n not in v.special] or cands
            low = min(used[n] for n, _ in cands)
            name, fn = g.ch(sorted({(n, f) for n, f in cands if used[n] == low}, key=lambda x: x[0]))
        used[name] += 1
        for attempt in range(30):
            variant, parts = v.cred(g)
            sparts = [(e, k, S(val) if sec else val, sec) for e, k, val, sec in parts]
            text, spans = mk(*fn(g, v, sparts))
            err = check_row(text, "secret", v.kind, spans)
            rid = "hf-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
            if err or rid in ids:
                stats["token rejected: " + (err or "dup").split(" ")[0]] += 1
                continue
            ids.add(rid)
            rows.append(make_row(text, "secret", v.kind, spans, f"{name}:{v.rule}", False))
            break
        else:
            raise RuntimeError(f"token {v.rule}/{name}: no valid row")
    return rows


def build(seed):
    g = G(seed)
    rows, ids, stats = [], set(), collections.Counter()
    for cls, label, kind, n in CLASS_SPEC:
        if cls == "token":
            rows += token_rows(g, ids, stats)
            continue
        tpls = [t for t in TEMPLATES if t.cls == cls]
        assert tpls, cls
        order = tpls[:]
        g.r.shuffle(order)
        made = i = 0
        exhausted = set()
        while made < n:
            t = order[i % len(order)]
            i += 1
            if t.name in exhausted:
                if len(exhausted) == len(order):
                    raise RuntimeError(f"{cls}: all templates exhausted")
                continue
            for attempt in range(60):
                res = t.fn(g)
                if res is None:
                    continue
                text, spans, extra = norm(res)
                amb = bool(extra.get("amb"))
                sub = t.name + (":" + extra["sub"] if extra.get("sub") else "")
                rid = "hf-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
                if rid in ids:
                    stats["dup"] += 1
                    continue
                err = check_row(text, label, kind, spans, amb)
                if err:
                    stats[f"{cls} rejected: {err.split(' ')[0]} {err.split(' ')[1] if ' ' in err else ''}"] += 1
                    continue
                ids.add(rid)
                rows.append(make_row(text, label, kind, spans, sub, amb))
                made += 1
                break
            else:
                exhausted.add(t.name)
                stats[f"exhausted {t.name}"] += 1
    g.r.shuffle(rows)
    return rows, stats


# ===========================================================================
# output, README, verification
# ===========================================================================

README_BEGIN = "<!-- gen_fresh.py: begin -->"
README_END = "<!-- gen_fresh.py: end -->"


def count_table(rows):
    c = collections.Counter((r["label"], r["kind"]) for r in rows)
    keys = sorted(c, key=lambda x: (["secret", "pii", "none"].index(x[0]), x[1]))
    out = ["| label | kind | rows |", "|---|---|---:|"]
    out += [f"| {lab} | {kind} | {c[(lab, kind)]} |" for lab, kind in keys]
    pos = sum(1 for r in rows if r["label"] != "none")
    amb = sum(1 for r in rows if r.get("ambiguous"))
    out.append(f"| **all** | | {len(rows)} |")
    out.append(f"| positives | | {pos} ({100 * pos / len(rows):.1f}%) |")
    out.append(f"| negatives marked `ambiguous` | | {amb} |")
    return "\n".join(out)


def readme_section(rows, size):
    subs = sorted({r["subkind"].split(":")[0] for r in rows})
    new_vendors = sorted(v.rule for v in VLIST if v.new)
    old_vendors = sorted(v.rule for v in VLIST if not v.new)
    return f"""{README_BEGIN}
## fresh.jsonl (new forms only)

Written by `gen_fresh.py` (Python 3 standard library; deterministic, fixed seed:
`python3 guard/heldout/gen_fresh.py` rewrites a byte-identical file).  It measures
**generalisation**: every one of its {len(subs)} templates is a form that `gen_text.py` and
`gen_keys.py` never use — other tools (Ansible inventories, Chef/Puppet/Salt, pgbouncer
userlists, Redis ACLs, Vagrantfiles, supervisord, hostapd, NetworkManager keyfiles,
cloud-init, kickstart, Kafka JAAS, ...), other file and log formats (HAR, Terraform state,
CloudTrail events, Jupyter notebooks, Postman/Insomnia exports, IDE run configs, ALB /
CloudFront / nginx error logs, Sentry breadcrumbs, Asterisk/FreeSWITCH logs, HL7, EDI 834,
ISO 8583, MT103, EPC QR payloads, psql tables), other languages (Ruby, Go, Rust, C#,
Perl, Elixir, Nix, PowerShell) and program dumps (Python tracebacks with locals, Node.js
error objects, Go `%+v` structs, Rust `dbg!`, Java `toString`, PHP `print_r`).  Token rows
cover {len(new_vendors)} vendors the key generator does not have
({', '.join(new_vendors)}) and {len(old_vendors)} it has, only in new renderings.  Private
keys ({sum(1 for r in rows if r['kind'] == 'private-key')} rows) are generated in pure Python from the seed (RSA, ECDSA P-256 /
secp256k1, Ed25519 as PKCS#1, SEC1, PKCS#8, OpenSSH and JWK) and checked with
`python3 gen_fresh.py --verify-keys` (OpenSSL `pkey -check`, `ssh-keygen -y`).

Same row format and labelling policy as the other files (`source: "{SOURCE}"`, ids
`hf-<sha1(text)[:12]>`, spans are `[start, end)` code-point offsets of each sensitive
value; `subkind` = `template` or `template:detail`, e.g. the vendor, the country and
number format, or the key type; `ambiguous: true` only on negatives a reasonable guard may
still flag, such as documented test cards, publishable keys and site keys, too-short
tokens, `555-01xx` numbers or kube contexts named like `user@cluster.region.eksctl.io`).  Each row is checked while it is generated: span bounds,
Luhn + card-brand length, IBAN mod-97, SSN ranges, phone digit counts, non-reserved
e-mail domains, GitHub token checksums, private-key markers; and no stray sensitive value
outside the spans (real-domain e-mail, valid card/IBAN/SSN), plus, for negatives, no IPv4
address, no `+`-prefixed phone-like number and no token-shaped secret.  Kafka JAAS
`password="…"` lines are `generic-password` (an assignment, not a URL).

**Rule: `fresh.jsonl` is measured only in aggregate (scores, per-kind recall, FP-rate,
per-subkind rates).  It is never read row by row while working on the guard, and no rule,
threshold or allow-list is tuned to its misses.  If it has been looked at, change `SEED`
and regenerate.**

Counts ({size // 1024} KiB):

{count_table(rows)}
{README_END}
"""


def write_readme(path, section):
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if README_BEGIN in old and README_END in old:
        a, b = old.index(README_BEGIN), old.index(README_END) + len(README_END)
        new = old[:a] + section.strip("\n") + old[b:]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def verify_keys():
    """Check every generated key document with OpenSSL / ssh-keygen (needs the tools)."""
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        for i, (kind, k, doc) in enumerate(KF.made):
            p = os.path.join(d, f"k{i}")
            with open(p, "w") as f:
                f.write(doc + "\n")
            os.chmod(p, 0o600)
            if kind.startswith("openssh"):
                r = subprocess.run(["ssh-keygen", "-y", "-f", p], capture_output=True, text=True)
                ok = r.returncode == 0 and r.stdout.split()[1] == ssh_pub_line(k).split()[1]
            else:
                r = subprocess.run(["openssl", "pkey", "-in", p, "-check", "-noout"], capture_output=True, text=True)
                r2 = subprocess.run(["openssl", "pkey", "-in", p, "-pubout", "-outform", "DER"], capture_output=True)
                ok = r.returncode == 0 and r2.stdout == spki_der(k)
            if not ok:
                bad += 1
                print(f"key {i} ({kind}) FAILED: {r.stderr.strip()[:200]}", file=sys.stderr)
    print(f"verified {len(KF.made)} generated keys, {bad} failed", file=sys.stderr)
    return bad == 0


def main():
    global KF, VLIST
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "fresh.jsonl"))
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--verify-keys", action="store_true")
    args = ap.parse_args()

    names = [t.name for t in TEMPLATES]
    assert len(names) == len(set(names)), "duplicate template names"
    KF = KeyFactory(SEED ^ 0x5EED)
    KF.build()
    VLIST = VENDORS()
    rows, stats = build(SEED)
    for r in rows:                                  # re-check what is written
        assert check_row(r["text"], r["label"], r["kind"], r["spans"], r.get("ambiguous", False)) is None, r["id"]
    assert len({r["id"] for r in rows}) == len(rows)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    size = os.path.getsize(args.out)
    print(f"{args.out}: {len(rows)} rows, {size} bytes", file=sys.stderr)
    print("generator retries: " + json.dumps(dict(sorted(stats.items())), ensure_ascii=False), file=sys.stderr)
    print(count_table(rows))
    if not args.no_readme:
        write_readme(os.path.join(HERE, "README.md"), readme_section(rows, size))
    if args.verify_keys and not verify_keys():
        sys.exit(1)


if __name__ == "__main__":
    main()
