//! The real `oauth-provider` binary: two processes sharing one SQLite file, users file without the
//! demo switch, environment configuration, and the `hash-password` subcommand.

mod common;

use std::process::Stdio;

use common::*;
use oauth_provider::users::{User, UserDirectory};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let db = db.to_str().unwrap();
    let issuer = "http://auth.test";
    let args = [
        "--demo",
        "--storage",
        "sqlite",
        "--sqlite-path",
        db,
        "--bind",
        "127.0.0.1:0",
        "--issuer",
        issuer,
    ];
    let first = Process::spawn(&args, &[]).await;
    let second = Process::spawn(&args, &[]).await;
    let a = Env::remote(&first.base, issuer);
    let b = Env::remote(&second.base, issuer);

    // A client registered on one is known to the other.
    let client_id = a.public_client().await;
    let req = AuthRequest::new(&client_id);
    let code = b.code(&req).await;

    // Redeemed on A, the code cannot be redeemed on B.
    let (status, tokens) = a.token(&req.redeem_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let at = tokens["access_token"].as_str().unwrap();
    b.assert_active(at, true).await;
    a.assert_active(at, true).await;
    assert_error(
        &b.token(&req.redeem_form(&code)).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    // …and that replay revoked the tokens for both processes.
    a.assert_active(at, false).await;
    b.assert_active(at, false).await;

    // Concurrent redemptions split across both processes: exactly one wins.
    let req = AuthRequest::new(&client_id);
    let code = a.code(&req).await;
    let form: Vec<(String, String)> = req
        .redeem_form(&code)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = if i % 2 == 0 {
            a.url("/token")
        } else {
            b.url("/token")
        };
        let http = a.http.clone();
        let form = form.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url).form(&form).send().await.unwrap().status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap() == StatusCode::OK);
    }
    assert_eq!(ok, 1);

    // Revocation on one is seen by the other.
    let tokens = a.tokens(&AuthRequest::new(&client_id)).await;
    let at = tokens["access_token"].as_str().unwrap();
    let resp = b
        .http
        .post(b.url("/revoke"))
        .form(&[("token", at), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    a.assert_active(at, false).await;

    first.stop().await;
    second.stop().await;
}

async fn hash(password: &str) -> String {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_password_output_verifies() {
    let phc = hash("correct horse").await;
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    let mut users = UserDirectory::new();
    users
        .add(vec![User {
            username: "u".into(),
            password_hash: phc,
            scopes: vec![],
        }])
        .unwrap();
    assert!(users.authenticate("u", "correct horse").is_some());
    assert!(users.authenticate("u", "correct horse\n").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_file_without_demo_switch_from_environment() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let phc = hash("carol-pass").await;
    std::fs::write(
        &users,
        format!("[[users]]\nusername = \"carol\"\npassword_hash = \"{phc}\"\nscopes = [\"read\", \"admin\"]\n"),
    )
    .unwrap();
    // Known resources from the environment, comma separated.
    let resources = format!("https://other.example/api,{RESOURCE}");
    let process = Process::spawn(
        &[],
        &[
            ("OAUTH_STORAGE_BACKEND", "memory"),
            ("OAUTH_BIND", "127.0.0.1:0"),
            ("OAUTH_USERS_FILE", users.to_str().unwrap()),
            ("OAUTH_ACCESS_TOKEN_TTL", "120"),
            ("OAUTH_RESOURCES", &resources),
        ],
    )
    .await;
    let issuer = process.base.clone();
    let env = Env::remote(&process.base, &issuer);
    let resp = env
        .http
        .get(env.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(resp).await.1["issuer"], json!(issuer));

    // No demo clients…
    let resp = env
        .authorize(&AuthRequest::new(oauth_provider::DEMO_PUBLIC_CLIENT_ID).query())
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // …and no demo accounts.
    let client_id = env.public_client().await;
    let mut req = AuthRequest::new(&client_id);
    req.scope = Some("read admin".into());
    let page = env.authorize(&req.query()).await.text().await.unwrap();
    let again = env
        .login(&page, "alice", "password123")
        .await
        .text()
        .await
        .unwrap();
    assert!(again.contains("Invalid username or password."));
    // The file's user can log in.
    let params = env.authorize_and_approve(&req, "carol", "carol-pass").await;
    let (status, tokens) = env.token(&req.redeem_form(&params["code"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["expires_in"], json!(120));
    assert_eq!(tokens["scope"], json!("admin read"));
    process.stop().await;
}
