#!/usr/bin/env python3
"""Write fresh4.tune.jsonl and fresh4.holdout.jsonl (labelled privacy-guard test rows).

Python 3 standard library only, deterministic (fixed SEED): `python3 gen_fresh4.py`
rewrites both files byte-identically and refreshes the fresh4 section of README.md.

Every row comes from one template of one *family* (the row's `subkind`).  Templates are
written in a small text format (FAMILIES below): `«NAME»` / `«name:arg»` are slots.  UPPER
slots from SENSITIVE are drawn fresh per row and become the row's spans; the others fill in
neutral context (hosts, ids, digests, look-alikes).  Families are split by name: sorted,
even index -> tune, odd -> holdout, so the holdout only holds forms the tune file never shows.
"""
import base64
import hashlib
import json
import os
import random
import re
import string
import struct
import sys
import textwrap
import zlib
from collections import Counter

SEED = "fresh4/2026/seed-4f"
ROWS_PER_FAMILY = 30
SOURCE = "heldout-fresh4"
HERE = os.path.dirname(os.path.abspath(__file__))
FILES = {"tune": "fresh4.tune.jsonl", "holdout": "fresh4.holdout.jsonl"}
BEGIN, END = "<!-- gen_fresh4.py: begin -->", "<!-- gen_fresh4.py: end -->"

UPPER, LOWER, DIG = string.ascii_uppercase, string.ascii_lowercase, string.digits
AN = UPPER + LOWER + DIG
B62 = DIG + UPPER + LOWER
HEXC = "0123456789abcdef"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
SYM = "!%*+-.=?^_~"            # password symbols safe in quotes, XML, INI, key=value, user:pass

def rs(r, alphabet, n):
    return "".join(r.choice(alphabet) for _ in range(n))
def b64(b):
    return base64.b64encode(b).decode()
def b64u(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")
def b62(n, width):
    s = ""
    while n:
        n, d = divmod(n, 62)
        s = B62[d] + s
    return s.rjust(width, "0")

# ----------------------------------------------------------------------------- checksums
def luhn_ok(d):
    total = 0
    for i, ch in enumerate(reversed(d)):
        x = int(ch)
        if i % 2:
            x = x * 2 - 9 if x > 4 else x * 2
        total += x
    return total % 10 == 0

def luhn_digit(partial):
    return next(c for c in DIG if luhn_ok(partial + c))

IBAN_SPEC = {  # BBAN layout: a = letters, n = digits, c = upper alnum
    "DE": "n18", "FR": "n10c11n2", "GB": "a4n14", "ES": "n20", "IT": "a1n10c12", "NL": "a4n10",
    "BE": "n12", "CH": "n5c12", "AT": "n16", "PL": "n24", "SA": "n2c18", "AE": "n19", "TR": "n6c16",
    "BR": "n23a1c1", "PK": "a4c16", "EG": "n25", "SE": "n20", "NO": "n11", "DK": "n14", "IE": "a4n14",
    "PT": "n21", "RO": "a4c16", "HU": "n24", "CZ": "n20", "GR": "n7c16", "FI": "n14", "LU": "n3c13",
    "QA": "a4c21", "KW": "a4c22", "JO": "a4n4c18"}
IBAN_LEN = {cc: 4 + sum(int(n) for n in re.findall(r"\d+", s)) for cc, s in IBAN_SPEC.items()}
IBAN_LEN.update(dict(MT=31, CY=28, HR=21, SI=19, SK=24, BG=22, LT=20, LV=21, EE=20, IS=26, IL=23,
                     LB=28, KZ=20, MU=30, TN=24, UA=29, GE=22, AZ=28, BH=22, CR=22, DO=28, GT=28,
                     MD=24, MC=27, SM=27, LI=21, AD=24, AL=28, BA=20, ME=22, MK=19, RS=22, XK=20,
                     PS=29, IQ=23, VA=22, SC=31, LC=32, BY=28, SV=28, TL=23, VG=24, FO=18, GL=18,
                     GI=23, MR=27))

def iban_num(s):
    return int("".join(str(int(ch, 36)) for ch in s))
def iban_valid(s):
    s = s.replace(" ", "")
    return len(s) == IBAN_LEN.get(s[:2]) and s[2:4].isdigit() and iban_num(s[4:] + s[:4]) % 97 == 1
def ssn_valid(a, g, s):
    return a not in ("000", "666") and a < "900" and g != "00" and s != "0000"

# ----------------------------------------------------------------------------- word lists
def W(s):
    return s.split()

WORDS = W("amber anchor apple arctic autumn badger bamboo beacon birch blossom bramble breeze cactus canyon cedar "
           "cherry cobalt comet copper coral cosmic crimson crystal delta desert dragon drift eagle ember falcon fern"
           " fjord forest fossil galaxy garnet glacier granite harbor hazel heron horizon indigo island jasper jungle"
           " kettle lagoon lantern lemon lilac lotus lunar maple marble meadow mirror nebula nectar oasis orbit "
           "orchid otter pebble pepper pine planet plum prism quartz quill raven reef river rocket saffron sage "
           "salmon sapphire shadow silver sparrow spruce storm summit sunset thistle thunder tiger timber topaz tulip"
           " tundra velvet violet walnut willow winter zephyr")
FIRST = W("Priya Wei Oluwaseun Mateus Aiko Ahmed Sofia Liam Fatima Dmitri Chen Amara Lucas Mei Rahul Zeynep Kofi "
           "Elena Hiroshi Ana Tomasz Nadia Diego Ngozi Arjun Hana Omar Ingrid Thanh Carlos Leila Jonas Chiara Ravi "
           "Yuki Marta Emeka Sven Aisha Pedro")
LAST = W("Sharma Zhang Adeyemi Oliveira Tanaka Hassan Rossi Murphy Khan Ivanov Li Okafor Silva Wong Patel Yilmaz "
          "Mensah Popescu Sato Costa Nowak Haddad Garcia Eze Reddy Kim Farouk Berg Nguyen Mendoza Rahman Weber "
          "Bianchi Iyer Suzuki Kowalska Obi Lindqvist Bello Santos")
LISTS = {
    "user": W("admin deploy svc_app etl_loader reporting app_rw backup ops dbadmin ci_runner monitor replicator "
               "svc-sync integration batch webapp analytics sa_build"),
    "host": W("db01 pg-primary mysql-prod-2 redis-cache-1 mq01 ldap-01 fs02 nas-backup vcenter01 erp-db kafka-3 "
               "mongo-rs0-1 es-hot-1 sql2019 ora-fin01 hana-prd files01 jump01 build-07 web-03 api-gw-2 wms-db "
               "crm-sql lab-nas"),
    "corp": W("northwind-labs.io kestrelhq.com brightpath.de tidewater.co.uk orbital-freight.com lumenpay.in "
               "sabiatech.com.br nakamura-shoji.co.jp fjordline-data.no atlasmed.fr zenith-retail.mx "
               "karoo-energy.co.za pelican-air.ph sunda-logistik.co.id anatolia-tekstil.com.tr"),
    "db": W("orders billing inventory crm analytics payroll ledger catalog accounts events warehouse hr"),
    "app": W("orion atlas ledgerly shipyard beacon pulse harbor quill nimbus kiosk fieldops relay"),
    "svc": W("billing-api sync-worker report-gen mailer scheduler ingest gateway notifier"),
    "env": W("prod staging dev qa"),
    "region": W("eu-west-1 us-east-1 ap-south-1 sa-east-1 eu-central-1 ap-northeast-1 us-west-2"),
    "ssid": ["Northwind-Guest", "KESTREL-CORP", "Cafe Lumen", "Atlas_5G", "HQ-Visitors", "Lab-IoT",
             "FamilyNet", "Office-2F", "Harbor Lounge"],
    "nick": W("mkoval priya_s dtran zeynep oluwa jlin bram kaito sofia_r ahmed_k"),
    "room": W("Fjord Kilimanjaro Orion B-204 Sakura Atlas Baobab Tundra"),
    "org": W("northwind-labs kestrel-hq brightpath tidewater-dev orbital-oss lumenpay"),
    "cluster": W("prod-euw1 staging k3s-lab aks-core gke-data eks-payments"),
    "envsec": W("DB_PASSWORD SMTP_PASSWORD API_SECRET JWT_SECRET REDIS_PASSWORD LDAP_BIND_PASSWORD SESSION_SECRET "
                 "ADMIN_PASSWORD WEBHOOK_SIGNING_SECRET ENCRYPTION_KEY"),
    "secvar": W("SIGNING_SECRET HMAC_KEY ENCRYPTION_KEY SESSION_SECRET WEBHOOK_SECRET APP_KEY JWT_SECRET "
                 "CLIENT_SECRET"),
    "secname": W("db-password smtp-password stripe-secret-key jwt-signing-key redis-auth ldap-bind "
                  "oauth-client-secret api-token session-secret"),
    "kv": W("kv-prod-weu corp-secrets-01 app-kv-dev fin-kv"),
    "proj": W("acme-prod-4821 orion-staging data-platform-prd shared-svc-113"),
    "kvpath": W("secret/data/prod/db kv/data/apps/billing secret/data/ci/deploy kv/data/team-a/smtp"),
    "scope": W("prod-kv analytics etl shared"),
    "port": W("5432 3306 6379 8080 8443 9092 27017 5672 1433"),
    "city": W("Lagos Pune Recife Osaka Izmir Hanoi Cebu Leeds Lyon Dresden Monterrey Dhaka Surabaya Alexandria Kazan"
               " Karachi"),
    "team": ["Arsenal", "Flamengo", "Galatasaray", "Kaizer Chiefs", "Urawa Reds", "Porto", "Ajax",
             "River Plate", "Al Ahly", "Bayern", "Celtic", "Boca Juniors"],
    "amount": ["€1,249.50", "₹4,500", "$89.99", "R$ 250,00", "₦4.2m", "£730", "¥128,000", "TRY 3.450",
               "€18", "$2,100", "₱15,999", "৳2,750"],
}
CTX_SLOTS = {"user", "host", "corp", "db", "app", "svc", "env", "region", "ssid", "nick", "org", "cluster"}
RESERVED_MAIL = ["example.com", "example.org", "example.net", "mail.example", "corp.test",
                 "staging.example.com", "ci.test"]
MAIL_DOMAINS = W("gmail.com outlook.com yahoo.com hotmail.co.uk proton.me icloud.com gmx.de web.de mail.ru yandex.ru"
                  " qq.com 163.com naver.com yahoo.co.jp orange.fr libero.it uol.com.br rediffmail.com zoho.com "
                  "fastmail.fm") + LISTS["corp"]

# ----------------------------------------------------------------------------- passwords & secrets
def _has_mix(s):
    return any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s)
def pw_strong(r):
    while True:
        s = r.choice(AN) + rs(r, AN * 3 + SYM, r.randint(11, 25))
        if _has_mix(s):
            return s

def pw_human(r):
    w = r.choice(WORDS + [n.lower() for n in FIRST])
    return r.choice([w.capitalize() + str(r.randint(1970, 2026)) + r.choice("!.#?*"),
                     w + str(r.randint(10, 99)),
                     w.capitalize() + r.choice("#@!") + str(r.randint(1000, 9999)),
                     r.choice(WORDS).capitalize() + w.capitalize() + str(r.randint(1, 99)) + "!",
                     "i" + r.choice(["love", "heart"]) + w + str(r.randint(1, 31))])

LEET = {"a": "@4", "e": "3", "i": "1!", "o": "0", "s": "5", "t": "7", "l": "1"}

def pw_leet(r):
    w = "".join(r.sample(WORDS, 2))
    out = w[0].upper() + "".join(r.choice(LEET[c]) if c in LEET and r.random() < 0.7 else c for c in w[1:])
    return out + r.choice(["", "!", "#1", str(r.randint(0, 99))])
def pw_phrase(r, spaces):
    ws = r.sample(WORDS, r.randint(3, 5))
    sep = r.choice(["-", ".", "_", "+", "camel"] + ([" ", " "] if spaces else []))
    s = "".join(w.capitalize() for w in ws) if sep == "camel" else sep.join(ws)
    return s + r.choice(["", "", str(r.randint(1, 99)), "!"])

def password(r, slot):
    allowed = {"PW": set(AN + SYM + "@!#"), "PWS": set(AN + SYM + "@!# "), "PWU": set(AN + "-._~")}[slot]
    while True:
        f = r.choice([pw_strong, pw_strong, pw_human, pw_leet, lambda x: pw_phrase(x, slot == "PWS")])
        s = f(r)
        if set(s) <= allowed and s[0].isalnum() and len(s) >= 8:
            return s

def secret(r, fmt=None):
    fmt = fmt or r.choice(["hex32", "hex40", "hex64", "b64", "b64u", "b32", "an", "sym"])
    kind, n = re.fullmatch(r"(hex|HEX|b64u|b64|an|b32|sym|azpw)(\d*)", fmt).groups()
    n = int(n or 0)
    while True:
        s = {"hex": lambda: rs(r, HEXC, n or 64), "HEX": lambda: rs(r, HEXC.upper(), n or 64),
             "b64": lambda: b64(r.randbytes(n or r.choice([24, 32, 48, 64]))),
             "b64u": lambda: b64u(r.randbytes(n or r.choice([32, 48]))),
             "b32": lambda: rs(r, UPPER + "234567", n or r.choice([32, 52])),
             "sym": lambda: rs(r, LOWER + DIG + "!@#%^&*(-_=+)", 50),
             "azpw": lambda: rs(r, AN, 3) + "8Q~" + rs(r, AN + "_.~-", 34),
             "an": lambda: rs(r, AN, n or r.choice([24, 32, 40, 48]))}[kind]()
        if kind != "an" or _has_mix(s):
            return s

# ----------------------------------------------------------------------------- vendor tokens
def ghtok(r, prefix):
    body = rs(r, AN, 30)
    return prefix + body + b62(zlib.crc32(body.encode()) & 0xFFFFFFFF, 6)
def _stripe(r):
    return r.choice(["sk_live_", "rk_live_", "sk_test_"]) + "51" + rs(r, AN, r.choice([30, 96]))

