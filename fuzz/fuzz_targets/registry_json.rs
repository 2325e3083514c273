//! What a registry says besides manifests and blobs: authentication challenges, token responses
//! and error bodies. Never a panic; an error body becomes one short line without control
//! characters; a token is only ever a valid header value.
#![no_main]
use berth_image::distribution::{describe_error_body, parse_challenge, parse_token, MAX_SHOWN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let described = describe_error_body(data);
    assert!(described.chars().count() <= MAX_SHOWN + 1, "{} characters shown", described.chars().count());
    assert!(!described.chars().any(char::is_control), "a control character shown: {described:?}");
    if let Ok(value) = parse_token(data) {
        assert!(value.to_str().is_ok_and(|v| v.starts_with("Bearer ")));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let (_, params) = parse_challenge(text);
        assert!(params.iter().all(|(key, _)| !key.is_empty()));
    }
});
