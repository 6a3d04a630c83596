#!/usr/bin/env python3
"""Second fresh held-out test set for the privacy guard (`fresh2.jsonl`).

Covers forms that none of `gen_text.py`, `gen_keys.py` and `gen_fresh.py` use:
other CLI tools with password options (backup, VPN, mail, archive, cloud, SNMP,
IPMI/BMC, FTP, database shells), typed assignments and constructor calls in
many languages, config files of other programs, passwords under non-English
names, passphrases/PINs/unicode/shell-quoted values, session cookies, HMAC and
encryption keys, phone numbers of 18 countries in national and international
formats inside new record formats, and many look-alike negatives.

Written from the labelling policy of `shared/guard-corpus/README.md` only (no
guard code read, no guard run, no development rows copied).  Python 3
standard library only; deterministic (fixed seed): rerunning rewrites a
byte-identical file.

    python3 gen_fresh2.py [--out FILE] [--no-readme]

Texts are assembled from fragments: in a template, ``⟦name⟧`` is a
non-sensitive value from generator ``name`` and ``⟦!name⟧`` a sensitive one,
whose code-point offsets become the row's spans.  Every row is validated at
the end (span bounds, Luhn / mod-97 / SSN ranges / phone digit counts /
JWT shape / GitHub checksum, and no stray sensitive value outside the spans).
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
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0x2F5E_D0C5_2026
SOURCE = "heldout-fresh2"
PREFIX = "hf2-"

R = random.Random(SEED)

DIG = string.digits
HEX = "0123456789abcdef"
UP = string.ascii_uppercase
LO = string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
B64C = ALNUM + "+/"
B64U = ALNUM + "-_"
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
CRYPT = "./" + string.digits + string.ascii_uppercase + string.ascii_lowercase


def ch(seq):
    return seq[R.randrange(len(seq))]


def rs(alpha, n):
    return "".join(alpha[R.randrange(len(alpha))] for _ in range(n))


def hx(n):
    return rs(HEX, n)


def b64(nbytes, url=False, pad=True):
    raw = bytes(R.randrange(256) for _ in range(nbytes))
    s = base64.urlsafe_b64encode(raw).decode() if url else base64.b64encode(raw).decode()
    return s if pad else s.rstrip("=")


def rbytes(n):
    return bytes(R.randrange(256) for _ in range(n))


def ri(a, b):
    return R.randint(a, b)


# ---------------------------------------------------------------------------
# vocabularies (own lists)
# ---------------------------------------------------------------------------

VOCAB = sorted(set("""
abacus adobe almond anchor antler apogee arcade argyle armada atlas attic
ballast bamboo banjo bayou beetle bellows bivouac blimp bobbin bollard bonnet
boxcar brass breeze brigand bucket buffalo bungalow cactus caboose calypso
candle canopy capstan carafe carnival cedar cello chalk chimney cinder clarinet
clover cobalt compass copper corsair cricket cutlass dagger damask derrick
dinghy domino dormouse dory dulcimer dune eddy elixir embankment engine fathom
felt ferry fiesta flagon flint foghorn forge fountain frigate furnace galley
garnet gazebo glider goblet gondolier granary gravel griffin gypsum hammock
harrow hatchet hearth helmet hemlock hopper hourglass igloo indigo ingot isthmus
jasper jigsaw jubilee kayak kettle keystone kiln kingfisher knapsack lamplight
lanyard latch lattice lemur lighthouse linen lobster loom lugger magpie mantle
maple marble mariner marquee mast mattock melody meteor mildew millpond mitten
moccasin mortar mosaic muffin musket narwhal nautilus needle nimbus notch oar
oatmeal ochre onyx orbit origami outpost oyster paddle paprika parasol parcel
parsnip pewter pickle pilgrim pinwheel pistachio plank plume pocket pontoon
porridge pottery pulley pumice quartz quiver radar raft rampart ratchet reef
relic ribbon rigging rivet rocket rudder saddle sail satchel scaffold schooner
scroll sextant shingle shovel silo skiff sledge sloop smelter snorkel spinnaker
spool spruce squall stallion stanza steeple stirrup sundial tambour tankard
tarpaulin teapot tiller timber toboggan topaz tractor trawler trombone trowel
tugboat tundra turbine turret ukulele umbrella vane vessel viaduct vortex
wagon walrus warden weasel wharf whittle windmill wrench yacht yodel zephyr
""".split()))

PEOPLE = {
    "IN": ("Aarav Ishaan Meera Ananya Kabir Nisha Rahul Lakshmi Sanjay Priyanka", "Iyer Banerjee Malhotra Pillai Chatterjee Desai Rao Saxena"),
    "CN": ("Wei Jing Hao Mei Qiang Xue Bo Lin Yu Ning", "Huang Zhao Liu Chen Yang Guo He Luo"),
    "US": ("Brandon Megan Tyler Kayla Jordan Courtney Dustin Heather Austin Brittany", "Harris Clark Lewis Walker Young Allen King Wright"),
    "ID": ("Budi Siti Agus Dewi Eko Sri Hendra Ratna Joko Wulan", "Santoso Wijaya Hidayat Setiawan Gunawan Purnomo Susanto Halim"),
    "PK": ("Ahmed Ayesha Bilal Fatima Hamza Mariam Kashif Saima Tariq Rabia", "Qureshi Malik Abbasi Javed Mirza Hashmi Khan Awan"),
    "NG": ("Chinedu Ngozi Emeka Funmilayo Tunde Amaka Segun Bisi Obinna Kemi", "Eze Okafor Adeyemi Balogun Nnamdi Okeke Bello Afolabi"),
    "BR": ("Joao Ana Pedro Beatriz Lucas Mariana Rafael Fernanda Bruno Leticia", "Souza Oliveira Pereira Santos Ribeiro Gomes Martins Barbosa"),
    "BD": ("Rahim Farhana Karim Nusrat Jamal Sharmin Habib Ruma Sabbir Tania", "Hossain Rahman Ahmed Chowdhury Sarkar Miah Talukder Das"),
    "RU": ("Dmitry Olga Sergei Natalia Andrei Tatiana Mikhail Yulia Ivan Anna", "Ivanov Smirnova Kuznetsov Popova Sokolov Lebedeva Morozov Volkova"),
    "MX": ("Alejandro Guadalupe Jose Fernanda Diego Valeria Luis Daniela Carlos Sofia", "Hernandez Garcia Martinez Lopez Gonzalez Ramirez Flores Cruz"),
    "JP": ("Haruto Yui Sota Aoi Ren Hina Yuto Mei Kaito Rin", "Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura"),
    "PH": ("Jose Maria Mark Kristine Paolo Angelica Jerome Princess Carlo Joy", "Santos Reyes Cruz Bautista Ocampo Garcia Mendoza Villanueva"),
    "EG": ("Mohamed Nour Omar Mariam Youssef Salma Karim Hana Mostafa Laila", "Hassan Ibrahim Mahmoud Abdelrahman Salem Fathy Naguib Soliman"),
    "DE": ("Lukas Lea Jonas Hannah Felix Lena Maximilian Sophie Paul Marie", "Mueller Schmidt Schneider Fischer Weber Meyer Wagner Becker"),
    "GB": ("Oliver Amelia George Isla Harry Ava Jack Emily Charlie Poppy", "Smith Jones Taylor Brown Evans Roberts Hughes Wood"),
    "FR": ("Louis Camille Hugo Chloe Arthur Manon Jules Ines Raphael Lea", "Martin Bernard Dubois Thomas Robert Richard Petit Durand"),
    "VN": ("Minh Lan Tuan Huong Duc Mai Quang Thao Long Linh", "Nguyen Tran Le Pham Hoang Phan Vu Dang"),
    "TR": ("Mehmet Zeynep Mustafa Elif Ahmet Ayse Emre Merve Burak Esra", "Yilmaz Kaya Demir Sahin Celik Yildiz Aydin Ozturk"),
}
COUNTRIES = list(PEOPLE)


def person(cc=None):
    f, l = PEOPLE[cc or ch(COUNTRIES)]
    return ch(f.split()) + " " + ch(l.split())


HOSTS = ["db-prod-3.corp", "pg-replica.int", "backup01.ops.lan", "mail.northwind.internal", "vpn.contoso-ops.net",
         "sftp.partner-exchange.net", "bmc-r12.dc2.lan", "nas02.home.arpa", "ldap.hq.internal", "ci-runner-7.build",
         "warehouse.analytics.corp", "cache-a.svc.cluster.local", "mq01.eu-west.internal", "erp.fabrikam.lan",
         "gitea.devbox.lan", "files.acme-shipping.com", "smtp.relay.internal", "kv-store-2.infra", "edge-gw.site4.lan",
         "reporting.tailspin.io", "archive.int", "switch-core-1.mgmt", "ups-b.mgmt", "idrac-node09.mgmt"]
USERS = ["svc_backup", "deploy", "admin", "etl_loader", "reporter", "root", "ops", "jenkins", "app_rw", "monitor",
         "sa", "postgres", "oracle", "readonly", "billing_svc", "nightly", "integration", "kiosk", "scanner", "sync"]
DBS = ["orders", "inventory", "payroll", "crm", "ledger", "metrics", "catalog", "analytics", "hr", "shipments"]
PATHS = ["/srv/data", "/var/backups", "/home/ops/reports", "/opt/app/config", "/mnt/archive", "/data/exports",
         "/etc/app", "/var/lib/app", "C:\\Deploy\\config", "/tmp/build"]


def word():
    return ch(VOCAB)


# ---------------------------------------------------------------------------
# sensitive value generators
# ---------------------------------------------------------------------------

SAFE_SYM = "!%*_-.+=~^"
UNI_WORDS = ["Schlüssel", "Größe", "Çalışkan", "Ñandú", "Café", "Kirsche", "Ёлка", "Зима", "Мороз", "Señal",
             "Maçã", "Pâtisserie", "Đàlạt", "Şeker", "Übermut", "Gülümse", "Lluvia", "Żółw", "Ørken", "Ærø"]


def pw_strong(n=None, sym=SAFE_SYM):
    n = n or ri(10, 22)
    while True:
        s = rs(ALNUM + sym, n)
        if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s):
            return s


def pw_phrase(sep=None, n=None):
    n = n or ri(3, 5)
    sep = sep if sep is not None else ch(["-", ".", "_", "", "-"])
    ws = [word() for _ in range(n)]
    if sep == "":
        ws = [w.capitalize() for w in ws]
    s = sep.join(ws)
    if R.random() < 0.6:
        s += sep + str(ri(2, 999)) if sep else str(ri(2, 999))
    return s


def pw_human():
    w = word().capitalize()
    return ch([w + str(ri(1970, 2025)) + ch("!#$*?"), w + ch("@!") + str(ri(10, 99)), ch(["Q", "W", "Z"]) + w + str(ri(100, 9999)),
               w + "_" + word() + str(ri(1, 99))]).replace("$", "!")


def pw_uni():
    return ch(UNI_WORDS) + ch(SAFE_SYM[:4]) + str(ri(10, 9999)) + ch(["", word().capitalize()])


def pw_any():
    x = R.random()
    if x < 0.55:
        return pw_strong()
    if x < 0.75:
        return pw_phrase()
    if x < 0.88:
        return pw_human()
    return pw_uni()


def pw_ascii():
    x = R.random()
    if x < 0.65:
        return pw_strong()
    if x < 0.85:
        return pw_phrase(sep=ch(["-", ".", "_", ""]))
    return pw_human()


def pw_shellsq():
    """A password with shell-special characters, rendered for single quotes ('\\'' for ')."""
    base = ch([pw_strong(sym=SAFE_SYM + "$&;|<>()`\" #"), word() + "'s-" + word() + str(ri(1, 99)),
               "It's" + word().capitalize() + str(ri(10, 99)) + "!", pw_strong(ri(8, 12)) + "'" + pw_strong(4)])
    return base.replace("'", "'\\''")


def pw_dq():
    """Password rendered inside a double-quoted C-like/JSON string (\\" and \\\\ escaped)."""
    x = R.random()
    base = pw_any() if x < 0.6 else (pw_strong(sym=SAFE_SYM + '"\\#&') if x < 0.9 else word() + '"' + str(ri(10, 99)) + "\\" + word())
    return base.replace("\\", "\\\\").replace('"', '\\"')


def pw_xml():
    base = ch([pw_any(), pw_strong(sym=SAFE_SYM + "&<>\"'")])
    return base.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def pw_url():
    base = ch([pw_any(), pw_strong(sym=SAFE_SYM + "&@#/?: $")])
    return urllib.parse.quote(base, safe="")


def pw_form():
    base = ch([pw_any(), pw_strong(sym=SAFE_SYM + "&@#/ ")])
    return urllib.parse.quote_plus(base)


def pw_space():
    return ch([pw_phrase(sep=" "), " ".join(word() for _ in range(4)), word().capitalize() + " " + word() + " " + str(ri(10, 99))])


def pin():
    while True:
        p = rs(DIG, ch([4, 4, 6, 6, 8]))
        if len(set(p)) > 2 and p not in "0123456789" and p not in "9876543210":
            return p


def sec_hex(n=None):
    return hx(n or ch([32, 40, 48, 64, 64]))


def sec_b64(n=None):
    return b64(n or ch([24, 32, 32, 48, 64]))


def sec_alnum(n=None):
    while True:
        s = rs(ALNUM, n or ri(24, 48))
        if any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s):
            return s


def sec_any():
    return ch([sec_hex, sec_b64, sec_alnum, lambda: b64(32, url=True, pad=False)])()


def uuid4():
    h = list(hx(32))
    h[12] = "4"
    h[16] = ch("89ab")
    h = "".join(h)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ---------------------------------------------------------------------------
# phone numbers: per country, named formats; '#' any digit, 'N' 2-9, '{abc}' one of
# ---------------------------------------------------------------------------

PHONE_FORMATS = {
    "IN": [("intl", "+91 {6789}#### #####"), ("intl-dash", "+91-{6789}#########"), ("nat0", "0{6789}#### #####"),
           ("nat", "{6789}#### #####"), ("land-intl", "+91 11 {24}### ####"), ("land-nat", "011-{24}### ####"),
           ("land-nat-mum", "022 {26}### ####"), ("e164", "+91{6789}#########")],
    "CN": [("intl", "+86 1{35789}# #### ####"), ("nat-dash", "1{35789}#-####-####"), ("nat", "1{3589}# #### ####"),
           ("land-nat", "010-6### ####"), ("land-paren", "(021) 6### ####"), ("land-intl", "+86 10 6### ####"),
           ("e164", "+861{3589}#########")],
    "US": [("nat-paren", "(AAA) EEE-####"), ("nat-dash", "AAA-EEE-####"), ("intl-sp", "+1 AAA EEE ####"),
           ("intl-paren", "+1 (AAA) EEE-####"), ("one-dash", "1-AAA-EEE-####"), ("e164", "+1AAAEEE####")],
    "ID": [("intl", "+62 8{1258}#-####-####"), ("intl-sp", "+62 8{12}# #### ###"), ("nat", "08{1258}#-####-####"),
           ("nat-sp", "08{12}# #### ####"), ("land-nat", "(021) 5### ####"), ("land-intl", "+62 21 5### ####"),
           ("e164", "+628{1258}#########")],
    "PK": [("intl", "+92 3{0-4}# #######"), ("nat", "03{0-4}#-#######"), ("nat-sp", "03{0-4}# ### ####"),
           ("land-nat", "(042) 3### ####"), ("land-intl", "+92 42 3### ####"), ("e164", "+923{0-4}########")],
    "NG": [("intl", "+234 80{3-9} ### ####"), ("intl-81", "+234 81{0-8} ### ####"), ("nat", "080{3-9} ### ####"),
           ("nat-dash", "070{3-9}-###-####"), ("land-nat", "01 {2-8}## ####"), ("land-intl", "+234 1 {2-8}## ####"),
           ("e164", "+2349{01}########")],
    "BR": [("intl", "+55 11 9####-####"), ("intl-paren", "+55 (21) 9####-####"), ("nat", "(11) 9####-####"),
           ("nat-sp", "(31) 9 ####-####"), ("land-nat", "(21) {23}###-####"), ("land-intl", "+55 61 3###-####"),
           ("carrier", "0 21 11 9####-####"), ("e164", "+55119########")],
    "BD": [("intl", "+880 1{3-9}##-######"), ("nat", "01{3-9}##-######"), ("nat-sp", "01{3-9}## ######"),
           ("land-nat", "02-9######"), ("land-intl", "+880 2 9######"), ("e164", "+8801{3-9}########")],
    "RU": [("intl", "+7 9## ###-##-##"), ("nat8", "8 (9##) ###-##-##"), ("nat8-sp", "8 9## ### ## ##"),
           ("land-intl", "+7 495 ###-##-##"), ("land-nat", "8 (495) ###-##-##"), ("land-spb", "8 (812) ###-##-##"),
           ("e164", "+79#########")],
    "MX": [("intl", "+52 55 #### ####"), ("intl-old-mobile", "+52 1 55 #### ####"), ("nat", "55 #### ####"),
           ("nat-paren", "(55) ####-####"), ("nat-gdl", "33 #### ####"), ("land-intl", "+52 (81) ####-####"),
           ("old-044", "044 55 #### ####"), ("e164", "+5255########")],
    "JP": [("intl", "+81 90-####-####"), ("intl-sp", "+81 80 #### ####"), ("nat", "090-####-####"),
           ("nat-080", "080-####-####"), ("nat-070", "070 #### ####"), ("land-nat", "03-####-####"),
           ("land-osaka", "06-####-####"), ("land-intl", "+81 3-####-####"), ("land-paren", "(03) ####-####")],
    "PH": [("intl", "+63 9{1-9}# ### ####"), ("intl-paren", "+63 (9{1-9}#) ###-####"), ("nat", "09{1-9}# ### ####"),
           ("nat-dash", "09{1-9}#-###-####"), ("land-nat", "(02) 8### ####"), ("land-intl", "+63 2 8### ####")],
    "EG": [("intl", "+20 1{0125} #### ####"), ("nat", "01{0125} #### ####"), ("nat-compact", "01{0125}########"),
           ("land-nat", "(02) 2### ####"), ("land-intl", "+20 2 2### ####"), ("e164", "+201{0125}########")],
    "DE": [("intl", "+49 15{12579} ########"), ("intl-17", "+49 17{0-8} #######"), ("nat", "015{12579} ########"),
           ("nat-slash", "017{0-8}/#######"), ("land-nat", "030 {2-9}#######"), ("land-intl", "+49 30 {2-9}#######"),
           ("land-slash", "089 / {2-9}######"), ("intl-trunk", "+49 (0)89 {2-9}######")],
    "GB": [("intl", "+44 7{4-9}## ######"), ("nat", "07{4-9}## ######"), ("nat-dash", "07{4-9}##-###-###"),
           ("land-nat", "020 {38}### ####"), ("land-intl", "+44 20 {38}### ####"), ("land-mcr", "0161 8## ####"),
           ("intl-trunk", "+44 (0)161 8## ####"), ("land-leeds", "0113 2## ####")],
    "FR": [("intl", "+33 6 ## ## ## ##"), ("intl-7", "+33 7 ## ## ## ##"), ("nat", "06 ## ## ## ##"),
           ("nat-dash", "06-##-##-##-##"), ("land-nat", "01 ## ## ## ##"), ("land-intl", "+33 1 ## ## ## ##"),
           ("intl-trunk", "+33 (0)1 ## ## ## ##"), ("nat-compact", "07########")],
    "VN": [("intl", "+84 9# ### ## ##"), ("intl-3", "+84 3# ### ####"), ("nat", "09# ### ####"),
           ("nat-4", "09## ### ###"), ("nat-03", "03# #### ###"), ("land-hcm", "028 38## ####"),
           ("land-hn", "024 3### ####"), ("land-intl", "+84 28 38## ####")],
    "TR": [("intl", "+90 5{345}# ### ## ##"), ("nat", "05{345}# ### ## ##"), ("nat-paren", "0 (5{345}#) ### ## ##"),
           ("land-nat", "0 (212) ### ## ##"), ("land-intl", "+90 212 ### ## ##"), ("land-ank", "0 312 ### ## ##"),
           ("e164", "+905{345}#########")],
}
US_AREAS = ["212", "312", "415", "617", "713", "206", "303", "404", "503", "602", "702", "801", "919", "972",
            "215", "305", "347", "469", "512", "646", "718", "773", "818", "925", "410", "248", "614", "816"]
FICTIONAL = ("7700900", "2079460", "1614960", "1134960", "5550100", "5550199")


def expand_pattern(p):
    out, i = [], 0
    while i < len(p):
        c = p[i]
        if c == "#":
            out.append(ch(DIG))
        elif c == "N":
            out.append(ch("23456789"))
        elif c == "{":
            j = p.index("}", i)
            body = p[i + 1:j]
            if len(body) == 3 and body[1] == "-":
                out.append(str(ri(int(body[0]), int(body[2]))))
            else:
                out.append(ch(body))
            i = j
        else:
            out.append(c)
        i += 1
    return "".join(out)


def phone(cc=None, fmt=None, intl_only=False, nat_only=False):
    cc = cc or ch(COUNTRIES)
    fmts = PHONE_FORMATS[cc]
    if intl_only:
        fmts = [f for f in fmts if f[1].startswith("+")]
    if nat_only:
        fmts = [f for f in fmts if not f[1].startswith("+")] or fmts
    if fmt:
        fmts = [f for f in fmts if f[0] == fmt]
    name, pat = ch(fmts)
    while True:
        if cc == "US":
            area = ch(US_AREAS)
            while True:
                ex = ch("23456789") + rs(DIG, 2)
                if ex != "555" and ex[1:] != "11":
                    break
            s = expand_pattern(pat.replace("AAA", area).replace("EEE", ex))
        else:
            s = expand_pattern(pat)
        d = re.sub(r"\D", "", s)
        if not any(f in d for f in FICTIONAL) and not re.search(r"(\d)\1{5}", d):
            return s, f"{cc}-{name}"


# ---------------------------------------------------------------------------
# cards, IBANs, SSNs, e-mail
# ---------------------------------------------------------------------------

def luhn_ok(d):
    t = 0
    for i, c in enumerate(reversed(d)):
        v = int(c)
        if i % 2:
            v *= 2
            if v > 9:
                v -= 9
        t += v
    return t % 10 == 0


def luhn_digit(body):
    for c in DIG:
        if luhn_ok(body + c):
            return c


CARD_BRANDS = [("visa", ["4"], 16), ("mastercard", ["51", "52", "53", "54", "55", "2221", "2500", "2720"], 16),
               ("amex", ["34", "37"], 15), ("discover", ["6011", "65"], 16), ("jcb", ["3528", "3566", "3589"], 16),
               ("unionpay", ["62"], 16), ("unionpay19", ["62"], 19), ("diners", ["36"], 14), ("rupay", ["6070", "6521", "8172"], 16)]
CARD_RULE = [(r"4", (13, 16, 19)), (r"5[1-5]|2(2[2-9]|[3-6]\d|7[01]|720)", (16,)), (r"3[47]", (15,)),
             (r"6011|65|64[4-9]", (16, 19)), (r"35(2[89]|[3-8]\d)", (16, 17, 18, 19)), (r"62", (16, 17, 18, 19)),
             (r"3(0[0-5]|[68])", (14, 16)), (r"60|65|81|82", (16,))]
TEST_CARDS = {"4111111111111111", "4242424242424242", "5555555555554444", "378282246310005", "4012888888881881",
              "5105105105105100", "6011111111111117", "3530111333300000", "4000056655665556", "371449635398431"}


def card_brand_ok(d):
    return any(re.match(p, d) and len(d) in ls for p, ls in CARD_RULE)


def card(valid=True):
    brand, pres, n = ch(CARD_BRANDS)
    while True:
        body = ch(pres)
        body += rs(DIG, n - 1 - len(body))
        last = luhn_digit(body)
        if not valid:
            last = str((int(last) + ri(1, 9)) % 10)
        d = body + last
        if d not in TEST_CARDS and len(set(d)) > 4:
            return d, brand


def card_fmt(d, style=None):
    style = style or ch(["plain", "space", "dash", "space"])
    if style == "plain":
        return d
    sep = " " if style == "space" else "-"
    if len(d) == 15:
        return sep.join([d[:4], d[4:10], d[10:]])
    if len(d) == 14:
        return sep.join([d[:4], d[4:10], d[10:]])
    return sep.join(d[i:i + 4] for i in range(0, len(d), 4))


