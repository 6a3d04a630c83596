//! The rule table. Specific vendor formats come first: where findings overlap, the
//! earlier rule wins, so a GitHub token is reported as one, not as a generic secret.

use regex::Regex;

use crate::validate::{
    card, checksummed, email, generic, iban, not_placeholder, ssn, url_password,
};
use crate::{Reach, Rule};

type Check = Option<fn(&str, &str) -> bool>;

fn rule(
    id: &'static str,
    kind: &'static str,
    keywords: &'static [&'static str],
    re: &str,
    check: Check,
) -> Rule {
    let reach = match (id, keywords.is_empty()) {
        (
            "private-key-block"
            | "putty-private-key"
            | "gcp-service-account"
            | "private-key-text"
            | "ssh2-private-key",
            _,
        ) => Reach::Whole,
        ("iban", true) => Reach::IbanStarts,
        (_, true) => Reach::DigitRuns,
        _ => Reach::Lines,
    };
    Rule {
        id,
        kind,
        keywords,
        // unwrap: the patterns are constants, compiled by the unit tests.
        regex: Regex::new(re).unwrap(),
        check,
        reach,
        word_start: false,
    }
}

/// Prefixed rules whose prefix is common in ordinary text (`s.` of a member access,
/// `.ico-` of a hashed file name), so the random base62 body must carry the evidence: one
/// without capitals, small letters and digits all three (a hex digest, a camel-case
/// identifier such as `s.AcceptanceTimeoutSeconds`) is not a token.
const BASE62_BODIES: &[&str] = &[
    "vault-token-legacy",
    "infracost-token",
    "resend-key",
    "crates-io-token",
];

/// Prefixed rules whose keyword is not where the token starts (`-us` in a Mailchimp key,
/// a vendor's name before a Facebook token): their keyword hits need no word boundary.
const KEYWORD_INSIDE: &[&str] = &[
    "mailchimp-key",
    "digitalocean-token",
    "hashicorp-tf-token",
    "facebook-access-token",
    "telegram-bot-token",
    "firebase-server-key",
];

