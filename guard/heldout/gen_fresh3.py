#!/usr/bin/env python3
"""gen_fresh3.py - third set of new held-out forms for the privacy guard.

Writes fresh3.tune.jsonl and fresh3.holdout.jsonl next to this file and refreshes the
`gen_fresh3.py` section of README.md.  Python 3 standard library only; deterministic
(every family draws from its own random.Random seeded with SEED and the family name).

Templates hold two kinds of slots: a sensitive slot (double square brackets) is a
value the guard must find - its [start, end) code-point offsets become a span; a filler
slot (angle brackets) is context.  `name:arg` passes an argument to the generator,
`name#tag` repeats the same value within a row.  Each family (`subkind`) goes wholly
into one file: families are sorted by name, even index -> tune, odd -> holdout; every
class holds an even number of families so both files get the same mix of kinds.
"""
import base64, collections, hashlib, json, os, random, re, sys, zlib

SEED = "fresh3/2026/0x5eed3"
SOURCE = "heldout-fresh3"
HERE = os.path.dirname(os.path.abspath(__file__))

# ------------------------------------------------------------------ random helpers
DIG, LOW = "0123456789", "abcdefghijklmnopqrstuvwxyz"
UP = LOW.upper()
HEX, AN = "0123456789abcdef", DIG + UP + LOW
B64U = UP + LOW + DIG + "-_"
B62 = DIG + UP + LOW

def rs(r, alpha, n):
    return "".join(r.choice(alpha) for _ in range(n))
def rb(r, n):
    return bytes(r.getrandbits(8) for _ in range(n))
def d(r, n):
    return rs(r, DIG, n)
def b64(b):
    return base64.b64encode(b).decode()