IBAN_SPEC = {  # country: (length, bban pattern: n=digit a=upper c=alnum-upper, digits count)
    "DE": "8n10n", "FR": "5n5n11n2n", "GB": "4a6n8n", "ES": "4n4n1n1n10n", "IT": "1a5n5n12n", "NL": "4a10n",
    "BE": "3n7n2n", "TR": "5n1n16n", "SA": "2n18c", "AE": "3n16n", "PK": "4a16n", "BR": "8n5n10n1a1c",
    "EG": "4n4n17n", "PL": "8n16n", "PT": "4n4n11n2n", "CH": "5n12c", "AT": "5n11n", "IE": "4a6n8n",
}
IBAN_LEN = {"DE": 22, "FR": 27, "GB": 22, "ES": 24, "IT": 27, "NL": 18, "BE": 16, "TR": 26, "SA": 24, "AE": 23,
            "PK": 24, "BR": 29, "EG": 29, "PL": 28, "PT": 25, "CH": 21, "AT": 20, "IE": 22}
BANK_CODES = {"GB": ["NWBK", "BARC", "LOYD", "MIDL", "HBUK"], "NL": ["ABNA", "INGB", "RABO", "TRIO"],
              "IE": ["AIBK", "BOFI"], "PK": ["SCBL", "HABB", "MUCB", "UNIL"], "IT": "X"}


def iban_mod(s):
    s = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97


def iban_ok(s):
    s = s.replace(" ", "")
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", s):
        return False
    if s[:2] in IBAN_LEN and len(s) != IBAN_LEN[s[:2]]:
        return False
    return 15 <= len(s) <= 34 and iban_mod(s) == 1


def iban(cc=None, valid=True):
    cc = cc or ch(list(IBAN_SPEC))
    bban = ""
    for cnt, t in re.findall(r"(\d+)([nac])", IBAN_SPEC[cc]):
        cnt = int(cnt)
        if t == "a" and cc in BANK_CODES and cnt == 4:
            bban += ch(BANK_CODES[cc])
        elif t == "n":
            bban += rs(DIG, cnt)
        elif t == "a":
            bban += rs(UP, cnt)
        else:
            bban += rs(UP + DIG, cnt)
    chk = 98 - iban_mod(cc + "00" + bban)
    if not valid:
        chk = (chk + ri(1, 90)) % 97 + 2 if chk > 1 else 50
        if chk == 98 - iban_mod(cc + "00" + bban):
            chk = (chk % 96) + 2
    s = f"{cc}{chk:02d}{bban}"
    assert iban_ok(s) == valid, s
    return s


def iban_fmt(s, style=None):
    style = style or ch(["print", "electronic"])
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4)) if style == "print" else s


def ssn_ok(s):
    d = re.sub(r"\D", "", s)
    if len(d) != 9:
        return False
    a, g, n = d[:3], d[3:5], d[5:]
    return a not in ("000", "666") and a[0] != "9" and g != "00" and n != "0000" and d not in ("078051120", "219099999", "123456789")


def ssn(valid=True, sep="-"):
    if valid:
        while True:
            a = ri(1, 899)
            if a != 666:
                break
        s = f"{a:03d}{sep}{ri(1, 99):02d}{sep}{ri(1, 9999):04d}"
        return s if ssn_ok(s) else ssn(True, sep)
    bad = ch(["area0", "area666", "area9", "group0", "serial0"])
    a, g, n = f"{ri(1, 665):03d}", f"{ri(1, 99):02d}", f"{ri(1, 9999):04d}"
    if bad == "area0":
        a = "000"
    elif bad == "area666":
        a = "666"
    elif bad == "area9":
        a = str(ri(900, 999))
    elif bad == "group0":
        g = "00"
    else:
        n = "0000"
    return f"{a}{sep}{g}{sep}{n}"


MAIL_DOMAINS = ["gmail.com", "yahoo.co.in", "outlook.com", "qq.com", "163.com", "mail.ru", "yandex.ru", "uol.com.br",
                "gmx.de", "web.de", "orange.fr", "free.fr", "btinternet.com", "hotmail.co.uk", "naver.com", "rediffmail.com",
                "yahoo.co.jp", "globe.com.ph", "proton.me", "fastmail.com", "zoho.com", "icloud.com"]
RESERVED_MAIL = ["example.com", "example.org", "example.net", "corp.example", "mail.test", "shop.invalid", "dev.localhost"]


def email(real=True, name=None):
    name = name or person()
    f, l = name.lower().split()[:2]
    local = ch([f"{f}.{l}", f"{f[0]}{l}", f"{f}_{l}{ri(1, 99)}", f"{l}.{f}", f"{f}{ri(70, 2005)}"])
    return f"{local}@{ch(MAIL_DOMAINS if real else RESERVED_MAIL)}"


# ---------------------------------------------------------------------------
# tokens, JWTs, keys
# ---------------------------------------------------------------------------

def b62_crc(s):
    n = zlib.crc32(s.encode()) & 0xFFFFFFFF
    out = ""
    while n:
        out = B62[n % 62] + out
        n //= 62
    return out.rjust(6, "0")


def vendor_token(kind=None):
    kind = kind or ch(["aws-access-key", "github-token", "stripe-key", "slack-token", "openai-key", "google-api-key", "gitlab-token"])
    if kind == "aws-access-key":
        v = ch(["AKIA", "ASIA"]) + rs(UP + "234567", 16)
    elif kind == "github-token":
        body = rs(ALNUM, 30)
        v = ch(["ghp_", "gho_", "ghs_"]) + body + b62_crc(body)
    elif kind == "stripe-key":
        v = ch(["sk_live_", "rk_live_"]) + rs(ALNUM, ch([24, 99]))
    elif kind == "slack-token":
        v = ch(["xoxb-", "xoxp-"]) + str(ri(10 ** 10, 10 ** 12)) + "-" + str(ri(10 ** 10, 10 ** 12)) + "-" + rs(ALNUM, 24)
    elif kind == "openai-key":
        v = "sk-proj-" + rs(B64U, 48) + rs(ALNUM, 20)
    elif kind == "google-api-key":
        v = "AIza" + rs(B64U, 35)
    else:
        v = "glpat-" + rs(B64U, 20)
    return v, kind


def b64u(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def jwt():
    alg = ch(["HS256", "RS256", "ES256", "HS512"])
    hdr = {"alg": alg, "typ": "JWT"}
    if alg != "HS256" and R.random() < 0.5:
        hdr["kid"] = hx(16)
    now = ri(1_700_000_000, 1_760_000_000)
    pl = ch([{"sub": str(ri(1000, 999999)), "iat": now, "exp": now + 3600, "role": ch(["admin", "user", "service"])},
             {"iss": "https://auth." + ch(["fabrikam", "tailspin", "wingtip"]) + "-corp.com/", "sub": uuid4(),
              "aud": ch(["api", "billing", "mobile"]), "exp": now + 900, "scope": "read write"},
             {"kubernetes.io/serviceaccount/namespace": ch(["default", "ci", "payments"]), "sub": "system:serviceaccount:ci:" + word(),
              "iat": now}])
    sig = rbytes(64 if alg in ("ES256", "HS512") else (32 if alg == "HS256" else 256))
    return b64u(json.dumps(hdr, separators=(",", ":")).encode()) + "." + b64u(json.dumps(pl, separators=(",", ":")).encode()) + "." + b64u(sig)


def der_len(n):
    if n < 128:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der(tag, body):
    return bytes([tag]) + der_len(len(body)) + body


def pem(label, blob, width=64):
    s = base64.b64encode(blob).decode()
    return f"-----BEGIN {label}-----\n" + "\n".join(s[i:i + width] for i in range(0, len(s), width)) + f"\n-----END {label}-----"


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def private_key():
    t = ch(["ed25519-pkcs8", "x25519-pkcs8", "p256-sec1", "p256-pkcs8"])
    if t == "ed25519-pkcs8":
        return pem("PRIVATE KEY", bytes.fromhex("302e020100300506032b657004220420") + rbytes(32)), t
    if t == "x25519-pkcs8":
        return pem("PRIVATE KEY", bytes.fromhex("302e020100300506032b656e04220420") + rbytes(32)), t
    while True:
        k = rbytes(32)
        if 0 < int.from_bytes(k, "big") < P256_N:
            break
    oid = bytes.fromhex("06082a8648ce3d030107")
    ec = der(0x30, bytes.fromhex("020101") + der(0x04, k) + der(0xA0, oid))
    if t == "p256-sec1":
        return pem("EC PRIVATE KEY", ec), t
    algid = der(0x30, bytes.fromhex("06072a8648ce3d0201") + oid)
    return pem("PRIVATE KEY", der(0x30, bytes.fromhex("020100") + algid + der(0x04, ec))), t


def public_key_pem():
    return pem("PUBLIC KEY", bytes.fromhex("302a300506032b6570032100") + rbytes(32))


def fake_cert_pem():
    """A certificate-shaped DER blob (public data: the guard must not flag certificates)."""
    name = der(0x30, der(0x31, der(0x30, bytes.fromhex("0603550403") + der(0x0C, (word() + "-ca." + word() + ".internal").encode()))))
    spki = der(0x30, der(0x30, bytes.fromhex("06072a8648ce3d0201") + bytes.fromhex("06082a8648ce3d030107")) + der(0x03, b"\x00\x04" + rbytes(64)))
    validity = der(0x30, der(0x17, b"240101000000Z") + der(0x17, b"340101000000Z"))
    tbs = der(0x30, der(0xA0, der(0x02, b"\x02")) + der(0x02, rbytes(16)) + der(0x30, bytes.fromhex("06082a8648ce3d040302")) +
              name + validity + name + spki)
    sig = der(0x03, b"\x00" + der(0x30, der(0x02, b"\x00" + rbytes(32)) + der(0x02, rbytes(32))))
    return pem("CERTIFICATE", der(0x30, tbs + der(0x30, bytes.fromhex("06082a8648ce3d040302")) + sig))


def crypt_hash(kind=None):
    kind = kind or ch(["sha512", "sha256", "bcrypt", "argon2id", "yescrypt", "apr1", "ssha"])
    if kind == "sha512":
        return f"$6${rs(CRYPT, 16)}${rs(CRYPT, 86)}"
    if kind == "sha256":
        return f"$5$rounds=535000${rs(CRYPT, 16)}${rs(CRYPT, 43)}"
    if kind == "bcrypt":
        return f"$2{ch('aby')}${ch(['10', '12', '13'])}${rs(CRYPT, 53)}"
    if kind == "argon2id":
        return f"$argon2id$v=19$m={ch(['65536', '19456', '47104'])},t={ri(2, 4)},p={ri(1, 4)}${b64(16, pad=False)}${b64(32, pad=False)}"
    if kind == "yescrypt":
        return f"$y$j9T${rs(CRYPT, 22)}${rs(CRYPT, 43)}"
    if kind == "apr1":
        return f"$apr1${rs(CRYPT, 8)}${rs(CRYPT, 22)}"
    return "{SSHA}" + b64(24)


# ---------------------------------------------------------------------------
# template engine
# ---------------------------------------------------------------------------

def iso_ts():
    return f"2024-{ri(1, 12):02d}-{ri(1, 28):02d}T{ri(0, 23):02d}:{ri(0, 59):02d}:{ri(0, 59):02d}"


def rint(a):
    if not a:
        return str(ri(1, 999))
    lo, hi = a.split("-")
    return str(ri(int(lo), int(hi)))


GEN = {
    "host": lambda a: ch(HOSTS), "user": lambda a: ch(USERS), "db": lambda a: ch(DBS), "path": lambda a: ch(PATHS[:8]),
    "port": lambda a: str(ch([5432, 3306, 1433, 1521, 27017, 6379, 5672, 9042, 8080, 8443, 2222, 21, 990, 443])),
    "word": lambda a: word(), "Word": lambda a: word().capitalize(), "n": rint,
    "hex": lambda a: hx(int(a or 40)), "HEX": lambda a: hx(int(a or 40)).upper(), "uuid": lambda a: uuid4(),
    "date": lambda a: f"2024-{ri(1, 12):02d}-{ri(1, 28):02d}", "ts": lambda a: iso_ts(),
    "time": lambda a: f"{ri(0, 23):02d}:{ri(0, 59):02d}:{ri(0, 59):02d}", "person": lambda a: person(a or None),
    "pid": lambda a: str(ri(300, 65000)), "hms": lambda a: f"{ri(0, 23):02d}{ri(0, 59):02d}{ri(0, 59):02d}", "epoch": lambda a: str(ri(1_700_000_000, 1_760_000_000)),
    "alnum": lambda a: rs(ALNUM, int(a or 12)), "lower": lambda a: rs(LO + DIG, int(a or 8)),
    "b64": lambda a: b64(int(a or 24)), "email0": lambda a: email(real=False),
    # sensitive values
    "pw": lambda a: pw_any(), "pwa": lambda a: pw_ascii(), "pwsq": lambda a: pw_shellsq(), "pwdq": lambda a: pw_dq(),
    "pwx": lambda a: pw_xml(), "pwurl": lambda a: pw_url(), "pwform": lambda a: pw_form(), "pwsp": lambda a: pw_space(),
    "phrase": lambda a: pw_phrase(), "pwu": lambda a: pw_uni(), "pin": lambda a: pin(), "pws": lambda a: pw_strong(),
    "secret": lambda a: sec_any(), "shex": lambda a: sec_hex(int(a) if a else None), "sb64": lambda a: sec_b64(int(a) if a else None),
    "salnum": lambda a: sec_alnum(int(a) if a else None), "sb64u": lambda a: b64(int(a or 32), url=True, pad=False),
    "suuid": lambda a: uuid4(),
}

NOCACHE = {"n", "hex", "HEX", "b64", "alnum", "lower", "uuid", "nolu", "ulid", "ksuid", "mac", "ts", "time", "epoch", "pid",
           "date", "b64nopad", "semver", "UPS", "HEXS", "ipp", "ipd", "shadow", "hexlines", "email0", "person", "hms", "word", "Word"}
PH = re.compile(r"⟦(!?)([A-Za-z_]\w*)(#\w+)?(?::([^⟧]*))?⟧")


def fill(fmt, **over):
    out, spans, pos, cache, last = [], [], 0, {}, 0
    for m in PH.finditer(fmt):
        lit = fmt[last:m.start()]
        out.append(lit)
        pos += len(lit)
        sens, name, tag, arg = m.group(1), m.group(2), m.group(3) or "", m.group(4) or ""
        if "#" in arg:
            arg, t2 = arg.split("#", 1)
            tag = tag or "#" + t2
        key = sens + name + tag + ":" + arg
        if name in NOCACHE and not tag and name not in over:
            key = key + "@" + str(m.start())
        if key not in cache:
            if name + tag in over:
                cache[key] = over[name + tag]
            elif name in over and not tag:
                cache[key] = over[name]
            else:
                cache[key] = GEN[name](arg)
        v = str(cache[key])
        if sens and v:
            spans.append([pos, pos + len(v)])
        out.append(v)
        pos += len(v)
        last = m.end()
    out.append(fmt[last:])
    return "".join(out), spans


def join_parts(*parts):
    """Concatenate (text, spans) pairs and plain strings."""
    out, spans, pos = [], [], 0
    for p in parts:
        if isinstance(p, str):
            t, sp = p, []
        else:
            t, sp = p[0], p[1]
        out.append(t)
        spans += [[s + pos, e + pos] for s, e in sp]
        pos += len(t)
    return "".join(out), spans


TEMPLATES = []


def T(cls, name, kind=None, amb=False, opt=False, cli=False, w=1.0):
    def deco(fn):
        assert name not in {t["name"] for t in TEMPLATES}, name
        TEMPLATES.append(dict(cls=cls, name=name, fn=fn, kind=kind, amb=amb, opt=opt, cli=cli, w=w))
        return fn
    return deco


def V(cls, name, variants, **kw):
    T(cls, name, **kw)(lambda: fill(ch(variants)))


SHELL_RENDER = [
    ("prompt", lambda: "$ "), ("user-prompt", lambda: f"{ch(USERS)}@{ch(['jump', 'bastion', 'build', 'toolbox', 'dbadmin'])}:~$ "),
    ("root-prompt", lambda: f"[root@{ch(['nas', 'core', 'gw', 'vm'])}{ri(1, 9)} ~]# "),
    ("history", lambda: f"{ri(1, 2400):>5}  "), ("xtrace", lambda: "+ "), ("xtrace-nested", lambda: "++ "),
    ("zsh-history", lambda: f": {ri(1_700_000_000, 1_760_000_000)}:0;"), ("fish-history", lambda: "- cmd: "),
    ("dockerfile-run", lambda: "RUN "), ("crontab", lambda: f"{ri(0, 59)} {ri(0, 23)} * * * "),
    ("ps-aux", lambda: f"{ch(USERS):<9}{ri(300, 65000):>7}  0.{ri(0, 9)}  0.{ri(0, 9)} {ri(10000, 99999):>6} {ri(1000, 9999):>5} pts/{ri(0, 6)}    S+   {ri(0, 23):02d}:{ri(0, 59):02d}   0:00 "),
    ("bash-history-file", lambda: ""), ("ci-log", lambda: f"[{iso_ts()}Z] $ "),
]


def shell_wrap(res):
    text, spans = res[0], res[1]
    rname, pf = ch(SHELL_RENDER)
    p = pf()
    return p + text, [[s + len(p), e + len(p)] for s, e in spans], rname


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------

EMAIL_RE = re.compile(r"(?<![\w.+%-])[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
RESERVED_TAIL = (".example", ".test", ".invalid", ".localhost", ".local", ".internal", ".lan", ".arpa", ".corp")
CARDISH_RE = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w-])")
IBANISH_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
SSNISH_RE = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
IPV4_RE = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.])")
PLUSPHONE_RE = re.compile(r"(?<![\w+])\+\d[\d \-().]{6,20}\d")
TOKEN_RES = [
    re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"), re.compile(r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"), re.compile(r"\bglpat-[\w-]{20}"), re.compile(r"\bxox[bpars]-\d"),
    re.compile(r"\b[sr]k_live_[A-Za-z0-9]{16,}"), re.compile(r"\bAIza[\w-]{35}"), re.compile(r"\bsk-proj-[\w-]{20,}"),
    re.compile(r"\beyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}"),
]


def email_real(dom):
    d = dom.lower()
    if d.endswith(RESERVED_TAIL) or d in ("example.com", "example.org", "example.net") or \
            any(d.endswith("." + x) for x in ("example.com", "example.org", "example.net")):
        return False
    tld = d.rsplit(".", 1)[1]
    return tld.isalpha() and len(tld) >= 2 and tld not in ("png", "jpg", "svg", "gif", "webp", "js", "css", "json", "scope")


def outside(spans, a, b):
    return all(b <= s or a >= e for s, e in spans)


def stray(text, spans, label):
    for m in EMAIL_RE.finditer(text):
        if outside(spans, m.start(), m.end()) and email_real(m.group(1)):
            before = text[max(0, m.start() - 12):m.start()]
            if "://" in before or re.search(r"\w+@[\w.-]+:[\w/~]", text[m.start():m.end() + 2]):
                continue
            return "email " + m.group(0)
    for m in CARDISH_RE.finditer(text):
        d = re.sub(r"\D", "", m.group(0))
        if not (m.group(0).isdigit() or re.fullmatch(r"\d{4}([ -])\d{4,6}(\1\d{4,5})+", m.group(0))):
            continue
        if outside(spans, m.start(), m.end()) and 13 <= len(d) <= 19 and luhn_ok(d) and (card_brand_ok(d) or d[0] in "23456"):
            return "card " + m.group(0)
    for m in IBANISH_RE.finditer(text):
        if outside(spans, m.start(), m.end()) and iban_ok(m.group(0)):
            return "iban " + m.group(0)
    for m in SSNISH_RE.finditer(text):
        if outside(spans, m.start(), m.end()) and ssn_ok(m.group(0)):
            return "ssn " + m.group(0)
    for p in TOKEN_RES:
        for m in p.finditer(text):
            if outside(spans, m.start(), m.end()):
                return "token " + m.group(0)[:30]
    return None


NAMEWORD_RE = re.compile(r"(?i)(?:(?<=-)|(?<=--))?(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|passwort|contrase\u00f1a|senha|"
                         r"\u043f\u0430\u0440\u043e\u043b\u044c|mot_de_passe|credential)[\w.-]*[\"']?\s*(?:=|:|=>)\s*[\"']?([^\s\"',;}<>)\]]{8,})")
FLAG_RE = re.compile(r"(?i)--?(?:pass(?:word|wd|phrase)?|pwd|secret|token|api-?key)\s+[\"']?([^\s\"',;}<>)\]]{8,})")
NEG_OK_VALUE = re.compile(r"^(?:\$|\{|<|\*|\[|ENC|AgB|!|%|vault:|arn:|/|\.|~|https?:|file:|sha\d|SHA|md5|[A-Z_]{3,}$|\d+[smhd]?$|"
                          r"[a-z][a-z0-9_.-]*$|true|false|null|None|undefined|[0-9a-f]{32,}$|[0-9a-f-]{36}$|[A-Z0-9]{26}$|.*\()")


def neg_secretish(text):
    for m in list(NAMEWORD_RE.finditer(text)) + list(FLAG_RE.finditer(text)):
        v = m.group(1)
        if NEG_OK_VALUE.match(v):
            continue
        classes = sum([any(c.islower() for c in v), any(c.isupper() for c in v), any(c.isdigit() for c in v),
                       any(not c.isalnum() for c in v)])
        if classes >= 3 and len(v) >= 10:
            return v
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
        d = re.sub(r"\D", "", urllib.parse.unquote(v))
        return 7 <= len(d) <= 15 and not any(f in d for f in FICTIONAL)
    if kind == "email":
        m = EMAIL_RE.fullmatch(v)
        return bool(m) and email_real(m.group(1))
    if kind == "jwt":
        parts = v.split(".")
        if len(parts) != 3:
            return False
        try:
            hdr = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        except Exception:
            return False
        return "alg" in hdr
    if kind == "private-key":
        return v.startswith("-----BEGIN") and "PRIVATE KEY-----" in v[:40] and v.rstrip("\\n\"").endswith("-----")
    if kind == "github-token":
        return b62_crc(v[4:-6]) == v[-6:]
    if kind == "aws-access-key":
        return bool(re.fullmatch(r"(AKIA|ASIA)[A-Z2-7]{16}", v))
    return len(v) >= 4


# ===========================================================================
# generic-password: command lines (rendered as prompt / history / xtrace / ...)
# ===========================================================================

def PC(name, variants, **kw):
    V("pw-cli", name, variants, cli=True, **kw)


PC("mysqldump-password-long", [
    "mysqldump --single-transaction --user=⟦user⟧ --password='⟦!pwsq⟧' --host=⟦host⟧ ⟦db⟧ | gzip > ⟦db⟧-⟦date⟧.sql.gz",
    "mysqldump -h ⟦host⟧ -u ⟦user⟧ --password=⟦!pwa⟧ --routines --all-databases > /backup/all.sql"])
PC("mysqladmin-set-password", [
    "mysqladmin -u root -p'⟦!pwsq⟧' password '⟦!pwsq#new⟧'",
    "mysqladmin --user=root password \"⟦!pwa⟧\""])
PC("restic-env-prefix", [
    "RESTIC_PASSWORD='⟦!pwsq⟧' restic -r sftp:⟦user⟧@⟦host⟧:/srv/restic backup ⟦path⟧",
    "RESTIC_PASSWORD=⟦!pwa⟧ restic -r s3:s3.amazonaws.com/⟦word⟧-backups snapshots --latest 3"])
PC("borg-passphrase-env", [
    "BORG_PASSPHRASE='⟦!pwsq⟧' borg create --stats ssh://⟦user⟧@⟦host⟧/./repo::'{hostname}-{now}' /etc /home",
    "export BORG_PASSPHRASE=\"⟦!pwsp⟧\"; borg list /mnt/backup/borg"])
PC("openconnect-passwd-on-stdin", [
    "echo '⟦!pwsq⟧' | sudo openconnect --user=⟦user⟧ --passwd-on-stdin vpn.⟦word⟧-corp.net",
    "sudo openconnect --protocol=gp -u ⟦user⟧ --passwd-on-stdin gp.⟦word⟧.net <<< '⟦!pwsq⟧'"])
PC("openfortivpn-p", [
    "sudo openfortivpn vpn.⟦word⟧-group.com:10443 -u ⟦user⟧ -p '⟦!pwsq⟧' --trusted-cert ⟦hex:64⟧",
    "openfortivpn fw.⟦word⟧.net:443 --username=⟦user⟧ --password=⟦!pwa⟧"], )
PC("swaks-auth-password", [
    "swaks --to ops-alerts --server smtp.⟦word⟧mail.net:587 --tls --auth LOGIN --auth-user ⟦user⟧ --auth-password '⟦!pwsq⟧'",
    "swaks -s mail.⟦word⟧.io -p 465 --tlsc -au ⟦user⟧ -ap ⟦!pwa⟧ --header 'Subject: relay test'"])
