//! A control-socket request line, decoded exactly as the daemon does (`serde_json::from_str::<ControlRequest>`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = serde_json::from_str::<pkgseed_engine::control::ControlRequest>(line) {
        let again = serde_json::to_string(&request).unwrap();
        assert_eq!(
            serde_json::from_str::<pkgseed_engine::control::ControlRequest>(&again).unwrap(),
            request
        );
    }
});