/// Vendor tokens recognised by a fixed prefix: (id, kind, prefilter keywords, regex).
const PREFIXED: &[(&str, &str, &[&str], &str)] = &[
    (
        "aws-access-key-id",
        "aws-access-key",
        &["akia", "asia", "abia", "acca", "a3t"],
        r"(?-u:\b)((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?-u:\b)",
    ),
    (
        "figma-token",
        "api-key",
        &["figd_"],
        r"(?-u:\b)(figd_[A-Za-z0-9_\-]{40,})",
    ),
    (
        "contentful-pat",
        "api-key",
        &["cfpat-"],
        r"(?-u:\b)(CFPAT-[A-Za-z0-9_\-]{43})(?:[^A-Za-z0-9_\-]|$)",
    ),
    (
        "tencent-secret-id",
        "api-key",
        &["akid"],
        r"(?-u:\b)(AKID[A-Za-z0-9]{32})(?-u:\b)",
    ),
    (
        "aws-bedrock-key",
        "api-key",
        &["absk"],
        r"(?-u:\b)(ABSK[A-Za-z0-9+/]{100,}={0,2})",
    ),
    (
        "github-pat",
        "github-token",
        &["ghp_"],
        r"(?-u:\b)(ghp_[A-Za-z0-9]{36,255})",
    ),
    (
        "github-oauth",
        "github-token",
        &["gho_"],
        r"(?-u:\b)(gho_[A-Za-z0-9]{36,255})",
    ),
    (
        "github-user-to-server",
        "github-token",
        &["ghu_"],
        r"(?-u:\b)(ghu_[A-Za-z0-9]{36,255})",
    ),
    (
        "github-server-to-server",
        "github-token",
        &["ghs_"],
        r"(?-u:\b)(ghs_[A-Za-z0-9]{36,255})",
    ),
    (
        "github-refresh",
        "github-token",
        &["ghr_"],
        r"(?-u:\b)(ghr_[A-Za-z0-9]{36,255})",
    ),
    (
        "github-fine-grained-pat",
        "github-token",
        &["github_pat_"],
        r"(?-u:\b)(github_pat_[A-Za-z0-9_]{60,255})",
    ),
    (
        "gitlab-token",
        "gitlab-token",
        &[
            "glpat-", "glptt-", "gldt-", "glrt-", "glsoat-", "glcbt-", "glffct-", "glimt-",
            "glagent-", "gloas-", "glft-", "glwt-", "glsst-",
        ],
        r"(?-u:\b)(gl(?:pat|ptt|dt|rt|soat|cbt|ffct|imt|agent|oas|ft|wt|sst)-[A-Za-z0-9_\-]{20,64})",
    ),
    (
        "gitlab-runner-registration",
        "gitlab-token",
        &["GR1348941"],
        r"(?-u:\b)(GR1348941[A-Za-z0-9_\-]{20})",
    ),
    (
        "gitlab-session-cookie",
        "gitlab-token",
        &["_gitlab_session"],
        r"_gitlab_session=([0-9a-z]{32})",
    ),
    // Configuration tokens before the general form, which also matches their start.
    (
        "slack-config-token",
        "slack-token",
        &["xoxe"],
        r"(?-u:\b)(xoxe(?:\.xox[bp])?-\d-[A-Za-z0-9]{100,300})",
    ),
    (
        "slack-token",
        "slack-token",
        &[
            "xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xoxe-", "xoxc-",
        ],
        r"(?-u:\b)(xox[abposrec]-(?:\d+-){1,4}[A-Za-z0-9\-]{6,250})",
    ),
    (
        "slack-app-token",
        "slack-token",
        &["xapp-"],
        r"(?-u:\b)(xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+)",
    ),
    (
        "slack-webhook",
        "slack-webhook",
        &["hooks.slack.com"],
        r"((?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{40,120})",
    ),
    (
        "stripe-key",
        "stripe-key",
        &["sk_", "rk_"],
        r"(?-u:\b)((?:sk|rk)_(?:test|live|prod)_[A-Za-z0-9]{10,99})",
    ),
    (
        "google-api-key",
        "google-api-key",
        &["aiza"],
        r"(?-u:\b)(AIza[0-9A-Za-z_\-]{35})(?:[^0-9A-Za-z_\-]|$)",
    ),
    (
        "gcp-service-account",
        "private-key",
        &["service_account"],
        r#""private_key"\s*:\s*"(-----BEGIN[^"]{40,})""#,
    ),
    (
        "openai-key",
        "openai-key",
        &["sk-"],
        r"(?-u:\b)(sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_\-]{20,74}T3BlbkFJ[A-Za-z0-9_\-]{20,74})",
    ),
    (
        "openai-project-key",
        "openai-key",
        &["sk-proj-"],
        r"(?-u:\b)(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,200})",
    ),
    (
        "anthropic-key",
        "api-key",
        &["sk-ant-"],
        r"(?-u:\b)(sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_\-]{93}AA)(?:[^A-Za-z0-9_\-]|$)",
    ),
    (
        "jwt",
        "jwt",
        &["eyj"],
        r"(?-u:\b)(ey[A-Za-z0-9_\-]{15,}\.ey[A-Za-z0-9_\-/\\]{15,}\.(?:[A-Za-z0-9_\-/\\]{10,}={0,2})?)",
    ),
    (
        "npm-token",
        "api-key",
        &["npm_"],
        r"(?-u:\b)(npm_[A-Za-z0-9]{36})(?-u:\b)",
    ),
    (
        "pypi-token",
        "api-key",
        &["pypi-"],
        // pypi.org and test.pypi.org macaroons.
        r"(?-u:\b)(pypi-Ag(?:EIcHlwaS5vcmc|ENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_\-]{50,})",
    ),
    (
        "dockerhub-pat",
        "api-key",
        &["dckr_"],
        r"(?-u:\b)(dckr_(?:pat|oat)_[A-Za-z0-9_\-]{27,})",
    ),
    (
        "sendgrid-key",
        "api-key",
        &["sg."],
        r"(?-u:\b)(SG\.[A-Za-z0-9_\-=]{20,24}\.[A-Za-z0-9_\-=]{39,50})",
    ),
    (
        "twilio-api-key",
        "api-key",
        &["sk"],
        r"(?-u:\b)(SK[0-9a-fA-F]{32})(?-u:\b)",
    ),
    (
        "huggingface-token",
        "api-key",
        &["hf_"],
        r"(?-u:\b)(hf_[A-Za-z]{34})(?-u:\b)",
    ),
    (
        "huggingface-org-token",
        "api-key",
        &["api_org_"],
        r"(?-u:\b)(api_org_[A-Za-z]{34})(?-u:\b)",
    ),
    (
        "digitalocean-token",
        "api-key",
        &["_v1_"],
        r"(?-u:\b)(do[opr]_v1_[a-f0-9]{64})(?-u:\b)",
    ),
    (
        "vault-token",
        "api-key",
        &["hvs.", "hvb.", "hvr."],
        r"(?-u:\b)(hv[sb]\.[A-Za-z0-9_\-]{90,300}|hvr\.[A-Za-z0-9_\-]{24})",
    ),
    (
        "vault-token-legacy",
        "api-key",
        &["s."],
        r"(?-u:\b)(s\.[A-Za-z0-9]{24})(?-u:\b)",
    ),
    (
        "shopify-token",
        "api-key",
        &["shp"],
        r"(?-u:\b)(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})(?-u:\b)",
    ),
    (
        "databricks-token",
        "api-key",
        &["dapi"],
        r"(?-u:\b)(dapi[a-f0-9]{32}(?:-\d)?)(?-u:\b)",
    ),
    (
        "pulumi-token",
        "api-key",
        &["pul-"],
        r"(?-u:\b)(pul-[a-f0-9]{40})(?-u:\b)",
    ),
    (
        "doppler-token",
        "api-key",
        &["dp."],
        r"(?-u:\b)(dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44})",
    ),
    (
        "atlassian-token",
        "api-key",
        &["atatt"],
        r"(?-u:\b)(ATATT3[A-Za-z0-9_\-=]{186})",
    ),
    (
        "sentry-user-token",
        "api-key",
        &["sntryu_"],
        r"(?-u:\b)(sntryu_[a-f0-9]{64})(?:[^A-Za-z0-9_\-+/=]|$)",
    ),
    (
        // Base64 of `{"iat": ..., "url": ..., "region_url": ...}`, then `_` and 43 chars.
        "sentry-org-token",
        "api-key",
        &["sntrys_ey"],
        r"(?-u:\b)(sntrys_eyJpYXQiO[A-Za-z0-9+/]{10,200}(?:LCJyZWdpb25fdXJsIjoi|InJlZ2lvbl91cmwiOi|cmVnaW9uX3VybCI6)[A-Za-z0-9+/]{10,200}={0,2}_[A-Za-z0-9+/]{43})(?:[^A-Za-z0-9+/]|$)",
    ),
    (
        "planetscale-token",
        "api-key",
        &["pscale_"],
        r"(?-u:\b)(pscale_(?:tkn|pw|oauth)_[A-Za-z0-9=\-_.]{32,64})",
    ),
    (
        "grafana-token",
        "api-key",
        &["glc_", "glsa_"],
        r"(?-u:\b)(gl(?:c|sa)_[A-Za-z0-9+/_]{32,400}={0,2})",
    ),
    (
        "flyio-token",
        "api-key",
        &["fo1_", "fm1", "fm2"],
        r"(?-u:\b)((?:fo1_[A-Za-z0-9_\-]{43})|(?:fm[12][ar]?_[A-Za-z0-9+/]{100,}={0,3}))",
    ),
    (
        "onepassword-service-token",
        "api-key",
        &["ops_ey"],
        r"(?-u:\b)(ops_eyJ[A-Za-z0-9+/]{250,}={0,3})",
    ),
    (
        "onepassword-secret-key",
        "api-key",
        &["a3-"],
        r"(?-u:\b)(A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5})(?-u:\b)",
    ),
    (
        "linear-key",
        "api-key",
        &["lin_api_"],
        r"(?-u:\b)(lin_api_[A-Za-z0-9]{40})(?-u:\b)",
    ),
    (
        "postman-key",
        "api-key",
        &["pmak-"],
        r"(?-u:\b)(PMAK-[a-f0-9]{24}-[a-f0-9]{34})(?-u:\b)",
    ),
    (
        "newrelic-key",
        "api-key",
        &["nrak-", "nrjs-", "nrii-"],
        r"(?-u:\b)(NR(?:AK|JS|II)-[A-Za-z0-9]{19,32})(?-u:\b)",
    ),
    (
        "prefect-key",
        "api-key",
        &["pnu_"],
        r"(?-u:\b)(pnu_[A-Za-z0-9]{36})(?-u:\b)",
    ),
    (
        "readme-key",
        "api-key",
        &["rdme_"],
        r"(?-u:\b)(rdme_[a-z0-9]{70})(?-u:\b)",
    ),
    (
        "rubygems-key",
        "api-key",
        &["rubygems_"],
        r"(?-u:\b)(rubygems_[a-f0-9]{48})(?-u:\b)",
    ),
    (
        "clojars-token",
        "api-key",
        &["clojars_"],
        r"(?-u:\b)(CLOJARS_[a-z0-9]{60})(?-u:\b)",
    ),
    (
        "age-secret-key",
        "private-key",
        &["age-secret-key-1"],
        // After a word boundary, or after an escaped newline (`\nAGE-SECRET-KEY-1…` in JSON).
        r"(?:(?-u:\b)|\\n)(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})(?-u:\b)",
    ),
    (
        "shippo-token",
        "api-key",
        &["shippo_"],
        r"(?-u:\b)(shippo_(?:live|test)_[a-fA-F0-9]{40})(?-u:\b)",
    ),
    (
        "easypost-token",
        "api-key",
        &["ezak", "eztk"],
        r"(?-u:\b)(EZ[AT]K[A-Za-z0-9]{54})(?-u:\b)",
    ),
    (
        "harness-token",
        "api-key",
        &["pat.", "sat."],
        r"(?-u:\b)((?:pat|sat)\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20})(?-u:\b)",
    ),
    (
        "snyk-token",
        "api-key",
        &["snyk"],
        r"(?-u:\b)(snyk_(?:uat|sat)\.[a-z0-9]{8}\.[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{20,})",
    ),
    (
        "jfrog-token",
        "api-key",
        &["akcp"],
        r"(?-u:\b)(AKCp[A-Za-z0-9]{69})(?-u:\b)",
    ),
    (
        "scalingo-token",
        "api-key",
        &["tk-us-"],
        r"(?-u:\b)(tk-us-[A-Za-z0-9_\-]{48})(?-u:\b)",
    ),
    (
        "infracost-token",
        "api-key",
        &["ico-"],
        r"(?-u:\b)(ico-[A-Za-z0-9]{32})(?-u:\b)",
    ),
    (
        "hashicorp-tf-token",
        "api-key",
        &[".atlasv1."],
        r"(?-u:\b)([A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9\-_=]{60,70})",
    ),
    (
        "mailchimp-key",
        "api-key",
        &["-us"],
        r"(?-u:\b)([a-f0-9]{32}-us\d{1,2})(?-u:\b)",
    ),
    (
        "mailgun-key",
        "api-key",
        &["key-"],
        r"(?-u:\b)(key-[a-f0-9]{32})(?-u:\b)",
    ),
    (
        "square-token",
        "api-key",
        &["sq0atp-", "sq0csp-", "eaaa"],
        r"(?-u:\b)((?:EAAA|sq0atp-|sq0csp-)[A-Za-z0-9_\-]{22,60})",
    ),
    (
        "facebook-token",
        "api-key",
        &["eaa"],
        r"(?-u:\b)(EAA[MC][A-Za-z0-9]{100,})",
    ),
    (
        "airtable-pat",
        "api-key",
        &["pat"],
        r"(?-u:\b)(pat[A-Za-z0-9]{14}\.[a-f0-9]{64})(?-u:\b)",
    ),
    (
        "heroku-key-v2",
        "api-key",
        &["hrku-"],
        r"(?-u:\b)(HRKU-AA[A-Za-z0-9_\-]{58})",
    ),
    (
        "sonar-token",
        "api-key",
        &["sqa_", "sqp_", "squ_"],
        r"(?-u:\b)(sq[apu]_[a-f0-9]{40})(?-u:\b)",
    ),
    (
        "azure-ad-client-secret",
        "api-key",
        &["q~"],
        r"(?:^|[^A-Za-z0-9_~.\-])([A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34})",
    ),
    (
        "flutterwave-key",
        "api-key",
        &["flw"],
        r"(?-u:\b)(FLW(?:PUB|SEC)K(?:_TEST)?-[a-h0-9]{32}-X|FLWSECK_TEST[a-h0-9]{12})",
    ),
    (
        "sidekiq-secret",
        "api-key",
        &["contribsys"],
        r#"(?i)BUNDLE_(?:ENTERPRISE|GEMS)__CONTRIBSYS__COM\w*["'>]?(?:\s+string)?\s*(?:[:.]{0,3}=>?|=>|>)?\s*["']?([a-f0-9]{8}:[a-f0-9]{8})"#,
    ),
    (
        "sourcegraph-token",
        "api-key",
        &["sgp_"],
        r"(?-u:\b)(sgp_(?:[A-Fa-f0-9]{16}_)?[A-Fa-f0-9]{40})(?-u:\b)",
    ),
    (
        "notion-token",
        "api-key",
        &["ntn_"],
        r"(?-u:\b)(ntn_[0-9]{11}[A-Za-z0-9]{35})(?-u:\b)",
    ),
    (
        "facebook-access-token",
        "api-key",
        &["facebook"],
        r"(?-u:\b)(\d{15,16}[|%][0-9A-Za-z\-_]{27,40})",
    ),
    (
        "discord-webhook",
        "api-key",
        &["/api/webhooks/"],
        r"(https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[A-Za-z0-9_\-]{60,80})",
    ),
    (
        "teams-webhook",
        "api-key",
        &["webhook.office"],
        r"(https://[A-Za-z0-9\-]+\.webhook\.office\.com/webhookb2/[A-Za-z0-9\-]{36}@[A-Za-z0-9\-]{36}/IncomingWebhook/[A-Za-z0-9]{32}/[A-Za-z0-9\-]{36})",
    ),
    (
        "google-refresh-token",
        "api-key",
        &["1//0"],
        r"(?-u:\b)(1//0[A-Za-z0-9_\-]{40,300})",
    ),
    (
        "firebase-server-key",
        "api-key",
        &[":apa91b"],
        r"(?-u:\b)(AAAA[A-Za-z0-9_\-]{7}:APA91b[A-Za-z0-9_\-]{100,200})",
    ),
    (
        "braintree-token",
        "api-key",
        &["access_token$"],
        r"(access_token\$(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32})",
    ),
    (
        "mapbox-secret-token",
        "api-key",
        &["sk.eyj"],
        r"(?-u:\b)(sk\.eyJ[A-Za-z0-9_\-]{20,200}\.[A-Za-z0-9_\-]{20,60})",
    ),
    (
        "alibaba-access-key",
        "api-key",
        &["ltai"],
        r"(?-u:\b)(LTAI[A-Za-z0-9]{12,20})(?-u:\b)",
    ),
    (
        "firecrawl-key",
        "api-key",
        &["fc-"],
        r"(?-u:\b)(fc-[a-f0-9]{32})(?-u:\b)",
    ),
    (
        "pinecone-key",
        "api-key",
        &["pcsk_"],
        r"(?-u:\b)(pcsk_[A-Za-z0-9_]{60,90})(?-u:\b)",
    ),
    (
        "supabase-secret-key",
        "api-key",
        &["sb_secret_"],
        r"(?-u:\b)(sb_secret_[A-Za-z0-9_\-]{24,64})(?:[^A-Za-z0-9_\-]|$)",
    ),
    (
        "buildkite-token",
        "api-key",
        &["bkua_"],
        r"(?-u:\b)(bkua_[a-f0-9]{40})(?-u:\b)",
    ),
    (
        "honeycomb-key",
        "api-key",
        &["hcaik_", "hcxik_"],
        r"(?-u:\b)(hc[ax]ik_[A-Za-z0-9]{40,80})(?-u:\b)",
    ),
    (
        "resend-key",
        "api-key",
        &["re_"],
        r"(?-u:\b)(re_[A-Za-z0-9_]{30,40})(?-u:\b)",
    ),
    (
        "tavily-key",
        "api-key",
        &["tvly-"],
        r"(?-u:\b)(tvly-(?:dev-|prod-)?[A-Za-z0-9]{32})(?-u:\b)",
    ),
    (
        "notion-legacy-token",
        "api-key",
        &["secret_"],
        r"(?-u:\b)(secret_[A-Za-z0-9]{43})(?-u:\b)",
    ),
    (
        "cerebras-key",
        "api-key",
        &["csk-"],
        r"(?-u:\b)(csk-[a-z0-9]{48})(?-u:\b)",
    ),
    (
        "render-key",
        "api-key",
        &["rnd_"],
        r"(?-u:\b)(rnd_[A-Za-z0-9]{32})(?-u:\b)",
    ),
    (
        "linear-oauth-token",
        "api-key",
        &["lin_oauth_"],
        r"(?-u:\b)(lin_oauth_[a-f0-9]{64})(?-u:\b)",
    ),
    (
        "elevenlabs-key",
        "api-key",
        &["sk_"],
        r"(?-u:\b)(sk_[a-f0-9]{48})(?-u:\b)",
    ),
    (
        "plaid-access-token",
        "api-key",
        &[
            "access-production-",
            "access-development-",
            "access-sandbox-",
        ],
        r"(?-u:\b)(access-(?:production|development|sandbox)-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})(?-u:\b)",
    ),
    (
        "twitter-bearer-token",
        "api-key",
        &["aaaaaaaaaaaa"],
        r"(?-u:\b)(A{21}[A-Za-z0-9%]{30,150})(?-u:\b)",
    ),
    (
        "google-oauth-access-token",
        "api-key",
        &["ya29."],
        r"(?-u:\b)(ya29\.[A-Za-z0-9_\-]{30,300})",
    ),
    (
        "crates-io-token",
        "api-key",
        &["cio"],
        r"(?-u:\b)(cio[A-Za-z0-9]{32})(?-u:\b)",
    ),
    // AI and cloud providers coding agents use, by their published prefixes.
    (
        "groq-key",
        "api-key",
        &["gsk_"],
        r"(?-u:\b)(gsk_[A-Za-z0-9]{52})(?-u:\b)",
    ),
    (
        "replicate-token",
        "api-key",
        &["r8_"],
        r"(?-u:\b)(r8_[A-Za-z0-9]{37})(?-u:\b)",
    ),
    (
        "perplexity-key",
        "api-key",
        &["pplx-"],
        r"(?-u:\b)(pplx-[A-Za-z0-9]{48})(?-u:\b)",
    ),
    (
        "xai-key",
        "api-key",
        &["xai-"],
        r"(?-u:\b)(xai-[A-Za-z0-9]{80})(?-u:\b)",
    ),
    (
        "openrouter-key",
        "api-key",
        &["sk-or-v1-"],
        r"(?-u:\b)(sk-or-v1-[a-f0-9]{64})(?-u:\b)",
    ),
    (
        "supabase-token",
        "api-key",
        &["sbp_"],
        r"(?-u:\b)(sbp_[a-f0-9]{40})(?-u:\b)",
    ),
    (
        "google-oauth-secret",
        "api-key",
        &["gocspx-"],
        r"(?-u:\b)(GOCSPX-[A-Za-z0-9_\-]{28})(?:[^A-Za-z0-9_\-]|$)",
    ),
    (
        "azure-storage-key",
        "api-key",
        &["accountkey="],
        r"AccountKey=([A-Za-z0-9+/]{86}==)",
    ),
    (
        "telegram-bot-token",
        "api-key",
        &[":aa"],
        r"(?:(?-u:\b)|bot)(\d{8,10}:AA[A-Za-z0-9_\-]{33})(?:[^A-Za-z0-9_\-]|$)",
    ),
    (
        "langsmith-key",
        "api-key",
        &["lsv2_"],
        r"(?-u:\b)(lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10})(?-u:\b)",
    ),
    (
        "cloudflare-origin-ca-key",
        "api-key",
        &["v1.0-"],
        r"(?-u:\b)(v1\.0-[a-f0-9]{24}-[a-f0-9]{146})(?-u:\b)",
    ),
    (
        "private-key-block",
        "private-key",
        &["private key"],
        r"(-----BEGIN[ A-Z0-9_\-]{0,100}PRIVATE KEY(?: BLOCK)?-----(?:\r?\n|\\(?:r\\)?n|[ \t]+(?:[A-Za-z0-9+/=]{16}|Proc-Type|Version))[\s\S]{48,}?(?:-----END[ A-Z0-9_\-]{0,100}PRIVATE KEY(?: BLOCK)?-----|\z))",
    ),
    (
        "putty-private-key",
        "private-key",
        &["putty-user-key-file"],
        r"(PuTTY-User-Key-File-\d: [\s\S]{20,}?(?:Private-MAC: [a-f0-9]+|\z))",
    ),
    (
        "ssh2-private-key",
        "private-key",
        &["begin ssh2"],
        r"(---- BEGIN SSH2 (?:ENCRYPTED )?PRIVATE KEY ----[\s\S]{20,}?(?:---- END SSH2 (?:ENCRYPTED )?PRIVATE KEY ----|\z))",
    ),
    // `openssl pkey -text`: the key's numbers in hex, after `Private-Key: (256 bit)`.
    (
        "private-key-text",
        "private-key",
        &["private-key:"],
        r"((?:(?:ED25519|ED448|X25519|X448) )?Private-Key:[^\n]{0,40}(?:\n|\\n)(?:[ \t]*[A-Za-z]+:[ \t]*(?:\n|\\n)|[ \t]+(?:[0-9a-f]{2}:)+[0-9a-f]{0,2}[ \t]*(?:\n|\\n|\z))+)",
    ),
    // A private key file in base64 (a Kubernetes secret's data, `base64 -w0 key.pem`):
    // the encodings of how key files start; the check decodes it to be sure.
    (
        "private-key-base64",
        "private-key",
        &[
            "ls0tls1crud",
            "uhvuvfktvx",
            "uhjpdmf0zs1",
            "ruqyntuxos",
            "iybjcmvhdg",
            "iybwdwjsaw",
            "qudflvnfq1",
        ],
        r"(?-u:\b)((?:LS0tLS1CRUdJTi|UHVUVFktVXNlci1LZXktRmlsZS|UHJpdmF0ZS1LZXk6|RUQyNTUxOSBQcml2YXRlLUtleT|IyBjcmVhdGVkOi|IyBwdWJsaWMga2V5OiBhZ2|QUdFLVNFQ1JFVC1LRVkt)[A-Za-z0-9+/]{20,}={0,2})",
    ),
    // A PKCS#12 keystore (it holds private keys) in base64: version 3, then PKCS#7 data.
    (
        "pkcs12-keystore",
        "private-key",
        &["ibazcc"],
        r"(MII[A-Za-z0-9+/]{3}IBAzCC[A-Za-z0-9+/]{2,8}GCSqGSIb3DQEHA[A-Za-z0-9+/=]{40,})",
    ),
];

