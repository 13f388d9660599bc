//! Numeric analysis over parsed expressions: root finding (bisection,
//! Newton with a numeric derivative, secant), numeric differentiation and
//! integration (composite and adaptive Simpson).

use lib_common::{AppError, AppResult, Describe};
use lib_parser::{eval, parse, Expr};
use std::collections::HashMap;
use std::fmt;

/// A real function of one variable whose evaluation may fail.
pub trait RealFn {
    fn value(&self, x: f64) -> AppResult<f64>;
}

impl<F: Fn(f64) -> f64> RealFn for F {
    fn value(&self, x: f64) -> AppResult<f64> {
        Ok(self(x))
    }
}

/// A parsed expression viewed as a function of one named variable, with
/// optional constant bindings for the other variables.
#[derive(Debug, Clone)]
pub struct Compiled {
    expr: Expr,
    var: String,
    env: HashMap<String, f64>,
}

impl Compiled {
    /// Parse `src` as a function of `var`.
    pub fn new(src: &str, var: &str) -> AppResult<Self> {
        Ok(Compiled::from_expr(parse(src)?, var))
    }

    /// Wrap an already parsed expression.
    pub fn from_expr(expr: Expr, var: &str) -> Self {
        Compiled { expr, var: var.to_string(), env: HashMap::new() }
    }

    /// Bind another variable to a constant value.
    pub fn with_const(mut self, name: &str, value: f64) -> Self {
        self.env.insert(name.to_string(), value);
        self
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    pub fn var(&self) -> &str {
        &self.var
    }
}

impl RealFn for Compiled {
    fn value(&self, x: f64) -> AppResult<f64> {
        let mut vars = self.env.clone();
        vars.insert(self.var.clone(), x);
        let y = eval(&self.expr, &vars)?;
        if y.is_nan() {
            Err(AppError::Math(format!("{} is undefined at {} = {}", self.expr, self.var, x)))
        } else {
            Ok(y)
        }
    }
}

impl Describe for Compiled {
    fn name(&self) -> String {
        format!("f({}) = {}", self.var, self.expr)
    }
}

/// Stopping criteria for the iterative methods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub abs: f64,
    pub max_iter: usize,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { abs: 1e-10, max_iter: 100 }
    }
}

/// The root-finding method that produced a [`Root`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Bisection,
    Newton,
    Secant,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Method::Bisection => "bisection",
            Method::Newton => "newton",
            Method::Secant => "secant",
        };
        f.write_str(s)
    }
}

impl Describe for Method {
    fn name(&self) -> String {
        self.to_string()
    }
}

/// A converged root.
#[derive(Debug, Clone, PartialEq)]
pub struct Root {
    pub x: f64,
    pub fx: f64,
    pub iterations: usize,
    pub method: Method,
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "x = {:.6} (f = {:.2e}, {} after {} steps)", self.x, self.fx, self.method, self.iterations)
    }
}

fn no_convergence(method: Method, tol: &Tolerance) -> AppError {
    AppError::Math(format!("{} did not converge in {} iterations", method, tol.max_iter))
}

/// Bisection on a bracketing interval `[a, b]` where `f(a)` and `f(b)` differ in sign.
pub fn bisect<F: RealFn + ?Sized>(f: &F, mut a: f64, mut b: f64, tol: Tolerance) -> AppResult<Root> {
    let (mut fa, fb) = (f.value(a)?, f.value(b)?);
    for (x, fx) in [(a, fa), (b, fb)] {
        if fx == 0.0 {
            return Ok(Root { x, fx, iterations: 0, method: Method::Bisection });
        }
    }
    if fa.signum() == fb.signum() {
        return Err(AppError::Math(format!("no sign change on [{}, {}]", a, b)));
    }
    for i in 1..=tol.max_iter {
        let m = 0.5 * (a + b);
        let fm = f.value(m)?;
        if fm == 0.0 || 0.5 * (b - a).abs() < tol.abs {
            return Ok(Root { x: m, fx: fm, iterations: i, method: Method::Bisection });
        }
        if fm.signum() == fa.signum() {
            a = m;
            fa = fm;
        } else {
            b = m;
        }
    }
    Err(no_convergence(Method::Bisection, &tol))
}

