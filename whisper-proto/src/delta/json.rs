//! The JSON encoding of persisted delta state, written and parsed by hand (no serde).
//!
//! ```json
//! {"version":1,"peers":[{"topic":"t","peer_id":"node-a","watermark":123,
//!   "exchange_count":4,"last_activity":1700000000000000,"applied_on_full":1,
//!   "full_sync_count":2}]}
//! ```
//!
//! `peer_id` is the node id as a JSON string when it is UTF-8; otherwise the field is
//! `peer_id_hex` with lowercase hex. Times and watermarks are integers (µs and store
//! change stamps), not the reference's RFC 3339 strings. Unknown fields are ignored; any
//! syntax error is [`PersistError::Corrupt`]. The parser is bounded: input over
//! [`MAX_INPUT`] bytes or nesting deeper than 8 is refused.

use super::{PersistError, PersistedPeerState};
use crate::node::NodeId;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// The format version written.
pub const VERSION: u64 = 1;
/// The largest input parsed (64 MiB).
pub const MAX_INPUT: usize = 64 << 20;

/// Encodes `states` as JSON.
pub fn encode(states: &[PersistedPeerState]) -> String {
    let mut s = String::new();
    let _ = write!(s, "{{\"version\":{VERSION},\"peers\":[");
    for (i, p) in states.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"topic\":");
        push_str(&mut s, &p.topic);
        if let Some(id) = &p.peer_id {
            match core::str::from_utf8(id.as_bytes()) {
                Ok(text) => {
                    s.push_str(",\"peer_id\":");
                    push_str(&mut s, text);
                }
                Err(_) => {
                    s.push_str(",\"peer_id_hex\":\"");
                    for b in id.as_bytes() {
                        let _ = write!(s, "{b:02x}");
                    }
                    s.push('"');
                }
            }
        }
        let _ = write!(
            s,
            ",\"watermark\":{},\"exchange_count\":{},\"last_activity\":{},\
             \"applied_on_full\":{},\"full_sync_count\":{}}}",
            p.watermark, p.exchange_count, p.last_activity, p.applied_on_full, p.full_sync_count
        );
    }
    s.push_str("]}");
    s
}