/// Vendors known by name, whose token is the value assigned right after the name.
const NAMED: &[&str] = &[
    "adafruit",
    "adobe",
    "airtable",
    "algolia",
    "alibaba",
    "asana",
    "atlassian",
    "authress",
    "beamer",
    "bitbucket",
    "bittrex",
    "cisco",
    "clickhouse",
    "cloudflare",
    "codecov",
    "coinbase",
    "confluent",
    "contentful",
    "databricks",
    "datadog",
    "discord",
    "droneci",
    "dropbox",
    "duffel",
    "dynatrace",
    "easypost",
    "etsy",
    "facebook",
    "fastly",
    "finicity",
    "finnhub",
    "flickr",
    "flutterwave",
    "frameio",
    "freshbooks",
    "gitter",
    "gocardless",
    "grafana",
    "harness",
    "hashicorp",
    "heroku",
    "hubspot",
    "huggingface",
    "intercom",
    "intra42",
    "jfrog",
    "artifactory",
    "kraken",
    "kucoin",
    "launchdarkly",
    "looker",
    "mailchimp",
    "mailgun",
    "mapbox",
    "mattermost",
    "messagebird",
    "message-bird",
    "message_bird",
    "azure",
    "netlify",
    "nytimes",
    "octopus",
    "okta",
    "openshift",
    "plaid",
    "planetscale",
    "postman",
    "rapidapi",
    "sendbird",
    "sendinblue",
    "sentry",
    "shippo",
    "sidekiq",
    "snyk",
    "sonar",
    "sourcegraph",
    "square",
    "squarespace",
    "sumologic",
    "travis",
    "trello",
    "twitch",
    "twitter",
    "typeform",
    "vault",
    "yandex",
    "zendesk",
    "kubernetes",
    "gcp",
    "aws",
    "nuget",
    "etsy",
    "infracost",
    "scalingo",
    "telegram",
    "linkedin",
    "meraki",
    "new_relic",
    "newrelic",
    "notion",
    "pagerduty",
    "privateai",
    "pypi",
    "readme",
    "rubygems",
    "settlemint",
    "shopify",
    "slack",
    "stripe",
    "twilio",
    "vercel",
    "zapier",
    // AI providers whose keys carry no prefix of their own.
    "mistral",
    "cohere",
    "together",
    "deepseek",
    "pinecone",
    "elevenlabs",
    "deepgram",
    "assemblyai",
    "fireworks",
    "voyage",
    "gemini",
];

