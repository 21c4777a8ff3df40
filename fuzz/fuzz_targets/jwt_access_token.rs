//! Fuzz target: see `tower_introspect_fuzz::invariants::jwt_access_token`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tower_introspect_fuzz::invariants::jwt_access_token::check(data);
});
