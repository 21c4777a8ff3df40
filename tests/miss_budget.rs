//! A flood of garbage tokens from one client must not lock everyone else out: its new tokens are
//! budgeted per client (429 for that client), so the authorization server, which throttles
//! beyond a rate, never has a reason to answer everyone with 429.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tower_introspect::BearerAuthLayer;
use tower_introspect::layer::MissBudget;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// An authorization server that answers at most `per_second` introspections in each second and
/// `429` beyond; tokens starting with `valid-` are active, the others inactive.
struct ThrottlingServer {
    per_second: u64,
    window: Mutex<(Instant, u64)>,
    throttled: Arc<AtomicU64>,
}

impl Respond for ThrottlingServer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        {
            let mut window = self.window.lock().unwrap();
            if window.0.elapsed() >= Duration::from_secs(1) {
                *window = (Instant::now(), 0);
            }
            window.1 += 1;
            if window.1 > self.per_second {
                self.throttled.fetch_add(1, Ordering::SeqCst);
                return ResponseTemplate::new(429).insert_header("retry-after", "60");
            }
        }
        let token = form_of(request)
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
            .unwrap_or_default();
        if token.starts_with("valid-") {
            ResponseTemplate::new(200).set_body_json(active("victim", "read"))
        } else {
            ResponseTemplate::new(200).set_body_json(json!({"active": false}))
        }
    }
}

/// The throttling server, and how many requests it refused with 429.
async fn throttling_server(per_second: u64) -> (MockServer, Arc<AtomicU64>) {
    let server = MockServer::start().await;
    let throttled = Arc::new(AtomicU64::new(0));
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .respond_with(ThrottlingServer {
            per_second,
            window: Mutex::new((Instant::now(), 0)),
            throttled: throttled.clone(),
        })
        .mount(&server)
        .await;
    (server, throttled)
}

/// A protected app on loopback, served with the peer address (`ConnectInfo`).
async fn serve_app(server: &MockServer, budget: Option<MissBudget>) -> SocketAddr {
    let seen = Seen::default();
    let layer = BearerAuthLayer::introspect(introspector_for(server).build().unwrap())
        .resource_metadata(METADATA)
        .miss_budget(budget);
    let app = recording_app(&seen).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    addr
}

/// A client whose connections come from `from` (a loopback address of its own).
fn client_from(from: &str) -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn status(client: &reqwest::Client, addr: SocketAddr, token: &str) -> u16 {
    client
        .get(format!("http://{addr}/mcp"))
        .header("authorization", bearer(token))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `seconds` of load: 100 garbage tokens a second from 127.0.0.2 (in batches of 10 every
/// 100 ms), and a new valid token every 100 ms from 127.0.0.3. Returns the flooder's and the
/// victim's statuses.
async fn flood(addr: SocketAddr, seconds: u64) -> (Vec<u16>, Vec<u16>) {
    let flooder = client_from("127.0.0.2");
    let victim = client_from("127.0.0.3");
    let mut flooded = Vec::new();
    let mut served = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for round in 0..seconds * 10 {
        tick.tick().await;
        let garbage = (0..10).map(|i| {
            let flooder = flooder.clone();
            async move { status(&flooder, addr, &format!("garbage-{round}-{i}")).await }
        });
        let valid = format!("valid-{round}");
        let (batch, mine) = tokio::join!(
            futures_util::future::join_all(garbage),
            status(&victim, addr, &valid)
        );
        flooded.extend(batch);
        served.push(mine);
    }
    (flooded, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_tokens_from_one_address_locks_only_that_address_out() {
    // Each client may start 20 introspections a second. The authorization server allows 80: its
    // one-second windows are not the budget's, so the flooder's 20 at the end of one budget
    // window and 20 at the start of the next can fall in one server window, beside the victim's
    // tokens (up to 20 a second when a loaded machine delivers late ticks in a burst).
    let (server, throttled) = throttling_server(80).await;
    let addr = serve_app(
        &server,
        Some(MissBudget::per_client(20, Duration::from_secs(1))),
    )
    .await;
    let (flooded, served) = flood(addr, 10).await;

    assert_eq!(flooded.len(), 1000);
    assert!(
        served.iter().all(|s| *s == 200),
        "every new valid token of the other address verifies: {served:?}"
    );
    let told_to_slow_down = flooded.iter().filter(|s| **s == 429).count();
    let refused = flooded.iter().filter(|s| **s == 401).count();
    assert_eq!(told_to_slow_down + refused, 1000, "{flooded:?}");
    // At most 20 a second (and one window's worth at the edges) reached the server.
    assert!(told_to_slow_down >= 1000 - 20 * 11, "{told_to_slow_down}");
    assert_eq!(
        throttled.load(Ordering::SeqCst),
        0,
        "the server never had to throttle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_budget_the_same_flood_locks_everyone_out() {
    // The control: the flood reaches the server, which throttles, and the other address's new
    // tokens get 503 while the hold lasts.
    let (server, throttled) = throttling_server(40).await;
    let addr = serve_app(&server, None).await;
    let (_, served) = flood(addr, 2).await;
    assert!(throttled.load(Ordering::SeqCst) > 0);
    assert!(
        served.iter().filter(|s| **s == 503).count() >= 10,
        "the victim was locked out: {served:?}"
    );
}