pub(crate) fn all() -> Vec<Rule> {
    let mut rules: Vec<Rule> = PREFIXED
        .iter()
        .map(|(id, kind, kws, re)| {
            let check: Check = match *id {
                "age-secret-key" => None,
                "jwt" => Some(jwt_value),
                "private-key-base64" => Some(encoded_private_key),
                "private-key-block" => Some(pem_body),
                "github-pat"
                | "github-oauth"
                | "github-user-to-server"
                | "github-server-to-server"
                | "github-refresh"
                | "npm-token" => Some(checksummed),
                "slack-token" | "slack-config-token" => Some(slack_token),
                id if BASE62_BODIES.contains(&id) => Some(random_base62),
                _ => Some(not_placeholder),
            };
            let mut rule = rule(id, kind, kws, re, check);
            rule.word_start = re.starts_with(r"(?-u:\b)") && !KEYWORD_INSIDE.contains(id);
            rule
        })
        .collect();

    // Credentials in a URL: the password part of `scheme://user:password@host`.
    rules.push(rule(
        "url-credentials",
        "db-url",
        &["://"],
        r#"(?-u:\b)[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:/@'"`]{0,128}:([^\s@/'"`]{3,256})@[A-Za-z0-9.\-\[\]:]+"#,
        Some(url_password),
    ));
    // A Go driver's DSN: `user:password@tcp(host:3306)/db`.
    rules.push(rule(
        "dsn-credentials",
        "db-url",
        &["@tcp(", "@unix(", "@udp("],
        r"[A-Za-z0-9_.\-]{1,64}:(?P<value>[^\s@'\x22/:]{3,128})@(?:tcp|unix|udp)\(",
        Some(url_password),
    ));
    // `curl -u user:password` and Basic/Bearer authorization headers.
    rules.push(rule(
        "curl-auth-user",
        "generic-password",
        &["-u", "--user"],
        r#"(?:\s-u|--user)(?:=|\s+)['"]?([^\s'"]{0,64}:[^\s'"]{0,128})['"]?"#,
        Some(user_password),
    ));
    rules.push(rule(
        "authorization-header",
        "generic-secret",
        &["authorization", "bearer", "basic", "apikey", "api-key", "auth-token"],
        r#"(?i)(?:(?:authorization|x-api-key|api-?key|x-auth-token)["']?\s*:\s*(?:(?:bearer|basic|token|bot|ssws)\s+)?|(?-u:\b)(?:bearer|basic)\s+)([A-Za-z0-9_\-.=+/~]{8,})"#,
        Some(header_value),
    ));

    // Session cookies grant access: `Cookie: theme=dark; sessionid=…`,
    // `Set-Cookie: connect.sid=…; HttpOnly`. Not CSRF tokens, which grant nothing alone.
    rules.push(rule(
        "session-cookie",
        "generic-secret",
        &["cookie"],
        r#"(?i)cookie["']?\s*[:=]\s*["']?(?:[^\n]*?[;,\s])??(?P<name>[A-Za-z0-9_.\-]*(?:sess(?:ion)?(?:[_\-.]?id)?|sid|auth(?:[_\-]?token)?|remember[_\-]?(?:me|token)|jwt|access[_\-]?token))=(?P<value>[A-Za-z0-9%._\-+/=:]{16,400})"#,
        Some(cookie_value),
    ));

    // Keys and tokens whose shape or place says so: `openssl enc -K <hex>`, a kubeadm
    // bootstrap token, a k3s join token, a Vault unseal key.
    for (id, keywords, re) in [
        (
            "openssl-raw-key",
            &["openssl"][..],
            r"openssl(?-u:\b)[^\n|;&]*?\s-K[ \t]+(?P<value>[0-9A-Fa-f]{32,128})(?-u:\b)",
        ),
        (
            "kubeadm-token",
            &["--token", "token:"][..],
            r#"(?:--token[ \t=]+|token:[ \t]*["']?)(?P<value>[a-z0-9]{6}\.[a-z0-9]{16})(?-u:\b)"#,
        ),
        (
            "k3s-token",
            &["k10"][..],
            r"(?-u:\b)(?P<value>K10[0-9a-f]{64}::[A-Za-z0-9_.\-]+:[0-9A-Za-z]{16,})",
        ),
        (
            "vault-unseal-key",
            &["unseal key"][..],
            r"(?i)unseal key(?: \d{1,2})?:[ \t]*(?P<value>[A-Za-z0-9+/=]{20,})",
        ),
    ] {
        rules.push(rule(
            id,
            "generic-secret",
            keywords,
            re,
            Some(not_placeholder),
        ));
    }

    // Values assigned to a known vendor's name: `cloudflare_api_key = "..."`. The name
    // must start a part of the identifier (`MY_ETSY_KEY`, `myEtsyKey`), not sit inside a
    // word (`SetSysctl`, `CameraKit`).
    let any_case = NAMED.join("|");
    let capitalised: Vec<String> = NAMED.iter().map(|n| capitalise(n)).collect();
    let capitalised = capitalised.join("|");
    let upper = NAMED.join("|").to_ascii_uppercase();
    let named = format!(
        r#"(?:(?:^|[^A-Za-z0-9])(?i:{any_case})|[a-z0-9](?:{capitalised}|{upper}))(?i)(?P<name>[\w.\-]{{0,40}}?)["'\x60]?(?:\s+string)?\s*(?:[:.]{{0,3}}=>?|:|=>|\|\|:|<=|\?=|>|,\s*["'])\s*["'\x60]?(?P<value>[A-Za-z0-9_\-+/=.~]{{10,300}})"#
    );
    rules.push(Rule {
        id: "vendor-assignment",
        kind: "api-key",
        keywords: NAMED,
        // unwrap: built from constants, compiled by the unit tests.
        regex: Regex::new(&named).unwrap(),
        check: Some(vendor_value),
        reach: Reach::Lines,
        word_start: false,
    });

    // Passwords after a tool's password flag, or assigned to a password's name.
    rules.extend(crate::passwords::rules());

    // `<add key="Password" value="..."/>` and similar key/value attribute pairs.
    rules.push(rule(
        "attribute-password",
        "generic-password",
        &["pass"],
        r#"(?i)key\s*=\s*"[^"]{0,40}pass(?:word|wd)?[^"]{0,20}"\s+value\s*=\s*"([^"]{4,128})""#,
        Some(crate::passwords::cli_value),
    ));

    // Generic `password=`, `secret:`, `token:` assignments, gated by entropy and the
    // placeholder stop-list. In a `key="..." value="..."` attribute pair the key holds a
    // name (`<add key="ClearTextPassword" value=...>`): that match is refuted.
    rules.push(rule(
        "generic-password",
        "generic-password",
        &["pass", "pwd"],
        r#"(?i)(?:passw(?:or)?d|(?-u:\b)pwd|(?-u:\b)pass)[\w.\-]{0,20}["'\x60]?(?:\s+string)?\s*(?:[:.]{0,3}=>?|:|=>|\|\|:|\?=)\s*["'\x60]?([^\s"'\x60;,<>)]{6,128})"#,
        Some(generic_or_short),
    ));
    rules.push(rule(
        "generic-secret",
        "generic-secret",
        &["secret", "token", "key", "auth", "credential", "api", "access"],
        // Refuted: a Secrets Manager ARN names a secret (`…:123456789012:secret:name`),
        // and a `cache key` or `sort key` is no credential.
        r#"(?i)(?P<refute_before>arn:aws[\w\-]*:[\w\-]+:[\w\-]*:\d{12}:|(?:cache|sort|partition|primary|foreign|object|idempotency|routing|lookup|public)[ ])?(?P<name>[\w.\-]{0,30}?(?:secret|token|api[_.\-]?key|apikey|(?-u:\b)key|auth|credentials?|access[_.\-]?(?:id|key))[\w.\-]{0,30}?)\\?["'\x60]?(?:\s+string)?\s*(?:[:.]{0,3}=>?|:|=>|\|\|:|\?=|>\s*|\s+["'\x60])\s*\\?["'\x60]?(?P<value>[A-Za-z0-9_\-+/=.~]{10,300})(?P<refute>["']\s+value\s*=|\(|[ \t]*=[^=])?"#,
        Some(generic_not_uuid),
    ));

    rules.extend(crate::secrets::rules());

    // Personal data.
    rules.push(rule(
        "email",
        "email",
        &["@"],
        // `scheme://user@host` names a user of a host, not an address (refuted).
        r"(?:(?P<refute>://)|(?-u:\b))([A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z]{2,24}|xn--[a-z0-9\-]{2,59}))(?-u:\b)",
        Some(email),
    ));
    rules.push(rule(
        "credit-card",
        "credit-card",
        &[],
        // A number that a colon and a word follow is a field's prefix, as OpenSSL's
        // thread id before `:error:`, not a card.
        r"(?:^|[^\w\-.])((?:\d[ \-]?){11,18}\d)(?:(?P<refute>:[A-Za-z])|$|[^\w\-.])",
        Some(card),
    ));
    rules.push(rule(
        "iban",
        "iban",
        &[],
        r"(?-u:\b)([A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]{4}){2,7}(?:[ \-]?[A-Z0-9]{1,4})?)(?-u:\b)",
        Some(iban),
    ));
    rules.push(rule(
        "us-ssn",
        "us-ssn",
        &[],
        r"(?:^|[^\w\-.:/])(\d{3}[\- ]\d{2}[\- ]?\d{4}|\d{3}[\- ]?\d{2}[\- ]\d{4}|\d{3}\.\d{2}\.\d{4})(?:$|[^\w\-.:/])",
        Some(ssn),
    ));
    // A card's track 2 as terminals log it: the number, `D` or `=`, then the expiry.
    rules.push(rule(
        "credit-card-track2",
        "credit-card",
        &["track2", "track_2", "track 2", "track-2"],
        r"(?i)track[ _\-]?2[A-Za-z_]{0,12}[ \t]*[:=][ \t]*;?(\d{13,19})[D=]\d{4}",
        Some(card),
    ));
    // A bare nine-digit SSN after a label that says so: `SSN: 400053592`.
    rules.push(rule(
        "us-ssn-labelled",
        "us-ssn",
        &["ssn", "social security"],
        r"(?i)(?:(?-u:\b)ssn|social[ \t]+security(?:[ \t]+(?:number|no\.?|num|#))?)[ \t]*[:#=]?[ \t]*(\d{9})(?-u:\b)",
        Some(ssn),
    ));
    rules.push(rule(
        "phone-international",
        "phone",
        &["+"],
        r"(?:^|[^\w+(])(\(?\+[1-9]\d{0,2}\)?[ \-.]?(?:\(\d{1,4}\)[ \-.]?)?\d{1,4}(?:[ \-.]?\d{1,5}){1,4})(?-u:\b)",
        Some(phone),
    ));
    // The same dialled with the international prefix 00 instead of `+`:
    // `0049 30 12345678`, `00 33 1 23 45 67 89`; not the middle of a longer grouped
    // number (`… TRAJ 0102 0000 0012 1002 9690`, an account's groups).
    rules.push(rule(
        "phone-international",
        "phone",
        &[],
        &format!(r"(?m)(?:(?P<refute_before>{NOT_A_PHONE_BEFORE}|(?-u:\b)[A-Z0-9]{{4}} )|^|[^\w\-.:/+])(?P<value>00[ ]?[1-9]\d{{0,2}}[ \-.](?:\(0\)[ \-.]?)?\d{{1,4}}(?:[ \-.]\d{{1,8}}){{1,4}})(?:$|[^\w\-.:/])"),
        Some(dialled_abroad),
    ));
    rules.push(rule(
        "phone-mobile",
        "phone",
        &[],
        // A bare run of digits is far more often a size or a count than a phone number: a
        // Chinese mobile number counts only when written in groups (`138 1234 5678`).
        r"(?:^|[^\w\-.:/+])(0[ \-]?\(?[59]\d{2}\)?[ \-]?\d{3}[ \-]?\d{2}[ \-]?\d{2}|1[3-9]\d[ \-]\d{4}[ \-]\d{4})(?:$|[^\w\-.:/])",
        Some(phone),
    ));
    rules.push(rule(
        "phone-national",
        "phone",
        &[],
        // A national number's trunk prefix is one 0: `00` starts an international number.
        r"(?:^|[^\w\-.:/])(\(\d{3}\)\s?\d{3}[\-. ]\d{4}|\d{3}[\-.]\d{3}[\-.]\d{4}|0[1-9]\d?[\- ]\d{3,4}[\- ]\d{4}|0[1-9]\d[\- ]\d{4}[\- ]\d{4})(?:$|[^\w\-.:/])",
        Some(phone_national),
    ));
    // National numbers as the most populous countries write them, by shape:
    // - a trunk 0, then groups: `03 90 76 54 85`, `07888 833479`, `0304-6536067`,
    //   `0803 123 4567`, `0216 123 45 67`, `03-1234-5678`, `0151 12345678`;
    // - an area code in brackets: `(070) 2568-4011`, `(11) 91234-5678`, `(55) 1234 5678`;
    // - Russia's trunk 8 and 3-3-2-2 groups: `8 (495) 123-45-67`, `8 912 345-67-89`,
    //   and an area code in brackets before 3-2-2 or 2-2-2: `(0212) 123 45 67`;
    // - North America's `1-800-555-0199` and Brazil's mobile `11 91234-5678`.
    // Without a trunk or brackets, groups of digits are as often a table's columns
    // (`34 1024 2048`): those need a label (`phone-labelled`).
    // A two-hex-digit group before or after is a hex dump, and an IBAN's start before
    // is its account number: neither is a phone number.
    rules.push(rule(
        "phone-national",
        "phone",
        &[],
        &format!(r"(?m)(?:(?P<refute_before>{NOT_A_PHONE_BEFORE})|^|[^\w\-.:/+])(?P<value>0[1-9]\d{{0,4}}(?:[ \-.]\d{{2,8}}){{1,4}}|\((?:0\d{{1,4}}|[1-9]\d{{1,3}})\)[ \-]?\d{{3,5}}[ \-]?\d{{4}}|\(0?\d{{2,4}}\)[ \-]?\d{{2,3}}[ \-]\d{{2}}[ \-]\d{{2}}|8[ \-]?\(?\d{{3}}\)?[ \-]?\d{{3}}[ \-]\d{{2}}[ \-]\d{{2}}|1[ \-]\d{{3}}[ \-]\d{{3}}[ \-]\d{{4}}|[1-9]\d[ ]9\d{{4}}-\d{{4}})(?:(?P<refute> [0-9A-Fa-f]{{2}}(?:\s|$))|$|[^\w\-.:/])"),
        Some(phone_national),
    ));
    // Last, so that a specific format wins: a number after a word that says it is one to call: any national format.
    rules.push(rule(
        "phone-labelled",
        "phone",
        &[
            "tel", "phone", "mobile", "cell", "fax", "whatsapp", "contact", "call", "sms",
            "code to", "msisdn", "caller", "callee", "dial ", "dial:", "dialed", "dialled",
            "handy", "celular", "movil", "móvil", "reach me", "text me", " ring ", "ring:",
            "ring me", "ring on", "ring at", "sent to", "llamar", "llame", "llámame", "ligue",
            "ligar", "appelez", "appeler", "rufen",
        ],
        r#"(?i)(?:tel(?:ephone|efon|efone|efono|éfono)?|phone(?:[ _]?number)?|mobile|cell(?:phone|ular)?|celular|m[oó]vil|handy|fax|whatsapp(?: me)?(?: on)?|contact(?: number)?|call(?:ed|er|ee|ing)?(?: or (?:text|sms|whatsapp))?(?:[ _]?(?:number|id|party|num))?(?: me| back)?(?: on| at)?|msisdn|(?-u:\b)dial(?:ed|led)?|sms(?: to)?|code to|sent to|ll[aá]m(?:ar|e|ame)(?: al)?|lig(?:ue|ar)(?: para| pra)?|appele[rz](?: le| au)?|rufen sie mich an|reach me(?: on| at)?|text me(?: on| at)?|(?-u:\b)ring(?: me)?(?: on| at)?)[_A-Za-z]{0,12}\.?(?:;[A-Za-z=,]{1,30})?["']?[ \t]*[:=]?[ \t]*["']?[ \t]*(\+?\(?\+?\d[\d ().\-/]{6,20}\d)"#,
        Some(phone_labelled),
    ));
    // A signature's or a card's short label at a line's start: `M: …`, `T. …`, `Mob: …`.
    rules.push(rule(
        "phone-labelled",
        "phone",
        &[],
        r"(?m)^[ \t]*(?:[MTPFHCWO]|Mob|Ph|Tel|Cell|Direct|Office|Work|Home|Fax|GSM)\.?[ \t]*[:.][ \t]*(\+?\(?\+?\d[\d ().\-]{6,20}\d)",
        Some(phone_labelled),
    ));
    // A contact QR code's phone fields: `MECARD:N:…;TEL:…;`, `BIZCARD:…;B:…;M:…;`.
    rules.push(rule(
        "phone-labelled",
        "phone",
        &["mecard:", "bizcard:"],
        r"(?i)(?:mecard|bizcard):[^\n]*?;(?:tel|b|m|f):(\+?\(?\+?\d[\d ().\-]{6,20}\d)(?:;|$)",
        Some(phone_labelled),
    ));
    // A column whose header says phone: the field below it, in CSV, TSV or `|` tables.
    rules.push(rule(
        "phone-column",
        "phone",
        &["phone", "mobile", "msisdn", "cell", ",tel", "tel,", ";tel", "tel;", "\ttel", "tel\t", "|tel", "tel|"],
        r#"(?im)^(?:[^\n]*[,;\t|])?[ \t"']*[A-Za-z0-9_ ]{0,20}(?:phone|mobile|tel|msisdn|cell)[A-Za-z0-9_ ]{0,20}["']?[ \t]*(?:[,;\t|][^\n]*)?\r?\n(?:[^\n]*?[,;\t|])??[ \t]*["']?(\+?\(?\+?\d[\d ().\-]{6,20}\d)["']?[ \t]*(?:[,;\t|\r]|$)"#,
        Some(phone_labelled),
    ));
    // Last: a password known by its shape alone, where no rule above knows the place.
    rules.push(crate::shape::rule());
    rules
}

