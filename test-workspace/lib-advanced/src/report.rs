//! Stage combinators, a memoising evaluator and a plain-text analysis
//! report of a formula over a range.

use crate::solver::{find_roots, integrate, Compiled, Tolerance};
use crate::{ParseStage, SampleStage, Stage, StatsStage};
use lib_common::{AppResult, Describe};
use lib_math::Stats;
use lib_parser::Calculator;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

/// Two stages run one after the other.
pub struct Then<A, B, Mid> {
    first: A,
    second: B,
    _mid: PhantomData<fn(Mid)>,
}

impl<A: Describe, B: Describe, Mid> Describe for Then<A, B, Mid> {
    fn name(&self) -> String {
        format!("{} -> {}", self.first.describe(), self.second.describe())
    }
    fn describe(&self) -> String {
        self.name()
    }
}

impl<In, Mid, Out, A, B> Stage<In, Out> for Then<A, B, Mid>
where
    A: Stage<In, Mid>,
    B: Stage<Mid, Out>,
{
    fn run(&self, input: In) -> AppResult<Out> {
        self.second.run(self.first.run(input)?)
    }
}

/// Chaining for every stage.
pub trait StageExt<In, Mid>: Stage<In, Mid> + Sized {
    fn then<Out, S: Stage<Mid, Out>>(self, next: S) -> Then<Self, S, Mid> {
        Then { first: self, second: next, _mid: PhantomData }
    }
}

impl<In, Mid, S: Stage<In, Mid>> StageExt<In, Mid> for S {}

/// A stage built from a named closure.
pub struct FnStage<F> {
    label: String,
    f: F,
}

impl<F> FnStage<F> {
    pub fn new(label: &str, f: F) -> Self {
        FnStage { label: label.to_string(), f }
    }
}

impl<F> Describe for FnStage<F> {
    fn name(&self) -> String {
        self.label.clone()
    }
}

impl<In, Out, F: Fn(In) -> AppResult<Out>> Stage<In, Out> for FnStage<F> {
    fn run(&self, input: In) -> AppResult<Out> {
        (self.f)(input)
    }
}

/// An evaluator that memoises results keyed by (formula, x).
#[derive(Default)]
pub struct MemoEvaluator {
    calc: Calculator,
    memo: HashMap<(String, u64), f64>,
    hits: usize,
    misses: usize,
}

impl MemoEvaluator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Evaluate `src` with `x` bound, reusing an earlier result when possible.
    pub fn eval(&mut self, src: &str, x: f64) -> AppResult<f64> {
        let key = (src.to_string(), x.to_bits());
        if let Some(&v) = self.memo.get(&key) {
            self.hits += 1;
            return Ok(v);
        }
        self.misses += 1;
        self.calc.vars.insert("x".into(), x);
        let v = self.calc.eval_str(src)?;
        self.memo.insert(key, v);
        Ok(v)
    }

    /// Evaluate `src` at every x, stopping at the first error.
    pub fn eval_many<I: IntoIterator<Item = f64>>(&mut self, src: &str, xs: I) -> AppResult<Vec<f64>> {
        xs.into_iter().map(|x| self.eval(src, x)).collect()
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (usize, usize) {
        (self.hits, self.misses)
    }

    pub fn clear(&mut self) {
        self.memo.clear();
        self.hits = 0;
        self.misses = 0;
    }
}

impl Describe for MemoEvaluator {
    fn name(&self) -> String {
        format!("memo(hits={}, misses={})", self.hits, self.misses)
    }
}

/// Everything we can tell about a formula on an interval.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub formula: String,
    pub from: f64,
    pub to: f64,
    pub stats: Stats,
    pub roots: Vec<f64>,
    pub integral: f64,
}

impl fmt::Display for Analysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "f(x) = {} on [{}, {}]", self.formula, self.from, self.to)?;
        writeln!(
            f,
            "mean {:.3}, min {:.3}, max {:.3}, stddev {:.3}",
            self.stats.mean, self.stats.min, self.stats.max, self.stats.stddev
        )?;
        let roots: Vec<String> = self.roots.iter().map(|r| format!("{:.6}", r)).collect();
        writeln!(f, "roots: {}", if roots.is_empty() { "none".to_string() } else { roots.join(", ") })?;
        write!(f, "integral: {:.6}", self.integral)
    }
}

/// Analyse `src` (in `x`) over the integer range `[from, to]`: statistics of the
/// samples at every integer, the roots in between and the integral.
pub fn analyze_range(src: &str, from: i32, to: i32) -> AppResult<Analysis> {
    let pipeline = ParseStage.then(SampleStage { from, to }).then(StatsStage);
    let stats = pipeline.run(src)?;
    let f = Compiled::new(src, "x")?;
    let (a, b) = (f64::from(from), f64::from(to));
    let roots = find_roots(&f, a, b, 4 * stats.count, Tolerance::default())?;
    let integral = integrate(src, a, b)?;
    Ok(Analysis { formula: f.expr().to_string(), from: a, to: b, stats, roots, integral })
}

/// A multi-line text report for `src` over `[from, to]`.
pub fn report(src: &str, from: i32, to: i32) -> AppResult<String> {
    analyze_range(src, from, to).map(|a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_stages() {
        let p = ParseStage.then(SampleStage { from: 1, to: 3 }).then(StatsStage);
        assert_eq!(p.run("x * 2").unwrap().mean, 4.0);
        assert_eq!(p.describe(), "<parse> -> <sample[1..3]> -> <stats>");
        let doubled = FnStage::new("double", |v: Vec<f64>| Ok(v.into_iter().map(|x| x * 2.0).collect::<Vec<_>>()));
        let q = ParseStage.then(SampleStage { from: 0, to: 2 }).then(doubled);
        assert_eq!(q.run("x + 1").unwrap(), vec![2.0, 4.0, 6.0]);
        assert!(p.run("x +").is_err());
    }

    #[test]
    fn memo() {
        let mut m = MemoEvaluator::new();
        assert_eq!(m.eval_many("x * x", [1.0, 2.0, 1.0]).unwrap(), vec![1.0, 4.0, 1.0]);
        assert_eq!(m.stats(), (1, 2));
        assert!(m.eval("y", 1.0).is_err());
        m.clear();
        assert_eq!(m.stats(), (0, 0));
    }

    #[test]
    fn analysis() {
        let a = analyze_range("x^2 - 4", -3, 3).unwrap();
        assert_eq!(a.stats.count, 7);
        assert_eq!(a.roots.len(), 2);
        assert!((a.integral - (-6.0)).abs() < 1e-9);
        let text = report("x - 1", 0, 2).unwrap();
        assert!(text.contains("roots: 1.000000"));
        assert!(text.ends_with("integral: 0.000000"));
    }
}
