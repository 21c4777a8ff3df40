//! Fuzz target: see `tower_introspect_fuzz::invariants::challenge_renderer`.

#![no_main]

use tower_introspect_fuzz::invariants::challenge_renderer::{Input, check};

type Fields = (
    Option<String>,
    Option<String>,
    Option<String>,
    u8,
    Vec<String>,
);

libfuzzer_sys::fuzz_target!(|fields: Fields| {
    let (realm, resource_metadata, scope, kind, required) = fields;
    check(&Input {
        realm,
        resource_metadata,
        scope,
        kind,
        required,
    });
});
