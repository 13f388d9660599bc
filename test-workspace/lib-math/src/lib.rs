//! lib-math: generic arithmetic, matrices and statistics.

use lib_common::{AppError, AppResult, Describe};
use std::fmt::{self, Debug, Display};
use std::ops::{Add, Mul, Sub};

pub mod poly;
pub mod rational;

pub use poly::{Polynomial, RatPoly};
pub use rational::Rational;

/// Numbers the library can work with.
pub trait Number:
    Copy + Debug + Display + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self>
{
    fn zero() -> Self;
    fn one() -> Self;
    fn to_f64(self) -> f64;
}

macro_rules! impl_number {
    ($($t:ty),*) => {
        $(
            impl Number for $t {
                fn zero() -> Self { 0 as $t }
                fn one() -> Self { 1 as $t }
                fn to_f64(self) -> f64 { self as f64 }
            }
        )*
    };
}

impl_number!(i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, isize, usize, f32, f64);

/// Add two numbers.
pub fn add<T: Number>(a: T, b: T) -> T {
    a + b
}

/// Multiply two numbers.
pub fn mul<T: Number>(a: T, b: T) -> T {
    a * b
}

/// Sum of a slice.
pub fn sum<T: Number>(xs: &[T]) -> T {
    xs.iter().fold(T::zero(), |acc, &x| acc + x)
}

/// Integer power by repeated squaring.
pub fn pow<T: Number>(mut base: T, mut exp: u32) -> T {
    let mut acc = T::one();
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base;
        }
        base = base * base;
        exp >>= 1;
    }
    acc
}

/// n-th Fibonacci number (u128, iterative).
pub fn fibonacci(n: u32) -> u128 {
    let (mut a, mut b) = (0u128, 1u128);
    for _ in 0..n {
        let t = a + b;
        a = b;
        b = t;
    }
    a
}

/// Greatest common divisor.
pub fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// Primes up to n with a sieve.
pub fn primes_up_to(n: usize) -> Vec<usize> {
    let mut sieve = vec![true; n + 1];
    let mut out = Vec::new();
    for i in 2..=n {
        if sieve[i] {
            out.push(i);
            let mut j = i * i;
            while j <= n {
                sieve[j] = false;
                j += i;
            }
        }
    }
    out
}

/// A dense row-major matrix.
#[derive(Clone, PartialEq)]
pub struct Matrix<T: Number, const R: usize, const C: usize> {
    data: [[T; C]; R],
}

impl<T: Number, const R: usize, const C: usize> Matrix<T, R, C> {
    pub fn from_rows(data: [[T; C]; R]) -> Self {
        Matrix { data }
    }
    pub fn zeros() -> Self {
        Matrix { data: [[T::zero(); C]; R] }
    }
    pub fn get(&self, r: usize, c: usize) -> T {
        self.data[r][c]
    }
    pub fn transpose(&self) -> Matrix<T, C, R> {
        let mut out = Matrix::<T, C, R>::zeros();
        for r in 0..R {
            for c in 0..C {
                out.data[c][r] = self.data[r][c];
            }
        }
        out
    }
    pub fn mul<const K: usize>(&self, o: &Matrix<T, C, K>) -> Matrix<T, R, K> {
        let mut out = Matrix::<T, R, K>::zeros();
        for r in 0..R {
            for k in 0..K {
                let mut acc = T::zero();
                for c in 0..C {
                    acc = acc + self.data[r][c] * o.data[c][k];
                }
                out.data[r][k] = acc;
            }
        }
        out
    }
    pub fn trace(&self) -> T {
        let mut acc = T::zero();
        for i in 0..R.min(C) {
            acc = acc + self.data[i][i];
        }
        acc
    }
}

impl<T: Number, const R: usize, const C: usize> Debug for Matrix<T, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.data.iter()).finish()
    }
}

impl<T: Number, const R: usize, const C: usize> Describe for Matrix<T, R, C> {
    fn name(&self) -> String {
        format!("Matrix{}x{}", R, C)
    }
}

/// Summary statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub count: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub stddev: f64,
}

/// Compute statistics over any numbers.
pub fn stats<T: Number>(xs: &[T]) -> AppResult<Stats> {
    if xs.is_empty() {
        return Err(AppError::Empty);
    }
    let vals: Vec<f64> = xs.iter().map(|x| x.to_f64()).collect();
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n;
    let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let min = vals.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    Ok(Stats { count: vals.len(), mean, min, max, stddev: var.sqrt() })
}

/// Checked division reporting a typed error.
pub fn checked_div(a: i64, b: i64) -> AppResult<i64> {
    a.checked_div(b).ok_or_else(|| AppError::Math(format!("{} / {}", a, b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        assert_eq!(add(5, 3), 8);
        assert_eq!(pow(2u64, 10), 1024);
        assert_eq!(sum(&[1.5f64, 2.5]), 4.0);
        assert_eq!(gcd(48, 18), 6);
        assert_eq!(fibonacci(10), 55);
        assert_eq!(primes_up_to(20), vec![2, 3, 5, 7, 11, 13, 17, 19]);
    }

    #[test]
    fn matrices() {
        let a = Matrix::from_rows([[1, 2], [3, 4]]);
        let i = Matrix::from_rows([[1, 0], [0, 1]]);
        assert_eq!(a.mul(&i), a);
        assert_eq!(a.transpose().get(0, 1), 3);
        assert_eq!(a.trace(), 5);
    }

    #[test]
    fn statistics() {
        let s = stats(&[2, 4, 4, 4, 5, 5, 7, 9]).unwrap();
        assert_eq!(s.mean, 5.0);
        assert_eq!(s.stddev, 2.0);
        assert!(stats::<i32>(&[]).is_err());
        assert!(checked_div(1, 0).is_err());
    }
}
