//! Token, introspection, revocation and registration endpoints over HTTP: every error path with
//! its exact status and error code, proof that failed requests change nothing, code replay and
//! concurrent redemption, refresh rotation with family revocation. Runs against both backends.

mod common;

use std::collections::HashSet;

use common::*;
use oauth_provider::{DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET};
use reqwest::StatusCode;
use serde_json::json;

backend_tests!(
    token_errors_change_nothing,
    code_replay_revokes_issued_tokens,
    concurrent_redemptions_yield_one_token,
    refresh_rotation_and_reuse_detection,
    refresh_errors_change_nothing,
    client_credentials_grant,
    introspection_requires_confidential_client,
    revocation,
    registration,
);

/// A token request form, the expected status and the expected `error`.
type Case<'a> = (Vec<(&'a str, &'a str)>, StatusCode, &'a str);

async fn token_errors_change_nothing(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let other_id = env.public_client().await;
    let (conf_id, conf_secret) = env.confidential_client(json!(["authorization_code"])).await;
    let req = AuthRequest::new(&client_id);
    let code = env.code(&req).await;
    let before = env.storage().stats().await.unwrap();

    let with = |name: &'static str, value: Option<&'static str>| -> Vec<(&str, &str)> {
        let mut f: Vec<_> = req
            .redeem_form(&code)
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect();
        if let Some(v) = value {
            f.push((name, v));
        }
        f
    };
    let bad = StatusCode::BAD_REQUEST;
    let cases: Vec<Case> = vec![
        (with("grant_type", None), bad, "invalid_request"),
        (
            with("grant_type", Some("password")),
            bad,
            "unsupported_grant_type",
        ),
        (with("code", None), bad, "invalid_request"),
        (with("code", Some("ac_unknown")), bad, "invalid_grant"),
        (with("redirect_uri", None), bad, "invalid_request"),
        (
            with("redirect_uri", Some("http://127.0.0.1:51005/cb")),
            bad,
            "invalid_grant",
        ),
        (with("code_verifier", None), bad, "invalid_request"),
        (
            with(
                "code_verifier",
                Some("a-wrong-verifier-that-is-long-enough-to-be-valid-0000"),
            ),
            bad,
            "invalid_grant",
        ),
        (with("code_verifier", Some("short")), bad, "invalid_grant"),
        (
            with("resource", Some("https://other.example.com/")),
            bad,
            "invalid_target",
        ),
        (
            with("resource", Some("https://x.example/#f")),
            bad,
            "invalid_target",
        ),
        (
            with("client_id", None),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            with("client_id", Some("no-such-client")),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            with("client_id", Some(other_id.clone().leak())),
            bad,
            "invalid_grant",
        ),
        (
            {
                let mut f = req.redeem_form(&code);
                f.push(("code_verifier", "x"));
                f
            },
            bad,
            "invalid_request",
        ),
        (
            {
                let mut f = with("client_id", Some(client_id.clone().leak()));
                f.push(("client_secret", "not-a-public-client-thing"));
                f
            },
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            with("grant_type", Some("client_credentials")),
            bad,
            "unauthorized_client",
        ),
    ];
    for (form, status, error) in &cases {
        let result = env.token(form).await;
        assert_error(&result, *status, error);
    }
    // Basic auth with a wrong secret: 401 with a Basic challenge.
    let resp = env
        .http
        .post(env.url("/token"))
        .basic_auth(&conf_id, Some("wrong"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_error(
        &json_of(resp).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    // The right confidential client, but the code is not its own.
    let mut form = with("client_id", None);
    form.retain(|(k, _)| *k != "client_id");
    assert_error(
        &env.token_basic(&conf_id, &conf_secret, &form).await,
        bad,
        "invalid_grant",
    );
    // Not a form body.
    let resp = env
        .http
        .post(env.url("/token"))
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_error(&json_of(resp).await, bad, "invalid_request");

    assert_eq!(
        env.storage().stats().await.unwrap(),
        before,
        "a failed request changed state"
    );
    let (status, body) = env.token(&req.redeem_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn code_replay_revokes_issued_tokens(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let code = env.code(&req).await;
    let (status, tokens) = env.token(&req.redeem_form(&code)).await;
    assert_eq!(status, StatusCode::OK);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    env.assert_active(access, true).await;

    assert_error(
        &env.token(&req.redeem_form(&code)).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    env.assert_active(access, false).await;
    env.assert_refresh_usable(refresh, false).await;
    let refreshed = env
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &client_id),
        ])
        .await;
    assert_error(&refreshed, StatusCode::BAD_REQUEST, "invalid_grant");
}

async fn concurrent_redemptions_yield_one_token(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let code = env.code(&req).await;
    let form: Vec<(String, String)> = req
        .redeem_form(&code)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let url = env.url("/token");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let http = env.http.clone();
        let url = url.clone();
        let form = form.clone();
        tasks.push(tokio::spawn(async move {
            json_of(http.post(url).form(&form).send().await.unwrap()).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(
                (status, body["error"].clone()),
                (StatusCode::BAD_REQUEST, json!("invalid_grant"))
            );
        }
    }
    assert_eq!(ok, 1, "exactly one redemption must succeed");
}

async fn refresh_rotation_and_reuse_detection(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let first = env.tokens(&req).await;
    let rt1 = first["refresh_token"].as_str().unwrap();
    let at1 = first["access_token"].as_str().unwrap();

    let (status, second) = env.refresh(&client_id, rt1, &[]).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap();
    let at2 = second["access_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);
    assert_eq!(second["scope"], json!("read write"));
    env.assert_refresh_usable(rt1, false).await; // rotated
    env.assert_refresh_usable(rt2, true).await;
    env.assert_active(at2, true).await;
    let info = env.introspect(at2).await;
    assert_eq!(
        (info["aud"].clone(), info["username"].clone()),
        (json!(RESOURCE), json!("alice"))
    );

    // A narrower access token; the refresh token keeps the full grant.
    let (status, third) = env
        .refresh(
            &client_id,
            rt2,
            &[("scope", "read"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{third}");
    assert_eq!(third["scope"], json!("read"));
    let rt3 = third["refresh_token"].as_str().unwrap();
    let at3 = third["access_token"].as_str().unwrap();
    assert_eq!(env.stored_token(rt3).await.unwrap().scope, "read write");

    // Reusing a rotated refresh token revokes the whole family.
    assert_error(
        &env.refresh(&client_id, rt1, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    for token in [at1, at2, at3] {
        env.assert_active(token, false).await;
    }
    env.assert_refresh_usable(rt3, false).await;
    assert_error(
        &env.refresh(&client_id, rt3, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

async fn refresh_errors_change_nothing(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let other_id = env.public_client().await;
    let tokens = env.tokens(&AuthRequest::new(&client_id)).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let before = env.storage().stats().await.unwrap();
    let bad = StatusCode::BAD_REQUEST;
    assert_error(
        &env.refresh(&client_id, rt, &[("scope", "read write admin")])
            .await,
        bad,
        "invalid_scope",
    );
    assert_error(
        &env.refresh(&client_id, rt, &[("scope", "bad\\scope")])
            .await,
        bad,
        "invalid_scope",
    );
    assert_error(
        &env.refresh(&client_id, rt, &[("resource", "https://other.example/")])
            .await,
        bad,
        "invalid_target",
    );
    assert_error(&env.refresh(&other_id, rt, &[]).await, bad, "invalid_grant");
    assert_error(
        &env.refresh(&client_id, "rt_unknown", &[]).await,
        bad,
        "invalid_grant",
    );
    // An access token is not a refresh token.
    let at = tokens["access_token"].as_str().unwrap();
    assert_error(
        &env.refresh(&client_id, at, &[]).await,
        bad,
        "invalid_grant",
    );
    assert_error(
        &env.token(&[("grant_type", "refresh_token"), ("client_id", &client_id)])
            .await,
        bad,
        "invalid_request",
    );
    // A client without the refresh_token grant.
    let (status, body) = env
        .register(json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let no_refresh = body["client_id"].as_str().unwrap();
    assert_error(
        &env.refresh(no_refresh, rt, &[]).await,
        bad,
        "unauthorized_client",
    );

    assert_eq!(env.storage().stats().await.unwrap().tokens, before.tokens);
    env.assert_refresh_usable(rt, true).await;
    let (status, _) = env.refresh(&client_id, rt, &[]).await;
    assert_eq!(status, StatusCode::OK);
}

async fn client_credentials_grant(backend: Backend) {
    let env = Env::start(backend).await;
    let (id, secret) = env.confidential_client(json!(["client_credentials"])).await;
    let (status, body) = env
        .token_basic(
            &id,
            &secret,
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none());
    let info = env.introspect(body["access_token"].as_str().unwrap()).await;
    assert_eq!(info["sub"], json!(id));
    assert_eq!(info["client_id"], json!(id));
    assert!(info.get("username").is_none());
    assert_eq!(info["scope"], json!("read"));

    // client_secret_post works too; the default scope is the client's.
    let (status, body) = env
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], json!("read write"));
    assert_eq!(
        env.introspect(body["access_token"].as_str().unwrap()).await["aud"],
        json!(RESOURCE)
    );

    let before = env.storage().stats().await.unwrap();
    let bad = StatusCode::BAD_REQUEST;
    assert_error(
        &env.token_basic(
            &id,
            &secret,
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .await,
        bad,
        "invalid_scope",
    );
    assert_error(
        &env.token_basic(&id, "wrong", &[("grant_type", "client_credentials")])
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert_error(
        &env.token(&[("grant_type", "client_credentials"), ("client_id", &id)])
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    // Two authentication methods at once.
    assert_error(
        &env.token_basic(
            &id,
            &secret,
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
            ],
        )
        .await,
        bad,
        "invalid_request",
    );
    assert_error(
        &env.token_basic(
            &id,
            &secret,
            &[("grant_type", "authorization_code"), ("code", "x")],
        )
        .await,
        bad,
        "unauthorized_client",
    );
    assert_eq!(env.storage().stats().await.unwrap(), before);
}

async fn introspection_requires_confidential_client(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let tokens = env.tokens(&AuthRequest::new(&client_id)).await;
    let at = tokens["access_token"].as_str().unwrap();
    let url = env.url("/introspect");

    let attempts = [
        env.http.post(&url).form(&[("token", at)]),
        env.http
            .post(&url)
            .form(&[("token", at), ("client_id", client_id.as_str())]),
        env.http
            .post(&url)
            .basic_auth(DEMO_RESOURCE_SERVER_ID, Some("wrong"))
            .form(&[("token", at)]),
        env.http
            .post(&url)
            .basic_auth("nobody", Some("x"))
            .form(&[("token", at)]),
        env.http
            .post(&url)
            .header("authorization", "Bearer abc")
            .form(&[("token", at)]),
    ];
    for attempt in attempts {
        let resp = attempt.send().await.unwrap();
        assert!(resp.headers().contains_key("www-authenticate"));
        assert_error(
            &json_of(resp).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
    }
    // client_secret_post is accepted.
    let resp = env
        .http
        .post(&url)
        .form(&[
            ("token", at),
            ("client_id", DEMO_RESOURCE_SERVER_ID),
            ("client_secret", DEMO_RESOURCE_SERVER_SECRET),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    assert_eq!(
        (status, body["active"].clone()),
        (StatusCode::OK, json!(true))
    );
    // Missing token.
    let resp = env
        .http
        .post(&url)
        .basic_auth(DEMO_RESOURCE_SERVER_ID, Some(DEMO_RESOURCE_SERVER_SECRET))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_error(
        &json_of(resp).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // Unknown tokens: exactly {"active":false}.
    for token in ["at_unknown", "", "rt_x"] {
        if !token.is_empty() {
            env.assert_active(token, false).await;
        }
    }
}

async fn revocation(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let other_id = env.public_client().await;
    let revoke = |client: String, token: String| {
        let http = env.http.clone();
        let url = env.url("/revoke");
        async move {
            let resp = http
                .post(url)
                .form(&[("token", token.as_str()), ("client_id", client.as_str())])
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.headers().get("cache-control").cloned())
        }
    };
    // Unknown token: 200.
    assert_eq!(
        revoke(client_id.clone(), "at_unknown".into()).await.0,
        StatusCode::OK
    );

    // Revoking either token of a pair revokes both; another client's revocation is a no-op.
    for revoked in ["access_token", "refresh_token"] {
        let t = env.tokens(&AuthRequest::new(&client_id)).await;
        let (at, rt) = (
            t["access_token"].as_str().unwrap(),
            t["refresh_token"].as_str().unwrap(),
        );
        let target = t[revoked].as_str().unwrap().to_owned();
        assert_eq!(
            revoke(other_id.clone(), target.clone()).await.0,
            StatusCode::OK
        );
        env.assert_active(at, true).await;
        env.assert_refresh_usable(rt, true).await;
        let (status, cache) = revoke(client_id.clone(), target).await;
        assert_eq!(status, StatusCode::OK, "{revoked}");
        assert_eq!(cache.unwrap(), "no-store", "{revoked}");
        env.assert_active(at, false).await;
        env.assert_refresh_usable(rt, false).await;
        assert_error(
            &env.refresh(&client_id, rt, &[]).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );
    }

    // Errors.
    let url = env.url("/revoke");
    let resp = env
        .http
        .post(&url)
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_error(
        &json_of(resp).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let resp = env
        .http
        .post(&url)
        .form(&[("token", "x"), ("client_id", "nobody")])
        .send()
        .await
        .unwrap();
    assert_error(
        &json_of(resp).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let resp = env
        .http
        .post(&url)
        .form(&[("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_error(
        &json_of(resp).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // A confidential client authenticates with its secret.
    let (conf, secret) = env.confidential_client(json!(["client_credentials"])).await;
    let (_, t) = env
        .token_basic(&conf, &secret, &[("grant_type", "client_credentials")])
        .await;
    let at = t["access_token"].as_str().unwrap();
    let resp = env
        .http
        .post(&url)
        .basic_auth(&conf, Some("wrong"))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    env.assert_active(at, true).await;
    let resp = env
        .http
        .post(&url)
        .basic_auth(&conf, Some(&secret))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    env.assert_active(at, false).await;
}

async fn registration(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, body) = env
        .register(json!({
            "client_name": "Native app",
            "redirect_uris": ["http://127.0.0.1/cb", "com.example.app:/oauth", "https://app.example/cb"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "read",
            "logo_uri": "ignored"
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("client_secret").is_none());
    assert_eq!(body["token_endpoint_auth_method"], json!("none"));
    assert_eq!(body["response_types"], json!(["code"]));
    assert_eq!(body["scope"], json!("read"));
    assert!(body["client_id_issued_at"].is_i64());

    let (status, body) = env
        .register(json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "client_secret_post"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["client_secret_expires_at"], json!(0));
    assert_eq!(body["scope"], json!("read write admin ssf"));
    assert_eq!(body["grant_types"], json!(["authorization_code"]));
    let secret = body["client_secret"].as_str().unwrap();
    let stored = env
        .storage()
        .get_client(body["client_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        stored.secret_hash.as_deref(),
        Some(secret),
        "secret stored in the clear"
    );
    assert!(stored.secret_hash.is_some());

    let before = env.storage().stats().await.unwrap();
    let cases = [
        (
            json!({"redirect_uris": ["http://app.example/cb"], "token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#f"], "token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["/relative"], "token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"], "token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT_URI], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT_URI], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT_URI], "scope": "read superuser"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": REDIRECT_URI}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT_URI], "client_name": "a\u{0}b"}),
            "invalid_client_metadata",
        ),
    ];
    for (metadata, error) in cases {
        assert_error(
            &env.register(metadata.clone()).await,
            StatusCode::BAD_REQUEST,
            error,
        );
    }
    let resp = env
        .http
        .post(env.url("/register"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_error(
        &json_of(resp).await,
        StatusCode::BAD_REQUEST,
        "invalid_client_metadata",
    );
    let resp = env
        .http
        .post(env.url("/register"))
        .form(&[("redirect_uris", REDIRECT_URI)])
        .send()
        .await
        .unwrap();
    assert_error(
        &json_of(resp).await,
        StatusCode::BAD_REQUEST,
        "invalid_client_metadata",
    );
    // Bodies are bounded.
    let huge = json!({"redirect_uris": [REDIRECT_URI], "client_name": "x".repeat(64 * 1024)});
    let resp = env
        .http
        .post(env.url("/register"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(env.storage().stats().await.unwrap(), before);

    // Distinct ids.
    let mut ids = HashSet::new();
    for _ in 0..5 {
        ids.insert(env.public_client().await);
    }
    assert_eq!(ids.len(), 5);
}
