//! pip's HTTP cache entries: the pre-23.3 inline entry walker (`cc=4,` + msgpack, finds the body's byte range) and
//! the wheel / sdist body inspector, run on that range when one is found and on the whole input otherwise.
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use pkgseed_sources::pip;

fuzz_target!(|data: &[u8]| {
    match pip::locate_inline_body(&mut Cursor::new(data)) {
        Ok(range) => {
            let start = usize::try_from(range.offset).expect("inside the input");
            let end = start + usize::try_from(range.len).expect("inside the input");
            assert!(end <= data.len(), "the body range must lie inside the entry");
            let _ = pip::inspect_body(&mut Cursor::new(&data[start..end]));
        }
        Err(_) => {
            let _ = pip::inspect_body(&mut Cursor::new(data));
        }
    }
});
