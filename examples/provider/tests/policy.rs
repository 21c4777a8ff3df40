//! Who may get which token: open registration limited to the authorization code grant,
//! `client_credentials` only with the initial access token and within the registrable scopes,
//! tokens only for known resources, introspection only for resource servers, refresh tokens never
//! active at introspection, code binding checked before replay detection, blank scopes refused.
//! One test per attack, on both backends.

mod common;

use common::*;
use oauth_provider::model::{AuthMethod, Client};
use oauth_provider::tokens::hash_secret;
use oauth_provider::{Config, DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(
    anonymous_registration_cannot_create_client_credentials_clients,
    client_credentials_registration_needs_the_right_initial_access_token,
    wrong_initial_access_token_is_refused_whatever_is_requested,
    anonymous_code_client_cannot_use_client_credentials,
    self_granted_scope_is_bounded_by_the_registrable_scopes,
    blank_scope_is_invalid_scope_everywhere,
    unknown_resource_is_invalid_target_for_every_grant,
    several_resource_parameters_are_invalid_target,
    resource_not_allowed_for_the_client_is_invalid_target,
    only_resource_servers_introspect_other_clients_tokens,
    refresh_tokens_never_introspect_as_active,
    code_presented_by_another_client_leaves_the_owners_tokens_alone,
    configured_clients_come_from_the_clients_file,
);

const BAD: StatusCode = StatusCode::BAD_REQUEST;

fn client_credentials_metadata(scope: Option<&str>) -> Value {
    let mut metadata = json!({
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["client_credentials"],
    });
    if let Some(scope) = scope {
        metadata["scope"] = json!(scope);
    }
    metadata
}

async fn anonymous_registration_cannot_create_client_credentials_clients(backend: Backend) {
    // With and without an initial access token configured, an anonymous caller cannot register a
    // client that acts on its own authority.
    for config in [test_config(), Config::demo()] {
        let env = Env::start_with(backend, config).await;
        let before = env.storage().stats().await.unwrap();
        for metadata in [
            client_credentials_metadata(Some("admin")),
            client_credentials_metadata(Some("read")),
            client_credentials_metadata(None),
            json!({
                "redirect_uris": [REDIRECT_URI],
                "token_endpoint_auth_method": "client_secret_post",
                "grant_types": ["authorization_code", "client_credentials"],
            }),
        ] {
            assert_error(
                &env.register(metadata).await,
                BAD,
                "invalid_client_metadata",
            );
        }
        assert_eq!(env.storage().stats().await.unwrap(), before);
        env.shutdown().await;
    }
}

async fn client_credentials_registration_needs_the_right_initial_access_token(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, body) = env
        .register_with_token(REGISTRATION_TOKEN, client_credentials_metadata(None))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["grant_types"], json!(["client_credentials"]));
    // The default scope of a self-granting client is the registrable set, never `admin`.
    assert_eq!(body["scope"], json!("read write"));
    let (id, secret) = (
        body["client_id"].as_str().unwrap(),
        body["client_secret"].as_str().unwrap(),
    );
    let (status, token) = env
        .token_basic(
            id,
            secret,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["scope"], json!("read write"));
    // Even with the token, a public client cannot hold client_credentials.
    let mut public = client_credentials_metadata(None);
    public["token_endpoint_auth_method"] = json!("none");
    assert_error(
        &env.register_with_token(REGISTRATION_TOKEN, public).await,
        BAD,
        "invalid_client_metadata",
    );
}

async fn wrong_initial_access_token_is_refused_whatever_is_requested(backend: Backend) {
    let env = Env::start(backend).await;
    let before = env.storage().stats().await.unwrap();
    let code_client =
        json!({"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"});
    let wrong = format!("{REGISTRATION_TOKEN}x");
    for metadata in [client_credentials_metadata(None), code_client.clone()] {
        for header in [
            format!("Bearer {wrong}"),
            format!("Basic {REGISTRATION_TOKEN}"),
            "Bearer".to_owned(),
        ] {
            let resp = env
                .http
                .post(env.url("/register"))
                .header("authorization", header)
                .json(&metadata)
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.headers()["www-authenticate"],
                "Bearer realm=\"oauth-provider\", error=\"invalid_token\""
            );
            assert_eq!(resp.headers()["cache-control"], "no-store");
            assert_error(
                &json_of(resp).await,
                StatusCode::UNAUTHORIZED,
                "invalid_token",
            );
        }
    }
    assert_eq!(env.storage().stats().await.unwrap(), before);
    // A server without a configured token accepts none, not even an empty one.
    let env = Env::start_with(backend, Config::demo()).await;
    assert_error(
        &env.register_with_token(REGISTRATION_TOKEN, client_credentials_metadata(None))
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
}

