//! Any bytes: parsing never panics; a parsed message survives an ID splice and
//! re-parses to the same shape.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use palisade_wire::{Id, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(Bytes::copy_from_slice(data)) {
        let spliced = m.with_id(&Id::Number(42));
        let again = Message::parse(spliced.raw().clone()).expect("a spliced message parses");
        assert_eq!(again.kind(), m.kind());
        assert_eq!(again.method(), m.method());
        assert_eq!(again.params_raw(), m.params_raw());
    }
});
