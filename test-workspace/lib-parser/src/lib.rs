//! lib-parser: a tokenizer and recursive-descent parser for arithmetic
//! expressions with variables.

use lib_common::{AppError, AppResult, Describe};
use lib_utils::LruCache;
use std::collections::HashMap;
use std::fmt;

pub mod json;
pub use json::{parse_json, Json};

/// A lexical token.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Num(f64),
    Ident(String),
    Op(char),
    LParen,
    RParen,
}

/// Split the input into tokens.
pub fn tokenize(src: &str) -> AppResult<Vec<Token>> {
    let cs: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                i += 1;
            }
            let s: String = cs[start..i].iter().collect();
            let n = s.parse::<f64>().map_err(|e| AppError::Parse(format!("{}: {}", s, e)))?;
            out.push(Token::Num(n));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(cs[start..i].iter().collect()));
        } else if "+-*/^%".contains(c) {
            out.push(Token::Op(c));
            i += 1;
        } else if c == '(' {
            out.push(Token::LParen);
            i += 1;
        } else if c == ')' {
            out.push(Token::RParen);
            i += 1;
        } else {
            return Err(AppError::Parse(format!("unexpected '{}' at {}", c, i)));
        }
    }
    Ok(out)
}

/// Expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Var(String),
    Neg(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Num(n) => write!(f, "{}", n),
            Expr::Var(v) => write!(f, "{}", v),
            Expr::Neg(e) => write!(f, "(-{})", e),
            Expr::Bin(op, a, b) => write!(f, "({} {} {})", a, op, b),
        }
    }
}

impl Describe for Expr {
    fn name(&self) -> String {
        match self {
            Expr::Num(_) => "Num".into(),
            Expr::Var(_) => "Var".into(),
            Expr::Neg(_) => "Neg".into(),
            Expr::Bin(..) => "Bin".into(),
        }
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

fn prec(op: char) -> (u8, bool) {
    match op {
        '+' | '-' => (1, false),
        '*' | '/' | '%' => (2, false),
        '^' => (3, true),
        _ => (0, false),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn primary(&mut self) -> AppResult<Expr> {
        match self.next() {
            Some(Token::Num(n)) => Ok(Expr::Num(n)),
            Some(Token::Ident(s)) => Ok(Expr::Var(s)),
            Some(Token::Op('-')) => Ok(Expr::Neg(Box::new(self.primary()?))),
            Some(Token::LParen) => {
                let e = self.expr(0)?;
                match self.next() {
                    Some(Token::RParen) => Ok(e),
                    other => Err(AppError::Parse(format!("expected ')', got {:?}", other))),
                }
            }
            other => Err(AppError::Parse(format!("unexpected {:?}", other))),
        }
    }
    fn expr(&mut self, min: u8) -> AppResult<Expr> {
        let mut lhs = self.primary()?;
        while let Some(Token::Op(op)) = self.peek().cloned() {
            let (p, right) = prec(op);
            if p < min || p == 0 {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(if right { p } else { p + 1 })?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }
}

/// Parse an expression.
pub fn parse(src: &str) -> AppResult<Expr> {
    let toks = tokenize(src)?;
    if toks.is_empty() {
        return Err(AppError::Empty);
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.expr(0)?;
    if p.pos != p.toks.len() {
        return Err(AppError::Parse(format!("trailing input at token {}", p.pos)));
    }
    Ok(e)
}

/// Evaluate with variables.
pub fn eval(e: &Expr, vars: &HashMap<String, f64>) -> AppResult<f64> {
    Ok(match e {
        Expr::Num(n) => *n,
        Expr::Var(v) => *vars.get(v).ok_or_else(|| AppError::Parse(format!("unknown variable {}", v)))?,
        Expr::Neg(x) => -eval(x, vars)?,
        Expr::Bin(op, a, b) => {
            let (x, y) = (eval(a, vars)?, eval(b, vars)?);
            match op {
                '+' => x + y,
                '-' => x - y,
                '*' => x * y,
                '/' => x / y,
                '%' => x % y,
                '^' => x.powf(y),
                _ => return Err(AppError::Parse(format!("bad op {}", op))),
            }
        }
    })
}

/// An evaluator that caches parsed expressions.
pub struct Calculator {
    cache: LruCache<String, Expr>,
    pub vars: HashMap<String, f64>,
}

impl Default for Calculator {
    fn default() -> Self {
        Calculator { cache: LruCache::new(32), vars: HashMap::new() }
    }
}

impl Calculator {
    pub fn eval_str(&mut self, src: &str) -> AppResult<f64> {
        let key = src.to_string();
        let e = match self.cache.get(&key) {
            Some(e) => e,
            None => {
                let e = parse(src)?;
                self.cache.put(key, e.clone());
                e
            }
        };
        eval(&e, &self.vars)
    }
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_eval() {
        let mut c = Calculator::default();
        c.vars.insert("x".into(), 4.0);
        assert_eq!(c.eval_str("2 + 3 * x").unwrap(), 14.0);
        assert_eq!(c.eval_str("2 ^ 3 ^ 2").unwrap(), 512.0);
        assert_eq!(c.eval_str("-(1 + 2)").unwrap(), -3.0);
        assert!(parse("1 +").is_err());
        assert_eq!(parse("a*b").unwrap().to_string(), "(a * b)");
    }
}
