#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocni_tests::fuzz::result(data));
