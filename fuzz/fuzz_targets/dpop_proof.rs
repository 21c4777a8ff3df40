//! Fuzz target: see `tower_introspect_fuzz::invariants::dpop_proof`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tower_introspect_fuzz::invariants::dpop_proof::check(data);
});
