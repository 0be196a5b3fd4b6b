//! How a rule's pattern is compiled: folded as the text it runs on is, lowercased for
//! case-insensitive rules, built as a full regex (which reports where matches start
//! and what groups hold), and — where it has long counted gaps — screened by a relaxed
//! copy that only tells whether it may match (decision 0017).

use regex_automata::meta::Regex;
use regex_automata::util::pool::Pool;
use regex_automata::{Input, hybrid};

/// Counted repetitions with an upper bound at least this large are what make a lazy
/// DFA thrash (every start inside the count is a state of its own): a rule with such
/// counts is screened by a relaxed copy of its pattern in which they are unbounded.
pub(crate) const RELAX_FROM: u32 = 24;
/// `pattern` compiled as the rules are: bytes, ASCII classes, no UTF-8 requirement,
/// the automata's memory bounded.
pub(crate) fn build(pattern: &str, size: usize) -> Result<Regex, String> {
    use regex_automata::util::syntax;
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            Regex::config()
                .utf8_empty(false)
                .nfa_size_limit(Some(size))
                .hybrid_cache_capacity(1 << 22),
        )
        .build(pattern)
        .map_err(|e| e.to_string())
}

/// `patterns` as one automaton that tells which of them match a text (each as
/// [`build`] compiles it).
pub(crate) fn build_set(patterns: &[&str], size: usize) -> Result<Regex, String> {
    use regex_automata::util::syntax;
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            Regex::config()
                .match_kind(regex_automata::MatchKind::All)
                .utf8_empty(false)
                .nfa_size_limit(Some(size))
                .hybrid_cache_capacity(1 << 22),
        )
        .build_many(patterns)
        .map_err(|e| e.to_string())
}

/// `pattern`'s forward NFA as [`build`] compiles it first: what can fail in a build
/// (syntax, the size limit) fails here.
pub(crate) fn forward_nfa(
    pattern: &str,
    size: usize,
) -> Result<regex_automata::nfa::thompson::NFA, String> {
    use regex_automata::nfa::thompson;
    thompson::Compiler::new()
        .syntax(
            regex_automata::util::syntax::Config::new()
                .unicode(false)
                .utf8(false),
        )
        .configure(thompson::Config::new().nfa_size_limit(Some(size)))
        .build(pattern)
        .map_err(|e| e.to_string())
}

