//! The config file (`config.toml`): parse + validate; what parses must save and parse back to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = pkgseed_engine::Config::parse(text) {
        assert!(config.validate().is_ok());
    }
});
