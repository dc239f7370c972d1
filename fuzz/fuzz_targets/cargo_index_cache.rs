//! Cargo's binary index cache: parse, then parse every entry's JSON line, as `describe` does.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = pkgseed_sources::parse_index_cache(data) {
        for entry in entries {
            let _ = entry.record();
        }
    }
});
