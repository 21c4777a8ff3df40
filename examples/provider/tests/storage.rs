//! The storage contract, checked directly on both backends (SQLite on a real file): atomic
//! consumption, expiry filtering, cleanup, family revocation, single-use interactions.

mod common;

use std::sync::Arc;

use common::*;
use oauth_provider::cleanup;
use oauth_provider::model::{
    Announcement, AuthMethod, AuthorizationCode, Client, InteractionStage, PendingAuthorization,
    StorageStats, TokenKind, TokenRecord,
};
use oauth_provider::storage::{Admission, PendingCaps, Rotation, Storage};
use oauth_provider::tokens::{hash_secret, random_id};

backend_tests!(
    clients_round_trip_and_upsert_keeps_tokens,
    code_is_consumed_exactly_once_under_concurrency,
    refresh_token_rotates_exactly_once,
    expired_rows_are_never_returned_and_are_purged,
    revoked_family_hides_tokens_stored_later,
    pending_authorization_is_single_use,
    rotation_consumes_and_stores_the_pair_together,
    lost_response_retry_within_grace_replaces_the_unused_successor,
    retry_after_the_successor_was_used_is_refused,
    pending_authorizations_are_capped_per_address_and_in_total,
    unused_anonymous_clients_are_capped_and_purged,
);

/// Caps large enough never to matter.
const NO_CAPS: PendingCaps = PendingCaps {
    per_address: u64::MAX,
    total: u64::MAX,
};

const NOW: i64 = 1_700_000_000;

async fn store(backend: Backend) -> (Arc<dyn Storage>, Scratch) {
    let dir = tempfile::tempdir().unwrap();
    let (storage, database) = open_storage(backend, &dir).await;
    storage.put_client(&client("c1")).await.unwrap();
    (storage, Scratch { dir, database })
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
        dpop_bound_access_tokens: false,
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
        dpop_jkt: None,
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
        dpop_jkt: None,
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
        dpop_jkt: None,
    }
}

/// An access/refresh pair `<prefix>-a` / `<prefix>-r` of `family`.
fn successors(prefix: &str, family: &str) -> Vec<TokenRecord> {
    vec![
        token(&format!("{prefix}-a"), TokenKind::Access, family, NOW + 60),
        token(
            &format!("{prefix}-r"),
            TokenKind::Refresh,
            family,
            NOW + 600,
        ),
    ]
}

async fn put_pending(s: &dyn Storage, p: &PendingAuthorization) {
    let stored = s.put_pending(p, "192.0.2.1", NO_CAPS, NOW).await.unwrap();
    assert_eq!(stored, Admission::Stored);
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
    assert_eq!(
        s.rotate_refresh_token("a", NOW, NOW, &[]).await.unwrap(),
        Rotation::Refused,
        "access tokens do not rotate"
    );
    // Without a grace (retry_since = now), exactly one of concurrent rotations wins.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let pair = successors(&format!("x{i}"), "f");
            s.rotate_refresh_token("r", NOW, NOW, &pair).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap() == Rotation::Rotated);
    }
    assert_eq!(wins, 1);
    assert!(s.get_token("r", NOW).await.unwrap().unwrap().consumed);
    // Exactly one successor pair was stored: the old pair plus one new pair.
    assert_eq!(s.stats().await.unwrap().tokens, 4);
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
    put_pending(s.as_ref(), &pending("p", exp)).await;
    s.revoke_family("f-other", exp, &Announcement::NOTHING)
        .await
        .unwrap();

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
            unused_clients: 0,
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
    s.revoke_family("fam", NOW + 1000, &Announcement::NOTHING)
        .await
        .unwrap();
    assert!(s.get_token("a1", NOW).await.unwrap().is_none());
    assert!(s.get_token("r1", NOW).await.unwrap().is_none());
    assert!(s.get_token("other", NOW).await.unwrap().is_some());
    // A token of the family stored after the revocation (a concurrent issuance) stays invisible.
    s.put_tokens(&[token("late", TokenKind::Refresh, "fam", NOW + 600)])
        .await
        .unwrap();
    assert!(s.get_token("late", NOW).await.unwrap().is_none());
    assert_eq!(
        s.rotate_refresh_token("late", NOW, NOW - 60, &successors("l", "fam"))
            .await
            .unwrap(),
        Rotation::Refused
    );
    // Revoking twice is harmless and only extends the memory.
    s.revoke_family("fam", NOW + 10, &Announcement::NOTHING)
        .await
        .unwrap();
    cleanup::run_once(s.as_ref(), NOW + 20).await.unwrap();
    assert_eq!(s.stats().await.unwrap().revoked_families, 1);
}