def b64u(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")
def base62(n, width):
    s = ""
    while n:
        n, m = divmod(n, 62)
        s = B62[m] + s
    return s.rjust(width, "0")

WORDS = """anchor apple arrow autumn badger bamboo banjo basil beacon birch biscuit blossom breeze
bridge bronze cactus camel candle canyon carbon cedar cherry cinder citrus clover cobalt comet
copper coral cotton crane crystal dagger dawn delta desert dolphin dragon drift eagle ember
falcon feather fennel fern fig flint forest fossil fox galaxy garnet ginger glacier granite
grape harbor hazel heron honey horizon iris island ivory jasmine jungle juniper kettle kiwi
lagoon lantern lemon lilac lotus lunar magnet mango maple marble meadow melon meteor mint
monsoon mosaic nectar nickel nutmeg oasis ocean olive onyx orbit orchid otter paddle panda
papaya pebble pepper pine planet plum polar poppy prairie quartz quill radish raven reef ribbon
river rocket saffron sage salmon sapphire shadow silver sparrow spruce squirrel staple battery
horse correct storm summit sunset thistle thunder tiger timber topaz tulip tundra turtle
valley velvet violet walnut willow winter wolf yarrow zebra zenith""".split()
FIRST = ("Priya Arjun Wei Li Olusegun Chiamaka Ana Thiago Rahim Nusrat Dmitri Olga Sofia Diego Haruto "
         "Yui Abebe Tigist Maria Jose Ahmed Fatma Minh Lan Jonas Lena Oliver Amelia Chloe Lucas Budi "
         "Siti Ayesha Bilal Emeka Ngozi Camila Mateo Grace Daniel").split()
LAST = ("Sharma Patel Zhang Wang Adeyemi Okafor Souza Oliveira Uddin Rahman Volkov Ivanova Hernandez "
        "Garcia Sato Tanaka Bekele Tesfaye Santos Reyes Hassan Mahmoud Nguyen Tran Mueller Schmidt Smith "
        "Jones Martin Bernard Santoso Wijaya Khan Malik Eze Obi Lopez Cruz Walker Brown").split()
ORGS = ("northwind kestrel-labs bluefin tessera orbitalis quokka-io marlin-systems hollowpine vantage "
        "cobaltbay ridgeline fernhill skyharbor lumenworks").split()
CITIES = ("Pune Shenzhen Austin Surabaya Lahore Ibadan Recife Chittagong Kazan Guadalajara Osaka "
          "Addis-Ababa Cebu Alexandria Da-Nang Leipzig Leeds Lyon").split()
MAIL_DOMAINS = ("gmail.com outlook.com hotmail.com yahoo.com yahoo.co.in rediffmail.com qq.com 163.com "
                "126.com yandex.ru mail.ru gmx.de web.de t-online.de orange.fr free.fr laposte.net "
                "btinternet.com icloud.com proton.me uol.com.br bol.com.br naver.com").split()
SECRET_NAMES = ("DB_PASSWORD API_KEY STRIPE_SECRET_KEY SMTP_PASSWORD JWT_SECRET REDIS_PASSWORD "
                "GITHUB_TOKEN SLACK_BOT_TOKEN AWS_SECRET_ACCESS_KEY OAUTH_CLIENT_SECRET "
                "SESSION_SECRET ADMIN_PASSWORD SIGNING_KEY WEBHOOK_SECRET").split()

# ------------------------------------------------------------------ secret values
SYM = "!#%*+-.=?@^_~"

def g_pw(r, ctx, arg=""):
    """Passwords: random strong, human-made, word passphrases, leet phrases, PINs."""
    if arg == "pin":
        return d(r, r.choice([4, 6, 6, 8]))
    style = r.choice(["random", "random", "human", "phrase", "phrase", "leet"])
    if style == "random":
        sym = "-._~" if arg == "url" else SYM
        n = r.randint(10, 26)
        while True:
            s = r.choice(UP + LOW) + rs(r, AN + sym * 2, n - 1)
            if any(c in DIG for c in s) and any(c in sym for c in s) and any(c in UP for c in s):
                break
        if arg == "url" and r.random() < 0.4:  # percent-encoded symbols, span is the rendered form
            i = r.randrange(2, len(s))
            s = s[:i] + r.choice(["%40", "%21", "%23", "%24", "%2F", "%3A", "%26"]) + s[i:]
        return s
    w = [r.choice(WORDS) for _ in range(r.randint(3, 5) if style == "phrase" else 2)]
    if style == "human":
        return (w[0].capitalize() + r.choice(["", "_", "-", "."]) + w[1] + d(r, r.randint(2, 4))
                + r.choice(["!", "#", "", "*", "?"] if arg != "url" else ["", "~", "-"]))
    if style == "leet":
        t = {"a": "@", "o": "0", "e": "3", "i": "1", "s": "$"} if arg not in ("url", "plain") else {"o": "0", "e": "3"}
        s = "-".join(x.capitalize() for x in w)
        return "".join(t.get(c, c) if r.random() < 0.5 else c for c in s) + d(r, 2)
    seps = ["-", "-", ".", "_", ""] + ([" "] if arg == "sp" else [])
    sep = r.choice(seps)
    ws = [x.capitalize() for x in w] if sep == "" or r.random() < 0.3 else w
    s = sep.join(ws)
    return s + (r.choice(["", d(r, 1), d(r, 2), "-" + d(r, 4)]) if r.random() < 0.5 else "")

SEC_STYLES = {  # name -> maker; `b64k` = 64-byte account keys, `fernet` = padded urlsafe 32 bytes
    "hex": lambda r: rs(r, HEX, r.choice([32, 40, 48, 64])), "hex64": lambda r: rs(r, HEX, 64),
    "hex128": lambda r: rs(r, HEX, 128), "b64": lambda r: b64(rb(r, r.choice([18, 24, 32, 33, 48, 64]))),
    "b64k": lambda r: b64(rb(r, 64)), "b64u": lambda r: b64u(rb(r, r.choice([32, 48, 64]))),
    "fernet": lambda r: base64.urlsafe_b64encode(rb(r, 32)).decode(), "an": lambda r: rs(r, AN, r.choice([24, 32, 40, 48, 64])),
    "aws": lambda r: rs(r, AN + "+/", 40), "django": lambda r: rs(r, LOW + DIG + "!@#%^&*(-_=+)", 50),
    "b32": lambda r: rs(r, UP + "234567", r.choice([32, 52])), "urlsafe": lambda r: b64u(rb(r, r.choice([24, 32]))),
}

def g_sec(r, ctx, arg=""):
    """Generic secrets in many alphabets and lengths (`arg` forces a style)."""
    return SEC_STYLES[arg or r.choice(["hex", "hex", "b64", "b64", "b64u", "an", "an", "b32", "urlsafe"])](r)
def g_b64secret(r, ctx, arg=""):
    """A Kubernetes Secret `data:` value: base64 of a random secret string."""
    return b64(g_sec(r, ctx, r.choice(["an", "hex", "urlsafe"])).encode())


# vendor tokens ------------------------------------------------------------------------
def gh_token(r, p):
    body = rs(r, AN, 30)
    return p + body + base62(zlib.crc32(body.encode()), 6)
def oai(r):
    if r.random() < 0.3:
        return "sk-" + rs(r, AN, 20) + "T3BlbkFJ" + rs(r, AN, 20)
    n = r.choice([74, 58])
    return "sk-" + r.choice(["proj", "svcacct", "admin"]) + "-" + rs(r, B64U, n) + "T3BlbkFJ" + rs(r, B64U, n)

def discord(r):
    uid = str(r.randint(10**17, 10**18 - 1)).encode()
    return b64u(uid) + "." + rs(r, B64U, 6) + "." + rs(r, B64U, 38)
def mapbox(r):
    js = json.dumps({"u": r.choice(FIRST).lower() + d(r, 2), "a": rs(r, LOW + DIG, 25)}, separators=(",", ":"))
    return "sk." + b64u(js.encode()) + "." + rs(r, B64U, 22)


# (rule, kind, env var, api host, weight, generator)
VENDORS = [
    ("aws-access-key-id", "aws-access-key", "AWS_ACCESS_KEY_ID", "sts.amazonaws.com", 5, lambda r: r.choice(["AKIA", "AKIA", "ASIA"]) + rs(r, UP + "234567", 16)),
    ("github-pat", "github-token", "GITHUB_TOKEN", "api.github.com", 2, lambda r: gh_token(r, "ghp_")),
    ("github-oauth", "github-token", "GH_TOKEN", "api.github.com", 1, lambda r: gh_token(r, "gho_")),
    ("github-app", "github-token", "GITHUB_APP_TOKEN", "api.github.com", 1, lambda r: gh_token(r, "ghs_")),
    ("github-fine-grained-pat", "github-token", "GH_PAT", "api.github.com", 1, lambda r: "github_pat_" + rs(r, AN, 22) + "_" + rs(r, AN, 59)),
    ("gitlab-pat", "gitlab-token", "GITLAB_TOKEN", "gitlab.com", 3, lambda r: "glpat-" + rs(r, B64U, 20)),
    ("gitlab-runner", "gitlab-token", "RUNNER_TOKEN", "gitlab.com", 1, lambda r: "glrt-" + rs(r, B64U, 20)),
    ("gitlab-ptt", "gitlab-token", "CI_TRIGGER_TOKEN", "gitlab.com", 1, lambda r: "glptt-" + rs(r, HEX, 40)),
    ("slack-bot", "slack-token", "SLACK_BOT_TOKEN", "slack.com", 3, lambda r: "xoxb-" + d(r, r.choice([11, 12, 13])) + "-" + d(r, 13) + "-" + rs(r, AN, 24)),
    ("slack-user", "slack-token", "SLACK_USER_TOKEN", "slack.com", 1, lambda r: "xoxp-" + d(r, 11) + "-" + d(r, 12) + "-" + d(r, 13) + "-" + rs(r, HEX, 32)),
    ("slack-app", "slack-token", "SLACK_APP_TOKEN", "slack.com", 1, lambda r: "xapp-1-A" + rs(r, UP + DIG, 10) + "-" + d(r, 13) + "-" + rs(r, HEX, 64)),
    ("slack-webhook", "slack-webhook", "SLACK_WEBHOOK_URL", "hooks.slack.com", 5,
     lambda r: "https://hooks.slack.com/services/T" + rs(r, UP + DIG, 10) + "/B" + rs(r, UP + DIG, 10) + "/" + rs(r, AN, 24)),
    ("stripe-secret", "stripe-key", "STRIPE_SECRET_KEY", "api.stripe.com", 5,
     lambda r: r.choice(["sk_live_", "sk_test_", "rk_live_"]) + rs(r, AN, r.choice([24, 99]))),
    ("google-api-key", "google-api-key", "GEMINI_API_KEY", "generativelanguage.googleapis.com", 4, lambda r: "AIza" + rs(r, B64U, 35)),
    ("openai", "openai-key", "OPENAI_API_KEY", "api.openai.com", 4, oai),
    ("anthropic", "api-key", "ANTHROPIC_API_KEY", "api.anthropic.com", 2, lambda r: "sk-ant-" + r.choice(["api03", "admin01"]) + "-" + rs(r, B64U, 93) + "AA"),
    ("huggingface", "api-key", "HF_TOKEN", "huggingface.co", 1, lambda r: "hf_" + rs(r, UP + LOW, 34)),
    ("groq", "api-key", "GROQ_API_KEY", "api.groq.com", 1, lambda r: "gsk_" + rs(r, AN, 52)),
    ("replicate", "api-key", "REPLICATE_API_TOKEN", "api.replicate.com", 1, lambda r: "r8_" + rs(r, AN, 37)),
    ("perplexity", "api-key", "PERPLEXITY_API_KEY", "api.perplexity.ai", 1, lambda r: "pplx-" + rs(r, AN, 48)),
    ("xai", "api-key", "XAI_API_KEY", "api.x.ai", 1, lambda r: "xai-" + rs(r, AN, 80)),
    ("openrouter", "api-key", "OPENROUTER_API_KEY", "openrouter.ai", 1, lambda r: "sk-or-v1-" + rs(r, HEX, 64)),
    ("langsmith", "api-key", "LANGSMITH_API_KEY", "api.smith.langchain.com", 1,
     lambda r: "lsv2_" + r.choice(["pt", "sk"]) + "_" + rs(r, HEX, 32) + "_" + rs(r, HEX, 10)),
    ("digitalocean", "api-key", "DIGITALOCEAN_TOKEN", "api.digitalocean.com", 1, lambda r: "dop_v1_" + rs(r, HEX, 64)),
    ("npm", "api-key", "NPM_TOKEN", "registry.npmjs.org", 1, lambda r: gh_token(r, "npm_")),
    ("pypi", "api-key", "PYPI_API_TOKEN", "upload.pypi.org", 1, lambda r: "pypi-AgEIcHlwaS5vcmc" + rs(r, B64U, r.choice([70, 134]))),
    ("sendgrid", "api-key", "SENDGRID_API_KEY", "api.sendgrid.com", 1, lambda r: "SG." + rs(r, B64U, 22) + "." + rs(r, B64U, 43)),
    ("twilio-api-key", "api-key", "TWILIO_API_KEY", "api.twilio.com", 1, lambda r: "SK" + rs(r, HEX, 32)),
    ("mailgun", "api-key", "MAILGUN_API_KEY", "api.mailgun.net", 1, lambda r: "key-" + rs(r, HEX, 32)),
    ("shopify", "api-key", "SHOPIFY_ACCESS_TOKEN", "admin.shopify.com", 1, lambda r: r.choice(["shpat_", "shpss_", "shpca_"]) + rs(r, HEX, 32)),
    ("databricks", "api-key", "DATABRICKS_TOKEN", "accounts.cloud.databricks.com", 1, lambda r: "dapi" + rs(r, HEX, 32) + r.choice(["", "-2", "-3"])),
    ("doppler", "api-key", "DOPPLER_TOKEN", "api.doppler.com", 1, lambda r: r.choice(["dp.pt.", "dp.st.prd."]) + rs(r, AN, 43)),
    ("pulumi", "api-key", "PULUMI_ACCESS_TOKEN", "api.pulumi.com", 1, lambda r: "pul-" + rs(r, HEX, 40)),
    ("linear", "api-key", "LINEAR_API_KEY", "api.linear.app", 1, lambda r: "lin_api_" + rs(r, AN, 40)),
    ("notion", "api-key", "NOTION_TOKEN", "api.notion.com", 1, lambda r: "ntn_" + d(r, 11) + rs(r, AN, 35)),
    ("figma", "api-key", "FIGMA_TOKEN", "api.figma.com", 1, lambda r: "figd_" + rs(r, B64U, 40)),
    ("planetscale", "api-key", "PLANETSCALE_SERVICE_TOKEN", "api.planetscale.com", 1, lambda r: "pscale_tkn_" + rs(r, B64U, 43)),
    ("supabase", "api-key", "SUPABASE_ACCESS_TOKEN", "api.supabase.com", 1, lambda r: "sbp_" + rs(r, HEX, 40)),
    ("grafana-service-account", "api-key", "GRAFANA_SA_TOKEN", "grafana.net", 1, lambda r: "glsa_" + rs(r, AN, 32) + "_" + rs(r, HEX, 8)),
    ("vault-service-token", "api-key", "VAULT_TOKEN", "vault.service.consul", 1, lambda r: "hvs." + rs(r, B64U, 90)),
    ("terraform-cloud", "api-key", "TF_TOKEN_app_terraform_io", "app.terraform.io", 1, lambda r: rs(r, AN, 14) + ".atlasv1." + rs(r, AN, 67)),
    ("telegram-bot", "api-key", "TELEGRAM_BOT_TOKEN", "api.telegram.org", 1, lambda r: str(r.randint(10**9, 8 * 10**9)) + ":AA" + rs(r, B64U, 33)),
    ("discord-bot", "api-key", "DISCORD_BOT_TOKEN", "discord.com", 1, discord),
    ("square", "api-key", "SQUARE_ACCESS_TOKEN", "connect.squareup.com", 1, lambda r: "EAAA" + rs(r, B64U, 60)),
    ("postman", "api-key", "POSTMAN_API_KEY", "api.getpostman.com", 1, lambda r: "PMAK-" + rs(r, HEX, 24) + "-" + rs(r, HEX, 34)),
    ("newrelic-user-key", "api-key", "NEW_RELIC_API_KEY", "api.newrelic.com", 1, lambda r: "NRAK-" + rs(r, UP + DIG, 27)),
    ("atlassian", "api-key", "JIRA_API_TOKEN", "api.atlassian.com", 1, lambda r: "ATATT3xFfGF0" + rs(r, B64U, 170) + "=" + rs(r, HEX.upper(), 8)),
    ("buildkite", "api-key", "BUILDKITE_API_TOKEN", "api.buildkite.com", 1, lambda r: "bkua_" + rs(r, HEX, 40)),
    ("flyio", "api-key", "FLY_API_TOKEN", "api.fly.io", 1, lambda r: "fo1_" + rs(r, B64U, 43)),
    ("azure-ad-client-secret", "api-key", "AZURE_CLIENT_SECRET", "login.microsoftonline.com", 1,
     lambda r: rs(r, AN, 3) + r.choice(DIG) + "Q~" + rs(r, AN + "_~.-", 31)),
    ("mapbox-secret", "api-key", "MAPBOX_SECRET_TOKEN", "api.mapbox.com", 1, mapbox),
    ("alibaba-access-key-id", "api-key", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ecs.aliyuncs.com", 1, lambda r: "LTAI" + rs(r, AN, 20)),
    ("tencent-secret-id", "api-key", "TENCENTCLOUD_SECRET_ID", "cvm.tencentcloudapi.com", 1, lambda r: "AKID" + rs(r, AN, 32)),
    ("pinecone", "api-key", "PINECONE_API_KEY", "api.pinecone.io", 1, lambda r: "pcsk_" + rs(r, AN, 5) + "_" + rs(r, AN, 63)),
    ("contentful-pat", "api-key", "CONTENTFUL_MANAGEMENT_TOKEN", "api.contentful.com", 1, lambda r: "CFPAT-" + rs(r, B64U, 43)),
    ("render", "api-key", "RENDER_API_KEY", "api.render.com", 1, lambda r: "rnd_" + rs(r, AN, 32)),
    ("circleci-pat", "api-key", "CIRCLECI_TOKEN", "circleci.com", 1, lambda r: "CCIPAT_" + rs(r, AN, 22) + "_" + rs(r, HEX, 40)),
]

VENDOR_KIND_CYCLE = ["aws-access-key", "github-token", "gitlab-token", "slack-token", "slack-webhook", "stripe-key",
                     "google-api-key", "openai-key"] + ["api-key"] * 5

def g_tok(r, ctx, arg=""):
    rule, kind, env, host, _, fn = ctx["vendor"]
    ctx["kind"], ctx["rule"] = kind, rule
    return fn(r)


# private keys (DER built from random bytes, structure as the real formats) ------------
def _len(n):
    if n < 128:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b

def tlv(t, body):
    return bytes([t]) + _len(len(body)) + body
def dint(b):
    b = b.lstrip(b"\0") or b"\0"
    return tlv(2, b"\0" + b if b[0] & 0x80 else b)
def top(r, n):
    b = bytearray(rb(r, n))
    b[0] |= 0x80
    return bytes(b)

OID_RSA = bytes.fromhex("06092a864886f70d0101010500")
OID_EC = bytes.fromhex("06072a8648ce3d0201")
OID_P256, OID_P384 = bytes.fromhex("06082a8648ce3d030107"), bytes.fromhex("06052b81040022")

def rsa_der(r, bits):
    n, h = bits // 8, bits // 16
    return tlv(0x30, dint(b"\0") + dint(top(r, n)) + dint(b"\x01\x00\x01") + dint(rb(r, n))
               + dint(top(r, h)) + dint(top(r, h)) + dint(rb(r, h)) + dint(rb(r, h)) + dint(rb(r, h)))
def ssh_str(b):
    return len(b).to_bytes(4, "big") + b
def openssh_ed25519(r, comment):
    pub = rb(r, 32)
    blob = ssh_str(b"ssh-ed25519") + ssh_str(pub)
    chk = rb(r, 4)
    priv = chk + chk + blob + ssh_str(rb(r, 32) + pub) + ssh_str(comment.encode())
    priv += bytes(range(1, 1 + (-len(priv)) % 8))
    return (b"openssh-key-v1\0" + ssh_str(b"none") + ssh_str(b"none") + ssh_str(b"")
            + (1).to_bytes(4, "big") + ssh_str(blob) + ssh_str(priv))

def pem(label, der, width=64):
    s = b64(der)
    return "-----BEGIN %s-----\n%s\n-----END %s-----" % (label, "\n".join(s[i:i + width] for i in range(0, len(s), width)), label)
def g_pkey(r, ctx, arg=""):
    t = r.choice(["rsa1-2048", "rsa1-3072", "rsa8-2048", "ec256", "ec384", "ed8", "ossh", "ossh"])
    ctx["detail"] = t
    if t.startswith("rsa1"):
        k = pem("RSA PRIVATE KEY", rsa_der(r, int(t[-4:])))
    elif t.startswith("rsa8"):
        k = pem("PRIVATE KEY", tlv(0x30, dint(b"\0") + tlv(0x30, OID_RSA) + tlv(4, rsa_der(r, 2048))))
    elif t.startswith("ec"):
        n, oid = (32, OID_P256) if t == "ec256" else (48, OID_P384)
        k = pem("EC PRIVATE KEY", tlv(0x30, dint(b"\1") + tlv(4, rb(r, n)) + tlv(0xa0, oid)
                                       + tlv(0xa1, tlv(3, b"\0\x04" + rb(r, 2 * n)))))
    elif t == "ed8":
        k = pem("PRIVATE KEY", tlv(0x30, dint(b"\0") + tlv(0x30, bytes.fromhex("06032b6570")) + tlv(4, tlv(4, rb(r, 32)))))
    else:
        k = pem("OPENSSH PRIVATE KEY", openssh_ed25519(r, r.choice(FIRST).lower() + "@" + g_hs(r, ctx)), 70)
    if arg == "json":
        return k.replace("\n", "\\n")
    if arg.startswith("ind"):
        return k.replace("\n", "\n" + " " * int(arg[3:]))
    return k

def g_jwt(r, ctx, arg=""):
    alg = r.choice(["HS256", "HS256", "RS256", "ES256"])
    hdr = {"alg": alg, "typ": "JWT"}
    if alg != "HS256":
        hdr["kid"] = rs(r, B64U, 22)
    now = 1_700_000_000 + r.randint(0, 60_000_000)
    pl = {"sub": r.choice([str(r.randint(1000, 999999)), rs(r, HEX, 24)]), "iat": now,
          "exp": now + r.choice([900, 3600, 86400]), "iss": "https://auth." + g_dom(r, ctx) + "/",
          r.choice(["scope", "role", "tenant"]): r.choice(["read write", "admin", "t-" + d(r, 4)])}
    sig = rb(r, {"HS256": 32, "RS256": 256, "ES256": 64}[alg])
    return ".".join([b64u(json.dumps(hdr, separators=(",", ":")).encode()),
                     b64u(json.dumps(pl, separators=(",", ":")).encode()), b64u(sig)])

# ------------------------------------------------------------------ PII values
US_NPA = [201, 202, 206, 212, 213, 214, 303, 305, 312, 404, 407, 415, 469, 480, 503, 512, 602, 617,
          646, 702, 713, 718, 720, 773, 808, 818, 917, 972]

def us_nsn(r):
    while True:
        nxx = r.choice("23456789") + d(r, 2)
        if nxx != "555" and nxx[1:] != "11":
            return str(r.choice(US_NPA)) + nxx + d(r, 4)

def c(*xs):
    return lambda r: r.choice(xs)


# country: (calling code, [(type, nsn maker, international formats, national formats)])
PHONES = {
    "IN": ("91", [("mob", lambda r: r.choice("6789") + d(r, 9), ["+91 XXXXX XXXXX", "+91-XXXXXXXXXX"],
                   ["0XXXXX XXXXX", "XXXXX XXXXX", "XXXXX-XXXXX"]),
                  ("land", lambda r: "11" + r.choice("2346") + d(r, 7), ["+91 XX XXXX XXXX"], ["0XX-XXXX XXXX", "0XX XXXXXXXX"])]),
    "CN": ("86", [("mob", lambda r: "1" + r.choice("35789") + d(r, 9), ["+86 XXX XXXX XXXX"],
                   ["XXX XXXX XXXX", "XXX-XXXX-XXXX", "XXXXXXXXXXX"]),
                  ("land", lambda r: r.choice(["10", "21"]) + r.choice("5678") + d(r, 7), ["+86 XX XXXX XXXX"],
                   ["0XX-XXXX XXXX", "(0XX) XXXXXXXX"])]),
    "US": ("1", [("any", us_nsn, ["+1 XXX XXX XXXX", "+1 (XXX) XXX-XXXX", "+1-XXX-XXX-XXXX"],
                  ["(XXX) XXX-XXXX", "XXX-XXX-XXXX", "XXX.XXX.XXXX", "1-XXX-XXX-XXXX"])]),
    "ID": ("62", [("mob", lambda r: "8" + r.choice("1258") + d(r, 9), ["+62 XXX-XXXX-XXXX", "+62 XXX XXXX XXXX"],
                   ["0XXX-XXXX-XXXX", "0XXX XXXX XXXX"]),
                  ("land", lambda r: "21" + r.choice("2345678") + d(r, 7), ["+62 XX XXXX XXXX"], ["(0XX) XXXX XXXX", "0XX-XXXXXXXX"])]),
    "PK": ("92", [("mob", lambda r: "3" + r.choice("01234") + d(r, 8), ["+92 XXX XXXXXXX", "+92 XXX-XXXXXXX"],
                   ["0XXX-XXXXXXX", "0XXX XXXXXXX"]),
                  ("land", lambda r: "213" + d(r, 7), ["+92 XX XXXX XXXX"], ["(0XX) XXXX XXXX"])]),
    "NG": ("234", [("mob", lambda r: r.choice(["80", "81", "70", "90", "91"]) + r.choice("23456789") + d(r, 7),
                    ["+234 XXX XXX XXXX"], ["0XXX XXX XXXX", "0XXX-XXX-XXXX"])]),
    "BR": ("55", [("mob", lambda r: r.choice(["11", "21", "31", "41", "51", "61", "71", "81", "85"]) + "9" + r.choice("6789") + d(r, 7),
                   ["+55 XX XXXXX-XXXX", "+55 (XX) XXXXX-XXXX"], ["(XX) XXXXX-XXXX", "XX XXXXX XXXX"]),
                  ("land", lambda r: r.choice(["11", "21", "31", "41"]) + r.choice("2345") + d(r, 7), ["+55 XX XXXX-XXXX"], ["(XX) XXXX-XXXX"])]),
    "BD": ("880", [("mob", lambda r: "1" + r.choice("3456789") + d(r, 8), ["+880 XXXX-XXXXXX", "+880 XXXX XXXXXX"],
                    ["0XXXX-XXXXXX", "0XXXXXXXXXX"])]),
    "RU": ("7", [("mob", lambda r: "9" + r.choice("0123456") + d(r, 8), ["+7 XXX XXX-XX-XX", "+7 (XXX) XXX-XX-XX"],
                  ["8 (XXX) XXX-XX-XX", "8 XXX XXX XX XX", "8-XXX-XXX-XX-XX"]),
                 ("land", lambda r: r.choice(["495", "499", "812"]) + r.choice("2345679") + d(r, 6),
                  ["+7 XXX XXX-XX-XX"], ["8 (XXX) XXX-XX-XX"])]),
    "MX": ("52", [("any", lambda r: r.choice(["55", "33", "81"]) + r.choice("123456789") + d(r, 7), ["+52 XX XXXX XXXX"],
                   ["XX XXXX XXXX", "(XX) XXXX-XXXX", "XX-XXXX-XXXX"])]),
    "JP": ("81", [("mob", lambda r: r.choice(["70", "80", "90"]) + r.choice("123456789") + d(r, 7),
                   ["+81 XX-XXXX-XXXX", "+81 XX XXXX XXXX"], ["0XX-XXXX-XXXX", "0XX XXXX XXXX"]),
                  ("land", lambda r: "3" + r.choice("3456") + d(r, 7), ["+81 X-XXXX-XXXX"], ["0X-XXXX-XXXX"])]),
    "ET": ("251", [("mob", lambda r: "9" + r.choice("123456789") + d(r, 7), ["+251 XX XXX XXXX"], ["0XX XXX XXXX", "0XX-XXX-XXXX"]),
                   ("land", lambda r: "11" + r.choice("123456") + d(r, 6), ["+251 XX XXX XXXX"], ["0XX XXX XXXX"])]),
    "PH": ("63", [("mob", lambda r: "9" + r.choice(["17", "18", "19", "05", "06", "15", "16", "27", "28", "98", "99"]) + d(r, 7),
                   ["+63 XXX XXX XXXX"], ["0XXX XXX XXXX", "0XXX-XXX-XXXX"]),
                  ("land", lambda r: "28" + d(r, 7), ["+63 X XXXX XXXX"], ["(0X) XXXX XXXX"])]),
    "EG": ("20", [("mob", lambda r: "1" + r.choice("0125") + d(r, 8), ["+20 XX XXXX XXXX"], ["0XX XXXX XXXX", "0XXXXXXXXXX"]),
                  ("land", lambda r: "2" + r.choice("23") + d(r, 7), ["+20 X XXXX XXXX"], ["0X XXXX XXXX"])]),
    "VN": ("84", [("mob", lambda r: r.choice(["90", "91", "93", "94", "96", "97", "98", "32", "33", "35", "70", "77", "83", "86", "88"]) + d(r, 7),
                   ["+84 XX XXX XXXX", "+84 XXX XXX XXX"], ["0XX XXX XXXX", "0XXX XXX XXX", "0XXX.XXX.XXX"])]),
    "DE": ("49", [("mob", lambda r: r.choice(["151", "152", "157", "160", "162", "170", "171", "172", "173", "175", "176", "177", "178", "179"]) + d(r, 8),
                   ["+49 XXX XXXXXXXX", "+49 XXX XXXX XXXX"], ["0XXX XXXXXXXX", "0XXX/XXXXXXXX", "0XXX-XXXX XXXX"]),
                  ("land", lambda r: "30" + r.choice("23456789") + d(r, 7), ["+49 XX XXXXXXXX"], ["0XX XXXXXXXX", "(0XX) XXXX XXXX"])]),
    "GB": ("44", [("mob", lambda r: "7" + r.choice("45789") + d(r, 8), ["+44 XXXX XXXXXX", "+44 (0)XXXX XXXXXX"],
                   ["0XXXX XXXXXX", "0XXXX XXX XXX"]),
                  ("land", lambda r: "20" + r.choice("378") + d(r, 7), ["+44 XX XXXX XXXX"], ["0XX XXXX XXXX"])]),
    "FR": ("33", [("mob", lambda r: r.choice("67") + d(r, 8), ["+33 X XX XX XX XX", "+33 (0)X XX XX XX XX"],
                   ["0X XX XX XX XX", "0X.XX.XX.XX.XX", "0XXXXXXXXX"]),
                  ("land", lambda r: r.choice("12345") + d(r, 8), ["+33 X XX XX XX XX"], ["0X XX XX XX XX"])]),
}
FICTIONAL = ("2079460", "7700900", "1614960")  # Ofcom drama ranges (never produced for positives)

def fill(fmt, digits):
    it = iter(digits)
    out = "".join(next(it) if ch == "X" else ch for ch in fmt)
    assert next(it, None) is None, (fmt, digits)
    return out

def g_phone(r, ctx, arg=""):
    cc_name = arg if arg in PHONES else ctx.setdefault("cc", r.choice(sorted(PHONES)))  # one country per row
    cc, types = PHONES[cc_name]
    while True:
        typ, mk, intl, nat = r.choice(types)
        nsn = mk(r)
        if not any(nsn.startswith(f) for f in FICTIONAL):
            break
    fmt = arg if arg in ("e164", "intl", "nat") else r.choice(["intl", "intl", "nat", "nat", "e164"])
    if fmt == "e164":
        v = "+" + cc + nsn
    elif fmt == "intl":
        v = fill(r.choice(intl), nsn)
    else:
        v = fill(r.choice(nat), nsn)
    ctx["detail"] = "%s-%s-%s" % (cc_name, fmt, typ)
    return v

def luhn_ok(s):
    tot = 0
    for i, ch in enumerate(reversed(s)):
        k = int(ch) * (2 if i % 2 else 1)
        tot += k - 9 if k > 9 else k
    return tot % 10 == 0

def luhn_complete(p):
    for x in DIG:
        if luhn_ok(p + x):
            return p + x
def card_brand(s):
    n = len(s)
    if s[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (s[:2] in ("51", "52", "53", "54", "55") or 2221 <= int(s[:4]) <= 2720) and n == 16:
        return "mastercard"
    if s[:2] in ("34", "37") and n == 15:
        return "amex"
    if (s[:4] == "6011" or s[:2] == "65") and n in (16, 19):
        return "discover"
    if 3528 <= int(s[:4]) <= 3589 and n in (16, 19):
        return "jcb"
    return None

def raw_card(r):
    brand = r.choice(["visa", "visa", "visa", "mc", "mc", "amex", "discover", "jcb"])
    p, n = {"visa": ("4", 16), "mc": (r.choice(["51", "52", "53", "54", "55", "2" + str(r.randint(221, 720))]), 16),
            "amex": (r.choice(["34", "37"]), 15), "discover": (r.choice(["6011", "65"]), 16),
            "jcb": (str(r.randint(3528, 3589)), 16)}[brand]
    return luhn_complete(p + d(r, n - len(p) - 1))

def group_card(s, sep):
    if len(s) == 15:
        return sep.join([s[:4], s[4:10], s[10:]])
    return sep.join(s[i:i + 4] for i in range(0, len(s), 4))
def g_card(r, ctx, arg=""):
    s = raw_card(r)
    sep = {"sp": " ", "dash": "-", "plain": ""}.get(arg, r.choice(["", " ", " ", "-"]))
    return group_card(s, sep) if sep else s
def g_card_bad(r, ctx, arg=""):
    s = raw_card(r)
    s = s[:-1] + str((int(s[-1]) + r.randint(1, 9)) % 10)
    return group_card(s, r.choice(["", " ", "-"])) if r.random() < 0.6 else s


# country: (length, BBAN pattern: n digit, a upper letter, c alnum-as-digit)
IBAN = {"DE": "18n", "GB": "4a14n", "FR": "23n", "ES": "20n", "IT": "1a22n", "NL": "4a10n", "BE": "12n",
        "AT": "16n", "CH": "17n", "PL": "24n", "PT": "21n", "IE": "4a14n", "SE": "20n", "TR": "22n",
        "SA": "20n", "AE": "19n", "PK": "4a16n", "BR": "23n1a1n", "EG": "25n", "RO": "4a16n"}

def iban_check(cc, bban):
    num = "".join(str(int(ch, 36)) for ch in bban + cc + "00")
    return "%02d" % (98 - int(num) % 97)
def iban_valid(s):
    s = s.replace(" ", "")
    if s[:2] not in IBAN or len(s) != 4 + sum(int(x) for x in re.findall(r"\d+", IBAN[s[:2]])):
        return False
    return int("".join(str(int(ch, 36)) for ch in s[4:] + s[:4])) % 97 == 1

def raw_iban(r, cc=None):
    cc = cc or r.choice(sorted(IBAN))
    bban = "".join(rs(r, DIG if t == "n" else UP, int(k)) for k, t in re.findall(r"(\d+)([na])", IBAN[cc]))
    return cc + iban_check(cc, bban) + bban
def g_iban(r, ctx, arg=""):
    s = raw_iban(r)
    ctx["detail"] = s[:2]
    if arg == "sp" or (arg != "plain" and r.random() < 0.5):
        return " ".join(s[i:i + 4] for i in range(0, len(s), 4))
    return s

def g_iban_bad(r, ctx, arg=""):
    s = raw_iban(r)
    s = s[:2] + "%02d" % ((int(s[2:4]) + r.randint(1, 90)) % 100) + s[4:]
    if iban_valid(s):
        s = s[:2] + ("01" if s[2:4] != "01" else "02") + s[4:]
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4)) if r.random() < 0.5 else s

def ssn_ok(s):
    a, g, n = s[:3], s[3:5], s[5:]
    return a not in ("000", "666") and a[0] != "9" and g != "00" and n != "0000"
def g_ssn(r, ctx, arg=""):
    while True:
        s = "%03d%02d%04d" % (r.randint(1, 899), r.randint(1, 99), r.randint(1, 9999))
        if ssn_ok(s) and s not in ("078051120", "219099999", "123456789"):
            break
    sep = arg if arg in ("-", " ") else r.choice(["-", "-", "-", " ", ""])
    return sep.join([s[:3], s[3:5], s[5:]])

def g_ssn_bad(r, ctx, arg=""):
    k = r.randrange(3)
    a = r.choice(["000", "666"]) if k == 0 else "%03d" % r.randint(1, 665)
    g = "00" if k == 1 else "%02d" % r.randint(1, 99)
    n = "0000" if k == 2 else "%04d" % r.randint(1, 9999)
    return "-".join([a, g, n])

def g_email(r, ctx, arg=""):
    f, l = r.choice(FIRST).lower(), r.choice(LAST).lower()
    if "person" in ctx and not ctx.get("named"):   # the first address belongs to the named person
        f, l = (x.lower() for x in ctx["person"])
    ctx["named"] = True
    local = r.choice([f + "." + l, f[0] + l, f + "_" + l, f + l[0] + d(r, 2), l + "." + f, f + "." + l + d(r, 1)])
    dom = r.choice(MAIL_DOMAINS) if r.random() < 0.6 else r.choice(ORGS) + "." + r.choice(["com", "io", "co.uk", "de", "com.br", "in"])
    return local + "@" + dom

# ------------------------------------------------------------------ fillers
def g_user(r, ctx, a=""):
    return r.choice([r.choice(FIRST).lower(), r.choice(FIRST).lower()[0] + r.choice(LAST).lower(),
                     r.choice(["svc_", "app_", "ci-", "deploy", "backup", "etl_", "ops"]) + r.choice(WORDS)[:6]])
def g_hs(r, ctx, a=""):
    return r.choice(["web", "db", "api", "build", "bastion", "worker", "cache", "edge", "mq", "ci"]) + "-" + d(r, 2)
def g_dom(r, ctx, a=""):
    return r.choice(ORGS) + "." + r.choice(["com", "io", "net", "dev", "cloud", "co"])
def g_host(r, ctx, a=""):
    return g_hs(r, ctx) + "." + r.choice(["prod", "stg", "int", "eu", "us"]) + "." + g_dom(r, ctx)
def g_ts(r, ctx, a=""):
    t = "2025-%02d-%02dT%02d:%02d:%02d" % (r.randint(1, 12), r.randint(1, 28), r.randint(0, 23), r.randint(0, 59), r.randint(0, 59))
    return t + r.choice([".%03dZ" % r.randint(0, 999), "Z", "+00:00", ".%06d" % r.randint(0, 999999)])
def g_date(r, ctx, a=""):
    return "2025-%02d-%02d" % (r.randint(1, 12), r.randint(1, 28))
def g_lp(r, ctx, a=""):
    """A log prefix as a collector would show it (may be empty)."""
    t = g_ts(r, ctx)
    return r.choice(["", t + " ", "%s %s app[%d]: " % (t[:19], g_hs(r, ctx), r.randint(300, 40000)),
                     "[" + t[:19].replace("T", " ") + "] ", g_hs(r, ctx) + "-1  | ",
                     "[pod/%s-%s-%s/app] " % (r.choice(WORDS), rs(r, LOW + DIG, 9), rs(r, LOW + DIG, 5))])

def g_sh(r, ctx, a=""):
    """A shell rendering prefix: prompt, trace, history number, CI step."""
    return r.choice(["", "$ ", "+ ", "# ", "root@%s:~# " % g_hs(r, ctx), "%s@%s:~/src$ " % (g_user(r, ctx), g_hs(r, ctx)),
                     " %d  " % r.randint(100, 2999), g_ts(r, ctx) + " + ", "[command]", "RUN "])
def g_gp(r, ctx, a=""):
    """How a config line shows up in output: bare, `grep -rn` hit, `tail` header, diff line."""
    path = r.choice(["", "deploy/", "config/", "infra/", "src/", "charts/app/"]) + r.choice(
        {"yaml": ["values", "config", "app", "docker-compose", "playbook"], "tf": ["main", "db", "variables"],
         "conf": ["sshd_config", "nsswitch", "app", "login.defs"], "sql": ["schema", "001_init", "migrate"],
         "json": ["settings", "keybindings", "en", "messages"], "env": [".env", ".env.example", ".env.sample"],
         "code": ["settings", "config", "db", "main", "client"], "nix": ["configuration", "flake", "hosts/web"]}[a])
    path += {"yaml": ".yaml", "tf": ".tf", "sql": ".sql", "json": ".json", "nix": ".nix",
             "code": r.choice([".py", ".go", ".rs", ".js", ".java", ".cs", ".rb"])}.get(a, "")
    n = str(r.randint(1, 400))
    return r.choice(["", "", path + ":" + n + ":", "==> " + path + " <==\n", path + "-" + n + "-", "+", " "])

def g_name(r, ctx, a=""):
    if "person" in ctx:
        return r.choice(FIRST) + " " + r.choice(LAST)
    ctx["person"] = (r.choice(FIRST), r.choice(LAST))  # an e-mail drawn later in the row is this person's
    return "%s %s" % ctx["person"]

def g_ph(r, ctx, a=""):
    n = r.choice(SECRET_NAMES)
    lo = n.lower()
    return r.choice(["${%s}" % n, "$%s" % n, "{{ .Values.%s }}" % lo.replace("_", "."), "{{ secrets.%s }}" % n,
                     "<your-%s>" % lo.replace("_", "-"), "%%%s%%" % n, "$(cat /run/secrets/%s)" % lo,
                     "${{ secrets.%s }}" % n, "#{%s}" % n, "__%s__" % n, "{{%s}}" % lo, "$env:%s" % n,
                     "%%(%s)s" % lo, "${%s:?missing}" % n, "@@%s@@" % n])

def g_mask(r, ctx, a=""):
    return r.choice(["********", "***", "[REDACTED]", "<redacted>", "[FILTERED]", "xxxxxxxx", "••••••••",
                     "(sensitive value)", "<hidden>", "[MASKED]", "REDACTED", "<sensitive>", "[secure]", "*****"])
def g_uuid(r, ctx, a=""):
    h = rs(r, HEX, 32)
    h = h[:12] + "4" + h[13:16] + r.choice("89ab") + h[17:]
    return "-".join([h[:8], h[8:12], h[12:16], h[16:20], h[20:]])
def g_sshpub(r, ctx, a=""):
    if r.random() < 0.5:
        return "ssh-ed25519 " + b64(ssh_str(b"ssh-ed25519") + ssh_str(rb(r, 32)))
    return "ecdsa-sha2-nistp256 " + b64(ssh_str(b"ecdsa-sha2-nistp256") + ssh_str(b"nistp256") + ssh_str(b"\x04" + rb(r, 64)))
def g_pubpem(r, ctx, a=""):
    if r.random() < 0.5:
        return pem("PUBLIC KEY", tlv(0x30, tlv(0x30, OID_EC + OID_P256) + tlv(3, b"\0\x04" + rb(r, 64))))
    return pem("PUBLIC KEY", tlv(0x30, tlv(0x30, OID_RSA) + tlv(3, b"\0" + tlv(0x30, dint(top(r, 256)) + dint(b"\x01\x00\x01")))))
def g_textb64(r, ctx, a=""):
    return b64(" ".join(r.choice(WORDS) for _ in range(r.randint(3, 9))).encode())
def g_fict(r, ctx, a=""):
    return r.choice(["555-01%02d" % r.randint(0, 99), "(%d) 555-01%02d" % (r.choice(US_NPA), r.randint(0, 99)),
                     "07700 900%03d" % r.randint(0, 999), "+44 7700 900%03d" % r.randint(0, 999),
                     "020 7946 0%03d" % r.randint(0, 999), "+1 %d 555 01%02d" % (r.choice(US_NPA), r.randint(0, 99))])
def g_ip(r, ctx, a=""):
    return r.choice(["10.%d.%d.%d" % (r.randint(0, 255), r.randint(0, 255), r.randint(1, 254)),
                     "192.168.%d.%d" % (r.randint(0, 255), r.randint(1, 254)),
                     "172.%d.%d.%d" % (r.randint(16, 31), r.randint(0, 255), r.randint(1, 254))])
def g_c(r, ctx, a):
    return r.choice(a.split("|"))
def g_num(r, ctx, a):
    lo, hi = a.split("-")
    return str(r.randint(int(lo), int(hi)))

FILL = {
    "user": g_user, "hs": g_hs, "host": g_host, "dom": g_dom, "ts": g_ts, "date": g_date, "lp": g_lp, "sh": g_sh,
    "name": g_name, "gp": g_gp, "ph": g_ph, "mask": g_mask, "uuid": g_uuid, "sshpub": g_sshpub, "pubpem": g_pubpem,
    "textb64": g_textb64, "fict": g_fict, "ip": g_ip, "c": g_c, "num": g_num,
    "card_bad": g_card_bad, "iban_bad": g_iban_bad, "ssn_bad": g_ssn_bad,
    "first": lambda r, c, a="": r.choice(FIRST), "last": lambda r, c, a="": r.choice(LAST),
    "word": lambda r, c, a="": r.choice(WORDS), "city": lambda r, c, a="": r.choice(CITIES),
    "db": lambda r, c, a="": r.choice(["orders", "billing", "app_prod", "analytics", "crm", "inventory", "auth"]),
    "hex": lambda r, c, a: rs(r, HEX, int(a)), "HEX": lambda r, c, a: rs(r, HEX.upper(), int(a)),
    "an": lambda r, c, a: rs(r, AN, int(a)), "d": lambda r, c, a: d(r, int(a)),
    "b64": lambda r, c, a: b64(rb(r, int(a))), "b64u": lambda r, c, a: b64u(rb(r, int(a))),
    "b32": lambda r, c, a: rs(r, LOW + "234567", int(a)),
    "ver": lambda r, c, a="": "%d.%d.%d" % (r.randint(0, 9), r.randint(0, 30), r.randint(0, 40)),
    "sname": lambda r, c, a="": r.choice(SECRET_NAMES),
    "venv": lambda r, c, a="": c["vendor"][2], "vhost": lambda r, c, a="": c["vendor"][3],
    "vname": lambda r, c, a="": c["vendor"][0].split("-")[0],
    "fp": lambda r, c, a="": ":".join(rs(r, HEX.upper(), 2) for _ in range(32 if a == "256" else 20)),
    "region": lambda r, c, a="": r.choice(["eu-west-1", "us-east-2", "ap-south-1", "sa-east-1", "ap-northeast-1"]),
    "size": lambda r, c, a="": "%d.%d%s" % (r.randint(1, 999), r.randint(0, 9), r.choice(["K", "M", "G", " kB", " MiB"])),
    "dur": lambda r, c, a="": "%d.%03ds" % (r.randint(0, 99), r.randint(0, 999)),
    "amount": lambda r, c, a="": "%d.%02d" % (r.randint(10, 9999), r.randint(0, 99)),
}
SENS = {"pw": g_pw, "sec": g_sec, "b64secret": g_b64secret, "tok": g_tok, "pkey": g_pkey, "jwt": g_jwt,
        "phone": g_phone, "card": g_card, "iban": g_iban, "ssn": g_ssn, "email": g_email}

# ------------------------------------------------------------------ families
PW, GS, DB, PK, JW = "generic-password", "generic-secret", "db-url", "private-key", "jwt"
PH, EM, CC, IB, SS, NO = "phone", "email", "credit-card", "iban", "us-ssn", "none"
PII = {PH, EM, CC, IB, SS}
NDEF = {"pwcli": 12, "pwcfg": 12, "pwcode": 12, "pwurl": 13, "pwmisc": 14, "gsec": 16, "vtok": 24, "pkey": 18,
        "jwt": 18, "dburl": 16, "phone": 18, "email": 20, "card": 25, "iban": 25, "ssn": 22, "negip": 20}
FAMS = []

def F(cls, form, kind, *tpls, n=None, amb=False, opt=False, allow="", hard=True, vstyle=None, wrap=None):
    if wrap:
        tpls = tuple("⟨gp:%s⟩" % wrap + t for t in tpls)
    FAMS.append(dict(name=cls + "-" + form, cls=cls, kind=kind, tpls=tpls, n=n or NDEF.get(cls, 34),
                     amb=amb, opt=opt, allow=set(allow.split()), hard=hard, vstyle=vstyle))


S, U, H, HS = "⟨sh⟩", "⟨user⟩", "⟨host⟩", "⟨hs⟩"
P, PU = "⟦pw⟧", "⟦pw:url⟧"

# --- passwords in command lines
F("pwcli", "lftp-u", PW, S + "lftp -u " + U + "," + P + " sftp://" + H, S + 'lftp -e "mirror -R ./dist /www; quit" -u ' + U + "," + P + " ftp." + "⟨dom⟩")
F("pwcli", "smbclient-U", PW, S + "smbclient //" + H + "/⟨word⟩ -U " + U + "%" + P + " -c 'ls'", S + "smbclient -L " + HS + " -U 'CORP\\" + U + "%" + P + "'")
F("pwcli", "mongo-tools", PW, S + "mongoexport --host " + H + " -u " + U + " -p " + P + " --authenticationDatabase admin -d ⟨db⟩ -c users -o users.json",
  S + 'mongosh --host ' + H + ' --username ' + U + " --password '" + P + "' --authenticationDatabase admin")
F("pwcli", "redis-cli-a", PW, S + "redis-cli -h " + H + " -p 6379 -a " + P + " --no-auth-warning INFO keyspace",
  S + "redis-cli --user " + U + " --pass '" + P + "' -n 2 --scan --pattern 'session:*'")
F("pwcli", "sqlcmd-bcp", PW, S + 'sqlcmd -S ' + H + ',1433 -U sa -P "' + P + '" -Q "SELECT name FROM sys.databases"',
  S + "bcp ⟨db⟩.dbo.Orders out orders.dat -S " + H + " -U " + U + " -P " + P + " -c -t,")
F("pwcli", "registry-login", PW, S + "docker login -u " + U + " -p " + P + " registry.⟨dom⟩\nWARNING! Using --password via the CLI is insecure. Use --password-stdin.",
  S + "podman login --username " + U + " --password '" + P + "' quay.io", S + "helm registry login " + H + " --username " + U + " --password " + P)
F("pwcli", "openssl-pass-arg", PW, S + "openssl pkcs12 -export -in tls.crt -inkey tls.key -out bundle.p12 -passout pass:" + P,
  S + "openssl enc -aes-256-cbc -pbkdf2 -in backup.tar -out backup.tar.enc -pass pass:" + P, S + "openssl rsa -in server.key -passin 'pass:" + P + "' -out server.nopass.key")
F("pwcli", "keytool-storepass", PW, S + "keytool -importkeystore -srckeystore in.p12 -srcstoretype PKCS12 -srcstorepass " + P + " -destkeystore app.jks -deststorepass ⟦pw⟧",
  S + "keytool -list -v -keystore truststore.jks -storepass '" + P + "'")
F("pwcli", "htpasswd-b", PW, S + "htpasswd -bc /etc/nginx/.htpasswd " + U + " " + P, S + "htpasswd -b -B .htpasswd " + U + " '" + P + "'")
F("pwcli", "ldap-tools-w", PW, S + 'ldapsearch -x -H ldaps://' + H + ' -D "cn=' + U + ',ou=svc,dc=corp,dc=lan" -w \'' + P + '\' -b "dc=corp,dc=lan" "(uid=⟨user⟩)"',
  S + "ldapmodify -x -D cn=admin,dc=⟨word⟩,dc=org -w " + P + " -f change.ldif")
F("pwcli", "argocd-oc-login", PW, S + "argocd login " + H + " --username admin --password " + P + " --grpc-web",
  S + "oc login https://api." + H + ":6443 -u " + U + " -p " + P + " --insecure-skip-tls-verify")
F("pwcli", "influx-cqlsh", PW, S + "influx setup --username " + U + " --password " + P + " --org ⟨word⟩ --bucket metrics --force",
  S + "cqlsh " + H + " 9042 -u cassandra -p '" + P + "'")
F("pwcli", "windows-net-use", PW, "C:\\> net use Z: \\\\" + HS + "\\⟨word⟩ " + P + " /user:CORP\\" + U + " /persistent:yes",
  "C:\\Users\\" + U + "> cmdkey /add:" + HS + " /user:" + U + " /pass:" + P)
F("pwcli", "sshpass-p", PW, S + "sshpass -p '" + P + "' ssh -o StrictHostKeyChecking=no " + U + "@" + HS + " uptime",
  S + "sshpass -p " + P + " scp dump.sql " + U + "@" + HS + ":/tmp/")
F("pwcli", "vault-userpass", PW, S + "vault login -method=userpass username=" + U + " password=" + P,
  S + "vault write auth/userpass/users/" + U + " password='" + P + "' policies=dev")
F("pwcli", "wget-password", PW, S + "wget --user=" + U + " --password='" + P + "' https://" + H + "/artifacts/build-⟨num:100-999⟩.tgz",
  S + "wget --ftp-user=" + U + " --ftp-password=" + P + " ftp://ftp.⟨dom⟩/pub/data.csv")
F("pwcli", "zip-unzip-P", PW, S + "zip -P " + P + " -r export.zip ./reports", S + "unzip -P '" + P + "' export-⟨date⟩.zip")
F("pwcli", "gpg-passphrase", PW, S + "gpg --batch --pinentry-mode loopback --passphrase '⟦pw:sp⟧' -d secrets.tar.gpg > secrets.tar",
  S + "gpg --batch --yes --passphrase=" + P + " -c notes.txt")
F("pwcli", "rabbitmqctl-user", PW, S + "rabbitmqctl add_user " + U + " '" + P + "'", S + "rabbitmqctl change_password " + U + " " + P)
F("pwcli", "mysql-password-eq", PW, S + "mysql -h " + H + " -u " + U + " --password=" + P + " ⟨db⟩ < dump.sql",
  S + "MYSQL_PWD='" + P + "' mysql -u " + U + " -e 'SHOW DATABASES'")
F("pwcli", "pgpassword-prefix", PW, S + "PGPASSWORD='" + P + "' psql -h " + H + " -U " + U + " -d ⟨db⟩ -c '\\dt'",
  S + "PGPASSWORD=" + P + " pg_dump -Fc -h " + H + " ⟨db⟩ > ⟨db⟩.dump")
F("pwcli", "expect-script", PW, "spawn ssh " + U + "@" + HS + "\nexpect \"password:\"\nsend \"" + P + "\\r\"\ninteract",
  "expect -c 'spawn su - ⟨user⟩; expect \"Password:\"; send \"" + P + "\\r\"; interact'")
F("pwcli", "powershell-securestring", PW, "PS C:\\> $pw = ConvertTo-SecureString '" + P + "' -AsPlainText -Force; $cred = New-Object PSCredential('CORP\\" + U + "', $pw)",
  "PS C:\\> Set-ADAccountPassword -Identity " + U + " -Reset -NewPassword (ConvertTo-SecureString -AsPlainText \"" + P + "\" -Force)")
F("pwcli", "jvm-d-props", PW, "⟨num:1000-60000⟩ java -Xmx2g -Djavax.net.ssl.keyStorePassword=" + P + " -jar /opt/app/app.jar",
  S + "mvn deploy -Drepo.user=" + U + " -Drepo.pass=" + P + " -DskipTests", S + "java -Dspring.datasource.password=" + P + " -jar service.jar --server.port=8080")

# --- passwords in config files
F("pwcfg", "ini-passwd", PW, "[database]\nhost = " + H + "\nuser = " + U + "\npasswd = " + P, "[client]\nuser=" + U + "\npassword=\"" + P + "\"\nhost=" + H)
F("pwcfg", "java-properties", PW, "mail.smtp.host=smtp.⟨dom⟩\nmail.smtp.user=" + U + "\nmail.smtp.password=" + P,
  "ldap.url=ldaps://" + H + ":636\nldap.bindDn=cn=" + U + ",dc=corp\nldap.bindPassword=" + P, "keystore.password = " + P)
F("pwcfg", "yaml-nested-auth", PW, "database:\n  host: " + H + "\n  username: " + U + "\n  password: \"" + P + "\"",
  "smtp:\n  auth:\n    user: " + U + "\n    pass: '" + P + "'\n  port: 587")
F("pwcfg", "toml-table", PW, "[postgres]\nhost = \"" + H + "\"\nuser = \"" + U + "\"\npassword = \"" + P + "\"", "[smtp]\nserver = \"" + H + "\"\npassword = '" + P + "'")
F("pwcfg", "helm-admin-values", PW, "keycloak:\n  auth:\n    adminUser: admin\n    adminPassword: \"" + P + "\"",
  "grafana:\n  adminUser: admin\n  adminPassword: " + P + "\n  persistence:\n    enabled: true", "rabbitmq:\n  auth:\n    username: " + U + "\n    password: '" + P + "'")
F("pwcfg", "k8s-secret-stringdata", PW, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ⟨word⟩-db\ntype: Opaque\nstringData:\n  DB_USER: " + U + "\n  DB_PASSWORD: \"" + P + "\"")
F("pwcfg", "compose-environment", PW, "services:\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_USER: " + U + "\n      POSTGRES_PASSWORD: " + P,
  "  mariadb:\n    image: mariadb:11\n    environment:\n      - MARIADB_ROOT_PASSWORD=" + P)
F("pwcfg", "terraform-azurerm", PW, "resource \"azurerm_mssql_server\" \"main\" {\n  administrator_login          = \"" + U + "\"\n  administrator_login_password = \"" + P + "\"\n}",
  "provider \"vsphere\" {\n  user     = \"" + U + "@vsphere.local\"\n  password = \"" + P + "\"\n}", allow="email")
F("pwcfg", "ansible-inventory-vars", PW, HS + " ansible_host=" + HS + ".corp.lan ansible_user=deploy ansible_password=" + P,
  "all:\n  vars:\n    ansible_become_password: \"" + P + "\"", "[windows:vars]\nansible_user=Administrator\nansible_password=" + P + "\nansible_connection=winrm")
F("pwcfg", "dockerfile-arg-run", PW, "ARG NEXUS_PASSWORD=" + P + "\nRUN mvn -s settings.xml -Dnexus.password=$NEXUS_PASSWORD package",
  "RUN pip install --index-url https://" + U + ":" + PU + "@nexus.⟨dom⟩/repository/pypi/simple app==⟨ver⟩")
F("pwcfg", "nix-options", PW, "users.users." + U + ".initialPassword = \"" + P + "\";", "services.grafana.settings.security.admin_password = \"" + P + "\";",
  "services.postgresql.initialScript = pkgs.writeText \"init.sql\" \"CREATE ROLE " + U + " WITH LOGIN PASSWORD '" + P + "';\";")
F("pwcfg", "xml-settings", PW, "<server>\n  <id>nexus-releases</id>\n  <username>" + U + "</username>\n  <password>" + P + "</password>\n</server>",
  "<add key=\"SmtpPassword\" value=\"" + P + "\" />")
F("pwcfg", "json-app-config", PW, "{\n  \"Smtp\": {\n    \"Host\": \"" + H + "\",\n    \"User\": \"" + U + "\",\n    \"Password\": \"" + P + "\"\n  }\n}",
  "{\"protocol\": \"sftp\", \"host\": \"" + H + "\", \"username\": \"" + U + "\", \"password\": \"" + P + "\", \"remotePath\": \"/var/www\"}")
F("pwcfg", "i18n-keys-europe", PW, "Passwort: " + P, "salasana = " + P, "lösenord: \"" + P + "\"", "adgangskode=" + P, "heslo: " + P,
  "jelszó = " + P, "κωδικός: " + P, "contrasenya: " + P, "wachtwoord_db = '" + P + "'", "geslo: " + P)
F("pwcfg", "i18n-keys-world", PW, "비밀번호: " + P, "รหัสผ่าน = " + P, "पासवर्ड: " + P, "סיסמה: " + P, "كلمة_المرور = " + P,
  "密码 = \"" + P + "\"", "パスワード：" + P, "пароль_бд: " + P, "parolă: " + P, "neno_siri: " + P)
F("pwcfg", "pypirc-pgpass", PW, "[distutils]\nindex-servers = nexus\n\n[nexus]\nrepository = https://nexus.⟨dom⟩/repository/pypi/\nusername = " + U + "\npassword = " + P,
  H + ":5432:⟨db⟩:" + U + ":" + P)
F("pwcfg", "openwrt-routeros", PW, "config wifi-iface 'default_radio0'\n\toption ssid '⟨word⟩-⟨num:1-99⟩'\n\toption encryption 'psk2'\n\toption key '" + P + "'",
  "uci set wireless.@wifi-iface[0].key='" + P + "'", "/interface wireless security-profiles set [ find default=yes ] wpa2-pre-shared-key=" + P)
F("pwcfg", "ci-variables", PW, "variables:\n  DEPLOY_USER: " + U + "\n  DEPLOY_PASSWORD: \"" + P + "\"",
  "variables:\n- name: sqlAdminPassword\n  value: '" + P + "'", "    environment:\n      TEST_DB_PASSWORD: " + P)
F("pwcfg", "systemd-environment", PW, "[Service]\nEnvironment=\"SMTP_PASSWORD=" + P + "\"\nExecStart=/usr/local/bin/mailer", "Environment=DB_PASS=" + P)
F("pwcfg", "sql-alter-password", PW, "ALTER USER " + U + " WITH PASSWORD '" + P + "';", "ALTER LOGIN [" + U + "] WITH PASSWORD = N'" + P + "';",
  "SET PASSWORD FOR '" + U + "'@'%' = '" + P + "';", "CREATE USER " + U + " IDENTIFIED BY \"" + P + "\";")

# --- passwords in code
F("pwcode", "python-kwargs", PW, "conn = psycopg2.connect(host=\"" + H + "\", user=\"" + U + "\", password=\"" + P + "\", dbname=\"⟨db⟩\")",
  "client.connect(\"" + HS + "\", username=\"" + U + "\", password=\"" + P + "\", timeout=10)", "server.login(\"" + U + "\", \"" + P + "\")")
F("pwcode", "go-struct-literal", PW, "cfg := mysql.Config{User: \"" + U + "\", Passwd: \"" + P + "\", Net: \"tcp\", Addr: \"" + H + ":3306\"}",
  "auth := smtp.PlainAuth(\"\", \"" + U + "\", \"" + P + "\", \"" + H + "\")")
F("pwcode", "rust-builder", PW, "let opts = PgConnectOptions::new().host(\"" + H + "\").username(\"" + U + "\").password(\"" + P + "\");",
  "const ADMIN_PASSWORD: &str = \"" + P + "\";")
F("pwcode", "js-object", PW, "const pool = mysql.createPool({ host: '" + H + "', user: '" + U + "', password: '" + P + "' });",
  "  auth: { user: '" + U + "', pass: '" + P + "' },")
F("pwcode", "ts-environment", PW, "export const environment = { production: true, adminPassword: '" + P + "' };", "  private readonly password: string = \"" + P + "\";")
F("pwcode", "java-setters", PW, "props.put(\"mail.smtp.password\", \"" + P + "\");", "Connection c = DriverManager.getConnection(url, \"" + U + "\", \"" + P + "\");",
  "dataSource.setPassword(\"" + P + "\");")
F("pwcode", "csharp-networkcredential", PW, "var cred = new NetworkCredential(\"" + U + "\", \"" + P + "\");",
  "client.Credentials = new NetworkCredential(\"" + U + "\", \"" + P + "\", \"CORP\");", "options.Password = \"" + P + "\";")
F("pwcode", "ruby-hash", PW, "ActionMailer::Base.smtp_settings = { user_name: '" + U + "', password: '" + P + "' }",
  "Net::SSH.start('" + HS + "', '" + U + "', password: '" + P + "')")
F("pwcode", "php-pdo-mailer", PW, "$pdo = new PDO($dsn, '" + U + "', '" + P + "');", "$mail->Password = '" + P + "';", "define('DB_PASSWORD', '" + P + "');")
F("pwcode", "bashrc-export", PW, "export ADMIN_PASS='" + P + "'", "DB_PASSWORD=\"" + P + "\" ./migrate.sh --env staging")
F("pwcode", "kotlin-swift-dart", PW, "val password = \"" + P + "\"", "let password = \"" + P + "\"", "final password = '" + P + "';",
  "keychain.set(\"" + P + "\", forKey: \"password\")")
F("pwcode", "ui-test-typing", PW, "driver.find_element(By.ID, \"password\").send_keys(\"" + P + "\")",
  "cy.get('input[name=password]').type('" + P + "')", "fill_in \"Password\", with: \"" + P + "\"", "await page.fill('#password', '" + P + "');")
F("pwcode", "lua-perl", PW, "local password = \"" + P + "\"", "my $password = '" + P + "';", "my %db = (user => '" + U + "', pass => '" + P + "');")
F("pwcode", "powershell-invoke", PW, "$Password = \"" + P + "\"", "Invoke-Sqlcmd -ServerInstance " + H + " -Username " + U + " -Password '" + P + "' -Query 'SELECT 1'")

# --- passwords in (non-database) URLs
F("pwurl", "git-remote-v", PW, "origin\thttps://⟨user#1⟩:⟦pw:url#1⟧@git.⟨dom#1⟩/team/app.git (fetch)\norigin\thttps://⟨user#1⟩:⟦pw:url#1⟧@git.⟨dom#1⟩/team/app.git (push)")
F("pwurl", "pip-index-url", PW, S + "pip install -i https://" + U + ":" + PU + "@pypi.⟨dom⟩/simple internal-lib",
  "[global]\nindex-url = https://" + U + ":" + PU + "@pypi.⟨dom⟩/simple")
F("pwurl", "npm-registry-url", PW, "registry=https://" + U + ":" + PU + "@npm.⟨dom⟩/repository/npm-group/")
F("pwurl", "ftp-url-log", PW, "⟨lp⟩Connecting to ftp.⟨dom#1⟩ via ftp://" + U + ":" + PU + "@ftp.⟨dom#1⟩/pub/",
  S + "curl -T report.csv ftp://" + U + ":" + PU + "@ftp.⟨dom⟩/incoming/")
F("pwurl", "jenkins-basic-url", PW, S + "curl -X POST https://" + U + ":" + PU + "@jenkins.⟨dom⟩/job/deploy/buildWithParameters?ENV=prod")
F("pwurl", "smtp-url-env", PW, "SMTP_URL=smtps://" + U + ":" + PU + "@smtp.⟨dom⟩:465", "EMAIL_URL=submission://" + U + ":" + PU + "@smtp.⟨dom⟩:587")

# --- passwords in chat, prompts, logs, tickets
F("pwmisc", "chat-english", PW, "hey can you log into the staging box? user is " + U + " and the password is " + P,
  "new wifi password for the office: " + P, "pw for the shared ⟨word⟩ account → " + P, "@⟨first⟩ the root pass is " + P + " (please rotate after)")
F("pwmisc", "chat-other-languages", PW, "la contraseña del servidor es " + P, "a senha do banco é " + P, "das Passwort lautet " + P,
  "le mot de passe est " + P, "passwordnya " + P + " ya", "服务器密码是 " + P, "mật khẩu wifi là " + P, "पासवर्ड है " + P)
F("pwmisc", "prompt-echoed", PW, "[sudo] password for " + U + ": " + P + "\nsudo: 1 incorrect password attempt",
  "Enter PEM pass phrase:⟦pw#1⟧\nVerifying - Enter PEM pass phrase:⟦pw#1⟧", "Password (again): " + P)
F("pwmisc", "app-debug-log", PW, "⟨lp⟩DEBUG auth attempt user=" + U + " password=" + P + " result=ok",
  "⟨lp⟩INFO Connecting with credentials {'user': '" + U + "', 'password': '" + P + "'}", "⟨lp⟩level=debug msg=\"login\" username=" + U + " password=\"" + P + "\"")
F("pwmisc", "ticket-markdown", PW, "**Credentials**\n- URL: https://" + H + "/admin\n- Login: " + U + "\n- Password: `" + P + "`",
  "| env | user | password |\n|---|---|---|\n| staging | " + U + " | " + P + " |")
F("pwmisc", "passphrase-notes", PW, "Disk encryption passphrase (LUKS): ⟦pw:sp⟧", "KeePass master password = ⟦pw:sp⟧", "backup repo passphrase: ⟦pw:sp⟧")
F("pwmisc", "pin-codes", PW, "SIM PIN: ⟦pw:pin⟧", S + "ykman piv access change-pin --pin ⟦pw:pin⟧ --new-pin ⟦pw:pin⟧",
  "door code / alarm PIN = ⟦pw:pin⟧", "card PIN: ⟦pw:pin⟧")
F("pwmisc", "api-login-calls", PW, S + "http POST :8000/api/login username=" + U + " password=" + P,
  S + "grpcurl -d '{\"username\":\"" + U + "\",\"password\":\"" + P + "\"}' " + H + ":443 auth.v1.Auth/Login")

# --- generic secrets
G = "⟦sec⟧"
F("gsec", "webhook-secret", GS, "GITHUB_WEBHOOK_SECRET=" + G, "webhook:\n  url: https://" + H + "/hooks\n  secret: " + G, "WEBHOOK_SIGNING_SECRET=\"" + G + "\"")
F("gsec", "hmac-key", GS, "HMAC_KEY=⟦sec:hex⟧", "hmac_secret: \"⟦sec:b64⟧\"", "signing_key = \"" + G + "\"")
F("gsec", "encryption-key", GS, "ENCRYPTION_KEY=⟦sec:hex64⟧", "aes_key: ⟦sec:b64⟧", "\"encryptionKey\": \"⟦sec:b64⟧\"", "FIELD_ENCRYPTION_KEY=⟦sec:fernet⟧")
F("gsec", "session-secret", GS, "SESSION_SECRET=" + G, "app.use(session({ secret: '" + G + "', resave: false, saveUninitialized: false }))",
  "cookie_secret = \"" + G + "\"", "secret_key_base: ⟦sec:hex128⟧")
F("gsec", "oauth-client-secret", GS, "OAUTH_CLIENT_SECRET=⟦sec:an⟧", "  client_id: ⟨word⟩-portal\n  client_secret: " + G, S + "./register-app --client-id ⟨uuid⟩ --client-secret " + G)
F("gsec", "token-response", GS, "{\"access_token\": \"⟦sec:an⟧\", \"token_type\": \"Bearer\", \"expires_in\": 3600, \"refresh_token\": \"⟦sec:an⟧\"}",
  "refresh_token=⟦sec:urlsafe⟧&grant_type=refresh_token&client_id=⟨word⟩-cli")
F("gsec", "bot-token", GS, "BOT_TOKEN=" + G, "matrix:\n  homeserver: https://matrix.⟨dom⟩\n  access_token: syt_⟦sec:an⟧", "bot_token = \"" + G + "\"")
F("gsec", "framework-secret-key", GS, "SECRET_KEY = '⟦sec:django⟧'", "app.config['SECRET_KEY'] = '" + G + "'", "JWT_SECRET_KEY=" + G)
F("gsec", "js-framework-env", GS, "APP_KEY=base64:⟦sec:b64⟧", "NEXTAUTH_SECRET=⟦sec:b64⟧", "PAYLOAD_SECRET=" + G, "AUTH_SECRET=\"⟦sec:b64⟧\"")
F("gsec", "cli-secret-flags", GS, S + "kubectl create secret generic app-secrets --from-literal=api-key=" + G,
  S + "pulumi config set --secret signingKey " + G, S + "./deploy --api-token " + G + " --env prod")
F("gsec", "aws-secret-access-key", GS, "export AWS_SECRET_ACCESS_KEY=⟦sec:aws⟧", S + "aws configure set aws_secret_access_key ⟦sec:aws⟧ --profile ⟨word⟩",
  "[⟨word⟩]\naws_secret_access_key = ⟦sec:aws⟧\nregion = ⟨region⟩")
F("gsec", "azure-storage-key", GS, "DefaultEndpointsProtocol=https;AccountName=⟨word⟩store;AccountKey=⟦sec:b64k⟧;EndpointSuffix=core.windows.net",
  S + "az storage blob upload --account-name ⟨word⟩store --account-key ⟦sec:b64k⟧ -c backups -f db.bak")
F("gsec", "saas-unprefixed-keys", GS, "TWILIO_AUTH_TOKEN=⟦sec:hex⟧", "SLACK_SIGNING_SECRET=⟦sec:hex⟧", "ALGOLIA_ADMIN_KEY=⟦sec:hex⟧",
  "CLOUDFLARE_API_TOKEN=⟦sec:an⟧", "DD_API_KEY=⟦sec:hex⟧", "WANDB_API_KEY=⟦sec:hex⟧")
F("gsec", "code-literal-secret", GS, "private static final String API_SECRET = \"" + G + "\";", "const apiSecret = \"" + G + "\"",
  "let clientSecret = \"" + G + "\"", "$apiSecret = '" + G + "';")
F("gsec", "k8s-secret-data-b64", GS, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ⟨word⟩-api\ndata:\n  api-key: ⟦b64secret⟧", "data:\n  token: ⟦b64secret⟧\ntype: Opaque")
F("gsec", "http-auth-headers", GS, "> Authorization: Bearer ⟦sec:an⟧\n> Accept: application/json", S + "curl -H \"X-API-Key: " + G + "\" https://api.⟨dom⟩/v2/items",
  "⟨lp⟩outgoing request headers={'X-Auth-Token': '" + G + "', 'Accept': '*/*'}")

# --- vendor tokens (vendor picked per row; kind and rule follow the vendor)
T = "⟦tok⟧"
F("vtok", "dotenv-commented", "*", "# ⟨vname⟩\n⟨venv⟩=" + T, "⟨venv⟩=\"" + T + "\"  # added ⟨date⟩")
F("vtok", "ci-run-step", "*", "⟨ts⟩ Run ./scripts/publish.sh\n⟨ts⟩   ⟨venv⟩: " + T, "⟨ts⟩ + export ⟨venv⟩=" + T)
F("vtok", "k8s-stringdata", "*", "stringData:\n  ⟨venv⟩: " + T, "stringData:\n  token: \"" + T + "\"")
F("vtok", "python-client-init", "*", "client = Client(api_key=\"" + T + "\")", "os.environ[\"⟨venv⟩\"] = \"" + T + "\"", vstyle="key")
F("vtok", "js-fallback-literal", "*", "const token = process.env.⟨venv⟩ ?? \"" + T + "\";", "const API_KEY = '" + T + "'; // TODO move to env", vstyle="key")
F("vtok", "curl-bearer", "*", S + "curl -s https://⟨vhost⟩/v1/models -H \"Authorization: Bearer " + T + "\"",
  S + "curl -H 'Authorization: token " + T + "' https://⟨vhost⟩/user", vstyle="key")
F("vtok", "env-prefix-command", "*", S + "⟨venv⟩=" + T + " ./scripts/sync.sh --dry-run", S + "env ⟨venv⟩='" + T + "' make release")
F("vtok", "mcp-server-config", "*", "{\n  \"mcpServers\": {\n    \"⟨vname⟩\": {\n      \"command\": \"npx\",\n      \"env\": { \"⟨venv⟩\": \"" + T + "\" }\n    }\n  }\n}")
F("vtok", "toml-provider", "*", "[providers.⟨vname⟩]\napi_key = \"" + T + "\"", "[auth]\ntoken = '" + T + "'")
F("vtok", "powershell-setenv", "*", "[Environment]::SetEnvironmentVariable(\"⟨venv⟩\", \"" + T + "\", \"User\")", "PS> $env:⟨venv⟩ = \"" + T + "\"")
F("vtok", "http-error-echo", "*", "⟨lp⟩ERROR request to https://⟨vhost⟩/ failed: 401 Unauthorized (token=" + T + ")",
  "⟨lp⟩WARN auth rejected for key " + T + ", retrying in 5s", vstyle="key")
F("vtok", "docker-build-arg", "*", S + "docker build --build-arg ⟨venv⟩=" + T + " -t app:latest .", "Step 4/12 : ARG ⟨venv⟩=" + T)

# --- private keys
F("pkey", "cat-key-file", PK, S + "cat ~/.ssh/id_⟨word⟩\n⟦pkey⟧", S + "kubectl exec -n ⟨word⟩ deploy/api -- cat /etc/tls/tls.key\n⟦pkey⟧", "⟦pkey⟧")
F("pkey", "json-escaped", PK, "{\n  \"type\": \"service_account\",\n  \"private_key_id\": \"⟨hex:40⟩\",\n  \"private_key\": \"⟦pkey:json⟧\\n\"\n}",
  "SSH_PRIVATE_KEY=\"⟦pkey:json⟧\"", "{\"name\": \"deploy\", \"privateKey\": \"⟦pkey:json⟧\"}")
F("pkey", "yaml-block-scalar", PK, "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nstringData:\n  tls.key: |\n    ⟦pkey:ind4⟧", "deploy_ssh_key: |\n  ⟦pkey:ind2⟧")
F("pkey", "code-heredoc", PK, "private_key = <<-EOT\n⟦pkey⟧\nEOT", "KEY = \"\"\"⟦pkey⟧\n\"\"\"", "var signingKey = []byte(`⟦pkey⟧`)")

# --- JWTs
F("jwt", "bearer-header-log", JW, "> Authorization: Bearer ⟦jwt⟧", "⟨lp⟩GET /api/v1/me headers={\"authorization\": \"Bearer ⟦jwt⟧\"}",
  "{\"id_token\": \"⟦jwt⟧\", \"token_type\": \"Bearer\"}")
F("jwt", "cookie-storage", JW, "localStorage.setItem('token', '⟦jwt⟧')", "Cookie: access_token=⟦jwt⟧; theme=dark", "users:\n- name: ci-bot\n  user:\n    token: ⟦jwt⟧")

# --- credentials in database / queue URLs (span = the password)
F("dburl", "dotenv-urls", DB, "DATABASE_URL=postgres://" + U + ":" + PU + "@" + H + ":5432/⟨db⟩?sslmode=require",
  "REDIS_URL=rediss://default:" + PU + "@" + H + ":6380/0", "MONGO_URL=mongodb+srv://" + U + ":" + PU + "@cluster0.⟨an:5⟩.mongodb.net/⟨db⟩?retryWrites=true&w=majority",
  "CELERY_BROKER_URL=amqps://" + U + ":" + PU + "@" + H + ":5671//")
F("dburl", "orm-code", DB, "engine = create_engine(\"postgresql+psycopg://" + U + ":" + PU + "@" + H + "/⟨db⟩\", pool_pre_ping=True)",
  "DB = Sequel.connect('mysql2://" + U + ":" + PU + "@" + H + "/⟨db⟩')", "r = redis.from_url(\"redis://:" + PU + "@" + H + ":6379/1\")",
  "await mongoose.connect('mongodb://" + U + ":" + PU + "@" + H + ":27017/⟨db⟩?authSource=admin');")
F("dburl", "startup-log", DB, "⟨lp⟩INFO Connecting to database at mysql://" + U + ":" + PU + "@" + H + ":3306/⟨db⟩",
  "⟨lp⟩ - ** ---------- .> transport:   amqp://" + U + ":" + PU + "@" + H + ":5672//", "⟨lp⟩Error: connect ETIMEDOUT (clickhouse://" + U + ":" + PU + "@" + H + ":9000/⟨db⟩)")
F("dburl", "jdbc-params", DB, "jdbc:postgresql://" + H + ":5432/⟨db⟩?user=" + U + "&password=" + PU + "&ssl=true",
  "spring.datasource.url=jdbc:mysql://" + H + ":3306/⟨db⟩?user=" + U + "&password=" + PU)
F("dburl", "yaml-uri", DB, "spring:\n  data:\n    mongodb:\n      uri: mongodb://" + U + ":" + PU + "@" + H + ":27017/⟨db⟩",
  "elasticsearch:\n  hosts: [\"https://elastic:" + PU + "@" + H + ":9200\"]", "broker_url: amqp://" + U + ":" + PU + "@" + H + ":5672/⟨word⟩")
F("dburl", "migration-cli", DB, S + "migrate -database \"postgres://" + U + ":" + PU + "@" + H + ":5432/⟨db⟩?sslmode=disable\" -path db/migrations up",
  S + "dbmate --url \"mysql://" + U + ":" + PU + "@" + H + ":3306/⟨db⟩\" migrate", S + "pgcli postgresql://" + U + ":" + PU + "@" + H + "/⟨db⟩")

# --- phone numbers (country and format random per row, see `detail`)
Q = "⟦phone⟧"
F("phone", "sms-gateway-log", PH, "⟨lp⟩Sending SMS to ⟦phone:e164⟧ via provider: status=queued id=SM⟨hex:32⟩", "⟨lp⟩sms.outbound to=" + Q + " segments=1 status=delivered")
F("phone", "otp-dispatch-log", PH, "⟨lp⟩verification code dispatched msisdn=⟦phone:e164⟧ attempt=⟨num:1-3⟩", "⟨lp⟩OTP sent to " + Q + " (channel=sms)")
F("phone", "orm-repr", PH, "<User id=⟨num:10-99999⟩ name='⟨name⟩' phone_number='" + Q + "'>", "Customer(id=⟨num:10-9999⟩, mobile=\"" + Q + "\", city=\"⟨city⟩\")")
F("phone", "sql-result-grid", PH, "+----+-----------------+------------------+\n| id | name            | phone            |\n+----+-----------------+------------------+\n| ⟨num:10-99⟩ | ⟨name⟩ | " + Q + " |\n+----+-----------------+------------------+")
F("phone", "shipping-label", PH, "Ship to: ⟨name⟩, ⟨num:1-200⟩ Station Rd, ⟨city⟩ - Tel: " + Q, "Recipient: ⟨name⟩ | Mobile: " + Q + " | Leave at door")
F("phone", "contact-form-mail", PH, "New contact form submission\nName: ⟨name⟩\nPhone: " + Q + "\nMessage: please call back after 5pm")
F("phone", "ical-dial-in", PH, "BEGIN:VEVENT\nSUMMARY:Vendor sync\nDESCRIPTION:Dial-in: " + Q + "\nEND:VEVENT", "LOCATION:Call " + Q)
F("phone", "webhook-payload", PH, "{\"event\": \"contact.created\", \"contact\": {\"first_name\": \"⟨first⟩\", \"mobile\": \"" + Q + "\"}}")
F("phone", "prose-english", PH, "If anything breaks overnight call me on " + Q, "my number changed, it's " + Q + " now", "you can reach the site manager at " + Q)
F("phone", "prose-asia", PH, "मेरा नंबर ⟦phone:IN⟧ है", "我的手机号是⟦phone:CN⟧", "電話番号：⟦phone:JP⟧", "nomor saya ⟦phone:ID⟧",
  "میرا نمبر ⟦phone:PK⟧ ہے", "আমার নম্বর ⟦phone:BD⟧", "ang number ko ay ⟦phone:PH⟧", "số điện thoại của tôi là ⟦phone:VN⟧")
F("phone", "prose-emea-americas", PH, "meu celular é ⟦phone:BR⟧", "мой номер ⟦phone:RU⟧", "mi número es ⟦phone:MX⟧", "rufen Sie mich an: ⟦phone:DE⟧",
  "appelez-moi au ⟦phone:FR⟧", "رقمي ⟦phone:EG⟧", "ስልክ ቁጥሬ ⟦phone:ET⟧ ነው", "abeg call me for ⟦phone:NG⟧", "ring me on ⟦phone:GB⟧", "text me at ⟦phone:US⟧")
F("phone", "android-logcat", PH, "⟨date⟩ 10:⟨num:10-59⟩:⟨num:10-59⟩.⟨num:100-999⟩  ⟨num:1000-9999⟩  ⟨num:1000-9999⟩ I SmsReceiver: incoming from " + Q,
  "D/Telephony( ⟨num:1000-9999⟩): dial " + Q)
F("phone", "voicemail-notice", PH, "New voicemail from ⟨name⟩ " + Q + " (0:⟨num:10-59⟩)", "Missed call: " + Q + " at ⟨ts⟩")
F("phone", "app-config-number", PH, "support_phone = \"" + Q + "\"", "ALERT_SMS_TO=⟦phone:e164⟧", "  hotline: '" + Q + "'")
F("phone", "oncall-markdown", PH, "| Primary | ⟨name⟩ | " + Q + " |\n| Secondary | ⟨name⟩ | ⟦phone#2⟧ |", "On call this week: ⟨name⟩ (" + Q + ")")
F("phone", "alertmanager-sms", PH, "receivers:\n- name: oncall-sms\n  sms_configs:\n  - to: '⟦phone:e164⟧'", "notify:\n  - type: sms\n    number: \"" + Q + "\"")
F("phone", "tsv-row-noheader", PH, "⟨name⟩\t⟨city⟩\t" + Q + "\t⟨date⟩", "⟨num:1000-9999⟩\t⟨name⟩\t" + Q)
F("phone", "validation-error", PH, "ValidationError: phone number " + Q + " is already registered",
  "422 {\"error\":\"duplicate\",\"field\":\"phone\",\"value\":\"" + Q + "\"}")
F("phone", "sms-api-request", PH, "{\"to\": \"⟦phone:e164⟧\", \"from\": \"⟨word⟩\", \"body\": \"Your parcel is out for delivery\"}",
  "POST /v1/messages {\"recipient\": \"⟦phone:e164⟧\", \"template\": \"reminder\"}")
F("phone", "letterhead", PH, "⟨name⟩ · ⟨city⟩\nTel.: " + Q + " · Fax: ⟦phone#2⟧", "Tel " + Q + " | Mob ⟦phone#2⟧")

# --- e-mail, cards, IBANs, SSNs
E = "⟦email⟧"
F("email", "git-author-lines", EM, "commit ⟨hex:40⟩\nAuthor: ⟨name⟩ <" + E + ">\nDate:   Mon Mar 3 10:⟨num:10-59⟩:00 2025 +0100", "    ⟨num:1-400⟩\t⟨name⟩ <" + E + ">")
F("email", "package-metadata", EM, "authors = [\"⟨name⟩ <" + E + ">\"]", "  \"author\": \"⟨name⟩ <" + E + ">\",", "Maintainer: ⟨name⟩ <" + E + ">")
F("email", "account-cli-output", EM, "*       " + E + "\n\nTo set the active account, run:\n    $ gcloud config set account `ACCOUNT`",
  "⟨lp⟩password reset requested for " + E, "⟨lp⟩Login succeeded for " + E + " session=⟨hex:16⟩")
F("email", "mail-headers", EM, "From: ⟨name⟩ <" + E + ">\nTo: ⟦email#2⟧\nSubject: Re: invoice ⟨num:1000-9999⟩",
  "⟨lp⟩postfix/smtp[⟨num:1000-9999⟩]: ⟨HEX:10⟩: to=<" + E + ">, relay=mx.⟨dom⟩:25, status=sent (250 OK)")
F("card", "payment-debug-log", CC, "⟨lp⟩DEBUG charge request pan=⟦card⟧ exp=⟨num:1-12⟩/⟨num:26-31⟩ amount=⟨amount⟩",
  "{\"card\": {\"number\": \"⟦card⟧\", \"exp_month\": ⟨num:1-12⟩, \"exp_year\": 20⟨num:26-31⟩}}")
F("card", "chat-and-sheet", CC, "here's the company card for the hosting bill: ⟦card:sp⟧ exp ⟨num:1-12⟩/⟨num:26-31⟩", "⟨name⟩,⟦card:plain⟧,⟨num:1-12⟩/⟨num:26-31⟩,⟨city⟩")
F("iban", "payout-records", IB, "⟨num:1000-9999⟩;⟨name⟩;⟦iban:plain⟧;⟨amount⟩;EUR", "payout = {'beneficiary': '⟨name⟩', 'iban': '⟦iban⟧'}",
  "\"bank_account\": {\"holder\": \"⟨name⟩\", \"iban\": \"⟦iban:plain⟧\"}")
F("iban", "invoice-text", IB, "Please transfer ⟨amount⟩ EUR to IBAN ⟦iban⟧ (BIC ⟨c:INGBNL2A|DEUTDEFF|BNPAFRPP|CAIXESBB⟩)",
  "Gelieve ⟨amount⟩ over te maken naar ⟦iban⟧", "Si prega di effettuare il bonifico su IBAN ⟦iban⟧",
  "Prosimy o wpłatę na rachunek ⟦iban⟧", "Transferencia a la cuenta ⟦iban⟧, concepto factura ⟨num:100-999⟩")
F("ssn", "hr-export", SS, "⟨num:1000-9999⟩,⟨last⟩,⟨first⟩,⟦ssn:-⟧,⟨date⟩", "{\"employee\": \"⟨name⟩\", \"ssn\": \"⟦ssn:-⟧\"}",
  "⟨lp⟩background check submitted ssn=⟦ssn⟧ status=pending")
F("ssn", "form-prose", SS, "Applicant SSN: ⟦ssn⟧", "my social security number is ⟦ssn:-⟧", "Social Security No. ⟦ssn⟧ (verified ⟨date⟩)")

# ------------------------------------------------------------------ negatives
W = "⟨word⟩"
SN, SNL = "⟨sname#1⟩", "⟨c:db|api|smtp|redis|jwt|admin|oauth⟩"
F("negref", "k8s-secretkeyref", NO, "env:\n- name: " + SN + "\n  valueFrom:\n    secretKeyRef:\n      name: " + W + "-" + SNL + "\n      key: ⟨c:password|token|api-key|secret⟩",
  "envFrom:\n- secretRef:\n    name: " + W + "-credentials", "      - name: " + SN + "\n        valueFrom: {secretKeyRef: {name: " + W + ", key: " + SNL + "}}", wrap="yaml")
F("negref", "helm-template-refs", NO, "password: {{ .Values." + W + ".auth.password | quote }}",
  "value: {{ required \"" + SNL + " password is required\" .Values." + W + ".password }}", "{{- if .Values." + W + ".existingSecret }}",
  "  " + SN + ": {{ .Values.secrets." + SNL + " | b64enc }}", wrap="yaml")
F("negref", "shell-expansions", NO, S + "psql \"postgres://$PGUSER:${PGPASSWORD}@$PGHOST/$PGDATABASE\"", S + "mysql -u root -p\"$MYSQL_ROOT_PASSWORD\" -e 'SELECT 1'",
  S + "curl -u \"$API_USER:$(cat /run/secrets/api_pw)\" https://" + H + "/health", S + "echo \"$REGISTRY_PASSWORD\" | docker login -u ci --password-stdin")
F("negref", "ci-secret-refs", NO, "  password: ${{ secrets." + SN + " }}", "env:\n  " + SN + ": ${{ secrets." + SN + " }}", "  -p $(" + W + "Password)",
  "  token: $CI_JOB_TOKEN", "  " + SN + ": $" + SN, wrap="yaml")
F("negref", "terraform-computed", NO, "  password = random_password." + W + ".result", "  secret_string = data.aws_secretsmanager_secret_version." + W + ".secret_string",
  "  administrator_login_password = jsondecode(data.vault_generic_secret." + W + ".data_json)[\"password\"]", "  sensitive = true",
  "  " + SNL + "_password = var." + W + "_password", wrap="tf")
F("negref", "secret-manager-uris", NO, "op://" + W + "/" + W + "/password", "vault:secret/data/" + W + "#" + SNL + "_password",
  "arn:aws:secretsmanager:⟨region⟩:⟨d:12⟩:secret:prod/" + W + "-⟨an:6⟩", "@Microsoft.KeyVault(SecretUri=https://" + W + "-kv.vault.azure.net/secrets/DbPassword/)",
  "projects/" + W + "-prod/secrets/" + SNL + "-password/versions/latest")
F("negref", "doc-placeholders", NO, "export " + SN + "=YOUR_API_KEY_HERE", "password: REPLACE_WITH_PASSWORD", "token = \"xxxxxxxxxxxxxxxxxxxx\"",
  "--password ⟨ph⟩", "\"apiKey\": \"{{apiKey}}\"", "SECRET=__SECRET__", "client_secret: <client-secret>", SN + "=⟨ph⟩", wrap="env")
F("negref", "code-env-read", NO, W + "_key = os.environ[\"" + SN + "\"]", W + " := os.Getenv(\"" + SN + "\")", "String " + W + " = System.getenv(\"" + SN + "\");",
  "const " + W + " = process.env." + SN + ";", "let " + W + " = std::env::var(\"" + SN + "\")?;", W + " = ENV.fetch(\"" + SN + "\")",
  "var " + W + " = Environment.GetEnvironmentVariable(\"" + SN + "\");", wrap="code")
F("negref", "code-secret-api", NO, "password = getpass.getpass(\"Password for " + U + ": \")", "pw = keyring.get_password(\"" + W + "\", user)",
  "@Value(\"${app." + W + ".secret}\")\nprivate String " + W + "Secret;", "Rails.application.credentials.dig(:" + W + ", :secret_access_key)",
  "read -rs -p \"Password: \" " + SN, "$cred = Get-Credential -UserName " + U + " -Message 'DB login'", wrap="code")
F("negref", "dotenv-example-empty", NO, SN + "=\n⟨sname⟩=\n⟨sname⟩=  # set in vault", "# copy to .env and fill in\n" + SN + "=\n⟨sname⟩=", SN + "=\"\"", wrap="env")
F("negref", "ansible-lookups", NO, "ansible_become_password: \"{{ lookup('community.hashi_vault.hashi_vault', 'secret=secret/data/" + W + ":password') }}\"",
  W + "_password: \"{{ lookup('env', '" + SN + "') }}\"", "password: \"{{ lookup('password', '/dev/null length=⟨num:12-40⟩') }}\"", wrap="yaml")
F("negref", "nix-secret-files", NO, "passwordFile = config.age.secrets." + W + ".path;", "environmentFile = \"/run/secrets/" + W + ".env\";",
  "hashedPasswordFile = config.sops.secrets.\"users/" + U + "\".path;", "sops.secrets.\"" + W + "/password\" = { owner = \"" + W + "\"; };", wrap="nix")
F("negref", "docker-secret-files", NO, "secrets:\n  " + SNL + "_password:\n    file: ./secrets/" + SNL + "_password.txt", SN + "_FILE: /run/secrets/" + SNL + "_password",
  "RUN --mount=type=secret,id=" + W + ",target=/root/.npmrc npm ci", wrap="yaml")
F("negref", "spring-placeholders", NO, "spring.datasource.password=${" + SN + ":}", "password: ${vault." + W + ".password}", "app." + W + ".api-key=${" + SN + "}",
  "jwt.secret=⟨ph⟩", wrap="conf")
F("negmask", "ci-masked-output", NO, "⟨ts⟩   DOCKER_PASSWORD: ***", "$ echo $DEPLOY_TOKEN\n[MASKED]", "+ curl -u deploy:**** https://" + H + "/api",
  "Setting environment variables\n  API_TOKEN=[secure]")
F("negmask", "terraform-plan-sensitive", NO, "  + " + SNL + "_password = (sensitive value)", "  ~ " + W + "_secret = (sensitive value)",
  W + "_password = <sensitive>", "      + " + W + " = (sensitive value)")
F("negmask", "kubectl-describe-secret", NO, "Name:         ⟨word⟩-db\nType:  Opaque\n\nData\n====\npassword:  ⟨num:8-40⟩ bytes\nusername:  ⟨num:4-12⟩ bytes")
F("negmask", "log-redaction", NO, "⟨lp⟩login user=" + U + " password=⟨mask⟩", "⟨lp⟩{\"authorization\": \"⟨mask⟩\", \"path\": \"/api/v1/orders\"}",
  "⟨lp⟩Authorization: Bearer ⟨mask⟩")
F("negmask", "ui-dots", NO, "Password: ••••••••", "Secret: ●●●●●●●●●●", "API key: ••••••••••••⟨an:4⟩", "Token  [hidden]  (click to reveal)")
F("negmask", "partial-card", NO, "Visa •••• ⟨d:4⟩", "card ending in ⟨d:4⟩", "XXXX-XXXX-XXXX-⟨d:4⟩", "**** **** **** ⟨d:4⟩ exp ⟨num:1-12⟩/⟨num:26-31⟩")
F("negdoc", "password-policy-config", NO, "password_min_length = ⟨num:8-16⟩", "PASS_MAX_DAYS\t⟨num:30-180⟩", "minlen = ⟨num:8-16⟩\ndcredit = -⟨num:1-2⟩",
  "\"passwordPolicy\": {\"requireUppercase\": ⟨c:true|false⟩, \"minimumLength\": ⟨num:8-16⟩}", "password_expiry_days: ⟨num:30-365⟩", wrap="conf")
F("negdoc", "sshd-pam", NO, "PasswordAuthentication ⟨c:no|yes⟩\nPermitEmptyPasswords no", "auth    ⟨c:required|sufficient⟩    pam_unix.so ⟨c:nullok|try_first_pass⟩",
  "password requisite pam_pwquality.so retry=⟨num:1-5⟩", "KbdInteractiveAuthentication ⟨c:no|yes⟩\nPubkeyAuthentication yes", wrap="conf")
F("negdoc", "nsswitch", NO, "passwd:         files ⟨c:systemd|sss|ldap|winbind⟩\ngroup:          files ⟨c:systemd|sss⟩\nshadow:         files",
  "hosts: files ⟨c:dns|mdns4_minimal [NOTFOUND=return] dns|resolve [!UNAVAIL=return] dns⟩ myhostname", "passwd: files ⟨c:sss|ldap⟩\nnetgroup: nis", wrap="conf")
F("negdoc", "help-synopsis", NO, "  -p, --password PASSWORD   password to use when connecting", "      --token-file PATH   read the API token from PATH",
  "Usage: " + W + " login [--api-key KEY] [--profile NAME]", "  --" + W + "-secret SECRET   (env: " + SN + ")")
F("negdoc", "keybindings", NO, "{ \"key\": \"ctrl+shift+⟨c:p|k|l|e|f⟩\", \"command\": \"workbench.action." + W + "\" }", "bind-key -n C-⟨c:t|n|w⟩ new-window",
  "bindsym $mod+⟨c:Return|d|Shift+q⟩ exec " + W, "key: ctrl+alt+⟨c:t|k|l⟩", "nnoremap <leader>⟨c:p|f|g⟩ :" + W + "<CR>", wrap="json")
F("negdoc", "llm-token-usage", NO, "usage: prompt_tokens=⟨num:10-9000⟩ completion_tokens=⟨num:10-4000⟩", "max_tokens: ⟨c:1024|4096|8192⟩",
  "tokenizer: ⟨c:cl100k_base|o200k_base|llama3⟩", "Token indices sequence length is longer than the specified maximum sequence length for this model (⟨num:513-9000⟩ > 512)")
F("negdoc", "sql-key-ddl", NO, "  PRIMARY KEY (id),\n  FOREIGN KEY (" + W + "_id) REFERENCES " + W + "s(id)", "  password_hash VARCHAR(⟨c:60|128|255⟩) NOT NULL,",
  "CREATE INDEX idx_" + W + "_tokens_expires_at ON " + W + "_tokens(expires_at);", "  api_key_id BIGINT REFERENCES api_keys(id)", wrap="sql")
F("negdoc", "flag-booleans", NO, "secret: ⟨c:false|true⟩", "\"isSecret\": ⟨c:true|false⟩", "mask_password: ⟨c:yes|no⟩", "token_auth_enabled = ⟨c:true|false⟩",
  "requirePassword: ⟨c:false|true⟩", W + "_secret_enabled: ⟨c:true|false⟩", wrap="yaml")
F("negdoc", "admin-defaults", NO, "POSTGRES_PASSWORD=⟨c:postgres|password|example⟩", "password: ⟨c:changeme|password|admin|secret⟩", "default login is ⟨c:admin/admin|root/root|admin/password⟩",
  "MYSQL_ROOT_PASSWORD=⟨c:example|root|changeme⟩", amb=True, wrap="yaml")
F("negdoc", "auth-error-messages", NO, "FATAL:  password authentication failed for user \"" + U + "\"", "ERROR 1045 (28000): Access denied for user '" + U + "'@'localhost' (using password: YES)",
  "ssh: handshake failed: ssh: unable to authenticate, attempted methods [none password]", "Error: token expired at ⟨ts⟩")
F("negdoc", "key-named-fields", NO, "- key: app.kubernetes.io/" + W + "\n  operator: In", "tolerations:\n- key: \"node-role/" + W + "\"\n  effect: NoSchedule",
  "partition_key = \"" + W + "_id\"", "cache_key = f\"" + W + ":{uid}\"", "{\"type\": \"keydown\", \"key\": \"⟨c:Enter|Escape|ArrowUp|Tab⟩\"}", wrap="yaml")
F("negdoc", "locale-strings", NO, "\"login.password\": \"⟨c:Passwort|Mot de passe|Contraseña|Senha|Пароль|密码⟩\"", "password_label = \"⟨c:Mot de passe|Wachtwoord|Hasło⟩\"",
  "forgot_password: \"⟨c:¿Olvidaste tu contraseña?|Passwort vergessen?|Mot de passe oublié ?⟩\"", "\"password.placeholder\": \"⟨c:Enter your password|Kata sandi|パスワードを入力⟩\"", wrap="json")
F("neghash", "git-plumbing", NO, "$ git rev-parse HEAD\n⟨hex:40⟩", "v⟨ver⟩-⟨num:1-90⟩-g⟨hex:7⟩", " ⟨hex:40⟩ vendor/⟨word⟩ (v⟨ver⟩)",
  "⟨hex:40⟩ 1 1 1\nauthor-time ⟨num:1600000000-1750000000⟩")
F("neghash", "docker-layers", NO, "⟨hex:12⟩: Pull complete", "REPOSITORY   TAG   DIGEST   IMAGE ID\n⟨word⟩   latest   sha256:⟨hex:64⟩   ⟨hex:12⟩",
  " => => writing image sha256:⟨hex:64⟩  0.0s")
F("neghash", "go-sum", NO, "golang.org/x/⟨word⟩ v0.⟨num:1-30⟩.0 h1:⟨b64:32⟩", "github.com/⟨word⟩/⟨word⟩ v1.⟨num:0-9⟩.⟨num:0-9⟩/go.mod h1:⟨b64:32⟩")
F("neghash", "cargo-lock", NO, "[[package]]\nname = \"⟨word⟩\"\nversion = \"⟨ver⟩\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"⟨hex:64⟩\"")
F("neghash", "poetry-uv-lock", NO, "    {file = \"⟨word⟩-⟨ver⟩-py3-none-any.whl\", hash = \"sha256:⟨hex:64⟩\"},", "wheels = [{ url = \"https://files.pythonhosted.org/⟨word⟩.whl\", hash = \"sha256:⟨hex:64⟩\" }]")
F("neghash", "npm-pack-integrity", NO, "npm notice shasum:      ⟨hex:40⟩\nnpm notice integrity:   sha512-⟨b64:12⟩[...]⟨b64:9⟩==", "      resolution: {integrity: sha512-⟨b64:64⟩}")
F("neghash", "ssh-public-keys", NO, "⟨sshpub⟩ " + U + "@" + HS, "256 SHA256:⟨b64u:32⟩ " + U + "@" + HS + " (ED25519)", "⟨hs⟩ ⟨sshpub⟩")
F("neghash", "cert-fingerprints", NO, "sha256 Fingerprint=⟨fp:256⟩", "serial=⟨HEX:32⟩", "            X509v3 Subject Key Identifier:\n                ⟨fp⟩")
F("neghash", "public-key-pem", NO, "⟨pubpem⟩", "$ openssl pkey -in key.pem -pubout\n⟨pubpem⟩")
F("neghash", "uuid-ids", NO, "\"tenantId\": \"⟨uuid⟩\",\n\"subscriptionId\": \"⟨uuid⟩\"", "x-request-id: ⟨uuid⟩", "nvme0n1p2 ext4 ⟨uuid⟩ /",
  "Project(\"{⟨uuid⟩}\") = \"⟨word⟩\", \"src\\⟨word⟩.csproj\", \"{⟨uuid⟩}\"")
F("neghash", "trace-ids", NO, "traceparent: 00-⟨hex:32⟩-⟨hex:16⟩-01", "X-Amzn-Trace-Id: Root=1-⟨hex:8⟩-⟨hex:24⟩", "trace_id=⟨hex:32⟩ span_id=⟨hex:16⟩ level=info msg=\"done\"")
F("neghash", "object-ids", NO, "ObjectId(\"⟨hex:24⟩\")", "ETag: \"⟨hex:32⟩\"", "VersionId: ⟨b64u:24⟩", "resourceVersion: \"⟨num:100000-9999999⟩\"\nuid: ⟨uuid⟩")
F("neghash", "chain-public-ids", NO, "tx 0x⟨hex:64⟩ confirmed in block ⟨num:18000000-21000000⟩", "to: 0x⟨hex:40⟩", "ipfs://bafybei⟨b32:52⟩")
F("neghash", "build-ids", NO, "ELF 64-bit LSB pie executable, x86-64, BuildID[sha1]=⟨hex:40⟩, stripped", "  dist/assets/index-⟨an:8⟩.js   ⟨num:10-900⟩.⟨num:10-99⟩ kB │ gzip: ⟨num:10-99⟩.⟨num:10-99⟩ kB",
  "Build Hash: ⟨hex:20⟩  Time: ⟨num:100-9999⟩ms")
F("neghash", "public-base64", NO, "$ echo '⟨textb64⟩' | base64 -d", "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA⟨b64:30⟩", "Content-Transfer-Encoding: base64\n\n⟨textb64⟩")
F("neghash", "flake-lock", NO, "\"narHash\": \"sha256-⟨b64:32⟩\",\n\"rev\": \"⟨hex:40⟩\"", "Locked URL: github:NixOS/nixpkgs/⟨hex:40⟩")
F("neghash", "windows-file-hashes", NO, "SHA256 hash of ⟨word⟩.msi:\n⟨hex:64⟩\nCertUtil: -hashfile command completed successfully.",
  "Algorithm       Hash                                                                   Path\nSHA256          ⟨HEX:64⟩       C:\\tmp\\⟨word⟩.zip")
F("neghash", "gitops-revisions", NO, "digest: sha256:⟨hex:64⟩", "Revision: ⟨hex:40⟩", "applied revision main@sha1:⟨hex:40⟩")
F("negnum", "order-invoice-ids", NO, "Order #⟨d:10⟩ shipped", "Invoice INV-2025-⟨d:6⟩", "Bestellnummer: 30⟨num:1-9⟩-⟨d:7⟩-⟨d:7⟩", "Rechnung Nr. ⟨d:8⟩")
F("negnum", "tracking-numbers", NO, "Tracking: 1Z⟨HEX:16⟩", "FedEx tracking 7⟨d:11⟩", "Consignment ⟨d:4⟩ ⟨d:4⟩ ⟨d:4⟩")
F("negnum", "coordinates", NO, "lat=⟨num:10-40⟩.⟨d:4⟩, lon=⟨num:60-120⟩.⟨d:4⟩", "\"coordinates\": [⟨num:100-110⟩.⟨d:4⟩, -⟨num:1-9⟩.⟨d:4⟩]", "⟨num:10-50⟩°⟨num:10-59⟩′⟨num:10-59⟩″N ⟨num:10-99⟩°⟨num:10-59⟩′⟨num:10-59⟩″W")
F("negnum", "durations-metrics", NO, "took ⟨num:100000-99999999⟩ ns", "real\t0m⟨num:1-59⟩.⟨d:3⟩s\nuser\t0m⟨num:1-59⟩.⟨d:3⟩s", "http_requests_total{code=\"200\"} ⟨num:100000-99999999⟩",
  "p99=⟨num:100-9999⟩.⟨d:2⟩ms p50=⟨num:10-99⟩.⟨d:2⟩ms")
F("negnum", "epoch-timestamps", NO, "\"ts\": ⟨num:1700000000-1760000000⟩.⟨d:6⟩", "created_at_ms=⟨num:1700000000000-1760000000000⟩", "exp: ⟨num:1700000000-1760000000⟩")
F("negnum", "version-build-numbers", NO, "Version 10.0.⟨num:19041-26100⟩ Build ⟨num:19041-26100⟩", "Docker version ⟨num:20-27⟩.0.⟨num:1-9⟩, build ⟨hex:7⟩",
  "Linux ⟨hs⟩ 6.1.0-⟨num:10-30⟩-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.⟨num:50-120⟩-1 (⟨date⟩) x86_64 GNU/Linux")
F("negnum", "market-quotes", NO, "AAPL ⟨num:100-300⟩.⟨d:2⟩ +⟨num:0-9⟩.⟨d:2⟩ (+0.⟨d:2⟩%)", "BTC/USD ⟨num:30000-99999⟩.⟨d:2⟩ vol ⟨num:1000-99999⟩", "NIFTY 50 ⟨num:20000-26000⟩.⟨d:2⟩ −⟨num:10-200⟩.⟨d:2⟩")
F("negnum", "product-codes", NO, "SKU-⟨d:5⟩-⟨c:S|M|L|XL⟩", "P/N 0⟨d:3⟩-⟨d:3⟩-⟨d:3⟩", "NDC 0⟨d:3⟩-⟨d:4⟩-⟨d:2⟩", "HS code ⟨d:4⟩.⟨d:2⟩.⟨d:4⟩")
F("negnum", "fictional-phones", NO, "Call us at ⟨fict⟩ (example number)", "TEL;TYPE=work:⟨fict⟩", "phone: \"⟨fict⟩\"", amb=True, allow="phone")
F("negnum", "gpu-smi", NO, "|   0  NVIDIA A100-SXM4-80GB   On  | 00000000:⟨d:2⟩:00.0 Off |      0 |\n| N/A   ⟨num:30-80⟩C  P0  ⟨num:50-400⟩W / 400W | ⟨num:1000-80000⟩MiB / 81920MiB | ⟨num:0-100⟩%  Default |")
F("negnum", "memory-bytes", NO, "              total        used        free\nMem:    ⟨num:8000000000-68000000000⟩  ⟨num:1000000000-8000000000⟩  ⟨num:100000000-999999999⟩",
  "/dev/nvme0n1p2  ⟨num:100000000000-999999999999⟩ ⟨num:10000000000-99999999999⟩")
F("negnum", "numpy-print", NO, "tensor([[ 0.⟨d:4⟩, -1.⟨d:4⟩,  0.⟨d:4⟩],\n        [ 2.⟨d:4⟩,  0.⟨d:4⟩, -0.⟨d:4⟩]])", "array([⟨num:100-9999⟩.⟨d:3⟩, ⟨num:100-9999⟩.⟨d:3⟩, ⟨num:100-9999⟩.⟨d:3⟩])")
F("negpii", "reserved-domain-mail", NO, "git config user.email \"dev@⟨c:example.com|acme.test|corp.example|mail.invalid⟩\"", "To: ⟨first⟩@example.org", "contact: admin@⟨word⟩.example")
F("negpii", "at-sign-not-mail", NO, "\"@angular/core\": \"^⟨ver⟩\"", "postgresql@15-main.service", "@Override\npublic String toString() {",
  "@media (max-width: 600px) {", "git@github.com:⟨word⟩/⟨word⟩.git", allow="email")
F("negpii", "luhn-invalid-cards", NO, "card_number: ⟨card_bad⟩", "PAN ⟨card_bad⟩ rejected: checksum", "⟨card_bad⟩")
F("negpii", "iban-invalid", NO, "IBAN: ⟨iban_bad⟩", "iban=⟨iban_bad⟩ (invalid check digits)")
F("negpii", "ssn-invalid-range", NO, "ssn: ⟨ssn_bad⟩", "SSN ⟨ssn_bad⟩ failed validation", "⟨ssn_bad⟩")
F("negpii", "mentions-and-hosts", NO, "cc @⟨word⟩-team @⟨user⟩", "scp build.tar " + U + "@" + HS + ":/srv/releases/", "Reviewed-by: @⟨user⟩")
F("negip", "ss-listen", NO, "LISTEN 0  128  ⟨ip⟩:5432  0.0.0.0:*  users:((\"postgres\",pid=⟨num:300-9999⟩,fd=5))", "tcp  LISTEN  ⟨ip⟩:⟨num:1024-65000⟩", opt=True, amb=True, allow="ip")
F("negip", "nginx-upstream", NO, "upstream api {\n    server ⟨ip⟩:8080 max_fails=3;\n    server ⟨ip⟩:8080 backup;\n}", opt=True, amb=True, allow="ip")
F("negplain", "pytest-summary", NO, "==== ⟨num:1-400⟩ passed, ⟨num:0-9⟩ skipped in ⟨dur⟩ ====", "FAILED tests/test_⟨word⟩.py::test_⟨word⟩ - AssertionError", hard=False)
F("negplain", "http-router-log", NO, "⟨lp⟩GET /api/v1/⟨word⟩s 200 ⟨num:1-900⟩ms", "⟨lp⟩POST /login 302 ⟨num:1-90⟩ms", hard=False)
F("negplain", "git-status", NO, "On branch ⟨word⟩\nChanges not staged for commit:\n\tmodified:   src/⟨word⟩.rs", "Your branch is up to date with 'origin/main'.", hard=False)
F("negplain", "terraform-summary", NO, "Apply complete! Resources: ⟨num:0-20⟩ added, ⟨num:0-9⟩ changed, ⟨num:0-9⟩ destroyed.", "Plan: ⟨num:1-9⟩ to add, 0 to change, 0 to destroy.", hard=False)
F("negplain", "k8s-events", NO, "Normal  Scheduled  ⟨num:1-59⟩s  default-scheduler  Successfully assigned ⟨word⟩/api-⟨an:5⟩ to node-⟨num:1-9⟩",
  "Warning  BackOff  ⟨num:1-9⟩m  kubelet  Back-off restarting failed container", hard=False)
F("negplain", "compiler-output", NO, "   Compiling ⟨word⟩ v⟨ver⟩\n    Finished `release` profile [optimized] target(s) in ⟨dur⟩", "warning: unused variable: `⟨word⟩`", hard=False)

# ------------------------------------------------------------------ checks
RESERVED = re.compile(r"(^|\.)(example\.(com|net|org)|example|test|invalid|localhost)$")
RX_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})")
RX_CARD = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d])")
RX_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
RX_SSN_DASH = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
RX_PHONE = re.compile(r"\+\d[\d ().-]{6,}\d")
RX_IP = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
RX_TOKEN = re.compile(r"eyJ[\w-]{5,}\.eyJ|PRIVATE KEY-----|gh[pousr]_[A-Za-z0-9]{36}|github_pat_|glpat-|xox[bpa]-|"
                      r"AKIA[A-Z2-7]{16}|[sr]k_live_|AIza[\w-]{35}|T3BlbkFJ|hooks\.slack\.com/services|sk-ant-")
