//! Each rule through one `check()` helper: true positives and near misses.

use super::*;

/// Asserts `text` yields exactly the `want` values (kind, value), in order.
fn check(text: &str, want: &[(&str, &str)]) {
    let engine = Engine::new();
    let got: Vec<(&str, &str)> = engine
        .scan(text)
        .iter()
        .map(|f| (f.kind, &text[f.start..f.end]))
        .collect();
    assert_eq!(got, want, "scanning {text:?}");
}

#[test]
fn vendor_tokens() {
    check(
        "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLQ",
        &[("aws-access-key", "AKIAIOSFODNN7EXAMPLQ")],
    );
    check(
        "token ghp_R4nd0mT0k3nV4lu3Xq8Lp2Zs9Wc7Vb3Nk1Hy",
        &[("github-token", "ghp_R4nd0mT0k3nV4lu3Xq8Lp2Zs9Wc7Vb3Nk1Hy")],
    );
    check(
        "GITLAB=glpat-Ab3dEf6hIj9kLm2nOp5q",
        &[("gitlab-token", "glpat-Ab3dEf6hIj9kLm2nOp5q")],
    );
    check(
        "slack xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp",
        &[("slack-token", "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp")],
    );
    check(
        "STRIPE=sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        &[("stripe-key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc")],
    );
    check(
        "key AIzaSyD4f8Kq2Lm9Xp0Wc7Vb3Nz6Tr1Ys5Hg8Je",
        &[("google-api-key", "AIzaSyD4f8Kq2Lm9Xp0Wc7Vb3Nz6Tr1Ys5Hg8Je")],
    );
}

#[test]
fn private_keys_span_lines() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n-----END RSA PRIVATE KEY-----";
    check(pem, &[("private-key", pem)]);
    check("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1L\n-----END PUBLIC KEY-----", &[]);
}

#[test]
fn credentials_in_urls_and_assignments() {
    check(
        "DATABASE_URL=postgres://app:s3cr3tPassw0rd@db.internal:5432/app",
        &[("db-url", "s3cr3tPassw0rd")],
    );
    check(
        "DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app",
        &[],
    );
    check(
        "password = \"Tr0ub4dor&3xq\"",
        &[("generic-password", "Tr0ub4dor&3xq")],
    );
    check("password: changeme", &[]);
    check("password=********", &[]);
    check(
        "api_token: Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB",
        &[("generic-secret", "Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB")],
    );
}

#[test]
fn personal_data_with_checksums() {
    check(
        "card 4111 1111 1111 1111 ok",
        &[("credit-card", "4111 1111 1111 1111")],
    );
    check("card 4111 1111 1111 1112 ok", &[]);
    check(
        "IBAN GB82 WEST 1234 5698 7654 32.",
        &[("iban", "GB82 WEST 1234 5698 7654 32")],
    );
    check("IBAN GB82 WEST 1234 5698 7654 33.", &[]);
    check("ssn 078-05-1120", &[("us-ssn", "078-05-1120")]);
    check(
        "mail jane.doe@gmail.com now",
        &[("email", "jane.doe@gmail.com")],
    );
    check("mail someone@example.org now", &[]);
    check("call +1 415 555 0132", &[("phone", "+1 415 555 0132")]);
}

#[test]
fn obvious_stand_ins_are_not_secrets() {
    check("token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", &[]);
    check("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", &[]);
    check("slack xoxb-xoxb-my-bot-token", &[]);
    check(
        "-----BEGIN PRIVATE KEY-----\nanything\n-----END PRIVATE KEY-----",
        &[],
    );
}

#[test]
fn ordinary_output_is_left_alone() {
    for text in [
        "commit 8f3c2a1b9d4e5f60718293a4b5c6d7e8f9a0b1c2",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "-rw-r--r-- 1 root root 1048576 Nov 25 20:01 libfoo.so.1.2.3",
        "Compiling regex-automata v0.4.19",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "git@github.com:org/repo.git",
    ] {
        check(text, &[]);
    }
}

#[test]
fn findings_on_later_lines_keep_their_offsets_in_the_whole_text() {
    let text = "Compiling serde v1.0.0\ncommit 8f3c2a1b9d4e5f60718293a4b5c6d7e8f9a0b1c2\n\
                card 4111-1111-1111-1111 and IBAN GB82 WEST 1234 5698 7654 32\n\
                <apiToken>\n  Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB\n</apiToken>\n";
    check(
        text,
        &[
            ("credit-card", "4111-1111-1111-1111"),
            ("iban", "GB82 WEST 1234 5698 7654 32"),
            ("generic-secret", "Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB"),
        ],
    );
}

#[test]
fn vendor_prefixes_count_only_at_the_start_of_a_word() {
    let sid = "SKa1b2c3d4e5f60718293a4b5c6d7e8f9a";
    check(&format!("twilio ({sid})"), &[("api-key", sid)]);
    check(&format!("task={sid}"), &[("api-key", sid)]);
    check(&format!("TASK{}", &sid[2..]), &[]);
    check("task finished task=t-0a1b2c3d4e5f6a7b", &[]);
}

