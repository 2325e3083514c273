//! `exec --user uid[:gid]`: whatever parses must print back to the same numbers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((uid, gid)) = berth_oci::spec::parse_user(text) {
            let again = match gid {
                Some(gid) => format!("{uid}:{gid}"),
                None => uid.to_string(),
            };
            assert_eq!(berth_oci::spec::parse_user(&again), Ok((uid, gid)));
        }
    }
});