/// What, right before a run of digits, says it is no phone number: a two-hex-digit group
/// (a hex dump), an IBAN's start (its account number follows), or a word that names
/// another kind of number (`invoice`, `order`, `build`, `version`, `#`).
const NOT_A_PHONE_BEFORE: &str = r"(?-u:\b)[0-9A-Fa-f]{2} |(?-u:\b)[A-Z]{2}\d{2}(?: [A-Z0-9]{4})* |(?i:invoice|order|ticket|ref|reference|build|case|serial|part|tracking|account|acct|sku|batch|lot|id|no|version|v)[ \t:#.]*|#";

/// `etsy` -> `Etsy`.
fn capitalise(name: &str) -> String {
    let mut out = name.to_ascii_lowercase();
    if let Some(first) = out.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    out
}

/// A token whose body (after the vendor prefix) mixes capitals, small letters and digits.
fn random_base62(value: &str, text: &str) -> bool {
    let body = value
        .split_once(['_', '.', '-'])
        .map_or(value, |(_, body)| body);
    let has = |f: fn(&u8) -> bool| body.as_bytes().iter().any(f);
    has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_lowercase)
        && has(u8::is_ascii_digit)
        && not_placeholder(value, text)
}

/// `user:password` from a command line: the password part must look like one.
fn user_password(value: &str, text: &str) -> bool {
    let secret = match value.split_once(':') {
        Some((_, pass)) if !pass.is_empty() => pass,
        Some((user, _)) => user,
        None => return false,
    };
    generic_or_short(secret, text)
}