PC("unrar-p", [
    "unrar x -p'⟦!pwsq⟧' ⟦word⟧_scans_⟦date⟧.rar /tmp/out/",
    "unrar e -p⟦!pwa⟧ -y archive.part1.rar"])
PC("qpdf-decrypt-password", [
    "qpdf --decrypt --password='⟦!pwsq⟧' statement-⟦date⟧.pdf statement-open.pdf",
    "qpdf --password=⟦!pin⟧ --decrypt payslip_⟦n:1-12⟧.pdf out.pdf"])
PC("az-vm-admin-password", [
    "az vm create -g rg-⟦word⟧ -n vm-⟦word⟧ --image Win2022Datacenter --admin-username azureuser --admin-password '⟦!pwsq⟧'",
    "az sql server create --name sql-⟦word⟧ --resource-group rg-data --admin-user sqladmin --admin-password \"⟦!pwa⟧\""])
PC("gcloud-sql-set-password", [
    "gcloud sql users set-password ⟦user⟧ --host=% --instance=⟦word⟧-pg --password='⟦!pwsq⟧'",
    "gcloud sql users create ⟦user⟧ --instance=prod-mysql --password=⟦!pwa⟧"])
PC("aws-rds-master-password", [
    "aws rds create-db-instance --db-instance-identifier ⟦word⟧-db --engine postgres --master-username ⟦user⟧ --master-user-password '⟦!pwsq⟧' --allocated-storage 20",
    "aws rds modify-db-instance --db-instance-identifier ⟦word⟧ --master-user-password ⟦!pwa⟧ --apply-immediately"])
PC("jarsigner-storepass-keypass", [
    "jarsigner -keystore release.jks -storepass ⟦!pwa⟧ -keypass ⟦!pwa#k⟧ app-release-unsigned.apk ⟦word⟧",
    "jarsigner -verbose -sigalg SHA256withRSA -storepass '⟦!pwsq⟧' -keystore ~/keys/⟦word⟧.p12 dist/⟦word⟧.jar signer"])
PC("apksigner-ks-pass", [
    "apksigner sign --ks upload.jks --ks-key-alias ⟦word⟧ --ks-pass pass:⟦!pwa⟧ --key-pass pass:⟦!pwa#k⟧ app.apk",
    "apksigner sign --ks release.keystore --ks-pass 'pass:⟦!pwsq⟧' --out signed.apk app.apk"])
PC("snmpset-v3-auth-priv", [
    "snmpset -v3 -l authPriv -u ⟦user⟧ -a SHA -A '⟦!pwsq⟧' -x AES -X '⟦!pwsq#p⟧' ⟦host⟧ sysContact.0 s noc",
    "snmptrap -v 3 -e 0x80001f88⟦hex:8⟧ -u trapuser -a SHA-256 -A ⟦!pwa⟧ -l authNoPriv ⟦host⟧ '' linkDown"])
PC("ipmitool-user-set-password", [
    "ipmitool -I lanplus -H ⟦host⟧ -U ADMIN -E user set password 3 '⟦!pwsq⟧'",
    "ipmitool user set password 2 ⟦!pwa⟧ 20"])
PC("racadm-remote-p", [
    "racadm -r idrac-⟦word⟧.mgmt -u root -p '⟦!pwsq⟧' serveraction powercycle",
    "racadm -r ⟦host⟧ -u admin -p ⟦!pwa⟧ getsysinfo"])
PC("ncftp-p", [
    "ncftpput -u ⟦user⟧ -p '⟦!pwsq⟧' ftp.⟦word⟧-media.com /incoming ⟦word⟧.zip",
    "ncftpget -u ⟦user⟧ -p ⟦!pwa⟧ files.⟦word⟧.net . /pub/reports/*.csv"])
PC("clickhouse-client-password", [
    "clickhouse-client --host ⟦host⟧ --user ⟦user⟧ --password '⟦!pwsq⟧' --query 'SELECT count() FROM ⟦db⟧.events'",
    "clickhouse-client -u default --password=⟦!pwa⟧ -d ⟦db⟧"])
PC("unixodbc-isql", [
    "isql -v ⟦word⟧_dsn ⟦user⟧ '⟦!pwsq⟧'", "isql ⟦db⟧ ⟦user⟧ ⟦!pwa⟧ -b < report.sql"])
PC("isql-fb-password", [
    "isql-fb -user SYSDBA -password '⟦!pwsq⟧' ⟦host⟧:/var/lib/firebird/⟦db⟧.fdb",
    "gbak -b -user SYSDBA -pas ⟦!pwa⟧ ⟦db⟧.fdb ⟦db⟧.fbk"])
PC("db2-connect-using", [
    "db2 connect to ⟦db⟧ user db2inst1 using '⟦!pwsq⟧'", "db2 \"connect to SAMPLE user ⟦user⟧ using ⟦!pwa⟧\""])
PC("cypher-shell-p", [
    "cypher-shell -a neo4j+s://graph.⟦word⟧.internal -u neo4j -p '⟦!pwsq⟧' 'MATCH (n) RETURN count(n);'",
    "cypher-shell -u neo4j -p ⟦!pwa⟧ --format plain < seed.cypher"])
PC("etcdctl-user-colon", [
    "ETCDCTL_API=3 etcdctl --endpoints=https://etcd-⟦n:1-3⟧.⟦word⟧.lan:2379 --user root:'⟦!pwsq⟧' get /registry --prefix --keys-only",
    "etcdctl --user=⟦user⟧:⟦!pwa⟧ member list -w table"])
PC("nats-cli-password", [
    "nats --server nats://nats.⟦word⟧.lan:4222 --user ⟦user⟧ --password '⟦!pwsq⟧' pub orders.created '{}'",
    "nats sub '>' --user=⟦user⟧ --password=⟦!pwa⟧"])
PC("rabbitmqadmin-p", [
    "rabbitmqadmin -H ⟦host⟧ -u ⟦user⟧ -p '⟦!pwsq⟧' list queues name messages",
    "rabbitmqadmin --username=admin --password=⟦!pwa⟧ declare queue name=⟦word⟧ durable=true"])
PC("mount-cifs-options", [
    "sudo mount -t cifs //nas⟦n:1-9⟧/⟦word⟧ /mnt/⟦word⟧ -o username=⟦user⟧,password=⟦!pwa⟧,vers=3.0,uid=1000",
    "mount.cifs //fileserver/scans /mnt/scans -o user=⟦user⟧,pass='⟦!pwsq⟧',domain=CORP"])
PC("svn-checkout-password", [
    "svn checkout --username ⟦user⟧ --password '⟦!pwsq⟧' --non-interactive https://svn.⟦word⟧.org/repos/⟦word#2⟧/trunk",
    "svn update --username=⟦user⟧ --password=⟦!pwa⟧ --no-auth-cache"])
PC("curl-form-body-password", [
    "curl -s -X POST https://portal.⟦word⟧-hr.com/login -d 'username=⟦user⟧&password=⟦!pwform⟧&remember=1'",
    "curl --data-urlencode 'user=⟦user⟧' --data 'pass=⟦!pwform⟧' https://intranet.⟦word⟧.lan/auth"])
PC("httpie-form-password", [
    "http -f POST https://api.⟦word⟧app.io/v1/session login=⟦user⟧ password='⟦!pwsq⟧'",
    "http --form POST :8080/login username=⟦user⟧ password=⟦!pwa⟧"])
PC("jvm-sysprop-keystore-password", [
    "java -Djavax.net.ssl.keyStore=/etc/pki/⟦word⟧.p12 -Djavax.net.ssl.keyStorePassword=⟦!pwa⟧ -jar ⟦word⟧-service.jar",
    "java -Djavax.net.ssl.trustStorePassword='⟦!pwsq⟧' -cp app.jar com.⟦word⟧.Main"])
PC("skopeo-creds", [
    "skopeo copy --src-creds ⟦user⟧:'⟦!pwsq⟧' docker://registry.⟦word⟧.lan/app:1.4 oci:app",
    "skopeo inspect --creds=⟦user⟧:⟦!pwa⟧ docker://harbor.⟦word⟧.internal/base/ubuntu:22.04"])
PC("kubectl-docker-registry-secret", [
    "kubectl create secret docker-registry regcred --docker-server=harbor.⟦word⟧.lan --docker-username=⟦user⟧ --docker-password='⟦!pwsq⟧' -n ⟦word#2⟧",
    "kubectl -n ci create secret docker-registry pull-secret --docker-username=robot --docker-password=⟦!pwa⟧"])
PC("x11vnc-passwd", [
    "x11vnc -display :0 -forever -passwd '⟦!pwsq⟧' -rfbport 5900", "x11vnc -storepasswd ⟦!pwa⟧ ~/.vnc/passwd"])
PC("wpa-passphrase-cmd", [
    "wpa_passphrase \"⟦Word⟧-Guest\" '⟦!pwsq⟧' >> /etc/wpa_supplicant/wpa_supplicant.conf",
    "wpa_passphrase HOME-⟦n:10-99⟧ ⟦!pwa⟧"])
PC("ldappasswd-s", [
    "ldappasswd -H ldaps://ldap.⟦word⟧.lan -D 'cn=admin,dc=⟦word⟧,dc=lan' -W -s '⟦!pwsq⟧' 'uid=⟦user⟧,ou=people,dc=⟦word⟧,dc=lan'",
    "ldappasswd -x -D cn=Manager -y /root/.ldappw -s ⟦!pwa⟧ uid=⟦user⟧,ou=staff"])
PC("invoke-sqlcmd-password", [
    "Invoke-Sqlcmd -ServerInstance '⟦host⟧' -Database ⟦db⟧ -Username ⟦user⟧ -Password '⟦!pwsq⟧' -Query 'SELECT @@VERSION'",
    "Invoke-Sqlcmd -Username sa -Password \"⟦!pwa⟧\" -InputFile .\\migrate.sql"])
PC("sqlpackage-password", [
    "sqlpackage /Action:Export /SourceServerName:⟦host⟧ /SourceDatabaseName:⟦db⟧ /SourceUser:⟦user⟧ /SourcePassword:⟦!pwa⟧ /TargetFile:⟦db⟧.bacpac",
    "SqlPackage.exe /a:Publish /tsn:⟦host⟧ /tdn:⟦db⟧ /tu:sa /tp:\"⟦!pwa⟧\" /sf:⟦db⟧.dacpac"])
PC("rsync-password-env", [
    "RSYNC_PASSWORD='⟦!pwsq⟧' rsync -av rsync://⟦user⟧@⟦host⟧/⟦word⟧/ ⟦path⟧/",
    "export RSYNC_PASSWORD=⟦!pwa⟧ && rsync --delete -rt rsync://backup@mirror.⟦word⟧.lan/data ./data"])
PC("rdesktop-p", [
    "rdesktop -u ⟦user⟧ -p '⟦!pwsq⟧' -g 1600x900 ts-⟦n:1-9⟧.⟦word⟧.lan", "rdesktop -d CORP -u Administrator -p ⟦!pwa⟧ ⟦host⟧"])
PC("msmtp-passwordeval-echo", [
    "msmtp --host=smtp.⟦word⟧.net --port=587 --auth=on --user=⟦user⟧ --passwordeval=\"echo '⟦!pwsq⟧'\" --tls=on alerts",
    "printf 'Subject: test\\n\\nok' | msmtp --auth=on --user=⟦user⟧ --passwordeval='echo ⟦!pwa⟧' ops"])
PC("duplicity-passphrase", [
    "PASSPHRASE='⟦!pwsq⟧' duplicity --full-if-older-than 1M /home sftp://⟦user⟧@⟦host⟧/backups",
    "PASSPHRASE=⟦!pwa⟧ duplicity restore sftp://backup@⟦host⟧/srv /tmp/restore"])
PC("pgbackrest-cipher-pass", [
    "pgbackrest --stanza=main --repo1-cipher-type=aes-256-cbc --repo1-cipher-pass='⟦!pwsq⟧' backup --type=full",
    "PGBACKREST_REPO1_CIPHER_PASS=⟦!pwa⟧ pgbackrest --stanza=⟦db⟧ info"])
PC("veracrypt-mount-password", [
    "veracrypt --text --mount /dev/sdb1 /media/vault --password='⟦!pwsq⟧' --pim=0 --keyfiles='' --protect-hidden=no",
    "veracrypt -t --password=⟦!pwa⟧ --non-interactive ⟦word⟧.hc /mnt/secure"])
PC("cryptsetup-echo-key", [
    "echo -n '⟦!pwsq⟧' | cryptsetup luksOpen /dev/nvme0n1p3 cryptroot -d -",
    "printf '%s' \"⟦!pwa⟧\" | cryptsetup open --type luks2 /dev/sdc1 data --key-file=-"])
PC("7z-mhe-password-long", [
    "7za a -t7z -mhe=on -p'⟦!pwsq⟧' ⟦word⟧-⟦date⟧.7z ./exports/",
    "7z x -p⟦!pwa⟧ -o/tmp/x ⟦word⟧.7z"])
PC("net-user-add-password", [
    "echo '⟦!pwsq⟧' | net user ⟦user⟧ /add && net localgroup administrators ⟦user⟧ /add",
    "net user Administrator ⟦!pwa⟧ /domain"])
PC("smbclient-percent-user", [
    "smbclient //files.⟦word⟧.lan/share -U '⟦user⟧%⟦!pwsq⟧' -c 'ls'",
    "smbget -R smb://nas/share -U ⟦user⟧%⟦!pwa⟧"])
PC("ftp-url-wget-user-pass", [
    "wget --ftp-user=⟦user⟧ --ftp-password='⟦!pwsq⟧' ftp://ftp.⟦word⟧-data.net/exports/⟦date⟧.csv",
    "curl --ftp-ssl -u ⟦user⟧:⟦!pwa⟧ -T report.pdf ftp://ftp.⟦word⟧.net/upload/"])
PC("sftp-sshpass-env", [
    "SSHPASS='⟦!pwsq⟧' sshpass -e sftp -oBatchMode=no -b batch.txt ⟦user⟧@sftp-⟦n:1-9⟧.⟦word⟧.lan",
    "export SSHPASS=⟦!pwa⟧; sshpass -e scp dump.sql ⟦user⟧@⟦host⟧:/tmp/"])
PC("influx-setup-password", [
    "influx setup --org ⟦word⟧ --bucket telemetry --username ⟦user⟧ --password '⟦!pwsq⟧' --force",
    "influx user password -n ⟦user⟧ -p ⟦!pwa⟧"])
PC("pure-ftpd-or-vsftpd-useradd", [
    "(echo '⟦!pwsq⟧'; echo '⟦!pwsq⟧') | pure-pw useradd ⟦user⟧ -u ftpuser -d /srv/ftp/⟦user⟧",
    "printf '%s\\n%s\\n' '⟦!pwsq⟧' '⟦!pwsq⟧' | pure-pw passwd ⟦user⟧ -m"])
PC("mmcli-sim-pin", [
    "mmcli -i 0 --pin=⟦!pin⟧", "nmcli connection modify lte-⟦word⟧ gsm.pin ⟦!pin⟧",
    "qmicli -d /dev/cdm-wdm0 --uim-verify-pin=PIN1,⟦!pin⟧"])
PC("git-clone-token-password-prompt-bypass", [
    "git -c credential.helper='!f() { echo username=⟦user⟧; echo password=⟦!pwa⟧; }; f' clone https://git.⟦word⟧.lan/⟦word#2⟧.git",
    "printf 'protocol=https\\nhost=git.⟦word⟧.lan\\nusername=⟦user⟧\\npassword=⟦!pwa⟧\\n' | git credential approve"])
PC("ansible-playbook-extra-vars", [
    "ansible-playbook site.yml -i prod -e 'ansible_become_password=⟦!pwa⟧ db_admin_password=⟦!pwa#2⟧'",
    "ansible-playbook deploy.yml --extra-vars \"mysql_root_password='⟦!pwa⟧'\""])
PC("terraform-var-cli", [
    "terraform apply -var 'db_password=⟦!pwa⟧' -var 'env=prod' -auto-approve",
    "TF_VAR_admin_password='⟦!pwsq⟧' terraform plan -out tfplan"])
PC("sudo-S-heredoc", [
    "sudo -S -p '' systemctl restart ⟦word⟧ <<< '⟦!pwsq⟧'", "echo ⟦!pwa⟧ | sudo -kS apt-get -y upgrade"])
PC("openssl-pkcs12-export-pass-env", [
    "P12PASS='⟦!pwsq⟧' openssl pkcs12 -export -in cert.pem -inkey key.pem -out ⟦word⟧.p12 -passout env:P12PASS",
    "openssl pkcs12 -in ⟦word⟧.pfx -nodes -password pass:⟦!pwa⟧ -out bundle.pem"])
PC("winrm-pywinrm-cli", [
    "evil-winrm -i ⟦host⟧ -u Administrator -p '⟦!pwsq⟧'", "crackmapexec smb ⟦host⟧ -u ⟦user⟧ -p ⟦!pwa⟧ --shares"])
PC("vpnc-xauth", [
    "vpnc --gateway vpn.⟦word⟧.net --id ⟦word⟧ --username ⟦user⟧ --password '⟦!pwsq⟧' --no-detach",
    "sudo vpnc-connect --xauth-pass ⟦!pwa⟧ office"])
PC("mongorestore-password", [
    "mongorestore --host ⟦host⟧ --username ⟦user⟧ --password '⟦!pwsq⟧' --authenticationDatabase admin --drop dump/",
    "mongoexport -u ⟦user⟧ --password=⟦!pwa⟧ --db=⟦db⟧ --collection=users --out=users.json"])
PC("redis-benchmark-a", [
    "redis-benchmark -h ⟦host⟧ -a '⟦!pwsq⟧' -t set,get -n 100000", "redis-server --requirepass ⟦!pwa⟧ --port 6380"])
PC("psql-env-inline-pgpassword-lower", [
    "env PGPASSWORD='⟦!pwsq⟧' pg_dumpall -h ⟦host⟧ -U ⟦user⟧ -f all.sql",
    "PGPASSWORD=⟦!pwa⟧ pg_restore -h ⟦host⟧ -U ⟦user⟧ -d ⟦db⟧ --clean latest.dump"])
PC("keytool-genkeypair-passes", [
    "keytool -genkeypair -alias ⟦word⟧ -keyalg RSA -keystore server.jks -storepass ⟦!pwa⟧ -keypass ⟦!pwa#k⟧ -dname 'CN=⟦word⟧'",
    "keytool -importcert -file ca.crt -keystore truststore.p12 -deststorepass '⟦!pwsq⟧' -noprompt"])
PC("shell-single-quote-escape", [
    "export SMTP_PASS='⟦!pwsq⟧'", "read -r -s VAULT_PASS <<< '⟦!pwsq⟧'",
    "DB_PASS='⟦!pwsq⟧' ./migrate.sh --env prod"])


# ===========================================================================
# generic-password: code in many languages
# ===========================================================================

def PK(name, variants, **kw):
    V("pw-code", name, variants, **kw)


PK("py-typed-final", [
    "from typing import Final\n\nDB_HOST: Final[str] = \"⟦host⟧\"\nDB_PASSWORD: Final[str] = \"⟦!pwdq⟧\"",
    "class Settings:\n    smtp_user: str = \"⟦user⟧\"\n    smtp_password: str = \"⟦!pwdq⟧\""])
PK("kotlin-val-typed", [
    "private val password: String = \"⟦!pwdq⟧\"", "const val ADMIN_PASSWORD: String = \"⟦!pwdq⟧\" // TODO move to vault",
    "val dataSource = HikariDataSource().apply {\n    jdbcUrl = \"jdbc:postgresql://⟦host⟧/⟦db⟧\"\n    username = \"⟦user⟧\"\n    password = \"⟦!pwdq⟧\"\n}"])
PK("swift-let-typed", [
    "let keychainFallbackPassword: String = \"⟦!pwdq⟧\"",
    "static let ftpPassword = \"⟦!pwdq⟧\"  // staging only"])
PK("ts-const-typed", [
    "const adminPassword: string = '⟦!pwa⟧';", "export const MQTT_PASSWORD: string = \"⟦!pwdq⟧\";",
    "private readonly dbPassword: string = `⟦!pwa⟧`;"])
PK("jdbc-getconnection-args", [
    "Connection conn = DriverManager.getConnection(\"jdbc:mysql://⟦host⟧:3306/⟦db⟧\", \"⟦user⟧\", \"⟦!pwdq⟧\");",
    "val conn = DriverManager.getConnection(url, \"⟦user⟧\", \"⟦!pwdq⟧\")"])
PK("java-setter-setpassword", [
    "HikariConfig cfg = new HikariConfig();\ncfg.setUsername(\"⟦user⟧\");\ncfg.setPassword(\"⟦!pwdq⟧\");",
    "factory.setUsername(\"⟦user⟧\");\nfactory.setPassword(\"⟦!pwdq⟧\");\nfactory.setVirtualHost(\"/⟦word⟧\");"])
PK("csharp-object-initializer", [
    "var csb = new SqlConnectionStringBuilder\n{\n    DataSource = \"⟦host⟧\",\n    UserID = \"⟦user⟧\",\n    Password = \"⟦!pwdq⟧\",\n};",
    "var factory = new ConnectionFactory { HostName = \"⟦host⟧\", UserName = \"⟦user⟧\", Password = \"⟦!pwdq⟧\" };"])
PK("go-smtp-plainauth", [
    "auth := smtp.PlainAuth(\"\", \"⟦user⟧\", \"⟦!pwdq⟧\", \"smtp.⟦word⟧.lan\")",
    "d := gomail.NewDialer(\"smtp.⟦word⟧.lan\", 587, \"⟦user⟧\", \"⟦!pwdq⟧\")"])
PK("rust-lettre-credentials", [
    "let creds = Credentials::new(\"⟦user⟧\".to_owned(), \"⟦!pwdq⟧\".to_owned());",
    "let opts = PgConnectOptions::new().host(\"⟦host⟧\").username(\"⟦user⟧\").password(\"⟦!pwdq⟧\");"])
PK("php-pdo-constructor", [
    "$pdo = new PDO('mysql:host=⟦host⟧;dbname=⟦db⟧', '⟦user⟧', '⟦!pwa⟧');",
    "$mysqli = new mysqli(\"⟦host⟧\", \"⟦user⟧\", \"⟦!pwdq⟧\", \"⟦db⟧\");",
    "$conn = oci_connect('⟦user⟧', '⟦!pwa⟧', '⟦host⟧/XEPDB1');"])
PK("ruby-net-ftp-open", [
    "Net::FTP.open('ftp.⟦word⟧.lan', '⟦user⟧', '⟦!pwa⟧') do |ftp|\n  ftp.putbinaryfile('report.csv')\nend",
    "Net::SMTP.start('smtp.⟦word⟧.lan', 587, 'localhost', '⟦user⟧', '⟦!pwa⟧', :login)"])
PK("node-pg-client-object", [
    "const client = new Client({\n  host: '⟦host⟧',\n  user: '⟦user⟧',\n  password: '⟦!pwa⟧',\n  database: '⟦db⟧',\n});",
    "const pool = mysql.createPool({ host: '⟦host⟧', user: '⟦user⟧', password: \"⟦!pwdq⟧\", connectionLimit: 10 });"])
PK("nodemailer-auth-pass", [
    "const transporter = nodemailer.createTransport({\n  host: 'smtp.⟦word⟧.lan',\n  port: 465,\n  secure: true,\n  auth: { user: '⟦user⟧', pass: '⟦!pwa⟧' },\n});"])
PK("dart-named-arg", [
    "final conn = await MySqlConnection.connect(ConnectionSettings(\n    host: '⟦host⟧', port: 3306, user: '⟦user⟧', password: '⟦!pwa⟧', db: '⟦db⟧'));",
    "final settings = ConnectionSettings(user: '⟦user⟧', password: '⟦!pwa⟧');"])
PK("lua-local-password", [
    "local password = \"⟦!pwdq⟧\"\nlocal ok, err = red:auth(password)",
    "local db_conf = { host = \"⟦host⟧\", user = \"⟦user⟧\", password = \"⟦!pwdq⟧\" }"])
PK("bash-declare-readonly", [
    "declare -r DB_PASS=\"⟦!pwdq⟧\"", "readonly ADMIN_PW='⟦!pwsq⟧'", "local -r ftp_pass=⟦!pwa⟧"])
PK("c-define-password", [
    "#define WIFI_PASSWORD \"⟦!pwdq⟧\"", "#define MQTT_PASS \"⟦!pwdq⟧\"\n#define MQTT_USER \"⟦user⟧\""])
PK("c-char-pointer", [
    "const char* password = \"⟦!pwdq⟧\";\nWiFi.begin(ssid, password);",
    "static const char *admin_pass = \"⟦!pwdq⟧\";"])
