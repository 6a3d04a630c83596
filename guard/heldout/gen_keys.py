#!/usr/bin/env python3
"""Held-out corpus of private keys and vendor tokens for the privacy guard.

Writes keys.tune.jsonl and keys.holdout.jsonl beside this file.

* Private keys, public keys, certificates, signatures ... come from real
  tools (openssl, ssh-keygen, gpg, age-keygen, puttygen).  Their output is
  cached in material/<split>/<item>.json, so a re-run reads the cache and is
  deterministic; a missing item is generated afresh (needs the tool).
* Vendor tokens are generated from each vendor's published format (GitHub /
  npm CRC32 checksums computed) by random.Random seeded per split.
* The two splits use disjoint seeds and different key material; the holdout
  split additionally uses renderings the tune split never shows.

Python 3 standard library only.  Run:  python3 gen_keys.py [--refresh-material]
"""
import base64
import binascii
import collections
import hashlib
import hmac
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
MAT = os.path.join(HERE, "material")
SOURCE = "heldout-keys"
SPLITS = {
    # split name: (seed for tokens/renderings, material sub-folder)
    "tune": 0x7E57_2026,
    "holdout": 0x5EC_0FF1CE,
}
NEG_PER_TYPE = 4   # public-key documents of one type kept per split
SKIPPED = []   # material that could not be generated (tool missing or failed)

# ---------------------------------------------------------------------------
# 1. key material from real tools (cached)
# ---------------------------------------------------------------------------


def run(cmd, cwd=None, env=None, inp=None, check=True):
    p = subprocess.run(cmd, cwd=cwd, env=env, input=inp, capture_output=True,
                       text=True)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), p.returncode,
                                                   p.stderr[-400:]))
    return p


def have(tool):
    return shutil.which(tool) is not None


def rd(path):
    with open(path) as f:
        return f.read()