async fn anonymous_code_client_cannot_use_client_credentials(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, body) = env
        .register(json!({
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "read write admin",
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (id, secret) = (
        body["client_id"].as_str().unwrap(),
        body["client_secret"].as_str().unwrap(),
    );
    let before = env.storage().stats().await.unwrap();
    for scope in ["admin", "read"] {
        assert_error(
            &env.token_basic(
                id,
                secret,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", scope),
                    ("resource", RESOURCE),
                ],
            )
            .await,
            BAD,
            "unauthorized_client",
        );
    }
    assert_eq!(env.storage().stats().await.unwrap(), before);
}

async fn self_granted_scope_is_bounded_by_the_registrable_scopes(backend: Backend) {
    let env = Env::start(backend).await;
    let before = env.storage().stats().await.unwrap();
    for scope in ["admin", "read admin", "read delete"] {
        assert_error(
            &env.register_with_token(REGISTRATION_TOKEN, client_credentials_metadata(Some(scope)))
                .await,
            BAD,
            "invalid_client_metadata",
        );
    }
    assert_eq!(env.storage().stats().await.unwrap(), before);
    // A configured client cannot exceed its own scope either (the demo resource server: read).
    assert_error(
        &env.token_basic(
            DEMO_RESOURCE_SERVER_ID,
            DEMO_RESOURCE_SERVER_SECRET,
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .await,
        BAD,
        "invalid_scope",
    );
    env.shutdown().await;

    // A narrower configured set.
    let config = Config {
        registrable_scopes: Some(vec!["read".to_owned()]),
        ..test_config()
    };
    let env = Env::start_with(backend, config).await;
    let (status, body) = env
        .register_with_token(REGISTRATION_TOKEN, client_credentials_metadata(None))
        .await;
    assert_eq!(
        (status, body["scope"].clone()),
        (StatusCode::CREATED, json!("read"))
    );
    assert_error(
        &env.register_with_token(
            REGISTRATION_TOKEN,
            client_credentials_metadata(Some("write")),
        )
        .await,
        BAD,
        "invalid_client_metadata",
    );
    env.shutdown().await;

    // `admin` can never be made registrable, nor can an unsupported scope; a short initial
    // access token is refused too.
    for config in [
        Config {
            registrable_scopes: Some(vec!["read".to_owned(), "admin".to_owned()]),
            ..Config::demo()
        },
        Config {
            registrable_scopes: Some(vec!["delete".to_owned()]),
            ..Config::demo()
        },
        Config {
            registration_token: Some("short".into()),
            ..Config::demo()
        },
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (storage, _database) = open_storage(backend, &dir).await;
        let result = Server::start_with_storage(config, listener, storage).await;
        assert!(
            matches!(result, Err(oauth_provider::Error::Config(_))),
            "started with an unsafe policy"
        );
    }
}

async fn blank_scope_is_invalid_scope_everywhere(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let tokens = env.tokens(&AuthRequest::new(&client_id)).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let (cc_id, cc_secret) = env.confidential_client(json!(["client_credentials"])).await;
    let before = env.storage().stats().await.unwrap();

    for blank in [" ", "   "] {
        // Registration, anonymous and with the initial access token.
        assert_error(
            &env.register(json!({
                "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "scope": blank
            }))
            .await,
            BAD,
            "invalid_scope",
        );
        assert_error(
            &env.register_with_token(REGISTRATION_TOKEN, client_credentials_metadata(Some(blank)))
                .await,
            BAD,
            "invalid_scope",
        );
        // Token: client credentials and refresh.
        assert_error(
            &env.token_basic(
                &cc_id,
                &cc_secret,
                &[("grant_type", "client_credentials"), ("scope", blank)],
            )
            .await,
            BAD,
            "invalid_scope",
        );
        assert_error(
            &env.token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", &client_id),
                ("scope", blank),
            ])
            .await,
            BAD,
            "invalid_scope",
        );
        // Authorization endpoint.
        let req = AuthRequest::new(&client_id);
        let resp = env.authorize(&req.query_with("scope", Some(blank))).await;
        assert_eq!(
            redirect_params(&resp, &req.redirect_uri)["error"],
            "invalid_scope"
        );
    }
    assert_eq!(env.storage().stats().await.unwrap(), before);
    env.assert_refresh_usable(rt, true).await;
}

