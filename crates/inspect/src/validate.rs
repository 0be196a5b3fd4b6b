//! Checks that turn a pattern match into a finding: checksums for card numbers and
//! IBANs, the shape of national IDs, and the Shannon entropy of candidate secrets.

/// Luhn checksum over the digits of `s` (separators ignored), 13–19 digits.
pub(crate) fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616 IBAN: country letters, check digits, mod-97 of the rearranged number is 1.
pub(crate) fn iban(s: &str) -> bool {
    let compact: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
        || !compact.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A US Social Security number in `AAA-GG-SSSS` form with valid area, group and serial.
pub(crate) fn us_ssn(s: &str) -> bool {
    let parts: Vec<&str> = s.split(['-', ' ']).collect();
    let [area, group, serial] = parts.as_slice() else {
        return false;
    };
    let n = |p: &str| p.parse::<u32>().ok();
    matches!((n(area), n(group), n(serial)), (Some(a), Some(g), Some(s))
        if a != 0 && a != 666 && a < 900 && g != 0 && s != 0)
}

/// Whether a candidate secret is a placeholder or documentation value rather than a
/// credential: masks, template variables, runs of one character, alphabetic or
/// numeric sequences, and the usual stand-in words.
pub(crate) fn placeholder(s: &str) -> bool {
    const MARKERS: [&str; 16] = [
        "xxxx",
        "****",
        "....",
        "<",
        ">",
        "${",
        "$(",
        "{{",
        "%s",
        "example",
        "sample",
        "dummy",
        "placeholder",
        "changeme",
        "redacted",
        "your_",
    ];
    const SEQUENCES: [&str; 4] = ["abcdefgh", "12345678", "01234567", "qwertyui"];
    let lower = s.to_ascii_lowercase();
    if MARKERS.iter().any(|m| lower.contains(m)) || SEQUENCES.iter().any(|q| lower.contains(q)) {
        return true;
    }
    let b = lower.as_bytes();
    b.windows(6).any(|w| w.iter().all(|&c| c == w[0]))
}

/// Shannon entropy in bits per character.
pub(crate) fn entropy(s: &str) -> f32 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss, reason = "counts of a short string")]
    let total = n as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            #[allow(clippy::cast_precision_loss, reason = "counts of a short string")]
            let p = c as f32 / total;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_need_a_valid_luhn_sum() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(luhn("5500-0000-0000-0004"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(!luhn("0000 0000 0000 0000"), "all one digit");
        assert!(!luhn("4111"));
    }

    #[test]
    fn ibans_need_a_valid_check() {
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(iban("DE89370400440532013000"));
        assert!(!iban("GB82 WEST 1234 5698 7654 33"));
        assert!(!iban("XX00"));
    }

    #[test]
    fn ssns_exclude_unassigned_ranges() {
        assert!(us_ssn("123-45-6789"));
        assert!(!us_ssn("000-45-6789"));
        assert!(!us_ssn("666-45-6789"));
        assert!(!us_ssn("912-45-6789"));
        assert!(!us_ssn("123-00-6789"));
    }

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "ghp_xxxxxxxxxxxx",
            "AIzaaaaaaaaaaaaaaa",
            "<API token>",
            "${TOKEN}",
            "sk_live_abcdefghij",
        ] {
            assert!(placeholder(p), "{p}");
        }
        assert!(!placeholder("q8Zt3XvK1pLm9RwY"));
    }

    #[test]
    fn entropy_separates_keys_from_words() {
        assert!(entropy("aaaaaaaaaaaaaaaa") < 0.1);
        assert!(entropy("password") < 3.0);
        assert!(entropy("q8Zt3XvK1pLm9RwY") > 3.5);
    }
}
