//! Fuzz target: see `tower_introspect_fuzz::invariants::authorization_header`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tower_introspect_fuzz::invariants::authorization_header::check(data);
});
