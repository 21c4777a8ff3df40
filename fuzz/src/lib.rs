//! The invariants the fuzz targets check, and what they share: fixtures that mirror a real
//! deployment and independent oracles (written from the RFCs, not from the library's code).
//!
//! The root package's property tests (`tests/properties.rs`) include these very modules, so that
//! `cargo test` checks the same invariants on generated inputs; the modules therefore refer to one
//! another through `crate::` paths only and take plain inputs (no fuzzer types).

pub mod auth_param;
pub mod fixtures;
pub mod invariants;
pub mod recorder;
