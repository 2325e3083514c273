//! `exec --process` JSON → a validated process.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = berth_oci::spec::parse_process(std::path::Path::new("process.json"), text);
    }
});
