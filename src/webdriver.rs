//! A headless Chromium driven over the W3C WebDriver protocol by Debian's `chromedriver`
//! (packages `chromium` and `chromium-driver`; `.ci/run` installs them): what the admin
//! page's test and its benchmark drive the page with. Failures panic, naming the call:
//! this is test and bench tooling, not a request path.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Polls `check` every 50 ms until it gives a value; panics naming `what` after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where the driver and the browser are, unless the environment says otherwise.
const DRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port for chromedriver")
        .port()
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session that keeps
    /// the browser's console log.
    pub fn start() -> Browser {
        let driver_exe = std::env::var("FLOTILLA_CHROMEDRIVER").unwrap_or(DRIVER.into());
        let chromium = std::env::var("FLOTILLA_CHROMIUM").unwrap_or(CHROMIUM.into());
        let port = free_port();
        let driver = Command::new(&driver_exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{driver_exe} did not start ({e}): install chromium and chromium-driver")
            });
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver ready", Duration::from_secs(20), || {
            let status: Value = ureq::get(&format!("{base}/status"))
                .call()
                .ok()?
                .into_json()
                .ok()?;
            (status["value"]["ready"] == true).then_some(())
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,2200"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
        };
        let made = browser.call("POST", "/session", Some(caps));
        browser.session = made["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {made}"))
            .to_owned();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = ureq::request(method, &url).timeout(Duration::from_secs(60));
        let reply = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let doc: Value = match reply {
            Ok(r) => r
                .into_json()
                .unwrap_or_else(|e| panic!("webdriver {method} {path}: not JSON: {e}")),
            Err(ureq::Error::Status(_, r)) => {
                let doc: Value = r.into_json().unwrap_or(Value::Null);
                panic!("webdriver {method} {path}: {doc}")
            }
            Err(e) => panic!("webdriver {method} {path}: {e}"),
        };
        doc["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its result.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Polls `script` until it returns something other than null or false.
    pub fn wait(&self, what: &str, limit: Duration, script: &str, args: Value) -> Value {
        wait_for(what, limit, || {
            let v = self.run(script, args.clone());
            (!v.is_null() && v != Value::Bool(false)).then_some(v)
        })
    }

    /// The browser's console and network log since the last call: (level, message).
    pub fn console(&self) -> Vec<(String, String)> {
        let entries = self.session_call("POST", "/se/log", Some(json!({"type": "browser"})));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_owned(),
                    e["message"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// A PNG of the window, base64-encoded.
    pub fn screenshot_base64(&self) -> String {
        let b64 = self.session_call("GET", "/screenshot", None);
        b64.as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = ureq::delete(&url).timeout(Duration::from_secs(10)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
