//! Exact rational arithmetic on `i64` numerators and denominators.
//!
//! A [`Rational`] is always kept in lowest terms with a positive
//! denominator, so structural equality is numeric equality.

use crate::{gcd, Number};
use lib_common::{AppError, AppResult, Describe};
use std::cmp::Ordering;
use std::fmt;
use std::iter::{Product, Sum};
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, Sub, SubAssign};
use std::str::FromStr;

/// An exact fraction `num / den`, normalised by the gcd.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rational {
    num: i64,
    den: i64,
}

impl Rational {
    pub const ZERO: Rational = Rational { num: 0, den: 1 };
    pub const ONE: Rational = Rational { num: 1, den: 1 };

    /// Build `num / den` in lowest terms. Panics if `den` is zero.
    pub fn new(num: i64, den: i64) -> Rational {
        Rational::try_new(num, den).expect("rational with zero denominator")
    }

    /// Build `num / den` in lowest terms, failing on a zero denominator.
    pub fn try_new(num: i64, den: i64) -> AppResult<Rational> {
        if den == 0 {
            return Err(AppError::Math(format!("{}/0", num)));
        }
        Ok(Rational::reduce(num as i128, den as i128))
    }

    /// Normalise a wide intermediate result back into an `i64` fraction.
    fn reduce(num: i128, den: i128) -> Rational {
        let g = gcd128(num.unsigned_abs(), den.unsigned_abs()).max(1) as i128;
        let sign = if den < 0 { -1 } else { 1 };
        let (n, d) = (sign * num / g, sign * den / g);
        Rational {
            num: i64::try_from(n).expect("rational numerator overflow"),
            den: i64::try_from(d).expect("rational denominator overflow"),
        }
    }

    /// An integer as a rational.
    pub fn from_integer(n: i64) -> Rational {
        Rational { num: n, den: 1 }
    }

    pub fn numer(&self) -> i64 {
        self.num
    }

    pub fn denom(&self) -> i64 {
        self.den
    }

    pub fn is_integer(&self) -> bool {
        self.den == 1
    }

    pub fn abs(self) -> Rational {
        Rational { num: self.num.abs(), den: self.den }
    }

    pub fn signum(self) -> i64 {
        self.num.signum()
    }

    /// The multiplicative inverse, or an error for zero.
    pub fn recip(self) -> AppResult<Rational> {
        Rational::try_new(self.den, self.num)
    }

    /// Largest integer not greater than the value.
    pub fn floor(self) -> i64 {
        self.num.div_euclid(self.den)
    }

    /// Smallest integer not less than the value.
    pub fn ceil(self) -> i64 {
        -(-self.num).div_euclid(self.den)
    }

    /// Nearest integer, halves rounded away from zero.
    pub fn round(self) -> i64 {
        let (n, d) = (self.num as i128, self.den as i128);
        ((2 * n + n.signum() * d) / (2 * d)) as i64
    }

    /// Integer power; negative exponents invert the value.
    pub fn powi(self, exp: i32) -> AppResult<Rational> {
        let base = if exp < 0 { self.recip()? } else { self };
        Ok(crate::pow(base, exp.unsigned_abs()))
    }

    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// The continued-fraction expansion `[a0; a1, a2, ...]`.
    pub fn continued_fraction(self) -> Vec<i64> {
        let mut terms = Vec::new();
        let (mut n, mut d) = (self.num as i128, self.den as i128);
        while d != 0 {
            let q = n.div_euclid(d);
            terms.push(q as i64);
            (n, d) = (d, n - q * d);
        }
        terms
    }

    /// Rebuild a rational from continued-fraction terms.
    pub fn from_continued_fraction(terms: &[i64]) -> AppResult<Rational> {
        let (last, rest) = terms.split_last().ok_or(AppError::Empty)?;
        rest.iter().rev().try_fold(Rational::from_integer(*last), |acc, &a| {
            Ok(Rational::from_integer(a) + acc.recip()?)
        })
    }
}

fn gcd128(a: u128, b: u128) -> u128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => gcd(a, b) as u128,
        _ if b == 0 => a,
        _ => gcd128(b, a % b),
    }
}

impl Default for Rational {
    fn default() -> Self {
        Rational::ZERO
    }
}

impl Number for Rational {
    fn zero() -> Self {
        Rational::ZERO
    }
    fn one() -> Self {
        Rational::ONE
    }
    fn to_f64(self) -> f64 {
        Rational::to_f64(self)
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {
        $(
            impl From<$t> for Rational {
                fn from(n: $t) -> Rational {
                    Rational::from_integer(n as i64)
                }
            }
        )*
    };
}

from_int!(i8, i16, i32, i64, u8, u16, u32);

impl Ord for Rational {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.num as i128 * other.den as i128).cmp(&(other.num as i128 * self.den as i128))
    }
}

