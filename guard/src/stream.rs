//! The engine over a stream cut into arbitrary frames.
//!
//! A secret may be split across frames: a token over two, a PEM block over many. The
//! redactor releases only text that cannot be the beginning of a secret still being
//! written. It holds back the last partial token of a frame, and any private-key block
//! that has begun but not ended. It scans what it releases together with the held text
//! and a short context of what went before, so a key name released in one frame still
//! qualifies the value that arrives in the next.
//!
//! Bound: at most [`MAX_HOLD`] bytes are held. A longer token is released (scanned as it
//! is). A private-key block longer than that is redacted whole rather than released: it
//! fails closed. `flush` releases a held partial token when the caller's hold-back timer
//! fires (an open key block stays held); `finish` releases everything at the end.
//!
//! A partial token that the timer releases while it may still be the start of a secret
//! (a vendor prefix, a value after `password=`-like context, or a long mixed token) fails
//! closed too: it is redacted as `held-back-timeout`, and so is the rest of that token
//! when it arrives, so neither half of a slowly printed secret is stored.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::env::TaskSecrets;
use crate::policy::{Action, Allowlist, Mode, Policy};
use crate::Engine;

/// Most bytes held back waiting for the rest of a possible secret.
pub const MAX_HOLD: usize = 4096;
/// Bytes of released text kept (never re-released) to give the next scan its context.
const CONTEXT: usize = 256;

/// One decision of the guard about one value (never the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub rule: &'static str,
    pub kind: &'static str,
    /// What the policy asks for.
    pub action: Action,
    /// Whether it was carried out (false in shadow mode).
    pub applied: bool,
    /// First 8 hex digits of the SHA-256 of the value: correlates without revealing.
    pub digest: String,
    /// Byte offsets of the value in the whole stream.
    pub start: u64,
    pub end: u64,
    /// The approved override that allowed the value, if one did.
    pub allowed_by: Option<String>,
}

/// `[REDACTED:<rule>:<digest>]`.
pub fn marker(rule: &str, digest: &str) -> String {
    format!("[REDACTED:{rule}:{digest}]")
}

