//! Dense univariate polynomials over any [`Number`], with exact long
//! division and integration over [`Rational`], plus Simpson's rule for `f64`.

use crate::rational::Rational;
use crate::Number;
use lib_common::{AppError, AppResult, Describe};
use std::fmt;
use std::ops::{Add, Mul, Neg, Sub};

/// A polynomial `c0 + c1 x + c2 x^2 + ...`, stored lowest degree first
/// with no trailing zero coefficients.
#[derive(Clone, PartialEq)]
pub struct Polynomial<T: Number> {
    coeffs: Vec<T>,
}

/// Polynomials with integer coefficients.
pub type IntPoly = Polynomial<i64>;
/// Polynomials with exact rational coefficients.
pub type RatPoly = Polynomial<Rational>;
/// Polynomials with floating-point coefficients.
pub type RealPoly = Polynomial<f64>;

impl<T: Number> Polynomial<T> {
    /// Build from coefficients, lowest degree first.
    pub fn new(mut coeffs: Vec<T>) -> Self {
        while coeffs.last().is_some_and(|c| *c == T::zero()) {
            coeffs.pop();
        }
        Polynomial { coeffs }
    }

    pub fn zero() -> Self {
        Polynomial { coeffs: Vec::new() }
    }

    pub fn constant(c: T) -> Self {
        Polynomial::new(vec![c])
    }

    /// The monomial `c x^n`.
    pub fn monomial(c: T, n: usize) -> Self {
        let mut coeffs = vec![T::zero(); n + 1];
        coeffs[n] = c;
        Polynomial::new(coeffs)
    }

    pub fn coeffs(&self) -> &[T] {
        &self.coeffs
    }

    pub fn is_zero(&self) -> bool {
        self.coeffs.is_empty()
    }

    /// Degree, or `None` for the zero polynomial.
    pub fn degree(&self) -> Option<usize> {
        self.coeffs.len().checked_sub(1)
    }

    pub fn leading(&self) -> T {
        self.coeffs.last().copied().unwrap_or_else(T::zero)
    }

    /// Evaluate with Horner's rule.
    pub fn eval(&self, x: T) -> T {
        self.coeffs.iter().rev().fold(T::zero(), |acc, &c| acc * x + c)
    }

    /// The formal derivative.
    pub fn derivative(&self) -> Self {
        let mut k = T::zero();
        let coeffs = self
            .coeffs
            .iter()
            .skip(1)
            .map(|&c| {
                k = k + T::one();
                c * k
            })
            .collect();
        Polynomial::new(coeffs)
    }

    /// Composition `self(other(x))`.
    pub fn compose(&self, other: &Self) -> Self {
        self.coeffs
            .iter()
            .rev()
            .fold(Polynomial::zero(), |acc, &c| &(&acc * other) + &Polynomial::constant(c))
    }

    /// Multiply every coefficient by `k`.
    pub fn scale(&self, k: T) -> Self {
        Polynomial::new(self.coeffs.iter().map(|&c| c * k).collect())
    }

    fn zip_with(&self, other: &Self, f: impl Fn(T, T) -> T) -> Self {
        let n = self.coeffs.len().max(other.coeffs.len());
        let at = |p: &Self, i: usize| p.coeffs.get(i).copied().unwrap_or_else(T::zero);
        Polynomial::new((0..n).map(|i| f(at(self, i), at(other, i))).collect())
    }
}

impl<T: Number> Add for &Polynomial<T> {
    type Output = Polynomial<T>;
    fn add(self, rhs: Self) -> Polynomial<T> {
        self.zip_with(rhs, |a, b| a + b)
    }
}

impl<T: Number> Sub for &Polynomial<T> {
    type Output = Polynomial<T>;
    fn sub(self, rhs: Self) -> Polynomial<T> {
        self.zip_with(rhs, |a, b| a - b)
    }
}

impl<T: Number> Mul for &Polynomial<T> {
    type Output = Polynomial<T>;
    fn mul(self, rhs: Self) -> Polynomial<T> {
        if self.is_zero() || rhs.is_zero() {
            return Polynomial::zero();
        }
        let mut out = vec![T::zero(); self.coeffs.len() + rhs.coeffs.len() - 1];
        for (i, &a) in self.coeffs.iter().enumerate() {
            for (j, &b) in rhs.coeffs.iter().enumerate() {
                out[i + j] = out[i + j] + a * b;
            }
        }
        Polynomial::new(out)
    }
}

/// Owned-operand forms delegate to the borrowed ones.
macro_rules! owned_ops {
    ($($Op:ident :: $op:ident),*) => {
        $(
            impl<T: Number> $Op for Polynomial<T> {
                type Output = Polynomial<T>;
                fn $op(self, rhs: Self) -> Polynomial<T> {
                    $Op::$op(&self, &rhs)
                }
            }
        )*
    };
}

owned_ops!(Add::add, Sub::sub, Mul::mul);

impl<T: Number + Neg<Output = T>> Neg for Polynomial<T> {
    type Output = Polynomial<T>;
    fn neg(self) -> Polynomial<T> {
        Polynomial { coeffs: self.coeffs.into_iter().map(|c| -c).collect() }
    }
}

