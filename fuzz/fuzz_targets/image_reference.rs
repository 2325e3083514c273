//! Image references: whatever parses prints back to something that parses to the same reference.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(reference) = berth_image::Reference::parse(text) {
            let again = berth_image::Reference::parse(&reference.to_string()).expect("a printed reference parses");
            assert_eq!(again, reference);
        }
    }
});