/// First 8 hex digits of the SHA-256 of `value`: what markers and audit records carry.
pub fn digest8(value: &str) -> String {
    let d = Sha256::digest(value.as_bytes());
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Redacts one stream. Feed frames in order with [`push`](Self::push); call
/// [`finish`](Self::finish) at the end.
pub struct StreamRedactor {
    engine: Arc<Engine>,
    secrets: Option<Arc<TaskSecrets>>,
    allow: Option<Arc<Allowlist>>,
    policy: Policy,
    context: String,
    pending: String,
    /// Stream offset of the first byte of `pending`.
    offset: u64,
    /// A partial token was redacted at a timeout: the rest of it is redacted too.
    continuation: bool,
    /// Set by `flush`: from here to the end of `pending` is a possible secret.
    timed_out_from: Option<usize>,
}

impl StreamRedactor {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            secrets: None,
            allow: None,
            policy: Policy::enforce(crate::policy::Level::Standard),
            context: String::new(),
            pending: String::new(),
            offset: 0,
            continuation: false,
            timed_out_from: None,
        }
    }

    /// Acts by `policy` (the default is enforce at the standard level).
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Also masks the secrets the task was given.
    pub fn with_secrets(mut self, secrets: Arc<TaskSecrets>) -> Self {
        self.secrets = (!secrets.is_empty()).then_some(secrets);
        self
    }

    /// Lets values that an approved override names pass (recorded as allowed).
    pub fn with_allowlist(mut self, allow: Arc<Allowlist>) -> Self {
        self.allow = Some(allow);
        self
    }

    /// Replaces the overrides (one was approved or revoked while the stream ran).
    pub fn set_allowlist(&mut self, allow: Arc<Allowlist>) {
        self.allow = Some(allow);
    }

    /// The policy this stream is redacted by.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Adds a frame; returns the text that is safe to release, with its redactions.
    pub fn push(&mut self, frame: &str) -> (String, Vec<Redaction>) {
        if self.policy.mode == Mode::Off {
            self.offset += frame.len() as u64;
            return (frame.to_owned(), Vec::new());
        }
        self.pending.push_str(frame);
        let cut = safe_cut(&self.pending);
        self.release(cut, false)
    }

    /// The hold-back timer fired: releases the held partial token, but not an open
    /// private-key block, whose remaining lines would carry no marker of their own.
    pub fn flush(&mut self) -> (String, Vec<Redaction>) {
        let cut = match open_private_key(&self.pending) {
            Some(begin) if self.pending.len() - begin <= MAX_HOLD => begin,
            _ => self.pending.len(),
        };
        if self.policy.mode != Mode::Off && cut == self.pending.len() {
            let from = token_start(&self.pending);
            let before = format!("{}{}", self.context, &self.pending[..from]);
            if possible_secret(&self.pending[from..], &before) {
                self.timed_out_from = Some(from);
            }
        }
        self.release(cut, false)
    }

    /// The stream ended: releases everything; an open private-key block is redacted.
    pub fn finish(&mut self) -> (String, Vec<Redaction>) {
        if self.policy.mode == Mode::Off {
            return (String::new(), Vec::new());
        }
        self.release(self.pending.len(), true)
    }

    fn release(&mut self, mut cut: usize, last: bool) -> (String, Vec<Redaction>) {
        let window = format!("{}{}", self.context, self.pending);
        let base = self.context.len();
        let mut spans: Vec<(usize, usize, &'static str, &'static str)> = Vec::new();
        for f in self.engine.scan(&window) {
            if f.end <= base {
                continue; // wholly in text already released
            }
            let start = f.start.max(base) - base;
            spans.push((start, f.end - base, f.rule, f.kind));
        }
        // The task's own secrets come first: an exact value outranks any pattern.
        if let Some(secrets) = &self.secrets {
            let mut exact: Vec<(usize, usize, &'static str, &'static str)> = secrets
                .find(&window)
                .filter(|(_, e, _)| *e > base)
                .map(|(s, e, _)| (s.max(base) - base, e - base, "task-secret", "task-secret"))
                .collect();
            spans.retain(|(s, e, _, _)| exact.iter().all(|(xs, xe, _, _)| e <= xs || s >= xe));
            spans.append(&mut exact);
        }
        // Fail closed on a partial token released by the timer, and on its rest.
        let timeout = "held-back-timeout";
        if let Some(from) = self.timed_out_from.take() {
            spans.retain(|(s, e, _, _)| *e <= from || *s >= self.pending.len());
            spans.push((from, self.pending.len(), timeout, "possible-secret"));
        }
        if self.continuation {
            let lead = token_end(&self.pending);
            if lead == 0 {
                self.continuation = false;
            } else {
                spans.retain(|(s, _, _, _)| *s >= lead);
                spans.push((0, lead, timeout, "possible-secret"));
            }
        }
        // A value that crosses the cut waits whole for the next release.
        if !last {
            for (s, e, _, _) in &spans {
                if *s < cut && *e > cut {
                    cut = *s;
                }
            }
        }
        // Fail closed: an unterminated private key held too long (or at the end) goes.
        if let Some(begin) = open_private_key(&self.pending) {
            let header_done = self.pending[begin..].contains("PRIVATE KEY");
            if (last && header_done) || self.pending.len() - begin > MAX_HOLD {
                spans.retain(|(s, _, _, _)| *s < begin);
                spans.push((
                    begin,
                    self.pending.len(),
                    "private-key-unterminated",
                    "private-key",
                ));
                cut = self.pending.len();
            }
        }
        spans.retain(|(s, _, _, _)| *s < cut);
        spans.sort_by_key(|(s, _, _, _)| *s);
        let mut out = String::with_capacity(cut);
        let mut redactions = Vec::new();
        let mut at = 0;
        let mut blocked: Option<String> = None;
        let enforce = self.policy.mode == Mode::Enforce;
        for (s, e, rule, kind) in spans {
            if s < at {
                continue;
            }
            let e = e.min(self.pending.len());
            let value = &self.pending[s..e];
            let digest = digest8(value);
            let allowed_by = self
                .allow
                .as_ref()
                .and_then(|a| a.allows(rule, &digest, value))
                .map(str::to_owned);
            let action = match rule {
                _ if allowed_by.is_some() => Action::Allow,
                "task-secret" | "private-key-unterminated" | "held-back-timeout" => Action::Redact,
                _ => self.policy.action(kind),
            };
            if enforce && action != Action::Allow {
                out.push_str(&self.pending[at..s]);
                out.push_str(&marker(rule, &digest));
                at = e;
                if action == Action::Block && blocked.is_none() {
                    blocked = Some(format!("[BLOCKED:{rule}:{digest}]\n"));
                }
            }
            if rule == timeout {
                // Released at a timeout: the token goes on in the next frame, unless it
                // visibly ended here.
                self.continuation = e == self.pending.len() && !last;
            }
            redactions.push(Redaction {
                rule,
                kind,
                action,
                applied: enforce,
                digest,
                start: self.offset + s as u64,
                end: self.offset + e as u64,
                allowed_by,
            });
            cut = cut.max(e);
        }
        out.push_str(&self.pending[at..cut]);
        if let Some(block) = blocked {
            out = block;
        }
        // Keep a little released text as context for the next scan.
        self.context.push_str(&self.pending[..cut]);
        if self.context.len() > CONTEXT {
            let mut from = self.context.len() - CONTEXT;
            while !self.context.is_char_boundary(from) {
                from += 1;
            }
            self.context.drain(..from);
        }
        self.pending.drain(..cut);
        self.offset += cut as u64;
        (out, redactions)
    }
}

