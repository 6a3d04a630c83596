//! Every rule's own cases: a text the engine reports with exactly that rule id and value,
//! and a near miss (placeholder, wrong length, wrong checksum, missing context) it must
//! not report under that id. `every_rule_has_a_hit_and_a_near_miss` keeps the table
//! complete as rules are added.
//!
//! All values are synthetic: vendor bodies come from [`synth`], a seeded generator, so
//! no real credential is ever written down here; checksummed numbers were computed for
//! this table.

use std::collections::BTreeSet;

use crate::{rule_ids, Engine};

/// Rule ids only the streaming redactor reports; `stream.rs` tests them.
const STREAM_ONLY: &[&str] = &["task-secret", "private-key-unterminated"];

const HEX: &str = "0123456789abcdef";
const LOWER_DIGITS: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_DIGITS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BASE62: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const BASE64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// RFC 4648 base32 (AWS key ids).
const BASE32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Bech32's data characters, upper case (age keys).
const BECH32: &str = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";

/// `len` pseudo-random characters of `alphabet`, the same for the same `seed` each run.
fn synth(seed: &str, alphabet: &str, len: usize) -> String {
    // FNV-1a of the seed, then xorshift64*.
    let mut state = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let alphabet = alphabet.as_bytes();
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33;
            // Truncation is the point: an index below the alphabet's length.
            char::from(alphabet[(r % alphabet.len() as u64) as usize])
        })
        .collect()
}

/// What a case expects of its rule.
enum Expect {
    /// The engine reports exactly this value, under the case's rule and nothing else.
    Hit(String),
    /// No finding of the case's rule.
    Miss,
}

struct Case {
    rule: &'static str,
    text: String,
    expect: Expect,
}

fn hit(rule: &'static str, text: impl Into<String>, value: impl Into<String>) -> Case {
    Case {
        rule,
        text: text.into(),
        expect: Expect::Hit(value.into()),
    }
}

/// A hit whose whole text is the value.
fn bare(rule: &'static str, value: impl Into<String>) -> Case {
    let value = value.into();
    hit(rule, value.clone(), value)
}

fn miss(rule: &'static str, text: impl Into<String>) -> Case {
    Case {
        rule,
        text: text.into(),
        expect: Expect::Miss,
    }
}

/// A vendor's tokens: `prefix` then a synthetic body of `len` characters of `alphabet`
/// is a hit; the same with one character fewer is a near miss. `len` is the shortest
/// body the rule's regex allows.
fn prefixed(rule: &'static str, prefix: &str, alphabet: &str, len: usize) -> [Case; 2] {
    let body = synth(rule, alphabet, len);
    [
        bare(rule, format!("{prefix}{body}")),
        miss(rule, format!("{prefix}{}", &body[1..])),
    ]
}

