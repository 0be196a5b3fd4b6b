//! Triggers derived from a rule's pattern: a set of literal strings one of which every
//! text the pattern matches holds, in the form the trigger scan matches (ASCII
//! lowercase, each run of whitespace one space).
//!
//! Hand-written trigger lists miss spellings their patterns allow (`ignoring` beside
//! `ignore`, whitespace before a colon where the pattern has `\s*`), and a rule never
//! sees a text that holds none of its triggers. Where the pattern allows it, the
//! derived set is added to the rule's own triggers, which makes them complete.
//!
//! The derivation walks the pattern's syntax tree. A part whose language is small and
//! literal (a word, a few alternatives, optional whitespace) has an *exact* set of
//! strings; consecutive exact parts combine into the strings of their concatenation;
//! a part that must occur (not under `?` or `*`) passes its required set up. Of the
//! sets found, the one whose strings are rarest in ordinary text wins.

use std::collections::BTreeSet;

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::triggers::{fold, is_space};

/// Exact sets larger than this are not followed.
const MAX_EXACT: usize = 64;
/// A required set larger than this is of no use as triggers.
const MAX_REQUIRED: usize = 256;
/// Consecutive parts are combined until every string is this long.
const MAX_STRETCH: usize = 32;
/// Every derived trigger is at least this long: shorter strings occur everywhere.
const MIN_LEN: usize = 3;

type Set = BTreeSet<Vec<u8>>;

/// What is known of one part of a pattern.
struct Info {
    /// Its whole language, folded, when small.
    exact: Option<Set>,
    /// Strings one of which each of its matches holds, each at least [`MIN_LEN`] long
    /// or covered by one of the rule's own triggers.
    required: Option<Set>,
}

/// The triggers `pattern` (a byte-oriented pattern, as the rule compiles it) needs
/// beside the rule's own (`hand`, folded) so that every text it matches holds one:
/// `Some` of the derived strings that hold none of the rule's own triggers (often
/// none), or `None` when no set of strings of at least three bytes, and at most a few
/// hundred, is found.
///
/// Where the pattern offers several sets, the one whose strings are rarest wins, and
/// strings the rule's own triggers already cover count as free: a derived `the ` or
/// `to ` would wake the rule everywhere.
pub(crate) fn derive(pattern: &str, hand: &[String]) -> Option<Vec<String>> {
    let hir = parse(pattern).ok()?;
    let cx = Cx {
        hand: hand.iter().map(|h| h.as_bytes().to_vec()).collect(),
    };
    let set = info(&hir, &cx).required?;
    set.into_iter()
        .filter(|s| !cx.covered(s))
        .map(|s| String::from_utf8(s).ok().filter(|s| s.is_ascii()))
        .collect()
}

/// A set of bytes of folded text.
pub(crate) type Bytes = [bool; 256];

/// How far a match of a pattern can reach, measured on text folded as the trigger scan
/// folds it (each run of whitespace one space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extent {
    /// The longest a match can be: `None` when unbounded.
    pub(crate) bytes: Option<usize>,
    /// The most spaces a match can hold: `None` when unbounded. A part repeated without
    /// bound that cannot match whitespace (`\w+`, `\S+`, `-{3,}`) stays within one
    /// word, so a pattern unbounded in bytes is often bounded in words.
    pub(crate) spaces: Option<usize>,
    /// When both are unbounded: the bytes no part repeated without bound can match
    /// (a line of `[ \t>*#-]*` stops at a letter), and the most of them a match can
    /// hold; `None` when every byte can be repeated without bound (`[^\n]*`).
    pub(crate) stops: Option<(Box<Bytes>, usize)>,
}

