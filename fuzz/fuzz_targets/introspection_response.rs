//! Fuzz target: see `tower_introspect_fuzz::invariants::introspection_response`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tower_introspect_fuzz::invariants::introspection_response::check(data);
});