#[test]
fn vendor_formats_are_exact() {
    let body = "abc123xyz-456def789ghij-klmnopqrstuvwx-3456yza789bcde-1234fghijklmnopby56aaaogaopaaaabc123xyz";
    let key = format!("sk-ant-api03-{body}AA");
    check(&key, &[("api-key", &key)]);
    check(&format!("sk-ant-api03-{body}BB"), &[]);
    let user = format!("sntryu_{}", "0a35402feae5d4ff392e81c316ba84b5".repeat(2));
    check(&user, &[("api-key", &user)]);
    check(&format!("{user}c"), &[]);
    check("AIzaTesb6Tscfcni8vIpWZqNCXFDFslJtVSvFDqabcd123", &[]);
    // Weak prefixes need a random base62 body.
    check(
        "s.3JxS6ef3XsYggoOtrGJKN1Zv",
        &[("api-key", "s.3JxS6ef3XsYggoOtrGJKN1Zv")],
    );
    check("s.AcceptanceTimeoutSeconds = args", &[]);
    check("video_box.ico-7a388b69018576d24b59331fd60aab0c.png", &[]);
}

#[test]
fn vendor_names_start_a_part_of_the_identifier() {
    let value = "7wd0v816icy6omedfhs8kvrr";
    check(&format!("SetSysctl = \"{value}\""), &[]);
    check(&format!("ETSY_KEY = \"{value}\""), &[("api-key", value)]);
    check(&format!("myEtsyKey = \"{value}\""), &[("api-key", value)]);
}

#[test]
fn names_and_neighbours_that_say_a_value_is_no_secret() {
    check("secret_length = X25519.secret_length", &[]);
    check("app.keystore.file=env/cert.p12", &[]);
    check("\"key_vault_name\": \"web21prqodx24021\",", &[]);
    check(
        "publicToken = \"9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit\"",
        &[],
    );
    check(
        "notes = \"Maven - io.jsonwebtoken:jjwt-jackson-0.11.2\"",
        &[],
    );
    check("<add key=\"ClearTextPassword\" value=\"abc\" />", &[]);
    check(
        "\"token4\": \"xoxp-572370529330-573807301142-572331691188-################\"",
        &[],
    );
    // One `#` is part of a password, not a mask.
    check(
        "\"secret_key\" => \"Zf3D0LXCM3EIMbgJ#pUNnkRtOfOueHznB\"",
        &[("generic-secret", "Zf3D0LXCM3EIMbgJ")],
    );
}

#[test]
fn names_that_say_a_value_is_deliberately_not_real() {
    let value = "k3yv4lu3mx9q2zp7";
    for name in [
        "nonMatchingToken",
        "fake_token",
        "DUMMY_SECRET",
        "invalidApiKey",
        "mockAuth",
    ] {
        check(&format!("{name} := \"{value}\""), &[]);
    }
    check(
        &format!("realToken := \"{value}\""),
        &[("generic-secret", value)],
    );
}

#[test]
fn a_generic_name_needs_its_secret_word_as_a_word() {
    let value = "Zq7vN3xLp9RtWm4K";
    check(&format!("minisat-master-keying:{value}"), &[]);
    check(&format!("monkeying = {value}"), &[]);
    for name in [
        "access_token1",
        "AUTHTOKEN",
        "client.secret",
        "x-api-key",
        "AccessId",
    ] {
        check(&format!("{name}: {value}"), &[("generic-secret", value)]);
    }
}

#[test]
fn national_phone_numbers_have_one_trunk_zero() {
    check("call 030 1234 5678", &[("phone", "030 1234 5678")]);
    check("HR12 001 0051 8630 0016 A", &[]);
}

/// A value a check refuses may be the name of the next match: the search goes on from
/// there instead of past it.
#[test]
fn a_refused_value_may_name_the_next_value() {
    check(
        r#"const token = process.env.BOT_TOKEN ?? "q8Zr2Lk5Vx9Wm3Np7Tb4Yc6Hd1Fg0Js";"#,
        &[("generic-secret", "q8Zr2Lk5Vx9Wm3Np7Tb4Yc6Hd1Fg0Js")],
    );
    // A refused value that names nothing stays refused.
    check("token = process.env.BOT_TOKEN", &[]);
}

/// A name on one row and its value on the next, as database shells print them.
#[test]
fn a_secret_name_and_its_value_on_two_rows() {
    check(
        "127.0.0.1:6379> HGETALL relay:config\n1) \"hmac_key\"\n2) \"240f0b7f356cb776a20a825ee721becd5251a407a1dd49f556b41b47b8f6e97d\"\n3) \"ttl\"\n4) \"6500\"",
        &[(
            "generic-secret",
            "240f0b7f356cb776a20a825ee721becd5251a407a1dd49f556b41b47b8f6e97d",
        )],
    );
    check(
        "-[ RECORD 1 ]---\nkey        | jwt_signing_secret\nvalue      | 0GOSaI88/FZ5eXWJvKM5L8nwitE7GEzV",
        &[("generic-secret", "0GOSaI88/FZ5eXWJvKM5L8nwitE7GEzV")],
    );
    // A name that says no secret keeps its value.
    check("1) \"ttl\"\n2) \"6500\"", &[]);
}
