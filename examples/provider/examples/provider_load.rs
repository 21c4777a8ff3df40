//! Bounded load test of the reference provider on PostgreSQL, with one and with three instances
//! on one database: token issuance (`client_credentials`) and introspection of the issued token.
//!
//! ```sh
//! export TOWER_INTROSPECT_TEST_POSTGRES_URL="$(scripts/postgres-cluster.sh start)"
//! cargo run --release -p oauth-provider --example provider_load -- --rounds 3 --seconds 5
//! ```
//!
//! It creates a database of its own on that server (dropped at the end), starts three provider
//! instances in this process (each with its own listener, connection pool and cleanup task, as
//! three processes would have), and drives `--workers` concurrent clients, each repeating: get
//! a token from `/token` (HTTP Basic, `client_credentials`), then introspect it at
//! `/introspect` as the resource server. "One instance" sends everything to the first
//! instance; "three instances" spreads requests round-robin, as a load balancer would. The two
//! configurations run in interleaved rounds (order alternating) so that machine drift hits both
//! alike. It stops by itself after rounds × 2 × seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oauth_provider::{
    Config, DEMO_RESOURCE, DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET, PostgresSettings,
    Server, StorageConfig,
};
use sqlx::Connection;

#[derive(Clone, Copy)]
struct Options {
    rounds: usize,
    seconds: u64,
    workers: usize,
    max_connections: u32,
}

fn options() -> Options {
    let mut options = Options {
        rounds: 3,
        seconds: 5,
        workers: 32,
        max_connections: 10,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<u64>().ok());
        let value = value.unwrap_or_else(|| panic!("{}: expected a number", pair[0]));
        match pair[0].as_str() {
            "--rounds" => options.rounds = value.clamp(1, 100) as usize,
            "--seconds" => options.seconds = value.clamp(1, 600),
            "--workers" => options.workers = value.clamp(1, 1024) as usize,
            "--max-connections" => options.max_connections = value.clamp(1, 100) as u32,
            other => panic!("unknown option {other}"),
        }
    }
    options
}

/// Latencies (µs) and errors of one kind of request.
#[derive(Default)]
struct Samples {
    micros: Vec<u64>,
    errors: u64,
}

impl Samples {
    fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        self.errors += other.errors;
    }

    fn percentile(&mut self, p: f64) -> u64 {
        if self.micros.is_empty() {
            return 0;
        }
        self.micros.sort_unstable();
        let rank = ((p / 100.0) * self.micros.len() as f64).ceil() as usize;
        self.micros[rank.clamp(1, self.micros.len()) - 1]
    }
}

/// One worker: token then introspection, round-robin over `bases`, until `stop`.
async fn worker(
    http: reqwest::Client,
    bases: Arc<Vec<String>>,
    offset: usize,
    stop: Arc<AtomicBool>,
) -> (Samples, Samples) {
    let (mut token, mut introspect) = (Samples::default(), Samples::default());
    let mut i = offset;
    while !stop.load(Ordering::Relaxed) {
        let base = &bases[i % bases.len()];
        i += 1;
        let started = Instant::now();
        let issued = http
            .post(format!("{base}/token"))
            .basic_auth(DEMO_RESOURCE_SERVER_ID, Some(DEMO_RESOURCE_SERVER_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "read"),
                ("resource", DEMO_RESOURCE),
            ])
            .send()
            .await;
        let access_token = match issued {
            Ok(resp) if resp.status().is_success() => resp
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["access_token"].as_str().map(str::to_owned)),
            _ => None,
        };
        token.micros.push(started.elapsed().as_micros() as u64);
        let Some(access_token) = access_token else {
            token.errors += 1;
            continue;
        };
        // Introspect on the next instance: the token must be known everywhere at once.
        let base = &bases[i % bases.len()];
        let started = Instant::now();
        let active = http
            .post(format!("{base}/introspect"))
            .basic_auth(DEMO_RESOURCE_SERVER_ID, Some(DEMO_RESOURCE_SERVER_SECRET))
            .form(&[("token", access_token.as_str())])
            .send()
            .await;
        let active = match active {
            Ok(resp) if resp.status().is_success() => resp
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|v| v["active"] == serde_json::json!(true)),
            _ => false,
        };
        introspect.micros.push(started.elapsed().as_micros() as u64);
        if !active {
            introspect.errors += 1;
        }
    }
    (token, introspect)
}

