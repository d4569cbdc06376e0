//! Pure: searches. A sweep's sampled space (seeded, so a search can be repeated) and its
//! early-stopping rules — asynchronous successive halving (ASHA: Li et al., MLSys 2020) and
//! the median stopping rule (Golovin et al., Vizier, KDD 2017) — as data and decisions. The
//! queue keeps every decision (`queue::search`); nothing here reads a clock or a database.

use crate::job::EpochMetrics;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// The distributions a search space may name, with their help.
pub const DISTRIBUTIONS: &[(&str, &str)] = &[
    ("uniform", "[low, high]: a real number, every value equally likely"),
    ("log_uniform", "[low, high], 0 < low < high: a real number whose logarithm is uniform (rates, decays)"),
    ("int_uniform", "[low, high]: a whole number from low to high, both included"),
    ("choice", "[a, b, …]: one of the listed values, each equally likely"),
];

/// One dimension of a search space.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    Uniform(f64, f64),
    LogUniform(f64, f64),
    IntUniform(i64, i64),
    Choice(Vec<Value>),
}

/// Significant digits a sampled real keeps: a trial reads `lr=0.003467`, not 17 digits, and
/// its spec holds exactly what its label says.
const DIGITS: i32 = 4;

fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(DIGITS - 1 - x.abs().log10().floor() as i32);
    let rounded = (x * scale).round() / scale;
    // N.B.: near the ends of f64 the scale overflows; such a value is kept as drawn.
    if rounded.is_finite() && scale.is_finite() {
        rounded
    } else {
        x
    }
}

/// A whole number from JSON, given as an integer or as a real with no fraction (`27.0`, as
/// JSON Schema's `integer` allows).
pub fn whole(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19).map(|f| f as u64))
}

fn whole_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i64))
}

impl Distribution {
    /// Parses `{"uniform": [a, b]}` and its kin; the error says what is allowed.
    pub fn parse(v: &Value) -> Result<Distribution, String> {
        let names: Vec<&str> = DISTRIBUTIONS.iter().map(|(n, _)| *n).collect();
        let shape = format!("must be one of {{\"{}\": …}}", names.join("\": …}, {\""));
        let Some((kind, args)) = v.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) else {
            return Err(format!("{shape}, e.g. {{\"log_uniform\": [0.0001, 1.0]}}; got {v}"));
        };
        let pair = |what: &str| -> Result<(f64, f64), String> {
            let xs = args.as_array().filter(|a| a.len() == 2).and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
            match xs {
                Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo < hi => Ok((lo, hi)),
                _ => Err(format!("{kind} takes [low, high] with low < high ({what}), got {args}")),
            }
        };
        match kind.as_str() {
            "uniform" => pair("two numbers").map(|(a, b)| Distribution::Uniform(a, b)),
            "log_uniform" => match pair("two positive numbers")? {
                (a, b) if a > 0.0 => Ok(Distribution::LogUniform(a, b)),
                _ => Err(format!("log_uniform takes [low, high] with 0 < low < high, got {args}")),
            },
            "int_uniform" => {
                let xs =
                    args.as_array().filter(|a| a.len() == 2).and_then(|a| Some((whole_i64(&a[0])?, whole_i64(&a[1])?)));
                match xs {
                    Some((a, b)) if a <= b && b.checked_sub(a).is_some() => Ok(Distribution::IntUniform(a, b)),
                    _ => Err(format!("int_uniform takes [low, high], two whole numbers with low <= high, got {args}")),
                }
            }
            "choice" => match args.as_array() {
                Some(a) if !a.is_empty() && a.len() <= 1000 => Ok(Distribution::Choice(a.clone())),
                _ => Err(format!("choice takes a list of 1 to 1000 values, got {args}")),
            },
            other => Err(format!("{shape}; got {other:?}")),
        }
    }

    /// Values every sample lies between or among, checked before sampling so a space is
    /// accepted or refused whatever the seed draws: the ends of a range and a real-valued
    /// point inside it (a field that takes whole numbers refuses it), or every choice.
    pub fn probes(&self) -> Vec<Value> {
        match self {
            Distribution::Uniform(a, b) => vec![json!(a), json!(round_sig(a + (b - a) * 0.37)), json!(b)],
            Distribution::LogUniform(a, b) => {
                vec![json!(a), json!(round_sig((a.ln() + (b.ln() - a.ln()) * 0.37).exp())), json!(b)]
            }
            Distribution::IntUniform(a, b) => vec![json!(a), json!(b)],
            Distribution::Choice(values) => values.clone(),
        }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> Value {
        // N.B.: 53 random bits → [0, 1), as numpy's and rand's `random()`.
        let unit = |rng: &mut ChaCha8Rng| (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        match self {
            Distribution::Uniform(a, b) => json!(round_sig(a + (b - a) * unit(rng)).clamp(*a, *b)),
            Distribution::LogUniform(a, b) => {
                let (la, lb) = (a.ln(), b.ln());
                json!(round_sig((la + (lb - la) * unit(rng)).exp()).clamp(*a, *b))
            }
            Distribution::IntUniform(a, b) => {
                let span = (*b as i128 - *a as i128 + 1) as u128;
                json!((*a as i128 + below(rng, span) as i128) as i64)
            }
            Distribution::Choice(values) => values[below(rng, values.len() as u128) as usize].clone(),
        }
    }
}

/// A uniform integer below `n` (n ≤ 2^64), without modulo bias.
fn below(rng: &mut ChaCha8Rng, n: u128) -> u64 {
    if n > u64::MAX as u128 {
        return rng.next_u64();
    }
    let n = n as u64;
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < zone {
            return x % n;
        }
    }
}

