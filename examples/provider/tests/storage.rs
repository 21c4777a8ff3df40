//! The storage contract, checked directly on both backends (SQLite on a real file): atomic
//! consumption, expiry filtering, cleanup, family revocation, single-use interactions.

mod common;

use std::sync::Arc;

use common::*;
use oauth_provider::cleanup;
use oauth_provider::model::{
    AuthMethod, AuthorizationCode, Client, InteractionStage, PendingAuthorization, StorageStats,
    TokenKind, TokenRecord,
};
use oauth_provider::storage::Storage;
use oauth_provider::tokens::{hash_secret, random_id};

backend_tests!(
    clients_round_trip_and_upsert_keeps_tokens,
    code_is_consumed_exactly_once_under_concurrency,
    refresh_token_rotates_exactly_once,
    expired_rows_are_never_returned_and_are_purged,
    revoked_family_hides_tokens_stored_later,
    pending_authorization_is_single_use,
);

const NOW: i64 = 1_700_000_000;

async fn store(backend: Backend) -> (Arc<dyn Storage>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_storage(backend, &dir).await;
    storage.put_client(&client("c1")).await.unwrap();
    (storage, dir)
}

fn client(id: &str) -> Client {
    Client {
        client_id: id.to_owned(),
        secret_hash: None,
        client_name: Some("Client".to_owned()),
        redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
        grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
        scope: "read write".to_owned(),
        auth_method: AuthMethod::None,
        issued_at: NOW,
        resource_server: false,
        resources: Vec::new(),
    }
}

fn code(hash: &str, family: &str, expires_at: i64) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: hash.to_owned(),
        client_id: "c1".to_owned(),
        redirect_uri: "http://127.0.0.1/cb".to_owned(),
        subject: "alice".to_owned(),
        scope: "read".to_owned(),
        resource: Some(RESOURCE.to_owned()),
        code_challenge: "c".repeat(43),
        family_id: family.to_owned(),
        issued_at: NOW,
        expires_at,
        consumed: false,
    }
}

fn token(hash: &str, kind: TokenKind, family: &str, expires_at: i64) -> TokenRecord {
    TokenRecord {
        token_hash: hash.to_owned(),
        kind,
        family_id: family.to_owned(),
        client_id: "c1".to_owned(),
        subject: Some("alice".to_owned()),
        scope: "read".to_owned(),
        resource: None,
        jti: random_id(),
        issued_at: NOW,
        expires_at,
        consumed: false,
    }
}

fn pending(id: &str, expires_at: i64) -> PendingAuthorization {
    PendingAuthorization {
        id_hash: hash_secret(id),
        browser_hash: hash_secret("browser"),
        csrf_hash: hash_secret("csrf"),
        client_id: "c1".to_owned(),
        redirect_uri: "http://127.0.0.1:1234/cb".to_owned(),
        scope: "read write".to_owned(),
        state: Some("xyz".to_owned()),
        code_challenge: "c".repeat(43),
        resource: None,
        stage: InteractionStage::Login,
        subject: None,
        granted_scope: None,
        expires_at,
    }
}

async fn clients_round_trip_and_upsert_keeps_tokens(backend: Backend) {
    let (s, _dir) = store(backend).await;
    assert_eq!(s.get_client("c1").await.unwrap(), Some(client("c1")));
    assert_eq!(s.get_client("nope").await.unwrap(), None);
    let mut confidential = client("c2");
    confidential.secret_hash = Some(hash_secret("secret"));
    confidential.auth_method = AuthMethod::ClientSecretPost;
    confidential.redirect_uris = Vec::new();
    confidential.resource_server = true;
    confidential.resources = vec![
        "https://a.example/mcp".to_owned(),
        "https://b.example/".to_owned(),
    ];
    s.put_client(&confidential).await.unwrap();
    assert_eq!(s.get_client("c2").await.unwrap(), Some(confidential));

    s.put_tokens(&[token("t1", TokenKind::Access, "f", NOW + 60)])
        .await
        .unwrap();
    let mut renamed = client("c1");
    renamed.client_name = Some("Renamed".to_owned());
    s.put_client(&renamed).await.unwrap();
    assert_eq!(
        s.get_client("c1")
            .await
            .unwrap()
            .unwrap()
            .client_name
            .as_deref(),
        Some("Renamed")
    );
    assert!(
        s.get_token("t1", NOW).await.unwrap().is_some(),
        "re-seeding a client must keep its tokens"
    );
}

