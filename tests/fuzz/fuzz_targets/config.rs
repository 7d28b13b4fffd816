//! Fuzz target: `laminar_tests::fuzz::config` on arbitrary bytes.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| laminar_tests::fuzz::config(data));
