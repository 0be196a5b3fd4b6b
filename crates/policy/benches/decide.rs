//! One Cedar decision per example policy, for the call every request of the load
//! harness makes: a `tools/call` of a tool marked `risk = "read"` by a user with
//! roles, groups and scopes.
//!
//! ```sh
//! cargo bench -p palisade-policy --bench decide
//! ```

#![allow(missing_docs, reason = "a benchmark binary")]
#![allow(
    clippy::expect_used,
    reason = "a benchmark that cannot set up must stop"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_policy::{Caller, Facts, Kind, Policies, Query, Target};

const POLICIES: [(&str, &str); 3] = [
    (
        "read-only-by-default",
        include_str!("../../../examples/policies/read-only-by-default.cedar"),
    ),
    (
        "per-team",
        include_str!("../../../examples/policies/per-team.cedar"),
    ),
    (
        "high-risk-needs-approval",
        include_str!("../../../examples/policies/high-risk-needs-approval.cedar"),
    ),
];

fn decide(c: &mut Criterion) {
    let roles = vec!["engineer".to_owned(), "reader".to_owned()];
    let groups = vec!["team-a".to_owned()];
    let scopes = vec!["mcp:tools".to_owned(), "files:read".to_owned()];
    let called = vec!["crm__search".to_owned(), "crm__read".to_owned()];
    let q = Query {
        caller: Caller {
            issuer: "https://idp.example.com",
            subject: "alice",
            roles: &roles,
            groups: &groups,
        },
        action: "tools/call",
        target: Target {
            kind: Kind::Tool,
            upstream: "crm",
            name: "crm__search",
            risk: "read",
            data_class: "unclassified",
            upstream_risk: "normal",
            upstream_data_class: "unclassified",
        },
        context: Facts {
            scopes: &scopes,
            time: 1_800_000_000,
            verdict: "clean",
            client: "ide",
            address: "127.0.0.1",
            called: &called,
            session_seconds: 42,
        },
    };
    let mut g = c.benchmark_group("policy decision");
    for (name, text) in POLICIES {
        let p = Policies::parse(text).expect("the example policy is valid");
        g.bench_function(name, |b| {
            b.iter(|| p.decide(black_box(&q)).expect("a decision"))
        });
    }
    g.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