/// Where a `-----BEGIN … PRIVATE KEY-----` block without its END starts, if any. A
/// `-----BEGIN` whose header is not complete yet counts as one: it may become a key.
fn open_private_key(text: &str) -> Option<usize> {
    let begin = text.rfind("-----BEGIN")?;
    let rest = &text[begin..];
    let Some(header_end) = rest[10..].find("-----").map(|n| n + 10) else {
        return Some(begin);
    };
    let header = &rest[..header_end];
    let body = &rest[header_end + 5..];
    // Closed only once the whole footer is there: `-----END … -----`.
    let closed = body
        .find("-----END")
        .is_some_and(|at| body[at + 8..].contains("-----"));
    (header.contains("PRIVATE KEY") && !closed).then_some(begin)
}

/// Characters that end a token.
fn is_boundary(c: char) -> bool {
    c.is_whitespace() || "\"'`,;=:<>()[]{}".contains(c)
}

/// Where the last (partial) token of `text` begins.
fn token_start(text: &str) -> usize {
    text.rfind(is_boundary).map_or(0, |n| n + 1)
}

/// Where the first token of `text` ends.
fn token_end(text: &str) -> usize {
    text.find(is_boundary).unwrap_or(text.len())
}

/// Whether a partial token could be the start of a secret: a vendor prefix, a value
/// right after a secret-like key, or a long token of letters and digits that looks random.
fn possible_secret(token: &str, before: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
        "xox",
        "sk_live_",
        "rk_live_",
        "sk-",
        "AKIA",
        "ASIA",
        "AIza",
        "eyJ",
        "npm_",
        "pypi-",
        "SG.",
        "dckr_pat_",
        "hf_",
        "AC",
        "SK",
    ];
    const KEYS: &[&str] = &[
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "api-key",
        "authorization",
        "bearer",
        "credential",
        "private_key",
        "access_key",
    ];
    if token.len() < 4 {
        return false;
    }
    if PREFIXES
        .iter()
        .any(|p| token.len() >= p.len() + 2 && token.starts_with(p))
    {
        return true;
    }
    let tail: String = before
        .trim_end_matches([' ', '"', '\''])
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<String>()
        .to_ascii_lowercase();
    let after_key = tail.ends_with(['=', ':']) && KEYS.iter().any(|k| tail.contains(k))
        || tail.ends_with("bearer");
    if after_key {
        return true;
    }
    let letters = token.bytes().filter(u8::is_ascii_alphabetic).count();
    let digits = token.bytes().filter(u8::is_ascii_digit).count();
    token.len() >= 16 && letters > 0 && digits > 0 && crate::entropy(token) >= 3.5
}

