//! Byte searches eight bytes at a time, in safe code: a word test rules out eight bytes
//! at once, and only a word that may hold a wanted byte is looked at byte by byte.

/// A byte of ones in every lane.
pub(crate) const ONES: u64 = u64::from_le_bytes([1; 8]);
/// The high bit of every lane.
pub(crate) const HIGH: u64 = ONES * 0x80;

/// The first index at or after `from` whose byte satisfies `wanted`. `may_hold` must be
/// true of every little-endian word that holds a wanted byte (it may also be true of
/// others).
pub(crate) fn find_from(
    b: &[u8],
    from: usize,
    may_hold: impl Fn(u64) -> bool,
    wanted: impl Fn(u8) -> bool,
) -> Option<usize> {
    let rest = b.get(from..)?;
    let mut words = rest.chunks_exact(8);
    for (k, w) in words.by_ref().enumerate() {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if may_hold(x)
            && let Some(p) = w.iter().position(|&c| wanted(c))
        {
            return Some(from + k * 8 + p);
        }
    }
    let tail = words.remainder();
    tail.iter()
        .position(|&c| wanted(c))
        .map(|p| b.len() - tail.len() + p)
}

/// Whether some byte of `x` is zero (exact for the word as a whole).
pub(crate) fn has_zero(x: u64) -> bool {
    x.wrapping_sub(ONES) & !x & HIGH != 0
}

/// The high bit of every byte of `x` in `lo..=hi` (ASCII bounds; bytes from 0x80 never
/// count). Exact: each byte is at most 0x7f before the additions, so none carries into
/// the next.
pub(crate) fn between(x: u64, lo: u8, hi: u8) -> u64 {
    let low = x & (ONES * 0x7f);
    low.wrapping_add(ONES * (0x80 - u64::from(lo)))
        & !low.wrapping_add(ONES * (0x7f - u64::from(hi)))
        & !x
        & HIGH
}
