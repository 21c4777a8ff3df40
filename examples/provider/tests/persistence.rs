//! SQLite durability: clients, codes, access and refresh tokens survive a restart of the server
//! on the same database file.

mod common;

use common::*;
use oauth_provider::{Config, Server, StorageConfig};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::demo().with_storage(StorageConfig::Sqlite {
        path: dir.path().join("nested").join("oauth.db"),
    });
    let server = Server::bind(config.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = Env::with_server(server, Some(dir));

    let client_id = env.public_client().await;
    let tokens = env.tokens(&AuthRequest::new(&client_id)).await;
    let at = tokens["access_token"].as_str().unwrap().to_owned();
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let pending_req = AuthRequest::new(&client_id);
    let pending_code = env.code(&pending_req).await;
    let dir = env.shutdown().await.unwrap();

    // Same file, new process state, new port.
    let server = Server::bind(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let env = Env::with_server(server, Some(dir));
    env.assert_active(&at, true).await;
    env.assert_refresh_usable(&rt, true).await;
    assert_eq!(env.introspect(&at).await["username"], json!("alice"));
    // The client is still registered.
    let resp = env.authorize(&AuthRequest::new(&client_id).query()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // A code issued before the restart can be redeemed once after it.
    let (status, _) = env.token(&pending_req.redeem_form(&pending_code)).await;
    assert_eq!(status, StatusCode::OK);
    // The refresh token rotates.
    let (status, body) = env
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    env.shutdown().await;
}
