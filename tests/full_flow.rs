//! The full flow of `cargo run --example full_flow`, same code path, every outcome asserted.

use tower_introspect_demo::flow;
use tower_introspect_demo::mcp_client::Outcome;

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
    for (tool, outcomes) in expected {
        for (user, want) in ["alice", "bob", "admin"].into_iter().zip(outcomes) {
            let got = report.outcome(user, tool).expect("every cell is filled");
            assert_eq!(got.to_string(), want, "{user} × {tool}");
        }
    }
    assert_eq!(report.table.len(), 18);

    // What the tools answered, beyond allowed/denied.
    let Some(Outcome::Allowed(listing)) = report.outcome("bob", "list_available_resources") else {
        panic!("bob can list");
    };
    assert!(
        listing.contains("read_data") && !listing.contains("write_data"),
        "{listing}"
    );
    let Some(Outcome::Allowed(profile)) = report.outcome("alice", "get_user_profile") else {
        panic!("alice has a profile");
    };
    assert!(
        profile.contains(r#""subject":"alice""#) && profile.contains(r#""scopes":"read write""#)
    );

    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for required in [
        "public_info without a token",
        "get_user_profile without a token is challenged",
        "401 → RFC 9728 metadata → RFC 8414 metadata",
        "dynamic client registration",
        "read_data returns what write_data stored",
        "one introspection call per token",
        "reusing the rotated refresh token is refused",
        "…and revokes the whole family, the newest refresh token included",
        "right after revocation the cached verdict still serves the token",
        "after invalidating the cache entry the revoked token gets 401 invalid_token",
        "revoking the access token revoked its refresh token too",
        "access token issued before the restart still introspects active",
        "refresh token issued before the restart still works",
    ] {
        assert!(names.contains(&required), "missing check {required:?}");
    }
    let failures: Vec<_> = report
        .failures()
        .into_iter()
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