async fn pending_authorization_is_single_use(backend: Backend) {
    let (s, _dir) = store(backend).await;
    let id = hash_secret("p");
    put_pending(s.as_ref(), &pending("p", NOW + 600)).await;
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

async fn rotation_consumes_and_stores_the_pair_together(backend: Backend) {
    let (s, _dir) = store(backend).await;
    s.put_tokens(&successors("g0", "f")).await.unwrap();
    let pair = successors("g1", "f");
    assert_eq!(
        s.rotate_refresh_token("g0-r", NOW, NOW, &pair)
            .await
            .unwrap(),
        Rotation::Rotated
    );
    assert!(s.get_token("g0-r", NOW).await.unwrap().unwrap().consumed);
    assert!(s.get_token("g1-a", NOW).await.unwrap().is_some());
    assert!(!s.get_token("g1-r", NOW).await.unwrap().unwrap().consumed);
    // A failure while storing the successors (a duplicate key here, standing in for a crash)
    // leaves the old token unconsumed: the rotation is all or nothing.
    let clash = vec![
        token("g2-a", TokenKind::Access, "f", NOW + 60),
        token("g1-a", TokenKind::Access, "f", NOW + 60),
    ];
    match s.rotate_refresh_token("g1-r", NOW, NOW, &clash).await {
        Err(_) => {
            assert!(!s.get_token("g1-r", NOW).await.unwrap().unwrap().consumed);
            assert!(s.get_token("g2-a", NOW).await.unwrap().is_none());
        }
        // The memory backend replaces rows by key instead of failing; nothing to roll back.
        Ok(outcome) => assert_eq!(outcome, Rotation::Rotated),
    }
}

async fn lost_response_retry_within_grace_replaces_the_unused_successor(backend: Backend) {
    let (s, _dir) = store(backend).await;
    s.put_tokens(&successors("g0", "f")).await.unwrap();
    let first = successors("g1", "f");
    assert_eq!(
        s.rotate_refresh_token("g0-r", NOW, NOW - 10, &first)
            .await
            .unwrap(),
        Rotation::Rotated
    );
    // The response was lost; the client presents g0-r again 3 s later, within a 10 s grace.
    let retry = successors("g1b", "f");
    assert_eq!(
        s.rotate_refresh_token("g0-r", NOW + 3, NOW + 3 - 10, &retry)
            .await
            .unwrap(),
        Rotation::Replaced
    );
    // The unused successor pair is dead: its access token is gone, its refresh token consumed.
    assert!(s.get_token("g1-a", NOW + 3).await.unwrap().is_none());
    assert!(
        s.get_token("g1-r", NOW + 3)
            .await
            .unwrap()
            .unwrap()
            .consumed
    );
    assert!(s.get_token("g1b-a", NOW + 3).await.unwrap().is_some());
    // Presenting the dead successor is reuse: refused.
    assert_eq!(
        s.rotate_refresh_token("g1-r", NOW + 4, NOW + 4 - 10, &successors("z", "f"))
            .await
            .unwrap(),
        Rotation::Refused
    );
    // Outside the grace the old token is refused.
    assert_eq!(
        s.rotate_refresh_token("g0-r", NOW + 11, NOW + 11 - 10, &successors("y", "f"))
            .await
            .unwrap(),
        Rotation::Refused
    );
    // The retry's successor rotates normally.
    assert_eq!(
        s.rotate_refresh_token("g1b-r", NOW + 12, NOW + 12 - 10, &successors("g2", "f"))
            .await
            .unwrap(),
        Rotation::Rotated
    );
}

async fn retry_after_the_successor_was_used_is_refused(backend: Backend) {
    let (s, _dir) = store(backend).await;
    s.put_tokens(&successors("g0", "f")).await.unwrap();
    let grace_start = NOW - 10;
    let rotate = |hash: &'static str, prefix: &'static str| {
        let s = s.clone();
        async move {
            s.rotate_refresh_token(hash, NOW, grace_start, &successors(prefix, "f"))
                .await
                .unwrap()
        }
    };
    assert_eq!(rotate("g0-r", "g1").await, Rotation::Rotated);
    assert_eq!(rotate("g1-r", "g2").await, Rotation::Rotated);
    // g0-r is within the grace, but its successor was used: that is theft, not a lost response.
    assert_eq!(rotate("g0-r", "evil").await, Rotation::Refused);
    assert!(s.get_token("evil-a", NOW).await.unwrap().is_none());
    assert!(s.get_token("g2-a", NOW).await.unwrap().is_some());
}

async fn pending_authorizations_are_capped_per_address_and_in_total(backend: Backend) {
    let (s, _dir) = store(backend).await;
    let caps = PendingCaps {
        per_address: 3,
        total: 5,
    };
    let put = |id: String, address: &'static str, expires_at: i64| {
        let s = s.clone();
        async move {
            s.put_pending(&pending(&id, expires_at), address, caps, NOW)
                .await
                .unwrap()
        }
    };
    // An expired record does not count.
    assert_eq!(put("old".into(), "a", NOW).await, Admission::Stored);
    for i in 0..3 {
        assert_eq!(
            put(format!("a{i}"), "a", NOW + 600).await,
            Admission::Stored
        );
    }
    assert_eq!(
        put("a3".into(), "a", NOW + 600).await,
        Admission::AddressFull
    );
    assert_eq!(put("b0".into(), "b", NOW + 600).await, Admission::Stored);
    assert_eq!(put("c0".into(), "c", NOW + 600).await, Admission::Stored);
    assert_eq!(put("d0".into(), "d", NOW + 600).await, Admission::TotalFull);
    assert!(
        s.get_pending(&hash_secret("d0"), NOW)
            .await
            .unwrap()
            .is_none()
    );
    // Concurrent inserts cannot overshoot the cap.
    let mut tasks = Vec::new();
    for i in 0..20 {
        tasks.push(tokio::spawn(put(format!("e{i}"), "e", NOW + 600)));
    }
    for t in tasks {
        assert_ne!(t.await.unwrap(), Admission::Stored);
    }
    assert_eq!(s.stats().await.unwrap().pending, 6);
}

