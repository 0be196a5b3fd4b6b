//! The trigger scan: every occurrence of every trigger, overlapping ones included.
//!
//! One Aho-Corasick DFA (the `aho-corasick` crate's, driven through its `Automaton`
//! interface) runs over [`LANES`] parts of the text in one loop. A DFA step is a chain
//! of dependent loads — the next state cannot be fetched before the current one is
//! known — so a single pass waits on memory at every byte; independent parts let the
//! processor overlap those waits. Each part but the last runs on past its end by the
//! longest trigger less one byte and keeps only the occurrences that start inside it,
//! so every occurrence is found exactly once.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

/// Parts scanned at once (the lockstep loop in `find_all` is written for four).
const LANES: usize = 4;
/// Below this many bytes per part, one part does.
const MIN_PART: usize = 64;

/// Every occurrence of a set of byte strings.
pub(crate) struct Triggers {
    dfa: DFA,
    start: StateID,
    lens: Vec<usize>,
    overlap: usize,
}

/// One occurrence: the trigger's index and its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Hit {
    pub(crate) pattern: usize,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Triggers {
    pub(crate) fn new(patterns: &[String]) -> Result<Self, String> {
        let dfa = DFA::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            // No prefilter: the start state is then an ordinary state, and the loop
            // below has a single test per byte.
            .prefilter(false)
            .build(patterns)
            .map_err(|e| e.to_string())?;
        let start = dfa.start_state(Anchored::No).map_err(|e| e.to_string())?;
        Ok(Self {
            lens: patterns.iter().map(String::len).collect(),
            overlap: dfa.max_pattern_len().saturating_sub(1),
            dfa,
            start,
        })
    }

    /// Every occurrence in `hay`, in order of the part it starts in and, within a
    /// part, of its end.
    pub(crate) fn find_all(&self, hay: &[u8], out: &mut Vec<Hit>) {
        let n = hay.len();
        if n < LANES * MIN_PART {
            self.go_on(hay, self.start, 0, n, n, out);
            return;
        }
        // Part k owns the starts in [bounds[k], bounds[k + 1]) and reads up to
        // `overlap` bytes past its end.
        let mut bounds = [0; LANES + 1];
        for (k, b) in bounds.iter_mut().enumerate() {
            *b = n * k / LANES;
        }
        let ends: [usize; LANES] = std::array::from_fn(|k| (bounds[k + 1] + self.overlap).min(n));
        let mut parts: [Vec<Hit>; LANES] = Default::default();
        // Every part reads at least this many bytes: the first `steps` in lockstep.
        let steps = (0..LANES).map(|k| ends[k] - bounds[k]).min().unwrap_or(0);
        // The four states are locals, not an array, and the loop that steps them calls
        // nothing, so that they stay in registers: through memory, each step would
        // wait on a store and a reload as well.
        let (l0, l1, l2, l3) = (
            &hay[bounds[0]..bounds[0] + steps],
            &hay[bounds[1]..bounds[1] + steps],
            &hay[bounds[2]..bounds[2] + steps],
            &hay[bounds[3]..bounds[3] + steps],
        );
        let (mut s0, mut s1, mut s2, mut s3) = (self.start, self.start, self.start, self.start);
        let mut i = 0;
        while i < steps {
            while i < steps {
                s0 = self.dfa.next_state(Anchored::No, s0, l0[i]);
                s1 = self.dfa.next_state(Anchored::No, s1, l1[i]);
                s2 = self.dfa.next_state(Anchored::No, s2, l2[i]);
                s3 = self.dfa.next_state(Anchored::No, s3, l3[i]);
                if self.dfa.is_special(s0)
                    | self.dfa.is_special(s1)
                    | self.dfa.is_special(s2)
                    | self.dfa.is_special(s3)
                {
                    break;
                }
                i += 1;
            }
            if i == steps {
                break;
            }
            for (k, s) in [s0, s1, s2, s3].into_iter().enumerate() {
                if self.dfa.is_special(s) {
                    self.report(s, bounds[k] + i, bounds[k + 1], &mut parts[k]);
                }
            }
            i += 1;
        }
        let sid = [s0, s1, s2, s3];
        for k in 0..LANES {
            self.go_on(
                hay,
                sid[k],
                bounds[k] + steps,
                ends[k],
                bounds[k + 1],
                &mut parts[k],
            );
            out.append(&mut parts[k]);
        }
    }

    /// Steps on from state `s` over [from, to), keeping occurrences that start before
    /// `owns`.
    fn go_on(
        &self,
        hay: &[u8],
        mut s: StateID,
        from: usize,
        to: usize,
        owns: usize,
        out: &mut Vec<Hit>,
    ) {
        for (at, &b) in hay.iter().enumerate().take(to).skip(from) {
            s = self.dfa.next_state(Anchored::No, s, b);
            if self.dfa.is_special(s) {
                self.report(s, at, owns, out);
            }
        }
    }

    /// The occurrences that end at `at` (inclusive) in state `sid`.
    #[inline]
    fn report(&self, sid: StateID, at: usize, owns: usize, out: &mut Vec<Hit>) {
        if !self.dfa.is_match(sid) {
            return;
        }
        for i in 0..self.dfa.match_len(sid) {
            let pattern = self.dfa.match_pattern(sid, i).as_usize();
            let end = at + 1;
            let start = end - self.lens[pattern];
            if start < owns {
                out.push(Hit {
                    pattern,
                    start,
                    end,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

    use aho_corasick::AhoCorasick;
    use proptest::prelude::*;

    use super::*;

    /// What the crate's own overlapping search finds, in our form.
    fn oracle(patterns: &[String], hay: &[u8]) -> Vec<Hit> {
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(patterns)
            .unwrap();
        let mut v: Vec<Hit> = ac
            .find_overlapping_iter(hay)
            .map(|m| Hit {
                pattern: m.pattern().as_usize(),
                start: m.start(),
                end: m.end(),
            })
            .collect();
        v.sort();
        v
    }

    fn found(patterns: &[String], hay: &[u8]) -> Vec<Hit> {
        let mut v = Vec::new();
        Triggers::new(patterns).unwrap().find_all(hay, &mut v);
        v.sort();
        v
    }

    #[test]
    fn occurrences_across_part_boundaries_are_found_once() {
        let patterns: Vec<String> = ["ignore", "ignore previous", "ore p", "e", "ssh"]
            .map(String::from)
            .to_vec();
        // Long enough for four parts; occurrences placed on and around each boundary.
        let mut hay = vec![b'.'; 4 * 4 * MIN_PART + 7];
        let n = hay.len();
        for k in 0..=LANES {
            let at = (n * k / LANES).min(n - 20);
            for shift in [0, 3, 8, 14] {
                let from = at.saturating_sub(shift);
                hay[from..from + 15].copy_from_slice(b"ignore previous");
            }
        }
        hay[n - 3..].copy_from_slice(b"ssh");
        let want = oracle(&patterns, &hay);
        assert!(want.len() > 20, "{}", want.len());
        assert_eq!(found(&patterns, &hay), want);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_occurrence_is_found_exactly_once(
            patterns in proptest::collection::vec("[abc]{1,6}", 1..12),
            hay in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c'), Just(b'd')], 0..6000),
        ) {
            prop_assert_eq!(found(&patterns, &hay), oracle(&patterns, &hay));
        }
    }
}
