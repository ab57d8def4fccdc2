#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pairgate::spool::fuzz_wire(data));