/// A session cookie's value: random, not a placeholder, and not a CSRF token's.
pub(crate) fn cookie_value(value: &str, name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !lower.contains("csrf")
        && !lower.contains("xsrf")
        && value.bytes().any(|b| b.is_ascii_digit())
        && not_placeholder(value, name)
}

/// A header credential: base64 or token characters, not a placeholder.
fn header_value(value: &str, _text: &str) -> bool {
    !crate::validate::placeholder(value)
        && value.bytes().any(|b| b.is_ascii_digit())
        && crate::validate::entropy(value) >= 2.8
        && !masked_basic(value)
}

/// A Basic credential whose password was masked before it was encoded
/// (`amRvZTpTSzNhMmTigKZkOGQ2` is `jdoe:SK3a2d…d8d6`): what is shown is not the secret.
fn masked_basic(value: &str) -> bool {
    use base64::Engine as _;
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(value) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return false;
    };
    text.split_once(':')
        .is_some_and(|(_, pass)| crate::values::masked(pass))
}

/// A value assigned to a vendor's name: random-looking, or a long numeric id/secret.
/// `name` is what follows the vendor's name (`_api_key`, `_vault_name`).
fn vendor_value(value: &str, name: &str) -> bool {
    if names_no_secret(name) || public_value(value) {
        return false;
    }
    generic(value, name)
        || (value.len() >= 17
            && value.bytes().all(|b| b.is_ascii_digit())
            && !crate::validate::placeholder(value))
}