async fn unknown_resource_is_invalid_target_for_every_grant(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);

    // Authorization endpoint: redirected, nothing stored.
    let resp = env
        .authorize(&req.query_with("resource", Some(UNKNOWN_RESOURCE)))
        .await;
    assert_eq!(
        redirect_params(&resp, &req.redirect_uri)["error"],
        "invalid_target"
    );
    assert_eq!(env.storage().stats().await.unwrap().pending, 0);

    let code = env.code(&req).await;
    let (cc_id, cc_secret) = env.confidential_client(json!(["client_credentials"])).await;
    let before = env.storage().stats().await.unwrap();
    let mut form = req.redeem_form(&code);
    form.push(("resource", UNKNOWN_RESOURCE));
    assert_error(&env.token(&form).await, BAD, "invalid_target");
    for (id, secret) in [
        (cc_id.as_str(), cc_secret.as_str()),
        (DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET),
    ] {
        assert_error(
            &env.token_basic(
                id,
                secret,
                &[
                    ("grant_type", "client_credentials"),
                    ("resource", UNKNOWN_RESOURCE),
                ],
            )
            .await,
            BAD,
            "invalid_target",
        );
    }
    assert_eq!(env.storage().stats().await.unwrap(), before);

    let (status, tokens) = env.token(&req.redeem_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let rt = tokens["refresh_token"].as_str().unwrap();
    assert_error(
        &env.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", &client_id),
            ("resource", UNKNOWN_RESOURCE),
        ])
        .await,
        BAD,
        "invalid_target",
    );
    env.assert_refresh_usable(rt, true).await;
    let dir = env.shutdown().await;

    // A grant bound to a resource the server no longer serves cannot be refreshed (the state
    // outlives the configuration only with SQLite).
    if matches!(backend, Backend::Sqlite) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dir = dir.unwrap();
        let (storage, _) = open_storage(backend, &dir).await;
        let config = Config {
            demo: false,
            resources: vec!["https://other.example/mcp".to_owned()],
            ..test_config()
        };
        let server = Server::start_with_storage(config, listener, storage)
            .await
            .unwrap();
        let env = Env::with_server(server, Some(dir));
        assert_error(
            &env.token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", &client_id),
            ])
            .await,
            BAD,
            "invalid_target",
        );
        env.assert_refresh_usable(rt, true).await;
    }
}

async fn several_resource_parameters_are_invalid_target(backend: Backend) {
    let env = Env::start(backend).await;
    let client_id = env.public_client().await;
    let req = AuthRequest::new(&client_id);
    let mut query = req.query();
    query.push(("resource", RESOURCE));
    let resp = env.authorize(&query).await;
    let params = redirect_params(&resp, &req.redirect_uri);
    assert_eq!(params["error"], "invalid_target");
    assert_eq!(params["state"], req.state);
    assert_eq!(env.storage().stats().await.unwrap().pending, 0);

    let code = env.code(&req).await;
    let before = env.storage().stats().await.unwrap();
    let mut form = req.redeem_form(&code);
    form.extend([("resource", RESOURCE), ("resource", RESOURCE)]);
    assert_error(&env.token(&form).await, BAD, "invalid_target");
    assert_error(
        &env.token_basic(
            DEMO_RESOURCE_SERVER_ID,
            DEMO_RESOURCE_SERVER_SECRET,
            &[
                ("grant_type", "client_credentials"),
                ("resource", RESOURCE),
                ("resource", UNKNOWN_RESOURCE),
            ],
        )
        .await,
        BAD,
        "invalid_target",
    );
    assert_eq!(env.storage().stats().await.unwrap(), before);
    let (status, tokens) = env.token(&req.redeem_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_error(
        &env.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &client_id),
            ("resource", RESOURCE),
            ("resource", RESOURCE),
        ])
        .await,
        BAD,
        "invalid_target",
    );
}

