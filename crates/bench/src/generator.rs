//! Key-number generators: which record an operation touches.
//!
//! Implemented from their definitions: the zipfian generator follows Gray et al., "Quickly
//! generating billion-record synthetic databases" (SIGMOD 1994), the method YCSB uses, with
//! YCSB's constant 0.99. Every generator draws from a caller's random source, so a worker's
//! draws need no lock.

use rand::Rng;
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

/// YCSB's zipfian constant.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// Item space of the scrambled zipfian generator: the popularity of an item number is drawn
/// over this many items, then hashed onto the records, so hot records are spread over the key
/// space instead of being the lowest key numbers.
pub const SCRAMBLED_ITEM_SPACE: u64 = 10_000_000_000;

/// Terms of a zeta sum computed one by one; past it the tail is integrated (below).
const EXACT_ZETA_TERMS: u64 = 1_000_000;

/// `sum_{i=from+1..=to} 1/i^theta`: exact for the first [`EXACT_ZETA_TERMS`] terms, the rest
/// by the midpoint rule of the integral of `x^-theta` (relative error far below 1e-9 there,
/// where the function is almost flat).
pub fn zeta_range(from: u64, to: u64, theta: f64) -> f64 {
    if to <= from {
        return 0.0;
    }
    let exact_end = to.min(from.max(EXACT_ZETA_TERMS));
    let mut sum = 0.0;
    for i in (from + 1)..=exact_end {
        sum += 1.0 / (i as f64).powf(theta);
    }
    let start = from.max(exact_end);
    if to > start {
        let e = 1.0 - theta;
        let a = start as f64 + 0.5;
        let b = to as f64 + 0.5;
        sum += if e.abs() < 1e-12 {
            (b / a).ln()
        } else {
            (b.powf(e) - a.powf(e)) / e
        };
    }
    sum
}

/// `zeta(n, theta) = sum_{i=1..=n} 1/i^theta`.
pub fn zeta(n: u64, theta: f64) -> f64 {
    zeta_range(0, n, theta)
}

/// Uniform over `0..items`.
#[derive(Clone, Debug)]
pub struct Uniform {
    items: u64,
}

impl Uniform {
    pub fn new(items: u64) -> Uniform {
        Uniform {
            items: items.max(1),
        }
    }

    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        rng.gen_range(0..self.items)
    }
}

/// Zipfian over `0..items`: item 0 is the most popular, item `i` is drawn with probability
/// proportional to `1/(i+1)^theta`.
#[derive(Clone, Debug)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    zeta2: f64,
    eta: f64,
}

impl Zipfian {
    pub fn new(items: u64) -> Zipfian {
        Zipfian::with_theta(items, ZIPFIAN_CONSTANT)
    }

    pub fn with_theta(items: u64, theta: f64) -> Zipfian {
        let items = items.max(1);
        let zetan = zeta(items, theta);
        Zipfian::with_zeta(items, theta, zetan)
    }

    fn with_zeta(items: u64, theta: f64, zetan: f64) -> Zipfian {
        let zeta2 = zeta(2, theta);
        let mut z = Zipfian {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            zeta2,
            eta: 0.0,
        };
        z.eta = z.compute_eta();
        z
    }

