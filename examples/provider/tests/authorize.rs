//! The authorization endpoint over HTTP: the complete code + PKCE flow through the real login and
//! consent forms, its error paths, and CSRF / browser binding. Runs against both backends.

mod common;

use common::*;
use oauth_provider::DEMO_PUBLIC_CLIENT_ID;
use reqwest::StatusCode;
use serde_json::json;

backend_tests!(
    metadata_document,
    full_code_flow,
    failed_login_changes_nothing,
    deny_redirects_access_denied,
    granted_scope_is_requested_and_users_scopes,
    untrusted_requests_get_an_error_page,
    trusted_errors_are_redirected,
    loopback_port_may_vary,
    forms_require_csrf_token_and_browser_cookie,
    consent_is_single_use,
    default_scope_is_the_clients_scope,
);

async fn metadata_document(backend: Backend) {
    let env = Env::start(backend).await;
    let resp = env
        .http
        .get(env.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    let (status, doc) = json_of(resp).await;
    assert_eq!(status, StatusCode::OK);
    let issuer = env.issuer.as_str();
    assert_eq!(doc["issuer"], json!(issuer));
    assert_eq!(
        doc["authorization_endpoint"],
        json!(format!("{issuer}/authorize"))
    );
    assert_eq!(doc["token_endpoint"], json!(format!("{issuer}/token")));
    assert_eq!(
        doc["introspection_endpoint"],
        json!(format!("{issuer}/introspect"))
    );
    assert_eq!(
        doc["revocation_endpoint"],
        json!(format!("{issuer}/revoke"))
    );
    assert_eq!(
        doc["registration_endpoint"],
        json!(format!("{issuer}/register"))
    );
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(
        doc["scopes_supported"],
        json!(["read", "write", "admin", "ssf"])
    );
    assert_eq!(
        doc["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert!(doc["introspection_endpoint_auth_methods_supported"].is_array());
    assert!(doc["revocation_endpoint_auth_methods_supported"].is_array());
    assert!(
        doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("refresh_token"))
    );
}

async fn full_code_flow(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);

    let resp = env.authorize(&req.query()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("oauth_browser=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("Test app") && page.contains(RESOURCE),
        "{page}"
    );

    let resp = env.login(&page, "alice", "password123").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let consent = resp.text().await.unwrap();
    assert!(
        consent.contains("alice") && consent.contains("<code>write</code>"),
        "{consent}"
    );
    // The CSRF token is rotated at login.
    assert_ne!(hidden(&consent, "csrf_token"), hidden(&page, "csrf_token"));

    let resp = env.decide(&consent, "approve").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let params = redirect_params(&resp, REDIRECT_URI_WITH_PORT);
    assert_eq!(params["state"], req.state);
    assert_eq!(params["iss"], env.issuer.as_str());
    let code = &params["code"];

    let resp = env
        .http
        .post(env.url("/token"))
        .form(&req.redeem_form(code))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let (status, tokens) = json_of(resp).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], json!("Bearer"));
    assert_eq!(tokens["expires_in"], json!(3600));
    assert_eq!(tokens["scope"], json!("read write"));
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let info = env.introspect(access).await;
    assert_eq!(info["active"], json!(true));
    assert_eq!(info["scope"], json!("read write"));
    assert_eq!(info["client_id"], json!(client_id));
    assert_eq!(info["username"], json!("alice"));
    assert_eq!(info["sub"], json!("alice"));
    assert_eq!(info["token_type"], json!("Bearer"));
    assert_eq!(info["iss"], json!(env.issuer.as_str()));
    assert_eq!(info["aud"], json!(RESOURCE));
    assert!(info["jti"].is_string());
    let (iat, exp) = (info["iat"].as_i64().unwrap(), info["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 3600);
    assert_eq!(info["nbf"], json!(iat));

    // A refresh token is not a bearer credential: never active at introspection.
    env.assert_active(refresh, false).await;
    env.assert_refresh_usable(refresh, true).await;

    // Nothing secret is stored in the clear.
    let stats = env.storage().stats().await.unwrap();
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.codes, 1);
    assert_eq!(stats.tokens, 2);
}

async fn failed_login_changes_nothing(backend: Backend) {
    let env = Env::start(backend).await;
    let req = AuthRequest::new(DEMO_PUBLIC_CLIENT_ID);
    let req = AuthRequest {
        redirect_uri: "http://127.0.0.1:3000/callback".to_owned(),
        ..req
    };
    let page = env.authorize(&req.query()).await.text().await.unwrap();
    let before = env.storage().stats().await.unwrap();
    for (user, password) in [("alice", "wrong"), ("nobody", "password123"), ("", "")] {
        let resp = env.login(&page, user, password).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let again = resp.text().await.unwrap();
        assert!(again.contains("Invalid username or password."), "{again}");
        // Same interaction, same CSRF token.
        assert_eq!(hidden(&again, "csrf_token"), hidden(&page, "csrf_token"));
        assert_eq!(hidden(&again, "request_id"), hidden(&page, "request_id"));
    }
    assert_eq!(env.storage().stats().await.unwrap(), before);
    // The original form still works.
    let consent = env
        .login(&page, "alice", "password123")
        .await
        .text()
        .await
        .unwrap();
    let resp = env.decide(&consent, "approve").await;
    assert!(redirect_params(&resp, &req.redirect_uri).contains_key("code"));
}

async fn deny_redirects_access_denied(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let page = env.authorize(&req.query()).await.text().await.unwrap();
    let consent = env
        .login(&page, "alice", "password123")
        .await
        .text()
        .await
        .unwrap();
    let resp = env.decide(&consent, "deny").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let params = redirect_params(&resp, &req.redirect_uri);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], req.state);
    assert_eq!(params["iss"], env.issuer.as_str());
    assert!(!params.contains_key("code"));
    assert_eq!(env.storage().stats().await.unwrap().codes, 0);
}

