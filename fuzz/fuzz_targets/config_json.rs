//! config.json text → spec, validation and idmap mappings: errors are fine, panics and hangs are not.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = berth_oci::spec::parse_config(std::path::Path::new("config.json"), text);
    }
});
