//! A strict byte scanner for the text path: the `data` array as the exchange sends it (flat
//! objects whose values are strings, numbers, literals and small nested values), in one pass,
//! without building anything but a list of field spans per record (perf: serde_json's generic
//! deserializer was half of the normalizer's instructions, issue 11).
//!
//! It never accepts text serde_json rejects. What it checks itself is the JSON grammar
//! (RFC 8259) of what it takes: structure, whitespace, literals, the number grammar exactly,
//! strings without control characters. What it does not check itself it leaves to serde_json
//! on the value's own text: strings with escapes and nested arrays or objects (bracket-matched
//! here, parsed by the record typing, where a failure sends the event to the `Value` path).
//! Anything else unusual (an escaped key, an element that is not an object, a key serde_json
//! treats specially, deep nesting, a syntax error) is [`Unusual`]: the whole event takes the
//! `Value` path, which gives the answer (or the error) it always gave.

/// The input needs the `Value` path.
#[derive(Debug)]
pub(crate) struct Unusual;

/// What a field's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    /// A string without escapes (no `\`, no control character).
    Str,
    /// A string with escapes, not yet validated.
    EscapedStr,
    /// A number without exponent (grammar checked).
    Number,
    /// A number with an exponent (grammar checked).
    ExpNumber,
    True,
    False,
    Null,
    /// `[]` or `{}` exactly.
    Empty,
    /// Any other array or object: brackets matched, not yet validated.
    Nested,
}

/// A byte range of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

/// One field of a record: its key (between the quotes, no escapes), its value's text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub key: Span,
    pub value: Span,
    pub token: Token,
}

/// One scanned record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Object {
    /// From `{` to after `}`.
    pub span: Span,
    /// No whitespace between its tokens: its text is already as serde_json writes it, apart
    /// from values typing changes.
    pub compact: bool,
    /// The same keys in the same order as the fields it was scanned against.
    pub same_keys: bool,
}

/// Values nested deeper than this inside a field take the `Value` path, whose parse counts
/// depth from the top of the event (serde_json stops at 128).
pub(crate) const MAX_FIELD_DEPTH: usize = 100;

/// First keys serde_json's `Value` treats as markers (`$serde_json::private::Number`, ...).
const MARKER_PREFIX: &[u8] = b"$serde_json::private::";

pub(crate) struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
}