async fn code_is_consumed_exactly_once_under_concurrency(backend: Backend) {
    let (s, _dir) = store(backend).await;
    s.put_code(&code("h", "fam", NOW + 600)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.consume_code("h", NOW).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    let stored = s.get_code("h", NOW).await.unwrap().unwrap();
    assert!(
        stored.consumed,
        "a consumed code is still readable for replay detection"
    );
    assert!(!s.consume_code("unknown", NOW).await.unwrap());
    // An expired code cannot be consumed.
    s.put_code(&code("old", "fam2", NOW - 1)).await.unwrap();
    assert!(!s.consume_code("old", NOW).await.unwrap());
}

async fn refresh_token_rotates_exactly_once(backend: Backend) {
    let (s, _dir) = store(backend).await;
    s.put_tokens(&[
        token("a", TokenKind::Access, "f", NOW + 60),
        token("r", TokenKind::Refresh, "f", NOW + 600),
    ])
    .await
    .unwrap();
    assert!(
        !s.rotate_refresh_token("a", NOW).await.unwrap(),
        "access tokens do not rotate"
    );
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.rotate_refresh_token("r", NOW).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert!(s.get_token("r", NOW).await.unwrap().unwrap().consumed);
}

async fn expired_rows_are_never_returned_and_are_purged(backend: Backend) {
    let (s, _dir) = store(backend).await;
    let exp = NOW + 10;
    s.put_code(&code("code", "f1", exp)).await.unwrap();
    s.put_tokens(&[
        token("at", TokenKind::Access, "f1", exp),
        token("rt", TokenKind::Refresh, "f1", exp + 100),
    ])
    .await
    .unwrap();
    s.put_pending(&pending("p", exp)).await.unwrap();
    s.revoke_family("f-other", exp).await.unwrap();

    // Before expiry everything is visible.
    assert!(s.get_code("code", exp - 1).await.unwrap().is_some());
    assert!(s.get_token("at", exp - 1).await.unwrap().is_some());
    assert!(
        s.get_pending(&hash_secret("p"), exp - 1)
            .await
            .unwrap()
            .is_some()
    );

    // At expiry reads filter, even before cleanup ran.
    assert!(s.get_code("code", exp).await.unwrap().is_none());
    assert!(!s.consume_code("code", exp).await.unwrap());
    assert!(s.get_token("at", exp).await.unwrap().is_none());
    assert!(
        s.get_pending(&hash_secret("p"), exp)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !s.complete_login(&hash_secret("p"), "alice", "read", "x", exp)
            .await
            .unwrap()
    );
    assert!(
        s.take_pending(&hash_secret("p"), InteractionStage::Login, exp)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.get_token("rt", exp).await.unwrap().is_some());

    let rows_before = s.stats().await.unwrap();
    assert_eq!(
        (
            rows_before.codes,
            rows_before.tokens,
            rows_before.pending,
            rows_before.revoked_families
        ),
        (1, 2, 1, 1)
    );
    let removed = cleanup::run_once(s.as_ref(), exp).await.unwrap();
    assert_eq!(removed, 4);
    let after = s.stats().await.unwrap();
    assert_eq!(
        after,
        StorageStats {
            clients: 1,
            pending: 0,
            codes: 0,
            tokens: 1,
            revoked_families: 0
        }
    );
    assert!(s.get_token("rt", exp).await.unwrap().is_some());
    assert_eq!(cleanup::run_once(s.as_ref(), exp + 100).await.unwrap(), 1);
    assert_eq!(s.stats().await.unwrap().tokens, 0);
}

async fn revoked_family_hides_tokens_stored_later(backend: Backend) {
    let (s, _dir) = store(backend).await;
    s.put_tokens(&[
        token("a1", TokenKind::Access, "fam", NOW + 60),
        token("r1", TokenKind::Refresh, "fam", NOW + 600),
    ])
    .await
    .unwrap();
    s.put_tokens(&[token("other", TokenKind::Access, "fam2", NOW + 60)])
        .await
        .unwrap();
    s.revoke_family("fam", NOW + 1000).await.unwrap();
    assert!(s.get_token("a1", NOW).await.unwrap().is_none());
    assert!(s.get_token("r1", NOW).await.unwrap().is_none());
    assert!(s.get_token("other", NOW).await.unwrap().is_some());
    // A token of the family stored after the revocation (a concurrent issuance) stays invisible.
    s.put_tokens(&[token("late", TokenKind::Refresh, "fam", NOW + 600)])
        .await
        .unwrap();
    assert!(s.get_token("late", NOW).await.unwrap().is_none());
    assert!(!s.rotate_refresh_token("late", NOW).await.unwrap());
    // Revoking twice is harmless and only extends the memory.
    s.revoke_family("fam", NOW + 10).await.unwrap();
    cleanup::run_once(s.as_ref(), NOW + 20).await.unwrap();
    assert_eq!(s.stats().await.unwrap().revoked_families, 1);
}

async fn pending_authorization_is_single_use(backend: Backend) {
    let (s, _dir) = store(backend).await;
    let id = hash_secret("p");
    s.put_pending(&pending("p", NOW + 600)).await.unwrap();
    assert_eq!(
        s.get_pending(&id, NOW).await.unwrap(),
        Some(pending("p", NOW + 600))
    );
    // Not yet at the consent stage.
    assert!(
        s.take_pending(&id, InteractionStage::Consent, NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.complete_login(&id, "alice", "read", &hash_secret("csrf2"), NOW)
            .await
            .unwrap()
    );
    assert!(
        !s.complete_login(&id, "mallory", "read write", "x", NOW)
            .await
            .unwrap()
    );
    let p = s.get_pending(&id, NOW).await.unwrap().unwrap();
    assert_eq!(
        (p.stage, p.subject.as_deref(), p.granted_scope.as_deref()),
        (InteractionStage::Consent, Some("alice"), Some("read"))
    );
    assert_eq!(p.csrf_hash, hash_secret("csrf2"));

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            s.take_pending(&id, InteractionStage::Consent, NOW)
                .await
                .unwrap()
        }));
    }
    let mut taken = 0;
    for t in tasks {
        taken += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(taken, 1);
    assert!(s.get_pending(&id, NOW).await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_memory_path_is_a_private_database() {
    let s = oauth_provider::storage::SqliteStorage::open(":memory:")
        .await
        .unwrap();
    s.put_client(&client("c1")).await.unwrap();
    s.put_code(&code("h", "f", NOW + 60)).await.unwrap();
    assert!(s.consume_code("h", NOW).await.unwrap());
    assert_eq!(s.stats().await.unwrap().codes, 1);
    let other = oauth_provider::storage::SqliteStorage::open(":memory:")
        .await
        .unwrap();
    assert_eq!(other.get_client("c1").await.unwrap(), None);
}