/// A password may be short; it still must not be a placeholder.
fn generic_or_short(value: &str, text: &str) -> bool {
    let v = value.trim_matches(|c| c == '"' || c == '\'');
    // `pscale_tkn_Ngej…k8I6`: masked; `dbPassword:\n  secure: …`: the next key, not a
    // value; `password: AgBy3i4O…`: sealed.
    if crate::values::elided(v)
        || crate::values::reference(v)
        || v.ends_with(':')
        || crate::values::sealed_blob(v)
    {
        return false;
    }
    if v.len() >= 10 {
        return generic(v, text);
    }
    !crate::validate::placeholder(v)
        && v.bytes()
            .any(|b| b.is_ascii_digit() || !b.is_ascii_alphanumeric())
        && v.bytes().any(|b| b.is_ascii_alphabetic())
}

/// A Slack token with at least one team or user number of eight digits or more.
fn slack_token(value: &str, text: &str) -> bool {
    let _ = text;
    let lower = value.to_ascii_lowercase();
    let numbered = value
        .split('-')
        .any(|part| part.len() >= 8 && part.bytes().all(|b| b.is_ascii_digit()));
    (numbered || value.len() > 100)
        && !["xxxx", "****", "${", "your", "example"]
            .iter()
            .any(|w| lower.contains(w))
}

/// A generic secret that is not a UUID: unnamed UUIDs are ids (credential ids, request
/// ids) far more often than secrets; vendor rules still catch UUID-shaped keys. `name`
/// is the assigned name, which must not say the value is something else (an id, a file).
fn generic_not_uuid(value: &str, name: &str) -> bool {
    if names_no_secret(name) || !names_secret_word(name) {
        return false;
    }
    let uuid = value.len() == 36
        && value.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && value.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit());
    !uuid
        && !encoded_json(value)
        && !public_value(value)
        && !crate::values::reference(value)
        && generic(value, name)
}

/// A value that is public by design or plain data in base64 ([`public_value`],
/// [`encoded_json`]).
pub(crate) fn public_or_data(value: &str) -> bool {
    public_value(value) || encoded_json(value)
}