RX_HV = re.compile(r"(?i)(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key)[\"']?\s*[:=]\s*[\"']?([^\s\"',;)}]+)")

def strays(text, allow):
    """Sensitive-looking values in text (with the spans blanked) that would make a label wrong."""
    out = ["email" for m in RX_EMAIL.finditer(text) if "email" not in allow and not RESERVED.search(m.group(1).lower())]
    out += ["card" for m in RX_CARD.finditer(text) if luhn_ok(re.sub(r"\D", "", m.group())) and card_brand(re.sub(r"\D", "", m.group()))]
    out += ["iban" for m in RX_IBAN.finditer(text) if iban_valid(m.group())]
    out += ["ssn" for m in RX_SSN_DASH.finditer(text) if ssn_ok(m.group().replace("-", ""))]
    out += [k for k, rx in (("phone", RX_PHONE), ("ip", RX_IP), ("token", RX_TOKEN)) if k not in allow and rx.search(text)]
    return out

def high_entropy_assign(text):
    for m in RX_HV.finditer(text):
        v = m.group(1)
        if len(v) >= 16 and re.search(r"[A-Z]", v) and re.search(r"[a-z]", v) and re.search(r"\d", v) \
                and not re.search(r"[${<%*#@]", v):
            return True
    return False

def check_value(kind, v):
    assert v == v.strip() and v, (kind, v)
    if kind == CC:
        s = re.sub(r"[ -]", "", v)
        assert s.isdigit() and luhn_ok(s) and card_brand(s), v
    elif kind == IB:
        assert iban_valid(v), v
    elif kind == SS:
        s = re.sub(r"[ -]", "", v)
        assert len(s) == 9 and ssn_ok(s), v
    elif kind == PH:
        assert 8 <= len(re.sub(r"\D", "", v)) <= 15, v
    elif kind == EM:
        assert "@" in v and not RESERVED.search(v.split("@")[1]), v
    elif kind == PK:
        assert v.startswith("-----BEGIN ") and v.endswith("-----") and "PRIVATE KEY-----" in v, v[:40]
    elif kind == JW:
        h = json.loads(base64.urlsafe_b64decode(v.split(".")[0] + "=="))
        assert v.count(".") == 2 and "alg" in h
    elif kind == "github-token" and v[3] == "_":
        assert base62(zlib.crc32(v[4:-6].encode()), 6) == v[-6:], v

