//! Fuzz target: `laminar_tests::fuzz::tcp_framing` on arbitrary bytes.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| laminar_tests::fuzz::tcp_framing(data));