def ossl_items():
    """(name, needs, recipe) for openssl material."""
    items = []

    def genpkey(args, enc=None):
        def r(d):
            cmd = ["openssl", "genpkey"] + args + ["-out", "k.pem"]
            if enc:
                cmd += ["-" + enc, "-pass", "pass:Heldout-Pass-1"]
            run(cmd, cwd=d)
            out = {"key": rd(os.path.join(d, "k.pem"))}
            if not enc:
                out["pub"] = run(["openssl", "pkey", "-in", "k.pem", "-pubout"], cwd=d).stdout
            return out
        return r

    for bits in (1024, 2048, 3072, 4096):
        items.append(("ossl-rsa%d-pkcs8" % bits, "openssl",
                      genpkey(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % bits])))

    def genrsa_trad(bits, cipher=None):
        def r(d):
            cmd = ["openssl", "genrsa", "-traditional", "-out", "k.pem"]
            if cipher:
                cmd += ["-" + cipher, "-passout", "pass:Heldout-Pass-2"]
            run(cmd + [str(bits)], cwd=d)
            out = {"key": rd(os.path.join(d, "k.pem"))}
            if not cipher:
                out["pub"] = run(["openssl", "rsa", "-in", "k.pem", "-RSAPublicKey_out"], cwd=d).stdout
                out["pub8"] = run(["openssl", "rsa", "-in", "k.pem", "-pubout"], cwd=d).stdout
            return out
        return r

    for bits in (1024, 2048, 4096):
        items.append(("ossl-rsa%d-pkcs1" % bits, "openssl", genrsa_trad(bits)))
    items.append(("ossl-rsa2048-pkcs1-aes256", "openssl", genrsa_trad(2048, "aes256")))
    items.append(("ossl-rsa1024-pkcs1-des3", "openssl", genrsa_trad(1024, "des3")))
    items.append(("ossl-rsa2048-pkcs8-enc", "openssl",
                  genpkey(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], enc="aes-256-cbc")))

    def pkcs8_v1(d):
        run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", "k0.pem"], cwd=d)
        run(["openssl", "pkcs8", "-topk8", "-v1", "PBE-SHA1-3DES", "-in", "k0.pem", "-out", "k.pem",
             "-passout", "pass:Heldout-Pass-3"], cwd=d)
        return {"key": rd(os.path.join(d, "k.pem"))}
    items.append(("ossl-rsa1024-pkcs8-enc-3des", "openssl", pkcs8_v1))
    items.append(("ossl-rsapss2048", "openssl",
                  genpkey(["-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"])))
    for curve in ("P-256", "P-384", "P-521"):
        items.append(("ossl-ec-%s-pkcs8" % curve.lower(), "openssl",
                      genpkey(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:" + curve])))
    items.append(("ossl-ec-p-384-pkcs8-enc", "openssl",
                  genpkey(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"], enc="aes-128-cbc")))

    def ecparam(curve, noout=False):
        def r(d):
            cmd = ["openssl", "ecparam", "-name", curve, "-genkey", "-out", "k.pem"]
            if noout:
                cmd.append("-noout")
            run(cmd, cwd=d)
            out = {"key": rd(os.path.join(d, "k.pem"))}
            out["pub"] = run(["openssl", "ec", "-in", "k.pem", "-pubout"], cwd=d).stdout
            out["params"] = run(["openssl", "ecparam", "-name", curve], cwd=d).stdout
            return out
        return r
    items.append(("ossl-ecparam-prime256v1", "openssl", ecparam("prime256v1")))
    items.append(("ossl-ecparam-secp384r1", "openssl", ecparam("secp384r1")))
    items.append(("ossl-ecparam-secp521r1-noout", "openssl", ecparam("secp521r1", True)))
    items.append(("ossl-ecparam-secp256k1", "openssl", ecparam("secp256k1")))

    def ec_legacy_enc(d):
        run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k0.pem"], cwd=d)
        run(["openssl", "ec", "-in", "k0.pem", "-aes256", "-passout", "pass:Heldout-Pass-4", "-out", "k.pem"], cwd=d)
        return {"key": rd(os.path.join(d, "k.pem"))}
    items.append(("ossl-ec-p256-sec1-aes256", "openssl", ec_legacy_enc))
    for alg in ("ED25519", "ED448", "X25519", "X448"):
        items.append(("ossl-%s" % alg.lower(), "openssl", genpkey(["-algorithm", alg])))
    items.append(("ossl-ed25519-enc", "openssl", genpkey(["-algorithm", "ED25519"], enc="aes-256-cbc")))
    items.append(("ossl-sm2", "openssl", genpkey(["-algorithm", "SM2"])))

    def dsa(d):
        run(["openssl", "genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:2048",
             "-out", "p.pem"], cwd=d)
        run(["openssl", "genpkey", "-paramfile", "p.pem", "-out", "k.pem"], cwd=d)
        trad = run(["openssl", "pkey", "-in", "k.pem", "-traditional"], cwd=d).stdout
        pub = run(["openssl", "pkey", "-in", "k.pem", "-pubout"], cwd=d).stdout
        return {"key": rd(os.path.join(d, "k.pem")), "trad": trad, "pub": pub,
                "params": rd(os.path.join(d, "p.pem"))}
    items.append(("ossl-dsa2048", "openssl", dsa))

    def dh(d):
        run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
             "-out", "p.pem"], cwd=d)
        run(["openssl", "genpkey", "-paramfile", "p.pem", "-out", "k.pem"], cwd=d)
        pub = run(["openssl", "pkey", "-in", "k.pem", "-pubout"], cwd=d).stdout
        x942 = run(["openssl", "genpkey", "-genparam", "-algorithm", "DHX", "-pkeyopt", "dh_rfc5114:2"],
                   cwd=d).stdout
        return {"key": rd(os.path.join(d, "k.pem")), "pub": pub,
                "params": rd(os.path.join(d, "p.pem")), "params_x942": x942}
    items.append(("ossl-dh-ffdhe2048", "openssl", dh))

    # certificates, CSRs, text dumps, PKCS#12
    def certs(alg_args, cn, o):
        def r(d):
            run(["openssl", "genpkey"] + alg_args + ["-out", "k.pem"], cwd=d)
            subj = "/C=NL/O=%s/CN=%s" % (o, cn)
            run(["openssl", "req", "-x509", "-new", "-key", "k.pem", "-subj", subj, "-days", "397",
                 "-addext", "subjectAltName=DNS:%s,DNS:www.%s" % (cn, cn), "-out", "c.pem"], cwd=d)
            run(["openssl", "req", "-new", "-key", "k.pem", "-subj", subj, "-out", "r.pem"], cwd=d)
            out = {"key": rd(os.path.join(d, "k.pem")), "cert": rd(os.path.join(d, "c.pem")),
                   "csr": rd(os.path.join(d, "r.pem"))}
            out["cert_text"] = run(["openssl", "x509", "-in", "c.pem", "-text", "-noout"], cwd=d).stdout
            out["csr_text"] = run(["openssl", "req", "-in", "r.pem", "-text", "-noout"], cwd=d).stdout
            out["key_text"] = run(["openssl", "pkey", "-in", "k.pem", "-text", "-noout"], cwd=d).stdout
            out["pub"] = run(["openssl", "pkey", "-in", "k.pem", "-pubout"], cwd=d).stdout
            out["fingerprint"] = run(["openssl", "x509", "-in", "c.pem", "-noout", "-fingerprint",
                                      "-sha256"], cwd=d).stdout
            run(["openssl", "pkcs12", "-export", "-in", "c.pem", "-inkey", "k.pem", "-out", "b.p12",
                 "-passout", "pass:Heldout-Pass-5", "-name", cn], cwd=d)
            with open(os.path.join(d, "b.p12"), "rb") as f:
                out["p12_b64"] = base64.b64encode(f.read()).decode()
            return out
        return r
    items.append(("ossl-cert-rsa2048", "openssl",
                  certs(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "api.acme-internal.test", "Acme")))
    items.append(("ossl-cert-ec-p256", "openssl",
                  certs(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "grafana.corp.test", "Corp")))
    items.append(("ossl-cert-ec-p384", "openssl",
                  certs(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"], "vault.ops.test", "Ops")))
    items.append(("ossl-cert-ed25519", "openssl",
                  certs(["-algorithm", "ED25519"], "mtls.svc.test", "Svc")))
    return items


def ssh_items():
    items = []

    def keygen(t, bits=None, pw="", fmt=None, fname="id_rsa", comment="dev@workstation"):
        def r(d):
            cmd = ["ssh-keygen", "-t", t, "-N", pw, "-C", comment, "-f", os.path.join(d, fname)]
            if bits:
                cmd += ["-b", str(bits)]
            if fmt:
                cmd += ["-m", fmt]
            p = run(cmd, cwd=d)
            genout = p.stdout.replace(d, "/home/dev/.ssh")
            kp = os.path.join(d, fname)
            out = {"key": rd(kp), "pub": rd(kp + ".pub"), "genout": genout}
            out["fp"] = run(["ssh-keygen", "-l", "-f", kp + ".pub"]).stdout
            out["fp_md5"] = run(["ssh-keygen", "-l", "-E", "md5", "-f", kp + ".pub"]).stdout
            out["fp_art"] = run(["ssh-keygen", "-lv", "-f", kp + ".pub"]).stdout
            if not pw:
                # a signature made with the key (public, not secret)
                with open(os.path.join(d, "msg.txt"), "w") as f:
                    f.write("release v1.4.2\n")
                sp = run(["ssh-keygen", "-Y", "sign", "-f", kp, "-n", "file", os.path.join(d, "msg.txt")],
                         check=False)
                if sp.returncode == 0 and os.path.exists(os.path.join(d, "msg.txt.sig")):
                    out["sig"] = rd(os.path.join(d, "msg.txt.sig"))
            return out
        return r

    for bits in (2048, 3072, 4096):
        items.append(("ssh-rsa%d" % bits, "ssh-keygen", keygen("rsa", bits, comment="ci@build-%d" % bits)))
    for bits in (256, 384, 521):
        items.append(("ssh-ecdsa%d" % bits, "ssh-keygen",
                      keygen("ecdsa", bits, fname="id_ecdsa", comment="ops@bastion")))
    items.append(("ssh-ed25519", "ssh-keygen", keygen("ed25519", fname="id_ed25519", comment="dev@laptop")))
    items.append(("ssh-ed25519-b", "ssh-keygen", keygen("ed25519", fname="deploy_key", comment="deploy@ci-runner-3")))
    items.append(("ssh-ed25519-c", "ssh-keygen", keygen("ed25519", fname="id_ed25519", comment="")))
    items.append(("ssh-dsa", "ssh-keygen", keygen("dsa", fname="id_dsa", comment="legacy@old-host")))
    items.append(("ssh-ed25519-pw", "ssh-keygen",
                  keygen("ed25519", pw="correct horse 42", fname="id_ed25519", comment="me@desktop")))
    items.append(("ssh-rsa3072-pw", "ssh-keygen", keygen("rsa", 3072, pw="Heldout-Pass-6", comment="me@desktop")))
    items.append(("ssh-ecdsa256-pw", "ssh-keygen",
                  keygen("ecdsa", 256, pw="Heldout-Pass-7", fname="id_ecdsa", comment="me@desktop")))
    items.append(("ssh-rsa2048-pem", "ssh-keygen", keygen("rsa", 2048, fmt="PEM", comment="jenkins@ci")))
    items.append(("ssh-rsa2048-pem-pw", "ssh-keygen",
                  keygen("rsa", 2048, pw="Heldout-Pass-8", fmt="PEM", comment="jenkins@ci")))
    items.append(("ssh-ecdsa256-pem", "ssh-keygen", keygen("ecdsa", 256, fmt="PEM", fname="id_ecdsa")))
    items.append(("ssh-dsa-pem", "ssh-keygen", keygen("dsa", fmt="PEM", fname="id_dsa")))
    items.append(("ssh-rsa2048-pkcs8", "ssh-keygen", keygen("rsa", 2048, fmt="PKCS8")))
    items.append(("ssh-ecdsa384-pkcs8", "ssh-keygen", keygen("ecdsa", 384, fmt="PKCS8", fname="id_ecdsa")))

    def ssh_cert(d):
        run(["ssh-keygen", "-t", "ed25519", "-N", "", "-C", "user-ca", "-f", os.path.join(d, "ca")])
        run(["ssh-keygen", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", os.path.join(d, "u")])
        run(["ssh-keygen", "-s", os.path.join(d, "ca"), "-I", "alice-2026", "-n", "alice,deploy",
             "-V", "+52w", os.path.join(d, "u.pub")])
        cert = rd(os.path.join(d, "u-cert.pub"))
        info = run(["ssh-keygen", "-L", "-f", os.path.join(d, "u-cert.pub")]).stdout.replace(d, "/home/dev/.ssh")
        return {"cert": cert, "cert_info": info, "ca_pub": rd(os.path.join(d, "ca.pub"))}
    items.append(("ssh-user-cert", "ssh-keygen", ssh_cert))

    def known_hosts(d):
        kh = os.path.join(d, "known_hosts")
        lines = []
        hosts = ["github.com", "gitlab.com", "bitbucket.org", "git.corp.test", "bastion.prod.test",
                 "[build.corp.test]:2222"]
        for i, h in enumerate(hosts):
            t = ("ed25519", "ecdsa", "rsa")[i % 3]
            run(["ssh-keygen", "-t", t, "-N", "", "-f", os.path.join(d, "h%d" % i)] +
                (["-b", "2048"] if t == "rsa" else []))
            pub = rd(os.path.join(d, "h%d.pub" % i)).split()
            lines.append("%s %s %s" % (h, pub[0], pub[1]))
        with open(kh, "w") as f:
            f.write("\n".join(lines) + "\n")
        plain = rd(kh)
        run(["ssh-keygen", "-H", "-f", kh])
        return {"plain": plain, "hashed": rd(kh)}
    items.append(("ssh-known-hosts", "ssh-keygen", known_hosts))
    return items


GPG_PARAMS = {
    "gpg-ed25519": ("Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nSubkey-Type: ecdh\n"
                    "Subkey-Curve: cv25519\nSubkey-Usage: encrypt\n", None,
                    "Release Signing", "release-signing@example.com"),
    "gpg-ed25519-pw": ("Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nSubkey-Type: ecdh\n"
                       "Subkey-Curve: cv25519\nSubkey-Usage: encrypt\n", "Heldout-Pass-9",
                       "Backup Key", "backup@example.org"),
    "gpg-rsa2048": ("Key-Type: RSA\nKey-Length: 2048\nKey-Usage: sign\nSubkey-Type: RSA\n"
                    "Subkey-Length: 2048\nSubkey-Usage: encrypt\n", None, "CI Signing Key", "ci@example.net"),
    "gpg-nistp256": ("Key-Type: ECDSA\nKey-Curve: nistp256\nKey-Usage: sign\nSubkey-Type: ECDH\n"
                     "Subkey-Curve: nistp256\nSubkey-Usage: encrypt\n", None, "Apt Repo", "apt@example.com"),
    "gpg-dsa-elg": ("Key-Type: DSA\nKey-Length: 2048\nSubkey-Type: ELG-E\nSubkey-Length: 2048\n", None,
                    "Legacy Packager", "packager@example.org"),
}


def gpg_items():
    items = []

    def make(name):
        params, pw, real, email = GPG_PARAMS[name]

        def r(d):
            home = os.path.join(d, "gnupg")
            os.mkdir(home, 0o700)
            env = dict(os.environ, GNUPGHOME=home)
            spec = params + "Name-Real: %s\nName-Email: %s\nExpire-Date: 2y\n" % (real, email)
            spec += ("Passphrase: %s\n" % pw) if pw else "%no-protection\n"
            spec += "%commit\n"
            g = ["gpg", "--batch", "--pinentry-mode", "loopback"]
            run(g + ["--gen-key"], env=env, inp=spec)
            pwa = ["--passphrase", pw] if pw else ["--passphrase", ""]
            out = {}
            out["secret"] = run(g + pwa + ["--armor", "--export-secret-keys", email], env=env).stdout
            out["secret_sub"] = run(g + pwa + ["--armor", "--export-secret-subkeys", email], env=env).stdout
            out["public"] = run(g + ["--armor", "--export", email], env=env).stdout
            out["list"] = run(["gpg", "--list-keys", "--keyid-format", "long"], env=env).stdout.replace(home, "/home/dev/.gnupg")
            out["list_secret"] = run(["gpg", "--list-secret-keys"], env=env).stdout.replace(home, "/home/dev/.gnupg")
            out["fingerprint"] = run(["gpg", "--fingerprint", email], env=env).stdout
            msg = "deploy manifest sha256 ok\n"
            out["clearsign"] = run(g + pwa + ["--clearsign", "-u", email], env=env, inp=msg).stdout
            out["detach"] = run(g + pwa + ["--armor", "--detach-sign", "-u", email], env=env, inp=msg).stdout
            out["encrypted"] = run(g + ["--armor", "--encrypt", "--trust-model", "always", "-r", email],
                                   env=env, inp="db password rotated on tuesday\n").stdout
            run(["gpgconf", "--kill", "all"], env=env, check=False)
            return out
        return r
    for name in GPG_PARAMS:
        items.append((name, "gpg", make(name)))
    return items


def age_items():
    items = []

    def make(d):
        p = run(["age-keygen", "-o", os.path.join(d, "key.txt")])
        key = rd(os.path.join(d, "key.txt"))
        pubkey = run(["age-keygen", "-y", os.path.join(d, "key.txt")]).stdout
        enc = run(["age", "-a", "-r", pubkey.strip()], inp="postgres backup 2026-11-30\n").stdout
        return {"key": key, "pub": pubkey, "stderr": p.stderr, "encrypted": enc}
    for i in range(4):
        items.append(("age-%d" % i, "age-keygen", make))
    return items


def putty_items():
    items = []

    def make(t, bits=None, version=3, pw=None, comment="putty@win-desktop", extra=()):
        def r(d):
            cmd = ["puttygen", "-t", t, "-q", "-C", comment, "-o", os.path.join(d, "k.ppk"),
                   "--ppk-param", "version=%d" % version]
            if bits:
                cmd += ["-b", str(bits)]
            pwf = os.path.join(d, "pw")
            with open(pwf, "w") as f:
                f.write((pw or "") + "\n")
            cmd += ["--new-passphrase", pwf]
            run(cmd)
            kp = os.path.join(d, "k.ppk")
            oldpw = ["--old-passphrase", pwf]
            out = {"key": rd(kp)}
            out["public"] = run(["puttygen", kp, "-O", "public"] + oldpw).stdout
            out["public_openssh"] = run(["puttygen", kp, "-O", "public-openssh"] + oldpw).stdout
            out["fingerprint"] = run(["puttygen", kp, "-O", "fingerprint"] + oldpw).stdout
            for x in extra:
                out[x] = run(["puttygen", kp, "-O", x, "-o", os.path.join(d, "x.out")] + oldpw +
                             ["--new-passphrase", pwf]).stdout or rd(os.path.join(d, "x.out"))
            return out
        return r
    items.append(("ppk3-rsa2048", "puttygen", make("rsa", 2048, extra=("private-sshcom",))))
    items.append(("ppk3-ecdsa256", "puttygen", make("ecdsa", 256)))
    items.append(("ppk3-ed25519", "puttygen", make("ed25519")))
    items.append(("ppk3-ed448", "puttygen", make("ed448")))
    items.append(("ppk3-dsa", "puttygen", make("dsa", 2048, comment="imported-openssh-key")))
    items.append(("ppk2-rsa2048", "puttygen", make("rsa", 2048, version=2, comment="rsa-key-20261130")))
    items.append(("ppk2-ed25519", "puttygen", make("ed25519", version=2, comment="eddsa-key-20261130")))
    items.append(("ppk2-ecdsa384", "puttygen", make("ecdsa", 384, version=2, comment="ecdsa-key-20261130")))
    items.append(("ppk3-ed25519-pw", "puttygen", make("ed25519", pw="Heldout-Pass-10")))
    items.append(("ppk2-rsa2048-pw", "puttygen", make("rsa", 2048, version=2, pw="Heldout-Pass-11",
                                                    extra=("private-sshcom",))))
    return items


def all_material_specs():
    return ossl_items() + ssh_items() + gpg_items() + age_items() + putty_items()


def load_material(split, refresh=False):
    d = os.path.join(MAT, split)
    os.makedirs(d, exist_ok=True)
    mat = {}
    for name, tool, recipe in all_material_specs():
        path = os.path.join(d, name + ".json")
        if os.path.exists(path) and not refresh:
            with open(path) as f:
                mat[name] = json.load(f)
            continue
        if not have(tool):
            SKIPPED.append("%s/%s: %s not installed" % (split, name, tool))
            continue
        tmp = tempfile.mkdtemp(prefix="hk-")
        try:
            files = recipe(tmp)
        except Exception as e:  # noqa: BLE001 - report and carry on
            SKIPPED.append("%s/%s: %s" % (split, name, e))
            continue
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rec = {"tool": tool, "files": files}
        with open(path, "w") as f:
            json.dump(rec, f, indent=1, sort_keys=True)
            f.write("\n")
        mat[name] = rec
    return mat



# ---------------------------------------------------------------------------
# 2. small crypto / encoding helpers (bech32 for age, X25519, base62 CRC32)
# ---------------------------------------------------------------------------

BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        b = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ v
        for i in range(5):
            if (b >> i) & 1:
                chk ^= gen[i]
    return chk


def _hrp_expand(hrp):
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def _convertbits(data, frombits, tobits, pad=True):
    acc = bits = 0
    ret = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            ret.append((acc >> bits) & maxv)
    if pad and bits:
        ret.append((acc << (tobits - bits)) & maxv)
    return ret


def bech32_encode(hrp, data8):
    d5 = _convertbits(data8, 8, 5)
    pm = _polymod(_hrp_expand(hrp) + d5 + [0] * 6) ^ 1
    chk = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32[d] for d in d5 + chk)


def bech32_decode(s):
    s = s.lower()
    pos = s.rfind("1")
    hrp, data = s[:pos], [BECH32.index(c) for c in s[pos + 1:]]
    if _polymod(_hrp_expand(hrp) + data) != 1:
        raise ValueError("bad bech32 checksum")
    return hrp, bytes(_convertbits(data[:-6], 5, 8, False))


def x25519_base(k):
    """RFC 7748 X25519(k, 9): the public key of an X25519 secret."""
    p = 2 ** 255 - 19
    kb = bytearray(k)
    kb[0] &= 248
    kb[31] &= 127
    kb[31] |= 64
    n = int.from_bytes(kb, "little")
    x1, x2, z2, x3, z3, swap = 9, 1, 0, 9, 1, 0
    for t in reversed(range(255)):
        kt = (n >> t) & 1
        swap ^= kt
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = kt
        a = (x2 + z2) % p
        aa = a * a % p
        b = (x2 - z2) % p
        bb = b * b % p
        e = (aa - bb) % p
        c = (x3 + z3) % p
        d = (x3 - z3) % p
        da = d * a % p
        cb = c * b % p
        x3 = (da + cb) ** 2 % p
        z3 = x1 * (da - cb) ** 2 % p
        x2 = aa * bb % p
        z2 = e * (aa + 121665 * e) % p
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, p - 2, p) % p).to_bytes(32, "little")


def age_keypair(rng):
    sk = bytes(rng.getrandbits(8) for _ in range(32))
    return (bech32_encode("age-secret-key-", sk).upper(), bech32_encode("age", x25519_base(sk)))


B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase   # GitHub's (GMP) order
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
HEXU = "0123456789ABCDEF"
B64URL = ALNUM + "-_"
B64 = ALNUM + "+/"
B32 = string.ascii_uppercase + "234567"
UPPERNUM = string.ascii_uppercase + string.digits
LOWERNUM = string.ascii_lowercase + string.digits
LETTERS = string.ascii_letters


def rs(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def b62_crc(s):
    n = zlib.crc32(s.encode()) & 0xFFFFFFFF
    out = ""
    while n:
        out = B62[n % 62] + out
        n //= 62
    return out.rjust(6, "0")


def crc_token(rng, prefix):
    body = rs(rng, B62, 30)
    return prefix + body + b62_crc(body)


def crc_ok(tok):
    body = tok.split("_", 1)[1]
    return b62_crc(body[:-6]) == body[-6:]


def b64u(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def rbytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def ruuid(rng):
    h = "%032x" % rng.getrandbits(128)
    h = h[:12] + "4" + h[13:16] + rng.choice("89ab") + h[17:]
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


# ---------------------------------------------------------------------------
# 3. rows
# ---------------------------------------------------------------------------


class S(str):
    """A sensitive piece of text (its position becomes a span)."""


def compose(*parts):
    text, spans = "", []
    for p in parts:
        if isinstance(p, S):
            spans.append([len(text), len(text) + len(p)])
        text += p
    return text, spans


def remap(text, spans, esc=None, prefix=None, first_prefix=True):
    """Rebuild text escaping each char and/or prefixing each line; move spans."""
    out, pos = [], 0
    starts, ends = [0] * len(text), [0] * len(text)
    line, at_start = 0, first_prefix
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


def shift(spans, n):
    return [[s + n, e + n] for s, e in spans]


def wrap(pre, text, spans, post=""):
    return pre + text + post, shift(spans, len(pre))


def row(text, spans, label, kind, subkind, render, rule=None, **extra):
    spans = sorted(spans)
    assert (label == "none") == (not spans), (label, text[:80])
    for s, e in spans:
        assert 0 <= s < e <= len(text)
    r = {"id": "hk-" + hashlib.sha1(text.encode()).hexdigest()[:12], "text": text, "label": label,
         "kind": kind if label != "none" else "none", "spans": spans, "source": SOURCE,
         "subkind": subkind, "render": render}
    if rule:
        r["rule"] = rule
    r.update(extra)
    return r


def key_spans(text):
    """Spans of every private-key block (PEM / OpenSSH / PGP / ssh.com) in text."""
    import re
    out = []
    for m in re.finditer(r"(-----BEGIN ([A-Z0-9 .]*PRIVATE KEY[A-Z ]*)-----|---- BEGIN (SSH2 ENCRYPTED PRIVATE KEY) ----)",
                         text):
        label = m.group(2) or m.group(3)
        end_marker = ("-----END %s-----" % label) if m.group(2) else ("---- END %s ----" % label)
        e = text.find(end_marker, m.end())
        if e < 0:
            continue
        out.append([m.start(), e + len(end_marker)])
    return out


# ---------------------------------------------------------------------------
# 4. key documents (what a tool wrote) and how logs render them
# ---------------------------------------------------------------------------


class KDoc:
    def __init__(self, text, spans, sub, fam, fname, ykeys, rule=None):
        self.text, self.spans, self.sub, self.fam = text.rstrip("\n"), spans, sub, fam
        self.fname, self.ykeys, self.rule = fname, ykeys, rule


SSH_Y = ["ssh_private_key", "deploy_key", "git_ssh_key", "SSH_PRIVATE_KEY", "id_rsa"]
TLS_Y = ["tls.key", "private_key", "key.pem", "server_key", "signing_key"]
GPG_Y = ["gpg_private_key", "GPG_SIGNING_KEY", "signing_key"]
AGE_Y = ["age_key", "SOPS_AGE_KEY", "identity"]
PPK_Y = ["ppk", "putty_key", "private_key"]
PUB_Y = ["public_key", "ssh_authorized_key", "tls.crt", "ca.crt", "certificate"]


def ssh_fname(name):
    for t, f in (("ed25519", "id_ed25519"), ("ecdsa", "id_ecdsa"), ("dsa", "id_dsa")):
        if t in name:
            return f
    return "id_rsa"


def build_key_docs(mat):
    pos, neg, p12 = [], [], []
    for name, rec in sorted(mat.items()):
        f, tool = rec["files"], rec["tool"]
        sub = "%s:%s" % (tool, name)

        def P(text, fam, fname, yk, suffix="", spans=None, rule=None):
            t = text.rstrip("\n")
            sp = key_spans(t) if spans is None else spans
            assert sp, (name, suffix)
            pos.append(KDoc(t, sp, sub + suffix, fam, fname, yk, rule))

        def N(text, fam, fname, suffix, yk=PUB_Y):
            neg.append(KDoc(text, [], sub + suffix, fam, fname, yk))

        if name.startswith("ossl-"):
            if "key" in f:
                P(f["key"], "tls", "server.key" if "rsa" in name else "key.pem", TLS_Y)
            if "trad" in f:
                P(f["trad"], "tls", "dsa.key", TLS_Y, ":traditional")
            if "key_text" in f:
                t = f["key_text"].rstrip("\n")
                P(t, "tls", "key.txt", TLS_Y, ":pkey-text", spans=[[0, len(t)]])
            if "p12_b64" in f:
                p12.append((f["p12_b64"], sub + ":pkcs12"))
            for k in ("pub", "pub8", "params", "params_x942", "cert", "csr", "fingerprint", "csr_text"):
                if k in f:
                    N(f[k], "tls", "tls.crt" if k == "cert" else "public.pem", ":" + k)
            if "cert_text" in f:
                lines = f["cert_text"].rstrip("\n").split("\n")
                i = 0
                while i < len(lines):
                    n = 6 + (i * 7) % 9
                    N("\n".join(lines[i:i + n]), "tls", "cert.txt", ":x509-text@%d" % i)
                    i += n
        elif name.startswith("ssh-"):
            fn = "deploy_key" if name == "ssh-ed25519-b" else ssh_fname(name)
            if "key" in f:
                P(f["key"], "ssh", fn, SSH_Y)
            for k in ("pub", "fp", "fp_md5", "fp_art", "genout", "sig", "cert", "cert_info", "ca_pub"):
                if k in f:
                    N(f[k], "ssh", fn + ".pub", ":" + k)
            if "hashed" in f:
                N(f["hashed"], "ssh", "known_hosts", ":known_hosts-hashed")
                for j, line in enumerate(f["plain"].strip().split("\n")):
                    N(line, "ssh", "known_hosts", ":known_hosts-line%d" % j)
        elif name.startswith("gpg-"):
            P(f["secret"], "gpg", "private.asc", GPG_Y)
            P(f["secret_sub"], "gpg", "subkeys.asc", GPG_Y, ":subkeys")
            for k in ("public", "list", "list_secret", "fingerprint", "clearsign", "detach", "encrypted"):
                N(f[k], "gpg", "public.asc", ":" + k)
        elif name.startswith("age-"):
            t = f["key"].rstrip("\n")
            i = t.index("AGE-SECRET-KEY-1")
            P(t, "age", "keys.txt", AGE_Y, spans=[[i, t.index("\n", i) if "\n" in t[i:] else len(t)]],
              rule="age")
            for k in ("pub", "stderr", "encrypted"):
                N(f[k], "age", "recipients.txt", ":" + k)
        elif name.startswith("ppk"):
            t = f["key"].rstrip("\n")
            P(t, "ppk", "id_rsa.ppk" if "rsa" in name else "key.ppk", PPK_Y, spans=[[0, len(t)]], rule="putty")
            if "private-sshcom" in f:
                P(f["private-sshcom"], "ppk", "id_rsa.ssh2", PPK_Y, ":sshcom")
            for k in ("public", "public_openssh", "fingerprint"):
                N(f[k], "ppk", "key.pub", ":" + k)
    return pos, neg, p12


def own_age_docs(rng, n):
    """age identities built from the published format (bech32 + X25519)."""
    docs = []
    for _ in range(n):
        sk, pk = age_keypair(rng)
        ts = "2026-%02d-%02dT%02d:%02d:%02dZ" % (rng.randint(1, 11), rng.randint(1, 28), rng.randint(0, 23),
                                                rng.randint(0, 59), rng.randint(0, 59))
        style = rng.randrange(3)
        if style == 0:
            t = "# created: %s\n# public key: %s\n%s" % (ts, pk, sk)
        elif style == 1:
            t = sk
        else:
            t = "# public key: %s\n%s" % (pk, sk)
        i = t.index(sk)
        docs.append(KDoc(t, [[i, i + len(sk)]], "format:age-bech32", "age", "keys.txt", AGE_Y, "age"))
    return docs


def ts_iso(rng, frac=True):
    s = "2026-%02d-%02dT%02d:%02d:%02d" % (rng.randint(1, 11), rng.randint(1, 28), rng.randint(0, 23),
                                          rng.randint(0, 59), rng.randint(0, 59))
    return s + (".%09dZ" % rng.randrange(10 ** 9) if frac else "Z")


def prompt(rng, d="~"):
    u = rng.choice(["dev", "ubuntu", "runner", "admin", "ci"])
    h = rng.choice(["buildbox", "runner-7f3k2", "laptop", "bastion-1", "web-01", "fv-az178-441"])
    return rng.choice(["%s@%s:%s$ " % (u, h, d), "[%s@%s %s]$ " % (u, h, d.split("/")[-1] or "~"),
                       "root@%s:%s# " % (h, d), "$ "])


def decorate(rng, text):
    """Vary a fixed negative text the way logs would carry it (so splits do not share identical rows)."""
    k = rng.randrange(6)
    if k == 0:
        return text
    if k == 1:
        return "%s INFO %s" % (ts_iso(rng, False), text)
    if k == 2:
        return "[%s] %s" % (rng.choice(["build", "deploy", "lint", "setup", "test"]) + "-%d" % rng.randint(1, 99), text)
    if k == 3:
        stamp = ts_iso(rng)
        return remap(text, [], prefix=lambda i: "%s stdout F " % stamp)[0]
    if k == 4:
        return remap(text, [], prefix=lambda i: "> ")[0]
    return "%s\n%s" % (text, prompt(rng))


def esc_json(c):
    return json.dumps(c)[1:-1]


def kr_bare(rng, d):
    return d.text, d.spans


def kr_yaml(rng, d):
    n = rng.choice([2, 4, 8])
    k = rng.choice(d.ykeys)
    body, sp = remap(d.text, d.spans, prefix=lambda i: " " * n)
    bar = rng.choice(["|", "|-", "|"])
    if n == 2:
        head = "%s: %s\n" % (k, bar)
    elif n == 4:
        head = rng.choice(["secrets:\n", "stringData:\n", "vars:\n", "deploy:\n"]) + "  %s: %s\n" % (k, bar)
    else:
        head = rng.choice(["spec:\n  values:\n    auth:\n", "all:\n  vars:\n    ssh:\n",
                           "jobs:\n  deploy:\n    with:\n"]) + "      %s: %s\n" % (k, bar)
    tail = rng.choice(["", "\n" + " " * (n - 2) + "enabled: true", "\n" + " " * (n - 2) + "user: git"])
    return wrap(head, body, sp, tail)


def kr_json(rng, d):
    body, sp = remap(d.text + "\n", d.spans, esc=esc_json)
    priv = bool(d.spans)
    field = "private_key" if priv else rng.choice(["public_key", "certificate", "ca_chain"])
    style = rng.randrange(3)
    if style == 0:
        return wrap('{"name": "%s", "%s": "' % (rng.choice(["ci-deploy", "backup", "signer"]), field), body, sp,
                    '", "created_at": "%s"}' % ts_iso(rng, False))
    if style == 1:
        return wrap('          "attributes": {\n            "algorithm": "%s",\n            "%s": "'
                    % (rng.choice(["RSA", "ECDSA", "ED25519"]), "private_key_pem" if priv else "public_key_pem"),
                    body, sp, '",\n            "rsa_bits": 2048\n          },')
    return wrap('{"request_id":"%s","lease_id":"","data":{"%s":"' % (ruuid(rng), field), body, sp,
                '","serial_number":"%s"}}' % ":".join(rs(rng, HEX, 2) for _ in range(8)))


def k8s_secret_yaml(rng, items, name, ns, typ):
    lines = ["apiVersion: v1", "data:"]
    parts = [ "\n".join(lines) + "\n"]
    for k, v in items:
        parts += ["  %s: " % k, v, "\n"]
    parts.append("kind: Secret\nmetadata:\n  creationTimestamp: \"%s\"\n  name: %s\n  namespace: %s\n"
                 "  resourceVersion: \"%d\"\n  uid: %s\ntype: %s" % (ts_iso(rng, False), name, ns,
                                                                   rng.randint(1000, 999999), ruuid(rng), typ))
    return parts


CERT_POOL = []


def kr_kube(rng, d):
    b = base64.b64encode((d.text + "\n").encode()).decode()
    val = S(b) if d.spans else b
    ns = rng.choice(["default", "ci", "prod", "argocd", "flux-system"])
    if d.fam == "ssh":
        items, name, typ = [("ssh-privatekey", val)], rng.choice(["git-deploy-key", "repo-creds"]), \
            "kubernetes.io/ssh-auth"
    elif d.fam == "tls" and d.spans and CERT_POOL:
        crt = base64.b64encode(rng.choice(CERT_POOL).encode()).decode()
        items, name, typ = [("tls.crt", crt), ("tls.key", val)], rng.choice(["web-tls", "ingress-cert"]), \
            "kubernetes.io/tls"
    else:
        k = rng.choice(d.ykeys).replace("_", "-")
        items, name, typ = [(k, val)], rng.choice(["app-secrets", "signing", "sops-age"]), "Opaque"
    parts = k8s_secret_yaml(rng, items, name, ns, typ)
    if rng.random() < 0.5:
        parts.insert(0, "%skubectl get secret %s -n %s -o yaml\n" % (prompt(rng), name, ns))
    return compose(*parts)


def kr_jsonpath(rng, d):
    b = base64.b64encode((d.text + "\n").encode()).decode()
    k = {"ssh": "ssh-privatekey", "tls": "tls\\.key"}.get(d.fam, rng.choice(d.ykeys).replace(".", "\\."))
    name = rng.choice(["deploy-key", "web-tls", "signing-key", "app-secrets"])
    p = prompt(rng)
    after = rng.choice(["", p, "\n" + p])
    return compose("%skubectl get secret %s -o jsonpath='{.data.%s}'\n" % (p, name, k),
                   S(b) if d.spans else b, after)


def kr_b64d(rng, d):
    p = prompt(rng)
    cmd = rng.choice([
        "kubectl get secret %s -o jsonpath='{.data.%s}' | base64 -d" % (
            rng.choice(["deploy-key", "web-tls"]), rng.choice(d.ykeys).replace(".", "\\.")),
        'echo "$%s_B64" | base64 --decode' % rng.choice(["DEPLOY_KEY", "SSH_KEY", "TLS_KEY", "SIGNING_KEY"]),
        "base64 -d <<< \"$%s\"" % rng.choice(["PRIVATE_KEY", "GPG_KEY"]),
        "vault kv get -field=%s secret/ci/%s | base64 -d" % (rng.choice(d.ykeys), rng.choice(["deploy", "tls"]))])
    return wrap(p + cmd + "\n", d.text, d.spans)


def kr_cat(rng, d):
    dirs = {"ssh": "~/.ssh", "tls": "/etc/ssl/private", "gpg": "~/keys", "age": "~/.config/sops/age",
            "ppk": "/mnt/c/Users/dev/keys"}
    dd = dirs.get(d.fam, "~")
    p = prompt(rng, dd)
    t, sp = wrap(p + rng.choice(["cat ", "cat ", "less ", "more "]) + d.fname + "\n", d.text, d.spans)
    if rng.random() < 0.5:
        t += "\n" + p
    return t, sp


def kr_trunc(rng, d):
    t = d.text
    if d.spans:
        s, e = d.spans[0]
        lo = s + int((e - s) * 0.6)
        if d.fam == "ppk":
            pl = t.find("Private-Lines:")
            lo = max(lo, t.find("\n", t.find("\n", pl) + 1) + 1)
        cut = rng.randint(lo, e - 2)
    else:
        cut = rng.randint(len(t) // 3, len(t) - 2)
    if rng.random() < 0.5 and "\n" in t[:cut]:
        cut = t.rfind("\n", 0, cut)  # stop at a line end
    pre = rng.choice(["", "", "[stream] ", "Loading identity from environment...\n"])
    sp = [[a, min(b, cut)] for a, b in d.spans if a < cut]
    assert not d.spans or (sp and sp[0][1] - sp[0][0] > 20)
    return wrap(pre, t[:cut], sp, rng.choice(["", "", "\n[output truncated]", "\n^C"]))


def kr_tf(rng, d):
    tag = rng.choice(["EOT", "EOF", "KEY"])
    if rng.random() < 0.5:
        body, sp = remap(d.text, d.spans, prefix=lambda i: "    ")
        lname = rng.choice(["deploy_private_key", "tls_key", "signing_key"] if d.spans else
                           ["deploy_public_key", "ca_cert", "trusted_keys"])
        return wrap('locals {\n  %s = <<-%s\n' % (lname, tag),
                    body, sp, "\n    %s\n}" % tag)
    res = rng.choice(['resource "kubernetes_secret" "deploy" {\n  data = {\n    "%s" = <<%s\n',
                      'variable "%s" {\n  type    = string\n  default = <<%s\n'])
    return wrap(res % (rng.choice(d.ykeys), tag), d.text, d.spans, "\n%s\n%s" % (tag, rng.choice(["  }\n}", "}"])))


def kr_k8slog(rng, d):
    base = rng.randrange(10 ** 9)
    stamp = ts_iso(rng, False)[:-1]
    lead = rng.choice(["", "loaded key from /var/run/secrets/deploy/%s:\n" % d.fname, "DEBUG dumping config\n"])
    t, sp = wrap(lead, d.text, d.spans)
    return remap(t, sp, prefix=lambda i: "%s.%09dZ stdout F " % (stamp, (base + 1733 * i) % 10 ** 9))


# holdout-only renderings
def kr_gitdiff(rng, d):
    n = d.text.count("\n") + 1
    path = rng.choice(["deploy/", "config/", ".ssh/", "secrets/"]) + d.fname
    head = ("diff --git a/%s b/%s\nnew file mode 100644\nindex 0000000..%07x\n--- /dev/null\n+++ b/%s\n"
            "@@ -0,0 +1,%d @@\n" % (path, path, rng.getrandbits(28), path, n))
    body, sp = remap(d.text, d.spans, prefix=lambda i: "+")
    return wrap(head, body, sp)


def kr_journal(rng, d):
    host = rng.choice(["web-1", "ci-runner", "db-02"])
    unit = rng.choice(["deploy.sh", "cloud-init", "ansible-playbook", "bootstrap"])
    pid = rng.randint(300, 60000)
    sec = rng.randint(0, 50)
    return remap(d.text, d.spans, prefix=lambda i: "Nov 30 10:14:%02d %s %s[%d]: " % (min(59, sec + i // 6), host,
                                                                                    unit, pid))


def kr_pyrepr(rng, d):
    def esc(c):
        return {"\n": "\\n", "'": "\\'", "\\": "\\\\"}.get(c, c)
    body, sp = remap(d.text + "\n", d.spans, esc=esc)
    return wrap(rng.choice(["DEBUG:loader:read %s: b'" % d.fname, ">>> open('%s','rb').read()\nb'" % d.fname,
                            "key_bytes = b'"]), body, sp, "'")


def kr_dotenv_ml(rng, d):
    var = rng.choice(["PRIVATE_KEY", "SSH_PRIVATE_KEY", "JWT_PRIVATE_KEY", "SIGNING_KEY"] if d.spans else
                     ["PUBLIC_KEY", "CA_CERT", "SSH_KNOWN_HOSTS", "JWT_PUBLIC_KEY"])
    return wrap(rng.choice(["", "NODE_ENV=production\n"]) + '%s="' % var, d.text, d.spans,
                '"' + rng.choice(["", "\nPORT=8080"]))


def kr_compose(rng, d):
    svc = rng.choice(["app-1", "worker-1", "api-1", "init-1"])
    pad = " " * (12 - len(svc))
    return remap(d.text, d.spans, prefix=lambda i: "%s%s| " % (svc, pad))


KEY_RENDERS_TUNE = [("bare", kr_bare), ("yaml-indent", kr_yaml), ("json-escaped", kr_json),
                    ("kubectl-yaml-b64", kr_kube), ("kubectl-jsonpath", kr_jsonpath), ("base64-d", kr_b64d),
                    ("cat-prompt", kr_cat), ("truncated", kr_trunc), ("terraform-heredoc", kr_tf),
                    ("k8s-log-prefix", kr_k8slog)]
KEY_RENDERS_HOLDOUT_ONLY = [("git-diff-added", kr_gitdiff), ("journalctl-prefix", kr_journal),
                            ("python-bytes-repr", kr_pyrepr), ("dotenv-multiline", kr_dotenv_ml),
                            ("compose-logs-prefix", kr_compose)]


def gcp_sa(rng, d):
    """A GCP service-account key file around an RSA PKCS#8 key."""
    proj = rng.choice(["acme-prod", "data-platform", "ml-train", "infra-ci"]) + "-%06d" % rng.randint(0, 999999)
    acct = rng.choice(["ci-deployer", "terraform", "bq-loader", "github-actions"])
    email = "%s@%s.iam.gserviceaccount.com" % (acct, proj)
    pk, sp = remap(d.text + "\n", d.spans, esc=esc_json)
    pre = ('{\n  "type": "service_account",\n  "project_id": "%s",\n  "private_key_id": "%s",\n'
           '  "private_key": "' % (proj, "%040x" % rng.getrandbits(160)))
    post = ('",\n  "client_email": "%s",\n  "client_id": "%d",\n'
            '  "auth_uri": "https://accounts.google.com/o/oauth2/auth",\n'
            '  "token_uri": "https://oauth2.googleapis.com/token",\n'
            '  "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",\n'
            '  "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/%s",\n'
            '  "universe_domain": "googleapis.com"\n}' % (email, rng.randrange(10 ** 20, 10 ** 21),
                                                        email.replace("@", "%40")))
    text, spans = wrap(pre, pk, sp, post)
    style = rng.randrange(4)
    if style == 0:
        return wrap(prompt(rng) + "cat %s-%s.json\n" % (proj, "%012x" % rng.getrandbits(48)), text, spans) + \
            ("gcp-sa-file",)
    if style == 1:   # one line, in an env var
        one = json.dumps(json.loads(text))
        i = one.index("-----BEGIN")
        j = one.index("-----END PRIVATE KEY-----") + len("-----END PRIVATE KEY-----")
        return wrap("GOOGLE_CREDENTIALS='", one, [[i, j]], "'") + ("gcp-sa-env-oneline",)
    if style == 2:
        b = base64.b64encode(text.encode()).decode()
        return compose(*k8s_secret_yaml(rng, [("key.json", S(b))], "gcp-sa", "prod", "Opaque")) + \
            ("gcp-sa-kubectl-b64",)
    return text, spans, "gcp-sa-file-bare"


def key_rows(rng, split, mat):
    rows = []
    pos, neg, p12 = build_key_docs(mat)
    pos += own_age_docs(rng, 6)
    CERT_POOL[:] = [d.text + "\n" for d in neg if d.sub.endswith(":cert")]
    renders = list(KEY_RENDERS_TUNE) + (KEY_RENDERS_HOLDOUT_ONLY if split == "holdout" else [])
    deck = []

    def draw(d):
        nonlocal deck
        for _ in range(40):
            if not deck:
                deck = renders[:]
                rng.shuffle(deck)
            name, fn = deck.pop()
            if name == "truncated" and d.spans and d.spans[0][1] - d.spans[0][0] < 200:
                rest = renders[:]
                rng.shuffle(rest)
                deck = rest + deck
                continue
            return name, fn
        return "bare", kr_bare

    for d in pos:
        size = len(d.text)
        k = 3 if size < 2000 else 2
        used = set()
        for _ in range(k):
            name, fn = draw(d)
            if name in used:
                name, fn = draw(d)
            used.add(name)
            text, spans = fn(rng, d)
            rows.append(row(text, spans, "secret", "private-key", d.sub, name, d.rule))
        if d.sub.endswith(("ossl-rsa2048-pkcs8", "ossl-cert-rsa2048", "ssh-rsa2048-pkcs8")):
            for _ in range(3):
                text, spans, rn = gcp_sa(rng, d)
                rows.append(row(text, spans, "secret", "private-key", d.sub, rn, "gcp-service-account"))
    for b, sub in p12:
        parts = k8s_secret_yaml(rng, [("keystore.p12", S(b))], "keystore", "prod", "Opaque")
        rows.append(row(*compose(*parts), "secret", "private-key", sub, "kubectl-yaml-b64", "pkcs12"))
        rows.append(row(*compose("server.ssl.key-store=base64:", S(b), "\nserver.ssl.key-store-type=PKCS12"),
                        "secret", "private-key", sub, "properties", "pkcs12"))
    # negatives: public keys, certificates, params, signatures, fingerprints
    # at most a few documents of each type (public key, fingerprint, certificate, x509 text, ...)
    groups = collections.OrderedDict()
    for d in neg:
        typ = d.fam + d.sub[d.sub.rfind(":"):].split("@")[0].rstrip("0123456789")
        if d.text.startswith(("-----BEGIN", "---- BEGIN")):
            typ += ":" + d.text.split("\n", 1)[0]
        groups.setdefault(typ, []).append(d)
    chosen = []
    for typ, ds in groups.items():
        rng.shuffle(ds)
        chosen += ds[:NEG_PER_TYPE]
    for d in chosen:
        name, fn = draw(d)
        text, spans = fn(rng, d)
        amb = {"ambiguous": True} if "-cert-v01@openssh.com" in text else {}   # looks like an e-mail address
        rows.append(row(text, [], "none", "none", d.sub, name, **amb))
    rows += key_prose_negatives(rng, mat, split)
    return rows


def key_prose_negatives(rng, mat, split):
    """Key-shaped text that holds no private key: mentions, commands, placeholders, ssh messages."""
    rows = []
    pubs = [rec["files"]["pub"].strip() for n, rec in sorted(mat.items())
            if n.startswith("ssh-") and "pub" in rec["files"]]
    pubs += [rec["files"]["public_openssh"].strip() for n, rec in sorted(mat.items()) if n.startswith("ppk")]
    # authorized_keys files / lines with options
    for i in range(8):
        sel = rng.sample(pubs, rng.randint(1, 3))
        opts = ["", 'from="*.corp.test" ', 'no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty ',
                'command="/usr/local/bin/backup-only",restrict ', 'cert-authority,principals="deploy" ']
        lines = [rng.choice(opts) + p for p in sel]
        pre = rng.choice(["", prompt(rng, "~/.ssh") + "cat authorized_keys\n", "# ~/.ssh/authorized_keys\n"])
        rows.append(row(pre + "\n".join(lines), [], "none", "none", "ssh-keygen:authorized_keys", "authorized-keys"))
    for i in range(4):
        p = rng.choice(pubs)
        rows.append(row('resource "aws_key_pair" "deployer" {\n  key_name   = "deployer-key"\n  public_key = "%s"\n}'
                        % p, [], "none", "none", "ssh-keygen:pub", "terraform-public-key"))
        rows.append(row("ssh_authorized_keys:\n  - %s" % rng.choice(pubs), [], "none", "none", "ssh-keygen:pub",
                        "cloud-init"))
    names = ["id_rsa", "id_ed25519", "id_ecdsa", "deploy_key"]
    ls = ["total 32", "drwx------  2 dev dev 4096 Nov 30 09:12 .", "drwxr-x--- 18 dev dev 4096 Nov 30 09:10 .."]
    for nme in rng.sample(names, 3):
        ls.append("-rw-------  1 dev dev  %4d Nov 12 14:03 %s" % (rng.choice([411, 464, 2602, 3381]), nme))
        ls.append("-rw-r--r--  1 dev dev  %4d Nov 12 14:03 %s.pub" % (rng.choice([95, 177, 569, 737]), nme))
    ls.append("-rw-r--r--  1 dev dev  %4d Nov 29 17:45 known_hosts" % rng.randint(800, 4000))
    rows.append(row(prompt(rng, "~/.ssh") + "ls -la\n" + "\n".join(ls), [], "none", "none", "prose", "ls-la-ssh"))
    mentions = [
        'grep -rn "BEGIN RSA PRIVATE KEY" .',
        "rg -l --hidden 'BEGIN (RSA|EC|OPENSSH|DSA) PRIVATE KEY' ~/src",
        "git log -p -S 'BEGIN OPENSSH PRIVATE KEY' --all",
        'PEM_RE = re.compile(r"-----BEGIN ([A-Z ]+)PRIVATE KEY-----[\\s\\S]+?-----END \\1PRIVATE KEY-----")',
        'if line.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {',
        "const isPem = (s) => s.trim().startsWith('-----BEGIN PRIVATE KEY-----');",
        "regex = '''(?i)-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\\s\\S-]{64,}?KEY(?: BLOCK)?-----'''",
        "Paste the whole private key, from -----BEGIN OPENSSH PRIVATE KEY----- to -----END OPENSSH PRIVATE KEY-----, "
        "into the SSH_PRIVATE_KEY secret.",
        "error: expected '-----BEGIN EC PRIVATE KEY-----' but found '-----BEGIN PRIVATE KEY-----' (PKCS#8); "
        "convert with openssl ec",
        "unable to load Private Key\n140093427201344:error:0909006C:PEM routines:get_name:no start line:"
        "../crypto/pem/pem_lib.c:745:Expecting: ANY PRIVATE KEY",
        "Could not deserialize key data. The data may be in an incorrect format or it may be encrypted with an "
        "unsupported algorithm.",
        "Load key \"/home/dev/.ssh/id_ed25519\": invalid format\ngit@github.com: Permission denied (publickey).",
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
        "@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @\n"
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
        "Permissions 0644 for '/home/dev/.ssh/id_rsa' are too open.\n"
        "It is required that your private key files are NOT accessible by others.\n"
        "This private key will be ignored.",
        "Enter passphrase for key '/home/dev/.ssh/id_ed25519':",
        "Identity added: /home/dev/.ssh/id_ed25519 (dev@laptop)",
        "%sfile ~/.ssh/id_rsa ~/.ssh/id_rsa.pub\n/home/dev/.ssh/id_rsa:     OpenSSH private key\n"
        "/home/dev/.ssh/id_rsa.pub: OpenSSH RSA public key" % prompt(rng),
        "%sssh-keygen -t ed25519 -C \"dev@laptop\" -f ~/.ssh/id_ed25519 -N ''" % prompt(rng),
        "%sopenssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out server.key" % prompt(rng),
        "%skubectl create secret tls web-tls --cert=tls.crt --key=tls.key -n prod\nsecret/web-tls created"
        % prompt(rng),
        "%sgpg --import private.asc\ngpg: key 3AA5C34371567BD2: secret key imported\n"
        "gpg: Total number processed: 1\ngpg:       secret keys read: 1\ngpg:   secret keys imported: 1" % prompt(rng),
        "%sage -d -i ~/.config/sops/age/keys.txt secrets.enc.yaml > secrets.yaml" % prompt(rng),
        "Secret keys start with AGE-SECRET-KEY-1 and public keys with age1; keep keys.txt out of git.",
        "PuTTY key files start with 'PuTTY-User-Key-File-3:' (or -2 for older versions) and carry a "
        "Private-MAC line.",
        "*.pem\n*.key\nid_rsa\nid_ed25519\n*.ppk\n.env",
        "- name: Add deploy key\n  run: |\n    mkdir -p ~/.ssh\n    echo \"${{ secrets.DEPLOY_KEY }}\" > ~/.ssh/id_ed25519\n"
        "    chmod 600 ~/.ssh/id_ed25519",
        "private_key = File.read(ENV.fetch('JWT_PRIVATE_KEY_PATH'))",
        "tls:\n  certFile: /etc/tls/tls.crt\n  keyFile: /etc/tls/tls.key",
        "ssl_certificate     /etc/nginx/ssl/fullchain.pem;\nssl_certificate_key /etc/nginx/ssl/privkey.pem;",
        "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
        '"private_key": "-----BEGIN PRIVATE KEY-----\\n<REDACTED>\\n-----END PRIVATE KEY-----\\n",',
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n[redacted by log filter]\n-----END OPENSSH PRIVATE KEY-----",
        "  ssh_private_key: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    <paste your key here>\n"
        "    -----END OPENSSH PRIVATE KEY-----",
        "AGE-SECRET-KEY-1XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: <your key>\nPublic-Lines: 2\n...\n"
        "Private-Lines: 1\n...\nPrivate-MAC: ...",
        "ssh-add -l\n256 SHA256:%s dev@laptop (ED25519)" % b64u(rbytes(rng, 32)),
        "The key's randomart image is shown only once; the private key was saved in /home/dev/.ssh/id_ed25519",
        "openssl rsa -in server.key -check -noout\nRSA key ok",
        "%sopenssl pkey -in key.pem -pubout -out pub.pem && sha256sum pub.pem\n%s  pub.pem"
        % (prompt(rng), "%064x" % rng.getrandbits(256)),
    ]
    for i, m in enumerate(mentions):
        m = decorate(rng, m)
        rows.append(row(m, [], "none", "none", "prose:key-mention-%d" % i, "prose"))
    return rows


# ---------------------------------------------------------------------------
# 5. vendor token formats
# ---------------------------------------------------------------------------


class V:
    """One vendor: token forms, the names and places its tokens show up in, and its near misses."""

    def __init__(self, rule, kind, forms, env, keys, host, path="/v1/", header=("Authorization", "Bearer "),
                 code=(), ctx=False, prefix=None, examples=(), weight=6, git=None, docker=None, errors=(),
                 wrong=None, qparam="api_key", url_secret=False, family=None):
        self.rule, self.kind, self.forms, self.env, self.keys = rule, kind, forms, env, keys
        self.host, self.path, self.header, self.code, self.ctx = host, path, header, code, ctx
        self.prefix, self.examples, self.weight, self.git, self.docker = prefix, examples, weight, git, docker
        self.errors, self.wrong, self.qparam, self.url_secret = errors, wrong, qparam, url_secret
        self.family = family or rule

    def gen(self, rng):
        variant, fn = rng.choice(self.forms)
        return fn(rng), variant


def F(variant, fn):
    return (variant, fn)


def P(prefix, alphabet, n):
    return lambda r: prefix + rs(r, alphabet, n)


def jwt_make(rng, kind="generic"):
    now = 1790000000 + rng.randrange(30000000)
    if kind == "k8s":
        hdr = {"alg": "RS256", "kid": b64u(rbytes(rng, 32))}
        ns, sa = rng.choice(["ci", "prod", "argocd", "monitoring"]), rng.choice(["deployer", "default", "runner"])
        pl = {"aud": ["https://kubernetes.default.svc.cluster.local"], "exp": now + 3600, "iat": now,
              "iss": "https://kubernetes.default.svc.cluster.local",
              "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa, "uid": ruuid(rng)}},
              "nbf": now, "sub": "system:serviceaccount:%s:%s" % (ns, sa)}
        sig = rbytes(rng, 256)
    elif kind == "supabase-service":
        hdr = {"alg": "HS256", "typ": "JWT"}
        pl = {"iss": "supabase", "ref": rs(rng, string.ascii_lowercase, 20), "role": "service_role",
              "iat": now, "exp": now + 315360000}
        sig = None
    else:
        alg = rng.choice(["HS256", "HS256", "RS256", "ES256", "HS512", "EdDSA"])
        hdr = {"alg": alg, "typ": "JWT"}
        if alg != "HS256" and rng.random() < 0.6:
            hdr["kid"] = rs(rng, B64URL, rng.choice([16, 22, 43]))
        pl = rng.choice([
            {"sub": ruuid(rng), "iat": now, "exp": now + 900, "scope": "read:repo write:repo"},
            {"iss": "https://auth.%s.test/" % rng.choice(["acme", "corp", "shop"]), "sub": "auth0|%024x" %
             rng.getrandbits(96), "aud": "https://api.acme.test", "iat": now, "exp": now + 86400,
             "azp": rs(rng, ALNUM, 32), "gty": "client-credentials"},
            {"user_id": rng.randint(1000, 999999), "role": rng.choice(["admin", "user", "service"]),
             "session": "%032x" % rng.getrandbits(128), "iat": now, "exp": now + 3600},
            {"iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com",
             "sub": "repo:acme/api:ref:refs/heads/main", "repository": "acme/api", "run_id": str(rng.randint(10**9,
                                                                                                          10**10)),
             "iat": now, "exp": now + 300},
        ])
        sig = None
        if alg.startswith("RS"):
            sig = rbytes(rng, 256)
        elif alg == "ES256" or alg == "EdDSA":
            sig = rbytes(rng, 64)
    h = b64u(json.dumps(hdr, separators=(",", ":")).encode())
    p = b64u(json.dumps(pl, separators=(",", ":")).encode())
    if sig is None:
        key = rbytes(rng, 32)
        dig = hashlib.sha512 if hdr["alg"] == "HS512" else hashlib.sha256
        sig = hmac.new(key, (h + "." + p).encode(), dig).digest()
    return h + "." + p + "." + b64u(sig)


def sentry_org_token(rng):
    payload = {"iat": 1790000000 + rng.randrange(10 ** 7), "url": "https://sentry.io",
               "region_url": "https://us.sentry.io", "org": rng.choice(["acme", "corp-inc", "shopco"])}
    return "sntrys_" + b64u(json.dumps(payload, separators=(",", ":")).encode()) + "_" + rs(rng, B64URL[:-2] + "+/", 43)


def grafana_cloud_token(rng):
    payload = {"o": str(rng.randint(100000, 999999)), "n": "stack-%d-hm-read" % rng.randint(100000, 999999),
               "k": rs(rng, ALNUM, 24), "m": {"r": rng.choice(["prod-us-east-0", "prod-eu-west-2"])}}
    return "glc_" + base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def pypi_token(rng, host="pypi.org"):
    """A PyPI API token: 'pypi-' + base64url of a v2 binary macaroon (location, identifier, caveat, sig)."""
    def field(t, v):
        return bytes([t, len(v)]) + v
    ident = json.dumps({"version": 1, "permissions": "user"} if rng.random() < 0.5 else
                       {"version": 1, "permissions": {"projects": [rng.choice(["acme-cli", "fastlib", "tinyhttp"])]}}
                       ).encode()
    body = b"\x02" + field(1, host.encode()) + field(2, str(ruuid(rng)).encode()) + b"\x00" + \
        field(2, ident) + b"\x00\x00" + field(6, rbytes(rng, 32))
    return "pypi-" + b64u(body)


def discord_token(rng):
    uid = str(rng.randint(10 ** 17, 2 * 10 ** 18))
    return b64u(uid.encode()) + "." + rs(rng, B64URL, 6) + "." + rs(rng, B64URL, 38)


def atlassian_token(rng):
    body = rs(rng, B64URL, 171)
    return "ATATT3xFfGF0" + body + "=" + "%08X" % (zlib.crc32(body.encode()) & 0xFFFFFFFF)


CODE_GENERIC = ['headers = {"Authorization": "Bearer {}"}', 'const API_KEY = "{}";', 'api_key = "{}"',
                'client = Client(api_key="{}")', 'req.Header.Set("Authorization", "Bearer {}")']


def vendors():
    V_ = V
    L = []
    ghforms = [F("ghp", lambda r: crc_token(r, "ghp_"))] * 4 + [F("gho", lambda r: crc_token(r, "gho_")),
                                                               F("ghu", lambda r: crc_token(r, "ghu_")),
                                                               F("ghs", lambda r: crc_token(r, "ghs_")),
                                                               F("ghs", lambda r: crc_token(r, "ghs_")),
                                                               F("ghr", lambda r: crc_token(r, "ghr_"))]
    L.append(V_("github", "github-token", ghforms, ["GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT", "HOMEBREW_GITHUB_API_TOKEN"],
                ["github_token", "token", "oauth_token", "gh_token"], "api.github.com", "/user",
                ("Authorization", "token "),
                ['g = Github("{}")', 'const octokit = new Octokit({ auth: "{}" });',
                 'client := github.NewClient(nil).WithAuthToken("{}")'],
                prefix="ghp_", weight=16,
                git="github.com", docker="ghcr.io",
                errors=["remote: Invalid username or token. Password authentication is not supported.\n"
                        "fatal: Authentication failed for 'https://{}@github.com/acme/api.git/'",
                        "gh: Bad credentials (HTTP 401) token={}"],
                wrong=lambda r: "ghp_" + rs(r, B62 + "-.", 30)[:-3] + "-x." + rs(r, B62, 6)))
    L.append(V_("github", "github-token",
                [F("github_pat", lambda r: "github_pat_" + "11" + rs(r, UPPERNUM, 20) + "_" + rs(r, ALNUM, 59))],
                ["GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT"], ["github_token", "token", "pat"], "api.github.com", "/user",
                ("Authorization", "Bearer "), ['g = Github(auth=Auth.Token("{}"))', 'token: "{}"'],
                prefix="github_pat_", weight=8, git="github.com", family="github-fine-grained"))
    L.append(V_("npm", "api-key", [F("npm", lambda r: crc_token(r, "npm_"))], ["NPM_TOKEN", "NODE_AUTH_TOKEN"],
                ["npmAuthToken", "_authToken", "npm_token"], "registry.npmjs.org", "/-/whoami",
                code=['//registry.npmjs.org/:_authToken={}', 'npmAuthToken: "{}"'], prefix="npm_", weight=8))
    L.append(V_("pypi", "api-key", [F("pypi", lambda r: pypi_token(r)), F("testpypi", lambda r: pypi_token(r, "test.pypi.org"))],
                ["PYPI_TOKEN", "TWINE_PASSWORD", "UV_PUBLISH_TOKEN", "POETRY_PYPI_TOKEN_PYPI"],
                ["password", "pypi_token", "token"], "upload.pypi.org", "/legacy/",
                code=['[pypi]\n  username = __token__\n  password = {}', 'twine upload -u __token__ -p {} dist/*'],
                prefix="pypi-AgEIcHlwaS5vcmc", weight=6))
    slack_forms = [
        F("xoxb", lambda r: "xoxb-%d-%d-%s" % (r.randint(10 ** 10, 10 ** 13), r.randint(10 ** 10, 10 ** 13), rs(r, ALNUM, 24))),
        F("xoxp", lambda r: "xoxp-%d-%d-%d-%s" % (r.randint(10 ** 10, 10 ** 13), r.randint(10 ** 10, 10 ** 13),
                                                  r.randint(10 ** 10, 10 ** 13), rs(r, HEX, 32))),
        F("xoxa-2", lambda r: "xoxa-2-%d-%d-%d-%s" % (r.randint(10 ** 10, 10 ** 13), r.randint(10 ** 10, 10 ** 13),
                                                      r.randint(10 ** 10, 10 ** 13), rs(r, HEX, 64))),
        F("xoxe.xoxp-1", lambda r: "xoxe.xoxp-1-Mi0yLT" + rs(r, ALNUM, 140)),
        F("xoxe-1", lambda r: "xoxe-1-My0xLT" + rs(r, ALNUM, 130)),
        F("xapp-1", lambda r: "xapp-1-A%s-%d-%s" % (rs(r, UPPERNUM, 10), r.randint(10 ** 12, 10 ** 13), rs(r, HEX, 64))),
    ]
    L.append(V_("slack", "slack-token", slack_forms, ["SLACK_BOT_TOKEN", "SLACK_TOKEN", "SLACK_APP_TOKEN"],
                ["slack_token", "bot_token", "token"], "slack.com", "/api/auth.test", ("Authorization", "Bearer "),
                ['client = WebClient(token="{}")', 'const app = new App({ token: "{}", signingSecret });'],
                prefix="xoxb-", weight=12, errors=["slack_sdk.errors.SlackApiError: invalid_auth (token {})"],
                examples=["xoxb-not-a-real-token-this-will-not-work"]))
    L.append(V_("slack-webhook", "slack-webhook", [
        F("services", lambda r: "https://hooks.slack.com/services/T%s/B%s/%s" % (rs(r, UPPERNUM, r.choice([8, 10])),
                                                                                  rs(r, UPPERNUM, r.choice([8, 10])),
                                                                                  rs(r, ALNUM, 24))),
        F("workflows", lambda r: "https://hooks.slack.com/workflows/T%s/A%s/%d/%s" % (
            rs(r, UPPERNUM, 10), rs(r, UPPERNUM, 10), r.randint(10 ** 17, 10 ** 18), rs(r, ALNUM, 24)))],
        ["SLACK_WEBHOOK_URL", "SLACK_WEBHOOK"], ["webhook_url", "slack_webhook", "url"], "hooks.slack.com",
        code=['requests.post("{}", json={"text": msg})', 'SLACK_WEBHOOK = "{}"'], prefix="https://hooks.slack.com/services/",
        weight=8, url_secret=True,
        examples=["https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"]))
    stripe_forms = [F(p.rstrip("_"), (lambda p: lambda r: p + rs(r, ALNUM, r.choice([24, 34, 99 - len(p)])))(p))
                    for p in ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "sk_live_51")] + \
        [F("whsec", lambda r: "whsec_" + rs(r, ALNUM, 32))]
    L.append(V_("stripe", "stripe-key", stripe_forms, ["STRIPE_SECRET_KEY", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"],
                ["stripe_secret_key", "secret_key", "api_key"], "api.stripe.com", "/v1/charges",
                ("Authorization", "Bearer "), ['stripe.api_key = "{}"', 'const stripe = require("stripe")("{}");',
                                               'curl https://api.stripe.com/v1/charges -u {}:'],
                prefix="sk_live_", examples=["sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_BQokikJOvBiI2HlWgH4olfQ2"],
                weight=10, errors=["stripe.error.AuthenticationError: Invalid API Key provided: {}"]))
    L.append(V_("google", "google-api-key", [F("AIza", P("AIza", B64URL, 35))],
                ["GOOGLE_API_KEY", "GEMINI_API_KEY", "MAPS_API_KEY", "YOUTUBE_API_KEY"],
                ["google_api_key", "apiKey", "gemini_api_key"], "generativelanguage.googleapis.com",
                "/v1beta/models", ("x-goog-api-key", ""), ['genai.configure(api_key="{}")',
                                                            'client = genai.Client(api_key="{}")'],
                prefix="AIza", qparam="key", weight=8,
                errors=["google.api_core.exceptions.PermissionDenied: 403 API key not valid: {}"],
                wrong=lambda r: "AIza" + rs(r, "!@#$%&*", 2) + rs(r, B64URL, 33)))
    oa_mid = lambda r, n: rs(r, B64URL, n)
    openai_forms = [
        F("sk-proj", lambda r: "sk-proj-" + oa_mid(r, 74) + "T3BlbkFJ" + oa_mid(r, 74)),
        F("sk-proj", lambda r: "sk-proj-" + oa_mid(r, 58) + "T3BlbkFJ" + oa_mid(r, 58)),
        F("sk-proj-short", lambda r: "sk-proj-" + rs(r, ALNUM, 20) + "T3BlbkFJ" + rs(r, ALNUM, 20)),
        F("sk-legacy", lambda r: "sk-" + rs(r, ALNUM, 20) + "T3BlbkFJ" + rs(r, ALNUM, 20)),
        F("sk-svcacct", lambda r: "sk-svcacct-" + oa_mid(r, 74) + "T3BlbkFJ" + oa_mid(r, 74)),
        F("sk-admin", lambda r: "sk-admin-" + oa_mid(r, 58) + "T3BlbkFJ" + oa_mid(r, 58)),
    ]
    L.append(V_("openai", "openai-key", openai_forms, ["OPENAI_API_KEY", "OPENAI_KEY", "OPENAI_ADMIN_KEY"],
                ["openai_api_key", "api_key", "openai_key"], "api.openai.com", "/v1/chat/completions",
                ("Authorization", "Bearer "), ['client = OpenAI(api_key="{}")',
                                               'const openai = new OpenAI({ apiKey: "{}" });',
                                               'llm = ChatOpenAI(model="gpt-4o", api_key="{}")'],
                prefix="sk-proj-", weight=14,
                errors=["openai.AuthenticationError: Error code: 401 - {'error': {'message': 'Incorrect API key "
                        "provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.', "
                        "'type': 'invalid_request_error', 'code': 'invalid_api_key'}}",
                        "Incorrect API key provided: {}."]))
    ant = lambda p: lambda r: p + rs(r, B64URL, 93) + "AA"
    L.append(V_("anthropic", "api-key", [F("sk-ant-api03", ant("sk-ant-api03-"))] * 3 +
                [F("sk-ant-admin01", ant("sk-ant-admin01-")), F("sk-ant-oat01", ant("sk-ant-oat01-"))],
                ["ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"],
                ["anthropic_api_key", "api_key", "apiKey"], "api.anthropic.com", "/v1/messages", ("x-api-key", ""),
                ['client = anthropic.Anthropic(api_key="{}")', 'const anthropic = new Anthropic({ apiKey: "{}" });',
                 'llm = ChatAnthropic(model="claude-sonnet-4-5", api_key="{}")'],
                prefix="sk-ant-api03-", weight=12,
                errors=['anthropic.AuthenticationError: Error code: 401 - invalid x-api-key "{}"']))
    L.append(V_("google-oauth-client-secret", "api-key", [F("GOCSPX", P("GOCSPX-", B64URL, 28))],
                ["GOOGLE_CLIENT_SECRET", "OAUTH_CLIENT_SECRET"], ["client_secret", "google_client_secret"],
                "oauth2.googleapis.com", "/token", ("Authorization", "Basic "),
                ['"installed":{"client_id":"%s.apps.googleusercontent.com","client_secret":"{}"}' % "1234567890-abc"],
                prefix="GOCSPX-", qparam="client_secret"))
    L.append(V_("google-oauth-token", "api-key", [F("ya29", P("ya29.a0A", B64URL, 150)),
                                                  F("refresh-1//", P("1//0", B64URL, 99))],
                ["GOOGLE_OAUTH_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN"], ["access_token", "refresh_token"],
                "www.googleapis.com", "/drive/v3/files", prefix="ya29.", qparam="access_token", weight=5))
    L.append(V_("azure-storage", "api-key", [F("account-key", lambda r: base64.b64encode(rbytes(r, 64)).decode())],
                ["AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY"], ["account_key", "storage_key"],
                "acmestore.blob.core.windows.net", "/", ("x-ms-key", ""), ctx=True,
                examples=["Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="],
                weight=6))
    L.append(V_("azure-openai", "api-key", [F("32hex", P("", HEX, 32))], ["AZURE_OPENAI_API_KEY", "AZURE_OPENAI_KEY"],
                ["azure_openai_api_key", "api_key"], "acme-eastus.openai.azure.com",
                "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", ("api-key", ""),
                ['client = AzureOpenAI(azure_endpoint=endpoint, api_key="{}", api_version="2024-10-21")'], ctx=True))
    L.append(V_("azure-cognitive", "api-key", [F("32hex", P("", HEX, 32))],
                ["AZURE_SPEECH_KEY", "COGNITIVE_SERVICE_KEY", "TRANSLATOR_KEY"], ["subscription_key", "speech_key"],
                "westeurope.api.cognitive.microsoft.com", "/sts/v1.0/issueToken",
                ("Ocp-Apim-Subscription-Key", ""), ctx=True, weight=4))
    L.append(V_("azure-ad-client-secret", "api-key", [F("Q~", lambda r: rs(r, ALNUM, 3) + str(r.randint(7, 8)) + "Q~" +
                                                            rs(r, ALNUM + "_~.-", 34))],
                ["AZURE_CLIENT_SECRET", "ARM_CLIENT_SECRET"], ["client_secret", "clientSecret"],
                "login.microsoftonline.com", "/common/oauth2/v2.0/token", ctx=True, qparam="client_secret", weight=5))
    L.append(V_("azure-devops", "api-key", [F("pat52", P("", "abcdefghijklmnopqrstuvwxyz234567", 52)),
                                            F("pat84", lambda r: rs(r, ALNUM, 76) + "AZDO" + rs(r, ALNUM, 4))],
                ["AZURE_DEVOPS_EXT_PAT", "AZDO_PERSONAL_ACCESS_TOKEN", "SYSTEM_ACCESSTOKEN"], ["pat", "azure_devops_pat"],
                "dev.azure.com", "/acme/_apis/projects", ("Authorization", "Basic "), ctx=True, git="dev.azure.com",
                weight=4))
    L.append(V_("huggingface", "api-key", [F("hf", P("hf_", LETTERS, 34)), F("api_org", P("api_org_", LETTERS, 34))],
                ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACEHUB_API_TOKEN"], ["hf_token", "token"],
                "huggingface.co", "/api/whoami-v2", code=['login(token="{}")', 'client = InferenceClient(token="{}")'],
                prefix="hf_", git="huggingface.co", weight=8,
                wrong=lambda r: "hf_" + rs(r, LETTERS + string.digits, 34).replace("a", "7")))
    L.append(V_("groq", "api-key", [F("gsk", P("gsk_", ALNUM, 52))], ["GROQ_API_KEY"], ["groq_api_key", "api_key"],
                "api.groq.com", "/openai/v1/chat/completions", code=['client = Groq(api_key="{}")'], prefix="gsk_"))
    L.append(V_("replicate", "api-key", [F("r8", P("r8_", ALNUM, 37))], ["REPLICATE_API_TOKEN"], ["replicate_api_token"],
                "api.replicate.com", "/v1/predictions", code=['client = replicate.Client(api_token="{}")'], prefix="r8_"))
    L.append(V_("mistral", "api-key", [F("32alnum", P("", ALNUM, 32))], ["MISTRAL_API_KEY"], ["mistral_api_key"],
                "api.mistral.ai", "/v1/chat/completions", code=['client = Mistral(api_key="{}")'], ctx=True))
    L.append(V_("cohere", "api-key", [F("40alnum", P("", ALNUM, 40))], ["COHERE_API_KEY", "CO_API_KEY"],
                ["cohere_api_key"], "api.cohere.com", "/v2/chat", code=['co = cohere.ClientV2(api_key="{}")'], ctx=True))
    L.append(V_("together", "api-key", [F("64hex", P("", HEX, 64)), F("tgp_v1", P("tgp_v1_", B64URL, 43))],
                ["TOGETHER_API_KEY"], ["together_api_key"], "api.together.xyz", "/v1/chat/completions",
                code=['client = Together(api_key="{}")'], ctx=True))
    L.append(V_("perplexity", "api-key", [F("pplx", P("pplx-", ALNUM, 48))], ["PERPLEXITY_API_KEY", "PPLX_API_KEY"],
                ["perplexity_api_key"], "api.perplexity.ai", "/chat/completions", prefix="pplx-"))
    L.append(V_("xai", "api-key", [F("xai", P("xai-", ALNUM, 80))], ["XAI_API_KEY", "GROK_API_KEY"], ["xai_api_key"],
                "api.x.ai", "/v1/chat/completions", code=['client = OpenAI(base_url="https://api.x.ai/v1", api_key="{}")'],
                prefix="xai-"))
    L.append(V_("deepseek", "api-key", [F("sk-32hex", P("sk-", HEX, 32))], ["DEEPSEEK_API_KEY"], ["deepseek_api_key"],
                "api.deepseek.com", "/chat/completions",
                code=['client = OpenAI(base_url="https://api.deepseek.com", api_key="{}")'], ctx=True))
    L.append(V_("openrouter", "api-key", [F("sk-or-v1", P("sk-or-v1-", HEX, 64))], ["OPENROUTER_API_KEY"],
                ["openrouter_api_key"], "openrouter.ai", "/api/v1/chat/completions", prefix="sk-or-v1-",
                code=['client = OpenAI(base_url="https://openrouter.ai/api/v1", api_key="{}")'],
                wrong=lambda r: "sk-or-v1-" + rs(r, "ghijklmnopqrstuvwxyz", 64)))
    gl = lambda p, a=B64URL, n=20: F(p.rstrip("-_"), P(p, a, n))
    L.append(V_("gitlab", "gitlab-token", [gl("glpat-")] * 3 + [
        F("glpat-routable", lambda r: "glpat-" + rs(r, B64URL, 27) + ".01." + rs(r, LOWERNUM, 9)),
        gl("gldt-"), gl("glrt-"), gl("glptt-", HEX, 40), F("GR1348941", P("GR1348941", B64URL, 20)), gl("glft-"),
        F("glcbt", lambda r: "glcbt-%x_%s" % (r.randint(16, 255), rs(r, B64URL, 20))), gl("glimt-", LOWERNUM, 25),
        gl("glagent-", B64URL, 50), gl("gloas-", HEX, 64), gl("glsoat-")],
        ["GITLAB_TOKEN", "GL_TOKEN", "CI_JOB_TOKEN", "GITLAB_PRIVATE_TOKEN", "RUNNER_TOKEN"],
        ["gitlab_token", "private_token", "token"], "gitlab.com", "/api/v4/user", ("PRIVATE-TOKEN", ""),
        ['gl = gitlab.Gitlab("https://gitlab.com", private_token="{}")', 'token = "{}"'], prefix="glpat-", weight=12,
        git="gitlab.com", docker="registry.gitlab.com"))
    L.append(V_("digitalocean", "api-key", [F("dop_v1", P("dop_v1_", HEX, 64)), F("doo_v1", P("doo_v1_", HEX, 64)),
                                            F("dor_v1", P("dor_v1_", HEX, 64))],
                ["DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN", "DO_TOKEN"], ["do_token", "token"],
                "api.digitalocean.com", "/v2/account", prefix="dop_v1_", docker="registry.digitalocean.com",
                wrong=lambda r: "dop_v1_" + rs(r, "GHIJKLMNOPQRSTUVWXYZ", 64)))
    L.append(V_("cloudflare", "api-key", [F("api-token", P("", B64URL, 40))], ["CLOUDFLARE_API_TOKEN", "CF_API_TOKEN"],
                ["cloudflare_api_token", "api_token"], "api.cloudflare.com", "/client/v4/user/tokens/verify", ctx=True))
    L.append(V_("cloudflare-global-key", "api-key", [F("37hex", P("", HEX, 37))], ["CLOUDFLARE_API_KEY", "CF_API_KEY"],
                ["cloudflare_api_key"], "api.cloudflare.com", "/client/v4/zones", ("X-Auth-Key", ""), ctx=True, weight=4))
    L.append(V_("cloudflare-origin-ca", "api-key", [F("v1.0", lambda r: "v1.0-" + rs(r, HEX, 24) + "-" + rs(r, HEX, 146))],
                ["CLOUDFLARE_API_USER_SERVICE_KEY"], ["origin_ca_key"], "api.cloudflare.com", "/client/v4/certificates",
                ("X-Auth-User-Service-Key", ""), prefix="v1.0-", weight=3))
    L.append(V_("vercel", "api-key", [F("24alnum", P("", ALNUM, 24))], ["VERCEL_TOKEN"], ["vercel_token"],
                "api.vercel.com", "/v2/user", ctx=True, weight=4))
    L.append(V_("netlify", "api-key", [F("nfp", P("nfp_", ALNUM, 36))], ["NETLIFY_AUTH_TOKEN"], ["netlify_token"],
                "api.netlify.com", "/api/v1/sites", prefix="nfp_", weight=4))
    L.append(V_("supabase", "api-key", [F("sbp", P("sbp_", HEX, 40)), F("sb_secret", P("sb_secret_", B64URL, 31))],
                ["SUPABASE_ACCESS_TOKEN", "SUPABASE_SECRET_KEY"], ["supabase_token"], "api.supabase.com", "/v1/projects",
                prefix="sbp_", wrong=lambda r: "sbp_" + rs(r, "ghijklmnopqrstuvwxyz", 40)))
    L.append(V_("doppler", "api-key", [F("dp.pt", P("dp.pt.", ALNUM, 43)), F("dp.st", lambda r: "dp.st.prd." + rs(r, ALNUM, 43)),
                                       F("dp.sa", P("dp.sa.", ALNUM, 43)), F("dp.ct", P("dp.ct.", ALNUM, 43))],
                ["DOPPLER_TOKEN"], ["doppler_token"], "api.doppler.com", "/v3/configs/config/secrets", prefix="dp.pt."))
    L.append(V_("linear", "api-key", [F("lin_api", P("lin_api_", ALNUM, 40)), F("lin_oauth", P("lin_oauth_", HEX, 64))],
                ["LINEAR_API_KEY"], ["linear_api_key"], "api.linear.app", "/graphql", ("Authorization", ""),
                prefix="lin_api_"))
    L.append(V_("sentry", "api-key", [F("sntrys", sentry_org_token), F("sntryu", P("sntryu_", HEX, 64))],
                ["SENTRY_AUTH_TOKEN"], ["auth_token", "sentry_auth_token"], "sentry.io", "/api/0/organizations/",
                prefix="sntrys_"))
    L.append(V_("shopify", "api-key", [F(p.rstrip("_"), P(p, HEX, 32)) for p in ("shpat_", "shpss_", "shpca_", "shppa_")],
                ["SHOPIFY_ACCESS_TOKEN", "SHOPIFY_API_SECRET"], ["access_token", "shopify_token"],
                "acme-store.myshopify.com", "/admin/api/2025-01/shop.json", ("X-Shopify-Access-Token", ""),
                prefix="shpat_", wrong=lambda r: "shpat_" + rs(r, "GHIJKLMNOPQRSTUVWXYZ", 32)))
    L.append(V_("twilio", "api-key", [F("SK", P("SK", HEX, 32))], ["TWILIO_API_KEY", "TWILIO_API_KEY_SID"],
                ["api_key", "twilio_api_key"], "api.twilio.com", "/2010-04-01/Accounts.json", ("Authorization", "Basic "),
                prefix="SK", ctx=True, weight=4))
    L.append(V_("twilio-auth-token", "api-key", [F("32hex", P("", HEX, 32))], ["TWILIO_AUTH_TOKEN"], ["auth_token"],
                "api.twilio.com", "/2010-04-01/Accounts.json", ctx=True, weight=4))
    L.append(V_("sendgrid", "api-key", [F("SG", lambda r: "SG." + rs(r, B64URL, 22) + "." + rs(r, B64URL, 43))],
                ["SENDGRID_API_KEY"], ["sendgrid_api_key", "api_key"], "api.sendgrid.com", "/v3/mail/send",
                code=['sg = SendGridAPIClient("{}")'], prefix="SG."))
    L.append(V_("mailgun", "api-key", [F("key-", P("key-", HEX, 32)),
                                       F("new", lambda r: rs(r, HEX, 32) + "-" + rs(r, HEX, 8) + "-" + rs(r, HEX, 8))],
                ["MAILGUN_API_KEY"], ["mailgun_api_key"], "api.mailgun.net", "/v3/domains", ("Authorization", "Basic "),
                ctx=True))
    L.append(V_("postman", "api-key", [F("PMAK", lambda r: "PMAK-" + rs(r, HEX, 24) + "-" + rs(r, HEX, 34))],
                ["POSTMAN_API_KEY"], ["postman_api_key"], "api.getpostman.com", "/me", ("X-Api-Key", ""), prefix="PMAK-"))
    L.append(V_("atlassian", "api-key", [F("ATATT", atlassian_token)], ["JIRA_API_TOKEN", "ATLASSIAN_API_TOKEN",
                                                                        "CONFLUENCE_API_TOKEN"],
                ["api_token", "jira_token"], "acme.atlassian.net", "/rest/api/3/myself", ("Authorization", "Basic "),
                prefix="ATATT3xFfGF0"))
    L.append(V_("datadog", "api-key", [F("api-32hex", P("", HEX, 32))], ["DD_API_KEY", "DATADOG_API_KEY"],
                ["api_key", "datadog_api_key"], "api.datadoghq.com", "/api/v1/validate", ("DD-API-KEY", ""), ctx=True))
    L.append(V_("datadog-app", "api-key", [F("app-40hex", P("", HEX, 40))], ["DD_APP_KEY", "DD_APPLICATION_KEY"],
                ["app_key"], "api.datadoghq.com", "/api/v1/dashboard", ("DD-APPLICATION-KEY", ""), ctx=True, weight=4))
    L.append(V_("newrelic", "api-key", [F("NRAK", P("NRAK-", UPPERNUM, 27)),
                                        F("license", lambda r: rs(r, HEX, 36) + "NRAL")],
                ["NEW_RELIC_API_KEY", "NEW_RELIC_LICENSE_KEY"], ["api_key", "license_key"], "api.newrelic.com",
                "/graphql", ("API-Key", ""), prefix="NRAK-",
                wrong=lambda r: "NRAK-" + rs(r, string.ascii_lowercase, 27)))
    L.append(V_("grafana", "api-key", [F("glsa", lambda r: "glsa_" + rs(r, ALNUM, 32) + "_" + rs(r, HEX, 8)),
                                       F("glc", grafana_cloud_token)],
                ["GRAFANA_SERVICE_ACCOUNT_TOKEN", "GRAFANA_CLOUD_ACCESS_POLICY_TOKEN", "GRAFANA_TOKEN"],
                ["grafana_token", "token"], "acme.grafana.net", "/api/dashboards/home", prefix="glsa_"))
    L.append(V_("databricks", "api-key", [F("dapi", P("dapi", HEX, 32)), F("dapi-2", lambda r: "dapi" + rs(r, HEX, 32) + "-2")],
                ["DATABRICKS_TOKEN"], ["token", "databricks_token"], "adb-1234567890123456.7.azuredatabricks.net",
                "/api/2.0/clusters/list", prefix="dapi", wrong=lambda r: "dapi" + rs(r, "ghijklmnopqrstuvwxyz", 32)))
    L.append(V_("terraform-cloud", "api-key", [F("atlasv1", lambda r: rs(r, ALNUM, 14) + ".atlasv1." + rs(r, B64URL, 67))],
                ["TFE_TOKEN", "TF_TOKEN_app_terraform_io", "ATLAS_TOKEN"], ["token"], "app.terraform.io",
                "/api/v2/account/details", code=['credentials "app.terraform.io" {\n  token = "{}"\n}'],
                prefix=".atlasv1."))
    L.append(V_("vault", "api-key", [F("hvs", lambda r: "hvs.CAESI" + rs(r, B64URL, 86)), F("hvb", lambda r: "hvb.AAAAAQ" + rs(r, B64URL, 132)),
                                     F("hvs-short", P("hvs.", ALNUM, 24)), F("hvr", P("hvr.", ALNUM, 24))],
                ["VAULT_TOKEN"], ["vault_token", "token"], "vault.corp.test:8200", "/v1/secret/data/app",
                ("X-Vault-Token", ""), prefix="hvs."))
    L.append(V_("jfrog", "api-key", [F("AKCp", P("AKCp", ALNUM, 69)),
                                     F("reference", lambda r: "cmVmdGtuOjAxOjE3" + rs(r, ALNUM, 48))],
                ["JFROG_ACCESS_TOKEN", "ARTIFACTORY_API_KEY"], ["artifactory_api_key", "password"],
                "acme.jfrog.io", "/artifactory/api/system/ping", ("X-JFrog-Art-Api", ""), prefix="AKCp",
                docker="acme.jfrog.io"))
    L.append(V_("heroku", "api-key", [F("HRKU", P("HRKU-AA", B64URL, 58)), F("uuid-ctx", ruuid)],
                ["HEROKU_API_KEY"], ["heroku_api_key"], "api.heroku.com", "/account", prefix="HRKU-", ctx=True,
                git="git.heroku.com", weight=4))
    L.append(V_("flyio", "api-key", [F("fo1", P("fo1_", B64URL, 43)), F("FlyV1-fm2", lambda r: "FlyV1 fm2_" + rs(r, B64, 180))],
                ["FLY_API_TOKEN", "FLY_ACCESS_TOKEN"], ["fly_api_token"], "api.machines.dev", "/v1/apps",
                prefix="fo1_", weight=4))
    L.append(V_("telegram", "api-key", [F("bot", lambda r: "%d:AA%s" % (r.randint(10 ** 8, 8 * 10 ** 9), rs(r, B64URL, 33)))],
                ["TELEGRAM_BOT_TOKEN", "TG_TOKEN"], ["bot_token", "telegram_token"], "api.telegram.org", "/getMe",
                code=['bot = telebot.TeleBot("{}")', 'application = ApplicationBuilder().token("{}").build()'],
                weight=5))
    L.append(V_("discord", "api-key", [F("bot", discord_token)], ["DISCORD_TOKEN", "DISCORD_BOT_TOKEN"],
                ["discord_token", "token"], "discord.com", "/api/v10/users/@me", ("Authorization", "Bot "),
                code=['client.run("{}")'], weight=5))
    L.append(V_("discord-webhook", "api-key", [F("webhook", lambda r: "https://discord.com/api/webhooks/%d/%s" %
                                                  (r.randint(10 ** 17, 2 * 10 ** 18), rs(r, B64URL, 68)))],
                ["DISCORD_WEBHOOK_URL"], ["webhook_url"], "discord.com", url_secret=True, weight=4,
                prefix="https://discord.com/api/webhooks/"))
    L.append(V_("msteams-webhook", "api-key", [F("webhook", lambda r: "https://acme.webhook.office.com/webhookb2/%s@%s/"
                                                  "IncomingWebhook/%s/%s" % (ruuid(r), ruuid(r), rs(r, HEX, 32), ruuid(r)))],
                ["TEAMS_WEBHOOK_URL"], ["webhook_url"], "acme.webhook.office.com", url_secret=True, weight=3))
    L.append(V_("pulumi", "api-key", [F("pul", P("pul-", HEX, 40))], ["PULUMI_ACCESS_TOKEN"], ["pulumi_token"],
                "api.pulumi.com", "/api/user", ("Authorization", "token "), prefix="pul-"))
    L.append(V_("dockerhub", "api-key", [F("dckr_pat", P("dckr_pat_", B64URL, 27)), F("dckr_oat", P("dckr_oat_", B64URL, 32))],
                ["DOCKERHUB_TOKEN", "DOCKER_PASSWORD"], ["password", "dockerhub_token"], "hub.docker.com",
                "/v2/users/login", prefix="dckr_pat_", docker="docker.io"))
    L.append(V_("notion", "api-key", [F("secret_", P("secret_", ALNUM, 43)),
                                      F("ntn", lambda r: "ntn_%011d%s" % (r.randrange(10 ** 11), rs(r, ALNUM, 35)))],
                ["NOTION_TOKEN", "NOTION_API_KEY"], ["notion_token"], "api.notion.com", "/v1/users/me", prefix="ntn_"))
    L.append(V_("airtable", "api-key", [F("pat", lambda r: "pat" + rs(r, ALNUM, 14) + "." + rs(r, HEX, 64))],
                ["AIRTABLE_API_KEY", "AIRTABLE_TOKEN"], ["airtable_token"], "api.airtable.com", "/v0/meta/whoami",
                prefix="pat"))
    L.append(V_("figma", "api-key", [F("figd", P("figd_", B64URL, 40))], ["FIGMA_TOKEN", "FIGMA_ACCESS_TOKEN"],
                ["figma_token"], "api.figma.com", "/v1/me", ("X-Figma-Token", ""), prefix="figd_"))
    L.append(V_("mapbox", "api-key", [F("sk.eyJ", lambda r: "sk." + b64u(json.dumps({"u": r.choice(["acme", "mapsdev"]),
                                                                                     "a": rs(r, LOWERNUM, 25)},
                                                                                    separators=(",", ":")).encode())
                                        + "." + rs(r, B64URL, 22))],
                ["MAPBOX_SECRET_TOKEN", "MAPBOX_DOWNLOADS_TOKEN"], ["mapbox_token"], "api.mapbox.com",
                "/tokens/v2", qparam="access_token", prefix="sk.eyJ1Ijoi"))
    L.append(V_("asana", "api-key", [F("1/", lambda r: "1/%016d:%s" % (r.randrange(10 ** 16), rs(r, HEX, 32))),
                                     F("2/", lambda r: "2/%016d/%016d:%s" % (r.randrange(10 ** 16), r.randrange(10 ** 16),
                                                                              rs(r, HEX, 32)))],
                ["ASANA_ACCESS_TOKEN", "ASANA_PAT"], ["asana_token"], "app.asana.com", "/api/1.0/users/me", weight=4))
    L.append(V_("square", "api-key", [F("EAAA", P("EAAA", B64URL, 60)), F("sq0atp", P("sq0atp-", B64URL, 22)),
                                      F("sq0csp", P("sq0csp-", B64URL, 43))],
                ["SQUARE_ACCESS_TOKEN"], ["square_access_token"], "connect.squareup.com", "/v2/locations",
                prefix="sq0atp-", weight=4))
    L.append(V_("braintree", "api-key", [F("access_token$production", lambda r: "access_token$production$%s$%s" %
                                         (rs(r, LOWERNUM, 16), rs(r, HEX, 32)))],
                ["BRAINTREE_ACCESS_TOKEN", "PAYPAL_ACCESS_TOKEN"], ["access_token"], "api.braintreegateway.com",
                "/merchants", prefix="access_token$production$", weight=3))
    L.append(V_("contentful", "api-key", [F("CFPAT", P("CFPAT-", B64URL, 43))], ["CONTENTFUL_MANAGEMENT_TOKEN"],
                ["management_token"], "api.contentful.com", "/spaces", prefix="CFPAT-", weight=4))
    L.append(V_("bitbucket", "api-key", [F("ATBB", lambda r: "ATBB" + rs(r, ALNUM, 28) + rs(r, HEXU, 8))],
                ["BITBUCKET_APP_PASSWORD", "BB_TOKEN"], ["app_password"], "api.bitbucket.org", "/2.0/user",
                ("Authorization", "Basic "), prefix="ATBB", git="bitbucket.org", weight=4))
    L.append(V_("circleci", "api-key", [F("CCIPAT", lambda r: "CCIPAT_" + rs(r, ALNUM, 22) + "_" + rs(r, HEX, 40))],
                ["CIRCLECI_TOKEN", "CIRCLE_TOKEN"], ["circle_token"], "circleci.com", "/api/v2/me", ("Circle-Token", ""),
                prefix="CCIPAT_", weight=4))
    L.append(V_("buildkite", "api-key", [F("bkua", P("bkua_", HEX, 40))], ["BUILDKITE_API_TOKEN"], ["api_token"],
                "api.buildkite.com", "/v2/user", prefix="bkua_", weight=4))
    L.append(V_("planetscale", "api-key", [F("pscale_tkn", P("pscale_tkn_", B64URL, 43)), F("pscale_pw", P("pscale_pw_", B64URL, 43))],
                ["PLANETSCALE_SERVICE_TOKEN", "DATABASE_PASSWORD"], ["service_token", "password"], "api.planetscale.com",
                "/v1/organizations", prefix="pscale_tkn_", weight=4))
    L.append(V_("render", "api-key", [F("rnd", P("rnd_", ALNUM, 32))], ["RENDER_API_KEY"], ["render_api_key"],
                "api.render.com", "/v1/services", prefix="rnd_", weight=4))
    L.append(V_("neon", "api-key", [F("napi", P("napi_", LOWERNUM, 64))], ["NEON_API_KEY"], ["neon_api_key"],
                "console.neon.tech", "/api/v2/projects", prefix="napi_", weight=4))
    L.append(V_("pinecone", "api-key", [F("pcsk", lambda r: "pcsk_" + rs(r, ALNUM, 5) + "_" + rs(r, ALNUM, 64))],
                ["PINECONE_API_KEY"], ["pinecone_api_key"], "api.pinecone.io", "/indexes", ("Api-Key", ""),
                code=['pc = Pinecone(api_key="{}")'], prefix="pcsk_", weight=4))
    L.append(V_("langsmith", "api-key", [F("lsv2_pt", lambda r: "lsv2_pt_" + rs(r, HEX, 32) + "_" + rs(r, HEX, 10)),
                                         F("lsv2_sk", lambda r: "lsv2_sk_" + rs(r, HEX, 32) + "_" + rs(r, HEX, 10))],
                ["LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"], ["langsmith_api_key"], "api.smith.langchain.com",
                "/api/v1/sessions", ("x-api-key", ""), prefix="lsv2_pt_", weight=4))
    L.append(V_("wandb", "api-key", [F("40hex", P("", HEX, 40))], ["WANDB_API_KEY"], ["wandb_api_key"],
                "api.wandb.ai", "/graphql", ctx=True, code=['wandb.login(key="{}")'], weight=4))
    L.append(V_("tavily", "api-key", [F("tvly", P("tvly-", ALNUM, 32)), F("tvly-dev", P("tvly-dev-", ALNUM, 32))],
                ["TAVILY_API_KEY"], ["tavily_api_key"], "api.tavily.com", "/search",
                code=['client = TavilyClient(api_key="{}")'], prefix="tvly-", weight=4))
    L.append(V_("firecrawl", "api-key", [F("fc", P("fc-", HEX, 32))], ["FIRECRAWL_API_KEY"], ["firecrawl_api_key"],
                "api.firecrawl.dev", "/v1/scrape", prefix="fc-", weight=4))
    L.append(V_("elevenlabs", "api-key", [F("sk_48hex", P("sk_", HEX, 48))], ["ELEVENLABS_API_KEY", "XI_API_KEY"],
                ["elevenlabs_api_key"], "api.elevenlabs.io", "/v1/user", ("xi-api-key", ""), ctx=True, weight=4))
    L.append(V_("fireworks", "api-key", [F("fw", P("fw_", ALNUM, 24))], ["FIREWORKS_API_KEY"], ["fireworks_api_key"],
                "api.fireworks.ai", "/inference/v1/chat/completions", prefix="fw_", weight=4))
    L.append(V_("cerebras", "api-key", [F("csk", P("csk-", LOWERNUM, 48))], ["CEREBRAS_API_KEY"], ["cerebras_api_key"],
                "api.cerebras.ai", "/v1/chat/completions", prefix="csk-", weight=4))
    L.append(V_("voyage", "api-key", [F("pa", P("pa-", B64URL, 43))], ["VOYAGE_API_KEY"], ["voyage_api_key"],
                "api.voyageai.com", "/v1/embeddings", prefix="pa-", weight=4))
    L.append(V_("resend", "api-key", [F("re", lambda r: "re_" + rs(r, ALNUM, 8) + "_" + rs(r, ALNUM, 24))],
                ["RESEND_API_KEY"], ["resend_api_key"], "api.resend.com", "/emails", prefix="re_", weight=4))
    L.append(V_("brevo", "api-key", [F("xkeysib", lambda r: "xkeysib-" + rs(r, HEX, 64) + "-" + rs(r, ALNUM, 16))],
                ["BREVO_API_KEY", "SENDINBLUE_API_KEY"], ["brevo_api_key"], "api.brevo.com", "/v3/account",
                ("api-key", ""), prefix="xkeysib-", weight=4))
    L.append(V_("mailchimp", "api-key", [F("dc", lambda r: rs(r, HEX, 32) + "-us" + str(r.randint(1, 21)))],
                ["MAILCHIMP_API_KEY"], ["mailchimp_api_key"], "us6.api.mailchimp.com", "/3.0/ping",
                ("Authorization", "apikey "), ctx=True, weight=4))
    L.append(V_("1password", "api-key", [F("ops", lambda r: "ops_eyJ" + rs(r, B64URL, 240))],
                ["OP_SERVICE_ACCOUNT_TOKEN"], ["service_account_token"], "my.1password.com", "/api/v1/vaults",
                prefix="ops_eyJ", weight=4))
    L.append(V_("facebook", "api-key", [F("EAA", lambda r: "EAA" + r.choice("BGIJ") + rs(r, ALNUM, 160))],
                ["FACEBOOK_ACCESS_TOKEN", "META_ACCESS_TOKEN", "WHATSAPP_TOKEN"], ["access_token"], "graph.facebook.com",
                "/v19.0/me", qparam="access_token", prefix="EAAG", weight=4))
    L.append(V_("twitter", "api-key", [F("bearer", lambda r: "AAAAAAAAAAAAAAAAAAAAA" + rs(r, ALNUM, 30) + "%3D" + rs(r, ALNUM, 50))],
                ["TWITTER_BEARER_TOKEN", "X_BEARER_TOKEN"], ["bearer_token"], "api.twitter.com", "/2/users/me",
                prefix="AAAAAAAAAAAAAAAAAAAAA", weight=4))
    L.append(V_("firebase-fcm", "api-key", [F("AAAA:APA91b", lambda r: "AAAA" + rs(r, B64URL, 7) + ":APA91b" + rs(r, B64URL, 134))],
                ["FCM_SERVER_KEY"], ["server_key"], "fcm.googleapis.com", "/fcm/send", ("Authorization", "key="),
                prefix="AAAA", weight=3))
    L.append(V_("dropbox", "api-key", [F("sl.", lambda r: "sl.B" + rs(r, B64URL, 135))], ["DROPBOX_ACCESS_TOKEN"],
                ["access_token"], "api.dropboxapi.com", "/2/users/get_current_account", prefix="sl.", weight=3))
    L.append(V_("okta", "api-key", [F("00", P("00", B64URL, 40))], ["OKTA_API_TOKEN", "OKTA_CLIENT_TOKEN"], ["okta_token"],
                "acme.okta.com", "/api/v1/users/me", ("Authorization", "SSWS "), ctx=True, weight=4))
    L.append(V_("algolia", "api-key", [F("admin-32hex", P("", HEX, 32))], ["ALGOLIA_ADMIN_KEY", "ALGOLIA_API_KEY"],
                ["admin_api_key"], "acme-dsn.algolia.net", "/1/indexes", ("X-Algolia-API-Key", ""), ctx=True, weight=4))
    L.append(V_("alibaba", "api-key", [F("LTAI", P("LTAI", ALNUM, 20))], ["ALIBABA_CLOUD_ACCESS_KEY_ID", "ALICLOUD_ACCESS_KEY"],
                ["access_key_id"], "ecs.aliyuncs.com", "/", prefix="LTAI", weight=4))
    L.append(V_("tencent", "api-key", [F("AKID", P("AKID", ALNUM, 32))], ["TENCENTCLOUD_SECRET_ID"], ["secret_id"],
                "cvm.tencentcloudapi.com", "/", prefix="AKID", weight=3))
    L.append(V_("ibm-cloud", "api-key", [F("44", P("", B64URL, 44))], ["IBMCLOUD_API_KEY", "IC_API_KEY"], ["apikey"],
                "iam.cloud.ibm.com", "/identity/token", ctx=True, weight=3))
    L.append(V_("plaid", "api-key", [F("access-production", lambda r: "access-production-" + ruuid(r)),
                                     F("access-sandbox", lambda r: "access-sandbox-" + ruuid(r))],
                ["PLAID_ACCESS_TOKEN"], ["access_token"], "production.plaid.com", "/accounts/get",
                prefix="access-production-", weight=3))
    L.append(V_("crates-io", "api-key", [F("cio", P("cio", ALNUM, 32))], ["CARGO_REGISTRY_TOKEN", "CARGO_REGISTRIES_CRATES_IO_TOKEN"],
                ["token"], "crates.io", "/api/v1/me", ("Authorization", ""),
                code=['[registry]\ntoken = "{}"', 'cargo login {}'], prefix="cio", weight=4))
    L.append(V_("rubygems", "api-key", [F("rubygems", P("rubygems_", HEX, 48))], ["GEM_HOST_API_KEY", "RUBYGEMS_API_KEY"],
                [":rubygems_api_key"], "rubygems.org", "/api/v1/gems", ("Authorization", ""), prefix="rubygems_", weight=4))
    L.append(V_("nuget", "api-key", [F("oy2", P("oy2", LOWERNUM, 43))], ["NUGET_API_KEY"], ["apikey"], "api.nuget.org",
                "/v3/index.json", ("X-NuGet-ApiKey", ""), code=['dotnet nuget push pkg.nupkg --api-key {} --source nuget.org'],
                prefix="oy2", weight=4))
    L.append(V_("sonarqube", "api-key", [F(p.rstrip("_"), P(p, HEX, 40)) for p in ("squ_", "sqp_", "sqa_")],
                ["SONAR_TOKEN"], ["sonar.token", "sonar.login"], "sonarcloud.io", "/api/authentication/validate",
                prefix="squ_", weight=4))
    L.append(V_("honeycomb", "api-key", [F("hcaik", P("hcaik_", LOWERNUM, 58))], ["HONEYCOMB_API_KEY"], ["api_key"],
                "api.honeycomb.io", "/1/auth", ("X-Honeycomb-Team", ""), prefix="hcaik_", weight=3))
    L.append(V_("stability", "api-key", [F("sk-48", P("sk-", ALNUM, 48))], ["STABILITY_API_KEY"], ["stability_api_key"],
                "api.stability.ai", "/v1/user/account", ctx=True, weight=3))
    L.append(V_("jwt", "jwt", [F("jwt", jwt_make)] * 3 + [F("k8s-sa", lambda r: jwt_make(r, "k8s")),
                                                          F("supabase-service-role", lambda r: jwt_make(r, "supabase-service"))],
                ["ACCESS_TOKEN", "ID_TOKEN", "AUTH_TOKEN", "SUPABASE_SERVICE_ROLE_KEY"],
                ["access_token", "id_token", "token", "service_role_key"], "api.acme.test", "/v1/me",
                prefix="eyJhbGciOi", weight=14, qparam="access_token",
                examples=["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
                          "IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"]))
    return L


# ---------------------------------------------------------------------------
# 6. how logs and files show a token
# ---------------------------------------------------------------------------

USERS = ["deploy", "ci-bot", "jdoe", "build", "svc-release"]
BENIGN_ENV = ["HOME=/home/dev", "HOSTNAME=runner-7f3k2", "LANG=C.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin",
              "PWD=/home/dev/project", "SHELL=/bin/bash", "SHLVL=1", "TERM=xterm-256color", "USER=dev",
              "NODE_ENV=production", "LOG_LEVEL=info", "TZ=UTC", "CI=true", "GIT_TERMINAL_PROMPT=0",
              "PYTHONUNBUFFERED=1", "RUST_BACKTRACE=1", "KUBECONFIG=/home/dev/.kube/config"]


def sec(x):
    return isinstance(x, S)


def like(x, v):
    """Wrap a derived value as secret iff x is."""
    return S(v) if sec(x) else v


def basic(v):
    return v.header[1] == "Basic "


def tr_bare(rng, v, x):
    return [x]


def tr_export(rng, v, x):
    q = rng.choice(["", '"', "'"])
    return ["export %s=%s" % (rng.choice(v.env), q), x, q]


def tr_dotenv(rng, v, x):
    pre = rng.choice(["", "APP_ENV=production\n", "# generated by setup.sh\nPORT=3000\n"])
    post = rng.choice(["", "\nDEBUG=false", "\nREDIS_URL=redis://localhost:6379/0"])
    return [pre + '%s="' % rng.choice(v.env), x, '"' + post]


def tr_yaml(rng, v, x):
    k = rng.choice(v.keys)
    style = rng.randrange(4)
    if style == 0:
        return ["%s: " % k, x]
    if style == 1:
        return ["%s:\n  %s: " % (v.rule.replace("-", "_"), k), x, "\n  timeout: 30"]
    if style == 2:
        return ['%s: "' % k, x, '"']
    return ["env:\n  - name: %s\n    value: " % rng.choice(v.env), x]


def tr_json(rng, v, x):
    k = rng.choice(v.keys)
    if rng.random() < 0.5:
        return ['{"%s": "' % k, x, '", "region": "%s"}' % rng.choice(["us-east-1", "eu-west-1", "auto"])]
    return ['{\n  "name": "%s",\n  "%s": "' % (rng.choice(["prod", "staging", "ci"]), k), x,
            '",\n  "enabled": true\n}']


def tr_header(rng, v, x):
    name, pre = v.header
    if basic(v):
        return ["%s: Basic " % name, like(x, base64.b64encode(("%s:%s" % (rng.choice(USERS), x)).encode()).decode())]
    if rng.random() < 0.3:
        name = name.lower()
    return ["%s: %s" % (name, pre), x]


def tr_curl(rng, v, x):
    name, pre = v.header
    url = "https://%s%s" % (v.host, v.path)
    if v.url_secret:
        return ["curl -X POST -H 'Content-type: application/json' --data '{\"text\":\"deploy finished\"}' ", x]
    if basic(v):
        return ["curl -s -u %s:" % rng.choice(["api", USERS[0], "apikey"]), x, " %s" % url]
    q = rng.choice(['"', "'"])
    return ["curl -sS -H %s%s: %s" % (q, name, pre), x, "%s %s" % (q, url)]


def tr_query(rng, v, x):
    if v.rule == "telegram":
        return ["GET https://api.telegram.org/bot", x, "/getUpdates?offset=%d" % rng.randint(1, 99999)]
    url = "https://%s%s?%s=" % (v.host, v.path, v.qparam)
    if rng.random() < 0.5:
        return ["INFO http.client: GET " + url, x, "&limit=%d -> 200 (%d ms)" % (rng.choice([10, 50, 100]),
                                                                               rng.randint(20, 900))]
    return ['"GET %s' % url.split(v.host, 1)[1], x, '&page=2 HTTP/1.1" 200 %d "-" "python-requests/2.32.3"'
            % rng.randint(200, 9000)]


def tr_git(rng, v, x):
    user = {"github.com": rng.choice(["x-access-token", "oauth2", "jdoe"]), "gitlab.com": rng.choice(["oauth2", "gitlab-ci-token"]),
            "huggingface.co": "jdoe", "bitbucket.org": "jdoe", "dev.azure.com": "acme", "git.heroku.com": "heroku"
            }.get(v.git, "git")
    repo = "%s/%s.git" % (rng.choice(["acme", "corp", "jdoe"]), rng.choice(["api", "infra", "web", "models"]))
    if rng.random() < 0.5:
        return ["origin\thttps://%s:" % user, x, "@%s/%s (fetch)\norigin\thttps://%s:" % (v.git, repo, user), x,
                "@%s/%s (push)" % (v.git, repo)]
    return ["git clone https://%s:" % user, x, "@%s/%s\nCloning into '%s'..." % (v.git, repo, repo.split("/")[1][:-4])]


def tr_docker(rng, v, x):
    return ["docker login %s -u %s -p " % (v.docker, rng.choice(USERS)), x,
            "\nWARNING! Using --password via the CLI is insecure. Use --password-stdin.\nLogin Succeeded"]


def tr_envdump(rng, v, x):
    lines = rng.sample(BENIGN_ENV, rng.randint(4, 8))
    env = rng.choice(v.env)
    lines.append(env + "=\0")
    lines.sort()
    t = "\n".join(lines)
    a, b = t.split("\0")
    return [prompt(rng) + "env | sort\n" + a, x, b]


def tr_code(rng, v, x):
    tpl = rng.choice(list(v.code) or CODE_GENERIC)
    a, b = tpl.split("{}", 1)
    return [a, x, b]


def tr_kube(rng, v, x):
    raw = str(x) + ("\n" if rng.random() < 0.3 else "")
    b = base64.b64encode(raw.encode()).decode()
    k = rng.choice(v.env)
    return k8s_secret_yaml(rng, [(k, like(x, b))], rng.choice(["app-env", v.rule + "-credentials"]),
                           rng.choice(["default", "prod", "ci"]), "Opaque")


GENERIC_ERRORS = ["Error: 401 Unauthorized: invalid token '{}'",
                  "WARN auth failed for key={} (status=403)",
                  "requests.exceptions.HTTPError: 401 Client Error: Unauthorized (token {})",
                  "error: authentication with {} was rejected by the server"]


def tr_error(rng, v, x):
    tpl = rng.choice(list(v.errors) or GENERIC_ERRORS)
    a, b = tpl.split("{}", 1)
    return [a, x, b]


# holdout-only token renderings
def tr_netrc(rng, v, x):
    return ["machine %s\n  login %s\n  password " % (v.host.split("/")[0], rng.choice(USERS)), x]


def tr_curlv(rng, v, x):
    name, pre = v.header
    if basic(v):
        val = [like(x, base64.b64encode(("api:%s" % x).encode()).decode())]
        pre = "Basic "
    else:
        val = [x]
    return ["> GET %s HTTP/2\n> Host: %s\n> user-agent: curl/8.5.0\n> %s: %s" % (v.path or "/", v.host, name.lower(), pre)
            ] + val + ["\n> accept: */*\n> \n< HTTP/2 200"]


def tr_setx(rng, v, x):
    if rng.random() < 0.5 or basic(v) or v.url_secret:
        return ["+ export %s=" % rng.choice(v.env), x]
    return ["+ curl -fsSL -H '%s: %s" % v.header, x, "' https://%s%s" % (v.host, v.path)]


def tr_dinspect(rng, v, x):
    return ['            "Env": [\n                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",\n'
            '                "%s=' % rng.choice(v.env), x, '",\n                "LANG=C.UTF-8"\n            ],']


def tr_pyrepr(rng, v, x):
    return ["DEBUG settings loaded: {'%s': '" % rng.choice(v.keys), x, "', 'timeout': 30, 'retries': 3}"]


def tr_toml(rng, v, x):
    return ["[%s]\n%s = \"" % (v.rule.replace("-", "_"), rng.choice(v.keys).lstrip(":").replace(".", "_")), x, '"']


def tr_powershell(rng, v, x):
    if rng.random() < 0.5:
        return ['PS C:\\Users\\dev> $env:%s = "' % rng.choice(v.env), x, '"']
    return ["C:\\build> set %s=" % rng.choice(v.env), x]


TOKEN_RENDERS_TUNE = [("bare", tr_bare), ("export", tr_export), ("dotenv", tr_dotenv), ("yaml", tr_yaml),
                      ("json", tr_json), ("header", tr_header), ("curl", tr_curl), ("query-string", tr_query),
                      ("git-remote", tr_git), ("docker-login", tr_docker), ("env-dump", tr_envdump),
                      ("code", tr_code), ("kubectl-yaml-b64", tr_kube), ("error-echo", tr_error)]
TOKEN_RENDERS_HOLDOUT_ONLY = [("netrc", tr_netrc), ("curl-verbose", tr_curlv), ("set-x-trace", tr_setx),
                              ("docker-inspect-env", tr_dinspect), ("python-dict-repr", tr_pyrepr), ("toml", tr_toml),
                              ("powershell-env", tr_powershell)]
URL_OK = {"bare", "export", "dotenv", "yaml", "json", "curl", "env-dump", "code", "kubectl-yaml-b64", "error-echo",
          "set-x-trace", "docker-inspect-env", "python-dict-repr", "toml", "powershell-env"}


def allowed_renders(v, split, positive=True):
    out = []
    for name, fn in TOKEN_RENDERS_TUNE + (TOKEN_RENDERS_HOLDOUT_ONLY if split == "holdout" else []):
        if v.url_secret and name not in URL_OK:
            continue
        if name == "git-remote" and not v.git:
            continue
        if name == "docker-login" and not v.docker:
            continue
        if name == "netrc" and v.url_secret:
            continue
        if v.ctx and (name in ("bare", "query-string") or (name == "error-echo" and not v.errors)):
            continue
        if v.ctx and name == "header" and v.header == ("Authorization", "Bearer "):
            continue
        if not positive and name == "kubectl-yaml-b64":
            continue
        out.append((name, fn))
    return out


# ---------------------------------------------------------------------------
# 7. token rows: positives, near misses, AWS pairs, bad checksums
# ---------------------------------------------------------------------------


class Deck:
    def __init__(self, rng, items):
        self.rng, self.items, self.cur = rng, list(items), []

    def draw(self):
        if not self.cur:
            self.cur = self.items[:]
            self.rng.shuffle(self.cur)
        return self.cur.pop()


def near_miss_values(rng, v, tok):
    """(subkind, value, ambiguous) near misses for one vendor."""
    pre = v.prefix or ""
    if tok.startswith("https://"):
        pre = tok[:tok.rfind("/") + 1]
    body = tok[len(pre):] if pre and tok.startswith(pre) else tok
    env = rng.choice(v.env)
    key = rng.choice(v.keys).lstrip(":")
    out = []
    if pre and not v.url_secret:
        out.append(("masked", rng.choice([pre + "*" * rng.randint(8, 24) + body[-4:], pre + "..." + body[-4:],
                                          pre + "****", tok[:len(pre) + 4] + "\u2026" + body[-4:]]), False))
    else:
        out.append(("masked", rng.choice(["*" * len(tok), tok[:4] + "*" * 12 + tok[-4:], "[REDACTED]", "<redacted>",
                                          "********"]), False))
    out.append(("template", rng.choice(["${%s}" % env, "$%s" % env, "{{ .Values.%s }}" % key.replace(".", "_"),
                                        "${{ secrets.%s }}" % env, "<your-%s-token>" % v.family,
                                        "YOUR_%s_HERE" % env, "%%%s%%" % env, "changeme", "<your-api-key>",
                                        "YOUR_API_KEY_HERE", "{{ .Values.apiKey }}",
                                        "op://ci/%s/credential" % v.family,
                                        (pre + "x" * len(body)) if pre else "x" * len(tok),
                                        (pre + "X" * min(len(body), 40)) if pre else "XXXXXXXXXXXXXXXX"]), False))
    if pre and not v.url_secret:
        out.append(("too-short", pre + body[:max(3, len(body) // 3)], True))
    if v.wrong:
        out.append(("wrong-charset", v.wrong(rng), True))
    for ex in v.examples:
        out.append(("doc-example", ex, "EXAMPLE" not in ex.upper() and "XXXX" not in ex))
    if rng.random() < 0.5:
        out.append(("empty", "", False))
    return out


def prose_near_miss(rng, v):
    pre = v.prefix
    name = v.family.replace("-", " ")
    env = rng.choice(v.env)
    if pre:
        return rng.choice([
            "%s tokens start with %s; rotate them every 90 days." % (name.title(), pre),
            "error: expected a token beginning with \"%s\", got an empty string" % pre,
            "# The secret scanner flags anything that looks like %s... in commits" % pre,
            "Tip: %s values look like `%s<random>`; store them in %s, never in code." % (name, pre, env)])
    return rng.choice(["Set %s in your shell before running the examples." % env,
                       "warning: %s is not set; falling back to anonymous access" % env,
                       "%s: missing required environment variable" % env])


def token_rows(rng, split):
    rows = []
    vs = vendors()
    for v in vs:
        pos_r = allowed_renders(v, split, True)
        deck = Deck(rng, pos_r)
        for _ in range(v.weight):
            tok, variant = v.gen(rng)
            name, fn = deck.draw()
            text, spans = compose(*fn(rng, v, S(tok)))
            rows.append(row(text, spans, "secret", v.kind, "format:%s-%s" % (v.rule, variant), name, v.rule))
        # near misses
        neg_r = allowed_renders(v, split, False)
        ndeck = Deck(rng, [r for r in neg_r if r[0] not in ("git-remote", "docker-login")] or neg_r)
        tok, _ = v.gen(rng)
        cands = near_miss_values(rng, v, tok)
        want = max(4, v.weight // 2)
        extra = 0
        while len(cands) < want + 1 and extra < 6:
            t2, _ = v.gen(rng)
            cands += near_miss_values(rng, v, t2)[:2]
            extra += 1
        for sub, val, amb in cands[:want + 1]:
            name, fn = ndeck.draw()
            if sub == "empty" and name in ("bare", "query-string", "error-echo"):
                name, fn = "export", tr_export
            text, _ = compose(*fn(rng, v, val))
            extra_f = {"ambiguous": True} if amb else {}
            rows.append(row(text, [], "none", "none", "near-miss:" + sub, name, v.rule, **extra_f))
        rows.append(row(decorate(rng, prose_near_miss(rng, v)), [], "none", "none", "near-miss:prose", "prose",
                        v.rule))
    rows += aws_rows(rng, split)
    rows += bad_checksum_rows(rng, split, vs)
    return rows


def bad_checksum_rows(rng, split, vs):
    rows = []
    by = {v.rule: v for v in vs if v.kind in ("github-token", "api-key") and v.rule in ("github", "npm")}
    gh = [v for v in vs if v.rule == "github" and v.prefix == "ghp_"][0]
    npm = by["npm"]
    for i in range(12):
        v = gh if i % 3 else npm
        pre = rng.choice(["ghp_", "gho_", "ghs_", "ghu_"]) if v is gh else "npm_"
        tok = crc_token(rng, pre)
        c = tok[-1]
        tok = tok[:-1] + rng.choice([x for x in B62 if x != c])
        assert not crc_ok(tok)
        name, fn = rng.choice(allowed_renders(v, split, True))
        text, spans = compose(*fn(rng, v, S(tok)))
        rows.append(row(text, spans, "secret", v.kind, "bad-checksum", name, v.rule))
    return rows


def aws_key_id(rng, pre=None):
    return (pre or rng.choice(["AKIA", "AKIA", "AKIA", "ASIA"])) + rs(rng, B32, 16)


def aws_secret(rng):
    return rs(rng, ALNUM + "+/", 40)


def aws_session(rng):
    return "IQoJb3JpZ2luX2Vj" + rs(rng, ALNUM + "+/", rng.choice([280, 344, 420])) + "="


def aws_rows(rng, split):
    rows = []
    rule = "aws"

    def add(parts, render, sub="format:aws-key-pair"):
        text, spans = compose(*parts)
        rows.append(row(text, spans, "secret", "aws-access-key", sub, render, rule))

    styles = ["credentials-file", "env-export", "aws-configure", "sts-json", "docker-run-env", "terraform-provider",
              "boto3-code", "kubectl-yaml-b64", "key-id-log", "error-echo", "dotenv", "github-actions-env"]
    if split == "holdout":
        styles += ["powershell-env", "python-dict-repr", "set-x-trace"]
    deck = Deck(rng, styles)
    for _ in range(24):
        st = deck.draw()
        kid, sk = S(aws_key_id(rng)), S(aws_secret(rng))
        if st == "credentials-file":
            parts = ["[%s]\naws_access_key_id = " % rng.choice(["default", "prod", "ci"]), kid,
                     "\naws_secret_access_key = ", sk]
            if kid.startswith("ASIA"):
                parts += ["\naws_session_token = ", S(aws_session(rng))]
            add([prompt(rng) + "cat ~/.aws/credentials\n"] + parts, st)
        elif st == "env-export":
            add(["export AWS_ACCESS_KEY_ID=", kid, "\nexport AWS_SECRET_ACCESS_KEY=", sk,
                 "\nexport AWS_DEFAULT_REGION=eu-west-1"], st)
        elif st == "aws-configure":
            add(["%saws configure\nAWS Access Key ID [None]: " % prompt(rng), kid, "\nAWS Secret Access Key [None]: ",
                 sk, "\nDefault region name [None]: us-east-1\nDefault output format [None]: json"], st)
        elif st == "sts-json":
            kid = S(aws_key_id(rng, "ASIA"))
            add(['{\n    "Credentials": {\n        "AccessKeyId": "', kid, '",\n        "SecretAccessKey": "', sk,
                 '",\n        "SessionToken": "', S(aws_session(rng)), '",\n        "Expiration": "%s"\n    }\n}'
                 % ts_iso(rng, False).replace("Z", "+00:00")], st)
        elif st == "docker-run-env":
            add(["docker run --rm -e AWS_ACCESS_KEY_ID=", kid, " -e AWS_SECRET_ACCESS_KEY=", sk,
                 " amazon/aws-cli s3 ls"], st)
        elif st == "terraform-provider":
            add(['provider "aws" {\n  region     = "us-west-2"\n  access_key = "', kid, '"\n  secret_key = "', sk,
                 '"\n}'], st)
        elif st == "boto3-code":
            add(['s3 = boto3.client("s3", aws_access_key_id="', kid, '", aws_secret_access_key="', sk, '")'], st)
        elif st == "kubectl-yaml-b64":
            b1 = S(base64.b64encode(kid.encode()).decode())
            b2 = S(base64.b64encode(sk.encode()).decode())
            add(k8s_secret_yaml(rng, [("AWS_ACCESS_KEY_ID", b1), ("AWS_SECRET_ACCESS_KEY", b2)], "aws-creds",
                                "prod", "Opaque"), st)
        elif st == "key-id-log":
            add([rng.choice(["INFO botocore.credentials: Found credentials in environment variables. key_id=",
                             "DEBUG using access key ", "aws_access_key_id="]), kid], st, "format:aws-key-id")
        elif st == "error-echo":
            add(["An error occurred (InvalidClientTokenId) when calling the GetCallerIdentity operation: The security "
                 "token included in the request is invalid. (key ", kid, ")"], st, "format:aws-key-id")
        elif st == "dotenv":
            add(["AWS_ACCESS_KEY_ID=", kid, "\nAWS_SECRET_ACCESS_KEY=", sk], st)
        elif st == "github-actions-env":
            add(["env:\n  AWS_ACCESS_KEY_ID: ", kid, "\n  AWS_SECRET_ACCESS_KEY: ", sk, "\n  AWS_REGION: us-east-1"], st)
        elif st == "powershell-env":
            add(['PS C:\\> $env:AWS_ACCESS_KEY_ID="', kid, '"; $env:AWS_SECRET_ACCESS_KEY="', sk, '"'], st)
        elif st == "python-dict-repr":
            add(["DEBUG session kwargs: {'aws_access_key_id': '", kid, "', 'aws_secret_access_key': '", sk,
                 "', 'region_name': 'us-east-1'}"], st)
        elif st == "set-x-trace":
            add(["+ export AWS_ACCESS_KEY_ID=", kid, "\n+ export AWS_SECRET_ACCESS_KEY=", sk], st)
    # near misses: documented examples, masked `aws configure list`, unique ids (not credentials), templates
    neg = []
    neg.append(("doc-example", "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"))
    neg.append(("doc-example", "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nexport AWS_SECRET_ACCESS_KEY="
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nexport AWS_DEFAULT_REGION=%s"
                % rng.choice(["us-west-2", "eu-central-1"])))
    neg.append(("masked", "%saws configure list\n      Name                    Value             Type    Location\n"
                "      ----                    -----             ----    --------\n   profile                <not set>"
                "             None    None\naccess_key     ****************%s shared-credentials-file\nsecret_key     "
                "****************%s shared-credentials-file\n    region                us-east-1      config-file    "
                "~/.aws/config" % (prompt(rng), rs(rng, B32, 4), rs(rng, ALNUM, 4))))
    acct = "%012d" % rng.randrange(10 ** 12)
    neg.append(("unique-id", '{\n    "UserId": "%s:%s",\n    "Account": "%s",\n    "Arn": "arn:aws:sts::%s:assumed-role/'
                'deploy/%s"\n}' % (aws_key_id(rng, "AROA")[:21], rng.choice(["gh-actions", "botocore-session-17"]),
                                   acct, acct, rng.choice(["gh-actions", "ci"]))))
    neg.append(("unique-id", '"UserId": "%s",' % aws_key_id(rng, "AIDA")[:21]))
    neg.append(("unique-id", '"GroupId": "%s",' % aws_key_id(rng, "AGPA")[:21]))
    neg.append(("template", "aws_access_key_id = ${AWS_ACCESS_KEY_ID}\naws_secret_access_key = "
                "${AWS_SECRET_ACCESS_KEY}"))
    neg.append(("template", "AWS_ACCESS_KEY_ID: ${{ secrets.AWS_ACCESS_KEY_ID }}\nAWS_SECRET_ACCESS_KEY: "
                "${{ secrets.AWS_SECRET_ACCESS_KEY }}"))
    neg.append(("masked", "Using AWS access key AKIA****************"))
    neg.append(("too-short", "aws_access_key_id = %s" % aws_key_id(rng)[:12]))
    neg.append(("wrong-charset", "export AWS_ACCESS_KEY_ID=AKIA" + rs(rng, "0189", 4) + rs(rng, string.ascii_lowercase, 12)))
    neg.append(("prose", "AWS access key IDs begin with AKIA (long-term) or ASIA (temporary STS credentials)."))
    neg.append(("unique-id", "x-amz-request-id: %s\nx-amz-id-2: %s" % (rs(rng, UPPERNUM, 16),
                                                                      base64.b64encode(rbytes(rng, 56)).decode())))
    neg.append(("unique-id", "arn:aws:iam::%s:role/%s" % (acct, rng.choice(["deploy", "ReadOnly", "ecsTaskExecution"]))))
    for sub, text in neg:
        amb = {"ambiguous": True} if sub in ("too-short", "wrong-charset") else {}
        rows.append(row(decorate(rng, text), [], "none", "none", "near-miss:" + sub, "aws", rule, **amb))
    return rows


# ---------------------------------------------------------------------------
# 8. general negatives: things a token detector may trip on
# ---------------------------------------------------------------------------

FILES = ["src/main.rs", "Cargo.lock", "package-lock.json", "dist/app.js", "README.md", "go.sum", "bin/server",
         "assets/logo.png", "requirements.txt", "target/release/flotilla", "lib/index.d.ts", "docs/setup.md"]
WORDS = ["fix flaky test", "bump deps", "refactor parser", "add retry to uploader", "docs: typo", "release v2.3.1",
         "handle empty config", "ci: cache cargo registry", "feat: stream logs", "revert broken migration"]


def hx(rng, n):
    return rs(rng, HEX, n)


def gen_negatives(rng, split, n_each):
    gens = []

    def g(sub, rule=None):
        def deco(fn):
            gens.append((sub, fn, rule))
            return fn
        return deco

    @g("sha256sum")
    def _(r):
        return "\n".join("%s  %s" % (hx(r, 64), r.choice(FILES)) for _ in range(r.randint(1, 3)))

    @g("sha1sum-md5sum")
    def _(r):
        return "%s  %s" % (hx(r, r.choice([40, 32])), r.choice(FILES))

    @g("sha512sum")
    def _(r):
        return "%s  %s" % (hx(r, 128), r.choice(FILES))

    @g("git-log-oneline")
    def _(r):
        return "\n".join("%s %s" % (hx(r, r.choice([7, 8, 10])), r.choice(WORDS)) for _ in range(r.randint(2, 5)))

    @g("git-commit-header")
    def _(r):
        return "commit %s\nMerge: %s %s\nDate:   Mon Nov 30 10:%02d:11 2026 +0000\n\n    %s" % (
            hx(r, 40), hx(r, 7), hx(r, 7), r.randint(0, 59), r.choice(WORDS))

    @g("git-ls-tree")
    def _(r):
        return "\n".join("100644 blob %s\t%s" % (hx(r, 40), r.choice(FILES)) for _ in range(r.randint(1, 4)))

    @g("git-push")
    def _(r):
        return "To github.com:acme/api.git\n   %s..%s  main -> main" % (hx(r, 7), hx(r, 7))

    @g("github-commit-url")
    def _(r):
        return "https://github.com/acme/api/commit/%s" % hx(r, 40)

    @g("uuid")
    def _(r):
        return r.choice(["X-Request-Id: %s", '"id": "%s",', "uid: %s", "trace_id=%s span=ok",
                         "Created volume pvc-%s"]) % ruuid(r)

    @g("docker-digest")
    def _(r):
        return r.choice(["Digest: sha256:%s\nStatus: Downloaded newer image for node:22-alpine",
                         "image: ghcr.io/acme/api@sha256:%s", "%s: Pull complete" % hx(r, 12) + "\nsha256:%s"]) % hx(r, 64)

    @g("docker-ps")
    def _(r):
        return "CONTAINER ID   IMAGE          COMMAND                  STATUS\n%s   redis:7.2      \"docker-entrypoint.s\u2026\"   Up 3 hours\n%s   postgres:16    \"docker-entrypoint.s\u2026\"   Up 3 hours" % (hx(r, 12), hx(r, 12))

    @g("npm-integrity")
    def _(r):
        return '      "resolved": "https://registry.npmjs.org/%s/-/%s-%d.%d.%d.tgz",\n      "integrity": "sha512-%s"' % (
            *([r.choice(["lodash", "semver", "chalk", "debug"])] * 2), r.randint(1, 9), r.randint(0, 20), r.randint(0, 9),
            base64.b64encode(rbytes(r, 64)).decode())

    @g("yarn-lock")
    def _(r):
        return '  resolved "https://registry.yarnpkg.com/ms/-/ms-2.1.3.tgz#%s"\n  integrity sha1-%s' % (
            hx(r, 40), base64.b64encode(rbytes(r, 20)).decode())

    @g("pip-hash")
    def _(r):
        return "requests==2.32.3 \\\n    --hash=sha256:%s \\\n    --hash=sha256:%s" % (hx(r, 64), hx(r, 64))

    @g("go-sum")
    def _(r):
        return "golang.org/x/sys v0.%d.0 h1:%s\ngolang.org/x/sys v0.%d.0/go.mod h1:%s" % (
            r.randint(10, 30), base64.b64encode(rbytes(r, 32)).decode(), r.randint(10, 30),
            base64.b64encode(rbytes(r, 32)).decode())

    @g("cargo-lock")
    def _(r):
        return '[[package]]\nname = "%s"\nversion = "1.%d.%d"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "%s"' % (
            r.choice(["serde", "itoa", "ryu", "tokio"]), r.randint(0, 40), r.randint(0, 9), hx(r, 64))

    @g("cargo-deps-path")
    def _(r):
        return "     Running `rustc --crate-name %s ... -C metadata=%s -C extra-filename=-%s --out-dir /home/dev/project/target/debug/deps`" % (
            r.choice(["serde", "hex", "sha2"]), hx(r, 16), hx(r, 16))

    @g("base64-text")
    def _(r):
        txt = r.choice(["Hello, world! This is a plain configuration blob.", '{"theme":"dark","page":2,"sort":"desc"}',
                        "user=guest;lang=en;tz=UTC;features=beta,search", "apiVersion: v1\nkind: ConfigMap\n"])
        return r.choice(["$ echo '%s' | base64\n%%s" % txt.replace("\n", "\\n"), "cursor=%s", "X-Cursor: %s"]) % \
            base64.b64encode(txt.encode()).decode()

    @g("data-uri")
    def _(r):
        return '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAYAAAAf8/9hAAAA%s" alt="logo">' % \
            base64.b64encode(rbytes(r, 90)).decode()

    @g("css-classes")
    def _(r):
        return r.choice([
            '<div class="css-%s e%s0">' % (rs(r, LOWERNUM, 7), rs(r, LOWERNUM, 7)),
            '<button class="sc-%s %s">' % (rs(r, LETTERS, 6), rs(r, LETTERS, 6)),
            '<span class="Button_primary__%s Layout_wrap__%s">' % (rs(r, B64URL, 5), rs(r, B64URL, 5)),
            '.%s{display:flex}.%s{margin:0 auto}' % (rs(r, LETTERS, 6), rs(r, LETTERS, 6))])

    @g("minified-js")
    def _(r):
        v = [rs(r, string.ascii_letters, 1) + rs(r, ALNUM, 1) for _ in range(4)]
        return '!function(e,t){var %s=t(%d),%s=t.n(%s),_0x%s=["%s","%s"];e.exports=function(n){return %s()(n,_0x%s[0])}}' % (
            v[0], r.randint(10, 999), v[1], v[0], hx(r, 4), rs(r, ALNUM, 8), rs(r, ALNUM, 8), v[1], hx(r, 4))

    @g("bundle-assets")
    def _(r):
        return "dist/assets/index-%s.js   142.31 kB \u2502 gzip: 45.90 kB\ndist/assets/vendor.%s.chunk.js  88.10 kB" % (
            rs(r, B64URL, 8), hx(r, 8))

    @g("semver-build")
    def _(r):
        return "version 1.%d.%d-rc.%d+build.%s (commit %s)" % (r.randint(0, 20), r.randint(0, 20), r.randint(1, 9),
                                                               hx(r, 7), hx(r, 12))

    @g("build-id")
    def _(r):
        return r.choice(["bin/server: ELF 64-bit LSB pie executable, x86-64, BuildID[sha1]=%s, stripped" % hx(r, 40),
                         "Build ID: %s-%d" % (hx(r, 8), r.randint(1, 999)),
                         "Run ID %d (attempt 1), job %d" % (r.randint(10 ** 9, 10 ** 10), r.randint(10 ** 10, 10 ** 11)),
                         "Published build scan: https://gradle.com/s/%s" % rs(r, LOWERNUM, 13)])

    @g("trace-ids")
    def _(r):
        return r.choice(["traceparent: 00-%s-%s-01" % (hx(r, 32), hx(r, 16)),
                         "cf-ray: %s-AMS" % hx(r, 16), "sentry event_id=%s" % hx(r, 32),
                         "x-amzn-trace-id: Root=1-%s-%s" % (hx(r, 8), hx(r, 24))])

    @g("k8s-names")
    def _(r):
        dep = r.choice(["web", "api", "worker"])
        return "\n".join("%s-%s-%s   1/1   Running   0   %dh" % (dep, rs(r, "bcdfghjklmnpqrstvwxz2456789", 10),
                                                              rs(r, "bcdfghjklmnpqrstvwxz2456789", 5), r.randint(1, 90))
                         for _ in range(3))

    @g("nix-store")
    def _(r):
        return "/nix/store/%s-%s" % (rs(r, "0123456789abcdfghijklmnpqrsvwxyz", 32), r.choice(["openssl-3.0.14", "rustc-1.82.0"]))

    @g("ipfs-cid")
    def _(r):
        return r.choice(["ipfs://bafybei%s" % rs(r, "abcdefghijklmnopqrstuvwxyz234567", 52),
                         "/ipfs/Qm%s" % rs(r, "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", 44)])

    @g("eth-address")
    def _(r):
        return "tx %s from 0x%s" % ("0x" + hx(r, 64), hx(r, 40))

    @g("gpg-fingerprint")
    def _(r):
        return "gpg: Signature made Mon Nov 30 10:00:00 2026 UTC\ngpg:                using EDDSA key %s\ngpg: Good signature" % hx(r, 40).upper()

    @g("ssh-fingerprint")
    def _(r):
        return "ED25519 key fingerprint is SHA256:%s." % base64.b64encode(rbytes(r, 32)).decode().rstrip("=")

    @g("stripe-object-ids", "stripe")
    def _(r):
        return r.choice(['"id": "cus_%s",', '"payment_intent": "pi_%s",', "event evt_%s delivered",
                         '"charge": "ch_%s",', "acct_%s"]) % rs(r, ALNUM, r.choice([14, 24]))

    @g("stripe-publishable", "stripe")
    def _(r):
        return r.choice(["NEXT_PUBLIC_STRIPE_PUBLISHABLE_KEY=pk_live_%s", "Stripe('pk_test_%s')"]) % rs(r, ALNUM, 99 - 8)

    @g("openai-object-ids", "openai")
    def _(r):
        return r.choice(['"id": "chatcmpl-%s",' % rs(r, ALNUM, 29), '"file_id": "file-%s"' % rs(r, ALNUM, 22),
                         "assistant asst_%s thread_%s" % (rs(r, ALNUM, 24), rs(r, ALNUM, 24)),
                         "x-request-id: req_%s" % hx(r, 32), "OpenAI-Organization: org-%s" % rs(r, ALNUM, 24),
                         "OpenAI-Project: proj_%s" % rs(r, ALNUM, 24)])

    @g("anthropic-object-ids", "anthropic")
    def _(r):
        return r.choice(['{"id": "msg_01%s", "type": "message", "model": "claude-sonnet-4-5"}' % rs(r, ALNUM, 22),
                         "request-id: req_011C%s" % rs(r, ALNUM, 20), '"tool_use_id": "toolu_01%s"' % rs(r, ALNUM, 22)])

    @g("github-ids", "github")
    def _(r):
        return r.choice(['"node_id": "MDEwOlJlcG9zaXRvcnk%s"' % rs(r, ALNUM, 8), '"node_id": "PR_kwDO%s"' % rs(r, B64URL, 12),
                         "X-GitHub-Request-Id: %s:%s:%s:%s:%s" % (hx(r, 4).upper(), hx(r, 6).upper(), hx(r, 7).upper(),
                                                                  hx(r, 7).upper(), hx(r, 8).upper()),
                         "  Token: gho_************************************\n  Token scopes: 'gist', 'read:org', 'repo'"])

    @g("slack-ids", "slack")
    def _(r):
        return '{"ok":true,"channel":"C%s","ts":"17%08d.%06d","message":{"user":"U%s","team":"T%s"}}' % (
            rs(r, UPPERNUM, 10), r.randrange(10 ** 8), r.randrange(10 ** 6), rs(r, UPPERNUM, 10), rs(r, UPPERNUM, 8))

    @g("prefix-lookalikes")
    def _(r):
        return r.choice(["npm_config_cache=/home/dev/.npm\nnpm_lifecycle_event=build\nnpm_package_version=1.4.2",
                         "pip install scikit-learn  # not sk-learn", "struct sk_buff *skb = alloc_skb(len, GFP_KERNEL);",
                         "from huggingface_hub import hf_hub_download", "xoxo, the release team",
                         "if key.startswith(('sk_live_', 'rk_live_')): raise ValueError('live key in test')",
                         "locale: sk-SK", "export HF_HUB_ENABLE_HF_TRANSFER=1", "GITHUB_TOKEN: ${{ github.token }}",
                         "token = os.environ[\"OPENAI_API_KEY\"]", "const key = process.env.ANTHROPIC_API_KEY;",
                         "Authorization: Bearer $(gcloud auth print-access-token)",
                         "glpat_regex = r'glpat-[0-9a-zA-Z_-]{20}'"])

    @g("base64-json-not-jwt", "jwt")
    def _(r):
        pl = json.dumps({"page": r.randint(2, 40), "sort": r.choice(["asc", "desc"]), "after": r.randint(10 ** 5, 10 ** 7)},
                        separators=(",", ":"))
        return r.choice(["next_cursor=%s", '"pageToken": "%s"']) % b64u(pl.encode())

    @g("jwt-masked", "jwt")
    def _(r):
        return r.choice(["Authorization: Bearer eyJhbGciOiJSUzI1NiIs...(truncated)",
                         "id_token=eyJhbGciOi***", "Authorization: Bearer <token>", "Authorization: Bearer ${ACCESS_TOKEN}"])

    @g("jwt-decoded-claims", "jwt")
    def _(r):
        return '{\n  "alg": "RS256",\n  "typ": "JWT"\n}\n{\n  "sub": "%s",\n  "exp": %d\n}' % (ruuid(r), 1790000000 + r.randrange(10 ** 7))

    @g("supabase-anon-key", "supabase")
    def _(r):
        now = 1790000000 + r.randrange(10 ** 7)
        h = b64u(b'{"alg":"HS256","typ":"JWT"}')
        p = b64u(json.dumps({"iss": "supabase", "ref": rs(r, string.ascii_lowercase, 20), "role": "anon", "iat": now,
                             "exp": now + 315360000}, separators=(",", ":")).encode())
        return "NEXT_PUBLIC_SUPABASE_ANON_KEY=%s.%s.%s" % (h, p, b64u(rbytes(r, 32)))

    @g("mapbox-public", "mapbox")
    def _(r):
        return "mapboxgl.accessToken = 'pk.%s.%s';" % (b64u(json.dumps({"u": "acme", "a": rs(r, LOWERNUM, 25)},
                                                                       separators=(",", ":")).encode()), rs(r, B64URL, 22))

    @g("age-public", "age")
    def _(r):
        return "creation_rules:\n  - path_regex: secrets/.*\\.yaml$\n    age: %s" % age_keypair(r)[1]

    @g("openssl-rand-in-docs")
    def _(r):
        return "Generate a session secret with `openssl rand -hex 32` and put it in SESSION_SECRET."

    gens_out = []
    for sub, fn, rule in gens:
        for _ in range(n_each):
            text = fn(rng)
            if sub in ("prefix-lookalikes", "openssl-rand-in-docs", "jwt-masked", "base64-text"):
                text = decorate(rng, text)
            gens_out.append(row(text, [], "none", "none", "benign:" + sub, "benign", rule,
                                **({"ambiguous": True} if sub in ("stripe-publishable", "supabase-anon-key") else {})))
    return gens_out


# ---------------------------------------------------------------------------
# 9. main: build both splits, write, count, README section
# ---------------------------------------------------------------------------

README_BEGIN = "<!-- gen_keys.py section: begin -->"
README_END = "<!-- gen_keys.py section: end -->"


def build_split(split):
    rng = random.Random(SPLITS[split])
    mat = load_material(split)
    rows = key_rows(rng, split, mat) + token_rows(rng, split) + gen_negatives(rng, split, 8)
    seen, out = set(), []
    for r in rows:
        if r["id"] in seen:
            continue
        seen.add(r["id"])
        out.append(r)
    rng.shuffle(out)
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(", ", ": ")) + "\n")


def count_table(splits):
    keys = sorted({(r["label"], r["kind"]) for rows in splits.values() for r in rows},
                  key=lambda k: ({"secret": 0, "pii": 1, "none": 2}[k[0]], k[1]))
    lines = ["| label | kind | %s |" % " | ".join(splits), "|---|---|" + "---:|" * len(splits)]
    for lab, kind in keys:
        lines.append("| %s | %s | %s |" % (lab, kind, " | ".join(
            str(sum(1 for r in rows if r["label"] == lab and r["kind"] == kind)) for rows in splits.values())))
    lines.append("| **all** | | %s |" % " | ".join(str(len(rows)) for rows in splits.values()))
    return "\n".join(lines)


def readme_section(splits, table):
    tune_r = sorted({r["render"] for r in splits["tune"]})
    hold_only = sorted({r["render"] for r in splits["holdout"]} - set(tune_r))
    rules = sorted({r.get("rule") for rows in splits.values() for r in rows
                    if r["label"] == "secret" and r.get("rule") and r["kind"] != "private-key"})
    pos = {s: sum(1 for r in rows if r["label"] != "none") for s, rows in splits.items()}
    return "\n".join([
        README_BEGIN,
        "## keys.tune.jsonl / keys.holdout.jsonl (private keys and vendor tokens)",
        "",
        "Written by `gen_keys.py` (Python 3 standard library; run `python3 gen_keys.py`).  Same row format and",
        "labelling policy as `shared/guard-corpus` (`source: heldout-keys`, ids `hk-<sha1(text)[:12]>`, spans are",
        "`[start, end)` code-point offsets; extra fields: `render` = how the value is shown, `rule` = vendor,",
        "`ambiguous` on a few negatives a reasonable guard may still flag).",
        "",
        "| file | rows | positives |",
        "|---|---:|---:|",
        "| `keys.tune.jsonl` | %d | %d |" % (len(splits["tune"]), pos["tune"]),
        "| `keys.holdout.jsonl` | %d | %d |" % (len(splits["holdout"]), pos["holdout"]),
        "",
        "**Rule: `keys.tune.jsonl` may be looked at while fixing the guard.  `keys.holdout.jsonl` is only",
        "measured (scores, per-kind recall, FP-rate); it is never read row by row, and no rule is tuned to it.**",
        "",
        "How the rows are made:",
        "",
        "* Private keys come from real tools (OpenSSL `genpkey`/`genrsa`/`ecparam`/`pkcs8`/`req`/`pkcs12`,",
        "  OpenSSH `ssh-keygen` incl. `-m PEM`/`-m PKCS8`/passphrases/certificates/`-Y sign`, GnuPG `--gen-key` +",
        "  `--export-secret-keys` in a throw-away GNUPGHOME, `age-keygen`, PuTTY `puttygen` PPK v2/v3 and ssh.com",
        "  export), plus age identities built from the published format (bech32 + X25519, checked against",
        "  age-keygen).  Tool output is cached per split in `material/<split>/*.json` (made with OpenSSL 3.0.19,",
        "  OpenSSH 9.2p1, GnuPG 2.2.40, age 1.1.1, PuTTYgen 0.78 on Debian 12); a re-run reuses it and",
        "  regenerates only missing items, so the files are byte-identical across runs.  The two splits hold",
        "  different keys.  For fresh splits (e.g. after the holdout was looked at) change the seeds in `SPLITS`",
        "  and run `python3 gen_keys.py --refresh-material`.",
        "* Vendor tokens follow each vendor's published shape; GitHub (`ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_`) and",
        "  npm tokens carry a correct CRC32/base62 checksum, except the `subkind: bad-checksum` rows (still",
        "  `secret`).  %d token vendor rules (`rule`) appear among the positives, each with near misses." % len(rules),
        "* Negatives: public keys, certificates, CSRs, `openssl x509 -text`, fingerprints, known_hosts,",
        "  signatures, encrypted messages, key mentions in prose/regexes/commands, placeholder key blocks; per vendor",
        "  the documented example keys, masked / templated / empty values, too-short and wrong-charset tokens",
        "  (`ambiguous`), prefix-only prose; and digests, git ids, UUIDs, image digests, lock-file integrity",
        "  strings, base64 of plain text, CSS/JS identifiers, versions, build and trace ids, vendor object ids.",
        "* Seeds differ per split (tune %#x, holdout %#x).  Renderings only in the holdout file (never in tune):" % (
            SPLITS["tune"], SPLITS["holdout"]),
        "  %s." % ", ".join("`%s`" % r for r in hold_only),
        "",
        table,
        README_END,
        ""])


def update_readme(section):
    path = os.path.join(HERE, "README.md")
    old = rd(path) if os.path.exists(path) else ""
    if README_BEGIN in old and README_END in old:
        a = old.index(README_BEGIN)
        b = old.index(README_END) + len(README_END)
        new = old[:a] + section.rstrip("\n") + old[b:]
    elif old:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        new = "# guard/heldout — held-out test data for the privacy guard\n\n" + section
    with open(path, "w") as f:
        f.write(new)


KINDS = {"aws-access-key", "github-token", "gitlab-token", "slack-token", "slack-webhook", "stripe-key",
         "google-api-key", "openai-key", "jwt", "private-key", "db-url", "generic-password", "generic-secret",
         "api-key", "none"}
KEY_STARTS = ("-----BEGIN", "---- BEGIN", "PuTTY-User-Key-File-", "AGE-SECRET-KEY-1", "ED25519 Private-Key",
              "ED448 Private-Key", "X25519 Private-Key", "X448 Private-Key", "Private-Key:", "DSA Private-Key",
              "DH Private-Key", "RSA-PSS Private-Key", "MI")


def key_like(v):
    if v.startswith(KEY_STARTS):
        return True
    try:
        dec = base64.b64decode(v, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return False
    return dec.startswith(KEY_STARTS + ("{", "# "))


def validate(splits):
    import re
    ids = {}
    for s, rows in splits.items():
        for r in rows:
            assert r["id"] not in ids, ("duplicate id", r["id"], s, ids.get(r["id"]))
            ids[r["id"]] = s
            t, sp = r["text"], r["spans"]
            assert r["kind"] in KINDS and r["label"] in ("secret", "none"), r["id"]
            assert (r["label"] == "none") == (not sp) == (r["kind"] == "none"), r["id"]
            for (a, b), (c, d) in zip(sp, sp[1:]):
                assert b <= c, ("overlap", r["id"])
            for a, b in sp:
                v = t[a:b]
                assert v.strip() == v and v, ("span not trimmed", r["id"], v[:30])
                if r["kind"] == "private-key":
                    assert key_like(v), ("key span start", r["id"], v[:30])
                if re.fullmatch(r"(gh[pousr]|npm)_[0-9A-Za-z]{36}", v):
                    assert crc_ok(v) != (r["subkind"] == "bad-checksum"), ("checksum", r["id"], v)
    extra = {r["render"] for r in splits["holdout"]} - {r["render"] for r in splits["tune"]}
    assert len(extra) >= 3, extra
    return extra


def main(argv):
    refresh = "--refresh-material" in argv
    if refresh:
        for s in SPLITS:
            load_material(s, refresh=True)
    splits = collections.OrderedDict()
    for s in SPLITS:
        splits[s] = build_split(s)
    tune_ids = {r["id"] for r in splits["tune"]}
    splits["holdout"] = [r for r in splits["holdout"] if r["id"] not in tune_ids]
    validate(splits)
    for s, rows in splits.items():
        write_jsonl(os.path.join(HERE, "keys.%s.jsonl" % s), rows)
    table = count_table(splits)
    print(table)
    total = sum(os.path.getsize(os.path.join(HERE, "keys.%s.jsonl" % s)) for s in splits)
    print("\nbytes written: %d" % total)
    assert total < 3 * 1024 * 1024, "corpus over 3 MB"
    if SKIPPED:
        print("skipped material:", *SKIPPED, sep="\n  ")
    update_readme(readme_section(splits, table))


if __name__ == "__main__":
    main(sys.argv[1:])
