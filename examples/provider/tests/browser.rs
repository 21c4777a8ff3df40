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
use fantoccini::elements::Element;
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

/// A chromedriver on a free loopback port. It runs in a process group of its own, and dropping
/// it (also when a step panics) kills the whole group, so no driver and none of the browser
/// processes it started outlive the test.
struct Driver {
    child: Child,
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
            .process_group(0)
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
        Self { child, url }
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
                    // No crash reporter: its handler leaves the browser's process group, so
                    // it would outlive a failed run.
                    "--disable-crash-reporter",
                    "--disable-breakpad",
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

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is the driver's pid (`process_group(0)`); the browser and its helpers
        // inherit the group.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
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

/// Waits until the page's source satisfies `done`. Call it only once the page that is expected
/// has replaced the one before it ([`wait_until_replaced`]): a marker the old page also shows
/// would otherwise match the old page.
async fn wait_for_page(browser: &Client, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        // While a navigation is under way the driver may refuse to read the page: try again.
        let source = browser.source().await;
        if let Ok(source) = &source
            && done(source)
        {
            return source.clone();
        }
        assert!(Instant::now() < deadline, "never saw {what}: {source:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A handle on the document on screen, to tell later when a navigation has replaced it.
async fn current_document(browser: &Client) -> Element {
    browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css("html"))
        .await
        .unwrap()
}

/// Waits until `before` is stale: the navigation a click started has replaced that document.
/// Without this, a lookup right after a click can find an element of the page being left, which
/// goes stale under the next action.
async fn wait_until_replaced(before: &Element, what: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        match before.tag_name().await {
            Err(e) if e.is_stale_element_reference() => return,
            outcome => assert!(
                Instant::now() < deadline,
                "the page never left for {what}: {outcome:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Finds the element afresh and acts on it. Each action gets its own lookup, so no handle
/// outlives the document it came from.
async fn on_element<T, F>(browser: &Client, css: &str, act: impl Fn(Element) -> F) -> T
where
    F: Future<Output = Result<T, fantoccini::error::CmdError>>,
{
    let element = browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"));
    act(element)
        .await
        .unwrap_or_else(|e| panic!("acting on {css}: {e}"))
}

/// Clicks the button and waits until the page it leads to has replaced the one on screen.
async fn click_through(browser: &Client, css: &str, what: &str) {
    let before = current_document(browser).await;
    on_element(browser, css, |e| async move { e.click().await }).await;
    wait_until_replaced(&before, what).await;
}

/// Types the credentials into the login page on screen and submits it. The login page must
/// have settled (after `goto`, or after [`wait_for_page`] on it); returns once the page the
/// form leads to has replaced it.
async fn sign_in(browser: &Client, username: &str, password: &str) {
    on_element(browser, "input[name=username]", |e| async move {
        e.send_keys(username).await
    })
    .await;
    on_element(browser, "input[name=password]", |e| async move {
        e.send_keys(password).await
    })
    .await;
    click_through(browser, "button[type=submit]", "the sign-in answer").await;
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
    // Three failures per account and address, so that the throttle shows after a few attempts.
    config.limits.login_failures_per_pair =
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
    click_through(&browser, "button[value=approve]", "the callback").await;
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