/// The [`Extent`] of `pattern` (a byte-oriented pattern, as the rule compiles it);
/// unbounded every way when it does not parse.
///
/// A part that can only match whitespace counts one byte and one space however often
/// it repeats (`\s+` is one space folded).
pub(crate) fn extent(pattern: &str) -> Extent {
    let hir = parse(pattern);
    let Ok(h) = hir else {
        return Extent {
            bytes: None,
            spaces: None,
            stops: None,
        };
    };
    let every = [true; 256];
    let mut space = [false; 256];
    space[usize::from(b' ')] = true;
    let (bytes, spaces) = (most(&h, &every), most(&h, &space));
    let stops = if bytes.is_none() && spaces.is_none() {
        let mut free = [false; 256];
        repeated(&h, &mut free);
        // What folded text can hold: no capitals, no whitespace but the space.
        let stops: Bytes = std::array::from_fn(|b| {
            let b = u8::try_from(b).unwrap_or(0);
            let folded_away = b.is_ascii_uppercase() || (is_space(b) && b != b' ');
            !free[usize::from(b)] && !folded_away
        });
        stops
            .contains(&true)
            .then(|| most(&h, &stops).map(|k| (Box::new(stops), k)))
            .flatten()
    } else {
        None
    };
    Extent {
        bytes,
        spaces,
        stops,
    }
}

/// The most bytes of `set` a match of `h` can hold, folded; `None` when unbounded.
fn most(h: &Hir, set: &Bytes) -> Option<usize> {
    if blank(h) {
        // Whitespace only, however long: one run, one space folded.
        return Some(usize::from(
            set[usize::from(b' ')] && h.properties().maximum_len() != Some(0),
        ));
    }
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(0),
        HirKind::Literal(l) => Some(fold(&l.0).iter().filter(|&&b| set[usize::from(b)]).count()),
        HirKind::Class(c) => {
            let mut members = [false; 256];
            class_bytes(c, &mut members);
            let any = (0..256).any(|b| members[b] && set[b]);
            // One byte, or one character of up to four.
            Some(usize::from(any) * if matches!(c, Class::Unicode(_)) { 4 } else { 1 })
        }
        HirKind::Capture(c) => most(&c.sub, set),
        HirKind::Repetition(r) => match most(&r.sub, set)? {
            0 => Some(0),
            n => n.checked_mul(usize::try_from(r.max?).ok()?),
        },
        HirKind::Concat(v) => v
            .iter()
            .try_fold(0usize, |acc, x| acc.checked_add(most(x, set)?)),
        HirKind::Alternation(v) => v
            .iter()
            .try_fold(0usize, |acc, x| Some(acc.max(most(x, set)?))),
    }
}

/// Adds to `free` the folded bytes of every part of `h` repeated without bound (but
/// whitespace-only parts, which fold to one space).
fn repeated(h: &Hir, free: &mut Bytes) {
    match h.kind() {
        HirKind::Repetition(r) if r.max.is_none() && !blank(h) => members(&r.sub, free),
        HirKind::Repetition(r) => repeated(&r.sub, free),
        HirKind::Capture(c) => repeated(&c.sub, free),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().for_each(|x| repeated(x, free)),
        _ => {}
    }
}

/// Adds to `out` every folded byte a match of `h` can hold.
fn members(h: &Hir, out: &mut Bytes) {
    match h.kind() {
        HirKind::Literal(l) => fold(&l.0).iter().for_each(|&b| out[usize::from(b)] = true),
        HirKind::Class(c) => class_bytes(c, out),
        HirKind::Repetition(r) => members(&r.sub, out),
        HirKind::Capture(c) => members(&c.sub, out),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().for_each(|x| members(x, out)),
        HirKind::Empty | HirKind::Look(_) => {}
    }
}

/// Adds to `out` the folded bytes of a class (every byte from 0x80 for a Unicode class
/// beyond ASCII: those are the bytes of its characters).
fn class_bytes(c: &Class, out: &mut Bytes) {
    let mut add = |b: u8| out[usize::from(fold(&[b])[0])] = true;
    match c {
        Class::Bytes(c) => c
            .ranges()
            .iter()
            .for_each(|r| (r.start()..=r.end()).for_each(&mut add)),
        Class::Unicode(c) => {
            for r in c.ranges() {
                (r.start()..=r.end().min('\u{7f}'))
                    .filter_map(|ch| u8::try_from(ch).ok())
                    .for_each(&mut add);
                if r.end() > '\u{7f}' {
                    (0x80..=0xff).for_each(&mut add);
                }
            }
        }
    }
}