PK("java-map-of", [
    "Map<String, String> props = Map.of(\"user\", \"⟦user⟧\", \"password\", \"⟦!pwdq⟧\");",
    "props.put(\"password\", \"⟦!pwdq⟧\");\nprops.put(\"user\", \"⟦user⟧\");"])
PK("py-dict-passwd", [
    "DATABASE = {\"host\": \"⟦host⟧\", \"user\": \"⟦user⟧\", \"passwd\": \"⟦!pwdq⟧\", \"db\": \"⟦db⟧\"}",
    "conn_kwargs = dict(host='⟦host⟧', user='⟦user⟧', passwd='⟦!pwa⟧')"])
PK("go-map-literal", [
    "creds := map[string]string{\"username\": \"⟦user⟧\", \"password\": \"⟦!pwdq⟧\"}",
    "cfg := &mysql.Config{User: \"⟦user⟧\", Passwd: \"⟦!pwdq⟧\", Net: \"tcp\", Addr: \"⟦host⟧:3306\"}"])
PK("r-dbconnect", [
    "con <- dbConnect(RPostgres::Postgres(), host = \"⟦host⟧\", user = \"⟦user⟧\", password = \"⟦!pwdq⟧\", dbname = \"⟦db⟧\")",
    "con <- DBI::dbConnect(odbc::odbc(), Driver = \"SQL Server\", UID = \"⟦user⟧\", PWD = \"⟦!pwdq⟧\")"])
PK("matlab-database", ["conn = database('⟦db⟧','⟦user⟧','⟦!pwa⟧','Vendor','PostgreSQL','Server','⟦host⟧');"])
PK("aiohttp-basicauth", [
    "auth = aiohttp.BasicAuth(\"⟦user⟧\", \"⟦!pwdq⟧\")", "httpx.Client(auth=httpx.BasicAuth(username=\"⟦user⟧\", password=\"⟦!pwdq⟧\"))"])
PK("scala-case-class-config", [
    "val db = DbConfig(url = \"jdbc:postgresql://⟦host⟧/⟦db⟧\", user = \"⟦user⟧\", password = \"⟦!pwdq⟧\")"])
PK("elixir-keyword-list", [
    "{:ok, pid} = Postgrex.start_link(hostname: \"⟦host⟧\", username: \"⟦user⟧\", password: \"⟦!pwdq⟧\", database: \"⟦db⟧\")"])
PK("powershell-pscredential-plain", [
    "$cred = New-Object System.Management.Automation.PSCredential('⟦user⟧', (ConvertTo-SecureString -String '⟦!pwa⟧' -AsPlainText -Force))",
    "$Password = '⟦!pwa⟧'\n$Cred = [pscredential]::new('CORP\\⟦user⟧', ($Password | ConvertTo-SecureString -AsPlainText -Force))"])
PK("vba-connection-string", [
    "cn.Open \"Provider=SQLOLEDB;Data Source=⟦host⟧;User ID=⟦user⟧;Password=⟦!pwa⟧;\"",
    "Const ADMIN_PW As String = \"⟦!pwa⟧\""])
PK("groovy-jenkinsfile-literal", [
    "withEnv([\"DEPLOY_PASSWORD=⟦!pwa⟧\"]) {\n    sh './deploy.sh'\n}",
    "def nexusPassword = '⟦!pwa⟧'"])
PK("sql-connect-by-literal", [
    "CREATE DATABASE LINK ⟦word⟧_link CONNECT TO ⟦user⟧ IDENTIFIED BY \"⟦!pwa⟧\" USING '⟦word⟧';",
    "CREATE SERVER ⟦word⟧_srv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '⟦host⟧');\nCREATE USER MAPPING FOR current_user SERVER ⟦word⟧_srv OPTIONS (user '⟦user⟧', password '⟦!pwa⟧');"])
PK("pin-code-constant", [
    "private static final String DEFAULT_PIN = \"⟦!pin⟧\";", "SIM_PIN=⟦!pin⟧", "pin_code: \"⟦!pin⟧\"  # door keypad",
    "const unlockPin = \"⟦!pin⟧\""])

# ===========================================================================
# generic-password: configuration files of other programs
# ===========================================================================


def PF(name, variants, **kw):
    V("pw-conf", name, variants, **kw)


PF("msmtprc-password", ["account ⟦word⟧\nhost smtp.⟦word#2⟧.lan\nport 587\nauth on\nuser ⟦user⟧\npassword ⟦!pwa⟧\ntls on"])
PF("fetchmailrc", ["poll imap.⟦word⟧.lan protocol IMAP\n    user \"⟦user⟧\" there with password \"⟦!pwdq⟧\" is ⟦user#2⟧ here ssl"])
PF("davfs2-secrets", ["# /etc/davfs2/secrets\nhttps://dav.⟦word⟧.lan/remote.php/webdav ⟦user⟧ \"⟦!pwdq⟧\""])
PF("wvdial-conf", ["[Dialer Defaults]\nModem = /dev/ttyUSB0\nUsername = ⟦user⟧\nPassword = ⟦!pwa⟧\nPhone = *99#"])
PF("bacula-director-password", ["Director {\n  Name = ⟦word⟧-dir\n  Password = \"⟦!pwdq⟧\"\n}",
                                "Storage {\n  Name = File1\n  Address = ⟦host⟧\n  Password = \"⟦!pwdq⟧\"\n  Device = FileChgr1\n}"])
PF("zabbix-dbpassword", ["DBHost=⟦host⟧\nDBName=zabbix\nDBUser=zabbix\nDBPassword=⟦!pwa⟧"])
PF("grafana-ini-admin-password", ["[security]\nadmin_user = admin\nadmin_password = ⟦!pwa⟧\ndisable_gravatar = true",
                                  "[database]\ntype = mysql\nhost = ⟦host⟧:3306\nuser = grafana\npassword = \"\"\"⟦!pwa⟧\"\"\""])
PF("php-fpm-pool-env", ["[www]\nenv[DB_USER] = ⟦user⟧\nenv[DB_PASS] = ⟦!pwa⟧\nclear_env = no"])
PF("redis-conf-requirepass", ["protected-mode yes\nrequirepass ⟦!pwa⟧\nmasterauth ⟦!pwa⟧", "# replica\nmasterauth \"⟦!pwdq⟧\"\nreplica-read-only yes"])
PF("postfix-sasl-passwd", ["[smtp.⟦word⟧-relay.com]:587    ⟦user⟧:⟦!pwa⟧"])
PF("slapd-rootpw", ["database mdb\nsuffix \"dc=⟦word⟧,dc=lan\"\nrootdn \"cn=Manager,dc=⟦word⟧,dc=lan\"\nrootpw ⟦!pwa⟧"])
PF("icecast-xml-passwords", ["<authentication>\n    <source-password>⟦!pwx⟧</source-password>\n    <admin-user>admin</admin-user>\n    <admin-password>⟦!pwx#a⟧</admin-password>\n</authentication>"])
PF("tomcat-context-resource", ["<Resource name=\"jdbc/⟦db⟧\" auth=\"Container\" type=\"javax.sql.DataSource\"\n          username=\"⟦user⟧\" password=\"⟦!pwx⟧\" driverClassName=\"org.postgresql.Driver\"/>"])
PF("toml-inline-table", ["[databases]\nprimary = { host = \"⟦host⟧\", user = \"⟦user⟧\", password = \"⟦!pwdq⟧\" }",
                         "[[upstreams]]\nname = \"⟦word⟧\"\nauth = { username = \"⟦user⟧\", password = '⟦!pwa⟧' }"])
PF("helm-bitnami-auth", ["auth:\n  rootPassword: \"⟦!pwdq⟧\"\n  username: ⟦user⟧\n  password: \"⟦!pwdq#2⟧\"\n  database: ⟦db⟧",
                         "postgresql:\n  auth:\n    postgresPassword: ⟦!pwa⟧\n    enablePostgresUser: true"])
PF("ansible-task-module-password", ["- name: create app user\n  community.mysql.mysql_user:\n    name: ⟦user⟧\n    password: \"⟦!pwdq⟧\"\n    priv: '⟦db⟧.*:ALL'",
                                    "- ansible.windows.win_user:\n    name: ⟦user⟧\n    password: ⟦!pwa⟧\n    state: present"])
PF("salt-pillar-yaml", ["# /srv/pillar/⟦word⟧.sls\nmysql:\n  server:\n    root_password: '⟦!pwa⟧'\n  user:\n    ⟦user⟧:\n      password: '⟦!pwa#2⟧'"])
PF("chef-data-bag-json", ["{\n  \"id\": \"⟦word⟧\",\n  \"db_user\": \"⟦user⟧\",\n  \"db_password\": \"⟦!pwdq⟧\"\n}"])
PF("puppet-hiera-yaml", ["---\nprofile::database::admin_password: '⟦!pwa⟧'\nprofile::database::port: 5432",
                         "postgresql::server::postgres_password: \"⟦!pwdq⟧\""])
PF("netplan-wifi-password", ["network:\n  version: 2\n  wifis:\n    wlan0:\n      dhcp4: true\n      access-points:\n        \"⟦Word⟧-5G\":\n          password: \"⟦!pwdq⟧\""])
PF("beats-output-password", ["output.elasticsearch:\n  hosts: [\"https://es.⟦word⟧.lan:9200\"]\n  username: \"⟦user⟧\"\n  password: \"⟦!pwdq⟧\""])
PF("prometheus-scrape-basic-auth", ["scrape_configs:\n  - job_name: ⟦word⟧\n    basic_auth:\n      username: prom\n      password: ⟦!pwa⟧\n    static_configs:\n      - targets: ['⟦host⟧:9100']"])
PF("alertmanager-smtp-auth-password", ["global:\n  smtp_smarthost: 'smtp.⟦word⟧.lan:587'\n  smtp_auth_username: '⟦user⟧'\n  smtp_auth_password: '⟦!pwa⟧'"])
PF("webconfig-appsettings", ["<appSettings>\n  <add key=\"SmtpUser\" value=\"⟦user⟧\" />\n  <add key=\"SmtpPassword\" value=\"⟦!pwx⟧\" />\n</appSettings>"])
PF("nuget-cleartextpassword", ["<packageSourceCredentials>\n  <⟦word⟧feed>\n    <add key=\"Username\" value=\"⟦user⟧\" />\n    <add key=\"ClearTextPassword\" value=\"⟦!pwx⟧\" />\n  </⟦word⟧feed>\n</packageSourceCredentials>"])
PF("packer-ssh-password", ["source \"vsphere-iso\" \"⟦word⟧\" {\n  ssh_username = \"⟦user⟧\"\n  ssh_password = \"⟦!pwdq⟧\"\n}",
                           "winrm_password = \"⟦!pwdq⟧\"\nwinrm_username = \"Administrator\""])
PF("nomad-job-env", ["task \"⟦word⟧\" {\n  driver = \"docker\"\n  env {\n    POSTGRES_PASSWORD = \"⟦!pwdq⟧\"\n  }\n}"])
PF("kafka-client-properties-ssl", ["security.protocol=SSL\nssl.keystore.location=/etc/kafka/client.p12\nssl.keystore.password=⟦!pwa⟧\nssl.key.password=⟦!pwa#k⟧"])
PF("systemd-mount-options", ["[Mount]\nWhat=//nas/⟦word⟧\nWhere=/mnt/⟦word⟧\nType=cifs\nOptions=username=⟦user⟧,password=⟦!pwa⟧,iocharset=utf8"])
PF("fstab-cifs", ["//nas/⟦word⟧  /mnt/⟦word⟧  cifs  username=⟦user⟧,password=⟦!pwa⟧,uid=1000,gid=1000  0  0"])
PF("apache-authldap-bindpassword", ["<Location /admin>\n  AuthType Basic\n  AuthBasicProvider ldap\n  AuthLDAPBindDN \"cn=svc-httpd,ou=svc,dc=⟦word⟧,dc=lan\"\n  AuthLDAPBindPassword \"⟦!pwdq⟧\"\n</Location>"])
PF("compose-command-requirepass", ["services:\n  redis:\n    image: redis:7\n    command: redis-server --requirepass ⟦!pwa⟧ --appendonly yes"])
PF("sssd-ldap-default-authtok", ["[domain/⟦word⟧]\nldap_default_bind_dn = cn=sssd,ou=svc,dc=⟦word⟧,dc=lan\nldap_default_authtok_type = password\nldap_default_authtok = ⟦!pwa⟧"])
PF("squid-cache-peer-login", ["cache_peer proxy.⟦word⟧.lan parent 3128 0 no-query login=⟦user⟧:⟦!pwa⟧"])
PF("mongod-keyfile-free-yaml-mongos", ["security:\n  authorization: enabled\nsetParameter:\n  ldapQueryUser: \"cn=svc,dc=⟦word⟧\"\n  ldapQueryPassword: \"⟦!pwdq⟧\""])
PF("jenkins-casc-yaml", ["jenkins:\n  securityRealm:\n    local:\n      users:\n        - id: \"admin\"\n          password: \"⟦!pwdq⟧\""])
PF("gitlab-rb-initial-root", ["gitlab_rails['initial_root_password'] = '⟦!pwa⟧'\ngitlab_rails['smtp_password'] = '⟦!pwa#2⟧'"])
PF("pgadmin-servers-json-passfile-free", ["{\"Servers\": {\"1\": {\"Name\": \"⟦word⟧\", \"Host\": \"⟦host⟧\", \"Username\": \"⟦user⟧\", \"Password\": \"⟦!pwdq⟧\", \"SSLMode\": \"prefer\"}}}"])
PF("freeradius-clients-conf", ["client ⟦word⟧-switches {\n    ipaddr = ⟦word⟧-mgmt.lan\n    secret = ⟦!pwa⟧\n    nas_type = other\n}"])
PF("asterisk-sip-conf-secret", ["[⟦n:100-199⟧]\ntype=friend\nhost=dynamic\nsecret=⟦!pwa⟧\ncontext=internal", "[⟦n:200-299⟧]\ntype=auth\nauth_type=userpass\nusername=⟦n:200-299⟧\npassword=⟦!pwa⟧"])
PF("unifi-or-mikrotik-export", ["/interface wireless security-profiles\nset [ find default=yes ] authentication-types=wpa2-psk mode=dynamic-keys wpa2-pre-shared-key=⟦!pwa⟧",
                                "/user add name=⟦user⟧ group=full password=\"⟦!pwdq⟧\""])
PF("cisco-username-password-0", ["username ⟦user⟧ privilege 15 password 0 ⟦!pwa⟧", "enable password ⟦!pwa⟧\nline vty 0 4\n password ⟦!pwa#2⟧\n login"])
PF("windows-autologon-reg", ["[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon]\n\"AutoAdminLogon\"=\"1\"\n\"DefaultUserName\"=\"⟦user⟧\"\n\"DefaultPassword\"=\"⟦!pwdq⟧\""])
PF("dbeaver-or-datagrip-props", ["#DataGrip data source\nurl=jdbc:postgresql://⟦host⟧:5432/⟦db⟧\nuser=⟦user⟧\npassword=⟦!pwa⟧"])

# ===========================================================================
# generic-password: non-English names
# ===========================================================================


def PI(name, variants, **kw):
    V("pw-i18n", name, variants, **kw)


PI("i18n-passwort-de", ["[Datenbank]\nBenutzer = ⟦user⟧\nPasswort = ⟦!pw⟧", "benutzername: ⟦user⟧\npasswort: \"⟦!pwdq⟧\"",
                        "Kennwort=⟦!pw⟧"])
PI("i18n-contrasena-es", ["usuario: ⟦user⟧\ncontraseña: \"⟦!pwdq⟧\"", "CONTRASENA_BD=⟦!pw⟧", "clave_acceso = \"⟦!pwdq⟧\""])
PI("i18n-mot-de-passe-fr", ["MOT_DE_PASSE=⟦!pw⟧", "utilisateur = \"⟦user⟧\"\nmot_de_passe = \"⟦!pwdq⟧\"",
                            "$mot_de_passe = '⟦!pwa⟧';"])
PI("i18n-senha-pt", ["senha := \"⟦!pwdq⟧\"", "usuario=⟦user⟧\nsenha=⟦!pw⟧", "\"senha\": \"⟦!pwdq⟧\""])
PI("i18n-parol-ru", ["пароль: ⟦!pw⟧", "логин = ⟦user⟧\nпароль = \"⟦!pwdq⟧\"", "PAROL_BD=⟦!pw⟧"])
PI("i18n-kata-sandi-id", ["kata_sandi = \"⟦!pwdq⟧\"", "pengguna: ⟦user⟧\nkata_sandi: ⟦!pw⟧"])
PI("i18n-wachtwoord-nl", ["gebruiker=⟦user⟧\nwachtwoord=⟦!pw⟧", "\"wachtwoord\": \"⟦!pwdq⟧\""])
PI("i18n-sifre-tr", ["kullanici: ⟦user⟧\nşifre: \"⟦!pwdq⟧\"", "SIFRE=⟦!pw⟧", "parola = '⟦!pwa⟧'"])
PI("i18n-mima-zh", ["用户名=⟦user⟧\n密码=⟦!pw⟧", "数据库密码: \"⟦!pwdq⟧\"", "mima = \"⟦!pwdq⟧\"  # 生产环境"])
PI("i18n-pasuwado-ja", ["ユーザー名: ⟦user⟧\nパスワード: ⟦!pw⟧", "pasuwado = \"⟦!pwdq⟧\""])
PI("i18n-mat-khau-vi", ["mat_khau = \"⟦!pwdq⟧\"", "tên đăng nhập: ⟦user⟧\nmật khẩu: ⟦!pw⟧"])
PI("i18n-haslo-pl", ["haslo=⟦!pw⟧", "użytkownik: ⟦user⟧\nhasło: \"⟦!pwdq⟧\""])
PI("i18n-parola-it", ["utente = \"⟦user⟧\"\nparola_d_ordine = \"⟦!pwdq⟧\"", "PASSWORD_UTENTE=⟦!pw⟧"])
PI("i18n-kalimat-sandi-hi-ur", ["paswad: \"⟦!pwdq⟧\"", "پاس ورڈ: ⟦!pw⟧", "पासवर्ड = ⟦!pw⟧"])
PI("i18n-mixed-prose", [
    "Olá equipe, a senha do Wi-Fi do escritório agora é ⟦!pwa⟧ (trocada hoje).",
    "Hallo zusammen, das neue Passwort für den Drucker-Admin lautet: ⟦!pwa⟧",
    "Bonjour, le mot de passe du compte partagé est désormais ⟦!pwa⟧ — merci de ne pas le diffuser.",
    "Hola, la contraseña temporal del portal es ⟦!pwa⟧ y caduca el viernes.",
    "Коллеги, новый пароль от общего ящика: ⟦!pwa⟧",
    "Teman-teman, kata sandi VPN yang baru: ⟦!pwa⟧",
    "Chào mọi người, mật khẩu wifi mới là ⟦!pwa⟧",
    "大家好，测试服务器的新密码是 ⟦!pwa⟧ ，请勿外传。"])


# ===========================================================================
# generic-password: URLs, form bodies, protocol transcripts, dumps, traces
# ===========================================================================

def PM(name, variants, **kw):
    V("pw-misc", name, variants, **kw)


PM("access-log-query-password", [
    "host-⟦n:10-250⟧.dyn.⟦word⟧.lan - - [⟦n:10-28⟧/Mar/2024:⟦time⟧ +0000] \"GET /cgi-bin/login.cgi?user=⟦user⟧&pass=⟦!pwurl⟧ HTTP/1.1\" 302 0 \"-\" \"curl/8.5.0\"",
    "⟦ts⟧Z app[web.1]: GET /api/v1/auth?login=⟦user⟧&pwd=⟦!pwurl⟧&format=json 200 41ms",
    "localhost - - [⟦n:10-28⟧/Apr/2024:⟦time⟧ +0200] \"POST /device/setup?ssid=⟦Word⟧&psk=⟦!pwurl⟧ HTTP/1.0\" 200 512"])
PM("oauth-password-grant-body", [
    "DEBUG:urllib3.connectionpool:POST /oauth/token body=grant_type=password&username=⟦user⟧&password=⟦!pwform⟧&client_id=cli-⟦word⟧",
    "> POST /auth/realms/⟦word⟧/protocol/openid-connect/token HTTP/1.1\n> Content-Type: application/x-www-form-urlencoded\n>\ngrant_type=password&client_id=admin-cli&username=⟦user⟧&password=⟦!pwform⟧"])
PM("soap-wsse-password-text", [
    "<wsse:UsernameToken wsu:Id=\"UsernameToken-⟦n:1000-9999⟧\">\n  <wsse:Username>⟦user⟧</wsse:Username>\n  <wsse:Password Type=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText\">⟦!pwx⟧</wsse:Password>\n</wsse:UsernameToken>"])
PM("odoo-xmlrpc-execute-kw", [
    "uid = common.authenticate('⟦db⟧', '⟦user⟧', '⟦!pwa⟧', {})\nmodels.execute_kw('⟦db⟧', uid, '⟦!pwa⟧', 'res.partner', 'search', [[]])"])
PM("kotlin-data-class-tostring", [
    "⟦ts⟧ INFO  c.⟦word⟧.Boot - loaded DbConfig(host=⟦host⟧, port=5432, user=⟦user⟧, password=⟦!pwa⟧, pool=10)",
    "Config(mqttHost=broker.⟦word⟧.lan, mqttUser=⟦user⟧, mqttPassword=⟦!pwa⟧)"])
PM("py-dataclass-repr", [
    "DEBUG settings: Settings(db_user='⟦user⟧', db_password='⟦!pwa⟧', debug=False, workers=4)",
    ">>> cfg\nSMTPConfig(host='smtp.⟦word⟧.lan', port=587, username='⟦user⟧', password='⟦!pwa⟧')"])
PM("elixir-struct-inspect", [
    "[debug] %MyApp.Mailer.Config{relay: \"smtp.⟦word⟧.lan\", username: \"⟦user⟧\", password: \"⟦!pwdq⟧\", port: 587}"])
PM("gdb-print-struct", [
    "(gdb) p *cfg\n$1 = {host = 0x55d4⟦hex:8⟧ \"⟦host⟧\", port = 5432, user = 0x55d4⟦hex:8#2⟧ \"⟦user⟧\", password = 0x55d4⟦hex:8#3⟧ \"⟦!pwa⟧\"}"])
PM("perl-data-dumper", [
    "$VAR1 = {\n          'host' => '⟦host⟧',\n          'password' => '⟦!pwa⟧',\n          'user' => '⟦user⟧'\n        };"])
PM("spring-bind-failure-value", [
    "Failed to bind properties under 'spring.mail' to org.springframework.boot.autoconfigure.mail.MailProperties:\n\n    Property: spring.mail.password\n    Value: \"⟦!pwdq⟧\"\n    Origin: class path resource [application.yml] - 14:15\n    Reason: failed to convert"])
PM("python-traceback-source-line", [
    "Traceback (most recent call last):\n  File \"/opt/app/sync.py\", line ⟦n:10-300⟧, in <module>\n    conn = pymssql.connect(server=\"⟦host⟧\", user=\"⟦user⟧\", password=\"⟦!pwdq⟧\", database=\"⟦db⟧\")\npymssql.OperationalError: (20009, b'DB-Lib error message 20009')"])
PM("strace-auth-write", [
    "write(3, \"AUTH ⟦!pwa⟧\\r\\n\", ⟦n:12-40#len⟧) = ⟦n:12-40#len⟧",
    "sendto(5, \"PASS ⟦!pwa⟧\\r\\n\", ⟦n:12-40#len⟧, MSG_NOSIGNAL, NULL, 0) = ⟦n:12-40#len⟧"])
PM("protocol-transcript-login", [
    "C: a001 LOGIN ⟦user⟧ \"⟦!pwdq⟧\"\nS: a001 OK LOGIN completed",
    "USER ⟦user⟧\n331 Password required for ⟦user⟧\nPASS ⟦!pwa⟧\n230 User ⟦user⟧ logged in",
    "+OK POP3 server ready\nUSER ⟦user⟧\n+OK\nPASS ⟦!pwa⟧\n+OK Logged in.",
    "cache-a:6379> AUTH ⟦!pwa⟧\nOK"])
PM("compose-healthcheck-password", [
    "    healthcheck:\n      test: [\"CMD\", \"mysqladmin\", \"ping\", \"-h\", \"localhost\", \"-uroot\", \"-p⟦!pwa⟧\"]\n      interval: 10s"])
PM("k8s-container-args-password", [
    "      containers:\n        - name: exporter\n          image: prom/mysqld-exporter:v0.15.1\n          args: [\"--mysqld.username=exporter\", \"--mysqld.password=⟦!pwa⟧\"]"])
