//! Appending a call decision to the audit log, as the gateway does before each
//! answer leaves: encoding, chaining (SHA-256 over the previous record), the write,
//! and a signed checkpoint every `checkpoint_every` records. With the default fsync
//! policy (an interval) the record is acknowledged once it is in the file.
//!
//! ```sh
//! cargo bench -p palisade-audit --bench append
//! ```

#![allow(missing_docs, reason = "a benchmark binary")]
#![allow(
    clippy::expect_used,
    reason = "a benchmark that cannot set up must stop"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_audit::{AuditLog, AuditOptions, Decision, Event, Fsync};

fn call() -> Event {
    Event::Call {
        session: "3f6c1f0e9a2b4d7c".into(),
        principal: "https://idp.example.com#alice".into(),
        client: Some("ide".into()),
        method: "tools/call".into(),
        upstream: Some("crm".into()),
        target: "crm__search".into(),
        arguments_hmac_sha256: Some(
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        arguments: None,
        decision: Decision::Allow,
        reason: None,
        policies: vec!["policy0".into()],
        approved_by: None,
    }
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut g = c.benchmark_group("audit append");
    for (name, fsync) in [
        (
            "fsync every 1 s (default)",
            Fsync::Interval(Duration::from_secs(1)),
        ),
        ("fsync on every record", Fsync::Always),
    ] {
        let sub = dir.path().join(name.split(' ').next_back().unwrap_or("x"));
        std::fs::create_dir_all(&sub).expect("the log's directory");
        let opened = rt.block_on(async {
            AuditLog::open(AuditOptions {
                path: sub.join("audit.jsonl"),
                key: sub.join("audit.key"),
                fsync,
                checkpoint_every: 1000,
                checkpoint_interval: Duration::from_secs(10),
                max_file_bytes: 64 * 1024 * 1024,
                keep_files: 2,
                version: "bench".into(),
                config_sha256: String::new(),
                hash_key_id: None,
                tee: None,
            })
        });
        let log = opened.expect("the audit log opens");
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(log.record(black_box(call())))
                    .expect("the record is written")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
