//! The random stream harmonypy's C++ backend draws from: a 32-bit Mersenne Twister (the
//! standard `mt19937`, seeded with `random_state`) read the way GCC's libstdc++ reads it
//! (harmonypy's Linux wheels are built with GCC 14). Matching the stream, not just the
//! distribution, is what lets a seeded run reproduce harmonypy's k-means start and its
//! block order in the assignment update, so results agree to rounding rather than in
//! distribution only.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER: u32 = 0x8000_0000;
const LOWER: u32 = 0x7fff_ffff;

/// MT19937 (Matsumoto & Nishimura 1998), as C++'s `std::mt19937`.
#[derive(Clone)]
pub(crate) struct Mt19937 {
    state: [u32; N],
    index: usize,
}

impl Mt19937 {
    pub(crate) fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: N }
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % N] & LOWER);
            let mut next = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= MATRIX_A;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// Skip `n` outputs.
    pub(crate) fn discard(&mut self, n: u64) {
        for _ in 0..n {
            self.next_u32();
        }
    }

    /// `std::uniform_real_distribution<float>(0, 1)`: libstdc++'s `generate_canonical` takes
    /// one 32-bit output (24 bits are needed), converts it to float and divides by 2^32; a
    /// result that rounds up to 1 becomes the largest float below 1.
    pub(crate) fn uniform01_f32(&mut self) -> f32 {
        let x = self.next_u32() as f32 / 4_294_967_296.0f32;
        if x >= 1.0 {
            1.0f32 - f32::EPSILON / 2.0
        } else {
            x
        }
    }

    /// `std::uniform_int_distribution` on `0..range` (`range` >= 1) as libstdc++ >= 11 draws
    /// it from a 32-bit generator: Lemire's nearly divisionless multiply-and-reject.
    pub(crate) fn below(&mut self, range: u64) -> u64 {
        debug_assert!((1..=1 << 32).contains(&range));
        if range == 1 << 32 {
            return u64::from(self.next_u32());
        }
        let range = range as u32;
        let mut product = u64::from(self.next_u32()) * u64::from(range);
        let mut low = product as u32;
        if low < range {
            let threshold = range.wrapping_neg() % range;
            while low < threshold {
                product = u64::from(self.next_u32()) * u64::from(range);
                low = product as u32;
            }
        }
        product >> 32
    }

    /// `std::shuffle` as libstdc++ does it: while n^2 fits the generator's range it draws
    /// the swap positions of two successive elements from one number.
    pub(crate) fn shuffle(&mut self, v: &mut [u32]) {
        let n = v.len() as u64;
        if n == 0 {
            return;
        }
        if u64::from(u32::MAX) / n >= n {
            let mut i = 1u64;
            if n.is_multiple_of(2) {
                let j = self.below(2);
                v.swap(i as usize, j as usize);
                i += 1;
            }
            while i != n {
                let b0 = i + 1;
                let b1 = b0 + 1;
                let x = self.below(b0 * b1);
                v.swap(i as usize, (x / b1) as usize);
                i += 1;
                v.swap(i as usize, (x % b1) as usize);
                i += 1;
            }
        } else {
            for i in 1..n {
                let j = self.below(i + 1);
                v.swap(i as usize, j as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_mt19937_stream() {
        // C++11 [rand.predef]: the 10000th output of a default-constructed mt19937 (seed 5489).
        let mut rng = Mt19937::new(5489);
        rng.discard(9999);
        assert_eq!(rng.next_u32(), 4_123_659_995);
        assert_eq!(Mt19937::new(0).next_u32(), 2_357_136_044);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = Mt19937::new(1);
        for n in [1usize, 2, 3, 10, 11] {
            let mut v: Vec<u32> = (0..n as u32).collect();
            rng.shuffle(&mut v);
            let mut sorted = v.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>());
        }
    }
}