async fn resource_not_allowed_for_the_client_is_invalid_target(backend: Backend) {
    const OTHER: &str = "https://api.example/v1";
    let config = test_config().with_resource(OTHER);
    let env = Env::start_with(backend, config).await;
    // A configured client restricted to one of the two known resources.
    let restricted = Client {
        client_id: "restricted-service".to_owned(),
        secret_hash: Some(hash_secret("restricted-secret")),
        client_name: None,
        redirect_uris: vec![REDIRECT_URI.to_owned()],
        grant_types: vec![
            "client_credentials".to_owned(),
            "authorization_code".to_owned(),
        ],
        scope: "read".to_owned(),
        auth_method: AuthMethod::ClientSecretBasic,
        issued_at: 0,
        resource_server: false,
        resources: vec![OTHER.to_owned()],
        dpop_bound_access_tokens: false,
    };
    env.storage().put_client(&restricted).await.unwrap();
    let before = env.storage().stats().await.unwrap();
    let grant = |resource: Option<&'static str>| {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(resource.map(|r| ("resource", r)));
        form
    };
    for resource in [Some(RESOURCE), None] {
        assert_error(
            &env.token_basic("restricted-service", "restricted-secret", &grant(resource))
                .await,
            BAD,
            "invalid_target",
        );
    }
    let mut req = AuthRequest::new("restricted-service");
    req.scope = Some("read".to_owned());
    let resp = env.authorize(&req.query()).await;
    assert_eq!(
        redirect_params(&resp, &req.redirect_uri)["error"],
        "invalid_target"
    );
    assert_eq!(env.storage().stats().await.unwrap(), before);

    let (status, body) = env
        .token_basic(
            "restricted-service",
            "restricted-secret",
            &grant(Some(OTHER)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        env.introspect(body["access_token"].as_str().unwrap()).await["aud"],
        json!(OTHER)
    );
    // An unrestricted client may use either known resource.
    let (status, _) = env
        .token_basic(
            DEMO_RESOURCE_SERVER_ID,
            DEMO_RESOURCE_SERVER_SECRET,
            &grant(Some(OTHER)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn only_resource_servers_introspect_other_clients_tokens(backend: Backend) {
    let env = Env::start(backend).await;
    let victim = env.public_client().await;
    let victim_at = env.tokens(&AuthRequest::new(&victim)).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (snoop, snoop_secret) = env.confidential_client(json!(["client_credentials"])).await;
    let (code_snoop, code_snoop_secret) =
        env.confidential_client(json!(["authorization_code"])).await;
    let (_, own) = env
        .token_basic(
            &snoop,
            &snoop_secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
    let own_at = own["access_token"].as_str().unwrap();

    for (id, secret) in [
        (snoop.as_str(), snoop_secret.as_str()),
        (code_snoop.as_str(), code_snoop_secret.as_str()),
    ] {
        let (status, body) = env.introspect_as(id, secret, &victim_at).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"active": false})));
    }
    // Its own token, yes.
    let (status, body) = env.introspect_as(&snoop, &snoop_secret, own_at).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], json!(true), "{body}");
    assert_eq!(body["client_id"], json!(snoop));
    // The configured resource server sees both.
    env.assert_active(&victim_at, true).await;
    env.assert_active(own_at, true).await;
}

async fn refresh_tokens_never_introspect_as_active(backend: Backend) {
    let env = Env::start(backend).await;
    let (id, secret) = env
        .confidential_client(json!(["authorization_code", "refresh_token"]))
        .await;
    let req = AuthRequest::new(&id);
    let code = env.code(&req).await;
    let mut form = req.redeem_form(&code);
    form.retain(|(k, _)| *k != "client_id");
    let (status, tokens) = env.token_basic(&id, &secret, &form).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let rt = tokens["refresh_token"].as_str().unwrap();
    // Neither the resource server nor the owner sees it as active.
    env.assert_active(rt, false).await;
    let (status, body) = env.introspect_as(&id, &secret, rt).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"active": false})));
    env.assert_refresh_usable(rt, true).await;
}