impl PartialOrd for Rational {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Neg for Rational {
    type Output = Rational;
    fn neg(self) -> Rational {
        Rational { num: -self.num, den: self.den }
    }
}

/// Implements a binary operator plus its `*Assign` form and the
/// mixed `Rational op i64` variant from a single wide-arithmetic formula.
macro_rules! rational_op {
    ($Op:ident, $op:ident, $OpAssign:ident, $op_assign:ident, |$a:ident, $b:ident, $c:ident, $d:ident| $body:expr) => {
        impl $Op for Rational {
            type Output = Rational;
            fn $op(self, rhs: Rational) -> Rational {
                let ($a, $b) = (self.num as i128, self.den as i128);
                let ($c, $d) = (rhs.num as i128, rhs.den as i128);
                let (n, d) = $body;
                if d == 0 {
                    panic!("rational {} by zero", stringify!($op));
                }
                Rational::reduce(n, d)
            }
        }
        impl $Op<i64> for Rational {
            type Output = Rational;
            fn $op(self, rhs: i64) -> Rational {
                $Op::$op(self, Rational::from_integer(rhs))
            }
        }
        impl $OpAssign for Rational {
            fn $op_assign(&mut self, rhs: Rational) {
                *self = $Op::$op(*self, rhs);
            }
        }
    };
}

rational_op!(Add, add, AddAssign, add_assign, |a, b, c, d| (a * d + c * b, b * d));
rational_op!(Sub, sub, SubAssign, sub_assign, |a, b, c, d| (a * d - c * b, b * d));
rational_op!(Mul, mul, MulAssign, mul_assign, |a, b, c, d| (a * c, b * d));
rational_op!(Div, div, DivAssign, div_assign, |a, b, c, d| (a * d, b * c));

impl Rem for Rational {
    type Output = Rational;
    /// Remainder with the sign of the dividend, like integer `%`.
    fn rem(self, rhs: Rational) -> Rational {
        let q = self / rhs;
        self - rhs * Rational::from_integer(q.num / q.den)
    }
}

impl Sum for Rational {
    fn sum<I: Iterator<Item = Rational>>(iter: I) -> Rational {
        iter.fold(Rational::ZERO, Add::add)
    }
}

impl Product for Rational {
    fn product<I: Iterator<Item = Rational>>(iter: I) -> Rational {
        iter.fold(Rational::ONE, Mul::mul)
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

impl fmt::Debug for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rational({}/{})", self.num, self.den)
    }
}

impl Describe for Rational {
    fn name(&self) -> String {
        format!("Rational {}", self)
    }
}

impl FromStr for Rational {
    type Err = AppError;

    /// Accepts `n`, `n/d` and decimals such as `-1.25`.
    fn from_str(s: &str) -> AppResult<Rational> {
        let s = s.trim();
        let int = |t: &str| t.trim().parse::<i64>().map_err(|e| AppError::Parse(format!("{:?}: {}", s, e)));
        if let Some((n, d)) = s.split_once('/') {
            return Rational::try_new(int(n)?, int(d)?);
        }
        if let Some((whole, frac)) = s.split_once('.') {
            if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AppError::Parse(format!("{:?}: bad decimal", s)));
            }
            let scale = 10i64
                .checked_pow(frac.len() as u32)
                .ok_or_else(|| AppError::Parse(format!("{:?}: too many digits", s)))?;
            let negative = whole.trim_start().starts_with('-');
            let whole = if whole == "-" || whole.is_empty() { 0 } else { int(whole)? };
            let frac = Rational::new(int(frac)?, scale);
            let magnitude = Rational::from_integer(whole.abs()) + frac;
            return Ok(if negative { -magnitude } else { magnitude });
        }
        int(s).map(Rational::from_integer)
    }
}

/// The n-th harmonic number `1 + 1/2 + ... + 1/n`, computed exactly.
pub fn harmonic(n: u32) -> Rational {
    (1..=n as i64).map(|k| Rational::new(1, k)).sum()
}

/// Exact arithmetic mean of a slice of rationals.
pub fn mean(xs: &[Rational]) -> AppResult<Rational> {
    if xs.is_empty() {
        return Err(AppError::Empty);
    }
    Ok(xs.iter().copied().sum::<Rational>() / xs.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i64, d: i64) -> Rational {
        Rational::new(n, d)
    }

    #[test]
    fn normalises_and_orders() {
        assert_eq!(r(6, -8), r(-3, 4));
        assert_eq!(r(6, -8).denom(), 4);
        assert!(r(1, 3) < r(1, 2));
        assert_eq!([r(1, 2), r(-1, 3), r(2, 5)].iter().max(), Some(&r(1, 2)));
        assert!(Rational::try_new(1, 0).is_err());
    }

    #[test]
    fn arithmetic() {
        assert_eq!(r(1, 2) + r(1, 3), r(5, 6));
        assert_eq!(r(1, 2) - r(3, 4), r(-1, 4));
        assert_eq!(r(2, 3) * r(9, 4), r(3, 2));
        assert_eq!(r(2, 3) / r(4, 9), r(3, 2));
        assert_eq!(r(7, 2) % r(1, 1), r(1, 2));
        assert_eq!(r(-7, 2).floor(), -4);
        assert_eq!(r(-7, 2).ceil(), -3);
        assert_eq!(r(-7, 2).round(), -4);
        assert_eq!(r(2, 3).powi(-2).unwrap(), r(9, 4));
        assert_eq!(harmonic(4), r(25, 12));
        assert_eq!(mean(&[r(1, 2), r(3, 2)]).unwrap(), Rational::ONE);
    }

    #[test]
    fn parse_and_display() {
        assert_eq!("3/-6".parse::<Rational>().unwrap(), r(-1, 2));
        assert_eq!("-1.25".parse::<Rational>().unwrap(), r(-5, 4));
        assert_eq!("-0.5".parse::<Rational>().unwrap(), r(-1, 2));
        assert!("1/x".parse::<Rational>().is_err());
        assert_eq!(r(5, 6).to_string(), "5/6");
        assert_eq!(r(4, 2).to_string(), "2");
    }

    #[test]
    fn continued_fractions() {
        assert_eq!(r(415, 93).continued_fraction(), vec![4, 2, 6, 7]);
        assert_eq!(Rational::from_continued_fraction(&[4, 2, 6, 7]).unwrap(), r(415, 93));
    }
}