/// Whether the next element of an array follows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Element,
    End,
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Self {
        Scanner {
            b: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Skips JSON whitespace; whether there was any.
    #[inline]
    fn ws(&mut self) -> bool {
        let start = self.pos;
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
        self.pos != start
    }

    fn expect(&mut self, byte: u8) -> Result<(), Unusual> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Unusual)
        }
    }

    /// The opening `[` of the array: whether an element follows (`Next::End`: `[]`).
    pub fn open_array(&mut self) -> Result<Next, Unusual> {
        self.ws();
        self.expect(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Next::End);
        }
        Ok(Next::Element)
    }

    /// After an element: `,` (another follows) or `]`.
    pub fn after_element(&mut self) -> Result<Next, Unusual> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.ws();
                Ok(Next::Element)
            }
            Some(b']') => {
                self.pos += 1;
                Ok(Next::End)
            }
            _ => Err(Unusual),
        }
    }

    /// After the array: nothing but whitespace.
    pub fn finish(&mut self) -> Result<(), Unusual> {
        self.ws();
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(Unusual)
        }
    }

    /// One record (an object) at the current position: its fields go to `fields` (cleared
    /// first). `previous`: the last record's fields, whose keys are tried first.
    pub fn object(
        &mut self,
        fields: &mut Vec<Field>,
        previous: &[Field],
    ) -> Result<Object, Unusual> {
        fields.clear();
        let start = self.pos;
        self.expect(b'{')?;
        let mut compact = !self.ws();
        let mut same_keys = true;
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.expect(b'"')?;
                let key = self.key(previous.get(fields.len()), &mut same_keys)?;
                // Whitespace is looked for only where the next byte is not the expected one.
                if self.peek() != Some(b':') {
                    compact &= !self.ws();
                }
                self.expect(b':')?;
                if let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
                    compact = false;
                    self.ws();
                }
                let value_start = self.pos;
                let token = self.value()?;
                let value = Span {
                    start: value_start,
                    end: self.pos,
                };
                fields.push(Field { key, value, token });
                let mut next = self.peek();
                if let Some(b' ' | b'\n' | b'\r' | b'\t') = next {
                    compact = false;
                    self.ws();
                    next = self.peek();
                }
                match next {
                    Some(b',') => {
                        self.pos += 1;
                        if self.peek() != Some(b'"') {
                            compact &= !self.ws();
                        }
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(Unusual),
                }
            }
        }
        if let Some(first) = fields.first() {
            if self.b[first.key.start..first.key.end].starts_with(MARKER_PREFIX) {
                return Err(Unusual);
            }
        }
        Ok(Object {
            span: Span {
                start,
                end: self.pos,
            },
            compact,
            same_keys: same_keys && fields.len() == previous.len(),
        })
    }

    /// A key after its opening quote, up to after the closing one. Tried first as the key
    /// `hint` (the previous record's at this place): the same bytes followed by `"` are the
    /// same key, as that one has no `"`, `\` or control character.
    #[inline]
    fn key(&mut self, hint: Option<&Field>, same_keys: &mut bool) -> Result<Span, Unusual> {
        let start = self.pos;
        if let Some(hint) = hint {
            // The key and its closing quote.
            let with_quote = hint.key.end + 1 - hint.key.start;
            if let (Some(here), Some(there)) = (
                self.b.get(start..start + with_quote),
                self.b.get(hint.key.start..hint.key.end + 1),
            ) {
                if same_bytes(here, there) {
                    let end = start + with_quote - 1;
                    self.pos = end + 1;
                    return Ok(Span { start, end });
                }
            }
        }
        *same_keys = false;
        let end = find_special(self.b, start);
        if self.b.get(end) != Some(&b'"') {
            // An escape (decoded keys take the `Value` path), a control character, the end.
            return Err(Unusual);
        }
        self.pos = end + 1;
        Ok(Span { start, end })
    }

    /// A value at the current position, up to its end.
    #[inline]
    fn value(&mut self) -> Result<Token, Unusual> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.string()
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", Token::True),
            Some(b'f') => self.literal(b"false", Token::False),
            Some(b'n') => self.literal(b"null", Token::Null),
            Some(b'[' | b'{') => self.nested(),
            _ => Err(Unusual),
        }
    }

    fn literal(&mut self, word: &[u8], token: Token) -> Result<Token, Unusual> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(token)
        } else {
            Err(Unusual)
        }
    }

    /// A string after its opening quote, up to after the closing one. An escape is skipped
    /// as `\` and the byte after it (enough to find the end of a valid string; serde_json
    /// checks the escapes).
    #[inline]
    fn string(&mut self) -> Result<Token, Unusual> {
        let mut token = Token::Str;
        let mut at = self.pos;
        loop {
            at = find_special(self.b, at);
            match self.b.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(token);
                }
                Some(b'\\') => {
                    token = Token::EscapedStr;
                    at += 2;
                }
                // A control character, or the end of the text.
                _ => return Err(Unusual),
            }
        }
    }

    /// A number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, exactly. What
    /// follows it is checked by the caller (`01` is `0` then `1`: not `,` or `}`).
    fn number(&mut self) -> Result<Token, Unusual> {
        let b = self.b;
        let mut at = self.pos;
        if b.get(at) == Some(&b'-') {
            at += 1;
        }
        match b.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => at = digits(b, at + 1),
            _ => return Err(Unusual),
        }
        if b.get(at) == Some(&b'.') {
            at = some_digits(b, at + 1)?;
        }
        let mut token = Token::Number;
        if let Some(b'e' | b'E') = b.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = b.get(at) {
                at += 1;
            }
            at = some_digits(b, at)?;
            token = Token::ExpNumber;
        }
        self.pos = at;
        Ok(token)
    }

    /// An array or object: `[]`/`{}`, or brackets matched (strings skipped) to its end.
    fn nested(&mut self) -> Result<Token, Unusual> {
        let b = self.b;
        let close = if b[self.pos] == b'[' { b']' } else { b'}' };
        if b.get(self.pos + 1) == Some(&close) {
            self.pos += 2;
            return Ok(Token::Empty);
        }
        let mut depth = 0usize;
        loop {
            let c = *b.get(self.pos).ok_or(Unusual)?;
            self.pos += 1;
            match c {
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_FIELD_DEPTH {
                        return Err(Unusual);
                    }
                }
                b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(Token::Nested);
                    }
                }
                b'"' => {
                    self.string()?;
                }
                _ => {}
            }
        }
    }
}

/// `at` past the ASCII digits from `at`.
#[inline]
fn digits(b: &[u8], mut at: usize) -> usize {
    while let Some(b'0'..=b'9') = b.get(at) {
        at += 1;
    }
    at
}

/// At least one digit.
#[inline]
fn some_digits(b: &[u8], at: usize) -> Result<usize, Unusual> {
    let end = digits(b, at);
    if end == at {
        Err(Unusual)
    } else {
        Ok(end)
    }
}

