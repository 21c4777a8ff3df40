//! RFC 9068 JWT access tokens (`--access-token-format jwt`): every grant's access token is an
//! ES256 JWT whose signature verifies against `/jwks`, with exactly the claims `/introspect`
//! reports; the signing key is stored (a restart keeps it, instances on one database share it,
//! racing first starts end with one key); rotation publishes the old key until its last token has
//! expired; the private key is never served or logged.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::postgres::{TestDatabase, server_url};
use common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oauth_provider::storage::{SqliteStorage, Storage};
use oauth_provider::{
    AccessTokenFormat, Clock, Config, DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET,
    Lifetimes, Server, StorageConfig,
};
use p256::pkcs8::DecodePrivateKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The access-token lifetime of these tests (not the default, so that `exp - iat` proves it is
/// the configured one).
const ACCESS_TTL: u64 = 900;

fn jwt_config() -> Config {
    Config {
        lifetimes: Lifetimes {
            access_token: Duration::from_secs(ACCESS_TTL),
            ..Lifetimes::default()
        },
        ..test_config()
    }
    .with_access_token_format(AccessTokenFormat::Jwt)
}

fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

/// `GET /jwks`: asserts the cache header and that every key is a public P-256 signing key with
/// exactly the public members; returns the document.
async fn jwks(env: &Env) -> Value {
    let resp = env.http.get(env.url("/jwks")).send().await.expect("jwks");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=300"
    );
    let body: Value = resp.json().await.unwrap();
    for key in body["keys"].as_array().expect("keys") {
        let mut members: Vec<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(
            members,
            ["alg", "crv", "kid", "kty", "use", "x", "y"],
            "{key}"
        );
        assert!(key.get("d").is_none(), "{key}");
        assert_eq!(
            (&key["kty"], &key["crv"], &key["use"], &key["alg"]),
            (
                &json!("EC"),
                &json!("P-256"),
                &json!("sig"),
                &json!("ES256")
            )
        );
    }
    body
}

/// The `kid`s `/jwks` publishes, in order.
async fn kids(env: &Env) -> Vec<String> {
    jwks(env).await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| text(k, "kid").to_owned())
        .collect()
}

/// Checks the JOSE header (`typ: at+jwt`, `alg: ES256`, a `kid` that `jwks_of` publishes),
/// verifies the signature with that key, issuer and audience, and returns the claims and `kid`.
async fn verify(token: &str, jwks_of: &Env, issuer: &str) -> (Value, String) {
    let header = jsonwebtoken::decode_header(token).expect("a JWT");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.expect("kid");
    let set = jwks(jwks_of).await;
    let jwk = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == json!(kid))
        .unwrap_or_else(|| panic!("kid {kid} is not in {set}"));
    let jwk: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[RESOURCE]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud", "jti"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation).expect("signature");
    (data.claims, kid)
}

/// Asserts the RFC 9068 claims of a verified token.
fn assert_claims(claims: &Value, issuer: &str, sub: &str, client_id: &str, scope: &str) {
    assert_eq!(claims["iss"], json!(issuer));
    assert_eq!(claims["aud"], json!(RESOURCE));
    assert_eq!(claims["sub"], json!(sub));
    assert_eq!(claims["client_id"], json!(client_id));
    assert_eq!(claims["scope"], json!(scope));
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, ACCESS_TTL as i64);
    assert_eq!(claims["nbf"].as_i64(), Some(iat));
    assert!(!text(claims, "jti").is_empty());
    // The grant family, named by SSF session-revoked events.
    assert!(!text(claims, "sid").is_empty());
}

/// The token introspects active with the JWT's own claims.
async fn assert_introspects_as(env: &Env, token: &str, claims: &Value) {
    let body = env.introspect(token).await;
    assert_eq!(body["active"], json!(true), "{body}");
    for name in [
        "iss",
        "sub",
        "aud",
        "client_id",
        "scope",
        "exp",
        "iat",
        "nbf",
        "jti",
        "sid",
    ] {
        assert_eq!(body[name], claims[name], "{name}: {body} vs {claims}");
    }
    assert_eq!(body["token_type"], json!("Bearer"));
}

