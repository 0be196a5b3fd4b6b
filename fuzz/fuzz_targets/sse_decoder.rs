//! Any bytes in any chunking: the SSE decoder never panics and never exceeds its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_wire::sse::Decoder;

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(1).max(1) as usize;
    let mut d = Decoder::new(256);
    let mut out = Vec::new();
    for chunk in data.chunks(split) {
        if d.feed(chunk, &mut out).is_err() {
            return;
        }
    }
    for ev in out {
        assert!(ev.data.len() <= 256);
    }
});