/// The table: at least one hit and one near miss per rule id.
fn cases() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();

    // Vendor tokens whose near miss is the same token one character short.
    for (rule, prefix, alphabet, len) in [
        ("aws-bedrock-key", "ABSK", BASE64, 100),
        ("github-pat", "ghp_", BASE62, 36),
        ("github-oauth", "gho_", BASE62, 36),
        ("github-user-to-server", "ghu_", BASE62, 36),
        ("github-server-to-server", "ghs_", BASE62, 36),
        ("github-refresh", "ghr_", BASE62, 36),
        ("gitlab-token", "glpat-", BASE62, 20),
        ("gitlab-runner-registration", "GR1348941", BASE62, 20),
        ("npm-token", "npm_", BASE62, 36),
        ("dockerhub-pat", "dckr_pat_", BASE62, 27),
        ("twilio-api-key", "SK", HEX, 32),
        ("digitalocean-token", "dop_v1_", HEX, 64),
        ("vault-token", "hvs.", BASE62, 90),
        ("shopify-token", "shpat_", HEX, 32),
        ("pulumi-token", "pul-", HEX, 40),
        ("doppler-token", "dp.pt.", BASE62, 40),
        ("atlassian-token", "ATATT3", BASE62, 186),
        ("sentry-user-token", "sntryu_", HEX, 64),
        ("planetscale-token", "pscale_tkn_", BASE62, 32),
        ("flyio-token", "fo1_", BASE62, 43),
        ("onepassword-service-token", "ops_eyJ", BASE64, 250),
        ("linear-key", "lin_api_", BASE62, 40),
        ("prefect-key", "pnu_", BASE62, 36),
        ("readme-key", "rdme_", LOWER_DIGITS, 70),
        ("rubygems-key", "rubygems_", HEX, 48),
        ("clojars-token", "CLOJARS_", LOWER_DIGITS, 60),
        ("shippo-token", "shippo_live_", HEX, 40),
        ("easypost-token", "EZAK", BASE62, 54),
        ("jfrog-token", "AKCp", BASE62, 69),
        ("scalingo-token", "tk-us-", BASE62, 48),
        ("mailgun-key", "key-", HEX, 32),
        ("square-token", "sq0atp-", BASE62, 22),
        ("facebook-token", "EAAC", BASE62, 100),
        ("heroku-key-v2", "HRKU-AA", BASE62, 58),
        ("sonar-token", "sqp_", HEX, 40),
        ("sourcegraph-token", "sgp_", HEX, 40),
        ("groq-key", "gsk_", BASE62, 52),
        ("replicate-token", "r8_", BASE62, 37),
        ("perplexity-key", "pplx-", BASE62, 48),
        ("xai-key", "xai-", BASE62, 80),
        ("openrouter-key", "sk-or-v1-", HEX, 64),
        ("supabase-token", "sbp_", HEX, 40),
        ("google-oauth-secret", "GOCSPX-", BASE62, 28),
        ("firecrawl-key", "fc-", HEX, 32),
        ("buildkite-token", "bkua_", HEX, 40),
        ("honeycomb-key", "hcaik_", LOWER_DIGITS, 40),
        ("resend-key", "re_", BASE62, 30),
        ("tavily-key", "tvly-dev-", BASE62, 32),
        ("notion-legacy-token", "secret_", BASE62, 43),
        ("cerebras-key", "csk-", LOWER_DIGITS, 48),
        ("render-key", "rnd_", BASE62, 32),
        ("linear-oauth-token", "lin_oauth_", HEX, 64),
        ("elevenlabs-key", "sk_", HEX, 48),
        ("crates-io-token", "cio", BASE62, 32),
        ("pinecone-key", "pcsk_", BASE62, 60),
        ("supabase-secret-key", "sb_secret_", BASE62, 24),
        ("twitter-bearer-token", "AAAAAAAAAAAAAAAAAAAAA", BASE62, 30),
        ("google-oauth-access-token", "ya29.", BASE64_URL, 30),
        ("figma-token", "figd_", BASE62, 40),
        ("tencent-secret-id", "AKID", BASE62, 32),
        ("contentful-pat", "CFPAT-", BASE62, 43),
    ] {
        c.extend(prefixed(rule, prefix, alphabet, len));
    }

    // AWS key ids are base32 after the prefix: an 8 or a 1 is outside it.
    let body = synth("aws", BASE32, 16);
    c.push(bare("aws-access-key-id", format!("AKIA{body}")));
    c.push(miss("aws-access-key-id", format!("AKIA{}8", &body[1..])));

    // Fine-grained GitHub PATs: 22 characters, `_`, 59 characters.
    let (a, b) = (synth("fg-a", BASE62, 22), synth("fg-b", BASE62, 59));
    c.push(bare(
        "github-fine-grained-pat",
        format!("github_pat_{a}_{b}"),
    ));
    c.push(miss("github-fine-grained-pat", format!("github_pat_{a}")));

    let v = synth("gitlab-session", LOWER_DIGITS, 32);
    c.push(hit(
        "gitlab-session-cookie",
        format!("Cookie: _gitlab_session={v}"),
        v.clone(),
    ));
    c.push(miss(
        "gitlab-session-cookie",
        format!("Cookie: _gitlab_session={}", &v[1..]),
    ));

    // Slack: a team or user number of eight digits or more, or a token over 100 bytes.
    let tail = synth("slack", BASE62, 24);
    c.push(bare(
        "slack-token",
        format!("xoxb-4829173055-7730461928374-{tail}"),
    ));
    c.push(miss("slack-token", format!("xoxb-4829-7730-{tail}")));
    let v = format!(
        "xapp-1-A0{}-4829173055612-{}",
        synth("xapp-a", UPPER_DIGITS, 9),
        synth("xapp-b", HEX, 64)
    );
    c.push(bare("slack-app-token", v.clone()));
    c.push(miss("slack-app-token", v.to_ascii_lowercase()));
    let v = format!("xoxe-1-{}", synth("slack-config", BASE62, 140));
    c.push(bare("slack-config-token", v));
    c.push(miss(
        "slack-config-token",
        format!("xoxe-1-{}", synth("slack-config", BASE62, 99)),
    ));
    let v = format!(
        "https://hooks.slack.com/services/T0{}/B0{}/{}",
        synth("hook-t", UPPER_DIGITS, 8),
        synth("hook-b", UPPER_DIGITS, 8),
        synth("hook", BASE62, 24)
    );
    c.push(hit("slack-webhook", format!("POST {v}"), v));
    c.push(miss(
        "slack-webhook",
        "POST https://hooks.slack.com/services/T000/B000/XXXX",
    ));

    let body = synth("stripe", BASE62, 24);
    c.push(bare("stripe-key", format!("sk_live_{body}")));
    c.push(miss("stripe-key", format!("sk_dev_{body}")));

    // Google keys are exactly 35 characters after `AIza`.
    let body = synth("google", BASE64_URL, 35);
    c.push(hit(
        "google-api-key",
        format!("AIza{body} "),
        format!("AIza{body}"),
    ));
    c.push(miss("google-api-key", format!("AIza{body}Q ")));

    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\\n{}\\n{}\\n-----END PRIVATE KEY-----\\n",
        synth("gcp-1", BASE64, 64),
        synth("gcp-2", BASE64, 40)
    );
    c.push(hit(
        "gcp-service-account",
        format!("{{\"type\": \"service_account\", \"private_key\": \"{pem}\"}}"),
        pem,
    ));
    c.push(miss(
        "gcp-service-account",
        "{\"type\": \"service_account\", \"private_key\": \"${GCP_PRIVATE_KEY}\"}",
    ));

    // OpenAI keys carry `T3BlbkFJ` (base64 of `OpenAI`) inside; project keys may not.
    let (a, b) = (synth("openai-a", BASE62, 20), synth("openai-b", BASE62, 20));
    c.push(bare("openai-key", format!("sk-{a}T3BlbkFJ{b}")));
    c.push(miss("openai-key", format!("sk-{a}{b}")));
    let body = synth("openai-proj", BASE64_URL, 40);
    c.push(bare("openai-project-key", format!("sk-proj-{body}")));
    c.push(miss(
        "openai-project-key",
        format!("sk-proj-{}", &body[1..]),
    ));

    // Anthropic keys end in `AA`.
    let body = synth("anthropic", BASE64_URL, 93);
    c.push(bare("anthropic-key", format!("sk-ant-api03-{body}AA")));
    c.push(miss("anthropic-key", format!("sk-ant-api03-{body}BB")));

    let hook = format!(
        "https://discord.com/api/webhooks/1754380165011329456/{}",
        synth("discord-webhook", BASE64_URL, 68)
    );
    c.push(bare("discord-webhook", hook.clone()));
    c.push(miss(
        "discord-webhook",
        "https://discord.com/api/webhooks/1754380165011329456/short",
    ));
    let teams = format!(
        "https://acme.webhook.office.com/webhookb2/{}@{}/IncomingWebhook/{}/{}",
        "f0f2ba03-73ab-44c8-8de3-0e8be4511f0a",
        "6145002a-3bb8-4876-9ca1-d1b7aeb874bb",
        synth("teams", HEX, 32),
        "9835bb27-64e0-43a1-b2c3-d4e5f6a7b8c9"
    );
    c.push(bare("teams-webhook", teams.clone()));
    c.push(miss("teams-webhook", teams[..teams.len() - 2].to_owned()));
    let refresh = format!("1//0{}", synth("google-refresh", BASE64_URL, 60));
    c.push(hit(
        "google-refresh-token",
        format!("refresh_token: {refresh}"),
        refresh.clone(),
    ));
    c.push(miss(
        "google-refresh-token",
        "see https://example.org/1//0abc",
    ));
    let fcm = format!(
        "AAAA{}:APA91b{}",
        synth("fcm-1", BASE64_URL, 7),
        synth("fcm-2", BASE64_URL, 134)
    );
    c.push(bare("firebase-server-key", fcm.clone()));
    c.push(miss(
        "firebase-server-key",
        format!("AAAA{}:APA91bshort", synth("fcm-1", BASE64_URL, 7)),
    ));
    let bt = format!(
        "access_token$production${}${}",
        synth("bt-1", LOWER_DIGITS, 16),
        synth("bt-2", HEX, 32)
    );
    c.push(bare("braintree-token", bt.clone()));
    c.push(miss("braintree-token", bt[..bt.len() - 1].to_owned()));
    let mapbox = format!(
        "sk.eyJ{}.{}",
        synth("mapbox-1", BASE64_URL, 60),
        synth("mapbox-2", BASE64_URL, 22)
    );
    c.push(bare("mapbox-secret-token", mapbox.clone()));
    c.push(miss(
        "mapbox-secret-token",
        mapbox.replacen("sk.", "pk.", 1),
    ));
    let plaid = "access-production-57bab7e8-ef35-4dd6-bcee-d652a47e9791";
    c.push(bare("plaid-access-token", plaid));
    c.push(miss("plaid-access-token", &plaid[..plaid.len() - 1]));
    let ali = format!("LTAI{}", synth("alibaba", BASE62, 20));
    c.push(bare("alibaba-access-key", ali.clone()));
    c.push(miss(
        "alibaba-access-key",
        format!("LTAI{}", synth("alibaba", BASE62, 8)),
    ));

    // Azure storage connection strings: the 88-character account key.
    let key = format!("{}==", synth("azure-storage-key", BASE64, 86));
    c.push(hit(
        "azure-storage-key",
        format!("DefaultEndpointsProtocol=https;AccountName=app;AccountKey={key};EndpointSuffix=core.windows.net"),
        key.clone(),
    ));
    c.push(miss(
        "azure-storage-key",
        format!("AccountKey={};", &key[2..]),
    ));
    // Telegram bot tokens: the bot's id, a colon, then AA and 33 characters.
    let bot = format!(
        "6839271045:AA{}",
        synth("telegram-bot-token", BASE64_URL, 33)
    );
    c.push(hit(
        "telegram-bot-token",
        format!("TELEGRAM={bot}"),
        bot.clone(),
    ));
    c.push(miss(
        "telegram-bot-token",
        format!("TELEGRAM={}", &bot[..bot.len() - 1]),
    ));
    // LangSmith keys: two hex runs after the kind.
    let ls = format!(
        "lsv2_pt_{}_{}",
        synth("langsmith-key", HEX, 32),
        synth("langsmith-key-2", HEX, 10)
    );
    c.push(bare("langsmith-key", ls.clone()));
    c.push(miss("langsmith-key", ls.replace("lsv2_pt_", "lsv2_xx_")));
    // Cloudflare Origin CA keys.
    let ca = format!(
        "v1.0-{}-{}",
        synth("cloudflare-origin-ca-key", HEX, 24),
        synth("cloudflare-origin-ca-key-2", HEX, 146)
    );
    c.push(bare("cloudflare-origin-ca-key", ca.clone()));
    c.push(miss(
        "cloudflare-origin-ca-key",
        ca[..ca.len() - 1].to_owned(),
    ));

    // A JWT: base64url JSON header and payload, then a signature.
    let b64 = |json: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    };
    let header = b64(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64(r#"{"sub":"synthetic-user-42","iat":1700000000}"#);
    let v = format!("{header}.{payload}.{}", synth("jwt", BASE64_URL, 43));
    c.push(hit("jwt", format!("Cookie: session={v}"), v));
    // The payload is not JSON, so it does not start `ey`.
    c.push(miss(
        "jwt",
        format!(
            "{header}.{}.{}",
            b64("synthetic-payload"),
            synth("jwt", BASE64_URL, 43)
        ),
    ));

    let body = synth("pypi", BASE64_URL, 60);
    c.push(bare("pypi-token", format!("pypi-AgEIcHlwaS5vcmc{body}")));
    c.push(miss(
        "pypi-token",
        format!("pypi-AgEIcHlwaS5vcmc{}", &body[..49]),
    ));

    let (a, b) = (
        synth("sendgrid-a", BASE64_URL, 22),
        synth("sendgrid-b", BASE62, 43),
    );
    c.push(bare("sendgrid-key", format!("SG.{a}.{b}")));
    c.push(miss("sendgrid-key", format!("SG.{a}.{}", &b[..38])));

    // Hugging Face bodies are letters only.
    let body = synth("hf", LETTERS, 34);
    c.push(bare("huggingface-token", format!("hf_{body}")));
    c.push(miss("huggingface-token", format!("hf_{}7", &body[1..])));
    let body = synth("hf-org", LETTERS, 34);
    c.push(bare("huggingface-org-token", format!("api_org_{body}")));
    c.push(miss(
        "huggingface-org-token",
        format!("api_org_{}7", &body[1..]),
    ));

    // `s.` is common in code: the body must mix capitals, small letters and digits.
    c.push(bare(
        "vault-token-legacy",
        format!("s.{}", synth("vault-legacy", BASE62, 24)),
    ));
    c.push(miss(
        "vault-token-legacy",
        format!("s.{}", synth("vault-legacy", HEX, 24)),
    ));

    let body = synth("databricks", HEX, 32);
    c.push(bare("databricks-token", format!("dapi{body}-2")));
    c.push(miss("databricks-token", format!("dapi{body}7")));

    // Sentry org tokens: base64 of a JSON claim set holding `region_url`.
    let claims = |json: &str| {
        use base64::Engine as _;
        let secret = synth("sentry-org", BASE62, 43);
        format!(
            "sntrys_{}_{secret}",
            base64::engine::general_purpose::STANDARD.encode(json)
        )
    };
    c.push(bare(
        "sentry-org-token",
        claims(
            r#"{"iat":1700000000.0,"url":"https://sentry.io","region_url":"https://us.sentry.io","org":"synthetic-org"}"#,
        ),
    ));
    c.push(miss(
        "sentry-org-token",
        claims(r#"{"iat":1700000000.0,"url":"https://sentry.io","org":"synthetic-org"}"#),
    ));

    let body = format!(
        "{}_{}",
        synth("grafana", BASE62, 32),
        synth("grafana-2", HEX, 8)
    );
    c.push(bare("grafana-token", format!("glsa_{body}")));
    c.push(miss("grafana-token", format!("glsa_{}", &body[..31])));

    let groups = |seed: &str| {
        let g = synth(seed, UPPER_DIGITS, 32);
        format!(
            "A3-{}-{}-{}-{}-{}",
            &g[..6],
            &g[6..17],
            &g[17..22],
            &g[22..27],
            &g[27..]
        )
    };
    let v = groups("1password");
    c.push(bare("onepassword-secret-key", v.clone()));
    c.push(miss("onepassword-secret-key", v.to_ascii_lowercase()));

    let (a, b) = (synth("postman-a", HEX, 24), synth("postman-b", HEX, 34));
    c.push(bare("postman-key", format!("PMAK-{a}-{b}")));
    c.push(miss("postman-key", format!("PMAK-{a}-{}", &b[1..])));

    let body = synth("newrelic", UPPER_DIGITS, 27);
    c.push(bare("newrelic-key", format!("NRAK-{body}")));
    c.push(miss("newrelic-key", format!("NRAK-{}", &body[..18])));

    // age keys are bech32: `B`, `I`, `O` and `1` are not in its alphabet.
    let body = synth("age", BECH32, 58);
    c.push(bare("age-secret-key", format!("AGE-SECRET-KEY-1{body}")));
    c.push(miss(
        "age-secret-key",
        format!("AGE-SECRET-KEY-1{}B", &body[1..]),
    ));

    let v = format!(
        "pat.{}.{}.{}",
        synth("harness-a", BASE64_URL, 22),
        synth("harness-b", BASE62, 24),
        synth("harness-c", BASE62, 20)
    );
    c.push(bare("harness-token", v.clone()));
    c.push(bare("harness-token", v.replacen("pat.", "sat.", 1)));
    c.push(miss("harness-token", &v[..v.len() - 1]));

    let (a, b, d) = (
        synth("snyk-a", LOWER_DIGITS, 8),
        synth("snyk-b", BASE64_URL, 24),
        synth("snyk-c", BASE62, 24),
    );
    c.push(bare("snyk-token", format!("snyk_uat.{a}.{b}.{d}")));
    c.push(miss(
        "snyk-token",
        format!("snyk_uat.{}.{b}.{d}", a.to_ascii_uppercase()),
    ));

    // `.ico-` is common in hashed file names: the body must mix the three classes.
    c.push(bare(
        "infracost-token",
        format!("ico-{}", synth("infracost", BASE62, 32)),
    ));
    c.push(miss(
        "infracost-token",
        format!("favicon.ico-{}", synth("infracost", HEX, 32)),
    ));

    let (a, b) = (synth("tf-a", BASE62, 14), synth("tf-b", BASE64_URL, 67));
    c.push(bare("hashicorp-tf-token", format!("{a}.atlasv1.{b}")));
    c.push(miss(
        "hashicorp-tf-token",
        format!("{}.atlasv1.{b}", &a[1..]),
    ));

    let body = synth("mailchimp", HEX, 32);
    c.push(bare("mailchimp-key", format!("{body}-us14")));
    c.push(miss("mailchimp-key", format!("{}-us14", &body[1..])));

    let (a, b) = (
        synth("airtable-a", BASE62, 14),
        synth("airtable-b", HEX, 64),
    );
    c.push(bare("airtable-pat", format!("pat{a}.{b}")));
    c.push(miss("airtable-pat", format!("pat{}.{b}", &a[1..])));

    // Azure AD client secrets: three characters, a digit, `Q~`, then 31 to 34.
    let v = format!(
        "{}8Q~{}",
        synth("azure-a", BASE62, 3),
        synth("azure-b", BASE62, 34)
    );
    c.push(hit(
        "azure-ad-client-secret",
        format!("secret {v}"),
        v.clone(),
    ));
    c.push(miss(
        "azure-ad-client-secret",
        format!("secret {}", &v[..v.len() - 4]),
    ));

    // Flutterwave bodies use the letters a to h only.
    let body = synth("flutterwave", "abcdefgh0123456789", 32);
    c.push(bare("flutterwave-key", format!("FLWSECK_TEST-{body}-X")));
    c.push(miss(
        "flutterwave-key",
        format!("FLWSECK_TEST-{}z-X", &body[1..]),
    ));

    let (a, b) = (synth("sidekiq-a", HEX, 8), synth("sidekiq-b", HEX, 8));
    c.push(hit(
        "sidekiq-secret",
        format!("export BUNDLE_ENTERPRISE__CONTRIBSYS__COM={a}:{b}"),
        format!("{a}:{b}"),
    ));
    c.push(miss(
        "sidekiq-secret",
        format!("export BUNDLE_ENTERPRISE__CONTRIBSYS__COM={}:{b}", &a[1..]),
    ));

    // Notion: eleven digits, then 35 characters.
    let body = synth("notion", BASE62, 35);
    c.push(bare("notion-token", format!("ntn_48291730556{body}")));
    c.push(miss("notion-token", format!("ntn_4829173055K{body}")));

    // An app id and secret, `id|secret`, only where Facebook is named.
    let v = format!("148291730556120|{}", synth("fb-access", BASE64_URL, 32));
    c.push(hit(
        "facebook-access-token",
        format!("facebook app token {v}"),
        v.clone(),
    ));
    c.push(miss("facebook-access-token", format!("app token {v}")));

    let pem = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n{}\n-----END OPENSSH PRIVATE KEY-----",
        synth("pem-1", BASE64, 70),
        synth("pem-2", BASE64, 40)
    );
    c.push(hit("private-key-block", format!("{pem}\n"), pem));
    c.push(miss(
        "private-key-block",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nshort\n-----END OPENSSH PRIVATE KEY-----",
    ));
    // Inside a JSON string, its newlines escaped.
    let escaped = format!(
        "-----BEGIN PRIVATE KEY-----\\n{}\\n-----END PRIVATE KEY-----",
        synth("escaped-pem", BASE64, 64)
    );
    c.push(hit(
        "private-key-block",
        format!("{{\"private_key\": \"{escaped}\\n\"}}"),
        escaped,
    ));
    // Quoted in prose, a BEGIN line is no key.
    c.push(miss(
        "private-key-block",
        "Paste the whole key, from -----BEGIN OPENSSH PRIVATE KEY----- to -----END OPENSSH PRIVATE KEY----- included, into the field named deploy_key",
    ));

    let ppk = format!(
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: synthetic\n\
         Public-Lines: 1\n{}\nPrivate-Lines: 1\n{}\nPrivate-MAC: {}",
        synth("putty-pub", BASE64, 64),
        synth("putty-priv", BASE64, 44),
        synth("putty-mac", HEX, 64)
    );
    c.push(bare("putty-private-key", ppk.clone()));
    // Cut off before its MAC, it is still a key file; the header alone is not.
    let cut = ppk[..ppk.find("Private-MAC").unwrap_or(ppk.len())].to_owned();
    c.push(bare("putty-private-key", cut));
    c.push(miss(
        "putty-private-key",
        "PuTTY-User-Key-File-3: ssh-ed25519",
    ));

    let ssh2 = format!(
        "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: \"synthetic\"\n{}\n---- END SSH2 ENCRYPTED PRIVATE KEY ----",
        synth("ssh2", BASE64, 70)
    );
    c.push(bare("ssh2-private-key", ssh2));
    c.push(miss(
        "ssh2-private-key",
        "---- BEGIN SSH2 PUBLIC KEY ----\nComment: x\nAAAAB3NzaC1yc2E",
    ));

    let hexline = |seed: &str| {
        let h = synth(seed, HEX, 30);
        (0..15)
            .map(|i| &h[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":")
    };
    let pkey = format!(
        "Private-Key: (256 bit)\npriv:\n    {}:\n    {}:\n    c5:a0\n",
        hexline("pkey-1"),
        hexline("pkey-2")
    );
    c.push(bare("private-key-text", pkey));
    c.push(miss(
        "private-key-text",
        "Public-Key: (256 bit)\npub:\n    04:e0:e0:c3:bf\n",
    ));

    // Key files in base64, as `kubectl get secret -o yaml` shows them.
    use base64::Engine as _;
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        synth("pem-b64", BASE64, 64)
    );
    let encoded = b64(&pem);
    c.push(hit(
        "private-key-base64",
        format!("  tls.key: {encoded}"),
        encoded.clone(),
    ));
    let public = b64(&pem.replace("PRIVATE", "PUBLIC"));
    c.push(miss("private-key-base64", format!("  tls.crt: {public}")));

    let p12 = format!(
        "MIIK7AIBAzCCCqIGCSqGSIb3DQEHAaCC{}",
        synth("p12", BASE64, 80)
    );
    c.push(hit(
        "pkcs12-keystore",
        format!("keystore.p12: {p12}"),
        p12.clone(),
    ));
    c.push(miss("pkcs12-keystore", "keystore.p12: MIIK7AIBAzCC"));

    // Credentials in URLs, command lines and headers.
    c.push(hit(
        "url-credentials",
        "REDIS_URL=redis://worker:Kq7vN2xLp9Rt@cache.internal:6379/0",
        "Kq7vN2xLp9Rt",
    ));
    c.push(miss(
        "url-credentials",
        "REDIS_URL=redis://worker:${REDIS_PASSWORD}@cache.internal:6379/0",
    ));
    c.push(hit(
        "curl-auth-user",
        "curl -u deploy:Wv8rT2qLx5 https://ci.internal/v1/jobs",
        "deploy:Wv8rT2qLx5",
    ));
    c.push(miss(
        "curl-auth-user",
        "curl -u deploy:$DEPLOY_PASSWORD https://ci.internal/v1/jobs",
    ));
    let v = synth("bearer", BASE64_URL, 40);
    c.push(hit(
        "authorization-header",
        format!("Authorization: Bearer {v}"),
        v,
    ));
    c.push(miss("authorization-header", "Authorization: Bearer $TOKEN"));
    // `ops:Qw7…4zX`: the password was masked before it was encoded.
    c.push(miss(
        "authorization-header",
        "Authorization: Basic b3BzOlF3N+KApjR6WA==",
    ));

    // Assignments.
    let v = synth("vendor", BASE62, 32);
    c.push(hit(
        "vendor-assignment",
        format!("DATADOG_API_KEY = \"{v}\""),
        v.clone(),
    ));
    c.push(miss(
        "vendor-assignment",
        format!("datadog_site_name = \"{v}\""),
    ));
    c.push(miss("vendor-assignment", format!("SetSysctl = \"{v}\"")));
    c.push(hit(
        "attribute-password",
        "<add key=\"SmtpPassword\" value=\"Hx7#qLm2\" />",
        "Hx7#qLm2",
    ));
    c.push(miss(
        "attribute-password",
        "<add key=\"SmtpPassword\" value=\"changeme\" />",
    ));
    // A password's name whose last word is not password: the generic rule's case.
    c.push(hit(
        "generic-password",
        "password_for_db=Mv9!tQ2#wLx7",
        "Mv9!tQ2#wLx7",
    ));
    c.push(miss("generic-password", "password_for_db=changeme"));
    c.push(miss(
        "generic-password",
        "password_for_db=pscale_tkn_Qw7…4zX",
    ));
    // A name ending in password: any value a person chose, PINs and passphrases too.
    for (text, value) in [
        ("DB_PASSWORD=Mv9!tQ2#wLx7", "Mv9!tQ2#wLx7"),
        ("SMTP_PASS=8841", "8841"),
        (
            "passphrase: \"ferry-bakery-zipper-orange\"",
            "ferry-bakery-zipper-orange",
        ),
        (
            "define( 'DB_PASSWORD', 'Say\"Monkey\"56' );",
            "Say\"Monkey\"56",
        ),
        (
            "  <password>coyote-jelly-chimney</password>",
            "coyote-jelly-chimney",
        ),
        ("$ printenv VNC_PASSWORD\nBright2016?", "Bright2016?"),
        ("CACHE_AUTH=71lamp?Ore", "71lamp?Ore"),
        (
            "const DB_PASSWORD: &str = \"Lantern-42-quill\";",
            "Lantern-42-quill",
        ),
        (
            "node['mysql']['server_root_password'] = 'gR4v!ty-Well'",
            "gR4v!ty-Well",
        ),
        ("smtp_passwort = Sommer2024!", "Sommer2024!"),
        ("\"contraseña\": \"Cielo#77azul\"", "Cielo#77azul"),
    ] {
        c.push(hit("password-assignment", text, value));
    }
    for text in [
        "DB_PASSWORD=${DB_PASSWORD}",
        "password_hash: $2b$12$KIXQ4m1Y8Fq3Zl3h6o2Cxe",
        "PASSWORD_RESET_TTL=3600",
        "PWD=/app",
        "require_password: true",
        "password: DB_PASSWORD",
        "username,password,email",
        "curl -u <user:password> https://test.com/endpoint",
        "feat: Terraform fields for password (#1237)",
        "administrator_login_password = var.db_password",
        "auth: ldap",
        "auth: oauth2",
        "let password: String = read_password()?;",
    ] {
        c.push(miss("password-assignment", text));
    }
    // A random value of any characters, assigned to a name that says secret.
    for (text, value) in [
        (
            "SECRET_KEY = '(@4%odk5isu(a0o320n)r&#_m5qjz0wo%wo'",
            "(@4%odk5isu(a0o320n)r&#_m5qjz0wo%wo",
        ),
        (
            "APP_KEY=base64:yzts8dWmH0Js5tDF0aUCjX4InXxhUgxsG653BBK/VTk=",
            "base64:yzts8dWmH0Js5tDF0aUCjX4InXxhUgxsG653BBK/VTk=",
        ),
        (
            "HMAC_SECRET=qQGNU/bUBNaQPnVzlhL09KVCrKSSTTdTBKNqXbkS/E4=",
            "qQGNU/bUBNaQPnVzlhL09KVCrKSSTTdTBKNqXbkS/E4=",
        ),
        (
            "System.setProperty(\"LEDGER_TOKEN\", \"kP3x9QvT7mZs2LwR8nBy4Hd6\");",
            "kP3x9QvT7mZs2LwR8nBy4Hd6",
        ),
    ] {
        c.push(hit("secret-assignment", text, value));
    }
    for text in [
        "cache_key: cabin.21b7daa947104808.bd640f3fc42e079d",
        "notes = \"Maven - io.jsonwebtoken:jjwt-jackson-0.11.2\"",
        "SECRET_KEY = '${DJANGO_SECRET_KEY}'",
        "fakeSecretKey = 'k3yv4lu3mx9q2zp7Xq!9'",
        "api_key: 3f2b8c1e-9a7d-4e5f-b6c4-1d2e3f4a5b6c",
        "<entry key=\"jetbrains.mps.v8_elimination\" value=\"executed\" />",
        "\"token1\": \"xoxp-1234567890\"",
    ] {
        c.push(miss("secret-assignment", text));
    }
    // Kubernetes env entries: the name on one line, the value on the next.
    c.push(hit(
        "env-entry",
        "env:\n  - name: DB_PASSWORD\n    value: ferry-bakery-zipper",
        "ferry-bakery-zipper",
    ));
    c.push(hit(
        "env-entry",
        "env:\n  - name: CF_API_KEY\n    value: 0a887e8ee0b6b32cd147323531dcd246a5897",
        "0a887e8ee0b6b32cd147323531dcd246a5897",
    ));
    c.push(miss(
        "env-entry",
        "env:\n  - name: LOG_LEVEL\n    value: info-verbose-2024",
    ));
    c.push(miss(
        "env-entry",
        "env:\n  - name: DB_PASSWORD\n    value: \"$(DB_PASSWORD)\"",
    ));
    // A tool's password flag.
    for (text, value) in [
        (
            "mysql -h db -u etl -p'.Fh/yYu8g4l2WO' payments",
            ".Fh/yYu8g4l2WO",
        ),
        (
            "docker login -u deploy -p NEC5IcJlXneiW2 harbor.corp.local",
            "NEC5IcJlXneiW2",
        ),
        (
            "sqlcmd -S sql -U sa -P vapor-circle-clock -Q \"SELECT 1\"",
            "vapor-circle-clock",
        ),
        (
            "keytool -list -keystore t.jks -storepass zIspZdmi6dbh",
            "zIspZdmi6dbh",
        ),
        ("gpg --batch --passphrase 'Pil0t*9' -d a.gpg", "Pil0t*9"),
        (
            "smbclient //nas/public -U 'jdoe%zUI@cWnk3k0' -c ls",
            "zUI@cWnk3k0",
        ),
        (
            "htpasswd -bc /etc/nginx/.htpasswd admin v0y4gewiz4rd64!",
            "v0y4gewiz4rd64!",
        ),
        (
            "pg-01.prod.internal:5432:*:ops:rIW4O1W6Csce9U",
            "rIW4O1W6Csce9U",
        ),
        (
            "machine ftp.host.com login analytics password 704st4206",
            "704st4206",
        ),
        (
            "bitcoin-cli -rpcpassword K9v!xq2LmT getblockcount",
            "K9v!xq2LmT",
        ),
        (
            "curl -su 'ops:Velvet-83-Hinge' https://grafana.lan/api/health",
            "Velvet-83-Hinge",
        ),
        (
            "cqlsh db 9042 -u ops -p 'O'\\''Brien-66?' -e 'DESCRIBE KEYSPACES'",
            "O'\\''Brien-66?",
        ),
    ] {
        c.push(hit("cli-password", text, value));
    }
    for text in [
        "mysql -u root -p payments",
        "echo $TOKEN | docker login -u deploy --password-stdin",
        "docker login -u deploy -p $REGISTRY_PASSWORD",
        "sqlcmd -S sql -U sa -P %SA_PWD% -i init.sql",
        "root:x:0:0:root:/root:/bin/bash",
        "psql --no-password -h db.internal -U app",
        "vault login --password-file=/run/secrets/pw",
        "docker run -u 1000:1000 alpine",
    ] {
        c.push(miss("cli-password", text));
    }
    // Directives and prose that name a password: the value must look like one.
    for (text, value) in [
        ("requirepass Xq7!vRm2pk", "Xq7!vRm2pk"),
        ("enable secret Lw9#Tz4qpa", "Lw9#Tz4qpa"),
        ("the password is \"Rook4-Tide!\"", "Rook4-Tide!"),
    ] {
        c.push(hit("password-directive", text, value));
    }
    for text in [
        "password requisite pam_pwquality.so retry=3",
        "your password was changed",
        "kubectl get secret db-creds-7f9x",
    ] {
        c.push(miss("password-directive", text));
    }
    for (text, value) in [("SIM PIN: 4821", "4821"), ("pin code 290417", "290417")] {
        c.push(hit("pin", text, value));
    }
    for text in [
        "spin: 4821",
        "pinned 2024 versions",
        "PIN_LENGTH=6",
        "PIN: 1234",
    ] {
        c.push(miss("pin", text));
    }
    // Calls and pairs that take a user and then a password.
    for (text, value) in [
        (
            "r = requests.get(url, auth=HTTPBasicAuth('ops', 'Maple#0921'))",
            "Maple#0921",
        ),
        (
            "session.auth = ('ops', 'Juniper-Vault-19')",
            "Juniper-Vault-19",
        ),
        (
            "const db = new Sequelize('shop', 'app', \"Quartz!88lamp\", { dialect: 'mysql' });",
            "Quartz!88lamp",
        ),
    ] {
        c.push(hit("credential-call", text, value));
    }
    for text in [
        "session.auth = (user, password)",
        "HTTPBasicAuth('ops', os.environ['PW'])",
        "conn = psycopg2.connect(\"db.example.com\", 5432, \"orders\")",
        "new Sequelize('shop', 'app', process.env.DB_PASS)",
        "smtp.login('admin', 'Admin')",
    ] {
        c.push(miss("credential-call", text));
    }
    let v = synth("generic", BASE62, 32);
    c.push(hit("generic-secret", format!("api_token: {v}"), v.clone()));
    // A UUID is an id far more often than a secret.
    c.push(miss(
        "generic-secret",
        "client_secret: 3f2b8c1e-9a7d-4e5f-b6c4-1d2e3f4a5b6c",
    ));
    c.push(miss("generic-secret", format!("api_token_file: {v}")));
    c.push(miss(
        "generic-secret",
        "arn:aws:secretsmanager:eu-central-1:483706575900:secret:prod/tomato-z7IRZC",
    ));
    c.push(miss(
        "generic-secret",
        "cache key: cabin.21b7daa947104808.bd640f3fc42e079d",
    ));

    let v = synth("cookie", LOWER_DIGITS, 32);
    c.push(hit(
        "session-cookie",
        format!("> Cookie: theme=dark; sessionid={v}; lang=en"),
        v.clone(),
    ));
    c.push(miss(
        "session-cookie",
        format!("> Cookie: csrftoken={v}; theme=dark"),
    ));
    c.push(miss(
        "session-cookie",
        "Set-Cookie: sessionid=<redacted>; HttpOnly",
    ));

    let hex = synth("openssl-k", HEX, 64);
    c.push(hit(
        "openssl-raw-key",
        format!("openssl enc -aes-256-cbc -K {hex} -iv 00ff -in a"),
        hex.clone(),
    ));
    c.push(miss(
        "openssl-raw-key",
        "openssl enc -aes-256-cbc -K $KEY -iv $IV -in a",
    ));
    let token = format!(
        "{}.{}",
        synth("kubeadm-a", LOWER_DIGITS, 6),
        synth("kubeadm-b", LOWER_DIGITS, 16)
    );
    c.push(hit(
        "kubeadm-token",
        format!("kubeadm join 10.0.0.1:6443 --token {token} --discovery-token-unsafe-skip-ca-verification"),
        token.clone(),
    ));
    c.push(miss(
        "kubeadm-token",
        "kubeadm join 10.0.0.1:6443 --token <token> --discovery-token-ca-cert-hash sha256:<hash>",
    ));
    let k3s = format!(
        "K10{}::server:{}",
        synth("k3s-a", HEX, 64),
        synth("k3s-b", HEX, 32)
    );
    c.push(hit("k3s-token", format!("K3S_TOKEN={k3s}"), k3s.clone()));
    c.push(miss("k3s-token", "K3S_TOKEN=K10<hash>::server:<password>"));
    let unseal = synth("unseal", BASE64, 44);
    c.push(hit(
        "vault-unseal-key",
        format!("Unseal Key 1: {unseal}"),
        unseal.clone(),
    ));
    c.push(miss("vault-unseal-key", "Unseal Key 1: <redacted>"));
    let flag_token = synth("secret-flag", BASE62, 24);
    c.push(hit(
        "secret-flag",
        format!("doctl auth init --access-token {flag_token}"),
        flag_token.clone(),
    ));
    c.push(miss("secret-flag", "erl -sname a -setcookie $COOKIE"));
    c.push(miss(
        "secret-flag",
        "gh auth login --with-token --hostname ghe.corp",
    ));

    c.push(hit(
        "dsn-credentials",
        "sql.Open(\"mysql\", \"app:Tq4!vLm8zz@tcp(db:3306)/shop\")",
        "Tq4!vLm8zz",
    ));
    c.push(miss(
        "dsn-credentials",
        "sql.Open(\"mysql\", \"app:${DB_PASS}@tcp(db:3306)/shop\")",
    ));

    // Personal data; checksummed numbers were computed for this table.
    c.push(hit(
        "email",
        "reply to m.lindqvist@fastmail.se today",
        "m.lindqvist@fastmail.se",
    ));
    c.push(miss("email", "reply to m.lindqvist@example.org today"));
    c.push(hit(
        "credit-card",
        "card 4539 2716 0384 2153 ok",
        "4539 2716 0384 2153",
    ));
    c.push(miss("credit-card", "card 4539 2716 0384 2154 ok"));
    c.push(miss(
        "credit-card",
        "4539271603842153:error:0909006C:PEM routines:get_name:no start line",
    ));
    c.push(hit(
        "iban",
        "IBAN DE05 3705 0198 4730 2916 55.",
        "DE05 3705 0198 4730 2916 55",
    ));
    c.push(miss("iban", "IBAN DE06 3705 0198 4730 2916 55."));
    c.push(hit("us-ssn", "SSN 412-67-3098", "412-67-3098"));
    c.push(hit(
        "us-ssn-labelled",
        "Applicant SSN: 412673098",
        "412673098",
    ));
    c.push(miss("us-ssn-labelled", "Applicant SSN: 912673098"));
    c.push(hit(
        "credit-card-track2",
        "[pos-280] track2_equiv=4111111111111111D290620184409",
        "4111111111111111",
    ));
    c.push(miss(
        "credit-card-track2",
        "[pos-280] track2_equiv=4111111111111112D290620184409",
    ));
    c.push(hit(
        "key-value-row",
        "  name: stripe_webhook_secret\n value: 1dsw2ywxkgDn9IvKLXoT8ebFhNTm7Pxr",
        "1dsw2ywxkgDn9IvKLXoT8ebFhNTm7Pxr",
    ));
    c.push(miss(
        "key-value-row",
        "  name: stripe_webhook_url\n value: 1dsw2ywxkgDn9IvKLXoT8ebFhNTm7Pxr",
    ));
    c.push(hit(
        "ci-declared-secret",
        "::add-mask::BP477AEO2B5B4F3DZ3BVRILH72OPSX",
        "BP477AEO2B5B4F3DZ3BVRILH72OPSX",
    ));
    c.push(miss("ci-declared-secret", "::add-mask::$DEPLOY_TOKEN"));
    c.push(hit(
        "ntp-key",
        "ntp authentication-key 9 hmac-sha256 aTZ0Ps7eIXXLq183nPouOnhawM96pPFU",
        "aTZ0Ps7eIXXLq183nPouOnhawM96pPFU",
    ));
    c.push(miss(
        "ntp-key",
        "ntp authentication-key 9 hmac-sha256 <key>",
    ));
    c.push(hit(
        "password-shaped",
        "net user ops Hx7!kLm2qq /add",
        "Hx7!kLm2qq",
    ));
    c.push(miss("password-shaped", "user guide: PKCS#8-encoded Key1"));
    c.push(miss("us-ssn", "SSN 912-67-3098"));
    c.push(hit("us-ssn", "SSN 412.67.3098", "412.67.3098"));
    c.push(hit(
        "credit-card",
        "UATP 122000000000003",
        "122000000000003",
    ));
    c.push(hit(
        "phone-international",
        "call +44 20 7946 0958",
        "+44 20 7946 0958",
    ));
    c.push(miss("phone-international", "call +44 20 79"));
    c.push(hit(
        "phone-international",
        "from abroad 0049 30 12345678 only",
        "0049 30 12345678",
    ));
    c.push(miss("phone-international", "stamp 0049 15 03 2024"));
    c.push(miss(
        "phone-international",
        "G T82 TRAJ 0102 0000 0012 1002 9690",
    ));
    c.push(hit(
        "phone-mobile",
        "mobile 0532 481 27 09",
        "0532 481 27 09",
    ));
    c.push(miss("phone-mobile", "mobile 0432 481 27 09"));
    c.push(hit("phone-mobile", "call 138 0013 8000", "138 0013 8000"));
    // A bare run of digits is a size, not a phone number.
    c.push(miss("phone-mobile", "size: 15728640000 bytes"));
    c.push(hit(
        "phone-national",
        "call (415) 555-0132",
        "(415) 555-0132",
    ));
    c.push(miss("phone-national", "call 415-555-01324"));
    for (text, value) in [
        ("driver: 04 72 18 93 56", "04 72 18 93 56"),
        ("Abholung (0812) 5521-3390 morgen", "(0812) 5521-3390"),
        ("ask for 8 (495) 123-45-67 today", "8 (495) 123-45-67"),
        ("Delivery driver 07911 123456", "07911 123456"),
    ] {
        c.push(hit("phone-national", text, value));
    }
    for text in [
        "00000010  03 90 76 54 85 a1 b2 c3",
        "released 01.02.2024 at noon",
        "rows 0 1 2 3",
        "IBAN DE89 3704 0044 0532 0130 01",
        "ssn=078-05-1120",
        "zip 02134-1234",
        "version 01.02.03.04.05",
        " 1  0      0 812344  90212 3124432    0    0    12    34 1024 2048  5  2 93",
    ] {
        c.push(miss("phone-national", text));
    }
    c.push(hit(
        "phone-labelled",
        "Ana Souza\nM: 532 123 45 67",
        "532 123 45 67",
    ));
    c.push(hit(
        "phone-column",
        "id,name,phone\n7,Ana Souza,4471 839 205",
        "4471 839 205",
    ));
    c.push(miss("phone-column", "id,phone_count,city\n7,12,Paris"));
    c.push(hit(
        "phone-international",
        "called back on (+234) 816 255 9793 after",
        "(+234) 816 255 9793",
    ));
    for (text, value) in [
        ("Contact number: 962 788 20 34", "962 788 20 34"),
        ("TEL;TYPE=HOME:06 43 98 65 65", "06 43 98 65 65"),
        ("\"mobile\": \"(0851) 7401-919\"", "(0851) 7401-919"),
        (
            "verification code to 998 785 4167 (provider=sns)",
            "998 785 4167",
        ),
    ] {
        c.push(hit("phone-labelled", text, value));
    }
    for text in [
        "phone_count: 12",
        "contact updated 2026-11-30 10:14",
        "cell 1.2.3",
        "call stack depth 40961",
    ] {
        c.push(miss("phone-labelled", text));
    }
    c
}

/// What the engine reports in `text`, as (rule, value).
fn scanned<'t>(engine: &Engine, text: &'t str) -> Vec<(&'static str, &'t str)> {
    engine
        .scan(text)
        .iter()
        .map(|f| (f.rule, &text[f.start..f.end]))
        .collect()
}

