//! Random numbers and key generators: a small fast PRNG (xoshiro256++), uniform keys, and
//! YCSB's zipfian generator (Gray et al., "Quickly generating billion-record synthetic
//! databases", SIGMOD '94) with its ranks scattered over the key space by a bijection.

/// xoshiro256++ seeded through splitmix64. Not cryptographic; fast and good enough for load.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut state = seed;
        Rng {
            s: [
                splitmix64(&mut state),
                splitmix64(&mut state),
                splitmix64(&mut state),
                splitmix64(&mut state),
            ],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = self.s;
        let result = s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0);
        let t = s1 << 17;
        let mut s = [s0, s1, s2 ^ s0, s3 ^ s1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        self.s = s;
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)` (Lemire's multiply-shift; the bias is below 2^-64 * n). `n == 0`
    /// yields 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The zipfian generator of YCSB (`ZipfianGenerator`): rank 0 is the most popular item and
/// item `i` is drawn with probability proportional to `1 / (i + 1)^theta`.
#[derive(Clone, Copy, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    /// `1 + 0.5^theta`: below it (scaled by zetan) the draw is rank 1.
    rank1_bound: f64,
}

/// `sum_{i=1..n} 1 / i^theta`. O(n): about 5 ms per million items.
pub fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| (i as f64).powf(-theta)).sum()
}

impl Zipfian {
    /// `theta` must lie in (0, 1) (YCSB's default is 0.99); `n` must be positive.
    pub fn new(n: u64, theta: f64) -> Result<Zipfian, String> {
        if n == 0 {
            return Err("zipfian: the key count must be positive".into());
        }
        if !(theta > 0.0 && theta < 1.0) {
            return Err(format!("zipfian: theta must be in (0, 1), got {theta}"));
        }
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2, theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Ok(Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
            rank1_bound: 1.0 + 0.5f64.powf(theta),
        })
    }

    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// A rank in `[0, n)`; small ranks are the popular ones.
    pub fn rank(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 || self.n == 1 {
            return 0;
        }
        if uz < self.rank1_bound {
            return 1;
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }
}

/// A prime above any realistic key count: `rank * P mod n` is then a bijection of `[0, n)`.
const SCATTER_PRIME: u64 = (1 << 61) - 1;
/// Offset added after the multiplication so that rank 0 is not always key 0.
const SCATTER_OFFSET: u64 = 0x2545_f491_4f6c_dd1d;

/// How keys of existing rows are chosen.
#[derive(Clone, Copy, Debug)]
pub enum KeyDist {
    Uniform {
        n: u64,
    },
    /// Zipfian ranks scattered over the keys (like YCSB's scrambled zipfian, but a bijection,
    /// so the popularity of each key is exactly the zipfian one).
    Zipfian(Zipfian),
}

impl KeyDist {
    pub fn uniform(n: u64) -> KeyDist {
        KeyDist::Uniform { n }
    }

    pub fn zipfian(n: u64, theta: f64) -> Result<KeyDist, String> {
        Zipfian::new(n, theta).map(KeyDist::Zipfian)
    }

    pub fn key_count(&self) -> u64 {
        match self {
            KeyDist::Uniform { n } => *n,
            KeyDist::Zipfian(z) => z.n,
        }
    }

    /// The key with the given popularity rank (identity for uniform keys).
    pub fn scatter(&self, rank: u64) -> u64 {
        let n = self.key_count().max(1);
        let mixed = u128::from(rank) * u128::from(SCATTER_PRIME) + u128::from(SCATTER_OFFSET);
        (mixed % u128::from(n)) as u64
    }

    pub fn next(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyDist::Uniform { n } => rng.below(*n),
            KeyDist::Zipfian(z) => self.scatter(z.rank(rng)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            KeyDist::Uniform { .. } => "uniform".into(),
            KeyDist::Zipfian(z) => format!("zipfian({})", z.theta),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..100_000 {
            let v = rng.below(10);
            assert!(v < 10);
            seen[v as usize] += 1;
        }
        for count in seen {
            assert!((9_000..11_000).contains(&count), "{seen:?}");
        }
        assert_eq!(rng.below(0), 0);
        let f = rng.next_f64();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn seeds_give_different_streams() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(1).next_u64()).collect();
        assert!(a.iter().all(|&x| x == a[0]), "same seed, same stream");
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn zeta_matches_the_harmonic_number_at_theta_one() {
        // theta -> 1 gives the harmonic number; H_4 = 25/12.
        assert!((zeta(4, 1.0) - 25.0 / 12.0).abs() < 1e-12);
        assert!((zeta(1, 0.5) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn zipfian_frequencies_follow_the_power_law() {
        let n = 1000;
        let theta = 0.99;
        let z = Zipfian::new(n, theta).unwrap();
        let mut rng = Rng::new(42);
        let draws = 2_000_000u32;
        let mut counts = vec![0u32; n as usize];
        for _ in 0..draws {
            let r = z.rank(&mut rng);
            assert!(r < n);
            counts[r as usize] += 1;
        }
        // P(rank 0) = 1 / zeta(n).
        let p0 = f64::from(counts[0]) / f64::from(draws);
        let expected = 1.0 / zeta(n, theta);
        assert!(
            (p0 - expected).abs() / expected < 0.05,
            "p0 {p0} vs {expected}"
        );
        // count(i) / count(j) ~ ((j + 1) / (i + 1))^theta for the head of the distribution.
        for (i, j) in [(0usize, 1usize), (0, 3), (1, 9), (0, 99)] {
            let ratio = f64::from(counts[i]) / f64::from(counts[j]);
            let expected = ((j + 1) as f64 / (i + 1) as f64).powf(theta);
            assert!(
                (ratio - expected).abs() / expected < 0.15,
                "count[{i}]/count[{j}] = {ratio}, expected {expected}"
            );
        }
        // Skew: the top 10% of ranks take most of the draws; the tail is still reached.
        let head: u32 = counts[..100].iter().sum();
        assert!(f64::from(head) / f64::from(draws) > 0.6);
        assert!(counts[500..].iter().any(|&c| c > 0));
    }

    #[test]
    fn zipfian_rejects_bad_parameters() {
        assert!(Zipfian::new(0, 0.99).is_err());
        assert!(Zipfian::new(10, 1.0).is_err());
        assert!(Zipfian::new(10, 0.0).is_err());
        assert!(Zipfian::new(10, f64::NAN).is_err());
        let one = Zipfian::new(1, 0.5).unwrap();
        let mut rng = Rng::new(3);
        assert!((0..100).all(|_| one.rank(&mut rng) == 0));
    }

    #[test]
    fn scatter_is_a_bijection() {
        for n in [1u64, 2, 7, 1000, 1024] {
            let dist = KeyDist::uniform(n);
            let mut seen = vec![false; n as usize];
            for rank in 0..n {
                let key = dist.scatter(rank);
                assert!(key < n);
                assert!(!seen[key as usize], "n={n}: key {key} twice");
                seen[key as usize] = true;
            }
        }
    }

    #[test]
    fn zipfian_keys_are_skewed_but_scattered() {
        let dist = KeyDist::zipfian(10_000, 0.99).unwrap();
        let mut rng = Rng::new(7);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..200_000 {
            let key = dist.next(&mut rng);
            assert!(key < 10_000);
            *counts.entry(key).or_insert(0u32) += 1;
        }
        let hottest = counts
            .iter()
            .max_by_key(|(_, &c)| c)
            .map(|(&k, _)| k)
            .unwrap();
        assert_eq!(hottest, dist.scatter(0), "rank 0 is the hottest key");
        // The hottest keys are not simply the smallest ones.
        let low: u32 = (0..10).map(|k| counts.get(&k).copied().unwrap_or(0)).sum();
        assert!(low < 20_000, "keys 0..10 drew {low}");
    }

    #[test]
    fn uniform_keys_have_the_expected_mean() {
        let dist = KeyDist::uniform(1_000_000);
        let mut rng = Rng::new(9);
        let mean = (0..100_000)
            .map(|_| dist.next(&mut rng) as f64)
            .sum::<f64>()
            / 100_000.0;
        assert!((mean - 500_000.0).abs() < 10_000.0, "{mean}");
    }
}
