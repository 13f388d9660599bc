//! lib-common: shared types, traits and macros for the TestApp workspace.
//!
//! Exercises `env!` (cargo's CARGO_PKG_VERSION, a build-script rustc-env and
//! an optional user variable), `include_str!` and `include!` from OUT_DIR.

use std::collections::BTreeMap;
use std::fmt;

include!(concat!(env!("OUT_DIR"), "/build_info.rs"));

pub mod version;

/// Application name, read from a data file at compile time.
pub const APP_NAME: &str = include_str!("../data/app_name.txt");
/// Application version shown in the banner.
pub const APP_VERSION: &str = "1.0.0";
/// The crate version as cargo sees it.
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Forwarded by build.rs through cargo:rustc-env.
pub const CHANNEL: &str = env!("TESTAPP_BUILD_CHANNEL");
/// An optional user variable read straight from the environment.
pub const GREETING_OVERRIDE: Option<&str> = option_env!("TESTAPP_GREETING");

/// Log a line prefixed with the application tag.
#[macro_export]
macro_rules! app_log {
    ($($arg:tt)*) => {
        $crate::tagged(&format!($($arg)*))
    };
}

/// Build a `BTreeMap` from `key => value` pairs.
#[macro_export]
macro_rules! btmap {
    ($($k:expr => $v:expr),* $(,)?) => {{
        let mut m = ::std::collections::BTreeMap::new();
        $( m.insert($k, $v); )*
        m
    }};
}

/// Prefix a message with the application tag.
pub fn tagged(msg: &str) -> String {
    format!("[{}] {}", APP_NAME, msg)
}

/// The welcome banner.
pub fn banner() -> String {
    match GREETING_OVERRIDE {
        Some(g) => format!("{} {} v{}", g, APP_NAME, APP_VERSION),
        None => format!("Welcome to {} v{}", APP_NAME, APP_VERSION),
    }
}

/// Something that can describe itself.
pub trait Describe {
    fn name(&self) -> String;
    fn describe(&self) -> String {
        format!("<{}>", self.name())
    }
}

/// Errors shared by every crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppError {
    Parse(String),
    Math(String),
    Empty,
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Parse(s) => write!(f, "parse error: {}", s),
            AppError::Math(s) => write!(f, "math error: {}", s),
            AppError::Empty => write!(f, "empty input"),
        }
    }
}

impl std::error::Error for AppError {}

pub type AppResult<T> = Result<T, AppError>;

/// A small generic registry keyed by name.
#[derive(Debug, Default, Clone)]
pub struct Registry<T> {
    items: BTreeMap<String, T>,
}

impl<T: Clone + fmt::Debug> Registry<T> {
    pub fn new() -> Self {
        Registry { items: BTreeMap::new() }
    }
    pub fn insert(&mut self, k: impl Into<String>, v: T) -> Option<T> {
        self.items.insert(k.into(), v)
    }
    pub fn get(&self, k: &str) -> Option<&T> {
        self.items.get(k)
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.items.keys()
    }
    pub fn map_values<U, F: Fn(&T) -> U>(&self, f: F) -> Registry<U> {
        Registry { items: self.items.iter().map(|(k, v)| (k.clone(), f(v))).collect() }
    }
}

/// Generate a family of newtype wrappers with Display and arithmetic.
macro_rules! newtypes {
    ($($name:ident($inner:ty)),* $(,)?) => {
        $(
            #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
            pub struct $name(pub $inner);
            impl fmt::Display for $name {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    write!(f, "{}({})", stringify!($name), self.0)
                }
            }
            impl std::ops::Add for $name {
                type Output = $name;
                fn add(self, o: $name) -> $name { $name(self.0 + o.0) }
            }
            impl std::ops::Sub for $name {
                type Output = $name;
                fn sub(self, o: $name) -> $name { $name(self.0 - o.0) }
            }
            impl Describe for $name {
                fn name(&self) -> String { stringify!($name).to_string() }
            }
        )*
    };
}

newtypes!(Meters(f64), Seconds(f64), Count(u64), Score(i64), Ratio(f32));

/// Sum of the generated build table (from build.rs).
pub fn build_table_sum() -> u32 {
    BUILD_TABLE.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_mentions_version() {
        assert!(banner().contains("1.0.0"));
    }

    #[test]
    fn registry_roundtrip() {
        let mut r = Registry::new();
        r.insert("a", 1);
        r.insert("b", 2);
        assert_eq!(r.get("b"), Some(&2));
        assert_eq!(r.map_values(|v| v * 10).get("a"), Some(&10));
    }

    #[test]
    fn macros_work() {
        let m = btmap! { 1 => "one", 2 => "two" };
        assert_eq!(m.len(), 2);
        assert_eq!(app_log!("x={}", 1), "[TestApp] x=1");
        assert_eq!((Meters(1.5) + Meters(2.0)).0, 3.5);
    }

    #[test]
    fn build_table() {
        assert_eq!(build_table_sum(), (0..16u32).map(|i| i * i + 1).sum());
    }
}
