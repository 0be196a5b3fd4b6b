//! The trigger scan: every occurrence of every trigger, overlapping ones included.
//!
//! Triggers are matched against the text folded ([`Folded`]): ASCII lowercased, and
//! every run of ASCII whitespace as one space. A space in a trigger so stands for any
//! run of whitespace — `do not` occurs in `Do  not` and in `do\nnot` — as the rules'
//! own patterns (`do\s+not`) allow; otherwise a doubled space or a line break between
//! two words would keep a rule from ever running.
//!
//! The triggers' Aho-Corasick automaton (built by the `aho-corasick` crate) is laid out
//! again as a table of 16-bit state IDs, one row per state and one column per class of
//! bytes that behave alike, match states numbered last: a third of the memory of the
//! crate's own DFA, whose IDs are 32 bits and rows a power of two as wide as the
//! alphabet, for the same single lookup per byte (see `docs/decisions/0017`). It runs
//! over [`LANES`] parts of the text in one loop. A DFA step is a chain
//! of dependent loads — the next state cannot be fetched before the current one is
//! known — so a single pass waits on memory at every byte; independent parts let the
//! processor overlap those waits. Each part but the last runs on past its end by the
//! longest trigger less one byte and keeps only the occurrences that start inside it,
//! so every occurrence is found exactly once.

use std::collections::HashMap;

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::nfa::noncontiguous::NFA;
use aho_corasick::{Anchored, MatchKind};

/// Parts scanned at once (the lockstep loop in `find_all` is written for four).
const LANES: usize = 4;
/// Below this many bytes per part, one part does.
const MIN_PART: usize = 64;

/// Every occurrence of a set of byte strings.
pub(crate) struct Triggers {
    /// The class of each byte: bytes that occur in no trigger share one.
    classes: [u8; 256],
    /// Each row is `1 << shift` wide (the classes, rounded up to a power of two, so
    /// that a row is found with a shift rather than a multiplication).
    shift: u32,
    /// The transitions, row by row: 16-bit state IDs while they fit.
    table: Table,
    start: u32,
    /// States from here on are match states.
    first_match: u32,
    /// For match state `first_match + i`, its triggers are
    /// `matched[ends[i]..ends[i + 1]]`.
    ends: Vec<u32>,
    matched: Vec<u32>,
    overlap: usize,
    patterns: Vec<Vec<u8>>,
}

/// The transition table, in the narrowest state ID that numbers every state.
enum Table {
    Narrow(Box<[u16]>),
    Wide(Box<[u32]>),
}

/// A state ID read from the table.
trait Id: Copy {
    fn get(self) -> u32;
}

impl Id for u16 {
    #[inline(always)]
    fn get(self) -> u32 {
        u32::from(self)
    }
}

impl Id for u32 {
    #[inline(always)]
    fn get(self) -> u32 {
        self
    }
}

/// One occurrence: the trigger's index and its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Hit {
    pub(crate) pattern: usize,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// ASCII whitespace, as the regexes' `\s` has it (with vertical tab).
pub(crate) const fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `s` as triggers are matched: ASCII lowercased, each run of whitespace one space.
pub(crate) fn fold(s: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    for &b in s {
        if is_space(b) {
            if out.last() != Some(&b' ') {
                out.push(b' ');
            }
        } else {
            out.push(b.to_ascii_lowercase());
        }
    }
    out
}

