//! The secrets a task was given: values of its environment variables that are marked
//! secret or whose names say so (`*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*KEY*`, …). They
//! are redacted exactly wherever they appear, also base64- and URL-encoded, as CI
//! systems mask theirs.

use aho_corasick::AhoCorasick;
use base64::Engine as _;

/// Shorter values are not masked: they would mask ordinary words.
pub const MIN_SECRET_LEN: usize = 6;

/// Whether an environment variable's name marks its value as secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|w| upper.contains(w))
}

/// The literal forms of one task's secrets.
pub struct TaskSecrets {
    matcher: Option<AhoCorasick>,
    /// The name of the variable each pattern came from.
    names: Vec<String>,
}

impl TaskSecrets {
    /// Collects the values of `env` whose name is secret-like or listed in `marked`.
    pub fn new(env: &[(String, String)], marked: &[String]) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        let mut names = Vec::new();
        for (name, value) in env {
            if value.len() < MIN_SECRET_LEN || !(is_secret_name(name) || marked.contains(name)) {
                continue;
            }
            for form in forms(value) {
                if !patterns.contains(&form) {
                    patterns.push(form);
                    names.push(name.clone());
                }
            }
        }
        let matcher = (!patterns.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    .build(&patterns)
                    .ok()
            })
            .flatten();
        Self { matcher, names }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Byte ranges of every occurrence in `text`, with the variable's name.
    pub fn find<'a>(&'a self, text: &'a str) -> impl Iterator<Item = (usize, usize, &'a str)> + 'a {
        self.matcher
            .iter()
            .flat_map(move |m| m.find_iter(text))
            .map(|m| {
                (
                    m.start(),
                    m.end(),
                    self.names[m.pattern().as_usize()].as_str(),
                )
            })
    }
}

/// The value as it is, base64-encoded (standard and URL-safe, with and without
/// padding) and percent-encoded.
fn forms(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let mut out = vec![value.to_owned()];
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        out.push(engine.encode(b));
    }
    let encoded: String = b
        .iter()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(c) {
                (*c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect();
    out.push(encoded);
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secret_like_names_and_marked_names_are_masked_in_every_form() {
        let secrets = TaskSecrets::new(
            &env(&[
                ("DEPLOY_TOKEN", "s3cr3t/v@lue+1"),
                ("DB_PASSWORD", "hunter22"),
                ("HOME", "/home/dev"),
                ("PLAIN", "marked-value"),
                ("API_KEY", "abc"),
            ]),
            &["PLAIN".to_owned()],
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr3t/v@lue+1");
        let text = format!("a s3cr3t/v@lue+1 b {b64} c s3cr3t%2Fv%40lue%2B1 d hunter22 e marked-value f /home/dev abc");
        let found: Vec<&str> = secrets.find(&text).map(|(s, e, _)| &text[s..e]).collect();
        assert_eq!(
            found,
            vec![
                "s3cr3t/v@lue+1",
                b64.as_str(),
                "s3cr3t%2Fv%40lue%2B1",
                "hunter22",
                "marked-value"
            ]
        );
        let names: Vec<&str> = secrets.find(&text).map(|(_, _, n)| n).collect();
        assert_eq!(names[0], "DEPLOY_TOKEN");
    }

    #[test]
    fn no_secrets_means_nothing_found() {
        let secrets = TaskSecrets::new(&env(&[("PATH", "/usr/bin")]), &[]);
        assert!(secrets.is_empty());
        assert_eq!(secrets.find("anything /usr/bin").count(), 0);
    }
}
