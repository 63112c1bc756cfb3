//! The mutations of AFL's "havoc" stage, stacked 1-4 per mutant, plus one for text formats
//! (a run of digits replaced by an extreme number), all drawn from one seeded SplitMix64 stream
//! so a failing case is reproduced from its seed and index alone.

/// Integers that sit on the edges readers get wrong (lengths, offsets, counts), written in
/// little endian at 1, 2, 4 or 8 bytes.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1_000_000_000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Numbers for text formats: negative, huge, fractional where integers are expected, not a number.
const TEXT_NUMBERS: [&str; 10] = [
    "-1",
    "0",
    "99999999999999999999",
    "4294967296",
    "1e308",
    "-1e308",
    "NaN",
    "inf",
    "0.5",
    "100000",
];

/// A seeded mutant maker: the same seed gives the same sequence of mutants.
pub struct Mutator {
    state: u64,
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Mutator { state: seed }
    }

    /// SplitMix64 (Steele, Lea & Flood 2014): tiny, seedable, good enough to pick mutations.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// One mutant of `input`: 1-4 stacked mutations. Never returns the input unchanged unless
    /// the input is empty and the mutation drew a deletion.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        let n = 1 + self.below(4);
        for _ in 0..n {
            self.one(&mut out);
        }
        out
    }

    fn one(&mut self, b: &mut Vec<u8>) {
        if b.is_empty() {
            b.push(self.next_u64() as u8);
            return;
        }
        let len = b.len();
        match self.below(10) {
            0 => {
                let i = self.below(len);
                b[i] ^= 1 << self.below(8);
            }
            1 => {
                let i = self.below(len);
                b[i] = self.next_u64() as u8;
            }
            2 | 3 => {
                // an edge-case integer over 1, 2, 4 or 8 bytes, sometimes negated
                let width = 1 << self.below(4);
                let mut v = INTERESTING[self.below(INTERESTING.len())];
                if self.below(4) == 0 {
                    v = v.wrapping_neg();
                }
                let i = self.below(len);
                for (k, byte) in v.to_le_bytes().iter().take(width).enumerate() {
                    if let Some(slot) = b.get_mut(i + k) {
                        *slot = *byte;
                    }
                }
            }
            4 => {
                // delete a block
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(256));
                b.drain(i..i + n);
            }
            5 => {
                // duplicate a block in place
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(256));
                let block: Vec<u8> = b[i..i + n].to_vec();
                let at = self.below(len + 1);
                b.splice(at..at, block);
            }
            6 => {
                // copy a block over another place
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(64));
                let block: Vec<u8> = b[i..i + n].to_vec();
                let at = self.below(len);
                for (k, byte) in block.into_iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + k) {
                        *slot = byte;
                    }
                }
            }
            7 => {
                // truncate
                let keep = self.below(len);
                b.truncate(keep);
            }
            8 => {
                // insert random bytes
                let at = self.below(len + 1);
                let n = 1 + self.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| self.next_u64() as u8).collect();
                b.splice(at..at, bytes);
            }
            _ => self.text_number(b),
        }
    }

    /// Replace a run of ASCII digits with an extreme number (JSON, CSV, XML, mtx headers).
    fn text_number(&mut self, b: &mut Vec<u8>) {
        let start = self.below(b.len());
        let Some(first) = (start..b.len())
            .chain(0..start)
            .find(|&i| b[i].is_ascii_digit())
        else {
            let i = self.below(b.len());
            b[i] ^= 0x20;
            return;
        };
        let mut begin = first;
        while begin > 0 && b[begin - 1].is_ascii_digit() {
            begin -= 1;
        }
        let mut end = first;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        let with = TEXT_NUMBERS[self.below(TEXT_NUMBERS.len())].as_bytes();
        b.splice(begin..end, with.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mutants_and_they_differ_from_the_input() {
        let input: Vec<u8> = (0..200u8).collect();
        let (mut a, mut b) = (Mutator::new(7), Mutator::new(7));
        let mut changed = 0;
        for _ in 0..100 {
            let (x, y) = (a.mutate(&input), b.mutate(&input));
            assert_eq!(x, y);
            changed += usize::from(x != input);
        }
        // a bit flip and its undo or a same-value overwrite can leave a mutant equal to the input
        assert!(changed >= 95, "only {changed} of 100 mutants changed");
        assert_ne!(
            Mutator::new(8).mutate(&input),
            Mutator::new(7).mutate(&input)
        );
    }

    #[test]
    fn text_numbers_replace_whole_digit_runs() {
        let mut m = Mutator::new(1);
        let mut seen_other = false;
        for _ in 0..50 {
            let mut b = b"{\"embsize\": 512}".to_vec();
            m.text_number(&mut b);
            let s = String::from_utf8(b).unwrap();
            assert!(s.starts_with("{\"embsize\": ") && s.ends_with('}'), "{s}");
            assert!(!s.contains("512"), "{s}");
            seen_other |= s.contains("1e308") || s.contains("NaN");
        }
        assert!(seen_other);
    }
}
