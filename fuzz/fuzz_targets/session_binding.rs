//! Fuzz target: see `tower_introspect_fuzz::invariants::session_binding`.

#![no_main]

use tower_introspect_fuzz::invariants::session_binding::{Op, check};

libfuzzer_sys::fuzz_target!(|ops: Vec<Op>| check(&ops));
