//! A real browser (headless Chromium driven through WebDriver) signs in: it types the password
//! into the login page, approves on the consent page and lands on a loopback callback with
//! `code`, `state` and `iss`, and the code redeems. A wrong password shows the error and yields
//! no code; after the throttle limit the page says so.
//!
//! Needs `chromium` and `chromedriver` on the `PATH` (Debian: `chromium`, `chromium-driver`).
//! Without them the test prints why and passes, unless `TOWER_INTROSPECT_REQUIRE_BROWSER=1`
//! (set in CI), where it fails.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::RawQuery;
use axum::routing::get;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use oauth_provider::Config;
use oauth_provider::limits::WindowLimit;
use reqwest::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// How long any browser step may take on a loaded machine.
const STEP: Duration = Duration::from_secs(60);

/// Finds an executable on the `PATH`.
fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A chromedriver on a free loopback port, killed when dropped.
struct Driver {
    _child: Child,
    url: String,
}

impl Driver {
    async fn start(chromedriver: &PathBuf) -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = http_client();
        let deadline = Instant::now() + STEP;
        loop {
            let ready = http
                .get(format!("{url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { _child: child, url }
    }

    async fn browser(&self, chromium: &PathBuf, profile: &tempfile::TempDir) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("WebDriver session")
    }
}

/// A loopback "native app" callback that records the query strings it receives.
async fn callback_server() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/cb",
        get(move |RawQuery(query): RawQuery| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(query.unwrap_or_default());
                "You can close this window."
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

/// Waits until the page's source satisfies `done`.
async fn wait_for_page(browser: &Client, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        let source = browser.source().await.unwrap();
        if done(&source) {
            return source;
        }
        assert!(Instant::now() < deadline, "never saw {what}: {source}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types the credentials into the login page on screen and submits it.
async fn sign_in(browser: &Client, username: &str, password: &str) {
    let field = browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css("input[name=username]"))
        .await
        .unwrap();
    field.send_keys(username).await.unwrap();
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_signs_in_consents_and_gets_a_code() {
    let required = std::env::var("TOWER_INTROSPECT_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let (Some(chromium), Some(chromedriver)) = (
        which(&["chromium", "chromium-browser"]),
        which(&["chromedriver"]),
    ) else {
        assert!(
            !required,
            "TOWER_INTROSPECT_REQUIRE_BROWSER=1 but chromium/chromedriver are not on the PATH"
        );
        println!(
            "SKIPPED a_real_browser_signs_in_consents_and_gets_a_code: chromium and chromedriver \
             are not installed (Debian packages chromium, chromium-driver)"
        );
        return;
    };

    let mut config = Config::demo();
    // Three failures per account, so that the throttle shows after a few attempts.
    config.limits.login_failures_per_account =
        WindowLimit::new(3, Duration::from_secs(900), Duration::from_secs(900));
    let env = Env::start_with(Backend::Sqlite, config).await;
    let client_id = env.public_client().await;
    let (callback, seen) = callback_server().await;
    let driver = Driver::start(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(&chromium, &profile).await;

    // Sign in and approve.
    let mut req = AuthRequest::new(&client_id);
    req.redirect_uri = format!("http://{callback}/cb");
    let authorize = url::Url::parse_with_params(&env.url("/authorize"), req.query()).unwrap();
    browser.goto(authorize.as_str()).await.unwrap();
    sign_in(&browser, "alice", "password123").await;
    wait_for_page(&browser, "the consent page", |s| {
        s.contains("Authorize access")
    })
    .await;
    browser
        .find(Locator::Css("button[value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_page(&browser, "the callback", |s| {
        s.contains("You can close this window.")
    })
    .await;
    let landed = browser.current_url().await.unwrap();
    assert_eq!(
        (landed.host_str(), landed.port(), landed.path()),
        (Some("127.0.0.1"), Some(callback.port()), "/cb")
    );
    let params: std::collections::HashMap<String, String> =
        landed.query_pairs().into_owned().collect();
    assert_eq!(params.get("state"), Some(&req.state));
    assert_eq!(params.get("iss"), Some(&env.issuer));
    let code = params.get("code").expect("code");
    let (status, tokens) = env.token(&req.redeem_form(code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    env.assert_active(tokens["access_token"].as_str().unwrap(), true)
        .await;
    assert_eq!(seen.lock().unwrap().len(), 1);

    // Wrong passwords: the error is shown, no code is issued, and after three the page says
    // the account is throttled.
    let mut req = AuthRequest::new(&client_id);
    req.redirect_uri = format!("http://{callback}/cb");
    let authorize = url::Url::parse_with_params(&env.url("/authorize"), req.query()).unwrap();
    browser.goto(authorize.as_str()).await.unwrap();
    for attempt in 0..3 {
        sign_in(&browser, "bob", &format!("wrong-{attempt}")).await;
        let page = wait_for_page(&browser, "the login error", |s| {
            s.contains("Invalid username or password.")
        })
        .await;
        assert!(!page.contains("Authorize access"));
    }
    sign_in(&browser, "bob", "secret456").await;
    wait_for_page(&browser, "the throttle message", |s| {
        s.contains("Too many failed sign-in attempts. Please try again in 15 minute(s).")
    })
    .await;
    let here = browser.current_url().await.unwrap();
    assert_eq!(here.path(), "/authorize");
    assert!(here.query_pairs().all(|(k, _)| k != "code"));
    assert_eq!(seen.lock().unwrap().len(), 1, "no second callback");
    browser.close().await.unwrap();
}