fn push_str(s: &mut String, text: &str) {
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

/// Parses JSON written by [`encode`] (or by hand, in the same shape).
///
/// # Errors
/// [`PersistError::Corrupt`] on any malformed input; nothing is returned partially.
pub fn decode(input: &[u8]) -> Result<Vec<PersistedPeerState>, PersistError> {
    if input.len() > MAX_INPUT {
        return Err(corrupt(0, "input too large"));
    }
    let mut p = Parser { b: input, at: 0 };
    let value = p.value(0)?;
    p.ws();
    if p.at != input.len() {
        return Err(corrupt(p.at, "end of input"));
    }
    let Value::Object(top) = value else {
        return Err(corrupt(0, "an object"));
    };
    let mut out = Vec::new();
    for (k, v) in top {
        if k != "peers" {
            continue;
        }
        let Value::Array(items) = v else {
            return Err(corrupt(0, "peers to be an array"));
        };
        for item in items {
            let Value::Object(fields) = item else {
                return Err(corrupt(0, "a peer object"));
            };
            let mut st = PersistedPeerState::default();
            for (k, v) in fields {
                match (k.as_str(), v) {
                    ("topic", Value::Str(s)) => st.topic = s,
                    ("peer_id", Value::Str(s)) => st.peer_id = NodeId::new(s.into_bytes()),
                    ("peer_id_hex", Value::Str(s)) => st.peer_id = unhex(&s).and_then(NodeId::new),
                    ("watermark", Value::Num(n)) => st.watermark = n,
                    ("exchange_count", Value::Num(n)) => st.exchange_count = n,
                    ("last_activity", Value::Num(n)) => st.last_activity = n,
                    ("applied_on_full", Value::Num(n)) => st.applied_on_full = clamp(n),
                    ("full_sync_count", Value::Num(n)) => st.full_sync_count = clamp(n),
                    (
                        "topic" | "peer_id" | "peer_id_hex" | "watermark" | "exchange_count"
                        | "last_activity" | "applied_on_full" | "full_sync_count",
                        _,
                    ) => return Err(corrupt(0, "a field of the right type")),
                    _ => {}
                }
            }
            out.push(st);
        }
    }
    Ok(out)
}

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn corrupt(offset: usize, what: &'static str) -> PersistError {
    PersistError::Corrupt { offset, what }
}

enum Value {
    Object(Vec<(String, Self)>),
    Array(Vec<Self>),
    Str(String),
    Num(u64),
    Other,
}

struct Parser<'a> {
    b: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8, what: &'static str) -> Result<(), PersistError> {
        self.ws();
        if self.b.get(self.at) == Some(&c) {
            self.at += 1;
            Ok(())
        } else {
            Err(corrupt(self.at, what))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, PersistError> {
        if depth > 8 {
            return Err(corrupt(self.at, "shallower nesting"));
        }
        self.ws();
        match self.b.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.b.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Value::Object(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':', "':'")?;
                    let v = self.value(depth + 1)?;
                    fields.push((k, v));
                    self.ws();
                    match self.b.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Value::Object(fields));
                        }
                        _ => return Err(corrupt(self.at, "',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return Err(corrupt(self.at, "',' or ']'")),
                    }
                }
            }
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'0'..=b'9') => {
                let start = self.at;
                let mut n: u64 = 0;
                while let Some(d @ b'0'..=b'9') = self.b.get(self.at) {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(d - b'0')))
                        .ok_or_else(|| corrupt(start, "a number below 2^64"))?;
                    self.at += 1;
                }
                Ok(Value::Num(n))
            }
            _ => {
                for lit in [&b"true"[..], b"false", b"null"] {
                    if self.b[self.at..].starts_with(lit) {
                        self.at += lit.len();
                        return Ok(Value::Other);
                    }
                }
                Err(corrupt(self.at, "a value"))
            }
        }
    }

    fn string(&mut self) -> Result<String, PersistError> {
        if self.b.get(self.at) != Some(&b'"') {
            return Err(corrupt(self.at, "a string"));
        }
        self.at += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.at) else {
                return Err(corrupt(self.at, "a closing quote"));
            };
            self.at += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.b.get(self.at) else {
                        return Err(corrupt(self.at, "an escape"));
                    };
                    self.at += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hex = self
                                .b
                                .get(self.at..self.at + 4)
                                .and_then(|h| core::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or_else(|| corrupt(self.at, "four hex digits"))?;
                            self.at += 4;
                            char::from_u32(hex).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(corrupt(self.at - 1, "a valid escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return Err(corrupt(self.at - 1, "no control characters")),
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| corrupt(self.at, "UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trip_with_escapes_and_binary_ids() {
        let states = vec![
            PersistedPeerState {
                topic: "t\"\\\n".into(),
                peer_id: Some(NodeId::from_static("node-a")),
                watermark: u64::MAX,
                exchange_count: 4,
                last_activity: 1_700_000_000_000_000,
                applied_on_full: 1,
                full_sync_count: 2,
            },
            PersistedPeerState {
                topic: "t".into(),
                peer_id: NodeId::new(vec![0xff, 0x00]),
                ..Default::default()
            },
        ];
        let text = encode(&states);
        assert!(text.contains("\"peer_id_hex\":\"ff00\""));
        assert_eq!(decode(text.as_bytes()).unwrap(), states);
    }

    #[test]
    fn corrupt_inputs_are_errors_not_panics() {
        let good = encode(&[PersistedPeerState {
            topic: "t".into(),
            peer_id: Some(NodeId::from_static("p")),
            ..Default::default()
        }]);
        for cut in 0..good.len() {
            assert!(decode(&good.as_bytes()[..cut]).is_err(), "cut at {cut}");
        }
        for bad in [
            &b"{\"peers\":[{\"watermark\":\"x\"}]}"[..],
            b"{\"peers\":7}",
            b"[[[[[[[[[[[[[[]]]]]]]]]]]]]]",
            b"{\"peers\":[]} trailing",
            b"{\"peers\":[{\"watermark\":99999999999999999999999}]}",
        ] {
            assert!(matches!(decode(bad), Err(PersistError::Corrupt { .. })));
        }
        assert_eq!(
            decode(b" {\"peers\":[], \"x\":[true,null]} ").unwrap(),
            vec![]
        );
    }

    quickcheck::quickcheck! {
        fn decode_never_panics(bytes: Vec<u8>) -> bool {
            let _ = decode(&bytes);
            true
        }
    }
}