/// A search space: spec fields, each with its distribution, in the request's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Space(pub Vec<(String, Distribution)>);

impl Space {
    /// `trials` points, each a spec-field object, drawn in order from one ChaCha8 stream
    /// seeded with `seed`: the same request and seed give the same trials.
    pub fn sample(&self, trials: usize, seed: u64) -> Vec<Map<String, Value>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..trials).map(|_| self.0.iter().map(|(k, d)| (k.clone(), d.sample(&mut rng))).collect()).collect()
    }
}

/// What a rule compares trials by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    TestAcc,
    TrainAcc,
    TestLoss,
    TrainLoss,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::TestAcc, Metric::TrainAcc, Metric::TestLoss, Metric::TrainLoss];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::TestAcc => "test_acc",
            Metric::TrainAcc => "train_acc",
            Metric::TestLoss => "test_loss",
            Metric::TrainLoss => "train_loss",
        }
    }

    /// Accuracies are better higher, losses lower.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::TestAcc | Metric::TrainAcc)
    }

    /// The epoch's value; `None` for a loss that was not finite.
    pub fn of(self, m: &EpochMetrics) -> Option<f64> {
        match self {
            Metric::TestAcc => Some(m.test_acc),
            Metric::TrainAcc => Some(m.train_acc),
            Metric::TestLoss => m.test_loss,
            Metric::TrainLoss => m.train_loss,
        }
        .filter(|v| v.is_finite())
    }

    /// The best of `items` by their value, the first of equals: a run's best epoch, a
    /// search's best trial.
    pub fn best_by<T>(self, items: impl IntoIterator<Item = (f64, T)>) -> Option<(f64, T)> {
        items.into_iter().fold(None, |b, x| match b {
            Some(b) if !self.better(x.0, b.0) => Some(b),
            _ => Some(x),
        })
    }

    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        if self.higher_is_better() {
            a > b
        } else {
            a < b
        }
    }
}

/// Most epochs a rule's grace may be, and the reduction factors allowed.
pub const MAX_GRACE: u32 = 1000;
pub const REDUCTIONS: std::ops::RangeInclusive<u32> = 2..=10;

/// A sweep's early-stopping rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EarlyStop {
    /// ASHA: rungs at `grace × reduction^k` epochs; at each, a trial goes on only if it is in
    /// the top 1/`reduction` of the trials that have reached that rung so far.
    Asha { metric: Metric, grace_epochs: u32, reduction: u32 },
    /// The median stopping rule: from `grace_epochs` on, a trial stops when its best value so
    /// far is worse than the median of the other trials' running averages at the same epoch
    /// (once `min_trials` others have reached it).
    Median { metric: Metric, grace_epochs: u32, min_trials: u32 },
}