async fn granted_scope_is_requested_and_users_scopes(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    // bob holds only `read`.
    let req = AuthRequest::new(&client_id);
    let params = env.authorize_and_approve(&req, "bob", "secret456").await;
    let (status, tokens) = env.token(&req.redeem_form(&params["code"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["scope"], json!("read"));

    // bob asking only for what he lacks gets access_denied after login.
    let mut req = AuthRequest::new(&client_id);
    req.scope = Some("write".to_owned());
    let page = env.authorize(&req.query()).await.text().await.unwrap();
    let resp = env.login(&page, "bob", "secret456").await;
    let params = redirect_params(&resp, &req.redirect_uri);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], req.state);
}

async fn untrusted_requests_get_an_error_page(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        req.query_with("client_id", None),
        req.query_with("client_id", Some("unknown-client")),
        req.query_with("redirect_uri", None),
        req.query_with("redirect_uri", Some("https://evil.example/cb")),
        req.query_with("redirect_uri", Some("http://127.0.0.1:51004/other")),
        req.query_with("redirect_uri", Some("http://localhost:51004/cb")),
        req.query_with("redirect_uri", Some("http://127.0.0.1:51004/cb#frag")),
        {
            let mut q = req.query();
            q.push(("client_id", "again"));
            q
        },
        {
            let mut q = req.query();
            q.push(("redirect_uri", REDIRECT_URI));
            q
        },
    ];
    for query in cases {
        let resp = env.authorize(&query).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query:?}");
        assert!(resp.headers().get("location").is_none());
        assert!(resp.text().await.unwrap().contains("Authorization error"));
    }
    assert_eq!(env.storage().stats().await.unwrap().pending, 0);
}

async fn trusted_errors_are_redirected(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let repeated_scope = {
        let mut q = req.query();
        q.push(("scope", "read"));
        q
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (req.query_with("response_type", None), "invalid_request"),
        (
            req.query_with("response_type", Some("token")),
            "unsupported_response_type",
        ),
        (req.query_with("code_challenge", None), "invalid_request"),
        (
            req.query_with("code_challenge_method", None),
            "invalid_request",
        ),
        (
            req.query_with("code_challenge_method", Some("plain")),
            "invalid_request",
        ),
        (
            req.query_with("code_challenge", Some("too-short")),
            "invalid_request",
        ),
        (
            req.query_with("scope", Some("read delete")),
            "invalid_scope",
        ),
        (req.query_with("scope", Some("read\"")), "invalid_scope"),
        (
            req.query_with("resource", Some("https://mcp.example.com/#frag")),
            "invalid_target",
        ),
        (
            req.query_with("resource", Some("not-a-uri")),
            "invalid_target",
        ),
        (repeated_scope, "invalid_request"),
    ];
    for (query, error) in cases {
        let resp = env.authorize(&query).await;
        assert_eq!(resp.status(), StatusCode::FOUND, "{query:?}");
        let params = redirect_params(&resp, &req.redirect_uri);
        assert_eq!(params["error"], error, "{query:?}");
        assert_eq!(params["state"], req.state);
        assert_eq!(params["iss"], env.issuer.as_str());
    }
    // A client that may only request `read` cannot ask for `admin`.
    let (_, body) = env
        .register(json!({
            "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "scope": "read"
        }))
        .await;
    let narrow = AuthRequest::new(body["client_id"].as_str().unwrap());
    let resp = env
        .authorize(&narrow.query_with("scope", Some("admin")))
        .await;
    assert_eq!(
        redirect_params(&resp, &narrow.redirect_uri)["error"],
        "invalid_scope"
    );
    // A client without the authorization_code grant.
    let (cc_id, _) = env.confidential_client(json!(["client_credentials"])).await;
    let resp = env.authorize(&AuthRequest::new(&cc_id).query()).await;
    // Its redirect URI is registered, so the error is redirected.
    assert_eq!(
        redirect_params(&resp, REDIRECT_URI_WITH_PORT)["error"],
        "unauthorized_client"
    );
    assert_eq!(env.storage().stats().await.unwrap().pending, 0);
}