async fn unused_anonymous_clients_are_capped_and_purged(backend: Backend) {
    let (s, _dir) = store(backend).await;
    let ttl_end = NOW + 3600;
    for id in ["anon1", "anon2"] {
        let admitted = s
            .register_client(&client(id), ttl_end, 2, NOW)
            .await
            .unwrap();
        assert_eq!(admitted, Admission::Stored);
    }
    let third = s
        .register_client(&client("anon3"), ttl_end, 2, NOW)
        .await
        .unwrap();
    assert_eq!(third, Admission::TotalFull);
    assert!(s.get_client("anon3").await.unwrap().is_none());
    // anon1 gets used (a user approved it); anon2 never does.
    s.mark_client_used("anon1").await.unwrap();
    put_pending(s.as_ref(), &{
        let mut p = pending("p2", ttl_end + 600);
        p.client_id = "anon2".into();
        p
    })
    .await;
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.clients, stats.unused_clients), (3, 1));
    // Using a client frees its place under the cap.
    let admitted = s
        .register_client(&client("anon3"), ttl_end, 2, NOW)
        .await
        .unwrap();
    assert_eq!(admitted, Admission::Stored);

    // Nothing expires before the deadline; at the deadline the unused ones go (with their
    // pending authorizations), the used one and the configured one stay.
    assert_eq!(cleanup::run_once(s.as_ref(), ttl_end - 1).await.unwrap(), 0);
    assert_eq!(cleanup::run_once(s.as_ref(), ttl_end).await.unwrap(), 3);
    assert!(s.get_client("anon2").await.unwrap().is_none());
    assert!(s.get_client("anon3").await.unwrap().is_none());
    assert!(s.get_client("anon1").await.unwrap().is_some());
    assert!(s.get_client("c1").await.unwrap().is_some());
    let stats = s.stats().await.unwrap();
    assert_eq!(
        (stats.clients, stats.unused_clients, stats.pending),
        (2, 0, 0)
    );
}