/// Whether every string `h` matches is whitespace (or empty).
fn blank(h: &Hir) -> bool {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(l) => l.0.iter().all(|&b| is_space(b)),
        HirKind::Class(Class::Bytes(c)) => c
            .ranges()
            .iter()
            .all(|r| (r.start()..=r.end()).all(is_space)),
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .all(|r| (r.start()..=r.end()).all(|ch| u8::try_from(ch).is_ok_and(is_space))),
        HirKind::Capture(c) => blank(&c.sub),
        HirKind::Repetition(r) => blank(&r.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().all(blank),
    }
}

/// `pattern` parsed as the rules compile it: bytes, ASCII classes, matches that need
/// not be UTF-8.
pub(crate) fn parse(pattern: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())
}

/// The rule's own triggers, folded.
struct Cx {
    hand: Vec<Vec<u8>>,
}

impl Cx {
    /// Whether every text that holds `s` holds one of the rule's own triggers.
    fn covered(&self, s: &[u8]) -> bool {
        self.hand
            .iter()
            .any(|h| !h.is_empty() && s.windows(h.len()).any(|w| w == h.as_slice()))
    }
}

/// Every concatenation of a string of `a` with one of `b`, folded; `None` when there
/// would be more than `max`.
fn product(a: &Set, b: &Set, max: usize) -> Option<Set> {
    if a.len().saturating_mul(b.len()) > max {
        return None;
    }
    let mut out = Set::new();
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.insert(fold(&s));
        }
    }
    Some(out)
}

/// A set usable as triggers: not empty, not too large, no string too short (unless
/// one of the rule's own triggers covers it: the author chose that one).
fn usable(s: &Set, cx: &Cx) -> bool {
    !s.is_empty()
        && s.len() <= MAX_REQUIRED
        && s.iter().all(|x| x.len() >= MIN_LEN || cx.covered(x))
}

/// How often a byte occurs in ordinary text, roughly (English prose and source code).
fn byte_frequency(b: u8) -> f64 {
    match b {
        b' ' => 0.17,
        b'e' => 0.10,
        b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' | b'h' => 0.06,
        b'a'..=b'z' => 0.02,
        _ => 0.01,
    }
}

/// What a required set costs as triggers: how often its strings occur in ordinary
/// text (each byte independent, a rough estimate), plus a little per string for the
/// automaton. Strings the rule's own triggers cover cost nothing: they add no wake-up.
fn cost(s: &Set, cx: &Cx) -> f64 {
    s.iter()
        .filter(|x| !cx.covered(x))
        .map(|x| x.iter().map(|&b| byte_frequency(b)).product::<f64>() + 1e-9)
        .sum()
}

/// The better of two required sets: the cheaper, then the fewer strings.
fn better(a: Option<Set>, b: Option<Set>, cx: &Cx) -> Option<Set> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let (ca, cb) = (cost(&a, cx), cost(&b, cx));
            Some(if cb < ca || (cb == ca && b.len() < a.len()) {
                b
            } else {
                a
            })
        }
        (a, b) => a.or(b),
    }
}