async fn loopback_port_may_vary(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    for uri in [
        "http://127.0.0.1/cb",
        "http://127.0.0.1:8080/cb",
        "http://127.0.0.1:65000/cb",
    ] {
        let resp = env
            .authorize(&req.query_with("redirect_uri", Some(uri)))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
    }
    // The code is bound to the exact URI used, port included.
    let mut req = AuthRequest::new(&client_id);
    req.redirect_uri = "http://127.0.0.1:8080/cb".to_owned();
    let code = env.code(&req).await;
    let mut form = req.redeem_form(&code);
    form.retain(|(k, _)| *k != "redirect_uri");
    form.push(("redirect_uri", "http://127.0.0.1:8081/cb"));
    assert_error(
        &env.token(&form).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    let (status, _) = env.token(&req.redeem_form(&code)).await;
    assert_eq!(status, StatusCode::OK);
}

async fn forms_require_csrf_token_and_browser_cookie(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let page = env.authorize(&req.query()).await.text().await.unwrap();
    let request_id = hidden(&page, "request_id");
    let csrf = hidden(&page, "csrf_token");
    let before = env.storage().stats().await.unwrap();

    let attempts: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("request_id", &request_id),
            ("username", "alice"),
            ("password", "password123"),
        ],
        vec![
            ("request_id", &request_id),
            ("csrf_token", "forged"),
            ("username", "alice"),
            ("password", "password123"),
        ],
        vec![
            ("request_id", "unknown"),
            ("csrf_token", &csrf),
            ("username", "alice"),
            ("password", "password123"),
        ],
    ];
    for form in attempts {
        let resp = env.post_form(&form).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
    // Right token, but another browser (no binding cookie): refused.
    let resp = env
        .other_browser()
        .post(env.url("/authorize"))
        .form(&[
            ("request_id", request_id.as_str()),
            ("csrf_token", &csrf),
            ("username", "alice"),
            ("password", "password123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Not a form at all.
    let resp = env
        .http
        .post(env.url("/authorize"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(env.storage().stats().await.unwrap(), before);

    // The genuine submission still works; afterwards the login form cannot be replayed.
    let consent = env
        .login(&page, "alice", "password123")
        .await
        .text()
        .await
        .unwrap();
    assert!(consent.contains("Authorize access"));
    let resp = env.login(&page, "alice", "password123").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Consent with the login-stage token is refused too.
    let resp = env
        .post_form(&[
            ("request_id", &request_id),
            ("csrf_token", &csrf),
            ("decision", "approve"),
        ])
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = env.decide(&consent, "approve").await;
    assert!(redirect_params(&resp, &req.redirect_uri).contains_key("code"));
}

async fn consent_is_single_use(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let page = env.authorize(&req.query()).await.text().await.unwrap();
    let consent = env
        .login(&page, "alice", "password123")
        .await
        .text()
        .await
        .unwrap();
    let resp = env.decide(&consent, "maybe").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let first = env.decide(&consent, "approve").await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let second = env.decide(&consent, "approve").await;
    assert_eq!(second.status(), StatusCode::BAD_REQUEST);
    assert_eq!(env.storage().stats().await.unwrap().codes, 1);
}

async fn default_scope_is_the_clients_scope(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, body) = env
        .register(json!({
            "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "scope": "read write"
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut req = AuthRequest::new(body["client_id"].as_str().unwrap());
    req.scope = None;
    let tokens = env.tokens(&req).await;
    assert_eq!(tokens["scope"], json!("read write"));
    // No refresh_token grant registered: no refresh token.
    assert!(tokens.get("refresh_token").is_none());
}