W_ = AN + "_-"
VENDORS = [  # rule, kind, env names, generator, regex (for the stray check)
    ("openai", "openai-key", ["OPENAI_API_KEY"], lambda r: r.choice([
        lambda: f"sk-proj-{rs(r, W_, 74)}T3BlbkFJ{rs(r, W_, 74)}", lambda: f"sk-{rs(r, AN, 20)}T3BlbkFJ{rs(r, AN, 20)}",
        lambda: f"sk-svcacct-{rs(r, W_, 58)}T3BlbkFJ{rs(r, W_, 58)}"])(), r"sk-(?:proj-|svcacct-)?[\w-]{20,}T3BlbkFJ[\w-]{20,}"),
    ("github", "github-token", ["GITHUB_TOKEN", "GH_TOKEN"], lambda r: ghtok(r, r.choice(["ghp_", "gho_", "ghs_", "ghu_"])),
     r"gh[pousr]_[A-Za-z0-9]{36}"),
    ("gitlab", "gitlab-token", ["GITLAB_TOKEN", "GL_TOKEN"], lambda r: r.choice(["glpat-", "glrt-", "gldt-"]) + rs(r, W_, 20),
     r"gl(?:pat|rt|dt|ptt)-[\w-]{20,}"),
    ("slack", "slack-token", ["SLACK_BOT_TOKEN", "SLACK_TOKEN"], lambda r: r.choice([
        lambda: f"xoxb-{rs(r, DIG, 12)}-{rs(r, DIG, 13)}-{rs(r, AN, 24)}",
        lambda: f"xoxp-{rs(r, DIG, 12)}-{rs(r, DIG, 12)}-{rs(r, DIG, 13)}-{rs(r, HEXC, 32)}",
        lambda: f"xapp-1-A{rs(r, UPPER + DIG, 10)}-{rs(r, DIG, 13)}-{rs(r, HEXC, 64)}"])(),
     r"xox[abpr]-[0-9A-Za-z-]{20,}|xapp-\d-[A-Z0-9]+-\d+-[a-f0-9]{64}"),
    ("slack-webhook", "slack-webhook", ["SLACK_WEBHOOK_URL"],
     lambda r: f"https://hooks.slack.com/services/T{rs(r, UPPER + DIG, 10)}/B{rs(r, UPPER + DIG, 10)}/{rs(r, AN, 24)}",
     r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"),
    ("stripe", "stripe-key", ["STRIPE_SECRET_KEY", "STRIPE_API_KEY"], _stripe, r"[sr]k_(?:live|test)_[A-Za-z0-9]{24,}"),
    ("google-api-key", "google-api-key", ["GOOGLE_API_KEY", "GEMINI_API_KEY"], lambda r: "AIza" + rs(r, W_, 35),
     r"AIza[\w-]{35}"),
    ("aws", "aws-access-key", ["AWS_ACCESS_KEY_ID"], lambda r: r.choice(["AKIA", "ASIA"]) + rs(r, UPPER + "234567", 16),
     r"(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}"),
    ("anthropic", "api-key", ["ANTHROPIC_API_KEY"], lambda r: "sk-ant-api03-" + rs(r, W_, 93) + "AA", r"sk-ant-(?:api|admin)\d\d-[\w-]{80,}"),
    ("huggingface", "api-key", ["HF_TOKEN"], lambda r: "hf_" + rs(r, UPPER + LOWER, 34), r"hf_[A-Za-z]{34}"),
    ("groq", "api-key", ["GROQ_API_KEY"], lambda r: "gsk_" + rs(r, AN, 52), r"gsk_[A-Za-z0-9]{52}"),
    ("replicate", "api-key", ["REPLICATE_API_TOKEN"], lambda r: "r8_" + rs(r, AN, 37), r"r8_[A-Za-z0-9]{37}"),
    ("perplexity", "api-key", ["PERPLEXITY_API_KEY"], lambda r: "pplx-" + rs(r, AN, 48), r"pplx-[A-Za-z0-9]{48}"),
    ("openrouter", "api-key", ["OPENROUTER_API_KEY"], lambda r: "sk-or-v1-" + rs(r, HEXC, 64), r"sk-or-v1-[a-f0-9]{64}"),
    ("xai", "api-key", ["XAI_API_KEY"], lambda r: "xai-" + rs(r, AN, 80), r"xai-[A-Za-z0-9]{80}"),
    ("digitalocean", "api-key", ["DIGITALOCEAN_ACCESS_TOKEN"], lambda r: "dop_v1_" + rs(r, HEXC, 64), r"do[opr]_v1_[a-f0-9]{64}"),
    ("npm", "api-key", ["NPM_TOKEN", "NODE_AUTH_TOKEN"], lambda r: ghtok(r, "npm_"), r"npm_[A-Za-z0-9]{36}"),
    ("pypi", "api-key", ["PYPI_API_TOKEN"], lambda r: "pypi-AgEIcHlwaS5vcmc" + b64u(r.randbytes(r.choice([96, 120]))),
     r"pypi-AgEIcHlwaS5vcmc[\w-]{50,}"),
    ("dockerhub", "api-key", ["DOCKERHUB_TOKEN"], lambda r: "dckr_pat_" + rs(r, W_, 27), r"dckr_pat_[\w-]{27}"),
    ("terraform-cloud", "api-key", ["TF_TOKEN_app_terraform_io"], lambda r: rs(r, AN, 14) + ".atlasv1." + rs(r, AN, 67),
     r"[A-Za-z0-9]{14}\.atlasv1\.[\w=-]{60,70}"),
    ("pulumi", "api-key", ["PULUMI_ACCESS_TOKEN"], lambda r: "pul-" + rs(r, HEXC, 40), r"pul-[a-f0-9]{40}"),
    ("buildkite", "api-key", ["BUILDKITE_API_TOKEN"], lambda r: "bkua_" + rs(r, HEXC, 40), r"bkua_[a-f0-9]{40}"),
    ("circleci", "api-key", ["CIRCLECI_TOKEN"], lambda r: f"CCIPAT_{rs(r, AN, 22)}_{rs(r, HEXC, 40)}", r"CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40}"),
    ("doppler", "api-key", ["DOPPLER_TOKEN"], lambda r: "dp.pt." + rs(r, AN, 43), r"dp\.(?:pt|st|ct|sa|scim)\.[A-Za-z0-9]{40,44}"),
    ("vault", "api-key", ["VAULT_TOKEN"], lambda r: "hvs." + rs(r, W_, r.choice([24, 91])), r"hvs\.[\w-]{24,}"),
    ("flyio", "api-key", ["FLY_API_TOKEN"], lambda r: "fo1_" + rs(r, W_, 43), r"fo1_[\w-]{39,}"),
    ("planetscale", "api-key", ["PLANETSCALE_SERVICE_TOKEN"], lambda r: "pscale_tkn_" + rs(r, W_, 43), r"pscale_tkn_[\w.-]{32,64}"),
    ("supabase", "api-key", ["SUPABASE_ACCESS_TOKEN"], lambda r: "sbp_" + rs(r, HEXC, 40), r"sbp_[a-f0-9]{40}"),
    ("sendgrid", "api-key", ["SENDGRID_API_KEY"], lambda r: f"SG.{rs(r, W_, 22)}.{rs(r, W_, 43)}", r"SG\.[\w-]{22}\.[\w-]{43}"),
    ("twilio", "api-key", ["TWILIO_API_KEY"], lambda r: "SK" + rs(r, HEXC, 32), r"SK[0-9a-f]{32}"),
    ("mailgun", "api-key", ["MAILGUN_API_KEY"], lambda r: "key-" + rs(r, HEXC, 32), r"key-[0-9a-f]{32}"),
    ("telegram", "api-key", ["TELEGRAM_BOT_TOKEN"], lambda r: f"{r.randint(10**8, 10**10 - 1)}:AA{rs(r, W_, 33)}", r"\d{8,10}:AA[\w-]{33}"),
    ("discord-webhook", "api-key", ["DISCORD_WEBHOOK_URL"],
     lambda r: f"https://discord.com/api/webhooks/{rs(r, DIG, 19)}/{rs(r, W_, 68)}", r"discord(?:app)?\.com/api/webhooks/\d+/[\w-]{60,}"),
    ("newrelic", "api-key", ["NEW_RELIC_API_KEY"], lambda r: "NRAK-" + rs(r, UPPER + DIG, 27), r"NRAK-[A-Z0-9]{27}"),
    ("grafana", "api-key", ["GRAFANA_SERVICE_ACCOUNT_TOKEN"], lambda r: f"glsa_{rs(r, AN, 32)}_{rs(r, HEXC, 8)}",
     r"glsa_[A-Za-z0-9]{32}_[a-f0-9]{8}"),
    ("sentry", "api-key", ["SENTRY_AUTH_TOKEN"], lambda r: "sntryu_" + rs(r, HEXC, 64), r"sntryu_[a-f0-9]{64}"),
    ("square", "api-key", ["SQUARE_ACCESS_TOKEN"], lambda r: "EAAA" + rs(r, W_, 60), r"EAAA[\w-]{60}"),
    ("shopify", "api-key", ["SHOPIFY_ACCESS_TOKEN"], lambda r: r.choice(["shpat_", "shpss_"]) + rs(r, HEXC, 32),
     r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"),
    ("linear", "api-key", ["LINEAR_API_KEY"], lambda r: "lin_api_" + rs(r, AN, 40), r"lin_api_[A-Za-z0-9]{40}"),
    ("notion", "api-key", ["NOTION_TOKEN"], lambda r: "ntn_" + rs(r, AN, 46), r"ntn_[A-Za-z0-9]{46}"),
    ("postman", "api-key", ["POSTMAN_API_KEY"], lambda r: f"PMAK-{rs(r, HEXC, 24)}-{rs(r, HEXC, 34)}", r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}"),
]
VENDOR_RX = {v[0]: re.compile(v[4]) for v in VENDORS}
TOKEN_RX = re.compile("|".join(v[4] for v in VENDORS) + r"|github_pat_\w{60,}|glc_[A-Za-z0-9+/]{40,}")
# per-row kind rotation of the vtok families: identical in every family -> same kind mix per file
ROTATION = ["openai-key", "github-token", "gitlab-token", "slack-token", "slack-webhook", "stripe-key",
            "google-api-key", "aws-access-key", "api-key", "api-key", "api-key", "api-key"]

def pick_vendor(r, ctx):
    if "vendor" not in ctx:
        kind = ROTATION[ctx["i"] % len(ROTATION)]
        v = r.choice([v for v in VENDORS if v[1] == kind])
        ctx["vendor"], ctx["tokenv"] = v, r.choice(v[2])
    return ctx["vendor"]

# ----------------------------------------------------------------------------- JWT, keys, certificates
def jwt(r, ctx):
    alg = r.choice(["HS256", "RS256", "ES256"])
    hdr = {"alg": alg, "typ": "JWT"} if alg == "HS256" else {"alg": alg, "kid": rs(r, HEXC, 16), "typ": "JWT"}
    now = r.randint(1_700_000_000, 1_780_000_000)
    pl = {"sub": r.choice([str(r.randint(10_000, 99_999_999)), uuid(r)]), "iat": now,
          "exp": now + r.choice([900, 3600, 86400]), "iss": f"https://auth.{ctx_get(r, ctx, 'corp')}/",
          r.choice(["scope", "role", "tenant"]): r.choice(["orders:read", "admin", "t-" + str(r.randint(1, 999))])}
    sig = r.randbytes({"HS256": 32, "RS256": 256, "ES256": 64}[alg])
    enc = lambda o: b64u(json.dumps(o, separators=(",", ":")).encode())
    return f"{enc(hdr)}.{enc(pl)}.{b64u(sig)}"

def der_len(n):
    if n < 128:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b

def tlv(tag, body):
    return bytes([tag]) + der_len(len(body)) + body
def dint(b):
    b = b.lstrip(b"\0") or b"\0"
    return tlv(2, b"\0" + b if b[0] & 0x80 else b)
def seq(*xs):
    return tlv(0x30, b"".join(xs))
def pem(label, der, width=64):
    s = b64(der)
    return f"-----BEGIN {label}-----\n" + "\n".join(s[i:i + width] for i in range(0, len(s), width)) + f"\n-----END {label}-----"
def big(r, n):
    return bytes([r.randint(0xC0, 0xFF)]) + r.randbytes(n - 1)

OID_RSA = tlv(6, bytes.fromhex("2a864886f70d010101"))

def rsa_pkcs1(r, bits):
    k = bits // 8
    return seq(dint(b"\0"), dint(big(r, k)), dint(b"\x01\x00\x01"), dint(big(r, k)),
               *[dint(big(r, k // 2)) for _ in range(5)])

def sstr(b):
    return struct.pack(">I", len(b)) + b
def private_key(r):
    t = r.choice(["rsa1", "rsa8", "ec", "ed8", "ossh"])
    if t == "rsa1":
        return pem("RSA PRIVATE KEY", rsa_pkcs1(r, r.choice([2048, 3072])))
    if t == "rsa8":
        return pem("PRIVATE KEY", seq(dint(b"\0"), seq(OID_RSA, tlv(5, b"")), tlv(4, rsa_pkcs1(r, 2048))))
    if t == "ec":
        return pem("EC PRIVATE KEY", seq(dint(b"\x01"), tlv(4, r.randbytes(32)),
                                         tlv(0xA0, tlv(6, bytes.fromhex("2a8648ce3d030107"))),
                                         tlv(0xA1, tlv(3, b"\0\x04" + r.randbytes(64)))))
    if t == "ed8":
        return pem("PRIVATE KEY", bytes.fromhex("302e020100300506032b657004220420") + r.randbytes(32))
    pk, sk, chk = r.randbytes(32), r.randbytes(32), r.randbytes(4)
    pub = sstr(b"ssh-ed25519") + sstr(pk)
    priv = chk + chk + pub + sstr(sk + pk) + sstr(f"{r.choice(LISTS['user'])}@{r.choice(LISTS['host'])}".encode())
    priv += bytes(range(1, 1 + (-len(priv)) % 8))
    blob = b"openssh-key-v1\0" + sstr(b"none") + sstr(b"none") + sstr(b"") + struct.pack(">I", 1) + sstr(pub) + sstr(priv)
    return pem("OPENSSH PRIVATE KEY", blob, 70)

def cert_der(r):
    tbs = seq(tlv(0xA0, dint(b"\x02")), dint(r.randbytes(16)), r.randbytes(r.randint(500, 800)))
    return seq(tbs, seq(tlv(6, bytes.fromhex("2a864886f70d01010b")), tlv(5, b"")), tlv(3, b"\0" + r.randbytes(256)))
def png_b64(r):
    w, h = r.randint(8, 64), r.randint(8, 64)
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b64(head + r.randbytes(4) + struct.pack(">I", 40) + b"IDAT" + r.randbytes(r.randint(40, 160)))

# ----------------------------------------------------------------------------- PII generators
US_AREAS = W("201 202 206 212 213 214 215 303 305 312 404 415 503 512 602 617 646 702 713 718 720 773 801 817 832 "
              "858 917 919 971")

def _ph(cc, groups, nat, sep=" "):
    return {"intl": f"+{cc} " + sep.join(groups), "e164": f"+{cc}" + "".join(groups), "nat": nat}
def _us(r):
    a, l = r.choice(US_AREAS), rs(r, DIG, 4)
    x = r.choice([x for x in (str(r.randint(2, 9)) + rs(r, DIG, 2) for _ in range(3)) if x[1:] != "11" and x != "555"] or ["734"])
    return _ph("1", [a, x, l], r.choice([f"({a}) {x}-{l}", f"{a}-{x}-{l}", f"{a}.{x}.{l}"]), "-")
def _gb(r):
    a = "7" + r.choice("123456789") + rs(r, DIG, 2)
    a = "7911" if a == "7700" else a
    b = rs(r, DIG, 6)
    return _ph("44", [a, b], f"0{a} {b}")

def _d(r, n):
    return rs(r, DIG, n)

PHONES = {
    "US": _us, "GB": _gb,
    "IN": lambda r: (lambda a, b: _ph("91", [a, b], r.choice([f"0{a} {b}", f"{a} {b}", f"{a}-{b}"])))(r.choice("6789") + _d(r, 4), _d(r, 5)),
    "CN": lambda r: (lambda a, b, c: _ph("86", [a, b, c], r.choice([f"{a} {b} {c}", f"{a}-{b}-{c}"])))("1" + r.choice("3456789") + _d(r, 1), _d(r, 4), _d(r, 4)),
    "ID": lambda r: (lambda a, b, c: _ph("62", [a, b, c], f"0{a}-{b}-{c}", "-"))("8" + r.choice("12357") + _d(r, 1), _d(r, 4), _d(r, r.choice([3, 4]))),
    "PK": lambda r: (lambda a, b: _ph("92", [a, b], r.choice([f"0{a}-{b}", f"0{a} {b}"])))("3" + r.choice("01234") + _d(r, 1), _d(r, 7)),
    "NG": lambda r: (lambda a, b, c: _ph("234", [a, b, c], f"0{a} {b} {c}"))(r.choice("789") + r.choice("01") + _d(r, 1), _d(r, 3), _d(r, 4)),
    "BR": lambda r: (lambda a, b, c: {"intl": f"+55 {a} {b}-{c}", "e164": f"+55{a}{b}{c}", "nat": f"({a}) {b}-{c}"})(r.choice(W("11 21 31 41 51 61 71 81 85")), "9" + _d(r, 4), _d(r, 4)),
    "BD": lambda r: (lambda a, b: _ph("880", [a, b], f"0{a}-{b}", "-"))("1" + r.choice("3456789") + _d(r, 2), _d(r, 6)),
    "RU": lambda r: (lambda a, b, c, d: {"intl": f"+7 {a} {b}-{c}-{d}", "e164": f"+7{a}{b}{c}{d}", "nat": f"8 ({a}) {b}-{c}-{d}"})("9" + _d(r, 2), _d(r, 3), _d(r, 2), _d(r, 2)),
    "MX": lambda r: (lambda a, b, c: _ph("52", [a, b, c], f"{a} {b} {c}"))(r.choice(["55", "33", "81"]), _d(r, 4), _d(r, 4)),
    "JP": lambda r: (lambda a, b, c: _ph("81", [a, b, c], f"0{a}-{b}-{c}", "-"))(r.choice("789") + "0", _d(r, 4), _d(r, 4)),
    "PH": lambda r: (lambda a, b, c: _ph("63", [a, b, c], f"0{a} {b} {c}"))("9" + _d(r, 2), _d(r, 3), _d(r, 4)),
    "EG": lambda r: (lambda a, b, c: _ph("20", [a, b, c], f"0{a} {b} {c}"))("1" + r.choice("0125"), _d(r, 4), _d(r, 4)),
    "VN": lambda r: (lambda a, b, c, d: _ph("84", [a, b, c, d], f"0{a} {b} {c} {d}"))(r.choice("39") + _d(r, 1), _d(r, 3), _d(r, 2), _d(r, 2)),
    "DE": lambda r: (lambda a, b: _ph("49", [a, b], f"0{a} {b}"))(r.choice(["151", "152", "157", "159", "160", "162", "170", "172", "176"]), _d(r, r.choice([7, 8]))),
    "FR": lambda r: (lambda a, g: _ph("33", [a] + g, f"0{a} " + " ".join(g)))(r.choice("67"), [_d(r, 2) for _ in range(4)]),
    "TR": lambda r: (lambda a, b, c, d: _ph("90", [a, b, c, d], f"0{a} {b} {c} {d}"))("5" + r.choice("012345") + _d(r, 1), _d(r, 3), _d(r, 2), _d(r, 2)),
    "ET": lambda r: (lambda a, b, c: _ph("251", [a, b, c], f"0{a} {b} {c}"))("9" + _d(r, 1), _d(r, 3), _d(r, 4)),
}

def phone(r, fmt=None):
    forms = PHONES[r.choice(sorted(PHONES))](r)
    return forms[fmt or r.choice(["intl", "intl", "nat", "nat", "e164"])]
def person(r, ctx):
    if "first" not in ctx:
        ctx["first"], ctx["last"] = r.choice(FIRST), r.choice(LAST)
        f, l = ctx["first"].lower(), ctx["last"].lower()
        ctx["luser"] = r.choice([f[0] + l, f + "." + l, f + l[0], l + f[0]])
    return ctx

def email(r):
    f, l = r.choice(FIRST).lower(), r.choice(LAST).lower()
    local = r.choice([f"{f}.{l}", f"{f[0]}{l}", f"{f}_{l}{r.randint(1, 99)}", f"{f}{r.randint(70, 99)}",
                      f"{l}.{f[0]}", f"{f}+{r.choice(['shop', 'news', 'work'])}"])
    return f"{local}@{r.choice(MAIL_DOMAINS)}"

TEST_CARDS = {"4242424242424242", "4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"}
BRANDS = [("4", 16), ("51", 16), ("53", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15),
          ("6011", 16), ("65", 16), ("3530", 16), ("3566", 16), ("62", 16), ("62", 19), ("36", 14)]

def card_digits(r, valid=True):
    while True:
        pre, n = r.choice(BRANDS)
        body = pre + rs(r, DIG, n - len(pre) - 1)
        c = luhn_digit(body)
        d = body + (c if valid else str((int(c) + r.randint(1, 9)) % 10))
        if d not in TEST_CARDS:
            return d

def card_fmt(r, d):
    sep = r.choice([" ", " ", "-", ""])
    cuts = {15: [0, 4, 10, 15], 14: [0, 4, 10, 14], 19: [0, 4, 8, 12, 16, 19]}.get(len(d), [0, 4, 8, 12, 16])
    return sep.join(d[a:b] for a, b in zip(cuts, cuts[1:]))

def iban_raw(r, valid=True):
    cc = r.choice(sorted(IBAN_SPEC))
    bban = "".join(rs(r, {"a": UPPER, "n": DIG, "c": UPPER + DIG}[k], int(n)) for k, n in re.findall(r"([anc])(\d+)", IBAN_SPEC[cc]))
    chk = 98 - iban_num(bban + cc + "00") % 97
    if not valid:
        chk = r.choice([x for x in range(2, 99) if x != chk])
    s = f"{cc}{chk:02d}{bban}"
    assert iban_valid(s) == valid, s
    return s

def iban_fmt(s):
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))
def ssn(r, valid=True):
    while True:
        a, g, s = f"{r.randint(1, 899):03d}", f"{r.randint(1, 99):02d}", f"{r.randint(1, 9999):04d}"
        if not valid:
            k = r.randint(0, 4)
            a = ["000", "666", str(r.randint(900, 999)), a, a][k]
            g, s = ("00" if k == 3 else g), ("0000" if k == 4 else s)
        if ssn_valid(a, g, s) == valid:
            return f"{a}-{g}-{s}"

def uuid(r):
    h = rs(r, HEXC, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{r.choice('89ab')}{h[17:20]}-{h[20:]}"
def isbn13(r):
    d = r.choice(["978", "979"]) + rs(r, DIG, 9)
    return d + str((10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(d)) % 10) % 10)
def orcid(r):
    base = "0000000" + r.choice("1239") + rs(r, DIG, 7)
    t = 0
    for c in base:
        t = (t + int(c)) * 2
    res = (12 - t % 11) % 11
    s = base + ("X" if res == 10 else str(res))
    return "-".join(s[i:i + 4] for i in range(0, 16, 4))

def aba(r):
    while True:
        d = rs(r, DIG, 9)
        if d[0] in "0123" and (3 * sum(map(int, d[0::3])) + 7 * sum(map(int, d[1::3])) + sum(map(int, d[2::3]))) % 10 == 0:
            return d

def bic(r):
    return rs(r, UPPER, 4) + r.choice(["DE", "FR", "GB", "ES", "IT", "NL", "IN", "BR"]) + rs(r, UPPER + DIG, 2) + r.choice(["", "XXX"])
def ts(r):
    return (r.choice([2024, 2025, 2026]), r.randint(1, 12), r.randint(1, 28), r.randint(0, 23), r.randint(0, 59), r.randint(0, 59))

FAKE_AU = ["0491 570 006", "0491 570 156", "0491 570 157", "0491 570 158", "0491 570 159", "0491 570 110"]
MONTHS = W("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec")

def _t(fmt):
    def f(r):
        y, mo, d, h, mi, s = ts(r)
        return fmt.format(y=y, mo=mo, d=d, h=h, mi=mi, s=s, ms=r.randint(0, 999), mon=MONTHS[mo - 1])
    return f

def _num(k):
    return lambda r: str(r.randint(10 ** (k - 1), 10 ** k - 1))
def _cert_pem(r):
    return pem("CERTIFICATE", cert_der(r))

SIMPLE = {
    "n": lambda r: str(r.randint(1, 9)), "n2": _num(2), "n3": _num(3), "n4": _num(4), "n5": _num(5),
    "n6": _num(6), "n7": _num(7), "n8": _num(8), "pid": lambda r: str(r.randint(1000, 65000)),
    "mi": lambda r: f"{r.randint(0, 59):02d}", "mon": lambda r: r.choice(MONTHS), "dd": lambda r: str(r.randint(1, 28)),
    "mm": lambda r: f"{r.randint(1, 12):02d}", "yy": lambda r: str(r.randint(26, 31)),
    "hms": _t("{h:02d}:{mi:02d}:{s:02d}"), "hm": _t("{h:02d}:{mi:02d}"), "date": _t("{y}-{mo:02d}-{d:02d}"),
    "ts": _t("{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z"), "tsms": _t("{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}.{ms:03d}"),
    "epoch": lambda r: str(r.randint(1_700_000_000, 1_780_000_000)),
    "epochms": lambda r: str(r.randint(1_700_000_000_000, 1_780_000_000_000)),
    "uuid": uuid, "ver": lambda r: f"{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 20)}",
    "word": lambda r: r.choice(WORDS), "amountn": lambda r: f"{r.randint(5, 99999)}.{r.randint(0, 99):02d}",
    "mailres": lambda r: f"{r.choice(FIRST).lower()}.{r.choice(LAST).lower()}@{r.choice(RESERVED_MAIL)}",
    "cardbad": lambda r: card_fmt(r, card_digits(r, False)), "cardbadp": lambda r: card_digits(r, False),
    "ibanbad": lambda r: (lambda s: r.choice([s, iban_fmt(s)]))(iban_raw(r, False)), "ssnbad": lambda r: ssn(r, False),
    "fakeus": lambda r: f"({r.choice(US_AREAS)}) 555-01{r.randint(0, 99):02d}",
    "fakeuk": lambda r: f"07700 900{r.randint(0, 999):03d}",
    "fakeuk2": lambda r: r.choice([f"01632 960{r.randint(0, 999):03d}", f"020 7946 0{r.randint(0, 999):03d}",
                                   f"0113 496 0{r.randint(0, 999):03d}"]),
    "fakeau": lambda r: r.choice(FAKE_AU), "isbn13": isbn13, "orcid": orcid, "aba": aba, "bic": bic,
    "vin": lambda r: rs(r, "ABCDEFGHJKLMNPRSTUVWXYZ0123456789", 17), "png": png_b64,
    "certpemb64": lambda r: b64((_cert_pem(r) + "\n").encode()), "certb64flat": lambda r: b64(cert_der(r)),
    "certbody": lambda r: _cert_pem(r).split("\n", 1)[1].rsplit("\n", 1)[0],
    "minisignpub": lambda r: b64(b"Ed" + r.randbytes(40)),
}
PARAM = {
    "hex": lambda r, n: rs(r, HEXC, n), "HEX": lambda r, n: rs(r, HEXC.upper(), n), "d": lambda r, n: rs(r, DIG, n),
    "an": lambda r, n: rs(r, AN, n), "AN": lambda r, n: rs(r, UPPER + DIG, n), "b64": lambda r, n: b64(r.randbytes(n)),
    "b64u": lambda r, n: b64u(r.randbytes(n)), "b32l": lambda r, n: rs(r, LOWER + "234567", n),
    "b58": lambda r, n: rs(r, B58, n), "bech": lambda r, n: rs(r, BECH, n),
    "hexcolon": lambda r, n: ":".join(rs(r, "0123456789ABCDEF", 2) for _ in range(n)),
}

def ctx_get(r, ctx, name):
    if name not in ctx:
        ctx[name] = r.choice(LISTS[name])
    return ctx[name]
def plain(name, arg, r, ctx):
    if name in CTX_SLOTS:
        return ctx_get(r, ctx, name)
    if name in ("first", "last", "luser"):
        return person(r, ctx)[name]
    if name in ("FIRST", "LAST"):
        return person(r, ctx)[name.lower()].upper()
    if name == "App":
        return ctx_get(r, ctx, "app").capitalize()
    if name == "DBU":
        return ctx_get(r, ctx, "db").upper()
    if name in ("tokenv", "tokvendor", "tokname"):
        v = pick_vendor(r, ctx)
        return {"tokenv": ctx["tokenv"], "tokvendor": v[0], "tokname": ctx["tokenv"].lower()}[name]
    if name in LISTS:
        return r.choice(LISTS[name])
    if name in SIMPLE:
        return SIMPLE[name](r)
    if name == "pick":
        return r.choice(arg.split("|"))
    return PARAM[name](r, int(arg))

SENSITIVE = {"PW": "generic-password", "PWS": "generic-password", "PWU": "generic-password",
             "PIN": "generic-password", "SEC": "generic-secret", "TOK": None, "JWT": "jwt",
             "PEM": "private-key", "PEMJ": "private-key", "DBPW": "db-url", "PHONE": "phone", "EMAIL": "email",
             "CARD": "credit-card", "CARDP": "credit-card", "IBAN": "iban", "IBANP": "iban", "SSN": "us-ssn"}
SECRET_KINDS = {"generic-password", "generic-secret", "jwt", "private-key", "db-url", "api-key", "openai-key",
                "github-token", "gitlab-token", "slack-token", "slack-webhook", "stripe-key", "google-api-key",
                "aws-access-key"}

def _tok(r, arg, ctx):
    v = pick_vendor(r, ctx)
    ctx["rule"] = v[0]
    return v[3](r)

DRAW = {"PW": lambda r, a, c: password(r, "PW"), "PWS": lambda r, a, c: password(r, "PWS"),
        "PWU": lambda r, a, c: password(r, "PWU"), "DBPW": lambda r, a, c: password(r, "PWU"),
        "PIN": lambda r, a, c: rs(r, DIG, r.choice([4, 4, 6, 6, 8])), "SEC": lambda r, a, c: secret(r, a),
        "TOK": _tok, "JWT": lambda r, a, c: jwt(r, c), "PEM": lambda r, a, c: private_key(r),
        "PEMJ": lambda r, a, c: private_key(r).replace("\n", "\\n"), "PHONE": lambda r, a, c: phone(r, a),
        "EMAIL": lambda r, a, c: email(r), "CARD": lambda r, a, c: card_fmt(r, card_digits(r)),
        "CARDP": lambda r, a, c: card_digits(r), "IBANP": lambda r, a, c: iban_raw(r),
        "IBAN": lambda r, a, c: (lambda s: r.choice([s, iban_fmt(s), iban_fmt(s)]))(iban_raw(r)),
        "SSN": lambda r, a, c: ssn(r)}

def sensitive(name, arg, r, ctx):
    val = DRAW[name](r, arg, ctx)
    return val, (ctx["vendor"][1] if name == "TOK" else SENSITIVE[name])

# ----------------------------------------------------------------------------- checks
EMAIL_RX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]*@((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,})(?![A-Za-z0-9-])")
CARD_RX = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
SSN_RX = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
PLUS_RX = re.compile(r"\+\(?\d[\d ().-]{6,}\d")
JWT_RX = re.compile(r"eyJ[\w-]{5,}\.eyJ[\w-]{5,}\.[\w-]*")
PEM_PRIV_RX = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
IPV4_RX = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")
IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})(\d{2})")
NAME_VAL_RX = re.compile(r"(?i)(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|private[_-]?key|"
                         r"access[_-]?key|auth[_-]?key|credential)s?[\"']?\s*(?:=>|[:=])\s*[\"']?([^\s\"'<>,;)}\]]{16,})")

def reserved(domain):
    d = domain.lower().rstrip(".")
    return d in ("example.com", "example.net", "example.org", "example", "test", "invalid", "localhost") or \
        d.endswith((".example.com", ".example.net", ".example.org", ".example", ".test", ".invalid", ".localhost"))

def has_iban(text):
    for m in IBAN_START.finditer(text):
        need = IBAN_LEN.get(m.group(1), 0) - 4
        if need <= 0:
            continue
        got, i = [], m.end()
        while i < len(text) and len(got) < need:
            c = text[i]
            if c.isascii() and (c.isdigit() or c.isupper()):
                got.append(c)
            elif not (c == " " and text[i - 1] != " "):
                break
            i += 1
        if len(got) == need and iban_valid(m.group(0) + "".join(got)):
            return True
    return False

def stray(text):
    """Name of a sensitive value still present in `text` (spans already blanked), else None."""
    if any(not reserved(m.group(1)) for m in EMAIL_RX.finditer(text)):
        return "email"
    if any(luhn_ok(re.sub(r"\D", "", m.group(0))) for m in CARD_RX.finditer(text)):
        return "card"
    if has_iban(text):
        return "iban"
    if any(ssn_valid(m.group(1), m.group(3), m.group(4)) for m in SSN_RX.finditer(text)):
        return "ssn"
    if any(len(re.sub(r"\D", "", m.group(0))) >= 8 for m in PLUS_RX.finditer(text)):
        return "plus-phone"
    for name, rx in (("jwt", JWT_RX), ("private-key", PEM_PRIV_RX), ("token", TOKEN_RX), ("ipv4", IPV4_RX)):
        if rx.search(text):
            return name
    return None

def secretish(text):
    """A mixed-case+digit value of 16+ chars assigned to a secret-like name (negatives must not have one)."""
    for m in NAME_VAL_RX.finditer(text):
        v = m.group(1)
        if not any(c in v for c in "/({$%*•[") and _has_mix(v):
            return v
    return None

def check_value(kind, val, rule):
    if kind == "credit-card":
        d = re.sub(r"[ -]", "", val)
        assert d.isdigit() and 13 <= len(d) <= 19 and luhn_ok(d), val
    elif kind == "iban":
        assert iban_valid(val), val
    elif kind == "us-ssn":
        a, g, s = val.split("-")
        assert ssn_valid(a, g, s), val
    elif kind == "email":
        m = EMAIL_RX.fullmatch(val)
        assert m and not reserved(m.group(1)), val
    elif kind == "phone":
        assert 8 <= len(re.sub(r"\D", "", val)) <= 15, val
    elif kind == "jwt":
        assert JWT_RX.fullmatch(val), val
    elif kind == "private-key":
        assert PEM_PRIV_RX.match(val) and val.rstrip().endswith("PRIVATE KEY-----"), val[:40]
    elif kind in ("generic-password", "db-url", "generic-secret"):
        assert val and not any(c.isspace() and c != " " for c in val), val
    if rule:
        assert VENDOR_RX[rule].fullmatch(val) or VENDOR_RX[rule].search(val), (rule, val)
    if rule in ("github", "npm"):
        body = val[4:-6]
        assert b62(zlib.crc32(body.encode()) & 0xFFFFFFFF, 6) == val[-6:], val

# ----------------------------------------------------------------------------- rows
SLOT_RX = re.compile(r"«([A-Za-z_][A-Za-z0-9_]*)(?::([^»]*))?»")

def fill(tpl, r, ctx):
    out, spans, pos, last = [], [], 0, 0
    for m in SLOT_RX.finditer(tpl):
        lit = tpl[last:m.start()]
        out.append(lit)
        pos += len(lit)
        last = m.end()
        name, arg = m.group(1), m.group(2)
        if name in SENSITIVE:
            val, kind = sensitive(name, arg, r, ctx)
            check_value(kind, val, ctx.get("rule") if name == "TOK" else None)
            spans.append((pos, pos + len(val), val, kind))
        else:
            val = plain(name, arg, r, ctx)
        out.append(val)
        pos += len(val)
    out.append(tpl[last:])
    return "".join(out), spans

def blank(text, spans):
    for s, e, _, _ in spans:
        text = text[:s] + " " * (e - s) + text[e:]
    return text

REJECTS = Counter()

def gen_family(name, templates, seen):
    r = random.Random(f"{SEED}/{name}")
    order = list(range(len(templates)))
    r.shuffle(order)
    rows = []
    for i in range(ROWS_PER_FAMILY):
        tpl, amb = templates[order[i % len(order)]]
        for _ in range(400):
            ctx = {"i": i}
            text, spans = fill(tpl, r, ctx)
            why = "duplicate" if text in seen else stray(blank(text, spans))
            if not why and not spans and not amb and secretish(text):
                why = "secret-like"
            if not why:
                break
            REJECTS[why] += 1
        else:
            raise SystemExit(f"{name}: no acceptable row from template {tpl[:70]!r}")
        seen.add(text)
        kinds = {k for _, _, _, k in spans}
        assert len(kinds) <= 1, (name, kinds)
        assert all(text[s:e] == v for s, e, v, _ in spans)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        kind = kinds.pop() if kinds else "none"
        row = {"id": "hf4-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12], "text": text,
               "label": "none" if kind == "none" else ("secret" if kind in SECRET_KINDS else "pii"),
               "kind": kind, "spans": [[s, e] for s, e, _, _ in spans], "source": SOURCE, "subkind": name}
        if amb:
            assert kind == "none", name
            row["ambiguous"] = True
        if ctx.get("rule"):
            row["rule"] = ctx["rule"]
        rows.append(row)
    return rows

def unescape(s):
    return s.replace("\\\\", "\0").replace("\\n", "\n").replace("\\t", "\t").replace("\0", "\\")
def parse(src):
    fams, cur = {}, None
    for line in src.splitlines():
        if not line.strip():
            continue
        if line.startswith("@ "):
            name = line[2:].strip()
            assert name not in fams, name
            cur = fams[name] = []
            continue
        amb = line.startswith("~ ")
        for t in (line[2:] if amb else line).split(" ¦ "):
            cur.append((unescape(t), amb))
    return fams

# ----------------------------------------------------------------------------- families
# `@ name` starts a family; each further line holds templates separated by " ¦ "; a leading "~ "
# marks the line's templates ambiguous negatives.  In templates "\n" is a newline, "\t" a tab and
# "\\" one backslash.  Sensitive slots: «PW» «PWS» (may hold spaces) «PWU» (URL-safe) «PIN» «SEC[:fmt]»
# «TOK» «JWT» «PEM» «PEMJ» (JSON-escaped) «DBPW» «PHONE[:intl|nat|e164]» «EMAIL» «CARD» «CARDP» «IBAN»
# «IBANP» «SSN».
FAMILIES = r"""
@ pwcli-auditd-execve
type=EXECVE msg=audit(«epoch».«n3»:«n4»): argc=5 a0="hdbsql" a1="-u" a2="«user»" a3="-p" a4="«PW»" ¦ type=EXECVE msg=audit(«epoch».«n3»:«n4»): argc=7 a0="sqsh" a1="-S" a2="«host»" a3="-U" a4="sa" a5="-P" a6="«PW»"
type=EXECVE msg=audit(«epoch».«n3»:«n4»): argc=5 a0="/opt/vertica/bin/vsql" a1="-U" a2="«user»" a3="-w" a4="«PW»"
type=SYSCALL msg=audit(«epoch».«n3»:«n4»): arch=c000003e syscall=59 success=yes exit=0 ppid=«pid» pid=«pid» auid=1000 uid=0 comm="nodetool" exe="/usr/bin/java"\ntype=EXECVE msg=audit(«epoch».«n3»:«n4»): argc=6 a0="nodetool" a1="-u" a2="cassandra" a3="-pw" a4="«PW»" a5="status"
type=EXECVE msg=audit(«epoch».«n3»:«n4»): argc=6 a0="mosquitto_passwd" a1="-b" a2="/etc/mosquitto/passwd" a3="«user»" a4="«PW»"
@ pwcli-sudo-journal-command
«mon» «dd» «hms» «host» sudo[«pid»]:   «luser» : TTY=pts/«n» ; PWD=/home/«luser» ; USER=root ; COMMAND=/opt/couchbase/bin/couchbase-cli cluster-init -c localhost --cluster-username Administrator --cluster-password «PW» --services data,index
«mon» «dd» «hms» «host» sudo[«pid»]:   «luser» : TTY=pts/«n» ; PWD=/home/«luser» ; USER=root ; COMMAND=/usr/sbin/grafana-cli admin reset-admin-password «PW»
«mon» «dd» «hms» «host» sudo[«pid»]:   «luser» : TTY=pts/«n» ; PWD=/srv/chat ; USER=ejabberd ; COMMAND=/usr/sbin/ejabberdctl register «nick» chat.«corp» «PW»
«mon» «dd» «hms» «host» sudo[«pid»]:   «luser» : TTY=pts/«n» ; PWD=/opt/kafka ; USER=kafka ; COMMAND=/opt/kafka/bin/kafka-configs.sh --bootstrap-server kafka-1:9092 --alter --add-config SCRAM-SHA-512=[password=«PW»] --entity-type users --entity-name «user»
@ pwcli-windows-4688-cmdline
EventCode=4688\nNew Process Name: C:\\Windows\\System32\\net.exe\nProcess Command Line: net user «user» «PW» /add /domain ¦ <Data Name="Image">C:\\Windows\\System32\\cmdkey.exe</Data>\n<Data Name="CommandLine">cmdkey /add:«host» /user:CORP\\«user» /pass:«PW»</Data>
Process Command Line:\tschtasks /create /tn "«App» Nightly" /tr C:\\jobs\\«app»-sync.cmd /sc daily /st 02:«mi» /ru CORP\\«user» /rp «PW» ¦ CommandLine: sc.exe config «svc» obj= CORP\\«user» password= «PW» ¦ CommandLine: winrs -r:«host» -u:CORP\\«user» -p:«PW» ipconfig /all
@ pwcli-powershell-history-file
Invoke-Sqlcmd -ServerInstance «host» -Database «db» -Username «user» -Password '«PW»' -Query "EXEC dbo.usp_Rebuild" ¦ Get-Service «svc»\nConnect-VIServer -Server «host» -User 'VSPHERE\\administrator' -Password '«PW»'
& 'C:\\Program Files (x86)\\VMware\\VMware Workstation\\vmrun.exe' -T ws -gu «user» -gp '«PW»' runProgramInGuest 'D:\\VMs\\build.vmx' cmd.exe
redfishtool -r «host»-bmc -u root -p '«PW»' Systems reset GracefulRestart ¦ Invoke-RestMethod -Uri https://api.«corp»/v1/login -Method Post -Body @{ user='«user»'; pass='«PW»' }
@ pwcli-jupyter-shell-escapes
In [«n»]: !kcadm.sh config credentials --server https://sso.«corp»/ --realm master --user admin --password «PW»
In [«n»]: !pdftk statement-«date».pdf input_pw «PW» output statement-unlocked.pdf ¦ In [«n»]: !gs -q -dNOPAUSE -dBATCH -sDEVICE=pdfwrite -sPDFPassword=«PW» -sOutputFile=out.pdf scan_«n4».pdf
In [«n»]: !aria2c --http-user=«user» --http-passwd=«PW» https://files.«corp»/exports/«db»-«date».tar.zst ¦ In [«n»]: !twine upload --repository-url https://pkgs.«corp»/simple/ -u «user» -p «PW» dist/*
@ pwcli-macos-wifi-secret-stores
$ security add-generic-password -a «luser» -s «svc» -w '«PW»' -U ¦ $ iwctl --passphrase '«PW»' station wlan0 connect '«ssid»' ¦ $ op item create --category=login --title='«App» admin' --vault=Ops username=«user» 'password=«PWS»'
$ wpa_passphrase '«ssid»' '«PWS»' | sudo tee /etc/wpa_supplicant/wpa_supplicant-wlan0.conf
> netsh wlan show profile name="«ssid»" key=clear\n\nSecurity settings\n-----------------\n    Authentication         : WPA2-Personal\n    Cipher                 : CCMP\n    Security key           : Present\n    Key Content            : «PW»
@ pwcli-azure-pipelines-command
##[section]Starting: Create DB secret\n##[command]/usr/local/bin/kubectl create secret generic «app»-db --namespace «env» --from-literal=username=«user» --from-literal=password=«PW»
##[command]/usr/local/bin/helm upgrade --install «app» bitnami/postgresql --namespace «env» --set auth.postgresPassword=«PW» --wait ¦ ##[command]kustomize edit add secret «app»-smtp --from-literal=SMTP_PASSWORD=«PW»
##[command]/usr/bin/mysqlsh --uri «user»@«host»:3306 --password=«PW» -e "util.dumpInstance('/dump/«date»')"
@ pwcli-script-typescript
Script started on «date» «hms»+00:00 [TERM="xterm-256color" TTY="/dev/pts/«n»"]\n[«luser»@«host» ~]$ java -jar jenkins-cli.jar -s https://ci.«corp»/ -auth «luser»:«PW» safe-restart
[«luser»@«host» bin]$ ./jboss-cli.sh --connect --controller=«host»:9990 --user=admin --password=«PW» --command=:reload ¦ [«luser»@«host» ~]$ ./wlst.sh\nwls:/offline> connect('weblogic','«PW»','t3://«host»:7001')\nConnecting to t3://«host»:7001 with userid weblogic ...
[«luser»@«host» ~]$ bteq\n .logon «host»/«user»,«PW»\n *** Logon successfully completed. ¦ [«luser»@«host» ~]$ rdesktop -u «user» -p «PW» -g 1600x900 «host»
@ pwcode-haskell-elixir-records
connInfo = defaultConnectInfo { connectHost = "«host»", connectUser = "«user»", connectPassword = "«PW»", connectDatabase = "«db»" } ¦ let settings = PostgresConf { pgConnStr = "host=«host» dbname=«db» user=«user» password=«PW»", pgPoolSize = «n» }
config :«app», «App».Mailer,\n  adapter: Swoosh.Adapters.SMTP,\n  relay: "smtp.«corp»",\n  username: "«user»",\n  password: "«PW»",\n  port: 587 ¦ Application.put_env(:«app», :ldap_bind_password, "«PW»") ¦ {:ok, conn} = Redix.start_link(host: "«host»", port: 6379, password: "«PW»")
@ pwcode-c-cpp-objc
#define SMTP_AUTH_PASS "«PW»" ¦ static const char *kDbPassword = "«PW»";  /* TODO: move to keychain */ ¦ auto session = mysqlx::getSession("«host»", 33060, "«user»", "«PW»"); ¦ curl_easy_setopt(curl, CURLOPT_PASSWORD, "«PW»");
NSURLCredential *cred = [NSURLCredential credentialWithUser:@"«user»" password:@"«PW»" persistence:NSURLCredentialPersistenceForSession];
@ pwcode-zig-julia-r-matlab
local conn = assert(env:connect("«db»", "«user»", "«PW»", "«host»", 5432))
const db_password: []const u8 = "«PW»"; ¦ conn = LibPQ.Connection("host=«host» dbname=«db» user=«user» password=«PW»") ¦ con <- DBI::dbConnect(RPostgres::Postgres(), host = "«host»", dbname = "«db»", user = "«user»", password = "«PW»")
conn = database('«db»','«user»','«PW»','Vendor','PostgreSQL','Server','«host»','PortNumber',5432);
@ pwcode-gradle-groovy-signing
android {\n    signingConfigs {\n        release {\n            storeFile file("release.jks")\n            storePassword "«PW»"\n            keyAlias "upload"\n            keyPassword "«PW»"\n        }\n    }\n}
maven {\n    url "https://nexus.«corp»/repository/maven-releases/"\n    credentials {\n        username = "«user»"\n        password = "«PW»"\n    }\n}
def sql = Sql.newInstance("jdbc:postgresql://«host»:5432/«db»", "«user»", "«PW»", "org.postgresql.Driver") ¦ ossrhUsername=«user»\nossrhPassword=«PW»\nsigning.keyId=«HEX:8»
@ pwcode-perl-dbi-vba-ado
my $dbh = DBI->connect("dbi:Pg:dbname=«db»;host=«host»", "«user»", "«PW»", { RaiseError => 1, AutoCommit => 0 });
cn.Open "Provider=SQLOLEDB;Data Source=«host»;Initial Catalog=«db»;User ID=«user»;Password=«PW»;" ¦ conn.ConnectionString = "DSN=«db»;UID=«user»;PWD=«PW»" ¦ my $mesg = $ldap->bind("cn=«user»,ou=services,dc=corp,dc=local", password => '«PW»');
Set objConn = CreateObject("ADODB.Connection")\nobjConn.Open "Driver={MySQL ODBC 8.0 Unicode Driver};Server=«host»;Database=«db»;User=«user»;Password=«PW»;Option=3;"
@ pwcode-jvm-swift-dart-db-libs
val db = Database.forURL("jdbc:postgresql://«host»/«db»", user = "«user»", password = "«PW»", driver = "org.postgresql.Driver") ¦ Database.connect("jdbc:mysql://«host»:3306/«db»", driver = "com.mysql.cj.jdbc.Driver", user = "«user»", password = "«PW»")
let config = PostgresConnection.Configuration(host: "«host»", username: "«user»", password: "«PW»", database: "«db»", tls: .disable)
final conn = await MySQLConnection.createConnection(host: '«host»', port: 3306, userName: '«user»', password: '«PW»', databaseName: '«db»'); ¦ KeychainWrapper.standard.set("«PW»", forKey: "«pick:vpnPassword|smtpPassword|adminPassword»")
@ pwcfg-jsonnet-cue-dhall
prometheus.remote_write "default" {\n  endpoint {\n    url = "https://prom.«corp»/api/v1/write"\n    basic_auth {\n      username = "«user»"\n      password = "«PW»"\n    }\n  }\n}
local db = { host: '«host»', user: '«user»', password: '«PW»' };\n{ 'config.json': std.manifestJson({ database: db }) } ¦ database: {\n\thost:     "«host»"\n\tuser:     "«user»"\n\tpassword: "«PW»"\n}
let smtp = { host = "smtp.«corp»", port = 587, user = "«user»", password = "«PW»" } in smtp ¦ { name = "«app»", ldap = { bindDn = "cn=«user»,dc=corp", bindPassword = "«PW»" } }
@ pwcfg-edn-hocon
{:db {:dbtype "postgresql" :host "«host»" :dbname "«db»" :user "«user»" :password "«PW»"}} ¦ {:duct.database.sql/hikaricp {:jdbc-url "jdbc:mysql://«host»/«db»" :username "«user»" :password "«PW»"}}
slick.dbs.default.db.password = "«PW»" ¦ akka.persistence.r2dbc.connection-factory {\n  host = "«host»"\n  user = "«user»"\n  password = "«PW»"\n} ¦ db.default.driver = org.postgresql.Driver\ndb.default.url = "jdbc:postgresql://«host»/«db»"\ndb.default.username = «user»\ndb.default.password = "«PW»"
@ pwcfg-plist-unattend-xml
<key>PayloadType</key>\n<string>com.apple.vpn.managed</string>\n<key>AuthName</key>\n<string>«user»</string>\n<key>AuthPassword</key>\n<string>«PW»</string>
<key>EAPClientConfiguration</key>\n<dict>\n\t<key>UserName</key>\n\t<string>«luser»</string>\n\t<key>UserPassword</key>\n\t<string>«PW»</string>\n</dict> ¦ <UserAccounts>\n  <AdministratorPassword>\n    <Value>«PW»</Value>\n    <PlainText>true</PlainText>\n  </AdministratorPassword>\n</UserAccounts>
<AutoLogon>\n  <Password>\n    <Value>«PW»</Value>\n    <PlainText>true</PlainText>\n  </Password>\n  <Enabled>true</Enabled>\n  <Username>«user»</Username>\n</AutoLogon>
@ pwcfg-haproxy-keepalived-systemd
<VirtualHost *:443>\n    ServerName «app».«corp»\n    SetEnv DB_PASSWORD «PW»\n</VirtualHost> ¦ location ~ \.php$ {\n    fastcgi_pass unix:/run/php/php8.2-fpm.sock;\n    fastcgi_param DB_PASS «PW»;\n}
userlist «app»_admins\n    user «user» insecure-password «PW» ¦ listen stats\n    bind :8404\n    stats enable\n    stats uri /stats\n    stats auth «user»:«PW»
vrrp_instance VI_«n» {\n    state MASTER\n    interface eth0\n    virtual_router_id «n2»\n    authentication {\n        auth_type PASS\n        auth_pass «PW»\n    }\n} ¦ [Service]\nType=notify\nSetCredential=db-password:«PW»\nExecStart=/usr/bin/«app» --db-password-file=%d/db-password
@ pwcfg-ppp-ipsec-openvpn-secrets
# Secrets for authentication using CHAP\n# client\tserver\tsecret\tIP addresses\n«luser»\t*\t«PW»\t* ¦ # /etc/ipsec.secrets\n«host» %any : PSK "«PWS»"
connections {\n  site-«n» {\n    remote_addrs = «host».«corp»\n  }\n}\nsecrets {\n  ike-site-«n» {\n    id = «host».«corp»\n    secret = «PW»\n  }\n} ¦ $ sudo cat /etc/openvpn/client/«app».auth\n«luser»\n«PW»
@ pwcfg-mail-server-user-files
«luser»:{PLAIN}«PW»:5000:5000::/var/vmail/«corp»/«luser»:: ¦ # /etc/exim4/passwd.client\n*.«corp»:«user»:«PW» ¦ passdb {\n  driver = static\n  args = password=«PW»\n} ¦ # /etc/courier/authmysqlrc\nMYSQL_SERVER\t\t«host»\nMYSQL_USERNAME\t\t«user»\nMYSQL_PASSWORD\t\t«PW»
@ pwcfg-kubeconfig-kustomize
apiVersion: v1\nkind: Config\nusers:\n- name: «cluster»-admin\n  user:\n    username: admin\n    password: «PW» ¦ secretGenerator:\n- name: «app»-db\n  literals:\n  - username=«user»\n  - password=«PW»
generatorOptions:\n  disableNameSuffixHash: true\nsecretGenerator:\n- name: «app»-smtp\n  type: Opaque\n  literals:\n  - SMTP_PASSWORD=«PW»
users:\n- name: basic-auth\n  user:\n    password: «PW»\n    username: «user»\ncontexts:\n- context:\n    cluster: «cluster»\n    user: basic-auth\n  name: «cluster»
@ pwcfg-puppet-chef-salt-resources
class { 'postgresql::server':\n  postgres_password => '«PW»',\n} ¦ default['«app»']['database']['password'] = '«PW»' ¦ mysql::db { '«db»':\n  user     => '«user»',\n  password => '«PW»',\n  host     => 'localhost',\n  grant    => ['SELECT', 'UPDATE'],\n}
«user»:\n  mysql_user.present:\n    - host: localhost\n    - password: «PW»\n    - connection_user: root ¦ rabbitmq_user { '«user»':\n  admin    => false,\n  password => '«PW»',\n}
@ pwnet-vendor-running-configs
! device: «host» (DCS-7280SR, EOS-4.«n2».«n»F)\nusername «user» privilege 15 role network-admin secret 0 «PW» ¦ #\naaa\n local-user «user» password irreversible-cipher «PW»\n local-user «user» service-type ssh terminal
set protocols bgp group «pick:TRANSIT|PEERING|IX-LAN» authentication-key "«PW»" ¦ set system login user «user» authentication plaintext-password «PW» ¦ router bgp 65«n3»\n neighbor UPSTREAM peer-group\n neighbor UPSTREAM remote-as 64«n3»\n neighbor UPSTREAM password «PW»
@ pwnet-wireless-controller-configs
(Cisco Controller) >config wlan security wpa akm psk set-key ascii «PW» «n» ¦ config wireless-controller vap\n    edit "«ssid»"\n        set ssid "«ssid»"\n        set security wpa2-only-personal\n        set passphrase «PW»\n    next\nend
wlan ssid-profile "«ssid»"\n   essid "«ssid»"\n   opmode wpa2-psk-aes\n   wpa-passphrase «PW» ¦ {"name":"«ssid»","security":"wpapsk","wpa_mode":"wpa2","x_passphrase":"«PW»","enabled":true}
@ pwmisc-temp-password-emails
Your voicemail PIN has been reset to «PIN». Dial *86 from your desk phone (ext. «n4») to choose a new one. ¦ Subject: Your «App» account is ready\n\nHello «first»,\n\nYour account «luser» has been created.\nTemporary password: «PW»\nYou will be asked to choose a new password when you first sign in.
Hi «first», I reset your VPN password to «PW» - please change it after you log in. Thanks, IT Service Desk
Hallo «first»,\nIhr vorläufiges Kennwort für «App» lautet: «PW»\nBitte ändern Sie es bei der ersten Anmeldung. ¦ Bonjour «first», votre mot de passe provisoire est «PW» (valable 24 h). ¦ Olá «first», sua senha temporária é «PW». Altere-a no primeiro acesso.
@ pwmisc-guest-wifi-notes
GUEST WI-FI\nNetwork: «ssid»\nPassword: «PWS»\nValid until «date» ¦ Welcome to «room»! Wi-Fi: «ssid» | Key: «PW» ¦ Meeting room «room»: door code PIN «PIN», Wi-Fi «ssid» / «PW» ¦ WLAN-Zugang für Gäste: SSID «ssid», Kennwort «PW»
Hotel «App» – Guest network «ssid» – password «PWS» – reception ext. «n3»
@ pwmisc-irc-matrix-teams-logs
[«hm»] <«nick»> door PIN for the «room» server room is «PIN» this week
[«hm»] <«nick»> root pw on «host» is «PW» for now, will rotate tomorrow ¦ {"type":"m.room.message","sender":"@«nick»:matrix.«corp»","content":{"msgtype":"m.text","body":"jenkins admin password: «PW»"},"origin_server_ts":«epochms»}
{"createdDateTime":"«ts»","from":{"user":{"displayName":"«first» «last»"}},"body":{"contentType":"html","content":"<p>the sftp password is <code>«PW»</code></p>"}} ¦ «date» «hms» <«nick»> can someone reset the «app» db pass? current one («PW») stopped working
@ pwmisc-crash-reports-with-args
#\n# A fatal error has been detected by the Java Runtime Environment:\n#\n#  SIGSEGV (0xb) at pc=0x00007f«hex:10», pid=«pid», tid=«pid»\n#\njvm_args: -Xmx4g -Dspring.datasource.username=«user» -Dspring.datasource.password=«PW» -Dfile.encoding=UTF-8
Unhandled exception. System.InvalidOperationException: Login failed for connection 'Server=«host»;Database=«db»;User Id=«user»;Password=«PW»;TrustServerCertificate=True'\n   at «App».Data.DbFactory.Open() in /src/«App».Data/DbFactory.cs:line «n2»
Crash report for «app» «ver» (pid «pid»)\nCommand line: /usr/local/bin/«app» --listen :8080 --admin-password «PW»\nSignal: SIGABRT ¦ Process:               «App» [«pid»]\nPath:                  /Applications/«App».app/Contents/MacOS/«App»\nArguments: --server «host» --user «user» --password «PW»
@ pwsql-linked-servers-fdw
CREATE USER MAPPING FOR «user» SERVER «db»_remote OPTIONS (user '«user»', password '«PW»'); ¦ EXEC master.dbo.sp_addlinkedsrvlogin @rmtsrvname = N'«host»', @useself = N'False', @locallogin = NULL, @rmtuser = N'«user»', @rmtpassword = N'«PW»';
CREATE DATABASE LINK «db»_link CONNECT TO «user» IDENTIFIED BY "«PW»" USING '«host»:1521/«db»'; ¦ CREATE SERVER «db»_ch FOREIGN DATA WRAPPER clickhouse_fdw OPTIONS (host '«host»', dbname '«db»');\nCREATE USER MAPPING FOR CURRENT_USER SERVER «db»_ch OPTIONS (user '«user»', password '«PW»');
@ pwsql-replication-setup
CHANGE REPLICATION SOURCE TO SOURCE_HOST='«host»', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='«PW»', SOURCE_AUTO_POSITION=1; ¦ CHANGE MASTER TO MASTER_HOST='«host»', MASTER_USER='repl', MASTER_PASSWORD='«PW»', MASTER_LOG_FILE='mysql-bin.«d:6»', MASTER_LOG_POS=«n5»;
CREATE SUBSCRIPTION «db»_sub CONNECTION 'host=«host» port=5432 dbname=«db» user=replicator password=«PW»' PUBLICATION «db»_pub; ¦ GGSCI («host») 1> ALTER CREDENTIALSTORE ADD USER c##ggadmin PASSWORD «PW» ALIAS gg_«db»
@ gsec-ntp-chrony-keys
# /etc/chrony/chrony.keys\n«n» SHA256 HEX:«SEC:HEX64» ¦ # /etc/ntpsec/ntp.keys\n«n2» SHA1 «SEC:hex40» ¦ server «host».«corp» iburst key «n»\n# keyfile entry\n«n» AES128CMAC HEX:«SEC:HEX32» ¦ ntp authentication-key «n» hmac-sha256 «SEC:an32»\nntp trusted-key «n»
@ gsec-ci-log-mask-commands
::add-mask::«SEC» ¦ ##vso[task.setvariable variable=«secvar»;issecret=true]«SEC» ¦ ##teamcity[setParameter name='env.«secvar»' value='«SEC:hex64»'] ¦ $ printf '%s' '«SEC»' | buildkite-agent redactor add
@ gsec-cloud-cli-credential-output
$ az ad sp create-for-rbac --name «app»-deployer --role Contributor\n{\n  "appId": "«uuid»",\n  "displayName": "«app»-deployer",\n  "password": "«SEC:azpw»",\n  "tenant": "«uuid»"\n}
$ ibmcloud iam api-key-create «app»-ci -d "CI key"\nName          «app»-ci\nDescription   CI key\nCreated At    «date»T«hms»+0000\nAPI Key       «SEC:an44»\nLocked        false
$ openstack application credential create «app»-ci\n| Field        | Value                                  |\n| id           | «hex:32»       |\n| name         | «app»-ci                                |\n| secret       | «SEC:b64u64» |
$ aws iam create-service-specific-credential --user-name «user» --service-name codecommit.amazonaws.com\n{ "ServiceSpecificCredential": { "ServiceUserName": "«user»-at-«n6»", "ServicePassword": "«SEC:b64»", "Status": "Active" } }
@ gsec-mobile-desktop-app-logs
I/flutter («pid»): [AuthRepository] refresh_token=«SEC:b64u48» expires_in=3600 ¦ «ts» «App»[«pid»:«hex:6»] [Sync] using client_secret «SEC:an40» ¦  LOG  {"event": "oauth.exchange", "clientSecret": "«SEC:an32»", "platform": "android"}
[«tsms»] [info] (main) settings loaded {"encryptionKey":"«SEC:hex64»","autoUpdate":true} ¦ D/«App»Api(«pid»): X-Signature-Key: «SEC:b64»
@ gsec-iac-plaintext-secrets
$ pulumi config set --plaintext «app»:apiSecret «SEC:an40» ¦ param webhookSecret string = '«SEC:b64»' ¦ new ssm.StringParameter(this, 'Signing', { stringValue: cdk.SecretValue.unsafePlainText('«SEC:hex64»').unsafeUnwrap() });
[\n  { "ParameterKey": "Environment", "ParameterValue": "«env»" },\n  { "ParameterKey": "SigningSecret", "ParameterValue": "«SEC»" }\n] ¦ config:\n  «app»:region: «region»\n  «app»:signingKey: «SEC:hex64»
@ gsec-helpdesk-ticket-exports
{"key":"OPS-«n4»","fields":{"summary":"Partner API credentials","comment":{"comments":[{"author":{"displayName":"«first» «last»"},"body":"Here is the new signing secret for the partner API: «SEC»"}]}}}
work_notes: «date» «hms» - «first» «last» (Work notes)\nVendor sent the replacement client secret: «SEC:an40» - stored it in the ticket until the vault is back. ¦ Ticket #«n5» • Zendesk\nAgent «first»: the webhook shared secret is «SEC:hex40», paste it into Settings → Integrations.
@ gsec-package-manager-auth
$ composer config --global bearer.packages.«corp» «SEC:an40» ¦ $ poetry config http-basic.«app»-private __token__ «SEC:b64u» ¦ $ bundle config set --global gems.«corp» «user»:«SEC:hex32» ¦ $ yarn config set npmAuthToken «SEC:b64» -H ¦ ---\n:rubygems_api_key: «SEC:hex48»
@ gsec-db-shell-settings-rows
*************************** 1. row ***************************\n         name: stripe_webhook_secret\n        value: «SEC:an32»\n   updated_at: «date» «hms»
-[ RECORD 1 ]-----------------------\nkey        | jwt_signing_secret\nvalue      | «SEC:b64»\nupdated_at | «date» «hms»+00 ¦ redis-cache-1:6379> HGETALL «app»:config\n1) "hmac_key"\n2) "«SEC:hex64»"\n3) "ttl"\n4) "«n4»"
sqlite> .mode line\nsqlite> SELECT key, value FROM settings WHERE key = 'session_secret';\n  key = session_secret\nvalue = «SEC»
@ vtok-direnv-envrc
direnv: loading ~/src/«app»/.envrc\n$ cat .envrc\nexport «tokenv»=«TOK»\nexport APP_ENV=«env» ¦ # .envrc\nuse flake\nexport «tokenv»="«TOK»" ¦ $ direnv exec . env | grep «tokenv»\n«tokenv»=«TOK» ¦ dotenv_if_exists .env.local\nexport «tokenv»='«TOK»'
@ vtok-systemctl-environment
$ systemctl show «svc».service -p Environment\nEnvironment=LANG=C.UTF-8 «tokenv»=«TOK» LOG_LEVEL=info ¦ $ sudo systemctl set-environment «tokenv»=«TOK» ¦ $ systemd-run --user -p Environment=«tokenv»=«TOK» ./sync.sh\nRunning as unit: run-r«hex:32».service ¦ $ launchctl getenv «tokenv»\n«TOK»
@ vtok-nix-home-manager
home.sessionVariables = {\n  EDITOR = "nvim";\n  «tokenv» = "«TOK»";\n}; ¦ environment.variables.«tokenv» = "«TOK»"; ¦ systemd.services.«svc».environment = { «tokenv» = "«TOK»"; }; ¦ programs.fish.shellInit = ''\n  set -gx «tokenv» «TOK»\n'';
@ vtok-launchd-plist-env
<key>EnvironmentVariables</key>\n<dict>\n\t<key>«tokenv»</key>\n\t<string>«TOK»</string>\n</dict> ¦ $ plutil -p ~/Library/LaunchAgents/com.«app».sync.plist\n{\n  "EnvironmentVariables" => {\n    "«tokenv»" => "«TOK»"\n  }\n  "Label" => "com.«app».sync"\n}
$ defaults read com.«app».desktop\n{\n    apiToken = "«TOK»";\n    lastSync = "«date» «hms» +0000";\n}
@ vtok-proc-environ-dumps
$ sudo cat /proc/«pid»/environ | tr '\\0' '\\n' | grep -E 'KEY|TOKEN|URL'\n«tokenv»=«TOK» ¦ $ ps eww -p «pid»\n    PID TTY      STAT   TIME COMMAND\n  «pid» ?        Ssl    0:«mi» node dist/server.js HOME=/home/node «tokenv»=«TOK» NODE_ENV=production
$ docker exec «app»-worker-1 printenv «tokenv»\n«TOK» ¦ $ kubectl exec -n «env» deploy/«app» -- printenv «tokenv»\n«TOK»
@ vtok-notebook-output-cells
In [«n»]: os.environ["«tokenv»"]\nOut[«n»]: '«TOK»' ¦ > Sys.getenv("«tokenv»")\n[1] "«TOK»" ¦ julia> ENV["«tokenv»"]\n"«TOK»" ¦ scala> sys.env("«tokenv»")\nval res«n»: String = «TOK» ¦ iex(«n»)> System.get_env("«tokenv»")\n"«TOK»"
@ vtok-chat-and-issue-pastes
[«hm»] <«nick»> try with my key for now: «TOK» ¦ «date», «hm» - «first»: here's the one for staging «TOK» (don't share pls)
$ gh issue view «n4» --repo «org»/«app»\ntitle:\tsync fails with 401\nstate:\tOPEN\n--\nMy config:\n```\n«tokenv»=«TOK»\n```\nStill getting 401 after upgrading to «ver». ¦ **«first» «last»** commented:\n> Still broken. Using `«tokenv»=«TOK»` from the README setup.
@ vtok-editor-app-settings
{\n  "editor.fontSize": 14,\n  "«app».apiKey": "«TOK»",\n  "«app».endpoint": "https://api.«corp»"\n} ¦ [«tokvendor»]\napi_key = «TOK»\ntimeout = 30
{"version":«n»,"profiles":{"default":{"«tokname»":"«TOK»","region":"«region»"}}} ¦ <setting name="«tokname»" serializeAs="String">\n  <value>«TOK»</value>\n</setting>
@ jwt-mobile-storage-dumps
<?xml version='1.0' encoding='utf-8' standalone='yes' ?>\n<map>\n    <string name="access_token">«JWT»</string>\n    <long name="expires_at" value="«epochms»" />\n</map>
$ adb shell run-as com.«app».android cat shared_prefs/auth.xml\n<map>\n    <string name="id_token">«JWT»</string>\n</map> ¦ I/flutter («pid»): FlutterSecureStorage read key=jwt value=«JWT» ¦ «ts» «App»[«pid»:«hex:5»] Keychain item "session" = «JWT»
@ jwt-websocket-grpc-metadata
$ wscat -c "wss://rt.«corp»/socket?token=«JWT»" ¦ $ grpcurl -H 'authorization: Bearer «JWT»' «host»:443 «app».v1.Orders/List ¦ grpc: metadata = {':authority': '«host»:50051', 'authorization': 'Bearer «JWT»', 'user-agent': 'grpc-python/1.«n2».0'}
WebSocket connection to 'wss://live.«corp»/cable?jwt=«JWT»' failed: Error during WebSocket handshake: Unexpected response code: 403
@ pkey-terraform-output-and-show
$ terraform output -raw «pick:ssh_private_key|deploy_key_pem|private_key_pem»\n«PEM» ¦ "private_key_pem": "«PEMJ»", ¦ $ terraform show -json | jq -r '.values.root_module.resources[] | select(.type=="tls_private_key") | .values.private_key_openssh'\n«PEM»
  # tls_private_key.«app»:\n  resource "tls_private_key" "«app»" {\n      algorithm       = "«pick:RSA|ECDSA|ED25519»"\n      private_key_pem = <<-EOT\n«PEM»\n      EOT\n  }
@ pkey-k8s-vault-decoded
$ kubectl get secret «app»-tls -n «env» -o jsonpath='{.data.tls\\.key}' | base64 -d\n«PEM» ¦ $ vault kv get -field=ssh_key secret/deploy/«app»\n«PEM»
$ vault write -format=json pki_int/issue/«app» common_name=«app».«corp»\n{\n  "data": {\n    "private_key": "«PEMJ»",\n    "private_key_type": "rsa",\n    "serial_number": "«hexcolon:16»"\n  }\n} ¦ $ sops -d secrets/«app».enc.yaml | yq -r .tls_key\n«PEM»
@ dburl-shell-client-uris
$ mongosh "mongodb+srv://«user»:«DBPW»@cluster0.«b32l:5».mongodb.net/«db»?retryWrites=true&w=majority" ¦ $ redis-cli -u redis://default:«DBPW»@«host»:6379/0 PING\nPONG
$ celery -A «app» worker -b amqp://«user»:«DBPW»@«host»:5672/«app» --loglevel=INFO ¦ $ usql "mysql://«user»:«DBPW»@«host»:3306/«db»" ¦ $ pgcli postgresql://«user»:«DBPW»@«host»:5432/«db»
@ dburl-process-env-listings
$ pm2 env 0 | grep -i url\nREDIS_URL: rediss://:«DBPW»@«host»:6380 ¦ $ env | grep -i broker\nCELERY_BROKER_URL=amqp://«user»:«DBPW»@«host»:5672//
$ heroku run printenv DATABASE_URL -a «app»\npostgres://«user»:«DBPW»@ec2-«n2»-«n3»-«n2»-«n3».compute-1.amazonaws.com:5432/«hex:14» ¦ $ fly ssh console -C 'printenv DATABASE_URL'\npostgres://«user»:«DBPW»@«app»-db.flycast:5432/«db»?sslmode=disable
@ dburl-airflow-connections
$ airflow connections add '«db»_pg' --conn-uri 'postgresql://«user»:«DBPW»@«host»:5432/«db»' ¦ AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://airflow:«DBPW»@«host»:5432/airflow
AIRFLOW_CONN_«DBU»_MYSQL='mysql://«user»:«DBPW»@«host»:3306/«db»' ¦ [celery]\nresult_backend = db+postgresql://airflow:«DBPW»@«host»/airflow\nbroker_url = redis://:«DBPW»@«host»:6379/0
@ dburl-error-messages
sqlalchemy.exc.ArgumentError: Could not parse SQLAlchemy URL from string 'postgresql+asyncpg://«user»:«DBPW»@«host»:5432/«db» ' ¦ Error: P1001: Can't reach database server at `«host»`:`5432`\n  --> datasource db { url = "postgresql://«user»:«DBPW»@«host»:5432/«db»?schema=public" }
MongoServerSelectionError: connect ECONNREFUSED «host»:27017\n    at Timeout._onTimeout (/app/node_modules/mongodb/lib/sdam/topology.js:«n3»:«n2»)\n  uri: 'mongodb://«user»:«DBPW»@«host»:27017/«db»?authSource=admin'
panic: failed to connect to `host=«host» user=«user» database=«db»`: dial error (dial tcp: lookup «host»: no such host)\n\tdsn: postgres://«user»:«DBPW»@«host»:5432/«db»
@ phone-mecard-bizcard-qr
MECARD:N:«last»,«first»;TEL:«PHONE:e164»;; ¦ Decoded QR (MECARD): N:«last»,«first»;TEL:«PHONE»;NOTE:met at «city» expo;;
BIZCARD:N:«first»;X:«last»;T:«pick:Sales Manager|Field Engineer|Procurement Lead»;C:«App» Ltd;B:«PHONE»;; ¦ zbarimg: QR-Code:MECARD:N:«last»,«first»;TEL:«PHONE»;URL:https://«corp»;;
@ phone-ride-delivery-app-logs
D/DriverApp(«pid»): assignRide id=«n7» riderPhone=«PHONE:e164» eta=«n»min ¦ [courier-«n3»] «ts» calling customer «PHONE» (attempt «n»/3) order=«AN:8»
«ts» INFO dispatch: masked-call bridge failed, fallback to direct number «PHONE» for order #«n6» ¦ V/DeliveryTracker(«pid»): Contact{name='«first»', phone='«PHONE»', doorCode=null}
@ phone-2fa-recovery-settings
Two-step verification: on (SMS to «PHONE») ¦ {"mfa":{"type":"sms","phone_number":"«PHONE:e164»","verified":true},"user_id":«n7»} ¦ Recovery phone: «PHONE»\nRecovery email: not set ¦ Verification code sent to «PHONE». It expires in «pick:5|10|15» minutes.
@ phone-nosql-shell-records
test> db.customers.findOne({ _id: ObjectId('«hex:24»') })\n{\n  _id: ObjectId('«hex:24»'),\n  name: '«first» «last»',\n  phone: '«PHONE»',\n  tier: '«pick:gold|silver|basic»'\n}
cqlsh:«db»> SELECT name, mobile FROM contacts WHERE id = «uuid»;\n\n name          | mobile\n---------------+------------------\n «first» «last» | «PHONE»\n\n(1 rows)
┌─id─┬─name─────┬─phone──────────────┐\n│ «n2» │ «first» │ «PHONE» │\n└────┴──────────┴────────────────────┘ ¦ redis-cache-1:6379> HGET user:«n5» phone\n"«PHONE»"
@ phone-callback-ticket-notes
Caller «first» «last» asked for a call back on «PHONE» before 17:00 regarding invoice «AN:3»-«n5». ¦ Callback number: «PHONE»  (prefers WhatsApp)
[«date» «hm»] «first» (L1): customer unreachable on email, tried mobile «PHONE» - no answer, will retry tomorrow. ¦ INC«d:7» | Priority «n» | Contact: «first» «last», «PHONE» | Laptop will not boot after update
@ phone-hr-emergency-contacts
emergency_contact:\n  name: «first» «last»\n  relationship: «pick:spouse|parent|sibling|partner»\n  phone: "«PHONE»" ¦ In case of emergency call «first» on «PHONE».
Employee «n5» | Emergency contact: «first» («pick:mother|father|wife|husband|brother|sister») «PHONE» ¦ "emergencyContacts": [{"fullName": "«first» «last»", "relation": "«pick:Spouse|Parent|Friend»", "mobile": "«PHONE»"}]
@ phone-classified-ads
FOR SALE: «pick:2016 Toyota Corolla|Honda CB500X|65-inch TV|baby stroller, barely used» – «amount». Call or text «PHONE». ¦ Room to rent near «city» station, bills included. Viewing this weekend – ring «first» on «PHONE».
Se vende bicicleta de montaña, talla M, buen estado. Llamar al «PHONE» («first»). ¦ Perdido: gato gris con collar azul, zona centro. Si lo ves, avisa al «PHONE». ¡Gracias! ¦ Vendo apartamento 2 quartos em «city». Tratar com «first» pelo «PHONE».
@ phone-sms-backup-exports
<sms protocol="0" address="«PHONE:e164»" date="«epochms»" type="1" subject="null" body="«pick:On my way|Call me when you land|Parcel left at reception|See you at 7»" read="1" status="-1" contact_name="«first»" />
<call number="«PHONE»" duration="«n3»" date="«epochms»" type="2" presentation="1" contact_name="«first» «last»" /> ¦ From: «PHONE» («first»)\nSent: «date» «hms»\nText: «pick:Running late, 10 min|Happy birthday!!|Did you get the keys?»
@ email-calendar-attendees
ATTENDEE;CN=«first» «last»;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:«EMAIL» ¦ ORGANIZER;CN="«first» «last»":mailto:«EMAIL» ¦ {"attendees":[{"emailAddress":{"name":"«first» «last»","address":"«EMAIL»"},"type":"required"}],"subject":"«App» sync «date»"}
@ email-cron-aliases-notifications
MAILTO=«EMAIL»\n«mi» «n» * * * /usr/local/bin/backup.sh --target «host» ¦ # /etc/aliases\npostmaster: root\nroot: «EMAIL»
/var/log/«app»/*.log {\n    weekly\n    rotate «n»\n    mail «EMAIL»\n} ¦ DEVICESCAN -a -m «EMAIL» -M exec /usr/share/smartmontools/smartd-runner ¦ $ certbot certonly --webroot -w /var/www/html -d «app».«corp» --email «EMAIL» --agree-tos
@ email-kv-and-doc-store-records
redis-cache-1:6379> HGETALL session:«hex:16»\n1) "user_id"\n2) "«n6»"\n3) "email"\n4) "«EMAIL»" ¦ { _id: ObjectId('«hex:24»'), email: '«EMAIL»', createdAt: ISODate('«ts»') }
sqlite> .mode line\nsqlite> SELECT * FROM users WHERE id = «n4»;\n   id = «n4»\nemail = «EMAIL»\n name = «first» «last» ¦ $ etcdctl get /«app»/users/«n4»/contact\n/«app»/users/«n4»/contact\n{"email":"«EMAIL»"}
@ email-app-signup-logs
I/flutter («pid»): [SignUp] account created for «EMAIL» ¦ «ts» INFO auth.magic_link sent to=«EMAIL» ttl=900s request_id=«uuid»
Started POST "/users" for «host» at «date» «hms» +0000\nProcessing by RegistrationsController#create as HTML\n  Parameters: {"user"=>{"email"=>"«EMAIL»", "password"=>"[FILTERED]"}} ¦ [«tsms»] [electron] deep link «app»://verify?email=«EMAIL»&code=«d:6»
@ card-emv-terminal-debug
«ts» EMV: Tag 5A (PAN) = «CARDP»\n«ts» EMV: Tag 5F24 (Expiry) = «yy»«mm»31 ¦ [pos-«n3»] track2_equiv=«CARDP»D«yy»«mm»201«d:5» ¦ TRACE kernel: AID=A0000000«pick:031010|041010|0250000001» PAN=«CARD» PSN=01
@ card-spreadsheet-exports
«first»,«last»,«CARD»,«mm»/«yy»,«city» ¦ «first» «last»\t«CARD»\t«mm»/«yy»\t«pick:personal|corporate» ¦ | «n2» | «first» «last» | «CARD» | «mm»/20«yy» | ¦ Sheet1!A«n2»: '«CARDP»   (formatted as text)
@ iban-sepa-pain-xml
<CdtrAcct>\n  <Id>\n    <IBAN>«IBANP»</IBAN>\n  </Id>\n</CdtrAcct> ¦ <DbtrAcct><Id><IBAN>«IBANP»</IBAN></Id></DbtrAcct><DbtrAgt><FinInstnId><BICFI>«bic»</BICFI></FinInstnId></DbtrAgt>
<Ntry><Amt Ccy="EUR">«amountn»</Amt><NtryDtls><TxDtls><RltdPties><Dbtr><Nm>«first» «last»</Nm></Dbtr><DbtrAcct><Id><IBAN>«IBANP»</IBAN></Id></DbtrAcct></RltdPties></TxDtls></NtryDtls></Ntry>
@ iban-refund-form-submissions
POST /refunds 201 body=name=«first»+«last»&refund_iban=«IBANP»&reason=«pick:damaged|late|wrong+size» ¦ {"refund":{"order":"«AN:3»-«n6»","holder":"«first» «last»","iban":"«IBAN»"}} ¦ Refund request #«n5»\nAccount holder: «first» «last»\nIBAN: «IBAN»\nAmount: «amount»
@ ssn-background-check-reports
SUBJECT: «LAST», «FIRST»\nSSN: «SSN»   DOB: «mm»/«dd»/19«n2»\nADDRESS HISTORY: «n» records ¦ Consumer report request #«n6» - applicant «first» «last», SSN «SSN», consent on file ¦ [verify] ssn_trace subject_ssn=«SSN» result=«pick:clear|review|no_record»
@ ssn-benefits-enrollment-logs
«ts» INFO enroll member=«n6» dependent_ssn=«SSN» relation=«pick:child|spouse» plan=PPO-«n3» ¦ member_id,first,last,ssn,plan\n«n6»,«first»,«last»,«SSN»,HMO-«n2» ¦ COBRA notice generated for «first» «last» (SSN «SSN») effective «date»
@ nhash-pubspec-mix-lock
  http:\n    dependency: transitive\n    description:\n      name: http\n      sha256: "«hex:64»"\n      url: "https://pub.dev"\n    source: hosted\n    version: "1.«n».«n»"
"jason": {:hex, :jason, "1.4.«n»", "«hex:64»", [:mix], [{:decimal, "~> 1.0 or ~> 2.0", [hex: :decimal, repo: "hexpm", optional: true]}], "hexpm", "«hex:64»"},
"«pick:plug|phoenix|ecto|telemetry»": {:hex, :«pick:plug|phoenix|ecto|telemetry», "1.1«n».«n»", "«hex:64»", [:mix], [], "hexpm", "«hex:64»"},
@ nhash-podfile-package-resolved
SPEC CHECKSUMS:\n  Alamofire: «hex:40»\n  Kingfisher: «hex:40»\n\nPODFILE CHECKSUM: «hex:40»\n\nCOCOAPODS: 1.1«n».«n» ¦ "originHash" : "«hex:64»",
{\n  "identity" : "swift-«pick:nio|log|collections|crypto»",\n  "kind" : "remoteSourceControl",\n  "location" : "https://github.com/apple/swift-«pick:nio|log|collections|crypto».git",\n  "state" : {\n    "revision" : "«hex:40»",\n    "version" : "2.«n2».«n»"\n  }\n}
@ nhash-renv-julia-manifest
"jsonlite": {\n  "Package": "jsonlite",\n  "Version": "1.8.«n»",\n  "Source": "Repository",\n  "Repository": "CRAN",\n  "Hash": "«hex:32»"\n} ¦ julia_version = "1.10.«n»"\nmanifest_format = "2.0"\nproject_hash = "«hex:40»"
[[deps.«pick:JSON3|DataFrames|CSV|HTTP»]]\ndeps = ["Dates", "Mmap", "Parsers", "UUIDs"]\ngit-tree-sha1 = "«hex:40»"\nuuid = "«uuid»"\nversion = "1.«n2».«n»"
@ nhash-composer-vcpkg-zon
"source": {\n    "type": "git",\n    "url": "https://github.com/symfony/«pick:console|http-kernel|yaml».git",\n    "reference": "«hex:40»"\n},\n"dist": {\n    "type": "zip",\n    "shasum": ""\n} ¦ "content-hash": "«hex:32»",
{\n  "name": "«app»",\n  "builtin-baseline": "«hex:40»",\n  "dependencies": ["fmt", "spdlog"]\n} ¦ .zap = .{\n    .url = "https://github.com/zigzap/zap/archive/refs/tags/v0.«n».«n».tar.gz",\n    .hash = "1220«hex:64»",\n},
@ nhash-bazel-archives
http_archive(\n    name = "rules_go",\n    sha256 = "«hex:64»",\n    urls = ["https://github.com/bazelbuild/rules_go/releases/download/v0.«n2».0/rules_go-v0.«n2».0.zip"],\n)
bazel_dep(name = "protobuf", version = "2«n».«n»")\narchive_override(module_name = "abseil-cpp", integrity = "sha256-«b64:32»", strip_prefix = "abseil-cpp-«hex:7»") ¦ "https://bcr.bazel.build/modules/rules_cc/0.0.«n2»/MODULE.bazel": "«hex:64»",
@ nhash-lfs-dvc-pointers
version https://git-lfs.github.com/spec/v1\noid sha256:«hex:64»\nsize «n7» ¦ outs:\n- md5: «hex:32»\n  size: «n8»\n  hash: md5\n  path: data/raw/«pick:images|events|transactions»
$ git lfs ls-files -l\n«hex:64» * models/«app»-v«n».onnx\n«hex:64» - assets/demo.mp4 ¦ stages:\n  train:\n    cmd: python train.py\n    deps:\n    - path: data/prepared\n      md5: «hex:32».dir\n      size: «n7»\n      nfiles: «n3»
@ nhash-ipfs-cids
$ ipfs add -r site/\nadded Qm«b58:44» site/index.html\nadded Qm«b58:44» site ¦ ipfs://bafybei«b32l:52»/metadata/«n4».json ¦ $ ipfs pin ls --type=recursive\nbafybei«b32l:52» recursive\nQm«b58:44» recursive ¦ _dnslink.«app».«corp». 300 IN TXT "dnslink=/ipfs/bafybei«b32l:52»"
@ nhash-tpm-machine-ids
$ tpm2_pcrread sha256:0,7\n  sha256:\n    0 : 0x«HEX:64»\n    7 : 0x«HEX:64» ¦ $ cat /etc/machine-id\n«hex:32» ¦ $ cat /proc/sys/kernel/random/boot_id\n«uuid»
$ hostnamectl\n Static hostname: «host»\n      Machine ID: «hex:32»\n         Boot ID: «hex:32»\n  Virtualization: kvm\nOperating System: Debian GNU/Linux 12 (bookworm)
@ nhash-rpm-signature-info
$ rpm -qi «pick:openssl-libs|glibc|kernel-core|curl» | grep -E 'Version|Signature'\nVersion     : «ver»\nSignature   : RSA/SHA256, «pick:Mon|Tue|Wed» «dd» «mon» 2025 «hms» AM UTC, Key ID «hex:16»
$ rpm -K «app»-«ver»-1.x86_64.rpm\n«app»-«ver»-1.x86_64.rpm: digests signatures OK ¦ $ rpm -q --qf '%{NAME} %{SIGMD5}\\n' «pick:bash|sudo|openssh»\n«pick:bash|sudo|openssh» «hex:32»
@ nhash-dnssec-records
«app».«corp».  3600  IN  DS  «n5» 13 2 «HEX:64» ¦ «host».«corp». 300 IN SSHFP «pick:1|4» 2 «hex:64» ¦ _443._tcp.«app».«corp». 3600 IN TLSA 3 1 1 «hex:64» ¦ «corp». 3600 IN DNSKEY 257 3 13 «b64:64»
@ nhash-http-checksum-headers
< HTTP/2 200\n< etag: "«hex:32»"\n< x-amz-version-id: «an:32»\n< x-amz-server-side-encryption: AES256 ¦ x-amz-checksum-sha256: «b64:32»\nContent-MD5: «b64:16»
< x-amz-request-id: «HEX:16»\n< x-amz-id-2: «b64:56» ¦ ETag: W/"«hex:8»-«b64u:20»"\nLast-Modified: «pick:Mon|Tue|Thu», «dd» «mon» 2025 «hms» GMT
@ nhash-codesign-apksigner
$ codesign -dvvv /Applications/«App».app\nIdentifier=com.«app».desktop\nFormat=app bundle with Mach-O universal (x86_64 arm64)\nCodeDirectory v=20500 size=«n5» flags=0x10000(runtime) hashes=«n3»+7 location=embedded\nHash type=sha256 size=32\nCDHash=«hex:40»\nTeamIdentifier=«AN:10»
$ apksigner verify --print-certs app-release.apk\nSigner #1 certificate DN: CN=«App», O=«App» Ltd, C=DE\nSigner #1 certificate SHA-256 digest: «hex:64»\nSigner #1 certificate SHA-1 digest: «hex:40»\nSigner #1 certificate MD5 digest: «hex:32»
$ spctl -a -vv /Applications/«App».app\n/Applications/«App».app: accepted\nsource=Notarized Developer ID\norigin=Developer ID Application: «App» Ltd («AN:10»)
@ nhash-data-uri-images
<img alt="logo" width="32" height="32" src="data:image/png;base64,«png»"> ¦ "image/png": "«png»", ¦ .icon-«word»{background-image:url("data:image/png;base64,«png»")} ¦ ![plot](data:image/png;base64,«png»)
@ nhash-sigstore-rekor-entries
$ rekor-cli get --uuid «hex:64»\nLogID: «hex:64»\nIndex: «n8»\nIntegratedTime: «ts»\nUUID: «hex:16»«hex:64»
$ cosign tree ghcr.io/«org»/«app»:«ver»\n└── 🔐 Signatures for an image tag: ghcr.io/«org»/«app»:sha256-«hex:64».sig\n   └── 🍒 sha256:«hex:64» ¦ tlog entry created with index: «n8»\nPushing signature to: ghcr.io/«org»/«app»
@ nref-template-engines
password: <%= ENV.fetch("«envsec»") %> ¦ 'password' => '%env(«envsec»)%', ¦ {"«app»": {"token": "{{«pick:vault_token|api_token|secrets.token»}}"}}
#set( $pw = $config.getProperty("«app».«pick:smtp|db|ldap».password") ) ¦ var pwd = Configuration["«App»:«pick:Smtp|Db|Ldap»:Password"]; ¦ api_key: {{ .Env.«envsec» }}
@ nref-azure-keyvault-refs
«envsec»=@Microsoft.KeyVault(SecretUri=https://«kv».vault.azure.net/secrets/«secname»/) ¦ "value": "@Microsoft.KeyVault(VaultName=«kv»;SecretName=«secname»)"
adminPassword: kv.getSecret('«secname»')  // «kv» ¦ $ az webapp config appsettings list -n «app» -g rg-«app» --query "[?name=='«envsec»']"\n[\n  {\n    "name": "«envsec»",\n    "slotSetting": false,\n    "value": "@Microsoft.KeyVault(SecretUri=https://«kv».vault.azure.net/secrets/«secname»/«hex:32»)"\n  }\n]
@ nref-gcp-run-secrets
$ gcloud run deploy «svc» --image «region»-docker.pkg.dev/«proj»/«app»/«svc»:«ver» --set-secrets=«envsec»=«secname»:latest ¦ spring.datasource.password=${sm://«proj»/«secname»} ¦ $ gcloud secrets versions access latest --secret=«secname» --project=«proj» > /run/secrets/«secname»
@ nref-1password-doppler-refs
«envsec»="op://«pick:Prod|Infra|Shared»/«App» «pick:Postgres|SMTP|Stripe»/«pick:password|credential|api key»" ¦ $ op run --env-file=.env.tpl -- ./bin/«app» serve
$ op read "op://Infra/«secname»/credential" | docker login ghcr.io -u «user» --password-stdin ¦ $ doppler run --project «app» --config «pick:prd|stg|dev» -- npm start ¦ $ infisical run --env=«env» --path=/«app» -- node server.js
@ nref-external-secrets-csi
apiVersion: external-secrets.io/v1beta1\nkind: ExternalSecret\nmetadata:\n  name: «app»-db\nspec:\n  secretStoreRef:\n    name: vault-backend\n    kind: ClusterSecretStore\n  data:\n  - secretKey: password\n    remoteRef:\n      key: «kvpath»\n      property: password
  parameters:\n    objects: |\n      array:\n        - |\n          objectName: «secname»\n          objectType: secret\n    keyvaultName: «kv» ¦ spec:\n  provider: aws\n  parameters:\n    objects: |\n      - objectName: "arn:aws:secretsmanager:«region»:«d:12»:secret:«app»/db-«an:6»"
@ nref-vault-agent-templates
{{ with secret "«kvpath»" }}«envsec»={{ .Data.data.password }}{{ end }} ¦ template {\n  source      = "/etc/vault-agent/«app».ctmpl"\n  destination = "/run/secrets/«app».env"\n}
{{- with secret "database/creds/«app»-ro" -}}\npostgresql://{{ .Data.username }}:{{ .Data.password }}@«host»:5432/«db»\n{{- end }} ¦ vault.hashicorp.com/agent-inject-secret-«app»: "«kvpath»"
@ nref-systemd-credentials
[Service]\nLoadCredential=db-password:/etc/credstore/«app»-db-password\nExecStart=/usr/bin/«app» --password-file=${CREDENTIALS_DIRECTORY}/db-password ¦ [Service]\nLoadCredentialEncrypted=«secname»:/etc/credstore.encrypted/«secname».cred
[Container]\nImage=docker.io/library/postgres:1«n»\nSecret=«secname»,type=env,target=POSTGRES_PASSWORD ¦ ImportCredential=«app».*\nEnvironment=API_TOKEN_FILE=%d/«secname»
@ nref-puppet-salt-chef-lookups
password => Sensitive(lookup('«app»::db_password')), ¦ «user»:\n  mysql_user.present:\n    - password: {{ salt['sdb.get']('sdb://vault/«kvpath»?password') }}
db_pass = data_bag_item('«app»', 'database', Chef::EncryptedDataBagItem.load_secret('/etc/chef/encrypted_data_bag_secret'))['password'] ¦ $smtp_password = Deferred('vault_lookup::lookup', ['«kvpath»', {'field' => '«pick:password|value|smtp_pass»'}])  # «app»
@ nref-env-read-more-langs
local pw = os.getenv("«envsec»") or error("«envsec» not set") ¦ let db_password = std::env::var("«envsec»").expect("«envsec» must be set"); ¦ const token = try std.process.getEnvVarOwned(allocator, "«envsec»"); ¦ pw <- Sys.getenv("«envsec»", unset = NA)
password = System.fetch_env!("«envsec»") ¦ secret = ENV["«envsec»"] ¦ final apiKey = Platform.environment['«envsec»'] ?? '';
let token = ProcessInfo.processInfo.environment["«envsec»"] ?? "" ¦ const char *pw = getenv("«envsec»"); ¦ my $pw = $ENV{«envsec»} // die "missing «envsec»"; ¦ mpw <- lookupEnv "«envsec»"
@ nref-k8s-projected-volumes
envFrom:\n- secretRef:\n    name: «secname»\n- configMapRef:\n    name: «app»-config ¦ imagePullSecrets:\n- name: regcred-«env»\n- name: «app»-ghcr
volumes:\n- name: «app»-creds\n  projected:\n    sources:\n    - secret:\n        name: «secname»\n        items:\n        - key: password\n          path: db/password ¦ secretGenerator:\n- name: «app»-db\n  files:\n  - password=secrets/«env»/db-password.txt
@ nref-cli-password-file-flags
auth_basic "«App» admin";\nauth_basic_user_file /etc/nginx/htpasswd.«app»; ¦ <Location "/«app»">\n    AuthType Basic\n    AuthUserFile "/etc/apache2/.htpasswd-«app»"\n    Require valid-user\n</Location>
$ restic -r sftp:backup@«host»:/srv/restic --password-command "pass show backup/restic" snapshots ¦ $ rsync -av --password-file=/etc/rsyncd.secret ./dist rsync://deploy@«host»/«app»
$ ansible-playbook site.yml -i inventories/«env» --vault-password-file ~/.vault_pass.txt --limit «host» ¦ $ mysqldump --defaults-extra-file=/root/.«db».cnf --single-transaction «db» | zstd > «db».sql.zst ¦ $ sshpass -f ~/.ssh/«host».pass ssh «user»@«host» uptime
@ nref-notebook-secret-scopes
db_pass = dbutils.secrets.get(scope="«scope»", key="«secname»") ¦ spark.hadoop.fs.azure.account.key.«app»store.dfs.core.windows.net {{secrets/«scope»/«secname»}}
api_key = Variable.get("«secname»")\nconn = BaseHook.get_connection("«db»_default") ¦ token <- keyring::key_get("«secname»", username = "«user»")
@ nmask-cli-auth-status
$ gh auth status\ngithub.com\n  ✓ Logged in to github.com account «nick» (keyring)\n  - Active account: true\n  - Git operations protocol: https\n  - Token: gho_************************************\n  - Token scopes: '«pick:gist|admin:org|workflow»', 'read:org', 'repo'
$ aws configure list\n      Name                    Value             Type    Location\n      ----                    -----             ----    --------\n   profile                «env»              manual    --profile\naccess_key     ****************«AN:4» shared-credentials-file\nsecret_key     ****************«an:4» shared-credentials-file\n    region                «region»      config-file    ~/.aws/config
$ glab auth status\ngitlab.«corp»\n  ✓ Logged in to gitlab.«corp» as «nick» (/home/«luser»/.config/glab-cli/config.yml)\n  ✓ Token: **************************
@ nmask-package-config-protected
$ npm config list\n; "user" config from /home/«luser»/.npmrc\n\n//registry.npmjs.org/:_authToken = (protected)\n@«org»:registry = "https://npm.pkg.github.com/" ¦ $ cd ~/src/«app» && yarn config get npmAuthToken\n********
$ pip config list\nglobal.index-url='https://__token__:****@pkgs.«corp»/simple/' ¦ $ poetry config --list | grep http-basic\nhttp-basic.«app»-private.username = "__token__"\nhttp-basic.«app»-private.password = null ¦ $ gem sources\n*** CURRENT SOURCES ***\n\nhttps://«user»:****@gems.«corp»/
@ nmask-kubectl-config-view
$ kubectl config view\napiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: DATA+OMITTED\n    server: https://«cluster».«corp»:6443\n  name: «cluster»\nusers:\n- name: «user»\n  user:\n    token: REDACTED
users:\n- name: «cluster»-«user»\n  user:\n    client-certificate-data: DATA+OMITTED\n    client-key-data: DATA+OMITTED ¦ - name: legacy-basic-«cluster»\n  user:\n    password: REDACTED\n    username: «user»
@ nmask-framework-param-filtering
Parameters: {"session"=>{"login"=>"«luser»", "password"=>"[FILTERED]"}, "commit"=>"Log in"} ¦ Request data: {"login":"«luser»","password":"[Filtered]","remember":«pick:true|false»}
[info] POST /api/login\n[debug] Processing with «App»Web.SessionController.create/2\n  Parameters: %{"password" => "[FILTERED]", "username" => "«luser»"}
'DATABASES': {'default': {'ENGINE': 'django.db.backends.postgresql', 'HOST': '«host»', 'NAME': '«db»', 'PASSWORD': '********************', 'USER': '«user»'}}
"spring.datasource.password": {\n  "value": "******",\n  "origin": "System Environment Property \"SPRING_DATASOURCE_PASSWORD\""\n}\n"spring.datasource.url": {\n  "value": "jdbc:postgresql://«host»:5432/«db»"\n}
@ nmask-ansible-no-log-output
TASK [«app» : Set database password] ******************************\nok: [«host»] => {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result", "changed": false}
TASK [users : Create service accounts] ****************************\nchanged: [«host»] => (item=None)\nchanged: [«host»] => (item=None)\nok: [«host»] => (item=None) ¦ fatal: [«host»]: FAILED! => {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result"}
@ nmask-pulumi-secret-config
$ pulumi config\nKEY              VALUE\naws:region       «region»\n«app»:dbPassword  [secret]\n«app»:replicas   «n»
    + «app»:index:Database: (create)\n        [urn=urn:pulumi:«env»::«app»::«app»:index:Database::main]\n        password  : [secret]\n        username  : "«user»" ¦ config:\n  «app»:apiToken:\n    secure: v1:«b64:12»:«b64:48» ¦ encryptionsalt: v1:«b64:8»:«b64:24»
@ nmask-secret-store-listings
$ aws secretsmanager list-secrets --query 'SecretList[].Name'\n[\n    "«env»/«app»/db",\n    "«env»/«app»/stripe",\n    "«env»/shared/smtp"\n] ¦ $ az keyvault secret list --vault-name «kv» --query "[].name" -o tsv\n«secname»\nsql-admin-password\nstorage-connection-string
$ gcloud secrets versions list «secname» --project «proj»\nNAME  STATE     CREATED              DESTROYED\n«n»     enabled   «date»T«hms»  -\n1     disabled  «date»T«hms»  -
$ vault kv metadata get «kvpath»\n========== Metadata ==========\nKey                     Value\n---                     -----\ncreated_time            «ts»\ncurrent_version         «n»\nmax_versions            0
@ nmask-ui-text-bullets
Password  ••••••••••••  [Show]   Last changed «date» ¦ API key: sk-••••••••••••••••••••«an:4»   Created «date» ¦ Card •••• •••• •••• «d:4»   Expires «mm»/«yy»
Recovery codes: ••••-•••• («n» remaining, generated «date») ¦ Webhook secret  whsec_••••••••••••••••  Reveal  («App», «env») ¦ Phone number  ••• ••• ••«d:2»  Verified «date»
@ ndoc-graphql-openapi-schemas
input «pick:Login|SignIn|Auth|Credentials»Input {\n  «pick:email|username|login»: String!\n  password: String!\n  «pick:otp|totpCode|mfaCode|rememberMe»: «pick:String|Boolean»\n}
components:\n  securitySchemes:\n    «pick:ApiKeyAuth|apiKey|partnerKey»:\n      type: apiKey\n      in: «pick:header|query»\n      name: «pick:X-API-Key|api_key|X-Partner-Token»
password:\n  type: string\n  format: password\n  minLength: «n2»\n  maxLength: «n3»\n  writeOnly: true ¦ type Mutation {\n  rotate«pick:Api|Deploy|Service»Token(projectId: ID!, ttlDays: Int = «n2»): «pick:ApiToken|Token|Rotation»Payload!\n  resetPassword(token: String!, newPassword: String!): Boolean!\n}
@ ndoc-protobuf-thrift-avro
message «pick:Create|Update|Rotate»«pick:ApiKey|Credential|Token»Request {\n  string «pick:project_id|tenant_id|org_id» = 1;\n  string api_key = «n»;\n  google.protobuf.Duration ttl = «n2»;\n} ¦   optional string client_secret = «n» [(google.api.field_behavior) = INPUT_ONLY];  // «pick:write-only|never logged|redacted in responses»
struct «pick:Login|Auth|Session»Request {\n  1: required string username,\n  2: required string password,\n  3: optional i32 ttl_seconds = «n4»\n} ¦ {"name": "«pick:password_hash|token_digest|secret_ref»", "type": "string", "doc": "«pick:bcrypt hash|sha256 digest|vault path», never the raw value («n»)"}
@ ndoc-html-credential-forms
<input type="password" name="«pick:password|passwd|pass|current-password»" id="«pick:pw|password|login-pass»" autocomplete="current-password" minlength="«n»" required>
<label for="pin">PIN</label>\n<input id="pin" type="password" inputmode="numeric" maxlength="«pick:4|6|8»" pattern="[0-9]*" aria-describedby="pin-help-«n»">
<input type="password" name="new_password" autocomplete="new-password" aria-describedby="pw-hint-«n»">\n<small id="pw-hint-«n»">At least «n2» characters.</small> ¦ <form method="post" action="/«pick:login|signin|session»"><input type="hidden" name="next" value="/«pick:dashboard|billing|settings»/«n3»"><input type="password" name="password"></form>
@ ndoc-orm-migrations
add_column :«pick:users|admins|accounts», :«pick:encrypted_password|password_digest|api_token_digest», :string, null: false, default: "", limit: «n3» ¦ add :«pick:password_hash|api_key_hash|reset_token», :string, null: «pick:true|false», size: «n3»
migrations.AddField(\n    model_name='«pick:account|profile|integration»',\n    name='«pick:api_token|webhook_secret|password_changed_at»',\n    field=models.CharField(max_length=«n3», blank=True),\n), ¦ $table->string('«pick:password|remember_token|two_factor_secret»', «n3»)->nullable();
@ ndoc-sudoers-login-defs
Defaults    passwd_tries=«n», passwd_timeout=«n» ¦ %«pick:wheel|admin|ops|deploy» ALL=(ALL) NOPASSWD: /usr/bin/systemctl restart «svc» ¦ Defaults:«user» !requiretty, timestamp_timeout=«n2» ¦ PASS_MAX_DAYS\t«n3»\nPASS_MIN_DAYS\t«n»\nPASS_WARN_AGE\t«n»\nENCRYPT_METHOD SHA512
@ ndoc-changelog-entries
- Fixed: `--token` was ignored when `«envsec»` was also set (#«n4») ¦ * Added `password_file` option to the «pick:SMTP|LDAP|Redis» «pick:notifier|backend|store» («ver»)
### Security\n- Rotate `«envsec»` after upgrading to «ver»; old sessions are invalidated. ¦ «ver» («date»)\n  - api: `POST /v1/tokens` now returns the token id, never the secret (#«n4»)
@ ndoc-auth-prompts-transcripts
[sudo] password for «luser»:\nSorry, try again.\n[sudo] password for «luser»: ¦ Enter passphrase for key '/home/«luser»/.ssh/id_«pick:ed25519|rsa|ecdsa»':
Enter PEM pass phrase:\nVerifying - Enter PEM pass phrase:\nwriting «pick:RSA|EC» key to «app»-«n».key ¦ passwd: «pick:password updated successfully|Authentication token manipulation error|password unchanged»\n$ chage -l «luser» | head -n 1\nLast password change\t\t\t\t\t: «mon» «dd», 2025
Vault password («pick:prod|staging|default»):\nERROR! Decryption failed (no vault secrets were found that could decrypt) on «pick:group_vars|host_vars»/«env»/vault.yml
@ ndoc-auth-metrics
# HELP auth_token_refresh_total Number of token refreshes.\n# TYPE auth_token_refresh_total counter\nauth_token_refresh_total{client="«app»"} «n5» ¦ password_reset_requests_total{channel="«pick:email|sms»"} «n4»
keycloak_failed_login_attempts{realm="«pick:master|corp|customers»",provider="keycloak",error="invalid_user_credentials"} «n4» ¦ vault_token_count{namespace="«pick:root|team-a|ci»"} «n3»\nvault_secret_kv_count{mount_point="secret/"} «n4»
@ ndoc-settings-keys-no-values
PASSWORD_MIN_LENGTH = «n2»\nPASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"] ¦ session_secret_rotation_days: «n2»\ntoken_ttl: «n4»s\napi_key_header: X-«pick:Api|App|Client»-Key
"auth": {"passwordPolicy": {"minLength": «n2», "requireSymbols": «pick:true|false»}, "tokenLifetimeMinutes": «n3»} ¦ [security]\ndisable_initial_admin_creation = «pick:true|false»\ncookie_secure = true\nsecret_key_file = /etc/«app»/secret_key
@ ndoc-secret-scanner-findings
Check: CKV_AWS_41: "Ensure no hard coded AWS access key and secret key exists in provider"\n\tFAILED for resource: aws.default\n\tFile: /«pick:providers|main|versions».tf:«n»-«n2»
{"type": "Secret Keyword", "filename": "«pick:config/settings.py|deploy/values.yaml|src/app.ts»", "hashed_secret": "«hex:40»", "is_verified": false, "line_number": «n3»}
«pick:config/app.yml|docker-compose.yml|terraform.tfvars»:«n3»: generic-api-key (entropy «n».«n2»), secret redacted ¦ ┌ python.django.security.«pick:passwords.password-empty-string|audit.unvalidated-password»\n│ «pick:Hardcoded|Empty» password detected in «pick:settings.py|views.py»:«n3»
@ nnum-ndc-cas-hs-codes
NDC «d:5»-«d:3»-«d:2»  «pick:Amoxicillin 500 mg capsule|Metformin 850 mg tablet|Ibuprofen 200 mg tablet»  qty «n3» ¦ CAS «n4»-«n2»-«d:1»  «pick:ethanol|acetone|sodium chloride|citric acid»  purity «n2».«n»%
HS «d:4».«d:2».«d:4»  «pick:Portable automatic data processing machines|Parts of engines|Cotton T-shirts»  duty «n».«n»% ¦ UN «d:4» «pick:Class 3 Flammable liquid|Class 8 Corrosive|Class 9 Misc»  packing group «pick:I|II|III»
@ nnum-scholarly-identifiers
ORCID: https://orcid.org/«orcid» ¦ PMID: «d:8»   PMCID: PMC«d:7»   DOI: 10.«n4»/«pick:s41586|j.cell|nejmoa»-0«d:2»-«d:5»-«d:1» ¦ 020 __ $a «isbn13» (hardback) :$c £«n2».99 ¦ arXiv:2«d:1»«pick:01|03|05|07|09|11».«d:5»v«n»  [«pick:cs.CL|stat.ML|q-bio.GN|astro-ph.HE»]
@ nnum-sports-tables
«n». «team»\t«n2»\t«n2»\t«n»\t«n»\t«n2»:«n2»\t«n2» ¦ «pick:FT|HT» «team» «n»–«n» «team»  («pick:Mbappé|Salah|Kane|Osimhen|Vinícius» «n2»', «n2»') ¦ Box score: «team» «n3» – «n3» «team» | FG «n2»-«n2» | 3PT «n»-«n2» | FT «n2»-«n2» ¦ Lap «n2»: «n»:«n2».«d:3»  gap «n».«d:3»s  pit «n»
@ nnum-lottery-draws
Winning numbers «date»: «d:2» «d:2» «d:2» «d:2» «d:2»  Powerball: «d:2»  Power Play: «n»x ¦ Draw #«n4»: «d:2»-«d:2»-«d:2»-«d:2»-«d:2»-«d:2»  Bonus «d:2» ¦ EuroMillions «date»: «d:2» «d:2» «d:2» «d:2» «d:2» ★ «d:2» «d:2» ¦ Bingo card «n3»: B«d:2» I«n2» N«n2» G«n2» O«n2»
@ nnum-container-vin-serials
Container «pick:MSCU|MAEU|CMAU|HLXU|TGHU» «d:6» «d:1»  seal «d:7»  «pick:40HC|20GP|45G1»  gross «n5» kg ¦ VIN: «vin»   Odometer: «n6» km ¦ S/N «AN:12»  P/N «d:3»-«d:5»-«d:2»  Rev «pick:A|B|C» ¦ IMO «d:7»  MMSI «d:9»  call sign «AN:5»
@ nnum-product-spec-sheets
Dimensions (W×H×D): «n4» × «n3» × «n2» mm  Weight: «n2».«n» kg ¦ Display: «pick:3840 × 2160|2560 × 1440|1920 × 1200» px, «n3» Hz, «n3» cd/m²  Ports: «n» × USB-C ¦ Frequency range: «n4»–«n4».«n» MHz  Tx power: «n2» dBm  Channels: «n2» ¦ ISO «n3»–«n5»  Shutter 1/«n4» – «n2» s  Sensor «n2».«n» MP
@ nnum-regional-amount-formats
Total: ₹«n2»,«d:2»,«d:3».«d:2» (incl. GST) ¦ Saldo: R$ «n3».«d:3»,«d:2» ¦ 合計 ¥«n»,«d:3»,«d:3»（税込） ¦ Balance carried forward: ₦«n»,«d:3»,«d:3».00 ¦ Montant HT : «n3» «d:3»,«d:2» € ¦ Tutar: «n3».«d:3»,«d:2» TL
@ nnum-ping-mtr-stats
64 bytes from «host».«corp»: icmp_seq=«n» ttl=«n2» time=«n2».«d:1» ms ¦ --- «host».«corp» ping statistics ---\n«n2» packets transmitted, «n2» received, 0% packet loss, time «n5»ms\nrtt min/avg/max/mdev = «n2».«d:3»/«n2».«d:3»/«n2».«d:3»/«n».«d:3» ms
HOST: «host»                    Loss%   Snt   Last   Avg  Best  Wrst StDev\n  1.|-- gw.«corp»          0.0%    «n2»    «n».«n»   «n».«n»   «n».«n»   «n».«n»   0.«n»
@ nnum-legal-docket-numbers
Case No. «n»:«n2»-cv-«d:5»-«AN:3» ¦ Docket No. «n2»-«d:4»  Argued «mon» «dd», 2025 ¦ «pick:H.R.|S.» «n4» — «pick:Data Privacy Act|Broadband Access Act|Farm Credit Act» (119th Congress) ¦ 21 CFR § «n3».«n2»(«pick:a|b|c»)(«n»)
@ nnum-timetables
«pick:ICE|IC|RE|TGV|AVE» «n3»  «hm»  Gl. «n»  «city» → «city» «hm» ¦ Flight «pick:LH|BA|AF|TK|EK|SQ» «n3»  «pick:FRA|LHR|CDG|IST|DXB|SIN»-«pick:JFK|NRT|GRU|LOS|DEL|MEX»  dep «hm»  arr «hm»  gate «pick:A|B|C|D»«n2»
Bus «n3»  «hm» «hm» «hm» «hm»  (Mon–Fri) ¦ Platform «n» – «hm» «pick:Shinkansen Nozomi|Limited Express Hitachi|Keihin-Tohoku Line» «n3»号
@ nnum-statement-refs
«date»  CARD PURCHASE «pick:TESCO STORES|REWE|CARREFOUR|LIDL» «n4»   -«n2».«d:2»   «n4».«d:2» ¦ Ref: «d:4» «d:4»  Amount: «amount»  Value date: «date»
Mandate ref «AN:3»-«d:8»  Creditor ID DE«d:2»ZZZ«d:11»  Sequence «pick:FRST|RCUR» ¦ Statement «n3»/«n4»  Opening balance «n4».«d:2»  Closing balance «n4».«d:2»
@ nnum-sensor-telemetry
GPS fix lat=«n2».«d:6» lon=-«n2».«d:6» alt=«n3».«n»m sats=«n2» hdop=0.«n» ¦ $GPGGA,«d:6»,«d:4».«d:3»,N,«d:5».«d:3»,E,1,«d:2»,0.«n»,«n3».«n»,M,«n2».«n»,M,,*«HEX:2»
{"dev":"«host»","t":«epoch»,"temp":«n2».«d:2»,"hum":«n2».«d:1»,"p":«n4».«d:2»} ¦ accel=(«d:1».«d:3», -«d:1».«d:3», 9.«d:3») gyro=(0.«d:3», 0.«d:3», -0.«d:3») ¦ Modbus «host» reg 4«d:4»..4«d:4»: [«n4», «n4», «n3», «n5»] ¦ meter «d:8» kWh «n5».«d:2» V «n3».«n» A «n2».«d:2» PF 0.«d:2»
@ npii-test-fixture-reserved-mail
assertEquals("«luser»@example.org", account.getEmail()); ¦ it("sends receipt", () => expect(mailer.to).toBe("«luser»+receipt@example.com"));
user = User.objects.create_user(username="«luser»", email="«luser»@«pick:example.com|example.net|mail.test|corp.example»", password=None) ¦ fixtures:\n  - email: «luser»@«pick:shop.test|example.org|qa.invalid»\n    name: «first» «last»
@ npii-at-in-code-and-packages
@«pick:Autowired|Inject»\nprivate «pick:OrderService|Clock|Duration» «pick:orders|clock|timeout»«n»; ¦ @app.route("/«pick:login|health|api/v1/orders»/<int:id_«n»>", methods=["«pick:GET|POST»"])
$ npm install @«pick:babel/preset-env|types/node|angular/core|vitejs/plugin-react»@«ver» ¦ DECLARE @«pick:UserId|OrderId|BatchId» INT = «n4»;\nSELECT TOP («n2») * FROM dbo.Orders WHERE CustomerId = @«pick:UserId|OrderId|BatchId»; ¦ $ go install golang.org/x/tools/gopls@v0.«n2».«n»
@ npii-invalid-iban-sepa
<CdtrAcct><Id><IBAN>«ibanbad»</IBAN></Id></CdtrAcct> ¦ IBAN check failed for «ibanbad»: checksum mismatch ¦ {"beneficiary":{"name":"«first» «last»","iban":"«ibanbad»"},"status":"REJECTED","reason":"AC01 IncorrectAccountNumber"}
@ npii-luhn-invalid-pans
«ts» EMV: Tag 5A (PAN) = «cardbadp»  -> LUHN FAIL, card rejected ¦ Card number «cardbad» is not valid (checksum). Please re-enter. ¦ {"error":{"code":"incorrect_number","param":"number","message":"Your card number is incorrect."},"input":"«cardbad»"}
@ npii-invalid-ssn-records
applicant_ssn=«ssnbad» validation=INVALID_RANGE ¦ «first» «last»,«ssnbad»,«date»  # synthetic test record, never-issued range ¦ SSN «ssnbad» rejected: this area/group/serial is never issued
@ npii-reserved-mail-dns-tls
«app».«corp». 3600 IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@«pick:example.com|example.net|example.org»; pct=«n2»" ¦ subject=C = DE, O = «App» Test, CN = «app».test, emailAddress = «pick:pki|admin|hostmaster»@example.org
$ certbot register --email «pick:ops|admin|certs»@example.com --agree-tos --no-eff-email  # «env» «n» ¦ «app».test. 3600 IN SOA «pick:ns1|dns1».example.net. hostmaster.example.net. «d:10» 7200 3600 1209600 300
@ npii-short-and-service-codes
Text STOP to «d:5» to unsubscribe. Msg&data rates may apply. ¦ Dial *«n3»# to check your balance, *«n3»*«n»# for data bundles.
In an emergency call «pick:112|911|999|000|110|119»; non-emergency police «pick:101|311|17|3311» («city») ¦ *#06# shows the device identifier on «pick:Pixel 8|Galaxy S23|Moto G54|iPhone 15» («pick:settings|dialer» «n»)
@ npii-scp-rsync-targets
$ rsync -az --delete ./dist/ «user»@«host»:/srv/«app»/releases/«date»/ ¦ $ scp «pick:backup|dump|export»-«date».tar.gz «luser»@«host»:~/ ¦ $ ssh -J «luser»@jump01 «user»@«host» 'systemctl status «svc»' ¦ Host «host»\n    HostName «host».«corp»\n    User «user»\n    ProxyJump «luser»@jump01
@ npii-commit-trailers-reserved
Signed-off-by: «first» «last» <«luser»@example.org> ¦ Co-authored-by: «first» «last» <«n6»+«nick»@users.noreply.example>
Reviewed-by: «first» «last» <«luser»@«pick:kernel.test|example.net|dev.example»> ¦ Reported-by: «first» «last» <«luser»@example.com>\nFixes: «hex:12» ("«pick:net: fix refcount leak|mm: avoid double free|fs: handle EINTR»")
@ npii-card-bin-tables
BIN «d:6» | «pick:VISA|MASTERCARD|AMEX|DISCOVER» | «pick:CREDIT|DEBIT|PREPAID» | «pick:CLASSIC|GOLD|PLATINUM|BUSINESS» | «pick:US|DE|GB|BR|IN»
IIN ranges: Mastercard 2221–2720, 51–55; Visa 4; Amex 34, 37; JCB 3528–3589 (updated «date») ¦ card: «pick:4|5|37»«d:5»******«d:4» exp «mm»/«yy» auth «AN:6»
@ npii-phone-settings-no-number
SIM 1: «pick:No service|Emergency calls only|Searching»  |  SIM 2: empty  |  Build «AN:4».«d:6».«d:3» ¦ My number: Unknown\nNetwork: «pick:Vodafone|Airtel|Jio|Telkomsel|MTN|Claro» «pick:4G|5G|LTE»\nIMEI: (hidden)
ro.build.fingerprint=google/«pick:husky|shiba|panther»/«pick:husky|shiba|panther»:14/AP2A.«d:6».«d:3»/«d:8»:user/release-keys ¦ Caller ID: withheld  Duration: «n»:«mi»  Missed calls: «n»
@ npii-bank-ids-not-accounts
Routing (ABA): «aba»   Account: ****«d:4» ¦ BIC/SWIFT: «bic»   Bank: «pick:Deutsche Bank|BNP Paribas|HSBC UK|Banco Santander|ING» ¦ Sort code «d:2»-«d:2»-«d:2» (branch «city») ¦ IFSC: «pick:SBIN|HDFC|ICIC|UTIB»0«d:6»  MICR: «d:9»
@ nkey-wireguard-age-minisign
interface: wg0\n  public key: «b64:32»\n  private key: (hidden)\n  listening port: 51820\n\npeer: «b64:32»\n  endpoint: «host».«corp»:51820\n  allowed ips: fd00:«hex:4»::/64 ¦ $ age-keygen -y key.txt\nage1«bech:58»
untrusted comment: minisign public key «HEX:16»\n«minisignpub» ¦ recipients:\n  - age1«bech:58»\n  - age1«bech:58»
@ nkey-kubeconfig-ca-data
clusters:\n- cluster:\n    certificate-authority-data: «certpemb64»\n    server: https://«cluster».«corp»:6443\n  name: «cluster» ¦ webhooks:\n- name: «app».«corp»\n  clientConfig:\n    caBundle: «certpemb64»
$ kubectl get cm kube-root-ca.crt -o jsonpath='{.data.ca\\.crt}'\n-----BEGIN CERTIFICATE-----\n«certbody»\n-----END CERTIFICATE-----
@ nkey-jwks-documents
{"keys":[{"kty":"RSA","use":"sig","kid":"«hex:16»","alg":"RS256","n":"«b64u:256»","e":"AQAB"}]} ¦ {"keys":[{"kty":"EC","crv":"P-256","kid":"«uuid»","x":"«b64u:32»","y":"«b64u:32»","use":"sig"}]} ¦ {"kty":"OKP","crv":"Ed25519","x":"«b64u:32»","kid":"«pick:2025-|key-|sig-»«n2»"}
@ nkey-saml-metadata-certs
<md:KeyDescriptor use="signing">\n  <ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">\n    <ds:X509Data>\n      <ds:X509Certificate>«certb64flat»</ds:X509Certificate>\n    </ds:X509Data>\n  </ds:KeyInfo>\n</md:KeyDescriptor>
<md:EntityDescriptor entityID="https://sso.«corp»/saml/metadata" ID="_«hex:32»"> ¦ idp_cert_fingerprint: "«hexcolon:20»"  # «App» «env»
@ nkey-encrypted-blobs
~ apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: «app»-db\nspec:\n  encryptedData:\n    password: AgB«b64:300»
{"id": "«app»", "password": {"encrypted_data": "«b64:48»", "iv": "«b64:12»", "auth_tag": "«b64:16»", "version": 3, "cipher": "aes-256-gcm"}} ¦ -----BEGIN AGE ENCRYPTED FILE-----\n«b64:48»\n«b64:48»\n«b64:20»\n-----END AGE ENCRYPTED FILE-----
@ nkey-tls-client-debug
$ openssl s_client -connect «app».«corp»:443 -brief\nCONNECTION ESTABLISHED\nProtocol version: TLSv1.3\nCiphersuite: TLS_AES_256_GCM_SHA384\nPeer certificate: CN = «app».«corp»\nHash used: SHA256\nSignature type: ECDSA\nVerification: OK\nServer Temp Key: X25519, 253 bits
SSL-Session:\n    Protocol  : TLSv1.2\n    Cipher    : ECDHE-RSA-AES128-GCM-SHA256\n    Session-ID: «HEX:64»\n    Session-ID-ctx: \n    Start Time: «epoch»\n    Timeout   : 7200 (sec)
* SSL connection using TLSv1.3 / TLS_AES_128_GCM_SHA256 / X25519 / RSASSA-PSS\n* Server certificate:\n*  subject: CN=«app».«corp»\n*  start date: «mon» «dd» «hms» 2025 GMT\n*  issuer: C=US; O=Let's Encrypt; CN=R1«n»
@ nplain-gradle-maven-output
> Task :app:compile«pick:Kotlin|Java|DebugKotlin» UP-TO-DATE\n> Task :app:test\n\nBUILD SUCCESSFUL in «n2»s\n«n2» actionable tasks: «n» executed, «n2» up-to-date ¦ Downloading https://services.gradle.org/distributions/gradle-8.«n»-bin.zip\n.............10%.............20% («n3» ms)
[INFO] --- maven-jar-plugin:3.«n».0:jar (default-jar) @ «app»-core ---\n[INFO] Building jar: /builds/«app»/target/«app»-core-«ver».jar ¦ [INFO] Tests run: «n3», Failures: 0, Errors: 0, Skipped: «n», Time elapsed: «n».«d:3» s
@ nplain-go-dotnet-tests
=== RUN   Test«pick:ParseToken|HashPassword|RotateKeys|Login»\n--- PASS: Test«pick:ParseToken|HashPassword|RotateKeys|Login» (0.«d:2»s)\nPASS\nok  \tgithub.com/«org»/«app»/internal/auth\t0.«d:3»s
Passed!  - Failed:     0, Passed:   «n3», Skipped:     «n», Total:   «n3», Duration: «n» s - «App».Tests.dll (net8.0) ¦ ok  \tgithub.com/«org»/«app»/pkg/«pick:crypto|secrets|session»\t(cached)\tcoverage: «n2».«n»% of statements
@ nplain-ansible-helm-summaries
PLAY RECAP *********************************************************************\n«host»                    : ok=«n2»   changed=«n»    unreachable=0    failed=0    skipped=«n»    rescued=0    ignored=0
NAME    \tNAMESPACE\tREVISION\tUPDATED                                \tSTATUS  \tCHART              \tAPP VERSION\n«app»\t«env»    \t«n2»      \t«date» «hms».«d:6» +0000 UTC\tdeployed\t«app»-«ver»\t«ver»
@ nplain-systemctl-status
● «svc».service - «App» «svc»\n     Loaded: loaded (/etc/systemd/system/«svc».service; enabled; preset: enabled)\n     Active: active (running) since «pick:Mon|Tue|Wed|Thu|Fri» «date» «hms» UTC; «n»h ago\n   Main PID: «pid» («pick:node|java|python3|gunicorn»)\n      Tasks: «n2» (limit: «n5»)\n     Memory: «n3».«n»M\n        CPU: «n»min «n2».«d:3»s
«mon» «dd» «hms» «host» systemd[1]: Started «svc».service - «App» «svc». ¦ «mon» «dd» «hms» «host» systemd[1]: «svc».service: Consumed «n»min «n2».«d:3»s CPU time, «n3».«n»M memory peak.
@ nplain-package-upgrades
==> Upgrading «n» outdated packages:\n«pick:openssl@3|node|python@3.12|git» «ver» -> «ver»\n==> Pouring «pick:openssl@3|node|git»--«ver».arm64_sonoma.bottle.tar.gz ¦ Get:«n» http://deb.debian.org/debian bookworm/main amd64 «pick:libssl3|curl|openssh-client» amd64 «ver»-1~deb12u«n» [«n3» kB]
Upgraded:\n  «pick:kernel|systemd|glibc»-«ver»-«n3».el9.x86_64   «pick:curl|bash|sudo»-«ver»-«n».el9.x86_64\nComplete!
@ nplain-docker-ps-stats
CONTAINER ID   IMAGE          COMMAND                  CREATED       STATUS       PORTS      NAMES\n«hex:12»   «pick:postgres:16|redis:7|nginx:1.27»   "docker-entrypoint.s…"   «n» hours ago   Up «n» hours   «pick:5432|6379|80»/tcp   «app»-«pick:db|cache|web»-1
CONTAINER ID   NAME       CPU %     MEM USAGE / LIMIT     MEM %     NET I/O           BLOCK I/O         PIDS\n«hex:12»   «app»-web   «n».«n2»%     «n3».«n»MiB / 1.«n»GiB   «n2».«n2»%    «n».«n»MB / «n».«n»MB   «n»MB / 0B        «n2»
NAME                IMAGE      COMMAND   SERVICE   CREATED        STATUS          PORTS\n«app»-api-1   «app»-api   "./server"   api   «n» minutes ago   Up «n» minutes   [::]:8080->8080/tcp
@ nplain-swift-elixir-haskell-builds
Building for debugging...\n[«n»/«n2»] Compiling «App» «pick:Auth|Models|Routes».swift\nBuild complete! («n».«n2»s) ¦ ==> «app»\nCompiling «n2» files (.ex)\nGenerated «app» app («n».«d:3»s)
«app»> build (lib + exe)\nPreprocessing library for «app»-«ver»..\nBuilding library for «app»-«ver»..\n[«n» of «n2»] Compiling «App».«pick:Auth|Config|Types»
@ nplain-network-syslog
«mon» «dd» «hms» «host»: %LINK-3-UPDOWN: Interface GigabitEthernet«n»/0/«n2», changed state to «pick:up|down» ¦ «mon» «dd» «hms» «host»: %SYS-5-CONFIG_I: Configured from console by «user» on vty«n»
«mon» «dd» «hms» «host» mib2d[«pid»]: SNMP_TRAP_LINK_DOWN: ifIndex «n3», ifAdminStatus up(1), ifOperStatus down(2), ifName ge-0/0/«n» ¦ «mon» «dd» «hms» «host» %BGP-5-ADJCHANGE: neighbor «pick:UPSTREAM|IX-PEER|TRANSIT-A» Up
@ namb-factory-default-credentials
~ Default login for the «pick:iDRAC|iLO|camera|router|NAS»: «pick:root / calvin|admin / admin|admin / password|ubnt / ubnt|pi / raspberry» (change on first boot) — «App» deploy guide p.«n2»
~ environment:\n  RABBITMQ_DEFAULT_USER: guest\n  RABBITMQ_DEFAULT_PASS: guest\n  # «app» local dev only, port «port» ¦ MINIO_ROOT_USER=minioadmin\nMINIO_ROOT_PASSWORD=minioadmin  # «pick:local|dev|ci» only («app»)
~ GF_SECURITY_ADMIN_PASSWORD=admin\nGF_SERVER_HTTP_PORT=«n4» ¦ POSTGRES_PASSWORD=«pick:postgres|changeme|password|example»  # docker-compose.«pick:dev|local|test».yml («app»)
@ namb-fictional-phone-numbers
~ «first»: Call me at «fakeus». I'll be at the «pick:diner|office|station». ¦ INT. FLAT – NIGHT\n«FIRST» (into phone)\nIt's «fakeuk». Ring me back.
~ Sample contact for the «App» demo: «first» «last», «fakeuk2» ¦ Contact «first» on «fakeau» (fictional number for «App» screenshots)
@ namb-docs-sample-passwords
~ For example: «pick:mysql -u root -psecret|--password=s3cr3t|PGPASSWORD=postgres psql -h localhost|redis-cli -a foobared» (replace with your own; see section «n».«n»)
~ Never use a password like «pick:hunter2|P@ssw0rd|Password1!|letmein|qwerty123|correct horse battery staple» — «pick:it appears in every breach list|it is in the top-100 list|attackers try it first» («n2»% of audited accounts)
~ # Example only\nadmin_password = "«pick:changeme|CHANGE_ME|your-password-here|password123»"\nadmin_user = "«user»"
@ namb-truncated-tokens
~ Token: «pick:ghp_|glpat-|xoxb-|sk-proj-|npm_»«an:6»… (truncated, «n2» chars hidden) ¦ Using key sk-...«an:4» for project «app»
~ ghp_«an:8» ← only the first 12 characters are shown in the audit log («date») ¦ api_key: «pick:AKIA|AIza|sk_live_»«AN:4»...(redacted)
@ ntok-prefix-only-docs
Tokens that start with `«pick:ghp_|gho_|ghs_|github_pat_»` are GitHub «pick:personal access|OAuth|server-to-server|fine-grained» tokens; rotate them in Settings → Developer settings (updated «date»).
Use an `sk_test_` key in «pick:staging|CI|preview» and an `sk_live_` key only in production (see runbook §«n».«n»). ¦ regex: `«pick:glpat-[0-9A-Za-z_-]{20}|xox[baprs]-[0-9a-zA-Z-]{10,48}|AKIA[0-9A-Z]{16}|npm_[A-Za-z0-9]{36}»` («pick:gitleaks|trufflehog|custom» rule «n3»)
Prefix | Vendor\n`«pick:glpat-|glrt-|gldt-»` | GitLab\n`«pick:xoxb-|xoxp-|xapp-»` | Slack\n`«pick:dop_v1_|doo_v1_»` | DigitalOcean («date»)
@ ntok-token-audit-metadata
«ts» audit: personal_access_token.revoked id=«n5» name="«pick:ci-deploy|laptop|terraform»" scopes=[«pick:api|read_repository|write_registry»] user=«nick» ¦ {"token_id":"tok_«an:16»","prefix":"«pick:ghp_|glpat-|npm_»","last4":"«an:4»","created_at":"«ts»","revoked":true}
Token ID: «n6»  Name: «app»-ci  Last used: «date»  Expires: «date» ¦ $ gh api /orgs/«org»/personal-access-tokens --jq '.[].token_name'\n«pick:ci-deploy|renovate|release-bot»\n«pick:backstage|terraform|docs-sync»
"""

# ----------------------------------------------------------------------------- output & README
def readme_section(out, split, ncls):
    kinds = {p: Counter((r["label"], r["kind"]) for r in rows) for p, rows in out.items()}
    keys = set(kinds["tune"]) | set(kinds["holdout"])
    order = {"secret": 0, "pii": 1, "none": 2}
    lines = [BEGIN, "## fresh4.tune.jsonl / fresh4.holdout.jsonl", "",
             "Written by `gen_fresh4.py` (Python 3 standard library only; deterministic, fixed `SEED`:",
             "`python3 guard/heldout/gen_fresh4.py` rewrites both files byte-identically and this section).  Written",
             "from this README's row format and labelling policy and `shared/guard-corpus/README.md` only: no guard",
             "code, probe, test or generator of the other held-out sets was read, no row of another held-out set or",
             "of the development corpus was looked at, and the guard was not run.", "",
             f"* **How the rows are made.**  {len(split)} template families (`subkind`, {ROWS_PER_FAMILY} rows each) in forms the "
             "sections above do not list (new tools, log shapes, languages, config formats and prose situations; "
             "see the family lists).  A sensitive slot draws a fresh random value per row (seeded per family); its "
             "`[start, end)` code-point offsets are the span, asserted to equal the inserted value.  Passwords are "
             "random strong, human-made, leet or word passphrases (`-` `.` `_` `+`, CamelCase, spaces), PINs under "
             "a PIN label; generic secrets are hex, base64, base64url, base32, alphanumeric, symbol-rich or Azure "
             f"client-secret shaped; vendor tokens follow the published shapes of {len(VENDORS)} vendor rules (`rule`: AI, "
             "cloud, CI/CD, payments, messaging, observability), GitHub and npm tokens with a valid CRC32 base62 "
             "checksum; in `vtok-*` families the kind rotates per row identically in every family.  Private keys are "
             "DER structures of random bytes (RSA PKCS#1/PKCS#8, EC SEC1, Ed25519 PKCS#8, OpenSSH), raw or "
             f"JSON-escaped, span = whole block.  Phones: {len(PHONES)} countries ({' '.join(sorted(PHONES))}), "
             "international / E.164 / national, no fictional ranges; cards Luhn-valid with brand lengths, IBANs "
             f"mod-97-valid ({len(IBAN_SPEC)} countries), SSNs in valid ranges, e-mail on non-reserved domains.",
             "* **Checks.**  A row is redrawn if, with its spans blanked, it still holds a real-domain e-mail, a "
             "Luhn-valid 13–19 digit run, a valid IBAN or SSN, a `+` phone-like number, a JWT, a PEM private key, a "
             "vendor-prefixed token or an IPv4 address; non-ambiguous negatives must also hold no mixed-case+digit "
             "value of 16+ characters assigned to a password/secret/token/key name.  Texts are unique across files.",
             "* **Policy choices** (as above): database/queue URLs are `db-url` (span = the password); other "
             "passwords, passphrases, PSKs and PINs are `generic-password`; unprefixed random secrets under "
             "secret-like names are `generic-secret`; prefixed tokens without their own kind are `api-key` + `rule`.  "
             "Factory defaults, sample passwords in docs, truncated token prefixes, fictional phone numbers "
             "(555-01xx, Ofcom drama, ACMA ranges) and a SealedSecret value are `none` + `ambiguous`; encrypted "
             "blobs, public keys, certificates, digests and ids are `none`.  No row holds an IPv4 address.",
             "* **Negatives**: all `none` families except the eight `nplain-*` ones are hard look-alikes (digests, "
             "ids, public keys, secret references, masked values, schemas and names without values, phone-shaped "
             "numbers that are not phones, invalid cards/IBANs/SSNs, reserved-domain and non-e-mail `@`).",
             f"* **Split by family.**  Families are sorted by name; even index -> tune, odd -> holdout.  Each of the "
             f"{ncls} classes (name prefix) has an even number of families, so both files get the same class mix, but "
             "the holdout file holds only forms the tune file never shows.", "",
             "**Rule: fresh4.tune.jsonl may be looked at while fixing the guard; fresh4.holdout.jsonl is only "
             "measured, never read row by row.**  If the holdout has been looked at, change `SEED` and regenerate.", ""]
    for part in ("tune", "holdout"):
        fams = [n for n in sorted(split) if split[n] == part]
        lines += [f"Families in `{FILES[part]}` ({len(fams)}): " + ", ".join(f"`{n}`" for n in fams) + ".", ""]
    lines += ["| label | kind | tune | holdout |", "|---|---|---:|---:|"]
    for k in sorted(keys, key=lambda k: (order[k[0]], k[1])):
        lines.append(f"| {k[0]} | {k[1]} | {kinds['tune'][k]} | {kinds['holdout'][k]} |")
    n = {p: len(out[p]) for p in out}
    pos = {p: sum(r["label"] != "none" for r in out[p]) for p in out}
    amb = {p: sum(bool(r.get("ambiguous")) for r in out[p]) for p in out}
    nf = {p: sum(v == p for v in split.values()) for p in out}
    lines += [f"| **all** | | {n['tune']} | {n['holdout']} |",
              f"| positives | | {pos['tune']} ({100 * pos['tune'] / n['tune']:.1f}%) | {pos['holdout']} ({100 * pos['holdout'] / n['holdout']:.1f}%) |",
              f"| negatives marked `ambiguous` | | {amb['tune']} | {amb['holdout']} |",
              f"| families | | {nf['tune']} | {nf['holdout']} |", END]
    wrap = lambda l: textwrap.fill(l, 105, subsequent_indent="  " if l.startswith("* ") else "") if l.startswith(("* ", "**")) else l
    return "\n".join(wrap(l) for l in lines)

def update_readme(section):
    path = os.path.join(HERE, "README.md")
    text = open(path, encoding="utf-8").read()
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)

