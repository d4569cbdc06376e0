//! The only source of randomness in training: ChaCha8 streams derived from (seed, stream).
//!
//! Stream 0 initialises the weights; stream `e` drives epoch `e` (data order, crops, flips).
//! torch's global generator is never used, so two jobs training on two threads cannot
//! disturb each other, and the RNG state of a checkpoint is just (seed, epoch).

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

pub struct EpochRng(ChaCha8Rng);

impl EpochRng {
    pub fn new(seed: u64, stream: u64) -> EpochRng {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        EpochRng(rng)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// Uniform in [0, 1), double precision.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in 0..n (n > 0), without modulo bias worth speaking of for n < 2^32.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.0.next_u32() as u64) * n) >> 32
    }

    /// A uniformly shuffled 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<i64> {
        let mut p: Vec<i64> = (0..n as i64).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_stream_give_the_same_numbers_and_others_differ() {
        let a = EpochRng::new(5, 3).permutation(100);
        assert_eq!(a, EpochRng::new(5, 3).permutation(100));
        assert_ne!(a, EpochRng::new(5, 4).permutation(100));
        assert_ne!(a, EpochRng::new(6, 3).permutation(100));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<i64>>());
    }
}
