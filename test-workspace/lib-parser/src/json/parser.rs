//! Recursive-descent JSON parser with line/column error positions.

use super::Json;
use lib_common::{AppError, AppResult};

/// Recursive-descent parser over the input bytes; positions are turned
/// into line and (byte) column only when an error is reported.
struct JsonParser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 128;

impl<'a> JsonParser<'a> {
    fn error(&self, msg: &str) -> AppError {
        let before = &self.src.as_bytes()[..self.pos.min(self.src.len())];
        let (line, col) =
            before.iter().fold(
                (1, 1),
                |(l, c), &b| if b == b'\n' { (l + 1, 1) } else { (l, c + 1) },
            );
        AppError::Parse(format!("json {}:{}: {}", line, col, msg))
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, want: u8) -> AppResult<()> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", want as char)))
        }
    }

    fn keyword(&mut self, word: &str, value: Json) -> AppResult<Json> {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error(&format!("expected '{}'", word)))
        }
    }

    fn value(&mut self) -> AppResult<Json> {
        self.skip_ws();
        let v = match self.peek() {
            None => return Err(self.error("unexpected end of input")),
            Some(b'n') => self.keyword("null", Json::Null)?,
            Some(b't') => self.keyword("true", Json::Bool(true))?,
            Some(b'f') => self.keyword("false", Json::Bool(false))?,
            Some(b'"') => Json::Str(self.string()?),
            Some(open @ (b'[' | b'{')) => {
                if self.depth >= MAX_DEPTH {
                    return Err(self.error("nesting too deep"));
                }
                self.depth += 1;
                let v = if open == b'[' {
                    self.array()?
                } else {
                    self.object()?
                };
                self.depth -= 1;
                v
            }
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => return Err(self.error("unexpected character")),
        };
        self.skip_ws();
        Ok(v)
    }

    /// Consume the separator after an item: `Ok(true)` if more items follow.
    fn more(&mut self, close: u8) -> AppResult<bool> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(self.error(&format!("expected ',' or '{}'", close as char))),
        }
    }

    fn array(&mut self) -> AppResult<Json> {
        self.expect(b'[')?;
        self.skip_ws();
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            if !self.more(b']')? {
                return Ok(Json::Array(items));
            }
        }
    }

    fn object(&mut self) -> AppResult<Json> {
        self.expect(b'{')?;
        self.skip_ws();
        let mut members: Vec<(String, Json)> = Vec::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            let key_pos = self.pos;
            let key = self.string()?;
            if members.iter().any(|(k, _)| *k == key) {
                self.pos = key_pos;
                return Err(self.error(&format!("duplicate key \"{}\"", key)));
            }
            self.skip_ws();
            self.expect(b':')?;
            members.push((key, self.value()?));
            if !self.more(b'}')? {
                return Ok(Json::Object(members));
            }
        }
    }

    fn number(&mut self) -> AppResult<Json> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        {
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        text.parse::<f64>()
            .map(Json::Number)
            .map_err(|_| self.error(&format!("invalid number '{}'", text)))
    }

    fn string(&mut self) -> AppResult<String> {
        self.expect(b'"')?;
        let mut out = String::new();
        let mut chars = self.src[self.pos..].char_indices();
        let result = loop {
            let Some((i, c)) = chars.next() else {
                break Err("unterminated string");
            };
            match c {
                '"' => break Ok(i + 1),
                '\\' => {
                    let unescaped = match chars.next().map(|(_, e)| e) {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('/') => '/',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('u') => {
                            let hex = chars
                                .as_str()
                                .get(..4)
                                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                            match hex
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32)
                            {
                                Some(c) => {
                                    chars.nth(3);
                                    c
                                }
                                None => break Err("invalid \\u escape"),
                            }
                        }
                        _ => break Err("invalid escape"),
                    };
                    out.push(unescaped);
                }
                c if (c as u32) < 0x20 => break Err("control character in string"),
                c => out.push(c),
            }
        };
        match result {
            Ok(len) => {
                self.pos += len;
                Ok(out)
            }
            Err(msg) => Err(self.error(msg)),
        }
    }
}

/// Parse a complete JSON document.
pub fn parse_json(src: &str) -> AppResult<Json> {
    if src.trim().is_empty() {
        return Err(AppError::Empty);
    }
    let mut p = JsonParser {
        src,
        pos: 0,
        depth: 0,
    };
    let v = p.value()?;
    match p.peek() {
        None => Ok(v),
        Some(_) => Err(p.error("trailing characters")),
    }
}