impl EarlyStop {
    /// Parses `{"asha": {…}}` or `{"median": {…}}`, filling defaults (test_acc, grace 1,
    /// reduction 3, min_trials 3); each error names its field under `early_stop`.
    pub fn parse(v: &Value) -> Result<EarlyStop, Vec<(String, String)>> {
        let shape = "must be {\"asha\": {\"metric\", \"grace_epochs\", \"reduction\"}} or {\"median\": {\"metric\", \"grace_epochs\", \"min_trials\"}}";
        let Some((rule, args)) = v.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) else {
            return Err(vec![("early_stop".into(), format!("{shape}; got {v}"))]);
        };
        let (allowed, extra): (&[&str], &str) = match rule.as_str() {
            "asha" => (&["metric", "grace_epochs", "reduction"], "reduction"),
            "median" => (&["metric", "grace_epochs", "min_trials"], "min_trials"),
            _ => return Err(vec![("early_stop".into(), format!("{shape}; got the rule {rule:?}"))]),
        };
        let empty = Map::new();
        let Some(args) = (if args.is_null() { Some(&empty) } else { args.as_object() }) else {
            return Err(vec![(
                format!("early_stop.{rule}"),
                format!("must be an object of {}, got {args}", allowed.join(", ")),
            )]);
        };
        let mut errors = Vec::new();
        for k in args.keys().filter(|k| !allowed.contains(&k.as_str())) {
            errors.push((format!("early_stop.{rule}.{k}"), format!("unknown field; allowed: {}", allowed.join(", "))));
        }
        let metric = match args.get("metric") {
            None => Metric::TestAcc,
            Some(m) => match Metric::ALL.into_iter().find(|x| m.as_str() == Some(x.as_str())) {
                Some(x) => x,
                None => {
                    let names: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
                    errors.push((
                        format!("early_stop.{rule}.metric"),
                        format!("must be one of {}, got {m}", names.join(", ")),
                    ));
                    Metric::TestAcc
                }
            },
        };
        let mut whole = |key: &str, default: u32, range: std::ops::RangeInclusive<u32>| match args.get(key) {
            None => default,
            Some(x) => match whole(x).and_then(|n| u32::try_from(n).ok()).filter(|n| range.contains(n)) {
                Some(n) => n,
                None => {
                    errors.push((
                        format!("early_stop.{rule}.{key}"),
                        format!("must be a whole number from {} to {}, got {x}", range.start(), range.end()),
                    ));
                    default
                }
            },
        };
        let grace_epochs = whole("grace_epochs", 1, 1..=MAX_GRACE);
        let rule = match extra {
            "reduction" => EarlyStop::Asha { metric, grace_epochs, reduction: whole("reduction", 3, REDUCTIONS) },
            _ => EarlyStop::Median {
                metric,
                grace_epochs,
                min_trials: whole("min_trials", 3, 1..=crate::sweep::MAX_JOBS as u32),
            },
        };
        if errors.is_empty() {
            Ok(rule)
        } else {
            Err(errors)
        }
    }

    pub fn metric(&self) -> Metric {
        match *self {
            EarlyStop::Asha { metric, .. } | EarlyStop::Median { metric, .. } => metric,
        }
    }

    pub fn grace_epochs(&self) -> u32 {
        match *self {
            EarlyStop::Asha { grace_epochs, .. } | EarlyStop::Median { grace_epochs, .. } => grace_epochs,
        }
    }

    /// The rule's name, as decisions record it.
    pub fn name(&self) -> &'static str {
        match self {
            EarlyStop::Asha { .. } => "asha",
            EarlyStop::Median { .. } => "median",
        }
    }

    /// ASHA's rung epochs below `epochs` (a trial that reaches `epochs` simply finishes);
    /// none for the median rule.
    pub fn rungs(&self, epochs: u32) -> Vec<u32> {
        let EarlyStop::Asha { grace_epochs, reduction, .. } = *self else { return Vec::new() };
        let mut out = Vec::new();
        let mut r = grace_epochs;
        while r < epochs {
            out.push(r);
            match r.checked_mul(reduction) {
                Some(next) => r = next,
                None => break,
            }
        }
        out
    }
}

