//! Fuzz target: see `tower_introspect_fuzz::invariants::security_event_token`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tower_introspect_fuzz::invariants::security_event_token::check(data);
});
