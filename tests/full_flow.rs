//! The full flow of `cargo run --example full_flow`, same code path, every outcome asserted, for
//! both registration styles: dynamic registration and a Client ID Metadata Document; then the JWT
//! and DPoP runs.

use tower_introspect_demo::flow::{self, Registration};
use tower_introspect_demo::mcp_client::Outcome;
use tower_introspect_demo::metadata_document::DOCUMENT_PATH;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_behaves_as_documented() {
    let report = flow::run().await.expect("the flow runs to the end");

    let expected: [(&str, [&str; 3]); 6] = [
        //                           alice              bob                admin
        ("public_info", ["allowed", "allowed", "allowed"]),
        ("get_user_profile", ["allowed", "allowed", "allowed"]),
        ("read_data", ["allowed", "allowed", "allowed"]),
        ("write_data", ["allowed", "403 needs write", "allowed"]),
        (
            "admin_operation",
            ["403 needs admin", "403 needs admin", "allowed"],
        ),
        (
            "list_available_resources",
            ["allowed", "allowed", "allowed"],
        ),
    ];
    // The same table whichever way the client is known.
    for registration in [Registration::Dynamic, Registration::MetadataDocument] {
        for (tool, outcomes) in expected {
            for (user, want) in ["alice", "bob", "admin"].into_iter().zip(outcomes) {
                let got = report
                    .outcome(registration, user, tool)
                    .expect("every cell is filled");
                assert_eq!(got.to_string(), want, "{user} × {tool} ({registration})");
            }
        }
    }
    assert_eq!(report.table.len(), 36);

    // What the tools answered, beyond allowed/denied.
    let Some(Outcome::Allowed(listing)) =
        report.outcome(Registration::Dynamic, "bob", "list_available_resources")
    else {
        panic!("bob can list");
    };
    assert!(
        listing.contains("read_data") && !listing.contains("write_data"),
        "{listing}"
    );
    let Some(Outcome::Allowed(profile)) =
        report.outcome(Registration::Dynamic, "alice", "get_user_profile")
    else {
        panic!("alice has a profile");
    };
    assert!(
        profile.contains(r#""subject":"alice""#) && profile.contains(r#""scopes":"read write""#)
    );

    // Dynamic registration: one new client, with a server-chosen id.
    let dynamic = report.run(Registration::Dynamic).expect("a DCR run");
    assert_eq!(dynamic.new_clients, 1);
    assert!(
        !dynamic.client_id.starts_with("https://"),
        "{}",
        dynamic.client_id
    );
    assert!(!dynamic.document_client_stored);
    // The metadata document: the client_id is the document URL, and the only client the provider
    // stored is the document's (no registration).
    let document = report
        .run(Registration::MetadataDocument)
        .expect("a CIMD run");
    assert!(
        document.client_id.starts_with("https://127.0.0.1:")
            && document.client_id.ends_with(DOCUMENT_PATH),
        "{}",
        document.client_id
    );
    assert_eq!(document.new_clients, 1);
    assert!(document.document_client_stored);
    // Tokens issued through the document name it as their client.
    let Some(Outcome::Allowed(profile)) =
        report.outcome(Registration::MetadataDocument, "alice", "get_user_profile")
    else {
        panic!("alice has a profile in the CIMD run");
    };
    let profile: serde_json::Value = serde_json::from_str(profile).unwrap();
    assert_eq!(profile["client_id"], document.client_id.as_str());

    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for required in [
        "public_info without a token",
        "get_user_profile without a token is challenged",
        "401 → RFC 9728 metadata → RFC 8414 metadata",
        "dynamic client registration",
        "the authorization server accepts client metadata documents",
        "alice's profile names them and the client",
        "alice's profile names them and the client [metadata document]",
        "no registration: the only new client is the document's, its client_id the document URL",
        "the provider fetched the document (and cached it)",
        "read_data returns what write_data stored",
        "one introspection call per token",
        "reusing the rotated refresh token is refused",
        "…and revokes the whole family, the newest refresh token included",
        "…and the family's cached access token is refused within 1 s (session-revoked pushed)",
        "revoking alice's token at the provider makes both MCP servers refuse it within 1 s, with no hook called",
        "each server's receiver took the signed event from its own stream",
        "the revoked token gets 401 invalid_token",
        "revoking the access token revoked its refresh token too",
        "access token issued before the restart still introspects active",
        "refresh token issued before the restart still works",
        "the access token is a JWT with typ at+jwt",
        "alice's JWT works for her tools and not for admin's",
        "zero introspection calls: the JWT was verified with the provider's published keys",
        "a revoked JWT checked locally still works until its exp (local checks cannot see revocation)",
        "with --introspect-jwts the revoked JWT is refused at once",
        "the protected resource metadata says DPoP-bound tokens are required",
        "the token response says token_type DPoP",
        "introspection: the token's cnf.jkt is the client key's thumbprint",
        "Authorization: DPoP with a fresh proof per request: alice's tools work, admin's do not",
        "the same token sent as Bearer is refused",
        "the token with a proof of another key is refused",
        "a replayed proof is refused",
        "the bound refresh token is refused without a proof of the key",
        "with a proof it refreshes, the new access token bound to the same key",
    ] {
        assert!(names.contains(&required), "missing check {required:?}");
    }
    // The DPoP run: the token endpoint asked for a nonce first, and the downgrade to Bearer was
    // answered with the DPoP challenge alone (`--dpop required`).
    let detail = |name: &str| {
        report
            .checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.detail.as_str())
            .unwrap_or_default()
    };
    assert!(
        detail("the token response says token_type DPoP").contains("use_dpop_nonce"),
        "{}",
        detail("the token response says token_type DPoP")
    );
    let downgrade = detail("the same token sent as Bearer is refused");
    assert!(
        downgrade.starts_with("401, WWW-Authenticate: DPoP ")
            && downgrade.contains(r#"error="invalid_token""#)
            && !downgrade.contains("Bearer "),
        "{downgrade}"
    );
    assert!(
        detail("a replayed proof is refused").starts_with("first use allowed, replay 401"),
        "{}",
        detail("a replayed proof is refused")
    );

    let failures: Vec<_> = report
        .failures()
        .into_iter()
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