def main():
    fams = parse(FAMILIES)
    classes = Counter(n.split("-")[0] for n in fams)
    assert all(k % 2 == 0 for k in classes.values()), classes
    for name, tpls in fams.items():   # a family is wholly positive or wholly negative
        assert len({any(m[0] in SENSITIVE for m in SLOT_RX.findall(t)) for t, _ in tpls}) == 1, name
    names = sorted(fams)
    split = {n: ("tune", "holdout")[i % 2] for i, n in enumerate(names)}
    for c in classes:
        assert sum(split[n] == "tune" for n in names if n.split("-")[0] == c) * 2 == classes[c], c
    seen, out = set(), {"tune": [], "holdout": []}
    for n in names:
        out[split[n]].extend(gen_family(n, fams[n], seen))
    ids = [r["id"] for rows in out.values() for r in rows]
    assert len(ids) == len(set(ids))
    for part, rows in out.items():
        path = os.path.join(HERE, FILES[part])
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        with open(path, encoding="utf-8") as f:   # re-read: every line parses and spans still match
            back = [json.loads(line) for line in f]
        assert len(back) == len(rows) and all(b == r for b, r in zip(back, rows))
    update_readme(readme_section(out, split, len(classes)))
    for part, rows in out.items():
        c = Counter((r["label"], r["kind"]) for r in rows)
        print(f"{FILES[part]}: {len(rows)} rows, {sum(v == part for v in split.values())} families, "
              f"{sum(r['label'] != 'none' for r in rows)} positives, {sum(bool(r.get('ambiguous')) for r in rows)} ambiguous")
        print("   " + ", ".join(f"{l}/{k}={v}" for (l, k), v in sorted(c.items())))
    print("redraws:", dict(REJECTS), file=sys.stderr)

if __name__ == "__main__":
    main()