PM("gha-with-password-literal", [
    "      - uses: docker/login-action@v3\n        with:\n          registry: harbor.⟦word⟧.lan\n          username: robot$ci\n          password: ⟦!pwa⟧"])
PM("ssh-config-proxycommand-sshpass", [
    "Host ⟦word⟧-internal\n    ProxyCommand sshpass -p '⟦!pwsq⟧' ssh -W %h:%p ⟦user⟧@jump01"])
PM("wifi-sticky-note", [
    "Guest WiFi: ⟦Word⟧-Guest  |  Password: ⟦!pwa⟧", "SSID ⟦Word⟧_5G — key ⟦!pwa⟧ (printed on the router label)",
    "Wi-Fi ⟦Word⟧Cafe / pw: ⟦!pwa⟧ / valid until ⟦date⟧"])
PM("mysql-general-log-plain-insert", [
    "⟦ts⟧.⟦n:100000-999999⟧Z\t   ⟦n:10-99⟧ Query\tINSERT INTO accounts (login, plain_password) VALUES ('⟦user⟧', '⟦!pwa⟧')",
    "⟦ts⟧Z ⟦n:10-99⟧ Query\tUPDATE users SET password = '⟦!pwa⟧' WHERE login = '⟦user⟧'"])


@T("pw-misc", "basic-auth-header-b64")
def _basic_header():
    u, p = ch(USERS), pw_ascii()
    b = base64.b64encode(f"{u}:{p}".encode()).decode()
    fmt = ch(["proxy_set_header Authorization \"Basic ⟦!bb⟧\";",
              "http-request set-header Authorization \"Basic ⟦!bb⟧\"",
              "RequestHeader set Authorization \"Basic ⟦!bb⟧\"",
              "      headers:\n        Authorization: Basic ⟦!bb⟧"])
    return fill(fmt, bb=b)


GEN["bb"] = lambda a: ""


@T("pw-misc", "php-var-dump-array")
def _php_var_dump():
    u, p, h = ch(USERS), pw_any(), ch(HOSTS)
    fmt = 'array(3) {\n  ["host"]=>\n  string(%d) "%s"\n  ["user"]=>\n  string(%d) "%s"\n  ["password"]=>\n  string(%d) "⟦!p⟧"\n}' % (
        len(h), h, len(u), u, len(p.encode()))
    return fill(fmt, p=p)


GEN["p"] = lambda a: pw_any()


# ===========================================================================
# generic-secret
# ===========================================================================

def GS(name, variants, **kw):
    V("gsecret", name, variants, **kw)


GS("set-cookie-session", [
    "< HTTP/1.1 200 OK\n< Set-Cookie: sessionid=⟦!lower:32⟧; expires=Tue, 02 Jul 2024 10:00:00 GMT; HttpOnly; Path=/; SameSite=Lax",
    "Set-Cookie: __Host-session=⟦!sb64u:32⟧; Path=/; Secure; HttpOnly",
    "set-cookie: _⟦word⟧_session=⟦!salnum:48⟧--⟦!hex:40⟧; path=/; secure; HttpOnly; SameSite=Lax"])
GS("cookie-connect-sid", ["Cookie: connect.sid=s%3A⟦!sb64u:24⟧.⟦!sb64u:32⟧; theme=dark", "document.cookie → \"lang=en; connect.sid=s%3A⟦!sb64u:24⟧\""])
GS("phpsessid-cookie", ["Cookie: PHPSESSID=⟦!lower:26⟧; wp-settings-time-1=⟦epoch⟧", "PHPSESSID=⟦!lower:32⟧"])
GS("curl-cookie-flag", ["curl -s -b 'session=⟦!sb64u:32⟧' https://admin.⟦word⟧.lan/api/users",
                        "curl --cookie \"JSESSIONID=⟦!HEXS:32⟧\" https://portal.⟦word⟧.lan/reports"])
GS("netscape-cookie-jar", ["# Netscape HTTP Cookie File\n.⟦word⟧-shop.com\tTRUE\t/\tTRUE\t⟦epoch⟧\tremember_token\t⟦!salnum:40⟧",
                           "#HttpOnly_portal.⟦word⟧.lan\tFALSE\t/\tTRUE\t0\tsid\t⟦!hex:64⟧"])
GS("go-hmac-new", ["mac := hmac.New(sha256.New, []byte(\"⟦!salnum:32⟧\"))", "var signingKey = []byte(\"⟦!secret⟧\")"])
GS("node-createhmac", ["const sig = crypto.createHmac('sha256', '⟦!salnum:40⟧').update(body).digest('hex');",
                       "const WEBHOOK_SECRET = '⟦!hex:64⟧';"])
GS("py-aes-key-b64decode", ["AES_KEY = base64.b64decode(\"⟦!sb64:32⟧\")", "key = bytes.fromhex(\"⟦!hex:64⟧\")\ncipher = AES.new(key, AES.MODE_GCM)"])
GS("java-secretkeyspec", ["SecretKeySpec key = new SecretKeySpec(Base64.getDecoder().decode(\"⟦!sb64:32⟧\"), \"AES\");",
                          "private static final byte[] HMAC_KEY = \"⟦!salnum:32⟧\".getBytes(StandardCharsets.UTF_8);"])
GS("openssl-enc-K", ["openssl enc -aes-256-cbc -K ⟦!hex:64⟧ -iv ⟦hex:32⟧ -in backup.tar -out backup.tar.enc",
                     "openssl enc -d -aes-128-ctr -K ⟦!hex:32⟧ -iv ⟦hex:32⟧ -in blob.bin"], cli=True)
GS("env-encryption-key-hex", ["ENCRYPTION_KEY=⟦!hex:64⟧", "DATA_ENCRYPTION_KEY=\"⟦!sb64:32⟧\"", "FIELD_ENCRYPTION_KEY=⟦!sb64u:32⟧="])
GS("xml-appsettings-secret", ["<add key=\"JwtSigningSecret\" value=\"⟦!salnum:48⟧\" />", "<setting name=\"ApiSecret\" serializeAs=\"String\">\n  <value>⟦!salnum:40⟧</value>\n</setting>"])
GS("php-config-salt", ["define('PASSWORD_SALT', '⟦!salnum:40⟧');", "$config['encryption_key'] = '⟦!hex:32⟧';"])
GS("consul-acl-token-uuid", ["consul {\n  address = \"consul.service.lan:8500\"\n  token   = \"⟦!suuid⟧\"\n}", "CONSUL_HTTP_TOKEN=⟦!suuid⟧ consul kv get config/⟦word⟧"])
GS("properties-signature-key", ["jwt.signature.key=⟦!salnum:48⟧", "app.security.token-secret=⟦!sb64:48⟧"])
GS("swift-static-secret", ["static let clientSecret = \"⟦!salnum:40⟧\"", "let apiSecret: String = \"⟦!hex:40⟧\""])
GS("kotlin-buildconfig-field", ["buildConfigField(\"String\", \"API_SECRET\", \"\\\"⟦!salnum:32⟧\\\"\")"])
GS("csharp-const-secret", ["private const string ClientSecret = \"⟦!salnum:40⟧\";", "public static readonly string SigningKey = \"⟦!sb64:32⟧\";"])
GS("spring-value-default", ["@Value(\"${jwt.secret:⟦!salnum:48⟧}\")\nprivate String jwtSecret;"])
GS("docker-build-arg-secret", ["docker build --build-arg NPM_AUTH_SECRET=⟦!hex:40⟧ -t web:⟦n:1-99⟧ .",
                               "docker buildx build --build-arg SENTRY_AUTH_SECRET=⟦!salnum:40⟧ --push -t app ."], cli=True)
GS("systemd-setcredential", ["[Service]\nSetCredential=api-secret:⟦!salnum:40⟧\nExecStart=/usr/bin/⟦word⟧d"])
GS("wg-presharedkey", ["[Peer]\nPublicKey = ⟦b64:32⟧\nPresharedKey = ⟦!sb64:32⟧\nEndpoint = vpn.⟦word⟧.lan:51820"])
GS("bind-tsig-secret", ["key \"xfer-⟦word⟧\" {\n    algorithm hmac-sha256;\n    secret \"⟦!sb64:32⟧\";\n};"])
GS("k3s-token", ["K3S_TOKEN=K10⟦!hex:64⟧::server:⟦!hex:32⟧", "curl -sfL https://get.k3s.io | K3S_URL=https://k3s-server.lan:6443 K3S_TOKEN=⟦!hex:48⟧ sh -"])
GS("kubeadm-join-token", ["kubeadm join cp.⟦word⟧.lan:6443 --token ⟦!lower:6⟧.⟦!lower:16⟧ --discovery-token-ca-cert-hash sha256:⟦hex:64⟧"])
GS("symfony-app-secret", ["###> symfony/framework-bundle ###\nAPP_ENV=prod\nAPP_SECRET=⟦!hex:32⟧\n###< symfony/framework-bundle ###"])
GS("nextcloud-config-php", ["  'passwordsalt' => '⟦!salnum:30⟧',\n  'secret' => '⟦!salnum:48⟧',\n  'trusted_domains' => array(0 => 'cloud.⟦word⟧.lan'),"])
GS("grafana-secret-key", ["[security]\nsecret_key = ⟦!salnum:32⟧\ncookie_secure = true"])
GS("drupal-hash-salt", ["$settings['hash_salt'] = '⟦!sb64u:55⟧';"])
GS("vault-unseal-keys-output", ["Unseal Key 1: ⟦!sb64:33#1⟧\nUnseal Key 2: ⟦!sb64:33#2⟧\nUnseal Key 3: ⟦!sb64:33#3⟧\n\nVault initialized with 5 key shares and a key threshold of 3."])
GS("erlang-cookie", ["$ cat /var/lib/rabbitmq/.erlang.cookie\n⟦!UPS:20⟧", "erl -sname node1 -setcookie ⟦!UPS:20⟧", "RABBITMQ_ERLANG_COOKIE=⟦!UPS:20⟧"])
GS("az-sp-create-output", ["{\n  \"appId\": \"⟦uuid⟧\",\n  \"displayName\": \"sp-⟦word⟧-ci\",\n  \"password\": \"⟦!SPS⟧\",\n  \"tenant\": \"⟦uuid⟧\"\n}"])
GS("recaptcha-secret-env", ["RECAPTCHA_SECRET_KEY=6L⟦!salnum:38⟧", "HCAPTCHA_SECRET=0x⟦!hex:40⟧"])
GS("auth-credential-yaml", ["credentials:\n  client_id: ⟦word⟧-svc\n  client_credential: ⟦!salnum:40⟧", "auth:\n  shared_secret: \"⟦!sb64:24⟧\"\n  algorithm: HS256"])
GS("signature-secret-ini", ["[webhooks]\nsignature_secret = ⟦!hex:40⟧\nendpoint = /hooks/⟦word⟧", "[callback]\nsigning_key=⟦!salnum:32⟧"])
GS("session-secret-toml", ["[session]\nsecret = \"⟦!sb64:48⟧\"\nmax_age = 86400", "cookie_secret = \"⟦!hex:64⟧\""])
GS("redis-cli-get-session", ["cache-b:6379> GET auth:refresh:⟦n:1000-99999⟧\n\"⟦!sb64u:48⟧\""])

GEN["HEXS"] = lambda a: hx(int(a or 32)).upper()
GEN["UPS"] = lambda a: rs(UP, int(a or 20))
GEN["SPS"] = lambda a: rs(ALNUM + "~_.-", 3) + "8Q~" + rs(ALNUM + "~_.-", 34)


# ===========================================================================
# phone numbers
# ===========================================================================

CITIES = {"IN": ["Pune", "Chennai", "Lucknow", "Kochi"], "CN": ["Chengdu", "Hangzhou", "Wuhan", "Xiamen"],
          "US": ["Denver", "Austin", "Tampa", "Omaha"], "ID": ["Bandung", "Surabaya", "Medan", "Makassar"],
          "PK": ["Lahore", "Karachi", "Multan", "Peshawar"], "NG": ["Lagos", "Ibadan", "Enugu", "Kano"],
          "BR": ["Recife", "Curitiba", "Belo Horizonte", "Salvador"], "BD": ["Dhaka", "Khulna", "Sylhet", "Rajshahi"],
          "RU": ["Kazan", "Samara", "Tomsk", "Perm"], "MX": ["Puebla", "Monterrey", "Merida", "Leon"],
          "JP": ["Sapporo", "Fukuoka", "Sendai", "Kobe"], "PH": ["Cebu", "Davao", "Iloilo", "Baguio"],
          "EG": ["Giza", "Alexandria", "Mansoura", "Aswan"], "DE": ["Leipzig", "Bremen", "Dresden", "Kassel"],
          "GB": ["Leeds", "Bristol", "Cardiff", "Norwich"], "FR": ["Lille", "Nantes", "Rennes", "Dijon"],
          "VN": ["Da Nang", "Hue", "Can Tho", "Hai Phong"], "TR": ["Izmir", "Bursa", "Konya", "Eskisehir"]}

MOBILE_LABEL = {"IN": "Mobile", "CN": "手机", "US": "Cell", "ID": "HP", "PK": "Mobile", "NG": "Mobile", "BR": "Cel.",
                "BD": "Mobile", "RU": "Моб.", "MX": "Cel.", "JP": "携帯", "PH": "Mobile", "EG": "Mobile", "DE": "Mobil",
                "GB": "Mob", "FR": "Tél.", "VN": "ĐT", "TR": "Cep"}


def digits_of(num):
    return re.sub(r"\D", "", num.replace("(0)", ""))


def PHT(name, nums=1, intl=False, nat=False, cc_pool=None):
    """Register a phone template; fn(cc, nums) -> format string using ⟦!num⟧ / ⟦!num2⟧ and ⟦cc_*⟧ helpers."""
    def deco(fn):
        @T("phone", name)
        def run():
            cc = ch(cc_pool or COUNTRIES)
            vals, dets = {}, []
            for i in range(nums):
                n, d = phone(cc, intl_only=intl, nat_only=nat)
                vals["num" if i == 0 else f"num{i + 1}"] = n
                dets.append(d)
            f, l = person(cc).split()
            vals.update(first=f, last=l, city=ch(CITIES[cc]), cc=cc, lab=MOBILE_LABEL[cc])
            fmt = fn(cc, vals)
            text, spans = fill(fmt, **vals)
            return text, spans, dets[0]
        return fn
    return deco


for _k in ("num", "num2", "first", "last", "city", "cc", "lab"):
    GEN.setdefault(_k, lambda a: "")


@PHT("tsv-contacts-header")
def _p1(cc, v):
    return ch(["name\tcountry\tmobile\tcity\n⟦first⟧ ⟦last⟧\t⟦cc⟧\t⟦!num⟧\t⟦city⟧",
               "id\tfull_name\tphone\tbranch\n⟦n:1000-9999⟧\t⟦last⟧, ⟦first⟧\t⟦!num⟧\t⟦city⟧"])


@PHT("crm-csv-salesforce-lead")
def _p2(cc, v):
    return "\"Id\",\"FirstName\",\"LastName\",\"MobilePhone\",\"LeadSource\",\"City\"\n\"00Q⟦alnum:15⟧\",\"⟦first⟧\",\"⟦last⟧\",\"⟦!num⟧\",\"Web\",\"⟦city⟧\""


@PHT("hubspot-contact-jsonl")
def _p3(cc, v):
    return "{\"vid\": ⟦n:100000-999999⟧, \"properties\": {\"firstname\": {\"value\": \"⟦first⟧\"}, \"lastname\": {\"value\": \"⟦last⟧\"}, \"mobilephone\": {\"value\": \"⟦!num⟧\"}, \"city\": {\"value\": \"⟦city⟧\"}}}"


@PHT("yaml-contact-record")
def _p4(cc, v):
    return ch(["- name: ⟦first⟧ ⟦last⟧\n  role: driver\n  depot: ⟦city⟧\n  tel: \"⟦!num⟧\"",
               "emergency_contact:\n  name: ⟦first⟧ ⟦last⟧\n  relation: spouse\n  phone: ⟦!num⟧"])


@PHT("vcard-v4-tel-uri", intl=True)
def _p5(cc, v):
    v["num"] = "+" + digits_of(v["num"]) if R.random() < 0.5 else re.sub(r"\s+", "-", v["num"].replace("(0)", "").replace("(", "").replace(")", ""))
    return "BEGIN:VCARD\nVERSION:4.0\nFN:⟦first⟧ ⟦last⟧\nTEL;VALUE=uri;TYPE=\"voice,cell\":tel:⟦!num⟧\nADR;TYPE=home:;;;⟦city⟧;;;⟦cc⟧\nEND:VCARD"


@PHT("vcard-21-typed", nums=2)
def _p6(cc, v):
    return "BEGIN:VCARD\nVERSION:2.1\nN:⟦last⟧;⟦first⟧;;;\nTEL;CELL;PREF:⟦!num⟧\nTEL;WORK;VOICE:⟦!num2⟧\nEND:VCARD"




@PHT("email-signature-localized")
def _p7(cc, v):
    return ch(["--\n⟦first⟧ ⟦last⟧\nRegional Sales | ⟦Word⟧ Logistics\n⟦lab⟧: ⟦!num⟧",
               "Best regards / ⟦first⟧ ⟦last⟧\n⟦Word⟧ ⟦Word#2⟧ · ⟦city⟧\n⟦lab⟧ ⟦!num⟧"])


@PHT("sms-kannel-access-log", intl=True)
def _p8(cc, v):
    v["num"] = "+" + digits_of(v["num"])
    return "⟦date⟧ ⟦time⟧ Receive SMS [SMSC:⟦word⟧] [SVC:] [ACT:] [BINF:] [FID:] [META:] [from:⟦!num⟧] [to:⟦n:1000-9999⟧] [flags:-1:0:-1:0:-1] [msg:4:STOP] [udh:0:]"


@PHT("smpp-pdu-debug", intl=True)
def _p9(cc, v):
    v["num"] = digits_of(v["num"])
    return "DEBUG smpp.pdu: submit_sm seq=⟦n:1000-99999⟧ source_addr_ton=5 source_addr=\"⟦Word⟧\" dest_addr_ton=1 dest_addr_npi=1 destination_addr=\"⟦!num⟧\" data_coding=0 sm_length=⟦n:20-160⟧"


@PHT("cdr-opensips-acc", nums=2, intl=True)
def _p10(cc, v):
    v["num"] = digits_of(v["num"])
    v["num2"] = digits_of(v["num2"])
    return "⟦date⟧ ⟦time⟧ opensips[⟦pid⟧]: ACC: transaction answered: timestamp=⟦epoch⟧;method=INVITE;from_tag=⟦hex:8⟧;to_tag=⟦hex:8#2⟧;call_id=⟦hex:24⟧;code=200;reason=OK;src_user=⟦!num⟧;dst_user=⟦!num2⟧"


@PHT("cdr-pipe-billing", nums=2)
def _p11(cc, v):
    return "⟦date⟧ ⟦time⟧|⟦!num⟧|⟦!num2⟧|OUTBOUND|00:0⟦n:1-9⟧:⟦n:10-59⟧|⟦n:0-9⟧.⟦n:10-99⟧|ANSWERED"


@PHT("hl7-pid-phone", nums=2)
def _p12(cc, v):
    return "MSH|^~\\&|ADT1|⟦Word⟧HOSP|LAB|⟦Word⟧HOSP|2024⟦n:10-12⟧⟦n:10-28⟧⟦n:10-23⟧⟦n:10-59⟧||ADT^A04|MSG⟦n:10000-99999⟧|P|2.5\nPID|1||⟦n:100000-999999⟧^^^⟦Word⟧HOSP^MR||⟦last⟧^⟦first⟧||19⟦n:50-99⟧0⟦n:1-9⟧1⟦n:0-9⟧|F|||⟦n:1-99⟧ ⟦Word⟧ Rd^^⟦city⟧||⟦!num⟧^PRN^PH|⟦!num2⟧^WPN^PH"


def _prose(name, texts, pool):
    @PHT(name, cc_pool=pool)
    def _f(cc, v, texts=texts):
        return ch(texts)


_prose("prose-en-call-me", ["Call me at ⟦!num⟧ after 5pm, I'll be in ⟦city⟧ until Friday.",
                            "You can reach the site lead, ⟦first⟧, on ⟦!num⟧.",
                            "If the delivery is late just text me: ⟦!num⟧", "my number is ⟦!num⟧ btw"], ["US", "GB", "IN", "NG", "PH"])
_prose("prose-es-mx", ["Llámame al ⟦!num⟧ cuando llegues a la oficina.", "Cualquier duda, mi cel es ⟦!num⟧ (⟦first⟧)."], ["MX"])
_prose("prose-pt-br", ["Me liga no ⟦!num⟧ ou manda mensagem no zap.", "Qualquer coisa fala com o ⟦first⟧ no ⟦!num⟧."], ["BR"])
_prose("prose-de", ["Rufen Sie mich gerne unter ⟦!num⟧ an.", "Bei Rückfragen erreichen Sie Frau ⟦last⟧ unter ⟦!num⟧."], ["DE"])
_prose("prose-fr", ["Appelez-moi au ⟦!num⟧ avant midi.", "Pour toute question, contactez ⟦first⟧ au ⟦!num⟧."], ["FR"])
_prose("prose-ru", ["Позвоните мне по номеру ⟦!num⟧ после обеда.", "Курьер: ⟦first⟧, тел. ⟦!num⟧"], ["RU"])
_prose("prose-tr", ["Beni ⟦!num⟧ numarasından arayabilirsiniz.", "Kargo için ⟦first⟧ Bey'e ⟦!num⟧ üzerinden ulaşın."], ["TR"])
_prose("prose-id", ["Hubungi saya di ⟦!num⟧ ya, makasih.", "Untuk info lebih lanjut WA ke ⟦!num⟧ (⟦first⟧)."], ["ID"])
_prose("prose-vi", ["Gọi cho tôi theo số ⟦!num⟧ nhé.", "Liên hệ anh ⟦first⟧: ⟦!num⟧"], ["VN"])
_prose("prose-ja", ["お問い合わせは ⟦!num⟧ までお電話ください。", "担当：⟦last⟧（⟦!num⟧）"], ["JP"])
_prose("prose-zh", ["请拨打 ⟦!num⟧ 联系我。", "如有问题请联系⟦last⟧先生，电话 ⟦!num⟧"], ["CN"])
_prose("prose-hinglish", ["Mera number ⟦!num⟧ hai, WhatsApp kar dena.", "bhai ⟦!num⟧ pe call karo urgent hai"], ["IN", "PK"])
_prose("prose-ng-pidgin", ["Pls flash me on ⟦!num⟧ when you reach the junction.", "Abeg call me for ⟦!num⟧, network no good here."], ["NG"])
_prose("prose-ph-taglish", ["Txt me po sa ⟦!num⟧ pag nandyan ka na.", "Pa-load po sa ⟦!num⟧, salamat!"], ["PH"])
_prose("prose-south-asia-english", ["Sir kindly call on ⟦!num⟧ regarding the invoice.", "Please do the needful and revert on ⟦!num⟧."], ["BD", "PK", "IN"])
_prose("prose-eg-english", ["Contact the guest house owner on ⟦!num⟧, he speaks English.", "Our driver ⟦first⟧ will wait at arrivals, his mobile is ⟦!num⟧"], ["EG"])


@PHT("unlabeled-inline")
def _p13(cc, v):
    return ch(["⟦first⟧ ⟦last⟧ ⟦!num⟧", "⟦first⟧ ⟦last⟧ — ⟦!num⟧ — ⟦city⟧", "⟦last⟧, ⟦first⟧ (⟦city⟧) ⟦!num⟧"])


@PHT("sip-invite-from", intl=True)
def _p14(cc, v):
    v["num"] = "+" + digits_of(v["num"])
    return "INVITE sip:⟦n:100-299⟧@pbx.⟦word⟧.lan SIP/2.0\nFrom: \"⟦first⟧ ⟦last⟧\" <sip:⟦!num⟧@trunk.⟦word#2⟧-voip.lan>;tag=⟦hex:10⟧\nCall-ID: ⟦hex:32⟧"


@PHT("signal-cli-send", nums=2, intl=True)
def _p15(cc, v):
    v["num"] = "+" + digits_of(v["num"])
    v["num2"] = "+" + digits_of(v["num2"])
    return "signal-cli -a ⟦!num⟧ send -m \"deploy finished\" ⟦!num2⟧"


@PHT("ldif-telephonenumber", nums=2)
def _p16(cc, v):
    return "dn: uid=⟦lower:6⟧,ou=people,dc=⟦word⟧,dc=lan\ncn: ⟦first⟧ ⟦last⟧\ntelephoneNumber: ⟦!num⟧\nmobile: ⟦!num2⟧"