    fn compute_eta(&self) -> f64 {
        let n = self.items as f64;
        (1.0 - (2.0 / n).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    /// Changes the item count. Growing adds only the new terms to zeta (incremental, as
    /// inserts make the key space grow); shrinking recomputes it.
    pub fn set_items(&mut self, items: u64) {
        let items = items.max(1);
        if items == self.items {
            return;
        }
        self.zetan = if items > self.items {
            self.zetan + zeta_range(self.items, items, self.theta)
        } else {
            zeta(items, self.theta)
        };
        self.items = items;
        self.eta = self.compute_eta();
    }

    /// One draw in `0..items`.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.r#gen();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let v = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.items - 1)
    }
}

/// FNV-1a, 64 bits, over the little-endian bytes of `v`.
pub fn fnv1a64(v: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    v.to_le_bytes()
        .iter()
        .fold(OFFSET_BASIS, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// Zipfian popularity over [`SCRAMBLED_ITEM_SPACE`] items, hashed (FNV-1a 64) onto
/// `0..records`: as skewed as a zipfian, but the hot records are scattered.
#[derive(Clone, Debug)]
pub struct ScrambledZipfian {
    inner: Zipfian,
    records: u64,
}

impl ScrambledZipfian {
    pub fn new(records: u64) -> ScrambledZipfian {
        // Zeta of the item space is the same for every generator: computed once.
        static ZETA: OnceLock<f64> = OnceLock::new();
        let zetan = *ZETA.get_or_init(|| zeta(SCRAMBLED_ITEM_SPACE, ZIPFIAN_CONSTANT));
        ScrambledZipfian {
            inner: Zipfian::with_zeta(SCRAMBLED_ITEM_SPACE, ZIPFIAN_CONSTANT, zetan),
            records: records.max(1),
        }
    }

    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        fnv1a64(self.inner.next(rng)) % self.records
    }
}

/// Hands out insert key numbers in order and tracks which were acknowledged (completed,
/// successfully or not). [`InsertCounter::acknowledged`] is the length of the longest prefix
/// of key numbers that are all acknowledged, so readers never pick a key whose insert is
/// still in flight, even when inserts complete out of order.
#[derive(Debug)]
pub struct InsertCounter {
    state: Mutex<CounterState>,
}

#[derive(Debug)]
struct CounterState {
    next: u64,
    acked_end: u64,
    done_ahead: BTreeSet<u64>,
}

impl InsertCounter {
    /// Key numbers `0..start` exist already; the first insert gets `start`.
    pub fn new(start: u64) -> InsertCounter {
        InsertCounter {
            state: Mutex::new(CounterState {
                next: start,
                acked_end: start,
                done_ahead: BTreeSet::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CounterState> {
        // The state stays consistent whatever panicked while holding it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next key number to insert.
    pub fn next(&self) -> u64 {
        let mut s = self.lock();
        let v = s.next;
        s.next += 1;
        v
    }

    /// Marks `v`'s insert as done.
    pub fn acknowledge(&self, v: u64) {
        let mut s = self.lock();
        if v < s.acked_end || v >= s.next {
            return;
        }
        if v == s.acked_end {
            s.acked_end += 1;
            loop {
                let end = s.acked_end;
                if !s.done_ahead.remove(&end) {
                    break;
                }
                s.acked_end += 1;
            }
        } else {
            s.done_ahead.insert(v);
        }
    }

    /// How many key numbers, from 0, are all acknowledged: `0..acknowledged()` may be read.
    pub fn acknowledged(&self) -> u64 {
        self.lock().acked_end
    }
}

/// Zipfian over recency: the newest acknowledged key is the most popular, then the one
/// before it, and so on (YCSB's "latest").
#[derive(Clone, Debug)]
pub struct Latest {
    zipf: Zipfian,
}

impl Latest {
    pub fn new(items: u64) -> Latest {
        Latest {
            zipf: Zipfian::new(items),
        }
    }

    /// One key number among `0..existing` (`existing` from [`InsertCounter::acknowledged`]);
    /// the item count of the zipfian grows incrementally with it.
    pub fn next<R: Rng + ?Sized>(&mut self, existing: u64, rng: &mut R) -> u64 {
        let existing = existing.max(1);
        self.zipf.set_items(existing);
        existing - 1 - self.zipf.next(rng)
    }
}

/// A key distribution of the contract (`--distribution`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// Scrambled zipfian (YCSB's `requestdistribution=zipfian`).
    Zipfian,
    Uniform,
    Latest,
}

impl Distribution {
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::Zipfian => "zipfian",
            Distribution::Uniform => "uniform",
            Distribution::Latest => "latest",
        }
    }
}

/// A worker's key chooser for reads, updates, scans and read-modify-writes.
#[derive(Clone, Debug)]
pub enum KeyChooser {
    /// Over the records that existed at the start (YCSB keeps the zipfian's item count at the
    /// record count, too).
    Zipfian(ScrambledZipfian),
    /// Over every acknowledged key, inserts included.
    Uniform,
    Latest(Latest),
}

impl KeyChooser {
    pub fn new(dist: Distribution, records: u64) -> KeyChooser {
        match dist {
            Distribution::Zipfian => KeyChooser::Zipfian(ScrambledZipfian::new(records)),
            Distribution::Uniform => KeyChooser::Uniform,
            Distribution::Latest => KeyChooser::Latest(Latest::new(records)),
        }
    }

    /// A key number below `existing`, the count of acknowledged keys.
    pub fn next<R: Rng + ?Sized>(&mut self, existing: u64, rng: &mut R) -> u64 {
        match self {
            KeyChooser::Zipfian(z) => z.next(rng).min(existing.saturating_sub(1)),
            KeyChooser::Uniform => Uniform::new(existing).next(rng),
            KeyChooser::Latest(l) => l.next(existing, rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn counts(n: u64, draws: usize, mut f: impl FnMut(&mut StdRng) -> u64) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut c = vec![0u64; n as usize];
        for _ in 0..draws {
            let v = f(&mut rng);
            assert!(v < n, "{v} out of 0..{n}");
            c[v as usize] += 1;
        }
        c
    }

    #[test]
    fn zeta_tail_approximation_matches_the_exact_sum() {
        let theta = ZIPFIAN_CONSTANT;
        let exact: f64 = (1..=3_000_000u64)
            .map(|i| 1.0 / (i as f64).powf(theta))
            .sum();
        let approx = zeta(3_000_000, theta);
        assert!((exact - approx).abs() / exact < 1e-9, "{exact} vs {approx}");
        // Incremental growth lands on the same value as a fresh computation.
        let grown = zeta(10, theta) + zeta_range(10, 3_000_000, theta);
        assert!((grown - exact).abs() / exact < 1e-9);
        // The known value for YCSB's scrambled item space.
        let big = zeta(SCRAMBLED_ITEM_SPACE, theta);
        assert!((big - 26.469).abs() < 0.01, "{big}");
    }

    #[test]
    fn zipfian_has_the_theoretical_shape() {
        let n = 1000;
        let draws = 400_000;
        let z = Zipfian::new(n);
        let c = counts(n, draws, |r| z.next(r));
        let p1 = c[0] as f64 / draws as f64;
        let expected = 1.0 / zeta(n, ZIPFIAN_CONSTANT);
        assert!(
            (p1 - expected).abs() < 0.1 * expected,
            "rank 1 frequency {p1}, expected {expected}"
        );
        let ratio = c[0] as f64 / c[1] as f64;
        let theory = 2f64.powf(ZIPFIAN_CONSTANT);
        assert!(
            (ratio - theory).abs() < 0.1 * theory,
            "rank1/rank2 = {ratio}, theory {theory}"
        );
        // Popularity falls with rank.
        let head: u64 = c[..10].iter().sum();
        let tail: u64 = c[n as usize - 10..].iter().sum();
        assert!(head > 20 * tail, "head {head} tail {tail}");
    }

    #[test]
    fn zipfian_grows_incrementally() {
        let mut z = Zipfian::new(100);
        z.set_items(5000);
        let fresh = Zipfian::new(5000);
        assert!((z.zetan - fresh.zetan).abs() < 1e-9);
        assert!((z.eta - fresh.eta).abs() < 1e-12);
        z.set_items(50);
        assert!((z.zetan - Zipfian::new(50).zetan).abs() < 1e-12);
    }

    #[test]
    fn scrambled_zipfian_is_skewed_but_scattered() {
        let mut hottest_zero = 0;
        for n in [997u64, 1000, 5000, 12_345] {
            let draws = 200_000;
            let z = ScrambledZipfian::new(n);
            let c = counts(n, draws, |r| z.next(r));
            let mut sorted = c.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            let top = (n as usize / 100).max(1);
            let share = sorted[..top].iter().sum::<u64>() as f64 / draws as f64;
            assert!(share > 0.08, "top 1% of {n} keys got only {share}");
            let hottest = c
                .iter()
                .enumerate()
                .max_by_key(|(_, v)| **v)
                .map(|(i, _)| i);
            if hottest == Some(0) {
                hottest_zero += 1;
            }
        }
        assert!(
            hottest_zero <= 1,
            "the hottest key was key 0 {hottest_zero} times"
        );
    }

    #[test]
    fn uniform_passes_a_chi_square_bound() {
        let n = 100u64;
        let draws = 100_000;
        let u = Uniform::new(n);
        let c = counts(n, draws, |r| u.next(r));
        let e = draws as f64 / n as f64;
        let chi2: f64 = c.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
        // 99 degrees of freedom: the 99.9th percentile is about 148.
        assert!(chi2 < 150.0, "chi-square {chi2}");
    }

    #[test]
    fn latest_favours_the_newest_key() {
        let n = 1000;
        let mut l = Latest::new(10);
        let c = counts(n, 100_000, |r| l.next(n, r));
        let newest = c[n as usize - 1];
        assert_eq!(c.iter().max(), Some(&newest));
        assert!(newest > 5 * c[n as usize - 100]);
        assert!(c[(n - 1) as usize] > c[(n - 2) as usize]);
        // As keys are inserted, the favourite moves with them.
        let mut rng = StdRng::seed_from_u64(1);
        let newer = (0..10_000)
            .filter(|_| l.next(2000, &mut rng) == 1999)
            .count();
        assert!(newer > 500, "{newer}");
    }

    #[test]
    fn insert_counter_acknowledges_in_order() {
        let c = InsertCounter::new(10);
        let keys: Vec<u64> = (0..5).map(|_| c.next()).collect();
        assert_eq!(keys, vec![10, 11, 12, 13, 14]);
        assert_eq!(c.acknowledged(), 10);
        c.acknowledge(12);
        c.acknowledge(11);
        assert_eq!(c.acknowledged(), 10, "10 is still in flight");
        c.acknowledge(10);
        assert_eq!(c.acknowledged(), 13);
        c.acknowledge(14);
        assert_eq!(c.acknowledged(), 13);
        c.acknowledge(13);
        assert_eq!(c.acknowledged(), 15);
        // Unknown or repeated acknowledgements change nothing.
        c.acknowledge(99);
        c.acknowledge(3);
        c.acknowledge(14);
        assert_eq!(c.acknowledged(), 15);
        assert_eq!(c.next(), 15);
    }

    proptest! {
        #[test]
        fn every_generator_stays_in_range(n in 1u64..5000, seed: u64, existing in 1u64..6000) {
            let mut rng = StdRng::seed_from_u64(seed);
            let z = Zipfian::new(n);
            let s = ScrambledZipfian::new(n);
            let mut l = Latest::new(n);
            for _ in 0..200 {
                prop_assert!(z.next(&mut rng) < n);
                prop_assert!(s.next(&mut rng) < n);
                prop_assert!(l.next(existing, &mut rng) < existing);
                prop_assert!(Uniform::new(n).next(&mut rng) < n);
            }
        }

        #[test]
        fn insert_counter_any_ack_order(order in Just((0u64..64).collect::<Vec<_>>()).prop_shuffle()) {
            let c = InsertCounter::new(0);
            for _ in 0..64 { c.next(); }
            let mut acked = BTreeSet::new();
            for v in order {
                c.acknowledge(v);
                acked.insert(v);
                let prefix = (0..).take_while(|k| acked.contains(k)).count() as u64;
                prop_assert_eq!(c.acknowledged(), prefix);
            }
        }
    }
}