impl<T: Number> fmt::Display for Polynomial<T> {
    /// Writes e.g. `3x^2 - x + 1/2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return write!(f, "0");
        }
        let mut first = true;
        for (power, &c) in self.coeffs.iter().enumerate().rev() {
            if c == T::zero() {
                continue;
            }
            let negative = c < T::zero();
            let magnitude = if negative { T::zero() - c } else { c };
            match (first, negative) {
                (true, true) => write!(f, "-")?,
                (true, false) => {}
                (false, true) => write!(f, " - ")?,
                (false, false) => write!(f, " + ")?,
            }
            first = false;
            if magnitude != T::one() || power == 0 {
                write!(f, "{}", magnitude)?;
            }
            match power {
                0 => {}
                1 => write!(f, "x")?,
                _ => write!(f, "x^{}", power)?,
            }
        }
        Ok(())
    }
}

impl<T: Number> fmt::Debug for Polynomial<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Polynomial({})", self)
    }
}

impl<T: Number> Describe for Polynomial<T> {
    fn name(&self) -> String {
        match self.degree() {
            Some(d) => format!("Polynomial of degree {}", d),
            None => "Zero polynomial".to_string(),
        }
    }
}

impl RatPoly {
    /// Polynomial long division: `(quotient, remainder)`.
    pub fn div_rem(&self, divisor: &RatPoly) -> AppResult<(RatPoly, RatPoly)> {
        let dd = divisor.degree().ok_or_else(|| AppError::Math("polynomial division by zero".into()))?;
        let lead = divisor.leading();
        let mut rem = self.coeffs.clone();
        let mut quot = vec![Rational::ZERO; rem.len().saturating_sub(dd)];
        for i in (0..quot.len()).rev() {
            let q = rem[i + dd] / lead;
            quot[i] = q;
            for (j, &d) in divisor.coeffs.iter().enumerate() {
                rem[i + j] -= q * d;
            }
        }
        rem.truncate(dd);
        Ok((Polynomial::new(quot), Polynomial::new(rem)))
    }

    /// The antiderivative with zero constant term.
    pub fn integral(&self) -> RatPoly {
        let mut coeffs = vec![Rational::ZERO];
        coeffs.extend(self.coeffs.iter().zip(1i64..).map(|(&c, k)| c / k));
        Polynomial::new(coeffs)
    }

    /// Exact definite integral over `[a, b]`.
    pub fn definite_integral(&self, a: Rational, b: Rational) -> Rational {
        let anti = self.integral();
        anti.eval(b) - anti.eval(a)
    }
}

/// Composite Simpson's rule for `f` over `[a, b]` with `n` (rounded up to even) intervals.
pub fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    match try_simpson(|x| Ok::<f64, std::convert::Infallible>(f(x)), a, b, n) {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// Simpson's rule for a function that can fail: the first error stops it.
pub fn try_simpson<E>(f: impl Fn(f64) -> Result<f64, E>, a: f64, b: f64, n: usize) -> Result<f64, E> {
    let n = (n.max(2) + 1) & !1;
    let h = (b - a) / n as f64;
    let inner = (1..n).try_fold(0.0, |acc, i| {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        f(a + h * i as f64).map(|y| acc + w * y)
    })?;
    Ok(h / 3.0 * (f(a)? + inner + f(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i64, d: i64) -> Rational {
        Rational::new(n, d)
    }

    #[test]
    fn integer_polynomials() {
        let p = IntPoly::new(vec![1, -2, 3, 0]);
        assert_eq!(p.degree(), Some(2));
        assert_eq!(p.eval(2), 9);
        assert_eq!(p.derivative(), IntPoly::new(vec![-2, 6]));
        assert_eq!(p.to_string(), "3x^2 - 2x + 1");
        let q = IntPoly::new(vec![-1, 1]);
        assert_eq!((&p * &q).to_string(), "3x^3 - 5x^2 + 3x - 1");
        assert_eq!(&p + &q, IntPoly::new(vec![0, -1, 3]));
        assert_eq!(p.compose(&q).eval(3), p.eval(2));
        assert_eq!((p.clone() - p).degree(), None);
    }

    /// A rational polynomial from integer coefficients, lowest degree first.
    fn rp(coeffs: &[i64]) -> RatPoly {
        RatPoly::new(coeffs.iter().map(|&c| Rational::from_integer(c)).collect())
    }

    #[test]
    fn rational_polynomials() {
        let p = rp(&[-1, 0, 1]);
        let (q, rem) = p.div_rem(&rp(&[-1, 1])).unwrap();
        assert_eq!(q.to_string(), "x + 1");
        assert!(rem.is_zero());
        let (q, rem) = p.div_rem(&rp(&[0, 2])).unwrap();
        assert_eq!((q.to_string(), rem.to_string()), ("1/2x".to_string(), "-1".to_string()));
        assert!(p.div_rem(&RatPoly::zero()).is_err());
        assert_eq!(p.definite_integral(Rational::ZERO, Rational::ONE), r(-2, 3));
        assert_eq!(RatPoly::monomial(r(3, 1), 1).integral().to_string(), "3/2x^2");
    }

    #[test]
    fn real_polynomials() {
        let sq = RealPoly::new(vec![-2.0, 0.0, 0.5]);
        assert_eq!(sq.eval(4.0), 6.0);
        let area = simpson(|x| sq.eval(x), 0.0, 3.0, 10);
        assert!((area - 4.5 + 6.0).abs() < 1e-9);
    }
}
