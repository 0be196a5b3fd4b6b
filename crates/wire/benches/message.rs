//! Reading a `tools/call` answer as the gateway does on every call: the envelope
//! parse, the whole-message read that refuses repeated keys (before inspection), and
//! encoding a rewritten message again.
//!
//! ```sh
//! cargo bench -p palisade-wire --bench message
//! ```

#![allow(missing_docs, reason = "a benchmark binary")]
#![allow(
    clippy::expect_used,
    reason = "a benchmark that cannot set up must stop"
)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_wire::{Id, Message};

fn answer(text_bytes: usize) -> Bytes {
    let m = Message::response(
        &Id::Number(7),
        &serde_json::json!({
            "content": [{"type": "text", "text": "x".repeat(text_bytes)}],
            "isError": false
        }),
    );
    m.into_bytes()
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("tools/call answer");
    for size in [4096, 64 * 1024] {
        let raw = answer(size);
        g.throughput(Throughput::Bytes(raw.len() as u64));
        let label = format!("{} KiB", size / 1024);
        g.bench_function(format!("parse, {label}"), |b| {
            b.iter(|| Message::parse(black_box(raw.clone())))
        });
        let msg = Message::parse(raw.clone()).expect("the answer parses");
        g.bench_function(format!("read whole, unique keys, {label}"), |b| {
            b.iter(|| black_box(&msg).to_unique_value())
        });
        let v = msg.to_value().expect("the answer reads");
        let v = serde_json::Value::Object(v);
        g.bench_function(format!("encode again, {label}"), |b| {
            b.iter(|| Message::from_value(black_box(&v)))
        });
    }
    g.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