/// Central-difference derivative with step `h`.
pub fn derivative<F: RealFn + ?Sized>(f: &F, x: f64, h: f64) -> AppResult<f64> {
    Ok((f.value(x + h)? - f.value(x - h)?) / (2.0 * h))
}

/// Second derivative by the three-point formula.
pub fn second_derivative<F: RealFn + ?Sized>(f: &F, x: f64, h: f64) -> AppResult<f64> {
    Ok((f.value(x + h)? - 2.0 * f.value(x)? + f.value(x - h)?) / (h * h))
}

/// Newton's method using a numeric derivative.
pub fn newton<F: RealFn + ?Sized>(f: &F, x0: f64, tol: Tolerance) -> AppResult<Root> {
    let mut x = x0;
    for i in 1..=tol.max_iter {
        let fx = f.value(x)?;
        let h = 1e-6 * x.abs().max(1.0);
        let d = derivative(f, x, h)?;
        if d.abs() < f64::EPSILON {
            return Err(AppError::Math(format!("zero derivative at {}", x)));
        }
        let next = x - fx / d;
        if !next.is_finite() {
            return Err(AppError::Math(format!("newton diverged from {}", x0)));
        }
        if (next - x).abs() < tol.abs {
            let fx = f.value(next)?;
            return Ok(Root { x: next, fx, iterations: i, method: Method::Newton });
        }
        x = next;
    }
    Err(no_convergence(Method::Newton, &tol))
}

/// Secant method from two starting points.
pub fn secant<F: RealFn + ?Sized>(f: &F, mut x0: f64, mut x1: f64, tol: Tolerance) -> AppResult<Root> {
    let (mut f0, mut f1) = (f.value(x0)?, f.value(x1)?);
    for i in 1..=tol.max_iter {
        let denom = f1 - f0;
        if denom == 0.0 {
            return Err(AppError::Math(format!("flat secant between {} and {}", x0, x1)));
        }
        let x2 = x1 - f1 * (x1 - x0) / denom;
        if (x2 - x1).abs() < tol.abs {
            let fx = f.value(x2)?;
            return Ok(Root { x: x2, fx, iterations: i, method: Method::Secant });
        }
        (x0, f0) = (x1, f1);
        x1 = x2;
        f1 = f.value(x1)?;
    }
    Err(no_convergence(Method::Secant, &tol))
}

/// Scan `[a, b]` in `steps` equal cells and refine every sign change by bisection.
pub fn find_roots<F: RealFn + ?Sized>(f: &F, a: f64, b: f64, steps: usize, tol: Tolerance) -> AppResult<Vec<f64>> {
    if steps == 0 || b <= a {
        return Err(AppError::Math(format!("bad scan interval [{}, {}] / {}", a, b, steps)));
    }
    let h = (b - a) / steps as f64;
    let grid: Vec<(f64, f64)> = (0..=steps)
        .map(|i| {
            let x = a + h * i as f64;
            f.value(x).map(|y| (x, y))
        })
        .collect::<AppResult<_>>()?;
    let mut roots: Vec<f64> = Vec::new();
    for w in grid.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        let root = if y0 == 0.0 {
            Some(x0)
        } else if y0.signum() != y1.signum() && y1 != 0.0 {
            Some(bisect(f, x0, x1, tol)?.x)
        } else {
            None
        };
        if let Some(r) = root.filter(|r| roots.last().is_none_or(|l| (r - l).abs() > tol.abs)) {
            roots.push(r);
        }
    }
    if let Some(&(x, y)) = grid.last() {
        if y == 0.0 && roots.last().is_none_or(|l| (x - l).abs() > tol.abs) {
            roots.push(x);
        }
    }
    Ok(roots)
}

/// Composite Simpson rule with `n` intervals (rounded up to an even number).
pub fn simpson<F: RealFn + ?Sized>(f: &F, a: f64, b: f64, n: usize) -> AppResult<f64> {
    lib_math::poly::try_simpson(|x| f.value(x), a, b, n)
}