/// ASHA's promotion rule at one rung: a trial with `value` goes on when its rank among the
/// values recorded at this rung so far (`others`, in the order they arrived, then its own)
/// is within the top ⌈n / reduction⌉ of those n. A tie ranks below the trial that reached
/// the rung first: a place is earned by beating what is there, so trials stuck at the same
/// chance-level accuracy do not all go on. The first trial at a rung always goes on; for
/// distinct values this cut is the one Ray Tune's AsyncHyperBand computes with its
/// percentile. Returns (goes on, rank, n, places).
pub fn asha_promotes(metric: Metric, value: f64, others: &[f64], reduction: u32) -> (bool, usize, usize, usize) {
    let n = others.len() + 1;
    let rank = 1 + others.iter().filter(|&&o| !metric.better(value, o)).count();
    let places = n.div_ceil(reduction.max(1) as usize);
    (rank <= places, rank, n, places)
}

/// The median of `xs` (not empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The median stopping rule: whether a trial whose best value so far is `best` stops, given
/// the other trials' running averages at the same epoch; `None` when too few others have
/// reached it to judge.
pub fn median_stops(metric: Metric, best: f64, others: &[f64], min_trials: u32) -> Option<(bool, f64)> {
    if others.len() < min_trials as usize {
        return None;
    }
    let m = median(others);
    Some((metric.better(m, best), m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asha_promotes_the_top_third_of_each_rung_as_trials_arrive() {
        // Trials reach the rung in this order with these test accuracies; by hand, with
        // reduction 3 the places are ⌈n/3⌉ = 1, 1, 1, 2, 2, 2, 3:
        //   0.50 alone → rank 1 of 1 → on;    0.40 → rank 2 of 2 → stop;
        //   0.60 → rank 1 of 3 → on;          0.30 → rank 4 of 4 → stop;
        //   0.70 → rank 1 of 5 → on;          0.55 → rank 3 of 6 (0.6, 0.7 above) → stop;
        //   0.58 → rank 3 of 7, 3 places → on.
        let arrivals = [0.50, 0.40, 0.60, 0.30, 0.70, 0.55, 0.58];
        let mut seen = Vec::new();
        let mut got = Vec::new();
        for v in arrivals {
            got.push(asha_promotes(Metric::TestAcc, v, &seen, 3));
            seen.push(v);
        }
        let on: Vec<bool> = got.iter().map(|g| g.0).collect();
        assert_eq!(on, [true, false, true, false, true, false, true]);
        let ranks: Vec<(usize, usize, usize)> = got.iter().map(|g| (g.1, g.2, g.3)).collect();
        assert_eq!(ranks, [(1, 1, 1), (2, 2, 1), (1, 3, 1), (4, 4, 2), (1, 5, 2), (3, 6, 2), (3, 7, 3)]);
        // A loss is better lower: the same arrivals as losses keep the other half.
        assert!(asha_promotes(Metric::TestLoss, 0.30, &[0.5, 0.4, 0.6], 3).0);
        assert!(!asha_promotes(Metric::TestLoss, 0.70, &[0.5, 0.4, 0.6], 3).0);
        // A tie ranks below those that arrived first: trials all stuck at chance do not all
        // go on (the first does).
        assert_eq!(asha_promotes(Metric::TestAcc, 0.1, &[0.1], 3), (false, 2, 2, 1));
        assert_eq!(asha_promotes(Metric::TestAcc, 0.1, &[0.1, 0.1, 0.1], 3), (false, 4, 4, 2));
        assert_eq!(asha_promotes(Metric::TestAcc, 0.5, &[0.5, 0.1, 0.1], 3), (true, 2, 4, 2));
    }

    #[test]
    fn asha_rungs_grow_by_the_reduction_below_the_jobs_epochs() {
        let asha = EarlyStop::parse(&json!({"asha": {"grace_epochs": 1, "reduction": 3}})).unwrap();
        assert_eq!(asha.rungs(27), [1, 3, 9]);
        assert_eq!(asha.rungs(28), [1, 3, 9, 27]);
        assert_eq!(asha.rungs(50), [1, 3, 9, 27]);
        assert_eq!(asha.rungs(1), Vec::<u32>::new());
        let asha = EarlyStop::parse(&json!({"asha": {"grace_epochs": 1000, "reduction": 10}})).unwrap();
        assert_eq!(asha.rungs(u32::MAX), [1000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000]);
    }

    #[test]
    fn early_stop_fills_defaults_and_names_each_bad_field() {
        let got = EarlyStop::parse(&json!({"asha": {}})).unwrap();
        assert_eq!(got, EarlyStop::Asha { metric: Metric::TestAcc, grace_epochs: 1, reduction: 3 });
        let got = EarlyStop::parse(&json!({"median": {"metric": "test_loss"}})).unwrap();
        assert_eq!(got, EarlyStop::Median { metric: Metric::TestLoss, grace_epochs: 1, min_trials: 3 });
        let e = EarlyStop::parse(&json!({"asha": {"metric": "f1", "reduction": 1, "grace_epochs": 1e12, "eta": 3}}))
            .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "early_stop.asha.eta",
                "early_stop.asha.metric",
                "early_stop.asha.grace_epochs",
                "early_stop.asha.reduction"
            ]
        );
        assert!(e[1].1.contains("test_acc, train_acc, test_loss, train_loss"), "{e:?}");
        let e = EarlyStop::parse(&json!({"hyperband": {}})).unwrap_err();
        assert!(e[0].1.contains("\"asha\"") && e[0].1.contains("\"median\""), "{e:?}");
    }

    #[test]
    fn the_median_rule_stops_a_trial_below_the_others_running_averages() {
        assert_eq!(median_stops(Metric::TestAcc, 0.3, &[0.2, 0.4, 0.5], 3), Some((true, 0.4)));
        assert_eq!(median_stops(Metric::TestAcc, 0.45, &[0.2, 0.4, 0.5], 3), Some((false, 0.4)));
        assert_eq!(median_stops(Metric::TestAcc, 0.1, &[0.2, 0.4], 3), None, "too few others");
        assert_eq!(median_stops(Metric::TestLoss, 2.0, &[1.0, 1.5, 3.0, 4.0], 3), Some((false, 2.25)));
    }

    #[test]
    fn sampling_is_seeded_in_range_and_repeatable() {
        let space = Space(vec![
            ("lr".into(), Distribution::parse(&json!({"log_uniform": [0.0001, 1.0]})).unwrap()),
            ("momentum".into(), Distribution::parse(&json!({"uniform": [0.5, 0.99]})).unwrap()),
            ("batch_size".into(), Distribution::parse(&json!({"choice": [4, 16]})).unwrap()),
            ("epochs".into(), Distribution::parse(&json!({"int_uniform": [1, 3]})).unwrap()),
        ]);
        let a = space.sample(200, 7);
        assert_eq!(a, space.sample(200, 7), "the same seed gives the same trials");
        assert_ne!(a, space.sample(200, 8));
        let lrs: Vec<f64> = a.iter().map(|p| p["lr"].as_f64().unwrap()).collect();
        assert!(lrs.iter().all(|&x| (0.0001..=1.0).contains(&x)));
        // Log-uniform: about a quarter of the draws in each decade.
        let below_1e3 = lrs.iter().filter(|&&x| x < 1e-3).count();
        assert!((30..=70).contains(&below_1e3), "{below_1e3} of 200 below 1e-3");
        assert!(a.iter().all(|p| (0.5..=0.99).contains(&p["momentum"].as_f64().unwrap())));
        for v in [1, 2, 3] {
            assert!(a.iter().any(|p| p["epochs"] == json!(v)), "int_uniform includes both ends");
        }
        assert!(a.iter().all(|p| p["batch_size"] == json!(4) || p["batch_size"] == json!(16)));
        assert_eq!(round_sig(0.0034671234), 0.003467);
    }

    #[test]
    fn a_distribution_error_says_what_is_allowed() {
        for bad in
            [json!({"log_uniform": [0, 1]}), json!({"uniform": [1, 1]}), json!({"normal": [0, 1]}), json!([1, 2])]
        {
            let e = Distribution::parse(&bad).unwrap_err();
            assert!(e.contains("low") || e.contains("log_uniform"), "{bad}: {e}");
        }
        assert!(
            Distribution::parse(&json!({"int_uniform": [-9223372036854775808i64, 9223372036854775807i64]})).is_err()
        );
    }
}