async fn client_credentials(env: &Env) -> Value {
    let (status, body) = env
        .token_basic(
            DEMO_RESOURCE_SERVER_ID,
            DEMO_RESOURCE_SERVER_SECRET,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn every_grant_issues_a_verifiable_jwt_that_introspects_with_its_claims(backend: Backend) {
    let env = Env::start_with(backend, jwt_config()).await;
    let issuer = env.issuer.clone();
    let (status, metadata) = json_of(
        env.http
            .get(env.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metadata["jwks_uri"], json!(format!("{issuer}/jwks")));
    assert_eq!(kids(&env).await.len(), 1);

    // Authorization code.
    let client_id = env.public_client().await;
    let first = env.tokens(&AuthRequest::new(&client_id)).await;
    assert_eq!(first["token_type"], json!("Bearer"));
    assert_eq!(first["expires_in"], json!(ACCESS_TTL));
    let at1 = text(&first, "access_token");
    let (claims1, kid) = verify(at1, &env, &issuer).await;
    assert_claims(&claims1, &issuer, "alice", &client_id, "read write");
    assert_introspects_as(&env, at1, &claims1).await;
    assert_eq!(env.introspect(at1).await["username"], json!("alice"));
    // Stored like an opaque token: under its hash.
    assert_eq!(
        env.stored_token(at1).await.expect("stored").jti,
        text(&claims1, "jti")
    );
    let rt1 = text(&first, "refresh_token");
    assert!(rt1.starts_with("rt_"), "refresh tokens stay opaque");

    // Refresh, narrowed.
    let (status, second) = env.refresh(&client_id, rt1, &[("scope", "read")]).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let at2 = text(&second, "access_token");
    let (claims2, kid2) = verify(at2, &env, &issuer).await;
    assert_claims(&claims2, &issuer, "alice", &client_id, "read");
    assert_eq!(kid2, kid);
    assert_ne!(claims2["jti"], claims1["jti"]);
    assert_introspects_as(&env, at2, &claims2).await;
    assert!(text(&second, "refresh_token").starts_with("rt_"));

    // Client credentials: the client is the subject.
    let cc = client_credentials(&env).await;
    assert!(cc.get("refresh_token").is_none());
    let at3 = text(&cc, "access_token");
    let (claims3, _) = verify(at3, &env, &issuer).await;
    assert_claims(
        &claims3,
        &issuer,
        DEMO_RESOURCE_SERVER_ID,
        DEMO_RESOURCE_SERVER_ID,
        "read",
    );
    assert_introspects_as(&env, at3, &claims3).await;

    // Revocation works as for opaque tokens: the JWT introspects inactive afterwards (its
    // signature still verifies, which is why resource servers that need revocation introspect).
    let resp = env
        .http
        .post(env.url("/revoke"))
        .form(&[("token", at2), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    env.assert_active(at2, false).await;
    env.assert_active(at1, false).await;
    assert!(env.stored_token(at2).await.is_none());
    env.assert_active(at3, true).await;

    // The tokens are in the database only as hashes.
    if let Some(dir) = &env.dir {
        for file in ["oauth.db", "oauth.db-wal"] {
            let Ok(bytes) = std::fs::read(dir.path().join(file)) else {
                continue;
            };
            for token in [at1, at2, at3] {
                let signature = token.rsplit('.').next().unwrap().as_bytes();
                assert!(
                    !bytes.windows(signature.len()).any(|w| w == signature),
                    "a token's signature is in {file}"
                );
            }
        }
    }
    env.shutdown().await;
}

async fn the_opaque_default_is_unchanged_and_still_publishes_the_key(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let tokens = env.tokens(&AuthRequest::new(&client_id)).await;
    let at = text(&tokens, "access_token");
    assert!(at.starts_with("at_") && at.len() == 46, "{at}");
    assert!(jsonwebtoken::decode_header(at).is_err());
    env.assert_active(at, true).await;
    // The key exists from the first start, so a switch to JWTs (and back) needs no other step.
    let stored = env.storage().current_signing_key().await.unwrap().unwrap();
    assert_eq!(kids(&env).await, [stored.public.kid]);
    env.shutdown().await;
}

async fn rotation_keeps_the_old_key_published_until_its_last_token_expired(backend: Backend) {
    let t0 = oauth_provider::state::now();
    let clock = Clock::manual(t0);
    let config = Config {
        clock: clock.clone(),
        ..jwt_config()
    };
    let env = Env::start_with(backend, config).await;
    let server = env.server.as_ref().unwrap();
    let issuer = env.issuer.clone();
    let old = text(&client_credentials(&env).await, "access_token").to_owned();
    let (old_claims, old_kid) = verify(&old, &env, &issuer).await;
    assert_eq!(old_claims["exp"], json!(t0 + ACCESS_TTL as i64));

    let rotated = server.rotate_signing_key().await.unwrap();
    assert_eq!(rotated.retired_kid.as_deref(), Some(old_kid.as_str()));
    assert_eq!(rotated.retire_at, t0 + ACCESS_TTL as i64);
    assert_ne!(rotated.kid, old_kid);
    let new = text(&client_credentials(&env).await, "access_token").to_owned();
    let (_, new_kid) = verify(&new, &env, &issuer).await;
    assert_eq!(new_kid, rotated.kid);
    assert_eq!(kids(&env).await, [old_kid.clone(), new_kid.clone()]);
    // The old token still verifies against the published set.
    verify(&old, &env, &issuer).await;

    // One second before the old token expires, its key is still published.
    clock.advance(ACCESS_TTL as i64 - 1);
    env.assert_active(&old, true).await;
    assert_eq!(kids(&env).await, [old_kid.clone(), new_kid.clone()]);
    // When it expires, the key leaves the set; the cleanup then deletes it.
    clock.advance(1);
    env.assert_active(&old, false).await;
    assert_eq!(kids(&env).await, std::slice::from_ref(&new_kid));
    oauth_provider::cleanup::run_once(env.storage().as_ref(), clock.now())
        .await
        .unwrap();
    assert_eq!(kids(&env).await, std::slice::from_ref(&new_kid));
    let current = env.storage().current_signing_key().await.unwrap().unwrap();
    assert_eq!(current.public.kid, new_kid);
    env.shutdown().await;
}

async fn the_private_key_is_in_no_response(backend: Backend) {
    let env = Env::start_with(backend, jwt_config()).await;
    let key = env.storage().current_signing_key().await.unwrap().unwrap();
    let secrets = secret_forms(key.private.expose());
    let client_id = env.public_client().await;
    let tokens = env.tokens(&AuthRequest::new(&client_id)).await;
    let mut bodies = vec![tokens.to_string()];
    for path in ["/jwks", "/.well-known/oauth-authorization-server"] {
        bodies.push(
            env.http
                .get(env.url(path))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    bodies.push(
        env.introspect(text(&tokens, "access_token"))
            .await
            .to_string(),
    );
    for body in &bodies {
        for secret in &secrets {
            assert!(
                !body.contains(secret.as_str()),
                "private key material in {body}"
            );
        }
    }
    env.shutdown().await;
}

/// The forms in which a private key could leak: each base64 line of its PEM and its scalar `d`
/// (base64url, base64 and hex).
fn secret_forms(pem: &str) -> Vec<String> {
    let secret = p256::SecretKey::from_pkcs8_pem(pem).expect("a PKCS#8 P-256 key");
    let d = secret.to_bytes();
    let mut forms: Vec<String> = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_owned)
        .collect();
    forms.push(URL_SAFE_NO_PAD.encode(d));
    forms.push(base64::engine::general_purpose::STANDARD.encode(d));
    forms.push(d.iter().map(|b| format!("{b:02x}")).collect());
    forms
}

backend_tests!(
    every_grant_issues_a_verifiable_jwt_that_introspects_with_its_claims,
    the_opaque_default_is_unchanged_and_still_publishes_the_key,
    rotation_keeps_the_old_key_published_until_its_last_token_expired,
    the_private_key_is_in_no_response,
);

/// Stores opened on one database, as several instances would: `n` pools on one SQLite file or one
/// PostgreSQL database.
enum Shared {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

impl Shared {
    async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Shared::Sqlite(tempfile::tempdir().unwrap()),
            Backend::Postgres => Shared::Postgres(TestDatabase::create().await),
            Backend::Memory => unreachable!("memory storage cannot be shared"),
        }
    }

    async fn open(&self) -> Arc<dyn Storage> {
        match self {
            Shared::Sqlite(dir) => Arc::new(
                SqliteStorage::open(dir.path().join("oauth.db"))
                    .await
                    .unwrap(),
            ),
            Shared::Postgres(database) => Arc::new(database.open().await),
        }
    }
}

async fn start_on(storage: Arc<dyn Storage>, config: Config) -> Env {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start_with_storage(config, listener, storage)
        .await
        .expect("server");
    Env::with_server(server, None)
}

/// Instances started at the same moment on a new database: every one of them ends up with the
/// same single key.
async fn concurrent_first_starts_end_with_one_key(backend: Backend) {
    let shared = Shared::new(backend).await;
    let mut stores = Vec::new();
    for _ in 0..6 {
        stores.push(shared.open().await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(stores.len()));
    let mut tasks = Vec::new();
    for store in &stores {
        let (store, start) = (store.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            oauth_provider::keys::current(store.as_ref(), 1_700_000_000)
                .await
                .unwrap()
        }));
    }
    let mut kids = Vec::new();
    for task in tasks {
        kids.push(task.await.unwrap().public.kid);
    }
    kids.dedup();
    assert_eq!(kids.len(), 1, "every instance got the same key");
    let published = stores[0].verification_keys(1_700_000_000).await.unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].kid, kids[0]);
    for store in stores {
        store.close().await;
    }
}

/// Two instances on one database: a token signed by one verifies against the other's `/jwks`,
/// and a rotation on one is what the other signs with next.
async fn two_instances_share_the_key(backend: Backend) {
    let shared = Shared::new(backend).await;
    let config = Config {
        issuer: Some("http://auth.test".to_owned()),
        ..jwt_config()
    };
    let (a, b) = tokio::join!(
        async { start_on(shared.open().await, config.clone()).await },
        async { start_on(shared.open().await, config.clone()).await },
    );
    let token = text(&client_credentials(&a).await, "access_token").to_owned();
    let (claims, kid) = verify(&token, &b, "http://auth.test").await;
    assert_eq!(claims["sub"], json!(DEMO_RESOURCE_SERVER_ID));
    assert_eq!(kids(&a).await, kids(&b).await);
    b.assert_active(&token, true).await;

    let rotated = a
        .server
        .as_ref()
        .unwrap()
        .rotate_signing_key()
        .await
        .unwrap();
    let next = text(&client_credentials(&b).await, "access_token").to_owned();
    let (_, next_kid) = verify(&next, &a, "http://auth.test").await;
    assert_eq!(next_kid, rotated.kid);
    assert_eq!(kids(&b).await, [kid, rotated.kid]);
    a.shutdown().await;
    b.shutdown().await;
}

macro_rules! shared_database_tests {
    ($($name:ident),* $(,)?) => {
        mod shared_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod shared_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if super::server_url(stringify!($name)).is_some() {
                        super::$name(super::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

shared_database_tests!(
    concurrent_first_starts_end_with_one_key,
    two_instances_share_the_key
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_key_and_the_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth.db");
    // A fixed issuer: the derived one would change with the port, and tokens name their issuer.
    let config = Config {
        issuer: Some("http://auth.test".to_owned()),
        ..jwt_config().with_storage(StorageConfig::Sqlite { path: path.clone() })
    };
    let server = Server::bind(config.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = Env::with_server(server, None);
    let token = text(&client_credentials(&env).await, "access_token").to_owned();
    let (_, kid) = verify(&token, &env, &env.issuer.clone()).await;
    env.shutdown().await;
    for file in ["oauth.db", "oauth.db-wal", "oauth.db-shm"] {
        let file = dir.path().join(file);
        if file.exists() {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }

    let server = Server::bind(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = Env::with_server(server, None);
    assert_eq!(kids(&env).await, std::slice::from_ref(&kid));
    // A token from before the restart verifies against the restarted server's keys; new tokens
    // are signed with the same key.
    let issuer = env.issuer.clone();
    verify(&token, &env, &issuer).await;
    let again = text(&client_credentials(&env).await, "access_token").to_owned();
    assert_eq!(verify(&again, &env, &issuer).await.1, kid);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_database_file_readable_by_others_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let storage = SqliteStorage::open(&path).await.unwrap();
    oauth_provider::keys::current(&storage, 1_700_000_000)
        .await
        .unwrap();
    storage.close().await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// The binary: `--access-token-format jwt` (and `OAUTH_ACCESS_TOKEN_FORMAT=jwt`), the
/// `rotate-signing-key` command against a stopped server's database, and logs at `trace` that
/// never contain the private keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_rotates_keys_and_never_logs_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oauth.db");
    let db = db.to_str().unwrap();
    let log_path = dir.path().join("stderr.log");
    let storage_args = ["--storage", "sqlite", "--sqlite-path", db];
    // A fixed issuer: the derived one would change with the port, and tokens name their issuer.
    let server_args = [&storage_args[..], &["--issuer", "http://auth.test"]].concat();

    // First start: the flag.
    let (first, env) = spawn_logged(
        &[&server_args[..], &["--access-token-format", "jwt"]].concat(),
        &[],
        &log_path,
    )
    .await;
    let old = text(&client_credentials(&env).await, "access_token").to_owned();
    let (_, old_kid) = verify(&old, &env, &env.issuer.clone()).await;
    first.stop().await;

    let output = tokio::process::Command::new(BIN)
        .args(storage_args)
        .args(["--access-token-ttl", "600", "rotate-signing-key"])
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let new_kid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("new signing key: "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    assert!(
        stdout.contains(&format!("previous key {old_kid} stays published until")),
        "{stdout}"
    );

    // Second start: the environment variable.
    let (second, env) = spawn_logged(
        &server_args,
        &[("OAUTH_ACCESS_TOKEN_FORMAT", "jwt")],
        &log_path,
    )
    .await;
    assert_eq!(kids(&env).await, [old_kid.clone(), new_kid.clone()]);
    verify(&old, &env, &env.issuer.clone()).await;
    let new = text(&client_credentials(&env).await, "access_token").to_owned();
    assert_eq!(verify(&new, &env, &env.issuer.clone()).await.1, new_kid);
    second.stop().await;

    // Memory storage has nothing to rotate: a clear error, no panic.
    let output = tokio::process::Command::new(BIN)
        .args(["--storage", "memory", "rotate-signing-key"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("memory storage"),
        "{output:?}"
    );

    let mut logs = std::fs::read_to_string(&log_path).unwrap();
    logs.push_str(&String::from_utf8_lossy(&output.stderr));
    assert!(logs.contains("signing key"), "the logs were captured");
    let storage = SqliteStorage::open(db).await.unwrap();
    let pems: Vec<String> = sqlx::query_scalar("SELECT private_key FROM signing_keys")
        .fetch_all(storage.pool())
        .await
        .unwrap();
    storage.close().await;
    assert_eq!(pems.len(), 2);
    for pem in &pems {
        for secret in secret_forms(pem) {
            assert!(!logs.contains(&secret), "private key material in the logs");
            assert!(!stdout.contains(&secret));
        }
    }
}

/// Spawns the binary (demo accounts, issuer `http://auth.test`, trace logs appended to
/// `log_path`) and waits for its address line.
async fn spawn_logged(
    args: &[&str],
    envs: &[(&str, &str)],
    log_path: &std::path::Path,
) -> (Process, Env) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap();
    let args = [args, &["--demo", "--bind", "127.0.0.1:0"]].concat();
    let process = Process::spawn_logging(&args, envs, "trace", Stdio::from(log)).await;
    let env = Env::remote(&process.base, "http://auth.test");
    (process, env)
}