/// Adaptive Simpson integration to absolute accuracy `eps`.
pub fn adaptive_simpson<F: RealFn + ?Sized>(f: &F, a: f64, b: f64, eps: f64) -> AppResult<f64> {
    struct Panel {
        a: f64,
        b: f64,
        fa: f64,
        fm: f64,
        fb: f64,
        whole: f64,
    }
    fn panel<F: RealFn + ?Sized>(f: &F, a: f64, b: f64, fa: f64, fb: f64) -> AppResult<Panel> {
        let fm = f.value(0.5 * (a + b))?;
        let whole = (b - a) / 6.0 * (fa + 4.0 * fm + fb);
        Ok(Panel { a, b, fa, fm, fb, whole })
    }
    fn recurse<F: RealFn + ?Sized>(f: &F, p: Panel, eps: f64, depth: u32) -> AppResult<f64> {
        let m = 0.5 * (p.a + p.b);
        let left = panel(f, p.a, m, p.fa, p.fm)?;
        let right = panel(f, m, p.b, p.fm, p.fb)?;
        let delta = left.whole + right.whole - p.whole;
        if depth == 0 || delta.abs() <= 15.0 * eps {
            return Ok(left.whole + right.whole + delta / 15.0);
        }
        Ok(recurse(f, left, eps / 2.0, depth - 1)? + recurse(f, right, eps / 2.0, depth - 1)?)
    }
    let (fa, fb) = (f.value(a)?, f.value(b)?);
    let top = panel(f, a, b, fa, fb)?;
    recurse(f, top, eps, 40)
}

/// Find a root of the formula `src` (in `x`) on `[a, b]`: Newton from the
/// midpoint first, falling back to bisection if Newton fails or leaves the interval.
pub fn solve(src: &str, a: f64, b: f64) -> AppResult<Root> {
    let f = Compiled::new(src, "x")?;
    let tol = Tolerance::default();
    match newton(&f, 0.5 * (a + b), tol) {
        Ok(r) if (a..=b).contains(&r.x) => Ok(r),
        _ => bisect(&f, a, b, tol),
    }
}

/// Integrate the formula `src` (in `x`) over `[a, b]`.
pub fn integrate(src: &str, a: f64, b: f64) -> AppResult<f64> {
    adaptive_simpson(&Compiled::new(src, "x")?, a, b, 1e-9)
}

/// Slope of the formula `src` (in `x`) at `x`.
pub fn slope(src: &str, x: f64) -> AppResult<f64> {
    derivative(&Compiled::new(src, "x")?, x, 1e-5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() < eps
    }

    #[test]
    fn roots() {
        let f = Compiled::new("x^2 - 2", "x").unwrap();
        let tol = Tolerance::default();
        let b = bisect(&f, 0.0, 2.0, tol).unwrap();
        assert!(close(b.x, 2f64.sqrt(), 1e-9));
        let n = newton(&f, 1.0, tol).unwrap();
        assert!(close(n.x, 2f64.sqrt(), 1e-9) && n.iterations < b.iterations);
        assert!(close(secant(&f, 1.0, 2.0, tol).unwrap().x, 2f64.sqrt(), 1e-9));
        assert!(bisect(&f, 2.0, 3.0, tol).is_err());
        assert!(close(solve("x^3 - x - 2", 1.0, 2.0).unwrap().x, 1.5213797068, 1e-8));
    }

    #[test]
    fn scan_and_closures() {
        let f = Compiled::new("(x - 1) * (x - k)", "x").unwrap().with_const("k", 3.0);
        let r = find_roots(&f, -2.0, 4.0, 12, Tolerance::default()).unwrap();
        assert_eq!(r.len(), 2);
        assert!(close(r[0], 1.0, 1e-9) && close(r[1], 3.0, 1e-9));
        let cube = |x: f64| x * x * x;
        assert!(close(derivative(&cube, 2.0, 1e-5).unwrap(), 12.0, 1e-6));
        assert!(close(second_derivative(&cube, 2.0, 1e-4).unwrap(), 12.0, 1e-4));
    }

    #[test]
    fn integration() {
        assert!(close(simpson(&|x: f64| x * x, 0.0, 3.0, 10).unwrap(), 9.0, 1e-12));
        assert!(close(integrate("1 / x", 1.0, 2.0).unwrap(), 2f64.ln(), 1e-9));
        assert!(close(slope("x ^ 3", 2.0).unwrap(), 12.0, 1e-5));
        assert!(integrate("x / 0 - x / 0", 0.0, 1.0).is_err());
    }
}