@PHT("rails-log-params")
def _p17(cc, v):
    return "Started POST \"/signup\" for localhost at ⟦date⟧ ⟦time⟧ +0000\n  Parameters: {\"authenticity_token\"=>\"[FILTERED]\", \"user\"=>{\"name\"=>\"⟦first⟧ ⟦last⟧\", \"phone\"=>\"⟦!num⟧\", \"password\"=>\"[FILTERED]\"}}"


@PHT("google-people-json")
def _p18(cc, v):
    return "{\"resourceName\": \"people/c⟦n:1000000000-9999999999⟧\", \"names\": [{\"displayName\": \"⟦first⟧ ⟦last⟧\"}], \"phoneNumbers\": [{\"value\": \"⟦!num⟧\", \"type\": \"mobile\", \"formattedType\": \"Mobile\"}]}"


@PHT("protobuf-textproto")
def _p19(cc, v):
    return "contact {\n  display_name: \"⟦first⟧ ⟦last⟧\"\n  phone_number: \"⟦!num⟧\"\n  region_code: \"⟦cc⟧\"\n}"


@PHT("otp-sent-log")
def _p20(cc, v):
    return ch(["⟦ts⟧Z INFO  otp.sender: sent login code to ⟦!num⟧ via ⟦word⟧-sms (ttl=300s, attempt=1)",
               "level=info msg=\"verification sms queued\" to=\"⟦!num⟧\" template=otp_v2"])


@PHT("xml-ubl-telephone")
def _p21(cc, v):
    return "<cac:Contact>\n  <cbc:Name>⟦first⟧ ⟦last⟧</cbc:Name>\n  <cbc:Telephone>⟦!num⟧</cbc:Telephone>\n</cac:Contact>"


@PHT("query-msisdn-urlencoded", intl=True)
def _p22(cc, v):
    v["num"] = "%2B" + digits_of(v["num"])
    return ch(["GET /api/v2/otp/send?msisdn=⟦!num⟧&lang=⟦lower:2⟧ HTTP/1.1", "POST /callback?from=⟦!num⟧&status=DELIVRD&id=⟦hex:16⟧"])


@PHT("markdown-bullet-contacts", nums=2)
def _p23(cc, v):
    return "## On-call this week\n- **⟦first⟧ ⟦last⟧** (primary): ⟦!num⟧\n- backup: ⟦!num2⟧"


@PHT("courier-notification")
def _p24(cc, v):
    return ch(["Your courier ⟦first⟧ (⟦!num⟧) is on the way. Order #⟦n:10000-99999⟧ arrives in 15 min.",
               "Driver assigned: ⟦first⟧ ⟦last⟧, ⟦!num⟧, vehicle ⟦HEX:3⟧-⟦n:100-999⟧"])


@PHT("chat-export-sender")
def _p25(cc, v):
    return "[⟦n:10-28⟧/0⟦n:1-9⟧/24, ⟦time⟧] ⟦!num⟧: ok see you at the gate\n[⟦n:10-28⟧/0⟦n:1-9⟧/24, ⟦time⟧] ⟦first⟧: 👍"


@PHT("kyc-jsonl-phone-e164", intl=True)
def _p26(cc, v):
    v["num"] = "+" + digits_of(v["num"])
    return "{\"user_id\": ⟦n:100000-999999⟧, \"country\": \"⟦cc⟧\", \"phone_e164\": \"⟦!num⟧\", \"phone_verified\": true}"


@PHT("spreadsheet-copy-paste")
def _p27(cc, v):
    return "⟦n:1-40⟧\t⟦first⟧\t⟦last⟧\t⟦city⟧\t⟦!num⟧\tpaid"


@PHT("sql-result-grid")
def _p28(cc, v):
    return " id  | name               | phone\n-----+--------------------+------------------\n ⟦n:100-999⟧ | ⟦first⟧ ⟦last⟧ | ⟦!num⟧"


@PHT("ics-attendee-phone")
def _p29(cc, v):
    return "BEGIN:VEVENT\nSUMMARY:Site visit ⟦city⟧\nLOCATION:⟦city⟧ depot\nDESCRIPTION:Contact on arrival: ⟦first⟧ ⟦!num⟧\nEND:VEVENT"


@PHT("booking-confirmation-text")
def _p30(cc, v):
    return "Booking ref ⟦HEX:6⟧ confirmed for ⟦first⟧ ⟦last⟧. Guest phone: ⟦!num⟧. Check-in ⟦date⟧ 14:00."


@PHT("pos-receipt-customer")
def _p31(cc, v):
    return "CUSTOMER: ⟦last⟧ ⟦first⟧\nTEL: ⟦!num⟧\nITEMS: ⟦n:1-9⟧   TOTAL: ⟦n:10-999⟧.⟦n:10-99⟧"


@PHT("freepbx-voicemail-email-body", intl=False)
def _p32(cc, v):
    return "You have a new voicemail (⟦n:10-59⟧ sec) in mailbox ⟦n:100-299⟧ from ⟦!num⟧ (\"⟦first⟧ ⟦last⟧\") received ⟦date⟧ ⟦time⟧."


for _t in TEMPLATES:
    _t.setdefault("nums", 1)


# ===========================================================================
# e-mail, cards, IBANs, SSNs
# ===========================================================================

GEN["em"] = lambda a: email()
GEN["card"] = lambda a: card_fmt(card()[0])
GEN["iban"] = lambda a: iban_fmt(iban())
GEN["ssn"] = lambda a: ssn()

V("email", "git-co-authored-by", ["feat(api): retry idempotent calls\n\nCo-authored-by: ⟦person⟧ <⟦!em⟧>"])
V("email", "mailmap-line", ["⟦person⟧ <⟦!em⟧> <⟦lower:8⟧@⟦word⟧-laptop.local>"])
V("email", "gpg-uid-line", ["pub   ed25519 2023-⟦n:10-12⟧-0⟦n:1-9⟧ [SC]\n      ⟦HEX:40⟧\nuid           [ultimate] ⟦person⟧ <⟦!em⟧>"])
V("email", "crontab-mailto", ["MAILTO=⟦!em⟧\n0 4 * * * /usr/local/bin/backup.sh"])
V("email", "dns-txt-dmarc-rua", ["_dmarc.⟦word⟧-bakery.com. 3600 IN TXT \"v=DMARC1; p=quarantine; rua=mailto:⟦!em⟧\""])
V("email", "apache-serveradmin", ["<VirtualHost *:443>\n    ServerName shop.⟦word⟧-crafts.com\n    ServerAdmin ⟦!em⟧\n</VirtualHost>"])

V("card", "pos-terminal-debug", ["⟦ts⟧ POS[⟦pid⟧] DEBUG emv: PAN=⟦!card⟧ EXP=2⟦n:6-9⟧⟦n:10-12⟧ AID=A0000000031010 TVR=0000008000"])
V("card", "json-payment-unmasked", ["{\"payment_method\": {\"type\": \"card\", \"number\": \"⟦!card⟧\", \"exp\": \"⟦n:10-12⟧/2⟦n:6-9⟧\", \"holder\": \"⟦person⟧\"}}"])
V("card", "sql-update-pan", ["UPDATE customers SET card_number = '⟦!card⟧', card_exp = '⟦n:10-12⟧/⟦n:26-30⟧' WHERE id = ⟦n:100-99999⟧;"])
V("card", "chargeback-csv", ["case_id;card;amount;reason\nCB-⟦n:10000-99999⟧;⟦!card⟧;⟦n:10-999⟧,⟦n:10-99⟧;fraud"])
V("card", "ocr-card-front", ["OCR result (confidence 0.9⟦n:1-9⟧):\n⟦!card⟧\nVALID THRU ⟦n:10-12⟧/⟦n:26-30⟧\n⟦PERSONU⟧"])
GEN["PERSONU"] = lambda a: person().upper()

V("iban", "iban-camt053-entry", ["<Ntry>\n  <Amt Ccy=\"EUR\">⟦n:10-9999⟧.⟦n:10-99⟧</Amt>\n  <RltdPties><DbtrAcct><Id><IBAN>⟦!IBANE⟧</IBAN></Id></DbtrAcct></RltdPties>\n</Ntry>"])
V("iban", "iban-chat-pt", ["Segue o IBAN para a transferência: ⟦!iban⟧ (titular ⟦person⟧)", "Pode fazer o pagamento para o IBAN ⟦!iban⟧, obrigado!"])
V("iban", "iban-env-payout", ["PAYOUT_IBAN=⟦!IBANE⟧\nPAYOUT_BIC=⟦UPS:4⟧⟦UPS:2⟧2X"])
V("iban", "iban-datev-semicolon", ["Umsatz;Soll/Haben;Konto;IBAN;Buchungstext\n⟦n:10-9999⟧,⟦n:10-99⟧;S;1200;⟦!IBANE⟧;Miete ⟦date⟧"])
V("iban", "iban-email-body", ["Dear ⟦person⟧,\nplease remit the outstanding amount to our account\nIBAN: ⟦!iban⟧\nReference: INV-⟦n:1000-9999⟧"])
GEN["IBANE"] = lambda a: iban()

V("ssn", "ssn-i9-ocr", ["Section 1. Employee Information\nLast Name ⟦person⟧   U.S. Social Security Number ⟦!ssn⟧   Date of Birth 0⟦n:1-9⟧/1⟦n:0-9⟧/19⟦n:60-99⟧"])
V("ssn", "ssn-payroll-fixed-width", ["EMP⟦n:10000-99999⟧ ⟦PERSONU⟧        ⟦!SSNP⟧ 00⟦n:1000-9999⟧.⟦n:10-99⟧ BW"])
V("ssn", "ssn-json-kyc", ["{\"applicant\": {\"name\": \"⟦person⟧\", \"ssn\": \"⟦!ssn⟧\", \"dob\": \"19⟦n:60-99⟧-0⟦n:1-9⟧-1⟦n:0-9⟧\"}}"])
V("ssn", "ssn-nested-yaml", ["dependents:\n  - name: ⟦person⟧\n    relationship: child\n    tin: ⟦!ssn⟧"])
V("ssn", "ssn-db-slow-query", ["# Query_time: 2.⟦n:100-999⟧  Lock_time: 0.000\nSELECT * FROM applicants WHERE ssn = '⟦!ssn⟧';"])
GEN["SSNP"] = lambda a: ssn(sep="")

# ===========================================================================
# db-url, private keys, JWTs, vendor tokens (fewer rows)
# ===========================================================================

V("dburl", "rails-database-yml-url", ["production:\n  url: mysql2://⟦user⟧:⟦!pwurl⟧@⟦host⟧:3306/⟦db⟧?encoding=utf8mb4&pool=15"])
V("dburl", "asyncpg-url-log", ["⟦ts⟧ uvicorn INFO  connecting to postgresql+asyncpg://⟦user⟧:⟦!pwurl⟧@⟦host⟧:5432/⟦db⟧"])
V("dburl", "mssql-pyodbc-url", ["SQLALCHEMY_URI = \"mssql+pyodbc://⟦user⟧:⟦!pwurl⟧@⟦host⟧:1433/⟦db⟧?driver=ODBC+Driver+18+for+SQL+Server\""])
V("dburl", "mongodb-replicaset-node-log", ["MongooseServerSelectionError: connect ECONNREFUSED\n    at NativeConnection.Connection.openUri (mongodb://⟦user⟧:⟦!pwurl⟧@mongo-0.⟦word⟧.lan:27017,mongo-1.⟦word⟧.lan:27017/⟦db⟧?replicaSet=rs0)"])
V("dburl", "amqps-url-compose", ["    environment:\n      CELERY_BROKER_URL: amqps://⟦user⟧:⟦!pwurl⟧@mq.⟦word⟧.lan:5671/⟦word#2⟧"])
V("dburl", "rediss-url-python", ["r = redis.from_url(\"rediss://default:⟦!pwurl⟧@cache.⟦word⟧.lan:6380/0\")"])


@T("pkey", "env-escaped-newlines", kind="private-key")
def _k1():
    k, t = private_key()
    v = k.replace("\n", "\\n")
    return fill(ch(["JWT_PRIVATE_KEY=\"⟦!k⟧\"", "SIGNING_KEY='⟦!k⟧'"]), k=v) + (t,)


@T("pkey", "compose-configs-content", kind="private-key")
def _k2():
    k, t = private_key()
    ind = "      "
    return fill("configs:\n  tls_key:\n    content: |\n" + ind + "⟦!k⟧\nservices:\n  proxy:\n    configs: [tls_key]", k=k.replace("\n", "\n" + ind)) + (t,)


@T("pkey", "ansible-copy-content", kind="private-key")
def _k3():
    k, t = private_key()
    ind = "      "
    return fill("- ansible.builtin.copy:\n    dest: /etc/ssl/private/svc.key\n    mode: \"0600\"\n    content: |\n" + ind + "⟦!k⟧", k=k.replace("\n", "\n" + ind)) + (t,)


@T("pkey", "cat-key-file-prompt", kind="private-key")
def _k4():
    k, t = private_key()
    return fill("$ cat /etc/⟦word⟧/tls/server.key\n⟦!k⟧\n$ ", k=k) + (t,)


GEN["k"] = lambda a: ""
GEN["jwt"] = lambda a: jwt()
V("jwt", "websocket-query-token", ["WebSocket connection to 'wss://live.⟦word⟧app.io/socket?token=⟦!jwt⟧&vsn=2.0.0' failed"], kind="jwt")
V("jwt", "kubeconfig-user-token", ["users:\n- name: ci-deployer\n  user:\n    token: ⟦!jwt⟧"], kind="jwt")
V("jwt", "mqtt-password-jwt", ["mosquitto_pub -h mqtt.⟦word⟧.lan -p 8883 -u unused -P ⟦!jwt⟧ -t devices/⟦word#2⟧/events -m '{}'"], kind="jwt", cli=True)
V("jwt", "graphql-ws-connection-init", ["{\"type\":\"connection_init\",\"payload\":{\"authToken\":\"⟦!jwt⟧\"}}"], kind="jwt")


TOKNAMES = {"aws-access-key": ["AWS_ACCESS_KEY_ID", "aws_access_key_id"], "github-token": ["GITHUB_TOKEN", "GH_TOKEN", "HOMEBREW_GITHUB_API_TOKEN"],
            "stripe-key": ["STRIPE_SECRET_KEY", "STRIPE_API_KEY"], "slack-token": ["SLACK_BOT_TOKEN", "SLACK_TOKEN"],
            "openai-key": ["OPENAI_API_KEY"], "google-api-key": ["GOOGLE_API_KEY", "GOOGLE_MAPS_KEY"], "gitlab-token": ["GITLAB_TOKEN", "GL_TOKEN"]}


def _vt(name, fmts, kinds=None):
    @T("vendor", name)
    def _f():
        v, k = vendor_token(ch(kinds) if kinds else None)
        host = "gitlab.com" if k == "gitlab-token" else "github.com"
        text, spans = fill(ch(fmts), tok=v, TOKNAME=ch(TOKNAMES[k]), ghost=host)
        return text, spans, k, {"kind": k}


GEN["tok"] = lambda a: ""
_vt("fish-universal-variables", ["# This file contains fish universal variable definitions.\nSETUVAR --export ⟦TOKNAME⟧:⟦!tok⟧\nSETUVAR fish_greeting:"])
_vt("direnv-envrc", ["# .envrc\nexport ⟦TOKNAME⟧=⟦!tok⟧\nlayout python3"])
_vt("windows-setx", ["C:\\Users\\⟦user⟧> setx ⟦TOKNAME⟧ \"⟦!tok⟧\"\n\nSUCCESS: Specified value was saved."])
_vt("launchctl-setenv", ["launchctl setenv ⟦TOKNAME⟧ ⟦!tok⟧"])
_vt("zsh-extended-history-export", [": ⟦epoch⟧:0;export ⟦TOKNAME⟧=⟦!tok⟧"])
_vt("git-credential-store-line", ["https://⟦user⟧:⟦!tok⟧@⟦ghost⟧"], kinds=["github-token", "gitlab-token"])
GEN["TOKNAME"] = lambda a: ch(["API_TOKEN", "CI_TOKEN", "SERVICE_KEY", "AUTH_TOKEN", "DEPLOY_KEY"])


# ===========================================================================
# negatives: password look-alikes (placeholders, references, hashes, policy, names)
# ===========================================================================

def NP(name, variants, **kw):
    V("neg-pw", name, variants, **kw)


GEN["shadow"] = lambda a: crypt_hash(a or None)
GEN["b64nopad"] = lambda a: b64(int(a or 24), pad=False)
GEN["hexlines"] = lambda a: "\n".join("          " + hx(80) for _ in range(int(a or 4)))

NP("env-ref-cli-password", [
    "mysql -h ⟦host⟧ -u ⟦user⟧ --password=\"${DB_PASS}\" ⟦db⟧ < migrate.sql",
    "sshpass -p \"$SSH_PASS\" rsync -a ./dist/ ⟦user⟧@web01:/var/www/",
    "az vm create -g rg-⟦word⟧ -n vm1 --admin-password \"$(cat /run/secrets/admin_pw)\"",
    "PGPASSWORD=\"$(vault kv get -field=password secret/⟦word⟧/db)\" psql -h ⟦host⟧ -U ⟦user⟧",
    "restic -r /srv/restic --password-file /etc/restic/pw.txt backup /home",
    "jarsigner -storepass:env KEYSTORE_PASS -keystore release.jks app.apk ⟦word⟧"], cli=True)
NP("helm-template-expression", [
    "  password: {{ .Values.auth.password | b64enc | quote }}",
    "  {{- $pw := required \"auth.rootPassword is required\" .Values.auth.rootPassword }}",
    "        - name: DB_PASSWORD\n          value: {{ include \"⟦word⟧.dbPassword\" . | quote }}"])
NP("group-vars-inline-vault", ["db_password: !vault |\n          $ANSIBLE_VAULT;1.1;AES256\n⟦hexlines:4⟧"])
NP("vault-agent-template", [
    "{{ with secret \"kv/data/⟦word⟧/db\" }}\nDB_PASSWORD={{ .Data.data.password }}\n{{ end }}",
    "template {\n  destination = \"/etc/⟦word⟧/db.env\"\n  contents = \"{{ with secret \\\"database/creds/ro\\\" }}PASS={{ .Data.password }}{{ end }}\"\n}"])
NP("cfn-dynamic-reference", [
    "      MasterUserPassword: '{{resolve:secretsmanager:prod/⟦word⟧/db:SecretString:password}}'",
    "      Password: '{{resolve:ssm-secure:/⟦word⟧/smtp/password:3}}'"])
NP("docker-secret-file-ref", ["      MYSQL_PASSWORD_FILE: /run/secrets/db_password", "POSTGRES_PASSWORD_FILE=/run/secrets/pg_pw",
                              "      - source: ⟦word⟧_admin_password\n        target: /run/secrets/admin_password"])
NP("jasypt-enc-properties", ["spring.datasource.password=ENC(⟦b64:48⟧)", "mail.smtp.password = ENC(⟦b64:32⟧)"])
NP("sops-dotenv", ["DB_PASSWORD=ENC[AES256_GCM,data:⟦b64:12⟧,iv:⟦b64:32⟧,tag:⟦b64:16⟧,type:str]\nsops_version=3.8.1\nsops_lastmodified=⟦ts⟧Z"])
NP("masked-audit-cli", [
    "type=EXECVE msg=audit(⟦epoch⟧.⟦n:100-999⟧:⟦n:1000-9999⟧): argc=5 a0=\"mysql\" a1=\"-u\" a2=\"root\" a3=\"-p********\" a4=\"⟦db⟧\"",
    "⟦ts⟧Z sudo: ⟦user⟧ : TTY=pts/0 ; PWD=/home/⟦user⟧ ; USER=root ; COMMAND=/usr/bin/sshpass -p ******** ssh backup",
    "[⟦ts⟧] Running: pg_dump -h ⟦host⟧ -U ⟦user⟧ (PGPASSWORD=[MASKED])",
    "> docker login -u ⟦user⟧ -p *** harbor.⟦word⟧.lan"])
NP("usage-synopsis-password-arg", [
    "Usage: ⟦word⟧ctl login [--user USER] [--password PASSWORD] [--insecure]",
    "  -P, --password=<password>   password to use when connecting (default: prompt)",
    "OPTIONS\n       --passwd-on-stdin\n              Read password from standard input"])
NP("changeme-default", [
    "admin_password: changeme  # CHANGE ME before deploying",
    "DEFAULT_ADMIN_PASSWORD=changeme", "password = \"password\"  # placeholder, overridden in prod",
    "ROOT_PASSWORD=changeit", "  password: secret   # docker-compose dev only"], amb=True)
NP("vendor-default-credentials-doc", [
    "Default login after reset: admin / admin (you will be asked to change it).",
    "The factory default PIN of the keypad is 1234; change it during installation.",
    "Log in with user `pi` and password `raspberry`, then run passwd."], amb=True)
NP("password-policy-prose-i18n", [
    "Passwords must be at least ⟦n:10-16⟧ characters long and contain a digit and a symbol.",
    "Das Passwort muss mindestens ⟦n:10-16⟧ Zeichen lang sein und darf nicht dem Benutzernamen entsprechen.",
    "La contraseña debe tener al menos ⟦n:8-14⟧ caracteres, una mayúscula y un número.",
    "Le mot de passe doit comporter au moins ⟦n:10-14⟧ caractères et expire tous les 90 jours.",
    "Senha deve ter no mínimo ⟦n:8-12⟧ caracteres; não reutilize as últimas 5 senhas.",
    "Пароль должен содержать не менее ⟦n:8-12⟧ символов и меняться каждые 90 дней."])
NP("ldap-ppolicy-ldif", ["dn: cn=default,ou=policies,dc=⟦word⟧,dc=lan\nobjectClass: pwdPolicy\npwdAttribute: userPassword\npwdMinLength: ⟦n:8-16⟧\npwdMaxAge: 7776000\npwdInHistory: 5\npwdLockout: TRUE"])
NP("windows-net-accounts", ["Force user logoff how long after time expires?:       Never\nMinimum password age (days):                          1\nMaximum password age (days):                          ⟦n:30-90⟧\nMinimum password length:                              ⟦n:8-14⟧\nLength of password history maintained:                24\nLockout threshold:                                    ⟦n:3-10⟧"])
NP("shadow-sha512-entries", ["⟦user⟧:⟦shadow:sha512⟧:19⟦n:100-999⟧:0:99999:7:::", "⟦user⟧:⟦shadow:yescrypt⟧:19⟦n:100-999⟧:0:99999:7:::\n⟦user#2⟧:!*:19⟦n:100-999⟧::::::"])
NP("htpasswd-file-lines", ["⟦user⟧:⟦shadow:apr1⟧\n⟦user#2⟧:⟦shadow:bcrypt⟧", "# generated by htpasswd -B\n⟦user⟧:⟦shadow:bcrypt⟧"])
NP("argon2-db-dump", ["INSERT INTO users (id, email, password_hash) VALUES (⟦n:1-9999⟧, '⟦email0⟧', '⟦shadow:argon2id⟧');"])
NP("laravel-seeder-bcrypt", ["User::create([\n    'name' => '⟦person⟧',\n    'email' => '⟦email0⟧',\n    'password' => '⟦shadow:bcrypt⟧',\n]);"])
NP("grub-pbkdf2-password", ["set superusers=\"root\"\npassword_pbkdf2 root grub.pbkdf2.sha512.10000.⟦HEX:128⟧.⟦HEX:128#2⟧"])
NP("ldif-ssha-userpassword", ["dn: uid=⟦user⟧,ou=people,dc=⟦word⟧,dc=lan\nuserPassword: ⟦shadow:ssha⟧", "userPassword: {CRYPT}⟦shadow:sha512⟧"])
NP("password-named-settings", [
    "password_min_length = ⟦n:8-16⟧\npassword_max_age_days = 90", "PASSWORD_EXPIRY_DAYS=⟦n:30-180⟧",
    "password_reset_url: https://id.⟦word⟧.lan/reset", "passwordless: enabled\nshow_password_toggle: true",
    "login_form:\n  password_field: \"password\"\n  username_field: \"login\"",
    "PASSWORD_HASHERS = [\"django.contrib.auth.hashers.Argon2PasswordHasher\"]", "max_password_attempts: ⟦n:3-10⟧",
    "password_encryption = scram-sha-256", "PasswordAuthentication no\nPermitRootLogin prohibit-password"])
NP("mysql-access-denied", ["⟦ts⟧ mysql-backup: ERROR 1045 (28000): Access denied for user '⟦user⟧'@'⟦word⟧-cron' (using password: YES)",
                           "FATAL:  password authentication failed for user \"⟦user⟧\"",
                           "Login failed for user '⟦user⟧'. Reason: Password did not match that for the login provided. [CLIENT: <local machine>]"])
