//! Where a woken rule runs: as far around each occurrence of a trigger as a match
//! holding it can reach (decision 0011), measured on the folded text.
//!
//! Each rule's [`Reach`] is computed from its pattern when the pack loads
//! (`literals::extent`). A window is never a fixed size: a match the pattern can make
//! around a trigger always lies within the trigger's window, so windows decide only
//! where a pattern runs, never what it finds.

use crate::literals::Bytes;
use crate::triggers::Hit;

/// A rule whose triggers may miss some of its matches, woken by one, runs on this many
/// bytes either side of it (or its longest match, if longer).
const WINDOW: usize = 512;
/// Digit rules run on this many bytes either side of a long enough digit run (or as
/// far as their longest match, if longer).
const DIGIT_WINDOW: usize = 48;

/// Where a rule woken by a trigger runs, in the folded text's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Every match holds one of its triggers and is at most this long folded: from
    /// this far before the trigger's end to this far after its start holds every
    /// match the trigger is part of. A longer trigger is part of none.
    Exact(usize),
    /// Every match holds one of its triggers and at most this many spaces folded (its
    /// unbounded parts stay within words): from just after the space this many and
    /// one more before the trigger, to that many after it.
    Words(usize),
    /// Every match holds one of its triggers and at most this many of these bytes
    /// (those no part repeated without bound can match): from just after the one this
    /// many and one more before the trigger, to that many after it.
    Stops(Box<Bytes>, usize),
    /// Its own triggers may miss matches: this far either side of the trigger. (For a
    /// digit rule: this far either side of a run of digits, in the text's own bytes.)
    Near(usize),
    /// A match may be arbitrarily long: the whole text.
    Whole,
}

impl Reach {
    /// The reach of a rule with `pattern` (as compiled), whose triggers are `complete`
    /// (every match holds one) or which is woken by runs of digits.
    pub(crate) fn of(pattern: &str, complete: bool, digits: bool) -> Self {
        if digits {
            return match longest_unfolded(pattern) {
                Some(n) => Self::Near(n.max(DIGIT_WINDOW)),
                None => Self::Whole,
            };
        }
        let extent = crate::literals::extent(pattern);
        match (extent.bytes, extent.spaces, extent.stops, complete) {
            (Some(n), _, _, true) => Self::Exact(n),
            (None, Some(k), _, true) => Self::Words(k),
            (None, None, Some((stops, k)), true) => Self::Stops(stops, k),
            (Some(n), _, _, false) => Self::Near(n.max(WINDOW)),
            _ => Self::Whole,
        }
    }

    /// The window of folded text `f` where the rule runs for trigger occurrence `m`;
    /// `None` when the occurrence cannot be part of a match (longer than any).
    pub(crate) fn window(&self, m: &Hit, f: &[u8], walks: &mut Walks) -> Option<(usize, usize)> {
        Some(match self {
            Self::Exact(n) if m.end - m.start > *n => return None,
            Self::Exact(n) => (m.end.saturating_sub(*n), m.start + n),
            Self::Near(n) => (m.start.saturating_sub(*n), m.end + n),
            Self::Words(k) => walks.walk(&Bound::Spaces, *k, f, m),
            Self::Stops(stops, k) => walks.walk(&Bound::Set(stops), *k, f, m),
            Self::Whole => (0, f.len()),
        })
    }
}

/// The longest a match of `pattern` can be in the text's own bytes (`None` when
/// unbounded or when it does not parse).
fn longest_unfolded(pattern: &str) -> Option<usize> {
    crate::literals::parse(pattern)
        .ok()?
        .properties()
        .maximum_len()
}

/// What bounds a word or stop window: spaces, or the bytes of a set.
enum Bound<'a> {
    Spaces,
    Set(&'a Bytes),
}

impl Bound<'_> {
    /// The index of the `k+1`-th bounding byte of `b`.
    fn nth(&self, b: &[u8], k: usize) -> Option<usize> {
        match self {
            Self::Spaces => crate::words::nth_space(b, k),
            Self::Set(s) => (0..b.len()).filter(|&i| s[usize::from(b[i])]).nth(k),
        }
    }

    /// The index of the `k+1`-th bounding byte of `b` counting back from its end.
    fn nth_back(&self, b: &[u8], k: usize) -> Option<usize> {
        match self {
            Self::Spaces => crate::words::nth_space_back(b, k),
            Self::Set(s) => (0..b.len()).rev().filter(|&i| s[usize::from(b[i])]).nth(k),
        }
    }

    fn count(&self, b: &[u8]) -> usize {
        match self {
            Self::Spaces => crate::words::count_spaces(b),
            Self::Set(s) => b.iter().filter(|&&c| s[usize::from(c)]).count(),
        }
    }
}

/// One rule's walks over one text: its last hit and the window found for it, and the
/// bytes looked at so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct Walks {
    /// The last hit's start and end, and its window's, in folded offsets.
    last: Option<(usize, usize, usize, usize)>,
    walked: usize,
}

impl Walks {
    /// Whether the walks have looked at more than half of a text of `len` bytes: the
    /// rule then runs on the whole text, so that no order of hits makes the walks
    /// quadratic (hits in order walk on from the last window).
    pub(crate) fn spent(&self, len: usize) -> bool {
        self.walked > len / 2 + WINDOW
    }

    /// The window of a hit for a rule whose matches hold at most `k` bounding bytes:
    /// from just after the `k+1`-th before it to the `k+1`-th after it. A hit that
    /// follows the last one inside its window walks on from where that walk ended.
    fn walk(&mut self, bound: &Bound<'_>, k: usize, f: &[u8], m: &Hit) -> (usize, usize) {
        let (lo, hi) = match self.last {
            Some((start, end, lo, hi)) if m.start >= start && m.end >= end && m.start <= hi => {
                // The last window's start still bounds this one (it can only move on);
                // its end moves on by the bounding bytes between the two hits.
                let d = bound.count(&f[end..m.end]);
                self.walked += m.end - end;
                let hi = if d == 0 || hi >= f.len() {
                    hi
                } else {
                    let from = hi + 1;
                    let hi = bound.nth(&f[from..], d - 1).map_or(f.len(), |i| from + i);
                    self.walked += hi - from;
                    hi
                };
                (lo, hi)
            }
            _ => {
                let lo = bound.nth_back(&f[..m.start], k).map_or(0, |i| i + 1);
                let hi = bound.nth(&f[m.end..], k).map_or(f.len(), |i| m.end + i);
                self.walked += (m.start - lo) + (hi - m.end);
                (lo, hi)
            }
        };
        self.last = Some((m.start, m.end, lo, hi));
        (lo, hi)
    }
}

/// `windows` sorted, with those that overlap or touch made one.
pub(crate) fn merge(windows: &mut Vec<(usize, usize)>) {
    windows.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(windows.len());
    for &(a, b) in windows.iter() {
        match out.last_mut() {
            Some(last) if last.1 >= a => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *windows = out;
}