/// How much of `pending` can be released: everything but the last partial token, and
/// nothing from an open private-key block on; at most [`MAX_HOLD`] bytes are held.
fn safe_cut(pending: &str) -> usize {
    if let Some(begin) = open_private_key(pending) {
        if pending.len() - begin <= MAX_HOLD {
            return begin;
        }
    }
    if pending.ends_with('\n') {
        return pending.len();
    }
    let boundary = token_start(pending);
    if pending.len() - boundary > MAX_HOLD {
        pending.len()
    } else {
        boundary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "build ok\nexport GITHUB_TOKEN=ghp_R4nd0mT0k3nV4lu3Xq8Lp2Zs9Wc7Vb3Nk1Hy\n\
        password = \"Tr0ub4dor&3xq\" and mail jane.doe@gmail.com\n\
        -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n\
        -----END RSA PRIVATE KEY-----\ndone\n";

    fn engine() -> Arc<Engine> {
        static ENGINE: std::sync::OnceLock<Arc<Engine>> = std::sync::OnceLock::new();
        ENGINE.get_or_init(|| Arc::new(Engine::new())).clone()
    }

    /// Restricted: secrets and personal data are both redacted.
    fn redact_in(frames: &[&str]) -> (String, Vec<Redaction>) {
        let mut r = StreamRedactor::new(engine())
            .with_policy(Policy::enforce(crate::policy::Level::Restricted));
        let (mut out, mut all) = (String::new(), Vec::new());
        for f in frames {
            let (text, red) = r.push(f);
            out.push_str(&text);
            all.extend(red);
        }
        let (text, red) = r.finish();
        out.push_str(&text);
        all.extend(red);
        (out, all)
    }

    #[test]
    fn a_secret_split_at_any_byte_is_still_redacted() {
        let (whole, redactions) = redact_in(&[TEXT]);
        assert_eq!(redactions.len(), 4, "{whole}");
        for secret in ["ghp_R4nd0m", "Tr0ub4dor", "jane.doe@", "MIIEowIBAAKCAQEA"] {
            assert!(!whole.contains(secret), "{secret} leaked: {whole}");
        }
        assert!(whole.contains("[REDACTED:github-pat:"), "{whole}");
        assert!(whole.starts_with("build ok\n") && whole.ends_with("done\n"));
        for i in 1..TEXT.len() {
            let (split, _) = redact_in(&[&TEXT[..i], &TEXT[i..]]);
            assert_eq!(split, whole, "split at byte {i}");
        }
    }

    #[test]
    fn many_small_frames_give_the_same_output() {
        let (whole, _) = redact_in(&[TEXT]);
        for size in [1, 3, 7, 16, 64] {
            let frames: Vec<&str> = TEXT
                .as_bytes()
                .chunks(size)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            assert_eq!(redact_in(&frames).0, whole, "frames of {size} bytes");
        }
    }

    #[test]
    fn an_unterminated_private_key_fails_closed() {
        let body = "A".repeat(MAX_HOLD + 100);
        let text = format!("ok\n-----BEGIN PRIVATE KEY-----\n{body}");
        let (out, red) = redact_in(&[&text]);
        assert_eq!(
            out,
            format!("ok\n{}", marker("private-key-unterminated", &red[0].digest))
        );
        // At the end of a stream too, however short.
        let (out, _) =
            redact_in(&["-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"]);
        assert!(
            out.starts_with("[REDACTED:private-key-unterminated:"),
            "{out}"
        );
    }

    #[test]
    fn secrets_the_task_was_given_are_masked_across_frames() {
        let env = vec![("DEPLOY_TOKEN".to_owned(), "plain-looking-v4lue".to_owned())];
        let secrets = Arc::new(TaskSecrets::new(&env, &[]));
        let text = "deploying with plain-looking-v4lue now\n";
        let mut whole = None;
        for i in 1..text.len() {
            let mut r = StreamRedactor::new(engine()).with_secrets(secrets.clone());
            let (mut out, mut red) = r.push(&text[..i]);
            let (o2, r2) = r.push(&text[i..]);
            let (o3, r3) = r.finish();
            out.push_str(&o2);
            out.push_str(&o3);
            red.extend(r2.into_iter().chain(r3));
            assert!(!out.contains("plain-looking"), "split at {i}: {out}");
            assert_eq!(red.len(), 1);
            assert_eq!(red[0].rule, "task-secret");
            assert_eq!(*whole.get_or_insert(out.clone()), out);
        }
    }

    #[test]
    fn modes_and_levels_decide_what_changes() {
        let run = |policy: Policy| {
            let mut r = StreamRedactor::new(engine()).with_policy(policy);
            let (mut out, mut red) = r.push(TEXT);
            let (o, rr) = r.finish();
            out.push_str(&o);
            red.extend(rr);
            (out, red)
        };
        // Shadow: the text is untouched, every decision is recorded as not applied.
        let (out, red) = run(Policy {
            mode: Mode::Shadow,
            ..Policy::default()
        });
        assert_eq!(out, TEXT);
        assert_eq!(red.len(), 4);
        assert!(red.iter().all(|d| !d.applied));
        // Off: nothing is scanned.
        let (out, red) = run(Policy {
            mode: Mode::Off,
            ..Policy::default()
        });
        assert_eq!((out.as_str(), red.len()), (TEXT, 0));
        // Enforce, standard: secrets go, the e-mail address stays (recorded as allowed).
        let (out, red) = run(Policy::enforce(crate::policy::Level::Standard));
        assert!(
            out.contains("jane.doe@gmail.com") && !out.contains("ghp_R4nd0m"),
            "{out}"
        );
        assert!(red
            .iter()
            .any(|d| d.kind == "email" && d.action == Action::Allow));
        // Enforce, sensitive: a secret blocks the released text.
        let (out, _) = run(Policy::enforce(crate::policy::Level::Sensitive));
        assert!(
            out.starts_with("[BLOCKED:") && !out.contains("build ok"),
            "{out}"
        );
    }

    #[test]
    fn an_approved_override_lets_its_value_through_and_says_so() {
        use crate::policy::AllowTarget;
        let (_, before) = redact_in(&[TEXT]);
        let pat = before.iter().find(|d| d.rule == "github-pat").unwrap();
        let allow = Arc::new(Allowlist::new(vec![(
            "ov-7".into(),
            AllowTarget::Digest(pat.digest.clone()),
        )]));
        let mut r = StreamRedactor::new(engine()).with_allowlist(allow);
        let (mut out, mut red) = r.push(TEXT);
        let (o, rr) = r.finish();
        out.push_str(&o);
        red.extend(rr);
        assert!(out.contains("ghp_R4nd0m"), "{out}");
        assert!(
            !out.contains("Tr0ub4dor"),
            "other values are still redacted: {out}"
        );
        let d = red.iter().find(|d| d.rule == "github-pat").unwrap();
        assert_eq!(
            (d.action, d.allowed_by.as_deref()),
            (Action::Allow, Some("ov-7"))
        );
    }

    #[test]
    fn a_possible_secret_released_by_the_timer_fails_closed_whole() {
        let token = "ghp_R4nd0mT0k3nV4lu3Xq8Lp2Zs9Wc7Vb3Nk1Hy";
        for cut in 4..token.len() {
            let mut r = StreamRedactor::new(engine());
            let (mut out, mut red) = r.push(&format!("pushing with {}", &token[..cut]));
            let (o, rr) = r.flush(); // the timer fired in the middle of the token
            out.push_str(&o);
            red.extend(rr);
            let (o, rr) = r.push(&format!("{} done\n", &token[cut..]));
            out.push_str(&o);
            red.extend(rr);
            let (o, rr) = r.finish();
            out.push_str(&o);
            red.extend(rr);
            // A bare prefix (`ghp_`) is not yet a possible secret; the value still goes.
            if cut >= 6 {
                assert!(
                    !out.contains(&token[..cut]),
                    "the start leaked at {cut}: {out}"
                );
                assert!(
                    out.starts_with("pushing with [REDACTED:held-back-timeout:"),
                    "{out}"
                );
            }
            if token.len() - cut >= 4 {
                assert!(
                    !out.contains(&token[cut..]),
                    "the rest leaked at {cut}: {out}"
                );
            }
            assert!(out.ends_with(" done\n"), "{out}");
            assert!(red.iter().all(|d| d.applied && d.action == Action::Redact));
        }
        // Ordinary partial lines (prompts, progress) are released as they are.
        for partial in [
            "Downloading 45%",
            "Continue? [y/N] ",
            "step 3/10 ....",
            "password: ",
        ] {
            let mut r = StreamRedactor::new(engine());
            let (mut out, _) = r.push(partial);
            out.push_str(&r.flush().0);
            assert_eq!(out, partial);
        }
        // A value typed slowly after a secret-like key is a possible secret.
        let mut r = StreamRedactor::new(engine());
        let (mut out, _) = r.push("DB_PASSWORD=hunt");
        out.push_str(&r.flush().0);
        out.push_str(&r.push("er2 ok\n").0);
        assert!(
            out.starts_with("DB_PASSWORD=[REDACTED:held-back-timeout:"),
            "{out}"
        );
        assert!(!out.contains("hunt") && !out.contains("er2"), "{out}");
    }

    #[test]
    fn the_hold_back_is_bounded() {
        let mut r = StreamRedactor::new(engine());
        let (out, _) = r.push(&"x".repeat(MAX_HOLD + 1));
        assert_eq!(
            out.len(),
            MAX_HOLD + 1,
            "a token longer than the bound is released"
        );
        let (out, _) = r.push("partial tok");
        assert_eq!(out, "partial ");
        assert_eq!(r.held(), 3);
        let (out, _) = r.flush();
        assert_eq!(out, "tok");
        // A key block that has begun is not released by a timer.
        let (out, _) = r.push("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49");
        assert_eq!(out, "");
        assert_eq!(r.flush().0, "");
        let (out, red) = r.push("AwEHoUQDQgAE\n-----END EC PRIVATE KEY-----\n");
        assert_eq!(
            out,
            format!("{}\n", marker("private-key-block", &red[0].digest))
        );
    }
}