NP("ssh-debug-auth-methods", ["debug1: Authentications that can continue: publickey,password,keyboard-interactive\ndebug1: Next authentication method: password",
                              "⟦user⟧@⟦word⟧-jump's password: \nPermission denied, please try again."])
NP("git-credential-helper-config", ["[credential]\n\thelper = osxkeychain\n[credential \"https://git.⟦word⟧.lan\"]\n\tusername = ⟦user⟧",
                                    "git config --global credential.helper 'cache --timeout=3600'"])
NP("pass-ls-tree", ["Password Store\n├── ⟦word⟧\n│   ├── github\n│   └── ⟦word#2⟧-vpn\n└── email\n    └── work"])
NP("op-item-get-concealed", ["ID:          ⟦lower:26⟧\nTitle:       ⟦Word⟧ VPN\nVault:       Private\nFields:\n  username:    ⟦user⟧\n  password:    [use 'op item get ⟦lower:26#2⟧ --reveal' to reveal]"])
NP("keepassxc-show-protected", ["Title: ⟦Word⟧ router\nUserName: ⟦user⟧\nPassword: PROTECTED\nURL: https://router.⟦word⟧.lan\nNotes: rotated ⟦date⟧"])
NP("kubectl-describe-secret-bytes", ["Name:         ⟦word⟧-db-credentials\nNamespace:    ⟦word#2⟧\nType:  Opaque\n\nData\n====\npassword:  ⟦n:8-40⟧ bytes\nusername:  ⟦n:4-12⟧ bytes"])
NP("gh-secret-list", ["NAME                 UPDATED\nDB_PASSWORD          about 2 months ago\nDEPLOY_TOKEN         3 days ago\nSIGNING_KEY          ⟦date⟧"])
NP("gettext-po-password-strings", ["msgid \"Forgot your password?\"\nmsgstr \"Passwort vergessen?\"", "msgid \"Password\"\nmsgstr \"Contraseña\"",
                                   "msgid \"Change password\"\nmsgstr \"Changer le mot de passe\"", "msgid \"Wrong password\"\nmsgstr \"Неверный пароль\""])
NP("html-password-input", ["<input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" minlength=\"⟦n:8-14⟧\" required>",
                           "<label for=\"new-password\">Kata sandi baru</label>\n<input type=\"password\" id=\"new-password\" autocomplete=\"new-password\">"])
NP("code-password-identifiers", ["if (!validatePassword(password)) {\n    throw new WeakPasswordError(minLength);\n}",
                                 "def check_password(raw_password: str, encoded: str) -> bool:",
                                 "return passwordEncoder.matches(rawPassword, user.getPasswordHash());",
                                 "let password_hash = argon2.hash_password(password.as_bytes(), &salt)?;"])
NP("rails-filtered-parameters", ["Parameters: {\"user\"=>{\"login\"=>\"⟦user⟧\", \"password\"=>\"[FILTERED]\"}, \"commit\"=>\"Log in\"}",
                                 "⟦ts⟧ [info] login attempt user=⟦user⟧ password='[REDACTED]' result=ok",
                                 "{\"event\": \"auth\", \"password\": \"********\", \"user\": \"⟦user⟧\"}"])
NP("masked-url-credentials", ["DATABASE_URL=postgres://⟦user⟧:****@⟦host⟧:5432/⟦db⟧", "connected to amqp://⟦user⟧:xxxxx@mq.⟦word⟧.lan:5672//",
                              "mongodb+srv://⟦user⟧:<password>@cluster0.⟦lower:5⟧.mongodb.net/?retryWrites=true",
                              "url: https://⟦user⟧:${GIT_PASSWORD}@git.⟦word⟧.lan/⟦word#2⟧.git"])
NP("pin-related-settings", ["pin_attempts_remaining: ⟦n:1-3⟧\npin_length: 6", "SIM PIN required (3 attempts left)",
                            "mmcli -i 0 --pin=\"$SIM_PIN\"", "PIN: ****  (hidden)"])
NP("sql-password-expire", ["ALTER USER ⟦user⟧ PASSWORD EXPIRE INTERVAL 90 DAY;", "ALTER ROLE ⟦user⟧ VALID UNTIL '2025-01-01';",
                           "ALTER LOGIN ⟦user⟧ WITH CHECK_POLICY = ON, CHECK_EXPIRATION = ON;"])
NP("password-commit-messages", ["⟦hex:7⟧ fix(auth): don't log password on failed login (#⟦n:100-9999⟧)",
                                "⟦hex:7⟧ chore: rotate staging db password via vault",
                                "⟦hex:7⟧ feat: add password strength meter to signup"])
NP("script-prompts-for-password", ["read -r -s -p \"Password: \" PASS; echo", "pw = getpass.getpass(\"Vault password: \")",
                                   "systemd-ask-password \"Passphrase for /dev/sda2:\"", "$pw = Read-Host -AsSecureString \"Enter password\""])
NP("passphrase-file-and-empty", ["gpg --batch --pinentry-mode loopback --passphrase-file /root/.gnupg/pp.txt -d secrets.gpg",
                                 "ssh-keygen -t ed25519 -N \"\" -f ~/.ssh/id_deploy", "Enter passphrase (empty for no passphrase): "])
NP("wordlist-path-flags", ["hydra -L users.txt -P /usr/share/wordlists/rockyou.txt ssh://⟦word⟧-lab",
                           "john --wordlist=/usr/share/john/password.lst hashes.txt", "hashcat -m 1800 -a 0 shadow.txt passwords/top10k.txt"])
NP("prompting-flags-new-tools", ["clickhouse-client --user ⟦user⟧ --ask-password", "redis-cli -h ⟦host⟧ --askpass",
                                 "mysqldump -u root -p ⟦db⟧ > ⟦db⟧.sql", "ipmitool -I lanplus -H ⟦host⟧ -U ADMIN -a chassis status",
                                 "cypher-shell -u neo4j"], cli=True)

# ===========================================================================
# negatives: digests, ids, versions, system output (secret look-alikes)
# ===========================================================================


def NS(name, variants, **kw):
    V("neg-secret", name, variants, **kw)


def ksuid():
    return rs(B62, 27)


def ulid():
    return rs("0123456789ABCDEFGHJKMNPQRSTVWXYZ", 26)


def nolu(n):
    while True:
        d = ch("123456789") + rs(DIG, n - 1)
        if not luhn_ok(d):
            return d


def mac():
    return ":".join(hx(2) for _ in range(6))


GEN.update({"ksuid": lambda a: ksuid(), "ulid": lambda a: ulid(), "nolu": lambda a: nolu(int(a or 19)), "mac": lambda a: mac(),
            "semver": lambda a: f"{ri(0, 9)}.{ri(0, 30)}.{ri(0, 20)}"})

NS("dockerfile-add-checksum", ["ADD --checksum=sha256:⟦hex:64⟧ https://github.com/⟦word⟧/⟦word#2⟧/releases/download/v⟦semver⟧/⟦word#2⟧_linux_amd64.tar.gz /tmp/"])
NS("bsd-style-checksum", ["SHA256 (⟦word⟧-⟦semver⟧.tar.gz) = ⟦hex:64⟧", "MD5 (⟦word⟧.iso) = ⟦hex:32⟧\nSHA1 (⟦word⟧.iso) = ⟦hex:40⟧"])
NS("apt-release-file-hashes", ["SHA256:\n ⟦hex:64⟧ ⟦n:1000-999999⟧ main/binary-amd64/Packages\n ⟦hex:64#2⟧ ⟦n:1000-99999⟧ main/binary-amd64/Packages.xz"])
NS("homebrew-formula-sha256", ["  url \"https://github.com/⟦word⟧/⟦word#2⟧/archive/refs/tags/v⟦semver⟧.tar.gz\"\n  sha256 \"⟦hex:64⟧\"\n  license \"MIT\""])
NS("conda-explicit-md5", ["https://conda.anaconda.org/conda-forge/linux-64/⟦word⟧-⟦semver⟧-py311h⟦hex:7⟧_0.conda#⟦hex:32⟧"])
NS("terraform-lock-hashes", ["provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"5.⟦n:1-60⟧.0\"\n  hashes = [\n    \"h1:⟦b64:32⟧\",\n    \"zh:⟦hex:64⟧\",\n  ]\n}"])
NS("git-reflog-fsck-rebase", ["⟦hex:7⟧ HEAD@{0}: commit: bump ⟦word⟧ to ⟦semver⟧\n⟦hex:7#2⟧ HEAD@{1}: checkout: moving from main to fix/⟦word#2⟧",
                              "Checking object directories: 100% (256/256), done.\ndangling blob ⟦hex:40⟧\ndangling commit ⟦hex:40#2⟧",
                              "pick ⟦hex:7⟧ add ⟦word⟧ parser\nsquash ⟦hex:7#2⟧ fix typo\n# Rebase ⟦hex:7#3⟧..⟦hex:7#4⟧ onto ⟦hex:7#3⟧ (2 commands)"])
NS("blkid-output", ["/dev/nvme0n1p2: UUID=\"⟦uuid⟧\" BLOCK_SIZE=\"4096\" TYPE=\"ext4\" PARTUUID=\"⟦uuid#2⟧\"",
                    "UUID=⟦uuid⟧ /boot/efi vfat umask=0077 0 1"])
NS("ksuid-ulid-event-log", ["⟦ts⟧Z event_id=⟦ksuid⟧ type=order.created order=⟦ulid⟧", "{\"id\": \"⟦ulid⟧\", \"parent\": \"⟦ulid#2⟧\", \"kind\": \"span\"}"])
NS("datadog-trace-decimal-ids", ["⟦ts⟧ INFO [dd.trace_id=⟦nolu:19⟧ dd.span_id=⟦nolu:18⟧] GET /health 200", "trace_id: ⟦nolu:19⟧\nspan_id: ⟦nolu:19#2⟧"])
NS("aws-xray-trace-header", ["X-Amzn-Trace-Id: Root=1-⟦hex:8⟧-⟦hex:24⟧;Parent=⟦hex:16⟧;Sampled=1"])
NS("nginx-request-id-log", ["⟦ts⟧ upstream=app:8080 request_id=⟦hex:32⟧ status=200 rt=0.0⟦n:10-99⟧ uct=0.001"])
NS("docker-ps-output", ["CONTAINER ID   IMAGE             COMMAND                  CREATED       STATUS       NAMES\n⟦hex:12⟧   ⟦word⟧:⟦semver⟧     \"docker-entrypoint.s…\"   2 hours ago   Up 2 hours   ⟦word⟧-1"])
NS("cgroup-paths-container-ids", ["0::/system.slice/docker-⟦hex:64⟧.scope", "/kubepods/burstable/pod⟦uuid⟧/⟦hex:64⟧"])
NS("bazel-action-digests", ["INFO: From Compiling src/⟦word⟧.cc:\nDEBUG: action digest ⟦hex:64⟧/⟦n:1000-99999⟧ cache hit"])
NS("semver-range-manifest", ["\"dependencies\": {\n  \"⟦word⟧\": \"^⟦semver⟧\",\n  \"⟦word#2⟧\": \">=2.0.0 <3\",\n  \"lodash\": \"~4.17.21\",\n  \"⟦word#3⟧\": \"1.x || >=2.5.0 || 5.0.0 - 7.2.3\"\n}"])
NS("timestamps-many-formats", ["Date: Mon, 15 Apr 2024 10:22:31 GMT\nLast-Modified: ⟦ts⟧.⟦n:100000-999999⟧+05:30",
                               "[15/Apr/2024:10:22:31 +0000] 20240415T102231Z ⟦epoch⟧⟦n:100-999⟧"])
NS("systemd-analyze-blame", ["  ⟦n:1-9⟧.⟦n:100-999⟧s NetworkManager-wait-online.service\n  1.⟦n:100-999⟧s ⟦word⟧.service\n   ⟦n:100-999⟧ms systemd-journald.service"])
NS("du-sh-output", ["4.0K\t./config\n⟦n:1-9⟧.⟦n:1-9⟧G\t./data\n⟦n:10-999⟧M\t./logs"])
NS("compose-ports-mapping", ["    ports:\n      - \"8080:80\"\n      - \"⟦n:5000-9000⟧:⟦n:5000-9000⟧/udp\"\n    expose:\n      - \"9100\""])
NS("ip-link-show", ["2: enp3s0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\n    link/ether ⟦mac⟧ brd ff:ff:ff:ff:ff:ff"])
NS("xxd-output", ["00000000: 7f45 4c46 0201 0100 0000 0000 0000 0000  .ELF............\n00000010: 0300 3e00 0100 0000 ⟦hex:4⟧ 0000 0000 0000  ..>.............",
                  "00000000  ⟦hex:2⟧ ⟦hex:2#2⟧ 4b 03 14 00 00 00  08 00 ⟦hex:2#3⟧ ⟦hex:2#4⟧ 5a 58 00 00  |..K.........ZX..|"])
NS("influx-line-protocol", ["cpu,host=⟦word⟧,region=eu-west usage_user=⟦n:1-99⟧.⟦n:1-9⟧,usage_system=⟦n:1-9⟧.⟦n:1-9⟧ ⟦epoch⟧000000000"])
NS("statsd-lines", ["⟦word⟧.requests:1|c\n⟦word⟧.latency:⟦n:10-999⟧|ms|@0.1\n⟦word⟧.queue.depth:⟦n:0-500⟧|g"])
NS("top-process-rows", ["  ⟦pid⟧ ⟦user⟧  20   0 ⟦n:100000-999999⟧  ⟦n:10000-99999⟧  ⟦n:1000-9999⟧ S   0.⟦n:1-9⟧   1.⟦n:1-9⟧   0:04.⟦n:10-99⟧ ⟦word⟧"])
NS("lsof-output", ["COMMAND    PID  USER   FD   TYPE DEVICE SIZE/OFF    NODE NAME\n⟦word⟧  ⟦pid⟧ ⟦user⟧  txt    REG  259,2  ⟦n:10000-999999⟧ ⟦n:100000-999999⟧ /usr/bin/⟦word⟧"])
NS("docker-stats-output", ["CONTAINER ID   NAME       CPU %     MEM USAGE / LIMIT     MEM %     NET I/O           BLOCK I/O\n⟦hex:12⟧   ⟦word⟧-1   0.⟦n:10-99⟧%     ⟦n:10-999⟧MiB / 7.6GiB   1.⟦n:10-99⟧%     ⟦n:1-99⟧kB / ⟦n:1-99⟧kB   0B / 0B"])
NS("secret-word-config-nonsecret", [
    "secret_name: ⟦word⟧-db-credentials", "token_ttl: 3600\ntoken_type: Bearer", "api_key_header: X-⟦Word⟧-Key\napi_key_prefix_length: 8",
    "key_id: ⟦n:1-40⟧\nkey_algorithm: ES256", "TOKEN_EXPIRY=15m", "signing_key_path: /etc/⟦word⟧/keys/sign.pem",
    "      secretName: tls-⟦word⟧", "auth_method: token\ntoken_path: /var/run/secrets/kubernetes.io/serviceaccount/token",
    "KEY_ROTATION_DAYS=30", "credential_source = Environment", "salt_rounds: 12", "signature_version = s3v4",
    "secretsmanager_secret_id: prod/⟦word⟧/api"])
NS("llm-token-usage", ["\"usage\": {\"prompt_tokens\": ⟦n:10-4000⟧, \"completion_tokens\": ⟦n:10-900⟧, \"total_tokens\": ⟦n:1000-4900⟧}",
                       "max_tokens=4096 temperature=0.2 tokenizer=cl100k_base"])
NS("redis-cli-keys-cache", ["cache-a:6379> KEYS cache:*\n1) \"cache:user:⟦n:100-9999⟧:profile\"\n2) \"ratelimit:⟦word⟧:60\"\n3) \"cache:token_blacklist:size\""])
NS("i18n-keys-json", ["{\n  \"auth.password.label\": \"Password\",\n  \"auth.token.expired\": \"Your session token has expired\",\n  \"auth.secret.hint\": \"Ask your admin\"\n}"])
NS("sql-key-ddl", ["  PRIMARY KEY (id),\n  KEY idx_token_hash (token_hash),\n  CONSTRAINT fk_api_key FOREIGN KEY (api_key_id) REFERENCES api_keys (id)"])
NS("vscode-keybindings", ["[\n  { \"key\": \"ctrl+shift+p\", \"command\": \"workbench.action.showCommands\" },\n  { \"key\": \"ctrl+k ctrl+s\", \"command\": \"workbench.action.openGlobalKeybindings\" }\n]"])
NS("k8s-resourceversion-uid", ["\"metadata\": {\"name\": \"⟦word⟧-7d9f\", \"uid\": \"⟦uuid⟧\", \"resourceVersion\": \"⟦n:1000000-9999999⟧\", \"generation\": ⟦n:1-9⟧}"])
NS("binary-data-uris", ["src: url(data:font/woff2;base64,d09GMgABAAAAA⟦b64:45⟧) format(\"woff2\");",
                        "binaryData:\n  logo.png: iVBORw0KGgoAAAANSUhEUgAA⟦b64:60⟧"])
NS("gpg-recv-keys", ["gpg --keyserver hkps://keys.openpgp.org --recv-keys ⟦HEX:40⟧", "pub   rsa4096/⟦HEX:16⟧ 2021-0⟦n:1-9⟧-1⟦n:0-9⟧ [SC]"])
NS("advisory-ids", ["⟦word⟧  <⟦semver⟧  Severity: high  CVE-2024-⟦n:10000-49999⟧  GHSA-⟦lower:4⟧-⟦lower:4#2⟧-⟦lower:4#3⟧"])
NS("gerrit-change-id", ["Fix race in ⟦word⟧ cache\n\nChange-Id: I⟦hex:40⟧\nSigned-off-by: ⟦person⟧ <⟦email0⟧>"])
NS("codesign-display", ["Executable=/Applications/⟦Word⟧.app/Contents/MacOS/⟦Word⟧\nIdentifier=com.⟦word⟧.app\nCDHash=⟦hex:40⟧\nTeamIdentifier=⟦UPS:10⟧"])
NS("uuid-in-sql-output", [" id                                   | status\n--------------------------------------+---------\n ⟦uuid⟧ | active\n ⟦uuid#2⟧ | pending"])
NS("artifact-build-ids", ["Build ID: ⟦hex:40⟧\nBuild number: ⟦n:100-9999⟧\nArtifact: ⟦word⟧-⟦semver⟧+build.⟦n:100-999⟧.g⟦hex:7⟧.tar.zst"])

# ===========================================================================
# negatives: phone look-alikes
# ===========================================================================


def NN(name, variants, **kw):
    V("neg-phone", name, variants, **kw)


NN("dates-spaced-digits", ["Report period: 2024 0⟦n:1-9⟧ 1⟦n:0-9⟧ – 2024 0⟦n:1-9⟧ 2⟦n:0-8⟧", "snapshot 2024⟦n:10-12⟧⟦n:10-28⟧ ⟦hms⟧ completed",
                           "app.log.2024-0⟦n:1-9⟧-1⟦n:0-9⟧-0⟦n:1-9⟧.gz", "Fecha: 1⟦n:0-9⟧ 0⟦n:1-9⟧ 2024 10 22"])
NN("part-numbers", ["P/N 0-⟦n:1000-9999⟧-⟦n:100-999⟧-⟦n:10-99⟧ rev C", "Mfr part ⟦n:10-99⟧-⟦n:1000-9999⟧-⟦n:100-999⟧, qty 250",
                    "Ersatzteil-Nr. ⟦n:10-99⟧ ⟦n:100-999⟧ ⟦n:100-999⟧ ⟦n:10-99⟧", "Model ⟦n:1000-9999⟧-⟦n:100-999⟧-⟦n:10-99⟧"])
NN("version-ish-numbers", ["OS Version: 10.0.19045.⟦n:1000-4999⟧ Build 19045", "Linux ⟦word⟧ 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)",
                           "apache2 2.4.57-2~deb12u1", "firmware 3.10.248 (build 20240315.1043)"])
NN("amounts-i18n", ["Total: ₹12,34,⟦n:100-999⟧.00", "Rp ⟦n:1-9⟧.⟦n:100-999⟧.000", "R$ 1.234.⟦n:100-999⟧,89", "Summe: 1 234 ⟦n:100-999⟧,89 €",
                    "¥ 1,234,⟦n:100-999⟧", "₺ 12.345,67", "₦ 1,250,000.00", "৳ ⟦n:10-99⟧,⟦n:10-99⟧,⟦n:100-999⟧", "MXN $ 45,⟦n:100-999⟧.50"])
NN("bibtex-isbn-issn", ["@book{⟦word⟧2019,\n  isbn = {978-⟦n:0-9⟧-⟦n:100-999⟧-⟦n:10000-99999⟧-⟦n:0-9⟧},\n  pages = {⟦n:100-200⟧--⟦n:201-300⟧},\n  year = {2019}\n}",
                        "@article{x,\n  issn = {⟦n:1000-9999⟧-⟦n:100-999⟧X},\n  doi = {10.⟦n:1000-9999⟧/j.⟦word⟧.2023.0⟦n:1-9⟧.00⟦n:1-9⟧},\n  volume = {⟦n:1-99⟧}\n}"])
NN("geojson-coordinates", ["{\"type\": \"Point\", \"coordinates\": [1⟦n:0-9⟧⟦n:0-9⟧.⟦n:1000-9999⟧, -⟦n:1-9⟧.⟦n:1000-9999⟧]}",
                           "\"coordinates\": [[⟦n:10-120⟧.⟦n:100000-999999⟧, ⟦n:10-60⟧.⟦n:100000-999999⟧], [⟦n:10-120⟧.⟦n:100000-999999⟧, ⟦n:10-60⟧.⟦n:100000-999999⟧]]"])
NN("redis-info-stats", ["# Stats\ntotal_connections_received:⟦n:1000-99999⟧\ntotal_commands_processed:⟦n:100000000-999999999⟧\ninstantaneous_ops_per_sec:⟦n:10-9999⟧\ntotal_net_input_bytes:⟦n:1000000000-9999999999⟧"])
NN("mysql-show-status", ["| Bytes_received            | ⟦n:1000000000-9999999999⟧ |\n| Bytes_sent                | ⟦n:1000000000-9999999999⟧ |\n| Questions                 | ⟦n:10000000-99999999⟧     |"])
NN("phone-named-nonvalues", ["phone_verified: true\nphone_country_code: \"⟦n:1-99⟧\"", "phone: null", "PHONE_REGEX = r\"^\\+?[1-9]\\d{1,14}$\"",
                             "phone: \"[REDACTED]\"", "phone_ext: ⟦n:100-999⟧", "phone_number_length: 10", "\"phone\": \"+⟦n:1-99⟧ XXX XXX XX⟦n:10-99⟧\"",
                             "mobile_last4: \"⟦n:1000-9999⟧\"", "tel: ${CONTACT_PHONE}"])
NN("numpy-array-repr", ["array([[ ⟦n:1000000-9999999⟧,  ⟦n:1000000-9999999⟧],\n       [ ⟦n:1000000-9999999⟧,  ⟦n:1000000-9999999⟧]])"])
NN("metar-weather-report", ["METAR ⟦UPS:4⟧ ⟦n:10-28⟧⟦n:10-23⟧⟦n:10-59⟧Z ⟦n:100-360⟧⟦n:10-25⟧KT 9999 FEW035 1⟦n:0-9⟧/0⟦n:1-9⟧ Q10⟦n:10-30⟧ NOSIG="])
NN("flight-itinerary-codes", ["E-TICKET ⟦n:100-299⟧ ⟦nolu:10⟧\nPNR ⟦UPS:6⟧  Flight ⟦UPS:2⟧ 0⟦n:100-999⟧  dep 23:45  seat ⟦n:10-40⟧K"])
NN("document-reference-numbers", ["Patent US 10,⟦n:100-999⟧,⟦n:100-999⟧ B2; EP 3 ⟦n:100-999⟧ ⟦n:100-999⟧ A1; WO 2023/⟦n:100000-999999⟧",
                                  "Certified to DIN EN ISO 9001:2015, Reg.-Nr. ⟦n:10000-99999⟧ QM15"])
