//! A database outage is answered `503 temporarily_unavailable` with `Retry-After`, not `500`,
//! and the provider recovers by itself when the database is back, with every token kept.
//!
//! The test runs on a throwaway PostgreSQL cluster of its own (started with
//! `scripts/postgres-cluster.sh` in a directory of its own, on a port of its own), since it stops
//! and restarts the server under the provider. Like every PostgreSQL test it needs
//! `TOWER_INTROSPECT_TEST_POSTGRES_URL` (it says so and passes without it, and fails without it
//! when `TOWER_INTROSPECT_REQUIRE_POSTGRES=1`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use oauth_provider::storage::{PostgresStorage, StorageError};
use oauth_provider::{PostgresSettings, Server};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;

/// The cluster script of the repository.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres-cluster.sh")
}

/// A PostgreSQL cluster that this test owns: it can stop it and start it again on the same
/// port and data directory. Deleted (stopped first) when dropped.
struct Cluster {
    dir: PathBuf,
    url: String,
}

impl Cluster {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "provider-outage-{}-{}",
            std::process::id(),
            oauth_provider::tokens::random_id()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(12)
                .collect::<String>()
        ));
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .env("TOWER_INTROSPECT_PG_DIR", &dir)
            .output()
            .expect("run the cluster script");
        assert!(
            out.status.success(),
            "cluster start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Self { dir, url }
    }

    /// Where `pg_ctl` is: `$PG_BIN`, the `PATH`, or Debian's directory (as the script does).
    fn pg_ctl() -> PathBuf {
        if let Some(bin) = std::env::var_os("PG_BIN") {
            return Path::new(&bin).join("pg_ctl");
        }
        if let Some(found) = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|p| p.join("pg_ctl"))
                .find(|p| p.is_file())
        }) {
            return found;
        }
        let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("no pg_ctl found")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin/pg_ctl")))
            .filter(|p| p.is_file())
            .collect();
        candidates.sort();
        candidates.pop().expect("no pg_ctl found")
    }

    /// Runs `pg_ctl` as the cluster's owner (`postgres` when we are root, as the script does).
    fn pg_ctl_run(&self, args: &[&str]) {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let mut command = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(Self::pg_ctl());
            c
        } else {
            Command::new(Self::pg_ctl())
        };
        let out = command
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(args)
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (fast shutdown: sessions are ended).
    fn stop(&self) {
        self.pg_ctl_run(&["-m", "fast", "-w", "stop"]);
    }

    /// Starts the stopped server again, on its port and with its data.
    fn resume(&self) {
        let port = std::fs::read_to_string(self.dir.join("port")).expect("port file");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={}",
            port.trim(),
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.pg_ctl_run(&[
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
            "-o",
            &options,
        ]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("TOWER_INTROSPECT_PG_DIR", &self.dir)
            .output();
    }
}

/// A refresh-token grant, as a raw response (its headers are checked).
async fn refresh(env: &Env, client_id: &str, token: &str) -> reqwest::Response {
    env.http
        .post(env.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client_id),
        ])
        .send()
        .await
        .expect("token request")
}

/// `503 temporarily_unavailable`, `Retry-After: 5`.
async fn assert_unavailable(resp: reqwest::Response) {
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "5");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_the_provider_recovers_with_every_token() {
    let test = "a_database_outage_answers_503_and_the_provider_recovers_with_every_token";
    if postgres::server_url(test).is_none() {
        return;
    }
    let cluster = Cluster::start();
    let settings = PostgresSettings {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(1),
        ..PostgresSettings::new(cluster.url.as_str())
    };
    let storage = PostgresStorage::open(&settings).await.expect("open");

    // A statement cancelled by statement_timeout (SQLSTATE 57014) is "unavailable".
    let cancelled = sqlx::query("SELECT pg_sleep(5)")
        .execute(storage.pool())
        .await
        .expect_err("cancelled by the statement timeout");
    let cancelled = StorageError::from(cancelled);
    assert!(cancelled.is_unavailable(), "{cancelled}");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start_with_storage(test_config(), listener, Arc::new(storage))
        .await
        .expect("server");
    let env = Env::with_server(server, None);
    let client_id = env.public_client().await;
    let tokens = env.tokens(&AuthRequest::new(&client_id)).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    env.assert_active(access, true).await;

    // The database goes away under the running provider.
    cluster.stop();
    let started = Instant::now();
    assert_unavailable(refresh(&env, &client_id, refresh_token).await).await;
    // Answered within the acquire timeout and a connection attempt, not after minutes.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let introspection = env
        .http
        .post(env.url("/introspect"))
        .basic_auth(
            oauth_provider::DEMO_RESOURCE_SERVER_ID,
            Some(oauth_provider::DEMO_RESOURCE_SERVER_SECRET),
        )
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_unavailable(introspection).await;

    // Back: the same provider (never restarted) serves again, with the tokens of before.
    cluster.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    let rotated = loop {
        let resp = refresh(&env, &client_id, refresh_token).await;
        match resp.status() {
            StatusCode::OK => break resp.json::<Value>().await.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("no recovery: {other} {}", resp.text().await.unwrap()),
        }
    };
    env.assert_active(access, true).await;
    env.assert_active(rotated["access_token"].as_str().unwrap(), true)
        .await;
    env.shutdown().await;
    drop(cluster);
}