fn info(h: &Hir, cx: &Cx) -> Info {
    let from_exact = |exact: Option<Set>| {
        let required = exact.clone().filter(|e| usable(e, cx));
        Info { exact, required }
    };
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => from_exact(Some(Set::from([Vec::new()]))),
        HirKind::Literal(l) => from_exact(Some(Set::from([fold(&l.0)]))),
        HirKind::Class(c) => {
            // A class of more than a few hundred characters is no literal; don't walk it.
            let size: u64 = match c {
                Class::Bytes(c) => c
                    .ranges()
                    .iter()
                    .map(|r| u64::from(r.end() - r.start()) + 1)
                    .sum(),
                Class::Unicode(c) => c
                    .ranges()
                    .iter()
                    .map(|r| u64::from(r.end()) - u64::from(r.start()) + 1)
                    .sum(),
            };
            if size > 256 {
                return from_exact(None);
            }
            let bytes: Vec<u8> = match c {
                Class::Bytes(c) => c
                    .ranges()
                    .iter()
                    .flat_map(|r| r.start()..=r.end())
                    .collect(),
                Class::Unicode(c) => c
                    .ranges()
                    .iter()
                    .flat_map(|r| r.start()..=r.end())
                    .map(|ch| u8::try_from(ch).unwrap_or(0x80))
                    .collect(),
            };
            let folded: Set = bytes.iter().map(|&b| fold(&[b])).collect();
            // Whitespace folds to one space: `\s` is `{" "}`, `[\s_]` is `{" ", "_"}`.
            let exact = (folded.len() <= 8 && bytes.iter().all(|&b| b < 0x80)).then_some(folded);
            from_exact(exact)
        }
        HirKind::Capture(c) => info(&c.sub, cx),
        HirKind::Repetition(r) => {
            let sub = info(&r.sub, cx);
            let exact = sub.exact.as_ref().and_then(|e| {
                if e == &Set::from([b" ".to_vec()]) {
                    // Whitespace repeated is still one run.
                    return Some(if r.min == 0 {
                        Set::from([Vec::new(), b" ".to_vec()])
                    } else {
                        e.clone()
                    });
                }
                let max = r.max.filter(|&m| m <= 3)?;
                let mut all = Set::new();
                let mut power = Set::from([Vec::new()]);
                for k in 0..=max {
                    if k >= r.min {
                        all.extend(power.iter().cloned());
                    }
                    if k < max {
                        power = product(&power, e, MAX_EXACT)?;
                    }
                }
                (all.len() <= MAX_EXACT).then_some(all)
            });
            let required = if r.min >= 1 { sub.required } else { None };
            Info {
                required: better(required, exact.clone().filter(|e| usable(e, cx)), cx),
                exact,
            }
        }
        HirKind::Alternation(v) => {
            let parts: Vec<Info> = v.iter().map(|x| info(x, cx)).collect();
            let mut exact = Some(Set::new());
            let mut required = Some(Set::new());
            for p in parts {
                exact = match (exact, p.exact) {
                    (Some(mut a), Some(b)) if a.len() + b.len() <= MAX_EXACT => {
                        a.extend(b);
                        Some(a)
                    }
                    _ => None,
                };
                required = match (required, p.required) {
                    (Some(mut a), Some(b)) => {
                        a.extend(b);
                        Some(a).filter(|a| a.len() <= MAX_REQUIRED)
                    }
                    _ => None,
                };
            }
            Info {
                required: better(required, exact.clone().filter(|e| usable(e, cx)), cx),
                exact,
            }
        }
        HirKind::Concat(v) => {
            let parts: Vec<Info> = v.iter().map(|x| info(x, cx)).collect();
            let mut required = None;
            for p in &parts {
                required = better(required, p.required.clone(), cx);
            }
            // Runs of consecutive parts with exact sets: the strings of each stretch.
            for i in 0..parts.len() {
                let mut acc = Set::from([Vec::new()]);
                for p in &parts[i..] {
                    // Strings this long are rare enough: a longer stretch adds nothing
                    // (and would make a long pattern's walk quadratic).
                    if acc.iter().all(|x| x.len() >= MAX_STRETCH) {
                        break;
                    }
                    let Some(e) = &p.exact else { break };
                    let Some(next) = product(&acc, e, MAX_REQUIRED) else {
                        break;
                    };
                    acc = next;
                    if usable(&acc, cx) {
                        required = better(required, Some(acc.clone()), cx);
                    }
                }
            }
            let mut exact = Some(Set::from([Vec::new()]));
            for p in &parts {
                exact = match (&exact, &p.exact) {
                    (Some(a), Some(b)) => product(a, b, MAX_EXACT),
                    _ => None,
                };
            }
            Info { exact, required }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Extent, derive, extent};

    fn e(p: &str) -> (Option<usize>, Option<usize>) {
        let Extent { bytes, spaces, .. } = extent(p);
        (bytes, spaces)
    }

    /// The bytes a match's unbounded parts cannot hold, and the most of them it holds.
    fn stops(p: &str) -> Option<(String, usize)> {
        extent(p).stops.map(|(set, k)| {
            let printable: String = (b' '..=b'~')
                .filter(|&b| set[usize::from(b)])
                .map(char::from)
                .collect();
            (printable, k)
        })
    }

    #[test]
    fn a_line_of_markers_stops_at_the_first_letters() {
        let (set, k) = stops(r"(?m)^[ \t>*#-]*(?:user|system)\s*:\s*\S").unwrap();
        assert!(!set.contains(['>', '#', ' ']) && set.contains(['u', ':', 'a', '.']));
        assert!(!set.contains('A'), "folded text has no capitals");
        // `user` or `system` (6), `:` and the one byte after, no whitespace run.
        assert_eq!(k, 8, "{set}");
        assert_eq!(stops(r"x[^\n]*y"), None, "every byte may repeat: no stop");
        assert_eq!(stops(r"ab"), None, "bounded: windows by bytes");
    }

    #[test]
    fn a_match_is_measured_as_the_trigger_scan_sees_text() {
        assert_eq!(
            e(r"do\s+not\s+tell"),
            (Some(11), Some(2)),
            "whitespace runs are one space"
        );
        assert_eq!(e(r"(?:[^.\n]|\.\S){0,120}"), (Some(240), Some(120)));
        assert_eq!(e(r"(?:\w+\s+){0,3}x"), (None, Some(3)), "words stay words");
        assert_eq!(e(r"eyJ[\w-]{17,}\.[\w-]+"), (None, Some(0)));
        assert_eq!(
            e(r"a[^\n]*b"),
            (None, None),
            "a line can hold any number of words"
        );
        assert_eq!(e(r"(?:[a-z]{16,}\s+)+"), (None, None));
        assert_eq!(e(r"(?:x|y\s*z)"), (Some(3), Some(1)));
        assert_eq!(e(r"\s*"), (Some(1), Some(1)));
    }

    fn d(p: &str) -> Vec<String> {
        derive(p, &[]).unwrap_or_default()
    }

    #[test]
    fn words_with_whitespace_between_become_one_spaced_string() {
        assert_eq!(d(r"\bdo\s+not\s+tell\b"), ["do not tell"]);
        assert_eq!(
            d(r"\b(?:ignore|ignoring)\s+(?:all\s+)?rules"),
            [
                "ignore all rules",
                "ignore rules",
                "ignoring all rules",
                "ignoring rules"
            ],
            "four rare strings over two commoner ones"
        );
        assert_eq!(
            d(r"\b(?:do\s+not|don'?t)\s+tell"),
            ["do not tell", "don't tell", "dont tell"]
        );
    }

    #[test]
    fn optional_whitespace_gives_both_spellings() {
        assert_eq!(d(r"\bIMPORTANT\s*:"), ["important"]);
        assert_eq!(
            d(r"\bto\s*:\s*do"),
            ["to : do", "to :do", "to: do", "to:do"]
        );
    }

    #[test]
    fn every_branch_must_give_a_string() {
        assert_eq!(d(r"(?:abc|de)"), Vec::<String>::new());
        assert_eq!(d(r"x(?:abc|def)y"), ["xabcy", "xdefy"]);
        assert_eq!(
            d(r"(?:[sr]k_(?:live|test)_)[a-z]{20}"),
            ["k_live_", "k_test_"]
        );
    }

    #[test]
    fn what_may_be_absent_is_not_required() {
        assert_eq!(d(r"(?:hello)?[a-z]+"), Vec::<String>::new());
        assert_eq!(d(r"[^.]{0,40}"), Vec::<String>::new());
    }

    #[test]
    fn the_rules_own_triggers_steer_the_choice_and_are_not_repeated() {
        let p = r"\b(?:send|forward|wire)\b[^.]{0,120}\bto\s+\S+@";
        assert_eq!(d(p), ["forward", "send", "wire"], "alone: rarer than `to `");
        let own = ["send", "forward"].map(String::from);
        assert_eq!(derive(p, &own).unwrap(), ["wire"], "beside the rule's own");
        assert_eq!(
            derive(r"\b(?:ignore|ignoring)\b", &["ignor".into()]).unwrap(),
            Vec::<String>::new()
        );
    }
}
