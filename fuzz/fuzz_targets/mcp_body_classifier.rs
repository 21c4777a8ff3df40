//! Fuzz target: see `tower_introspect_fuzz::invariants::mcp_body_classifier`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tower_introspect_fuzz::invariants::mcp_body_classifier::check(data);
});
