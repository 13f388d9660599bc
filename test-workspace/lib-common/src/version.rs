//! Semantic versions (`MAJOR.MINOR.PATCH[-PRE]`) and simple version
//! requirements such as `>=1.2`, `^1.0.0`, `~0.3` or `=2.0.1`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::{AppError, AppResult};

/// One dot-separated identifier of a pre-release tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PreId {
    Numeric(u64),
    Alpha(String),
}

impl Ord for PreId {
    /// Numeric identifiers sort before alphanumeric ones (semver §11).
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PreId::Numeric(a), PreId::Numeric(b)) => a.cmp(b),
            (PreId::Numeric(_), PreId::Alpha(_)) => Ordering::Less,
            (PreId::Alpha(_), PreId::Numeric(_)) => Ordering::Greater,
            (PreId::Alpha(a), PreId::Alpha(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for PreId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreId::Numeric(n) => write!(f, "{}", n),
            PreId::Alpha(s) => f.write_str(s),
        }
    }
}

/// A semantic version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<PreId>,
}

fn parse_number(part: &str, what: &str) -> AppResult<u64> {
    if part.is_empty() {
        return Err(AppError::Parse(format!("missing {} number", what)));
    }
    if part.len() > 1 && part.starts_with('0') {
        return Err(AppError::Parse(format!("leading zero in {} '{}'", what, part)));
    }
    part.parse::<u64>()
        .map_err(|_| AppError::Parse(format!("invalid {} '{}'", what, part)))
}

fn parse_pre(tag: &str) -> AppResult<Vec<PreId>> {
    tag.split('.')
        .map(|id| {
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                Err(AppError::Parse(format!("invalid pre-release identifier '{}'", id)))
            } else if id.chars().all(|c| c.is_ascii_digit()) {
                parse_number(id, "pre-release").map(PreId::Numeric)
            } else {
                Ok(PreId::Alpha(id.to_string()))
            }
        })
        .collect()
}

impl Version {
    /// A release version without a pre-release tag.
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version { major, minor, patch, pre: Vec::new() }
    }

    /// Parse `MAJOR.MINOR.PATCH[-PRE][+BUILD]`; build metadata is ignored.
    pub fn parse(text: &str) -> AppResult<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AppError::Empty);
        }
        let core_and_pre = text.split('+').next().unwrap_or(text);
        let (core, pre) = match core_and_pre.split_once('-') {
            Some((core, tag)) => (core, parse_pre(tag)?),
            None => (core_and_pre, Vec::new()),
        };
        let mut parts = core.split('.');
        let major = parse_number(parts.next().unwrap_or(""), "major")?;
        let minor = parse_number(parts.next().unwrap_or(""), "minor")?;
        let patch = parse_number(parts.next().unwrap_or(""), "patch")?;
        if let Some(extra) = parts.next() {
            return Err(AppError::Parse(format!("unexpected component '{}'", extra)));
        }
        Ok(Version { major, minor, patch, pre })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// The next version after a breaking change.
    pub fn bump_major(&self) -> Self {
        Version::new(self.major + 1, 0, 0)
    }

    /// The next version after a compatible feature addition.
    pub fn bump_minor(&self) -> Self {
        Version::new(self.major, self.minor + 1, 0)
    }

    /// The next version after a bug fix (a pre-release becomes its release).
    pub fn bump_patch(&self) -> Self {
        if self.is_prerelease() {
            Version::new(self.major, self.minor, self.patch)
        } else {
            Version::new(self.major, self.minor, self.patch + 1)
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            write!(f, "{}", id)?;
        }
        Ok(())
    }
}

impl FromStr for Version {
    type Err = AppError;
    fn from_str(s: &str) -> AppResult<Self> {
        Version::parse(s)
    }
}

impl crate::Describe for Version {
    fn name(&self) -> String {
        format!("v{}", self)
    }
}

/// Comparison operator of a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Exact,
    Greater,
    GreaterEq,
    Less,
    LessEq,
    Tilde,
    Caret,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Exact => "=",
            Op::Greater => ">",
            Op::GreaterEq => ">=",
            Op::Less => "<",
            Op::LessEq => "<=",
            Op::Tilde => "~",
            Op::Caret => "^",
        }
    }
}

/// A version requirement like `>=1.2` (missing components default to 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionReq {
    pub op: Op,
    pub version: Version,
    /// How many of major/minor/patch were written (1..=3).
    pub given: u8,
}

