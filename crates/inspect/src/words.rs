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

/// How many spaces an eight-byte word holds.
fn spaces_in(w: &[u8]) -> usize {
    let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    between(x, b' ', b' ').count_ones() as usize
}

/// Of eight-byte `words` in the order given, the one that holds the `k+1`-th space and
/// how many of its spaces come first (`Ok((index, left))`), or how many of the spaces
/// sought remain after them all (`Err(left)`).
fn word_with<'a>(words: impl Iterator<Item = &'a [u8]>, k: usize) -> Result<(usize, usize), usize> {
    let mut left = k;
    for (i, w) in words.enumerate() {
        let n = spaces_in(w);
        if n > left {
            return Ok((i, left));
        }
        left -= n;
    }
    Err(left)
}

/// The index of the `k+1`-th space in `b` (counting from the start), eight bytes at a
/// time: the spaces of a word are counted at once, and only the word that holds the
/// one sought is looked at byte by byte.
pub(crate) fn nth_space(b: &[u8], k: usize) -> Option<usize> {
    let whole = b.len() / 8 * 8;
    let (from, left) = match word_with(b[..whole].chunks_exact(8), k) {
        Ok((i, left)) => (i * 8, left),
        Err(left) => (whole, left),
    };
    (from..b.len()).filter(|&j| b[j] == b' ').nth(left)
}

/// The index of the `k+1`-th space in `b` counting back from its end.
pub(crate) fn nth_space_back(b: &[u8], k: usize) -> Option<usize> {
    let tail = b.len() % 8;
    let (to, left) = match word_with(b[tail..].rchunks_exact(8), k) {
        Ok((i, left)) => (b.len() - i * 8, left),
        Err(left) => (tail, left),
    };
    (0..to).rev().filter(|&j| b[j] == b' ').nth(left)
}

/// How many spaces `b` holds, eight bytes at a time.
pub(crate) fn count_spaces(b: &[u8]) -> usize {
    let words = b.chunks_exact(8);
    let tail = words.remainder();
    words.map(spaces_in).sum::<usize>() + tail.iter().filter(|&&c| c == b' ').count()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_nth_space_either_way_is_found_as_byte_by_byte(
            b in proptest::collection::vec(prop_oneof![Just(b' '), Just(b'a'), Just(0xa0)], 0..80),
            k in 0usize..30,
        ) {
            let spaces: Vec<usize> = (0..b.len()).filter(|&i| b[i] == b' ').collect();
            prop_assert_eq!(super::nth_space(&b, k), spaces.get(k).copied());
            prop_assert_eq!(super::count_spaces(&b), spaces.len());
            prop_assert_eq!(
                super::nth_space_back(&b, k),
                spaces.iter().rev().nth(k).copied()
            );
        }
    }
}
