//! lib-utils: string helpers, a generic LRU cache and iterator adapters.

use lib_common::{AppError, AppResult, Describe};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

pub mod graph;

/// Reverse a string by characters.
pub fn reverse(s: &str) -> String {
    s.chars().rev().collect()
}

/// Is the string a palindrome (ignoring case and non-alphanumerics)?
pub fn is_palindrome(s: &str) -> bool {
    let v: Vec<char> = s.chars().filter(|c| c.is_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    v.iter().eq(v.iter().rev())
}

/// Convert "some_name here" to "SomeNameHere".
pub fn to_camel_case(s: &str) -> String {
    s.split(|c: char| c == '_' || c == ' ' || c == '-')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(f) => f.to_uppercase().collect::<String>() + &cs.as_str().to_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

/// Count words.
pub fn word_count(s: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for w in s.split_whitespace() {
        *m.entry(w.to_lowercase()).or_insert(0) += 1;
    }
    m
}

/// Split "k=v" pairs separated by ';'.
pub fn parse_pairs(s: &str) -> AppResult<Vec<(String, String)>> {
    s.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let mut it = p.splitn(2, '=');
            match (it.next(), it.next()) {
                (Some(k), Some(v)) => Ok((k.trim().to_string(), v.trim().to_string())),
                _ => Err(AppError::Parse(format!("bad pair '{}'", p))),
            }
        })
        .collect()
}

/// A small least-recently-used cache.
pub struct LruCache<K, V> {
    cap: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V: Clone> LruCache<K, V> {
    pub fn new(cap: usize) -> Self {
        LruCache { cap: cap.max(1), map: HashMap::new(), order: VecDeque::new() }
    }
    pub fn get(&mut self, k: &K) -> Option<V> {
        let v = self.map.get(k).cloned()?;
        self.touch(k);
        Some(v)
    }
    pub fn put(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_some() {
            self.touch(&k);
            return;
        }
        self.order.push_back(k);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    fn touch(&mut self, k: &K) {
        if let Some(pos) = self.order.iter().position(|x| x == k) {
            let key = self.order.remove(pos).expect("present");
            self.order.push_back(key);
        }
    }
}

impl<K, V> Describe for LruCache<K, V> {
    fn name(&self) -> String {
        format!("LruCache(cap={})", self.cap)
    }
}

/// Iterator adapter yielding overlapping pairs.
pub struct Pairs<I: Iterator> {
    it: I,
    prev: Option<I::Item>,
}

impl<I> Iterator for Pairs<I>
where
    I: Iterator,
    I::Item: Clone,
{
    type Item = (I::Item, I::Item);
    fn next(&mut self) -> Option<Self::Item> {
        if self.prev.is_none() {
            self.prev = self.it.next();
        }
        let cur = self.it.next()?;
        let prev = self.prev.replace(cur.clone())?;
        Some((prev, cur))
    }
}

/// Extension trait adding `.pairs()` to every iterator.
pub trait PairsExt: Iterator + Sized {
    fn pairs(self) -> Pairs<Self> {
        Pairs { it: self, prev: None }
    }
}

impl<I: Iterator> PairsExt for I {}

/// Join displayable items.
pub fn join<T: std::fmt::Display>(items: &[T], sep: &str) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        assert_eq!(reverse("abc"), "cba");
        assert!(is_palindrome("A man, a plan, a canal: Panama"));
        assert_eq!(to_camel_case("hello_big world"), "HelloBigWorld");
        assert_eq!(word_count("a b A")["a"], 2);
        assert_eq!(parse_pairs("a=1; b=2").unwrap().len(), 2);
    }

    #[test]
    fn lru() {
        let mut c = LruCache::new(2);
        c.put(1, "a");
        c.put(2, "b");
        c.get(&1);
        c.put(3, "c");
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&1), Some("a"));
    }

    #[test]
    fn pairs() {
        let v: Vec<_> = [1, 2, 3].iter().copied().pairs().collect();
        assert_eq!(v, vec![(1, 2), (2, 3)]);
    }
}