SLOT = re.compile(r"⟦([^⟧]*)⟧|⟨([^⟩]*)⟩")

def render(tpl, r, ctx):
    out, spans, cache, pos, last = [], [], {}, 0, 0
    for m in SLOT.finditer(tpl):
        lit = tpl[last:m.start()]
        out.append(lit)
        pos += len(lit)
        last = m.end()
        sens = m.group(1) is not None
        spec = m.group(1) if sens else m.group(2)
        if "#" in spec and spec in cache:
            val = cache[spec]
        else:
            name, _, arg = spec.split("#")[0].partition(":")
            val = (SENS if sens else FILL)[name](r, ctx, arg)
            cache[spec] = val
        if sens:
            spans.append((pos, pos + len(val), val))
        out.append(val)
        pos += len(val)
    out.append(tpl[last:])
    text = "".join(out)
    assert not re.search("[⟦⟧⟨⟩]", tpl[last:] + "".join(out[::2])), tpl
    for s, e, v in spans:
        assert text[s:e] == v, (tpl, s, e, v)
    return text, spans

def make_rows(f, seen):
    r = random.Random("%s/%s" % (SEED, f["name"]))
    cycle = [k for k in VENDOR_KIND_CYCLE if f["vstyle"] != "key" or k != "slack-webhook"]
    rows, tries = [], 0
    while len(rows) < f["n"]:
        tries += 1
        if tries > 60 * f["n"]:
            sys.exit("family %s: only %d rows after %d tries" % (f["name"], len(rows), tries))
        ctx = {}
        if f["cls"] == "vtok":  # kinds in rotation so both files get the same mix; vendor weighted within the kind
            vs = [v for v in VENDORS if v[1] == cycle[len(rows) % len(cycle)]]
            ctx["vendor"] = r.choices(vs, [v[4] for v in vs])[0]
        text, spans = render(r.choice(f["tpls"]), r, ctx)
        if text in seen:
            continue
        kind = ctx.get("kind") if f["kind"] == "*" else f["kind"]
        blank = list(text)
        for s, e, v in spans:
            check_value(kind, v)
            blank[s:e] = " " * (e - s)
        blank = "".join(blank)
        if strays(blank, f["allow"]) or (kind == NO and not f["amb"] and high_entropy_assign(text)):
            continue
        assert (kind == NO) == (not spans), f["name"]
        seen.add(text)
        row = {"id": "hf3-" + hashlib.sha1(text.encode()).hexdigest()[:12], "text": text,
               "label": "none" if kind == NO else ("pii" if kind in PII else "secret"), "kind": kind,
               "spans": [[s, e] for s, e, _ in sorted(spans)], "source": SOURCE, "subkind": f["name"]}
        row.update({k: ctx[k] for k in ("rule", "detail") if ctx.get(k)})
        row.update({k: True for k, on in (("ambiguous", f["amb"]), ("optional", f["opt"])) if on})
        rows.append(row)
    return rows