impl VersionReq {
    /// Parse a requirement; a bare version means `^version`, like cargo.
    pub fn parse(text: &str) -> AppResult<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AppError::Empty);
        }
        const OPS: [(&str, Op); 7] = [
            (">=", Op::GreaterEq),
            ("<=", Op::LessEq),
            (">", Op::Greater),
            ("<", Op::Less),
            ("=", Op::Exact),
            ("~", Op::Tilde),
            ("^", Op::Caret),
        ];
        let (op, rest) = OPS
            .iter()
            .find_map(|(sym, op)| text.strip_prefix(sym).map(|rest| (*op, rest.trim_start())))
            .unwrap_or((Op::Caret, text));
        let (core, tag) = match rest.split_once('-') {
            Some((core, tag)) => (core, Some(tag)),
            None => (rest, None),
        };
        // Missing components default to 0; too many are rejected by `Version::parse`.
        let given = core.split('.').count().min(3);
        let mut padded = core.to_string();
        for _ in given..3 {
            padded.push_str(".0");
        }
        if let Some(tag) = tag {
            padded.push('-');
            padded.push_str(tag);
        }
        let version = Version::parse(&padded)?;
        Ok(VersionReq { op, version, given: given as u8 })
    }

    /// Does `v` satisfy this requirement?
    pub fn matches(&self, v: &Version) -> bool {
        let base = &self.version;
        match self.op {
            Op::Exact => v == base,
            Op::Greater => v > base,
            Op::GreaterEq => v >= base,
            Op::Less => v < base,
            Op::LessEq => v <= base,
            Op::Tilde => {
                let upper = if self.given == 1 { base.bump_major() } else { base.bump_minor() };
                v >= base && *v < upper
            }
            Op::Caret => {
                let upper = match (base.major, base.minor, self.given) {
                    (0, 0, 3) => Version::new(0, 0, base.patch + 1),
                    (0, 0, 2) => Version::new(0, 1, 0),
                    (0, _, g) if g >= 2 => base.bump_minor(),
                    _ => base.bump_major(),
                };
                v >= base && *v < upper
            }
        }
    }

    /// The highest version among `candidates` that satisfies the requirement.
    pub fn best_match<'a, I>(&self, candidates: I) -> Option<&'a Version>
    where
        I: IntoIterator<Item = &'a Version>,
    {
        candidates.into_iter().filter(|v| self.matches(v)).max()
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.version;
        f.write_str(self.op.symbol())?;
        match self.given {
            1 => write!(f, "{}", v.major),
            2 => write!(f, "{}.{}", v.major, v.minor),
            _ => write!(f, "{}", v),
        }
    }
}

impl FromStr for VersionReq {
    type Err = AppError;
    fn from_str(s: &str) -> AppResult<Self> {
        VersionReq::parse(s)
    }
}

/// The application version (`APP_VERSION`) as a parsed `Version`.
pub fn app_version() -> Version {
    Version::parse(crate::APP_VERSION).expect("APP_VERSION is a valid semver")
}

/// Parse `candidates` and return the highest one that satisfies `req`.
pub fn pick_version(req: &str, candidates: &[&str]) -> AppResult<Option<Version>> {
    let req = VersionReq::parse(req)?;
    let mut best: Option<Version> = None;
    for text in candidates {
        let v = Version::parse(text)?;
        if req.matches(&v) && !matches!(&best, Some(b) if *b >= v) {
            best = Some(v);
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_roundtrip() {
        for text in ["1.0.0", "0.3.12", "2.1.0-alpha.1", "1.0.0-rc.2.x-y"] {
            assert_eq!(Version::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Version::parse("1.2.3+build.5").unwrap(), Version::new(1, 2, 3));
        assert_eq!(app_version(), Version::new(1, 0, 0));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Version::parse("  "), Err(AppError::Empty));
        assert!(Version::parse("1.2").is_err());
        assert!(Version::parse("1.02.3").is_err());
        assert!(Version::parse("1.2.3.4").is_err());
        assert!(Version::parse("1.2.3-").is_err());
    }

    #[test]
    fn ordering_follows_semver() {
        let order = ["0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.2", "1.0.0-rc.1", "1.0.0"];
        let mut versions: Vec<Version> = order.iter().rev().map(|t| t.parse().unwrap()).collect();
        versions.sort();
        let texts: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
        assert_eq!(texts, order);
    }

    #[test]
    fn requirements_match() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        let req = |s: &str| s.parse::<VersionReq>().unwrap();
        assert!(req("^1.2").matches(&v("1.9.0")));
        assert!(!req("^1.2").matches(&v("2.0.0")));
        assert!(req("0.3").matches(&v("0.3.7")));
        assert!(!req("0.3").matches(&v("0.4.0")));
        assert!(req("~1.2.3").matches(&v("1.2.9")));
        assert!(!req("~1.2.3").matches(&v("1.3.0")));
        assert!(req(">= 1.0").matches(&v("3.0.0")));
        assert!(req("<1").matches(&v("0.9.0")));
        assert!(req("^1.2-rc.1").matches(&v("1.2.0-rc.2")));
        assert!(VersionReq::parse(">=1.2.3.4").is_err());
        assert_eq!(req(">=1.2").to_string(), ">=1.2");
        let all = [v("1.0.0"), v("1.4.2"), v("2.0.0")];
        assert_eq!(req("^1").best_match(&all), Some(&all[1]));
        assert_eq!(pick_version("~1.0", &["0.9.0", "1.0.4", "1.1.0"]).unwrap(), Some(v("1.0.4")));
        assert_eq!(pick_version(">3", &["1.0.0"]).unwrap(), None);
        assert!(pick_version("^1", &["1.x"]).is_err());
    }
}
