//! lib-advanced: combines lib-math and lib-parser into a small pipeline of
//! typed processing stages.

use lib_common::{app_log, AppError, AppResult, Describe, Registry};
use lib_math::{stats, Number, Stats};
use lib_parser::{parse, Calculator, Expr};
use std::collections::HashMap;

pub mod report;
pub mod solver;

/// A processing stage.
pub trait Stage<In, Out>: Describe {
    fn run(&self, input: In) -> AppResult<Out>;
}

/// Parse the input text as an expression.
pub struct ParseStage;

impl Describe for ParseStage {
    fn name(&self) -> String {
        "parse".into()
    }
}

impl Stage<&str, Expr> for ParseStage {
    fn run(&self, input: &str) -> AppResult<Expr> {
        parse(input)
    }
}

/// Evaluate an expression over a range of x values.
pub struct SampleStage {
    pub from: i32,
    pub to: i32,
}

impl Describe for SampleStage {
    fn name(&self) -> String {
        format!("sample[{}..{}]", self.from, self.to)
    }
}

impl Stage<Expr, Vec<f64>> for SampleStage {
    fn run(&self, e: Expr) -> AppResult<Vec<f64>> {
        (self.from..=self.to)
            .map(|x| {
                let mut vars = HashMap::new();
                vars.insert("x".to_string(), x as f64);
                lib_parser::eval(&e, &vars)
            })
            .collect()
    }
}

/// Summarise samples.
pub struct StatsStage;

impl Describe for StatsStage {
    fn name(&self) -> String {
        "stats".into()
    }
}

impl<T: Number> Stage<Vec<T>, Stats> for StatsStage {
    fn run(&self, v: Vec<T>) -> AppResult<Stats> {
        stats(&v)
    }
}

/// Parse, sample over x in [from, to] and summarise.
pub fn analyze(src: &str, from: i32, to: i32) -> AppResult<Stats> {
    let e = ParseStage.run(src)?;
    let samples = SampleStage { from, to }.run(e)?;
    StatsStage.run(samples)
}

/// Evaluate many named formulas, keeping the results in a registry.
pub fn evaluate_all(formulas: &[(&str, &str)], x: f64) -> AppResult<Registry<f64>> {
    let mut calc = Calculator::default();
    calc.vars.insert("x".into(), x);
    let mut reg = Registry::new();
    for (name, src) in formulas {
        let v = calc.eval_str(src)?;
        reg.insert(*name, v);
    }
    if reg.is_empty() {
        return Err(AppError::Empty);
    }
    Ok(reg)
}

/// Describe a pipeline.
pub fn describe_pipeline() -> String {
    let parts: Vec<String> = vec![
        ParseStage.describe(),
        SampleStage { from: 0, to: 10 }.describe(),
        StatsStage.describe(),
    ];
    app_log!("pipeline {}", parts.join(" -> "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline() {
        let s = analyze("x * 2", 1, 3).unwrap();
        assert_eq!(s.mean, 4.0);
        let r = evaluate_all(&[("sq", "x^2"), ("half", "x/2")], 6.0).unwrap();
        assert_eq!(r.get("sq"), Some(&36.0));
        assert!(describe_pipeline().contains("parse"));
    }
}
