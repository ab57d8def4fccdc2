#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pairgate::fuzzing::fuzz_control_crl(data));