/// A trigger as it is matched (see [`fold`]).
pub(crate) fn fold_trigger(t: &str) -> String {
    // Only ASCII bytes change: the text stays UTF-8.
    String::from_utf8(fold(t.as_bytes()))
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// What the triggers are matched against: the text ASCII-lowercased, with every run of
/// ASCII whitespace (space, tab, line feed, vertical tab, form feed, carriage return)
/// as one space; and the way back to the text's offsets.
pub(crate) struct Folded {
    pub(crate) bytes: Vec<u8>,
    /// For each shortened run: the offset in `bytes` just after it, and how many bytes
    /// have been left out before that offset. (`u32`: eight bytes per run of repeated
    /// whitespace; the texts inspected are capped far below 4 GiB.)
    shifts: Vec<(u32, u32)>,
}

impl Folded {
    pub(crate) fn new(text: &[u8]) -> Self {
        use crate::words::{HIGH, ONES, between};
        // Written eight bytes at a time at `o`, each word whole even where fewer of its
        // bytes are kept (the next write covers the rest): eight bytes of room past
        // the text's length.
        let mut bytes = vec![0; text.len() + 8];
        let mut o = 0;
        let mut shifts = Vec::new();
        let mut removed: u32 = 0;
        let mut after_space = false;
        let mut words = text.chunks_exact(8);
        for w in words.by_ref() {
            let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            // Bytes in [lo, hi] (ASCII only: bytes from 0x80 are cleared by `!x`).
            let controls = between(x, 0x09, 0x0d);
            let ws = between(x, b' ', b' ') | controls;
            // All eight bytes lowercased (0x80 >> 2 is the 0x20 between cases), tabs and
            // line breaks made spaces, at once.
            let whole = (controls >> 7) * 0xff;
            let lower = (x + (between(x, b'A', b'Z') >> 2)) & !whole | (whole & (ONES * 0x20));
            // The whitespace bytes right after whitespace are left out.
            let drop = ws & ((ws << 8) | u64::from(after_space) << 7);
            after_space = ws >> 56 != 0;
            if drop == 0 {
                bytes[o..o + 8].copy_from_slice(&lower.to_le_bytes());
                o += 8;
                continue;
            }
            // A run at a time: the kept bytes before it, then the run skipped whole
            // (indentation is mostly such runs).
            let kept = !drop & HIGH;
            let mut i = 0;
            while i < 8 {
                bytes[o..o + 8].copy_from_slice(&(lower >> (8 * i)).to_le_bytes());
                let rest = drop >> (8 * i);
                if rest == 0 {
                    o += 8 - i;
                    break;
                }
                let j = i + rest.trailing_zeros() as usize / 8;
                o += j - i;
                let run = ((kept >> (8 * j)).trailing_zeros() as usize / 8).min(8 - j);
                skip(run, o, &mut shifts, &mut removed);
                i = j + run;
            }
        }
        bytes.truncate(o);
        for &c in words.remainder() {
            fold_byte(c, &mut bytes, &mut shifts, &mut removed, &mut after_space);
        }
        Self { bytes, shifts }
    }

    /// The offset in the text of offset `at` of the folded bytes.
    pub(crate) fn original(&self, at: usize) -> usize {
        let k = self
            .shifts
            .partition_point(|&(from, _)| usize::try_from(from).is_ok_and(|f| f <= at));
        at + k.checked_sub(1).map_or(0, |k| {
            usize::try_from(self.shifts[k].1).unwrap_or(usize::MAX - at)
        })
    }
}

/// Records `n` bytes of whitespace left out where the folded bytes have reached `at`.
fn skip(n: usize, at: usize, shifts: &mut Vec<(u32, u32)>, removed: &mut u32) {
    *removed = removed.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    let at = u32::try_from(at).unwrap_or(u32::MAX);
    match shifts.last_mut() {
        Some(last) if last.0 == at => last.1 = *removed,
        _ => shifts.push((at, *removed)),
    }
}

fn fold_byte(
    c: u8,
    bytes: &mut Vec<u8>,
    shifts: &mut Vec<(u32, u32)>,
    removed: &mut u32,
    after_space: &mut bool,
) {
    if is_space(c) {
        if *after_space {
            skip(1, bytes.len(), shifts, removed);
            return;
        }
        bytes.push(b' ');
        *after_space = true;
    } else {
        bytes.push(c.to_ascii_lowercase());
        *after_space = false;
    }
}

impl Triggers {
    /// `patterns` as [`fold_trigger`] leaves them.
    pub(crate) fn new(patterns: &[String]) -> Result<Self, String> {
        let nfa = NFA::builder()
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(patterns)
            .map_err(|e| e.to_string())?;
        // One class per byte that occurs in a trigger; every other byte leads where
        // any other does (back towards the start), so they share class 0 when there
        // are any.
        let mut used = [false; 256];
        for p in patterns {
            for &b in p.as_bytes() {
                used[usize::from(b)] = true;
            }
        }
        let mut classes = [0u8; 256];
        let mut reps: Vec<u8> = Vec::new();
        if let Some(other) = (0..=255u8).find(|&b| !used[usize::from(b)]) {
            reps.push(other);
        }
        for b in 0..=255u8 {
            if used[usize::from(b)] {
                classes[usize::from(b)] = u8::try_from(reps.len()).map_err(|e| e.to_string())?;
                reps.push(b);
            }
        }
        let shift = reps.len().next_power_of_two().trailing_zeros();
        // Every state the search can reach, from the start, breadth first.
        let start = nfa.start_state(Anchored::No).map_err(|e| e.to_string())?;
        let mut order = vec![start];
        let mut seen: HashMap<StateID, usize> = HashMap::from([(start, 0)]);
        let mut i = 0;
        while i < order.len() {
            let sid = order[i];
            for &b in &reps {
                let t = nfa.next_state(Anchored::No, sid, b);
                if let std::collections::hash_map::Entry::Vacant(e) = seen.entry(t) {
                    e.insert(order.len());
                    order.push(t);
                }
            }
            i += 1;
        }
        // Numbered again: the states that match last, so that one comparison tells.
        let n = order.len();
        let mut id = vec![0u32; n];
        let mut k = 0u32;
        let mut first_match = 0;
        for matches in [false, true] {
            first_match = k;
            for (j, &sid) in order.iter().enumerate() {
                if nfa.is_match(sid) == matches {
                    id[j] = k;
                    k += 1;
                }
            }
        }
        // The rows, written straight into the table's own width (the automaton is
        // asked again rather than its answers kept: a copy of them all would be the
        // largest allocation of the build).
        fn rows<T: Copy + Default + TryFrom<u32>>(
            nfa: &NFA,
            order: &[StateID],
            id: &[u32],
            seen: &HashMap<StateID, usize>,
            reps: &[u8],
            shift: u32,
        ) -> Result<Box<[T]>, String> {
            let width = 1usize << shift;
            let mut rows = vec![T::default(); order.len() * width];
            for (j, &sid) in order.iter().enumerate() {
                let row = (id[j] as usize) << shift;
                for (c, &b) in reps.iter().enumerate() {
                    let to = id[seen[&nfa.next_state(Anchored::No, sid, b)]];
                    rows[row + c] = T::try_from(to).map_err(|_| "state ID out of range")?;
                }
            }
            Ok(rows.into_boxed_slice())
        }
        let table = if n <= usize::from(u16::MAX) + 1 {
            Table::Narrow(rows(&nfa, &order, &id, &seen, &reps, shift)?)
        } else {
            Table::Wide(rows(&nfa, &order, &id, &seen, &reps, shift)?)
        };
        // The match states in the order they were numbered.
        let mut ends = vec![0u32];
        let mut matched = Vec::new();
        for &sid in order.iter().filter(|&&sid| nfa.is_match(sid)) {
            for m in 0..nfa.match_len(sid) {
                matched.push(nfa.match_pattern(sid, m).as_u32());
            }
            ends.push(u32::try_from(matched.len()).map_err(|e| e.to_string())?);
        }
        Ok(Self {
            classes,
            shift,
            table,
            start: id[0],
            first_match,
            ends,
            matched,
            patterns: patterns.iter().map(|p| p.as_bytes().to_vec()).collect(),
            overlap: patterns
                .iter()
                .map(String::len)
                .max()
                .unwrap_or(0)
                .saturating_sub(1),
        })
    }

    /// Heap bytes held by the table and the triggers' copies.
    pub(crate) fn memory_usage(&self) -> usize {
        let table = match &self.table {
            Table::Narrow(t) => t.len() * 2,
            Table::Wide(t) => t.len() * 4,
        };
        table
            + (self.ends.len() + self.matched.len()) * 4
            + self.patterns.iter().map(Vec::capacity).sum::<usize>()
    }

    /// How many triggers there are.
    pub(crate) fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Trigger `t`, as it is matched.
    pub(crate) fn pattern(&self, t: usize) -> &[u8] {
        &self.patterns[t]
    }

    /// Every occurrence in `hay`, in order of the part it starts in and, within a
    /// part, of its end.
    pub(crate) fn find_all(&self, hay: &[u8], out: &mut Vec<Hit>) {
        match &self.table {
            Table::Narrow(t) => self.find_in(t, hay, out),
            Table::Wide(t) => self.find_in(t, hay, out),
        }
    }

    /// The state after `s` on byte `b`.
    #[inline(always)]
    fn step<T: Id>(&self, table: &[T], s: u32, b: u8) -> u32 {
        table[(s as usize) << self.shift | usize::from(self.classes[usize::from(b)])].get()
    }

    fn find_in<T: Id>(&self, table: &[T], hay: &[u8], out: &mut Vec<Hit>) {
        let n = hay.len();
        if n < LANES * MIN_PART {
            self.go_on(table, hay, self.start, 0, n, n, out);
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
        let m = self.first_match;
        let mut i = 0;
        while i < steps {
            while i < steps {
                s0 = self.step(table, s0, l0[i]);
                s1 = self.step(table, s1, l1[i]);
                s2 = self.step(table, s2, l2[i]);
                s3 = self.step(table, s3, l3[i]);
                if (s0 >= m) | (s1 >= m) | (s2 >= m) | (s3 >= m) {
                    break;
                }
                i += 1;
            }
            if i == steps {
                break;
            }
            for (k, s) in [s0, s1, s2, s3].into_iter().enumerate() {
                self.report(s, bounds[k] + i, bounds[k + 1], &mut parts[k]);
            }
            i += 1;
        }
        let sid = [s0, s1, s2, s3];
        for k in 0..LANES {
            self.go_on(
                table,
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
    #[allow(
        clippy::too_many_arguments,
        reason = "the loop's whole state, passed once"
    )]
    fn go_on<T: Id>(
        &self,
        table: &[T],
        hay: &[u8],
        mut s: u32,
        from: usize,
        to: usize,
        owns: usize,
        out: &mut Vec<Hit>,
    ) {
        for (at, &b) in hay.iter().enumerate().take(to).skip(from) {
            s = self.step(table, s, b);
            if s >= self.first_match {
                self.report(s, at, owns, out);
            }
        }
    }

    /// The occurrences that end at `at` (inclusive) in state `s`.
    #[inline]
    fn report(&self, s: u32, at: usize, owns: usize, out: &mut Vec<Hit>) {
        let Some(i) = s.checked_sub(self.first_match) else {
            return;
        };
        let i = i as usize;
        let (a, b) = (self.ends[i] as usize, self.ends[i + 1] as usize);
        for &pattern in &self.matched[a..b] {
            let pattern = pattern as usize;
            let end = at + 1;
            let start = end - self.patterns[pattern].len();
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

    #[test]
    fn an_automaton_past_sixteen_bit_ids_finds_the_same() {
        // 8,000 random 12-letter strings: about 90,000 states, more than 16-bit IDs
        // number.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut letter = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + u8::try_from(x % 26).unwrap())
        };
        let patterns: Vec<String> = (0..8000)
            .map(|_| (0..12).map(|_| letter()).collect())
            .collect();
        let t = Triggers::new(&patterns).unwrap();
        assert!(matches!(t.table, Table::Wide(_)));
        let mut hay: Vec<u8> = (0..20_000).map(|_| letter() as u8).collect();
        for (k, p) in patterns.iter().step_by(97).enumerate() {
            let at = k * 211 % (hay.len() - 12);
            hay[at..at + 12].copy_from_slice(p.as_bytes());
        }
        let want = oracle(&patterns, &hay);
        assert!(want.len() >= 80, "{}", want.len());
        assert_eq!(found(&patterns, &hay), want);
    }

    /// Folding byte by byte, with the original offset of every folded byte.
    fn fold_slowly(text: &[u8]) -> (Vec<u8>, Vec<usize>) {
        let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
        let (mut out, mut at) = (Vec::new(), Vec::new());
        for (i, &c) in text.iter().enumerate() {
            if ws(c) {
                if i > 0 && ws(text[i - 1]) {
                    continue;
                }
                out.push(b' ');
            } else {
                out.push(c.to_ascii_lowercase());
            }
            at.push(i);
        }
        (out, at)
    }

    #[test]
    fn a_space_in_a_trigger_stands_for_any_run_of_whitespace() {
        let patterns = vec![fold_trigger("Do  Not"), fold_trigger("if\t")];
        let text = b"Please DO \t\r\n  NOT tell.  If\n\n\nyou ask, if   not.";
        let f = Folded::new(text);
        let mut hits = Vec::new();
        Triggers::new(&patterns)
            .unwrap()
            .find_all(&f.bytes, &mut hits);
        let spans: Vec<&[u8]> = hits
            .iter()
            .map(|h| &text[f.original(h.start)..f.original(h.end - 1) + 1])
            .collect();
        assert_eq!(spans, [&b"DO \t\r\n  NOT"[..], b"If\n", b"if "]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn folding_keeps_the_way_back(
            text in proptest::collection::vec(
                prop_oneof![
                    Just(b' '), Just(b'\t'), Just(b'\n'), Just(0x0b), Just(0x0c), Just(b'\r'),
                    Just(b'A'), Just(b'z'), Just(b'Z' + 1), Just(b'@'), Just(0xc3), Just(0x80)
                ],
                0..200,
            ),
        ) {
            let (want, at) = fold_slowly(&text);
            let f = Folded::new(&text);
            prop_assert_eq!(&f.bytes, &want);
            for (i, &o) in at.iter().enumerate() {
                prop_assert_eq!(f.original(i), o);
            }
        }

        #[test]
        fn every_occurrence_is_found_exactly_once(
            patterns in proptest::collection::vec("[abc]{1,6}", 1..12),
            hay in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c'), Just(b'd')], 0..6000),
        ) {
            prop_assert_eq!(found(&patterns, &hay), oracle(&patterns, &hay));
        }
    }
}