# ------------------------------------------------------------------ output
def split_families():
    names = sorted(f["name"] for f in FAMS)
    assert len(names) == len(set(names)), "duplicate family name"
    byname = {f["name"]: f for f in FAMS}
    for cls in sorted({f["cls"] for f in FAMS}):
        k = sum(1 for f in FAMS if f["cls"] == cls)
        assert k % 2 == 0, "class %s has an odd number of families (%d)" % (cls, k)
        block = [n for n in names if byname[n]["cls"] == cls]
        assert names.index(block[0]) % 2 == 0 and names[names.index(block[0]):][:k] == block, cls
    return [byname[n] for n in names[0::2]], [byname[n] for n in names[1::2]]

def summary(rows):
    return collections.Counter((x["label"], x["kind"]) for x in rows)
def readme_section(files):
    (tn, trows, tf), (hn, hrows, hf) = files
    kt, kh = summary(trows), summary(hrows)
    order = sorted(set(kt) | set(kh), key=lambda k: ({"secret": 0, "pii": 1, "none": 2}[k[0]], k[1]))
    hard = lambda fs: sum(f["n"] for f in fs if f["kind"] == NO and f["hard"]) / max(1, sum(f["n"] for f in fs if f["kind"] == NO))
    pos = lambda rows: sum(1 for x in rows if x["label"] != "none")
    L = ["<!-- gen_fresh3.py: begin -->", "## fresh3.tune.jsonl / fresh3.holdout.jsonl", "",
         "Written by `gen_fresh3.py` (Python 3 standard library only; deterministic, fixed `SEED`:",
         "`python3 guard/heldout/gen_fresh3.py` rewrites byte-identical files and this section).  Written from",
         "this README's row format and labelling policy and `shared/guard-corpus/README.md` only: no guard code,",
         "probe, test or generator of the other held-out sets was read, no row of another held-out set or of the",
         "development corpus was looked at, and the guard was not run.",
         "",
         "* **How the rows are made.**  %d template families (`subkind`), each a handful of templates with" % len(FAMS),
         "  slots; a sensitive slot draws a fresh random value per row (seeded per family), its `[start, end)`",
         "  code-point offsets become the span, and the generator asserts `text[start:end]` equals the inserted",
         "  value.  Passwords: random strong ones, word passphrases (`-`/`.`/`_`/CamelCase/spaces), human-made",
         "  and leet ones, PINs under a PIN label; in URLs the span is the password as rendered (percent-encoded",
         "  where it holds `%XX`).  Generic secrets: hex, base64, base64url, Fernet, base32, Django-style, AWS",
         "  secret keys, Azure storage keys, base64-encoded Kubernetes `data:` values.  Vendor tokens follow the",
         "  published shapes of %d vendor rules (`rule` field; GitHub/npm tokens carry a valid CRC32 checksum);" % len(VENDORS),
         "  within each family the kinds rotate (8 named kinds, then `api-key`) and the vendor is drawn per row",
         "  within the kind, so both files get the same kind mix from different renderings.  Private keys are DER",
         "  structures (RSA PKCS#1/PKCS#8, EC SEC1 P-256/P-384, Ed25519 PKCS#8, OpenSSH Ed25519) filled with",
         "  random bytes, rendered raw, JSON-escaped, indented in YAML, or in heredocs; the span is the block from",
         "  `-----BEGIN` to the end marker.  Phones: 18 countries (IN CN US ID PK NG BR BD RU MX JP ET PH EG VN DE",
         "  GB FR), mobile and landline, international / E.164 / national formats (`detail` = `CC-format-type`),",
         "  never fictional ranges.  Cards are Luhn-valid with brand lengths, IBANs mod-97-valid (20 countries),",
         "  SSNs in valid ranges; e-mail addresses use non-reserved domains.",
         "* **Checks.**  Each row is rejected and redrawn if, with its spans blanked, it still holds a real-domain",
         "  e-mail, a valid card / IBAN / SSN, a `+`-prefixed phone-like number, an IPv4 address, a JWT, a PEM",
         "  private key or a vendor-prefixed token; negatives (unless `ambiguous`) must also hold no",
         "  mixed-case-plus-digit value of 16+ characters assigned to a password/secret/token/key name.",
         "* **Policy choices** (as in the sections above): database and queue URLs are `db-url` (span = the",
         "  password); other URLs, key=value assignments and CLI flags are `generic-password`; a PIN under a PIN",
         "  label is a `generic-password`; vendor tokens without a published prefix (Twilio auth token, Slack",
         "  signing secret, Datadog key, ...) and AWS secret access keys are `generic-secret`; vendor-prefixed",
         "  tokens without their own kind are `api-key` with `rule`.  Factory defaults (`changeme`, `postgres`,",
         "  `admin/admin`) and fictional phone numbers (555-01xx, Ofcom drama ranges) are `none` + `ambiguous`;",
         "  IPv4 rows (`negip-*` only) are `none` + `optional` + `ambiguous`.  CSRF tokens are not used: the",
         "  policy does not say how to label them.  `git@github.com:org/repo` remotes are not e-mail.",
         "* **Negatives** (%.0f%% / %.0f%% of them hard look-alikes, the rest plain tool output): references," % (100 * hard(tf), 100 * hard(hf)),
         "  placeholders, masked values, code that reads a secret, policy / PAM / nsswitch / help / keybinding /",
         "  token-usage / DDL text, hashes and ids (git, image layers, lock files, public keys, fingerprints, UUIDs,",
         "  trace / object / chain / build ids, public base64), phone-shaped numbers that are not phones,",
         "  Luhn-invalid cards, checksum-invalid IBANs, invalid-range SSNs, reserved-domain and non-e-mail `@`.",
         "* **Split by family.**  Families are sorted by name; even index -> tune, odd -> holdout.  Every class",
         "  (name prefix) has an even number of families, so both files get the same mix of classes, but the",
         "  holdout file holds only forms the tune file never shows.  Texts are unique across both files.",
         "",
         "**Rule: fresh3.tune.jsonl may be looked at while fixing the guard; fresh3.holdout.jsonl is only measured,",
         "never read row by row.**  If the holdout has been looked at, change `SEED` and regenerate.",
         "",
         "Families in `fresh3.tune.jsonl` (%d): %s." % (len(tf), ", ".join("`%s`" % f["name"] for f in tf)), "",
         "Families in `fresh3.holdout.jsonl` (%d): %s." % (len(hf), ", ".join("`%s`" % f["name"] for f in hf)), "",
         "| label | kind | tune | holdout |", "|---|---|---:|---:|"]
    for k in order:
        L.append("| %s | %s | %d | %d |" % (k[0], k[1], kt.get(k, 0), kh.get(k, 0)))
    L += ["| **all** | | %d | %d |" % (len(trows), len(hrows)),
          "| positives | | %d (%.1f%%) | %d (%.1f%%) |" % (pos(trows), 100 * pos(trows) / len(trows), pos(hrows), 100 * pos(hrows) / len(hrows)),
          "| negatives marked `ambiguous` (incl. IPv4 rows) | | %d | %d |" % (sum(1 for x in trows if x.get("ambiguous")), sum(1 for x in hrows if x.get("ambiguous"))),
          "| negatives marked `optional` (IPv4) | | %d | %d |" % (sum(1 for x in trows if x.get("optional")), sum(1 for x in hrows if x.get("optional"))),
          "| families | | %d | %d |" % (len(tf), len(hf)),
          "<!-- gen_fresh3.py: end -->"]
    return "\n".join(L) + "\n"

def main():
    tune_f, hold_f = split_families()
    seen, files = set(), []
    for name, fams in (("fresh3.tune.jsonl", tune_f), ("fresh3.holdout.jsonl", hold_f)):
        rows = [x for f in fams for x in make_rows(f, seen)]
        random.Random(SEED + name).shuffle(rows)
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as fh:
            for x in rows:
                fh.write(json.dumps(x, ensure_ascii=False) + "\n")
        files.append((name, rows, fams))
        pos = sum(1 for x in rows if x["label"] != "none")
        print("%s: %d rows, %d positives, %d families" % (name, len(rows), pos, len(fams)))
    path = os.path.join(HERE, "README.md")
    old = open(path, encoding="utf-8").read()
    sec = readme_section(files)
    m = re.search(r"<!-- gen_fresh3.py: begin -->.*?<!-- gen_fresh3.py: end -->\n", old, re.S)
    new = old[:m.start()] + sec + old[m.end():] if m else old.rstrip("\n") + "\n\n" + sec
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(new)


if __name__ == "__main__":
    main()