/// Runs the load for `seconds` against `bases`.
async fn run(bases: &[String], options: &Options) -> (Samples, Samples, Duration) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(options.workers)
        .build()
        .expect("http client");
    let bases = Arc::new(bases.to_vec());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..options.workers)
        .map(|w| tokio::spawn(worker(http.clone(), bases.clone(), w, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut token, mut introspect) = (Samples::default(), Samples::default());
    for w in workers {
        let (t, i) = w.await.expect("worker");
        token.merge(t);
        introspect.merge(i);
    }
    (token, introspect, started.elapsed())
}

async fn admin(server: &str, sql: String) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(server).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = options();
    let Some(server) = std::env::var("TOWER_INTROSPECT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "set TOWER_INTROSPECT_TEST_POSTGRES_URL (e.g. from scripts/postgres-cluster.sh start)"
        );
        std::process::exit(2);
    };
    let name = format!("provider_load_{}", std::process::id());
    admin(&server, format!("CREATE DATABASE {name}"))
        .await
        .expect("create the load test database");
    let mut url = url::Url::parse(&server).expect("a postgres:// URL");
    url.set_path(&format!("/{name}"));
    let settings = PostgresSettings {
        max_connections: options.max_connections,
        ..PostgresSettings::new(url.as_str())
    };
    let mut instances = Vec::new();
    for _ in 0..3 {
        let config = Config::demo().with_storage(StorageConfig::Postgres(settings.clone()));
        let server = Server::bind(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("start an instance");
        instances.push(server);
    }
    let bases: Vec<String> = instances.iter().map(Server::base_url).collect();
    // Warm-up (not recorded): every instance opens its pool's connections.
    run(
        &bases,
        &Options {
            seconds: 1,
            ..options
        },
    )
    .await;
    println!(
        "{} workers, {} s per configuration and round, {} rounds, pool of {} connections per instance",
        options.workers, options.seconds, options.rounds, options.max_connections
    );
    println!(
        "| round | instances | token req/s | token p50 ms | token p99 ms | introspect p50 ms | introspect p99 ms | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut totals: Vec<(usize, Samples, Samples, Duration)> = Vec::new();
    for round in 0..options.rounds {
        let order: [usize; 2] = if round % 2 == 0 { [1, 3] } else { [3, 1] };
        for count in order {
            let (mut token, mut introspect, elapsed) = run(&bases[..count], &options).await;
            println!(
                "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                round + 1,
                count,
                token.micros.len() as f64 / elapsed.as_secs_f64(),
                token.percentile(50.0) as f64 / 1000.0,
                token.percentile(99.0) as f64 / 1000.0,
                introspect.percentile(50.0) as f64 / 1000.0,
                introspect.percentile(99.0) as f64 / 1000.0,
                token.errors + introspect.errors,
            );
            match totals.iter_mut().find(|t| t.0 == count) {
                Some(total) => {
                    total.1.merge(token);
                    total.2.merge(introspect);
                    total.3 += elapsed;
                }
                None => totals.push((count, token, introspect, elapsed)),
            }
        }
    }
    println!("\nAll rounds:\n");
    println!(
        "| instances | tokens | token req/s | token p99 ms | introspections | introspect p99 ms | errors |"
    );
    println!("|---|---|---|---|---|---|---|");
    totals.sort_by_key(|t| t.0);
    for (count, mut token, mut introspect, elapsed) in totals {
        println!(
            "| {} | {} | {:.0} | {:.1} | {} | {:.1} | {} |",
            count,
            token.micros.len(),
            token.micros.len() as f64 / elapsed.as_secs_f64(),
            token.percentile(99.0) as f64 / 1000.0,
            introspect.micros.len(),
            introspect.percentile(99.0) as f64 / 1000.0,
            token.errors + introspect.errors,
        );
    }
    for instance in instances {
        let _ = instance.shutdown().await;
    }
    if let Err(e) = admin(
        &server,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await
    {
        eprintln!("could not drop {name}: {e}");
    }
}