#[test]
fn every_rule_has_a_hit_and_a_near_miss() {
    let ids: BTreeSet<&str> = rule_ids().filter(|id| !STREAM_ONLY.contains(id)).collect();
    let cases = cases();
    let mut problems: Vec<String> = Vec::new();
    for id in &ids {
        let of_rule = || cases.iter().filter(|c| c.rule == *id);
        if !of_rule().any(|c| matches!(c.expect, Expect::Hit(_))) {
            problems.push(format!("{id}: no true-positive case"));
        }
        if !of_rule().any(|c| matches!(c.expect, Expect::Miss)) {
            problems.push(format!("{id}: no near-miss case"));
        }
    }
    for case in &cases {
        if !ids.contains(case.rule) {
            problems.push(format!(
                "{}: a case names a rule that does not exist",
                case.rule
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn each_rule_reports_its_hits_and_not_its_near_misses() {
    let engine = Engine::new();
    let mut failures: Vec<String> = Vec::new();
    for case in cases() {
        let got = scanned(&engine, &case.text);
        match &case.expect {
            Expect::Hit(value) => {
                assert!(
                    case.text.contains(value.as_str()),
                    "{}: value not in its text",
                    case.rule
                );
                if got != [(case.rule, value.as_str())] {
                    failures.push(format!(
                        "{}: want only {value:?}\n  in {:?}\n  got {got:?}",
                        case.rule, case.text
                    ));
                }
            }
            Expect::Miss => {
                if got.iter().any(|(rule, _)| *rule == case.rule) {
                    failures.push(format!(
                        "{}: near miss reported\n  in {:?}\n  got {got:?}",
                        case.rule, case.text
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