/// `a == b` for slices of the same length, a word at a time: keys are short, and calling
/// `memcmp` for each cost more than the compare.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4]));
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if word(a, i) != word(b, i) {
                return false;
            }
            i += 8;
        }
        // The last 8 bytes (overlapping the word before).
        word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte from `at` that is `"`, `\` or a control character (< 0x20),
/// or `b.len()`. Eight bytes at a time: in each mask below, the lowest flagged byte is always
/// a true match (a borrow only runs upwards from a byte that matched), so the lowest set bit
/// of their union is the first byte that matches any.
#[inline]
pub(crate) fn find_special(b: &[u8], mut at: usize) -> usize {
    while let Some(chunk) = b.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let quote = x ^ (ONES * b'"' as u64);
        let backslash = x ^ (ONES * b'\\' as u64);
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        let found = found & HIGHS;
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&c) = b.get(at) {
        if is_special(c) {
            return at;
        }
        at += 1;
    }
    b.len()
}

#[inline]
fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_is_equality() {
        for n in 0..40 {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            assert!(same_bytes(&a, &a.clone()));
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 1;
                assert!(!same_bytes(&a, &b), "{n} {i}");
            }
            assert!(!same_bytes(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
    }

    #[test]
    fn find_special_is_the_first_match() {
        // Every position and every byte value, against a plain byte loop.
        for len in 0..20 {
            for pos in 0..len {
                for c in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[pos] = c;
                    // A second special byte later must not hide the first.
                    if pos + 1 < len {
                        b[pos + 1] = b'"';
                    }
                    for at in 0..=pos {
                        let want = (at..len).find(|&i| is_special(b[i])).unwrap_or(len);
                        assert_eq!(find_special(&b, at), want, "{b:?} from {at}");
                    }
                }
            }
        }
        let high: Vec<u8> = "é\u{1f600}ü".bytes().chain(*b"\x1f").collect();
        assert_eq!(find_special(&high, 0), high.len() - 1);
    }

    fn scan(text: &str) -> Result<Vec<Vec<Field>>, Unusual> {
        let mut sc = Scanner::new(text);
        let mut out: Vec<Vec<Field>> = Vec::new();
        let mut next = sc.open_array()?;
        while next == Next::Element {
            let mut fields = Vec::new();
            sc.object(&mut fields, out.last().map_or(&[], |f| f))?;
            out.push(fields);
            next = sc.after_element()?;
        }
        sc.finish()?;
        Ok(out)
    }

    #[test]
    fn numbers_follow_the_grammar() {
        for good in [
            "0",
            "-0",
            "1",
            "-1",
            "10",
            "1.5",
            "0.0",
            "-0.25",
            "1e5",
            "1E5",
            "1e+5",
            "1e-5",
            "1.5e10",
            "0e0",
            "123456789012345678901234567890",
        ] {
            let text = format!(r#"[{{"a":{good}}}]"#);
            let fields = scan(&text).unwrap_or_else(|_| panic!("{good}"));
            let f = fields[0][0];
            assert_eq!(&text[f.value.start..f.value.end], good);
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        }
        for bad in [
            "01",
            "-01",
            "1.",
            "-",
            "1e",
            "1e+",
            "+1",
            ".5",
            "1.e5",
            "0x1",
            "1_0",
            "--1",
            "1.2.3",
            "Infinity",
            "NaN",
            "-Infinity",
            "00",
            "1e5.0",
            "1ee5",
        ] {
            let text = format!(r#"[{{"a":{bad}}}]"#);
            assert!(scan(&text).is_err(), "{bad}");
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
        }
    }

    #[test]
    fn structure_and_strings() {
        for good in [
            "[]",
            " [ ] ",
            "[{}]",
            "[ { } , {\"a\" : [ 1 , 2 ] } ]\n",
            "[{\"a\":\"\\\"\"}]",
            "[{\"a\":\"é\"}]",
            "[{\"a\":true,\"b\":false,\"c\":null,\"d\":{},\"e\":[]}]",
        ] {
            assert!(scan(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "[",
            "[{}",
            "[{},]",
            "[{}]]",
            "[{}] x",
            "[1]",
            "[{\"a\"}]",
            "[{\"a\":}]",
            "[{\"a\":1,}]",
            "[{\"a\":1 \"b\":2}]",
            "[{\"a\":tru}]",
            "[{\"a\":nul}]",
            "[{\"a\":\"x\ny\"}]",
            "[{\"a\":\"x\ty\"}]",
            "[{\"a\":\"x}]",
            "[{\"a\\u0041\":1}]",
            "[{\"$serde_json::private::Number\":\"1\"}]",
        ] {
            assert!(scan(bad).is_err(), "{bad}");
        }
        // A nested value's brackets are only matched here: `[1}` passes the scan, and its
        // parse by serde_json in the typing sends the event to the `Value` path.
        assert!(scan("[{\"a\":[1}}]").is_ok());
        assert!(serde_json::from_str::<serde_json::Value>("[1}").is_err());
    }
}