/// A pattern as the text it runs on is normalised: each run of non-ASCII characters
/// (never regex syntax) is put through [`crate::normalize::normalize`], so that a
/// literal written with accents, kana voicing marks, `й` or Hangul syllables matches
/// text, which loses them before matching.
pub(crate) fn fold_like_text(pattern: &str) -> std::borrow::Cow<'_, str> {
    if pattern.is_ascii() {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find(|c: char| !c.is_ascii()) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(|c: char| c.is_ascii()).unwrap_or(tail.len());
        out.push_str(crate::normalize::normalize(&tail[..end]).text());
        rest = &tail[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// The pattern with every counted repetition whose upper bound is at least
/// [`RELAX_FROM`] made unbounded (`{0,120}` becomes `*`), compiled; `None` when it has
/// none. Its language contains the pattern's, so where it does not match, neither does
/// the pattern.
pub(crate) fn relax(pattern: &str) -> Result<Option<Screen>, String> {
    use regex_syntax::hir::{Hir, HirKind, Repetition};
    fn walk(h: &Hir, changed: &mut bool) -> Hir {
        match h.kind() {
            HirKind::Repetition(r) => {
                let max = match r.max {
                    Some(m) if m >= RELAX_FROM => {
                        *changed = true;
                        None
                    }
                    m => m,
                };
                Hir::repetition(Repetition {
                    min: r.min,
                    max,
                    greedy: r.greedy,
                    sub: Box::new(walk(&r.sub, changed)),
                })
            }
            HirKind::Capture(c) => {
                let mut c = c.clone();
                c.sub = Box::new(walk(&c.sub, changed));
                Hir::capture(c)
            }
            HirKind::Concat(v) => Hir::concat(v.iter().map(|x| walk(x, changed)).collect()),
            HirKind::Alternation(v) => {
                Hir::alternation(v.iter().map(|x| walk(x, changed)).collect())
            }
            _ => h.clone(),
        }
    }
    let hir = crate::literals::parse(pattern)?;
    let mut changed = false;
    let relaxed = walk(&hir, &mut changed);
    if !changed {
        return Ok(None);
    }
    Screen::new(&relaxed).map(Some)
}

/// The caches of a screen's lazy DFA, one per thread at a time.
type Caches = Pool<hybrid::dfa::Cache, Box<dyn Fn() -> hybrid::dfa::Cache + Send + Sync>>;

/// A pattern that only tells whether it may match: the forward lazy DFA alone, which
/// is what a full regex would run to answer that too, without the reverse automaton
/// and capture states a full regex keeps to report where its matches start (half its
/// memory).
pub(crate) struct Screen {
    dfa: hybrid::dfa::DFA,
    caches: Caches,
}

impl Screen {
    fn new(hir: &regex_syntax::hir::Hir) -> Result<Self, String> {
        use regex_automata::nfa::thompson;
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .nfa_size_limit(Some(1 << 24))
                    .which_captures(thompson::WhichCaptures::None),
            )
            .build_from_hir(hir)
            .map_err(|e| e.to_string())?;
        // As the full regex configures its own lazy DFA: a prefilter of the literals
        // every match starts with, a bounded cache, and giving up (to be answered "may
        // match") where it would thrash.
        let pre = regex_automata::util::prefilter::Prefilter::from_hir_prefix(
            regex_automata::MatchKind::LeftmostFirst,
            hir,
        );
        let dfa = hybrid::dfa::DFA::builder()
            .configure(
                hybrid::dfa::DFA::config()
                    .specialize_start_states(pre.is_some())
                    .prefilter(pre)
                    .cache_capacity(1 << 22)
                    .minimum_cache_clear_count(Some(3))
                    .minimum_bytes_per_state(Some(10)),
            )
            .build_from_nfa(nfa)
            .map_err(|e| e.to_string())?;
        let own = dfa.clone();
        Ok(Self {
            dfa,
            caches: Pool::new(Box::new(move || own.create_cache())),
        })
    }

    /// False only where no match can be: an answer the lazy DFA cannot give (it
    /// gave up) is a "may".
    pub(crate) fn may_match(&self, input: Input<'_>) -> bool {
        let mut cache = self.caches.get();
        !matches!(
            self.dfa.try_search_fwd(&mut cache, &input.earliest(true)),
            Ok(None)
        )
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.dfa.memory_usage()
            + self.dfa.get_nfa().memory_usage()
            + self
                .dfa
                .get_config()
                .get_prefilter()
                .map_or(0, regex_automata::util::prefilter::Prefilter::memory_usage)
    }
}

/// The pattern with every ASCII capital it can match made lowercase (in literals and
/// classes), so that a case-insensitive rule can run case-sensitively on lowercased
/// text. Rewritten from its syntax tree: flags (`(?U)`), group names and escapes
/// keep their meaning.
pub(crate) fn lowercase_literals(pattern: &str) -> Result<String, String> {
    use regex_syntax::hir::{
        Capture, Class, ClassBytes, ClassBytesRange, Hir, HirKind, Repetition,
    };
    fn lower(h: &Hir) -> Hir {
        match h.kind() {
            HirKind::Literal(l) => Hir::literal(l.0.to_ascii_lowercase()),
            HirKind::Class(Class::Bytes(c)) => {
                let mut set = [false; 256];
                for r in c.ranges() {
                    for b in r.start()..=r.end() {
                        set[usize::from(b.to_ascii_lowercase())] = true;
                    }
                }
                let ranges = (0..=255u8)
                    .filter(|&b| set[usize::from(b)])
                    .map(|b| ClassBytesRange::new(b, b));
                Hir::class(Class::Bytes(ClassBytes::new(ranges)))
            }
            HirKind::Class(Class::Unicode(c)) => {
                // Every case of every character: the lowercase ones among them.
                let mut c = c.clone();
                c.case_fold_simple();
                Hir::class(Class::Unicode(c))
            }
            HirKind::Repetition(r) => Hir::repetition(Repetition {
                sub: Box::new(lower(&r.sub)),
                ..r.clone()
            }),
            HirKind::Capture(c) => Hir::capture(Capture {
                sub: Box::new(lower(&c.sub)),
                ..c.clone()
            }),
            HirKind::Concat(v) => Hir::concat(v.iter().map(lower).collect()),
            HirKind::Alternation(v) => Hir::alternation(v.iter().map(lower).collect()),
            HirKind::Empty | HirKind::Look(_) => h.clone(),
        }
    }
    let hir = crate::literals::parse(pattern)?;
    Ok(lower(&hir).to_string())
}