/// Values that are public by design: publishable and public tokens (`pk_live_`, Mapbox
/// `pk.`), age recipients, SSH public keys, and base64 of a public key, a certificate or
/// an encrypted file.
fn public_value(value: &str) -> bool {
    let prefixed = [
        "pk_live_",
        "pk_test_",
        "pk.eyJ",
        "ssh-rsa",
        "ssh-ed25519",
        "ecdsa-sha2-",
    ]
    .iter()
    .any(|p| value.starts_with(p))
        || (value.starts_with("age1") && value.len() == 62);
    if prefixed {
        return true;
    }
    let Some(bytes) = decode_base64(base64_head(value, 200)) else {
        return false;
    };
    let text = String::from_utf8_lossy(&bytes);
    [
        "-----BEGIN PUBLIC KEY",
        "-----BEGIN RSA PUBLIC KEY",
        "-----BEGIN CERTIFICATE",
        "-----BEGIN AGE ENCRYPTED FILE",
        "-----BEGIN PGP PUBLIC KEY",
        "-----BEGIN PGP MESSAGE",
        "ssh-",
        "ecdsa-sha2-",
        "age1",
    ]
    .iter()
    .any(|m| text.starts_with(m))
}

/// The first whole base64 quanta of `value`, at most `max` characters: enough to read
/// what a long blob starts with.
fn base64_head(value: &str, max: usize) -> &str {
    let body = value.trim_end_matches('=');
    &body[..(body.len().min(max) / 4) * 4]
}

/// `text` decoded as base64, standard or URL-safe, padded or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = text.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .ok()
}

/// A JWT, unless its claims make it a public client key (Supabase's `anon` role).
fn jwt_value(value: &str, text: &str) -> bool {
    let public = value.split('.').nth(1).is_some_and(|claims| {
        decode_base64(claims)
            .and_then(|b| String::from_utf8(b).ok())
            .is_some_and(|c| c.replace(' ', "").contains("\"role\":\"anon\""))
    });
    !public && not_placeholder(value, text)
}

/// A PEM block with a body: a line of base64 (keys wrap at 64 characters), not the
/// `MIIEpAIBAAKCAQEA...` of documentation.
fn pem_body(value: &str, _text: &str) -> bool {
    let mut run = 0;
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' {
            run += 1;
            if run >= 40 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// Base64 whose text is a private key: a PEM or OpenSSH block, a PuTTY file, `openssl
/// pkey -text` output or an age identity (a public key or certificate is not).
fn encoded_private_key(value: &str, _text: &str) -> bool {
    let Some(bytes) = decode_base64(base64_head(value, 4096)) else {
        return false;
    };
    let text = String::from_utf8_lossy(&bytes);
    [
        "PRIVATE KEY",
        "PuTTY-User-Key-File",
        "Private-Key:",
        "AGE-SECRET-KEY-1",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// Base64 of a small JSON object (`eyJvZmZzZXQiOjI5MTMsImxpbWl0IjoyNX0`, a page cursor):
/// data anyone can read, not a credential. A JWT has three parts and its own rule.
fn encoded_json(value: &str) -> bool {
    if !value.starts_with("eyJ") || value.contains('.') || value.len() > 400 {
        return false;
    }
    decode_base64(value)
        .and_then(|d| String::from_utf8(d).ok())
        .is_some_and(|t| {
            let t = t.trim();
            let lower = t.to_ascii_lowercase();
            t.starts_with('{')
                && t.ends_with('}')
                && !["secret", "token", "password", "key"]
                    .iter()
                    .any(|w| lower.contains(w))
        })
}

/// Whether an assigned name says its value is not a secret: it ends in a word naming
/// metadata (`KeyFile`, `secret_length`, `key_vault_name`) or starts with `public`
/// (`publicToken`). Not `id`: vendors' access and client ids are credentials.
pub(crate) fn names_no_secret(name: &str) -> bool {
    const METADATA: &[&str] = &[
        "name", "names", "file", "filename", "path", "dir", "url", "uri", "length", "len", "size",
        "type", "kind", "count", "pair", "event", "format", "prefix", "version", "index", "field",
        "header", "label", "mode", "expiry", "expires", "ttl", "timeout", "tag", "nonce", "iv",
    ];
    /// Words by which code says a value is deliberately not a real one.
    const NOT_REAL: &[&str] = &[
        "nonmatching",
        "notmatching",
        "invalid",
        "fake",
        "dummy",
        "mock",
        "bogus",
        "sample",
        "example",
        "placeholder",
    ];
    let words = identifier_words(name);
    let joined = words.concat();
    words.last().is_some_and(|w| METADATA.contains(&w.as_str()))
        || words.first().is_some_and(|w| w == "public")
        || NOT_REAL.iter().any(|w| joined.contains(w))
        // `Sec-WebSocket-Key`: a handshake's nonce, public by design; a signature is
        // made with a secret and shows none (`X-Slack-Signature`).
        || joined.contains("websocket")
        || joined.contains("signature")
}

/// Whether a generic name holds a secret word as a word of its own, or as the end of
/// one (`apiToken`, `AUTHTOKEN`, `client_secret`, `token2`), not inside another
/// (`master-keying`).
fn names_secret_word(name: &str) -> bool {
    const ENDINGS: &[&str] = &[
        "secret",
        "secrets",
        "token",
        "tokens",
        "key",
        "keys",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "apikey",
    ];
    let words = identifier_words(name);
    words
        .iter()
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()))
        .any(|w| ENDINGS.iter().any(|e| w.ends_with(e)))
        || words.windows(2).any(|p| p[0] == "access" && p[1] == "id")
}

/// The words of an identifier in lower case, split at `_ . -` and at camel-case humps:
/// `dev.credentialId` -> `dev`, `credential`, `id`.
pub(crate) fn identifier_words(name: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Between 8 and 15 digits in all (E.164), not a date or a version.
fn phone(value: &str, _text: &str) -> bool {
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    (8..=15).contains(&digits) && !value.contains("..")
}

/// A national number: 9 to 12 digits, dots only between four groups or more
/// (`06.12.34.56.78`, not `01.02.2024`) or in the North American 3-3-4, and not an
/// SSN's 3-2-4 groups nor a ZIP+4 code's 5-4.
fn phone_national(value: &str, text: &str) -> bool {
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let dots = value.matches('.').count();
    let parts = digit_groups(value);
    let groups: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    (9..=12).contains(&digits)
        && (dots == 0 || dots >= 4 || groups == [3, 3, 4])
        && groups != [5, 4]
        && not_a_date_or_ssn(&parts)
        && phone(value, text)
}

/// A number dialled with the international prefix 00: a phone's length after it.
fn dialled_abroad(value: &str, text: &str) -> bool {
    let rest = value.trim_start_matches("00").trim_start();
    phone(rest, text) && not_a_date_or_ssn(&digit_groups(rest))
}

/// A number's groups, between its spaces, dashes and dots.
fn digit_groups(value: &str) -> Vec<&str> {
    value
        .split([' ', '-', '.'])
        .filter(|p| !p.is_empty())
        .collect()
}

/// Neither a date (`09 12 2024 15 30`, `01-2024-0042`: a day or month and a year) nor
/// an SSN's 3-2-4 groups.
fn not_a_date_or_ssn(parts: &[&str]) -> bool {
    let year = |g: &&str| g.len() == 4 && matches!(g.parse::<u32>(), Ok(1990..=2035));
    let day = |g: &&str| g.len() == 2 && matches!(g.parse::<u32>(), Ok(1..=31));
    let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    !(parts.iter().any(year) && parts.iter().any(day)) && lens != [3, 2, 4]
}

/// A labelled number: a phone's length, and not a date, a time or a version.
fn phone_labelled(value: &str, text: &str) -> bool {
    let dashes = value.matches('-').count();
    let date = value.len() >= 10
        && value.as_bytes()[4] == b'-'
        && value[..4].bytes().all(|b| b.is_ascii_digit());
    // `"Castellani": 0.1724138`: a decimal, whatever label a word seemed to give it.
    let decimal = value.matches('.').count() == 1
        && value
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    phone(value, text)
        && !date
        && !decimal
        && !value.contains(':')
        && dashes <= 3
        && value.matches('.').count() != 2
}