NN("hl7-obx-lab-values", ["OBX|1|NM|2345-7^Glucose^LN||⟦n:70-140⟧|mg/dL|70-99|N|||F|||2024⟦n:10-12⟧⟦n:10-28⟧⟦hms⟧"])
NN("cron-schedules", ["0 */6 * * 1-5 /usr/local/bin/sync", "30 2 1,15 * * /opt/reports/run.sh --month 2024-0⟦n:1-9⟧"])
NN("db-row-counts", ["COPY ⟦n:1000000-9999999⟧", "INSERT 0 ⟦n:100000-999999⟧", "(⟦n:1000000-9999999⟧ rows)", "Query OK, ⟦n:100000-9999999⟧ rows affected (12.⟦n:10-99⟧ sec)"])
NN("sar-network-output", ["10:⟦n:10-59⟧:01 AM     IFACE   rxpck/s   txpck/s    rxkB/s    txkB/s\n10:⟦n:10-59⟧:01 AM    enp3s0   ⟦n:1000-9999⟧.⟦n:10-99⟧   ⟦n:1000-9999⟧.⟦n:10-99⟧  ⟦n:100-999⟧.⟦n:10-99⟧  ⟦n:100-999⟧.⟦n:10-99⟧"])
NN("bank-statement-lines", ["1⟦n:0-9⟧.03.2024  Kartenzahlung ⟦Word⟧     -⟦n:10-99⟧,⟦n:10-99⟧    1.⟦n:100-999⟧,⟦n:10-99⟧", "03/1⟦n:0-9⟧  POS PURCHASE ⟦Word⟧  ⟦n:10-99⟧.⟦n:10-99⟧  ⟦n:1000-9999⟧.⟦n:10-99⟧"])
NN("onewire-sensor-serials", ["28-0316a2⟦hex:6⟧: t=⟦n:18000-26000⟧", "sensor 28-⟦hex:12⟧ crc=⟦hex:2⟧ YES"])
NN("servicenow-ticket-numbers", ["INC00⟦n:10000-99999⟧ assigned to ⟦user⟧ (P2)", "CHG00⟦n:10000-99999⟧ / RITM00⟦n:10000-99999⟧ approved"])
NN("amazon-style-order-ids", ["Order #⟦n:100-999⟧-⟦n:1000000-9999999⟧-⟦n:1000000-9999999⟧ shipped", "Rechnung Nr. 2024-000⟦n:100-999⟧ vom ⟦date⟧"])
NN("tracking-numbers-regional", ["India Post: EE⟦n:100000000-999999999⟧IN", "UPS 1Z⟦UPS:3⟧⟦n:100-999⟧⟦n:10000000-99999999⟧", "JNE resi ⟦nolu:16⟧",
                                 "China Post: LX⟦n:100000000-999999999⟧CN"])
NN("timezone-offsets", ["TZ=Asia/Kolkata (UTC+05:30), Asia/Kathmandu (UTC+05:45)", "utc_offset: \"+09:00\"\nutc_offset_seconds: 32400"])
NN("df-inodes-output", ["Filesystem       Inodes  IUsed    IFree IUse% Mounted on\n/dev/nvme0n1p2 ⟦n:1000000-9999999⟧ ⟦n:100000-999999⟧ ⟦n:1000000-9999999⟧    ⟦n:1-30⟧% /"])
NN("ps-eo-numeric", ["  PID   RSS    VSZ COMMAND\n⟦pid⟧ ⟦n:10000-999999⟧ ⟦n:1000000-9999999⟧ ⟦word⟧"])
NN("sports-and-game-stats", ["FT: ⟦n:0-5⟧-⟦n:0-5⟧ (HT ⟦n:0-3⟧-⟦n:0-3⟧)  attendance ⟦n:10000-90000⟧", "level ⟦n:1-99⟧  xp ⟦n:1000000-9999999⟧  rank #⟦n:1000-99999⟧"])

# ===========================================================================
# negatives: other PII look-alikes
# ===========================================================================


def NI(name, variants, **kw):
    V("neg-pii", name, variants, **kw)


GEN["badcard"] = lambda a: card_fmt(card(valid=False)[0])
GEN["badiban"] = lambda a: iban_fmt(iban(valid=False))
GEN["badssn"] = lambda a: ssn(valid=False)
NI("luhn-invalid-order-export", ["order_id,card_number,amount\n⟦n:10000-99999⟧,⟦badcard⟧,⟦n:10-999⟧.⟦n:10-99⟧", "{\"pan\": \"⟦badcard⟧\", \"status\": \"declined\", \"reason\": \"invalid_number\"}"])
NI("iban-bad-checksum-json", ["{\"beneficiary\": \"⟦person⟧\", \"iban\": \"⟦badiban⟧\", \"error\": \"IBAN checksum invalid\"}", "IBAN: ⟦badiban⟧  ✗ Prüfziffer falsch"])
NI("ssn-like-invalid", ["employee_ref: ⟦badssn⟧", "ITIN placeholder ⟦badssn⟧ rejected by validator", "ssn: \"⟦badssn⟧\"  # invalid test value"])
NI("reserved-email-fixtures", ["users:\n  - name: ⟦person⟧\n    email: ⟦email0⟧\n  - name: ⟦person#2⟧\n    email: ⟦email0#2⟧", "From: ⟦person⟧ <⟦email0⟧>"])
NI("templated-email-fields", ["To: {{ user.email }}\nSubject: Your receipt", "MAIL_FROM=${SMTP_FROM_ADDRESS}", "body = \"Hi %(name)s, we sent a code to %(email)s\""])
NI("card-bin-last4-fields", ["{\"bin\": \"⟦n:400000-499999⟧\", \"last4\": \"⟦n:1000-9999⟧\", \"exp_month\": ⟦n:1-12⟧, \"brand\": \"visa\"}", "Card ending in ⟦n:1000-9999⟧ (exp 0⟦n:1-9⟧/2⟦n:6-9⟧)"])
NI("masked-iban-and-card", ["IBAN: DE⟦n:10-99⟧ **** **** **** **⟦n:10-99⟧ 00", "PAN 4⟦n:10000-99999⟧******⟦n:1000-9999⟧", "Konto: ****⟦n:1000-9999⟧"])
NI("at-sign-non-emails", ["icons/logo@2x.png  icons/logo@3x.png", "npm i @⟦word⟧/cli@⟦semver⟧", "git clone git@github.com:⟦word⟧/⟦word#2⟧.git",
                          "nginx@sha256:⟦hex:64⟧", "@Override\npublic String toString() {", "ssh ⟦user⟧@⟦word⟧-bastion"])

# ===========================================================================
# negatives: public keys and certificates
# ===========================================================================


def ssh_ed25519_pub():
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + rbytes(32)
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


def p256_spki():
    return pem("PUBLIC KEY", bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004") + rbytes(64))


GEN.update({"pubpem": lambda a: public_key_pem(), "certpem": lambda a: fake_cert_pem(), "sshpub": lambda a: ssh_ed25519_pub(),
            "p256pub": lambda a: p256_spki()})


def NK(name, fn):
    T("neg-key", name)(fn)


NK("jwt-public-key-env", lambda: fill("JWT_PUBLIC_KEY=\"⟦x⟧\"", x=public_key_pem().replace("\n", "\\n")))
NK("ed25519-pub-pem-config", lambda: fill("verification:\n  public_key: |\n    ⟦x⟧", x=public_key_pem().replace("\n", "\n    ")))
NK("cert-chain-in-helm", lambda: fill("tls:\n  ca.crt: |\n    ⟦x⟧", x=fake_cert_pem().replace("\n", "\n    ")))
NK("saml-metadata-x509", lambda: fill("<ds:KeyInfo><ds:X509Data><ds:X509Certificate>⟦x⟧</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
                                      x="".join(fake_cert_pem().split("\n")[1:-1])))
NK("dkim-dns-txt", lambda: fill("sel⟦n:1-9⟧._domainkey.⟦word⟧-mail.com. 3600 IN TXT \"v=DKIM1; k=ed25519; p=⟦b64:32⟧\""))
NK("ssh-keyscan-output", lambda: fill("# ⟦word⟧-git:22 SSH-2.0-OpenSSH_9.6\n⟦word⟧-git ⟦sshpub⟧"))
NK("tls-fingerprints", lambda: fill("SHA256 Fingerprint=" + ":".join(hx(2).upper() for _ in range(32)) + "\nSHA1 Fingerprint=" + ":".join(hx(2).upper() for _ in range(20))))
NK("cosign-public-key", lambda: fill("$ cat cosign.pub\n⟦p256pub⟧"))
GEN["x"] = lambda a: ""

# ===========================================================================
# negatives holding IP addresses (optional PII in the corpus policy: rows marked optional + ambiguous)
# ===========================================================================

GEN.update({"ipp": lambda a: ch([f"10.{ri(0, 255)}.{ri(0, 255)}.{ri(1, 254)}", f"172.{ri(16, 31)}.{ri(0, 255)}.{ri(1, 254)}",
                                   f"192.168.{ri(0, 255)}.{ri(1, 254)}"]),
            "ipd": lambda a: ch([f"192.0.2.{ri(1, 254)}", f"198.51.100.{ri(1, 254)}", f"203.0.113.{ri(1, 254)}"])})


def NIP(name, variants):
    V("neg-ip", name, variants, amb=True, opt=True)


NIP("ss-tlnp-output", ["State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\nLISTEN 0      4096   127.0.0.1:5432      0.0.0.0:*     users:((\"postgres\",pid=⟦pid⟧,fd=6))"])
NIP("nginx-upstream-conf", ["upstream app {\n    server ⟦ipp⟧:8080 max_fails=3 fail_timeout=30s;\n    server ⟦ipp#2⟧:8080 backup;\n}"])
NIP("ip-addr-show", ["    inet ⟦ipp⟧/24 scope global dynamic noprefixroute enp3s0\n       valid_lft 8⟦n:1000-9999⟧sec preferred_lft 8⟦n:1000-9999⟧sec"])
NIP("iptables-rules", ["-A INPUT -s ⟦ipd⟧/32 -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp --dport 22 -j DROP"])
NIP("traceroute-doc-ranges", ["traceroute to ⟦word⟧.lan (⟦ipd⟧), 30 hops max\n 1  ⟦ipp⟧  0.⟦n:100-999⟧ ms\n 2  ⟦ipd#2⟧  3.⟦n:100-999⟧ ms"])
NIP("hosts-file", ["127.0.0.1   localhost\n⟦ipp⟧  ⟦word⟧-db ⟦word⟧-db.lan\n::1         localhost ip6-localhost"])


# ===========================================================================
# engine
# ===========================================================================

CLASS_SPEC = [  # class, label, default kind, rows
    ("pw-cli", "secret", "generic-password", 150),
    ("pw-code", "secret", "generic-password", 95),
    ("pw-conf", "secret", "generic-password", 105),
    ("pw-i18n", "secret", "generic-password", 45),
    ("pw-misc", "secret", "generic-password", 55),
    ("gsecret", "secret", "generic-secret", 170),
    ("phone", "pii", "phone", 250),
    ("email", "pii", "email", 24),
    ("card", "pii", "credit-card", 25),
    ("iban", "pii", "iban", 25),
    ("ssn", "pii", "us-ssn", 22),
    ("dburl", "secret", "db-url", 24),
    ("pkey", "secret", "private-key", 12),
    ("jwt", "secret", "jwt", 14),
    ("vendor", "secret", None, 24),
    ("neg-pw", "none", "none", 420),
    ("neg-secret", "none", "none", 470),
    ("neg-phone", "none", "none", 330),
    ("neg-pii", "none", "none", 150),
    ("neg-key", "none", "none", 80),
    ("neg-ip", "none", "none", 40),
]


def norm(res):
    text, spans = res[0], [list(x) for x in res[1]]
    detail = res[2] if len(res) > 2 else None
    extra = res[3] if len(res) > 3 else {}
    return text, spans, detail, extra


def check_row(row, tpl):
    text, spans, label, kind = row["text"], row["spans"], row["label"], row["kind"]
    if label == "none" and spans:
        return "negative with spans"
    if label != "none" and not spans:
        return "positive without spans"
    last = 0
    for s, e in spans:
        if not (0 <= s < e <= len(text)) or s < last:
            return "bad span"
        v = text[s:e]
        if v != v.strip() or not v:
            return "span not trimmed"
        if not value_ok(kind, v):
            return "invalid value " + kind
        last = e
    st = stray(text, spans, label)
    if st:
        return "stray " + st
    if IPV4_RE.search(text) and not tpl["opt"]:
        return "ipv4"
    if label == "none":
        if not tpl["amb"]:
            for m in PLUSPHONE_RE.finditer(text):
                if 8 <= len(re.sub(r"\D", "", m.group(0))) <= 15:
                    return "plus-phone in negative " + m.group(0)
            v = neg_secretish(text)
            if v:
                return "secret-ish value in negative " + v
    return None


def build():
    rows, ids, stats = [], set(), collections.Counter()
    per_tpl = collections.Counter()
    for cls, label, kind, n in CLASS_SPEC:
        tpls = [t for t in TEMPLATES if t["cls"] == cls]
        assert tpls, cls
        order = tpls[:]
        R.shuffle(order)
        made, i, dead = 0, 0, set()
        while made < n:
            t = order[i % len(order)]
            i += 1
            if t["name"] in dead:
                if len(dead) == len(order):
                    raise RuntimeError(f"{cls}: all templates exhausted")
                continue
            for attempt in range(40):
                text, spans, detail, extra = norm(t["fn"]())
                render = None
                if t["cli"]:
                    text, spans, render = shell_wrap((text, spans))
                k = extra.get("kind") or t["kind"] or kind
                row = {"id": PREFIX + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12], "text": text, "label": label,
                       "kind": k if label != "none" else "none", "spans": spans, "source": SOURCE}
                sub = t["name"]
                if detail:
                    sub += ":" + detail
                elif render:
                    sub += ":" + render
                row["subkind"] = sub
                if label == "none" and t["amb"]:
                    row["ambiguous"] = True
                if t["opt"]:
                    row["optional"] = True
                err = check_row(row, t)
                if err is None and row["id"] in ids:
                    err = "duplicate"
                if err:
                    stats[(t["name"], err.split(" ")[0] + " " + err.split(" ")[1] if " " in err else err)] += 1
                    if stats.get(("_example", t["name"])) is None:
                        stats[("_example", t["name"])] = 0
                        EXAMPLES.append((t["name"], err))
                    continue
                ids.add(row["id"])
                rows.append(row)
                per_tpl[t["name"]] += 1
                made += 1
                break
            else:
                dead.add(t["name"])
                stats[("dead", t["name"])] += 1
    return rows, stats, per_tpl


EXAMPLES = []


def summarize(rows, per_tpl):
    c = collections.Counter((r["label"], r["kind"]) for r in rows)
    order = {"secret": 0, "pii": 1, "none": 2}
    lines = ["| label | kind | rows |", "|---|---|---:|"]
    for (lab, k), n in sorted(c.items(), key=lambda x: (order[x[0][0]], x[0][1])):
        opt = " (optional)" if lab == "none" and k == "none" and False else ""
        lines.append(f"| {lab} | {k}{opt} | {n} |")
    pos = sum(1 for r in rows if r["label"] != "none")
    lines.append(f"| **all** | | {len(rows)} |")
    lines.append(f"| positives | | {pos} ({100.0 * pos / len(rows):.1f}%) |")
    lines.append(f"| negatives marked `ambiguous` | | {sum(1 for r in rows if r.get('ambiguous'))} |")
    lines.append(f"| negatives marked `optional` (hold IPv4 addresses) | | {sum(1 for r in rows if r.get('optional'))} |")
    return lines


def readme_section(rows, per_tpl, size_kib):
    ncls = collections.Counter()
    for t in TEMPLATES:
        if per_tpl[t["name"]]:
            ncls[t["cls"]] += 1
    ntpl = sum(ncls.values())
    cls_line = ", ".join(f"{c} {ncls[c]}" for c, *_ in CLASS_SPEC)
    countries = ", ".join(COUNTRIES)
    body = f"""<!-- gen_fresh2.py: begin -->
## fresh2.jsonl (second set of new forms)

Written by `gen_fresh2.py` (Python 3 standard library only; deterministic, fixed seed:
`python3 guard/heldout/gen_fresh2.py` rewrites a byte-identical file).  Like `fresh.jsonl` it
measures **generalisation**: its {ntpl} templates are forms that `gen_text.py`, `gen_keys.py` and
`gen_fresh.py` do not use (per class: {cls_line}).  It was written from the labelling policy of
`shared/guard-corpus/README.md` and the three sibling generators only (to avoid their forms) — no guard
code was read, the guard was not run, and no development row was copied.

* **generic-password**: other CLI tools with password options (mysqldump/mysqladmin, restic, borg,
  duplicity, pgBackRest, openconnect, openfortivpn, vpnc, swaks, msmtp, unrar, 7za, qpdf, VeraCrypt,
  cryptsetup, az/gcloud/aws database and VM commands, jarsigner, apksigner, keytool genkeypair,
  snmpset/snmptrap v3, ipmitool `user set password`, racadm, ncftp, clickhouse-client, isql,
  isql-fb/gbak, db2, cypher-shell, etcdctl, nats, rabbitmqadmin, mount.cifs, svn, skopeo, x11vnc, ...),
  each rendered as a prompt line, `history` entry, `set -x` trace, zsh/fish history, Dockerfile `RUN`,
  crontab line, `ps aux` row or CI log line (`subkind` = `template:rendering`); typed assignments and
  constructor / builder / struct / map literals in Python, Kotlin, Swift, TypeScript, Java, C#, Go, Rust,
  PHP, Ruby, Node, Dart, Lua, C, R, MATLAB, Scala, Elixir, PowerShell, VBA, Groovy, SQL; config files of
  other programs (msmtprc, fetchmailrc, davfs2, wvdial, Bacula, Zabbix, Grafana, php-fpm, redis.conf,
  postfix sasl_passwd, slapd, Icecast, Tomcat context, TOML inline tables, Bitnami Helm values, Ansible
  tasks, Salt pillar, Chef data bags, Hiera, netplan, Beats, Prometheus, Alertmanager, web.config,
  NuGet, Packer, Nomad, Kafka client properties, systemd mount units, fstab, Apache LDAP, SSSD, Squid,
  FreeRADIUS, Asterisk, RouterOS, Cisco IOS, Windows autologon .reg, ...); non-English key names
  (`Passwort`, `contraseña`, `mot_de_passe`, `senha`, `пароль`, `kata_sandi`, `wachtwoord`, `şifre`,
  `密码`, `パスワード`, `mật khẩu`, `hasło`, ...) and chat messages in eight languages; URL query strings,
  form bodies, WS-Security, protocol transcripts (IMAP/FTP/POP3/Redis), strace, gdb, Data::Dumper,
  var_dump, dataclass/data-class/struct dumps, Spring bind failures, tracebacks, Basic-auth headers.
  Values are random strong passwords, word passphrases, human-style passwords, PINs, unicode passwords
  and shell-quoted values (`'…'\\''…'`); the span is the value *as rendered* (escaped or URL-encoded).
* **generic-secret**: session cookies (Set-Cookie, connect.sid, PHPSESSID, Netscape cookie jars), HMAC
  keys in Go/Node/Java, AES keys in hex/base64, `openssl enc -K`, TSIG and WireGuard preshared keys,
  Consul tokens (UUID-shaped), kubeadm/k3s join tokens, Vault unseal keys, Erlang cookies, framework
  secrets/salts (Symfony, Nextcloud, Grafana, Drupal), Spring `@Value` defaults, ...
* **phone**: 18 countries ({countries}), each with national and international formats (mobile and
  landline; `subkind` = `template:CC-format`), in TSV/CSV with header, CRM exports, JSON lines, YAML,
  vCard 2.1/4.0, localized e-mail signatures, Kannel and SMPP logs, OpenSIPS and billing CDRs, HL7 PID,
  SIP INVITE, signal-cli, LDIF, Rails params, Google People JSON, textproto, UBL XML, URL-encoded
  MSISDNs, WhatsApp chat exports and prose in twelve languages, with and without a label word.
* Fewer rows of e-mail, Luhn-valid cards, mod-97-valid IBANs (18 countries incl. PK, BR, EG, SA, AE, TR),
  valid-range SSNs, db-url, private keys (Ed25519/X25519 PKCS#8, P-256 SEC1/PKCS#8 built from random
  bytes), JWTs and vendor tokens with published prefixes (GitHub tokens with a correct checksum).
* **Negatives** (the majority): env/template/vault/SOPS/jasypt references, masked and redacted values,
  usage synopses, password policy prose in six languages, crypt/bcrypt/argon2/SSHA/PBKDF2 hashes,
  secret-manager CLI output, name words (`password`, `secret`, `token`, `key`, `phone`) with non-secret
  values; digests in Dockerfiles, BSD checksums, apt Release files, Homebrew, conda, Terraform locks;
  git reflog/fsck/rebase ids, blkid UUIDs, KSUIDs/ULIDs, trace/request/container/build ids, semver
  ranges, timestamps, durations, sizes, MAC addresses, hex dumps, metrics, top/lsof/docker stats;
  phone-like numbers that are not phones (spaced dates, part numbers, versions, amounts in eight
  currencies, ISBN/ISSN/DOI, METAR, e-ticket numbers, patents, lab values, counters); Luhn-invalid
  cards, checksum-invalid IBANs, invalid-range SSNs, reserved-domain e-mail, `@` that is not e-mail;
  public keys, certificates, DKIM records, SSH host keys and fingerprints.

Policy choices: `changeme`/`password`/vendor factory defaults are negatives marked `ambiguous`.
IPv4 addresses appear only in the `neg-ip` templates (private and documentation ranges); since the
corpus treats IP addresses as optional PII, those rows are `none` **and** marked `optional` and
`ambiguous` (score.py leaves them out of the headline numbers unless `--include-optional`).  No other
row holds an IPv4 address.  A PIN under a PIN label is a `generic-password`.  A Consul ACL token is a
`generic-secret` even though it is UUID-shaped.  Every row is validated when generated: span bounds and
trimming, Luhn + brand length, IBAN mod-97 + country length, SSN ranges, phone digit counts (no
fictional ranges), e-mail domains not reserved, JWT header, GitHub checksum, PEM markers; and no stray
sensitive value outside the spans (real-domain e-mail, valid card/IBAN/SSN, vendor token, JWT, private
key); negatives additionally hold no `+`-prefixed phone-like number and no high-entropy value under a
secret-like name (unless `ambiguous`).

**Rule: `fresh2.jsonl` is only measured in aggregate (scores, per-kind recall, FP-rate, per-subkind
rates).  Whoever tunes the guard never reads it row by row and never tunes a rule, threshold or
allow-list to its misses.  If it has been looked at, change `SEED` and regenerate.**

Counts ({size_kib} KiB):

""" + "\n".join(summarize(rows, per_tpl)) + "\n<!-- gen_fresh2.py: end -->"
    return body, ntpl


def update_readme(section):
    path = os.path.join(HERE, "README.md")
    with open(path, encoding="utf-8") as f:
        txt = f.read()
    b, e = "<!-- gen_fresh2.py: begin -->", "<!-- gen_fresh2.py: end -->"
    if b in txt and e in txt:
        txt = txt[:txt.index(b)] + section + txt[txt.index(e) + len(e):]
    else:
        txt = txt.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(txt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "fresh2.jsonl"))
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    rows, stats, per_tpl = build()
    R.shuffle(rows)
    # final validation pass over the whole file
    tmap = {t["name"]: t for t in TEMPLATES}
    bad = [(r["id"], check_row(r, tmap[r["subkind"].split(":")[0]])) for r in rows]
    bad = [b for b in bad if b[1]]
    assert not bad, bad[:5]
    assert len({r["id"] for r in rows}) == len(rows)
    data = "".join(json.dumps(r) + "\n" for r in rows)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(data)
    size_kib = round(len(data.encode()) / 1024)
    section, ntpl = readme_section(rows, per_tpl, size_kib)
    if not a.no_readme:
        update_readme(section)
    print("\n".join(summarize(rows, per_tpl)))
    used = collections.Counter(t["cls"] for t in TEMPLATES if per_tpl[t["name"]])
    print(f"\ntemplates used: {ntpl} (registered {len(TEMPLATES)})")
    print("per class: " + ", ".join(f"{c}={used[c]}" for c, *_ in CLASS_SPEC))
    dead = sorted(k[1] for k in stats if k[0] == "dead")
    unused = sorted(t["name"] for t in TEMPLATES if not per_tpl[t["name"]])
    if dead:
        print("templates that ran out of valid rows:", ", ".join(dead))
    if unused:
        print("templates without rows:", ", ".join(unused))
    rej = sum(v for k, v in stats.items() if k[0] not in ("dead", "_example"))
    print(f"rejected candidates: {rej}")
    if a.verbose:
        for k, v in sorted(stats.items(), key=lambda x: -x[1])[:40]:
            if k[0] != "_example":
                print("  ", v, k)
        for n, e in EXAMPLES[:60]:
            print("   e.g.", n, "->", e[:150])
    print(f"wrote {len(rows)} rows to {a.out}")


if __name__ == "__main__":
    main()