async fn code_presented_by_another_client_leaves_the_owners_tokens_alone(backend: Backend) {
    let env = Env::start(backend).await;
    let owner = env.public_client().await;
    let attacker = env.public_client().await;
    let req = AuthRequest::new(&owner);
    let code = env.code(&req).await;
    let (status, tokens) = env.token(&req.redeem_form(&code)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();

    // The attacker saw the (used) code and presents it as its own.
    let mut form = req.redeem_form(&code);
    form.retain(|(k, _)| *k != "client_id");
    form.push(("client_id", &attacker));
    let before = env.storage().stats().await.unwrap();
    assert_error(&env.token(&form).await, BAD, "invalid_grant");
    assert_eq!(env.storage().stats().await.unwrap(), before);
    env.assert_active(at, true).await;
    env.assert_refresh_usable(rt, true).await;

    // A replay by the owner itself still revokes the grant.
    assert_error(
        &env.token(&req.redeem_form(&code)).await,
        BAD,
        "invalid_grant",
    );
    env.assert_active(at, false).await;
    env.assert_refresh_usable(rt, false).await;
}

async fn configured_clients_come_from_the_clients_file(backend: Backend) {
    // Without --demo, the clients file is where resource servers and self-granting services
    // come from.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.toml");
    std::fs::write(
        &path,
        format!(
            "[[clients]]\nclient_id = \"api-gateway\"\nsecret_hash = \"{}\"\nresource_server = true\n\n\
             [[clients]]\nclient_id = \"report-job\"\nsecret_hash = \"{}\"\n\
             grant_types = [\"client_credentials\"]\nscope = \"read\"\nresources = [\"{RESOURCE}\"]\n",
            hash_secret("gateway-secret-0123456789abcdef0123"),
            hash_secret("job-secret-0123456789abcdef01234567"),
        ),
    )
    .unwrap();
    let config = Config {
        clients_file: Some(path.clone()),
        resources: vec![RESOURCE.to_owned(), UNKNOWN_RESOURCE.to_owned()],
        ..Config::default()
    };
    let env = Env::start_with(backend, config).await;
    let job = ("report-job", "job-secret-0123456789abcdef01234567");
    let gateway = ("api-gateway", "gateway-secret-0123456789abcdef0123");
    let (status, body) = env
        .token_basic(
            job.0,
            job.1,
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at = body["access_token"].as_str().unwrap();
    // Restricted to its resource, and must name it.
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            ("resource", UNKNOWN_RESOURCE),
        ],
        vec![("grant_type", "client_credentials")],
    ] {
        assert_error(
            &env.token_basic(job.0, job.1, &form).await,
            BAD,
            "invalid_target",
        );
    }
    // The configured resource server introspects it; nobody else does.
    let (status, info) = env.introspect_as(gateway.0, gateway.1, at).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            info["active"].clone(),
            info["aud"].clone(),
            info["client_id"].clone()
        ),
        (json!(true), json!(RESOURCE), json!("report-job"))
    );
    let (other, other_secret) = env.confidential_client(json!(["authorization_code"])).await;
    let (_, info) = env.introspect_as(&other, &other_secret, at).await;
    assert_eq!(info, json!({"active": false}));
    // The resource server has no grant of its own.
    assert_error(
        &env.token_basic(
            gateway.0,
            gateway.1,
            &[("grant_type", "client_credentials")],
        )
        .await,
        BAD,
        "unauthorized_client",
    );
    env.shutdown().await;

    // A bad clients file stops the server.
    std::fs::write(
        &path,
        "[[clients]]\nclient_id = \"x\"\nsecret_hash = \"plaintext-secret\"\n",
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        clients_file: Some(path),
        ..Config::default()
    };
    let (storage, _database) = open_storage(backend, &dir).await;
    let result = Server::start_with_storage(config, listener, storage).await;
    assert!(matches!(result, Err(oauth_provider::Error::Clients(_))));
}
