//! RESP2, the Redis serialization protocol: the subset lease mode speaks to its store.
//!
//! Pure like the rest of the cores: [`decode`] reads one value from a buffer (or asks for more
//! bytes), [`Value::encode`] appends one. Bad input is an error value with what was wrong.

use std::fmt;

/// Limits that keep a bad peer from making us allocate without bound.
pub const MAX_BULK_LEN: usize = 512 * 1024;
pub const MAX_ARRAY_LEN: usize = 1024;
const MAX_DEPTH: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array.
    Array(Option<Vec<Value>>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RespError(pub String);

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad RESP: {}", self.0)
    }
}

impl std::error::Error for RespError {}

impl Value {
    pub fn bulk(text: impl AsRef<[u8]>) -> Value {
        Value::Bulk(Some(text.as_ref().to_vec()))
    }

    /// A command as clients send it: an array of bulk strings.
    pub fn command<S: AsRef<[u8]>>(args: &[S]) -> Value {
        Value::Array(Some(args.iter().map(Value::bulk).collect()))
    }

    /// The text of a simple or bulk string.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Simple(text) => Some(text.clone()),
            Value::Bulk(Some(bytes)) => String::from_utf8(bytes.clone()).ok(),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(text) => {
                out.push(b'+');
                out.extend_from_slice(text.as_bytes());
            }
            Value::Error(text) => {
                out.push(b'-');
                out.extend_from_slice(text.as_bytes());
            }
            Value::Integer(n) => out.extend_from_slice(format!(":{n}").as_bytes()),
            Value::Bulk(None) => out.extend_from_slice(b"$-1"),
            Value::Bulk(Some(bytes)) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
            }
            Value::Array(None) => out.extend_from_slice(b"*-1"),
            Value::Array(Some(items)) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
                return;
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Decodes the first value of `buf`: `Ok(None)` if more bytes are needed, else the value and
/// how many bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
    decode_at(buf, 0, 0)
}

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn number(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            RespError(format!(
                "{:?} is not a number",
                String::from_utf8_lossy(text)
            ))
        })
}

fn decode_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError("arrays nested too deep".into()));
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, at + 1) else {
        // A line can only be so long before it is clearly not RESP.
        if buf.len() - at > MAX_BULK_LEN {
            return Err(RespError("line too long".into()));
        }
        return Ok(None);
    };
    let as_string = |text: &[u8]| String::from_utf8_lossy(text).into_owned();
    match kind {
        b'+' => Ok(Some((Value::Simple(as_string(text)), next))),
        b'-' => Ok(Some((Value::Error(as_string(text)), next))),
        b':' => Ok(Some((Value::Integer(number(text)?), next))),
        b'$' => {
            let len = number(text)?;
            if len == -1 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= MAX_BULK_LEN)
                .ok_or_else(|| RespError(format!("bulk length {len} out of range")))?;
            let Some(bytes) = buf.get(next..next + len) else {
                return Ok(None);
            };
            match buf.get(next + len..next + len + 2) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some((Value::Bulk(Some(bytes.to_vec())), next + len + 2))),
                Some(_) => Err(RespError("bulk string not followed by CRLF".into())),
            }
        }
        b'*' => {
            let len = number(text)?;
            if len == -1 {
                return Ok(Some((Value::Array(None), next)));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= MAX_ARRAY_LEN)
                .ok_or_else(|| RespError(format!("array length {len} out of range")))?;
            let mut items = Vec::with_capacity(len);
            let mut at = next;
            for _ in 0..len {
                let Some((item, after)) = decode_at(buf, at, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                at = after;
            }
            Ok(Some((Value::Array(Some(items)), at)))
        }
        other => Err(RespError(format!("unknown type byte {:?}", other as char))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(value: Value) {
        let mut buf = Vec::new();
        value.encode(&mut buf);
        assert_eq!(decode(&buf), Ok(Some((value, buf.len()))));
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Value::Simple("OK".into()));
        round_trip(Value::Error("ERR no".into()));
        round_trip(Value::Integer(-42));
        round_trip(Value::Bulk(None));
        round_trip(Value::bulk("a\r\nb"));
        round_trip(Value::Array(None));
        round_trip(Value::Array(Some(vec![
            Value::Integer(1),
            Value::bulk("master-1 7"),
        ])));
        round_trip(Value::command(&["SET", "k", "v", "NX", "PX", "100"]));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(decode(b"?oops\r\n").is_err());
        assert!(decode(b":12x\r\n").is_err());
        assert!(decode(b"$3\r\nabcd\r\n").is_err());
        assert!(decode(b"$999999999999\r\n").is_err());
        assert!(decode(b"*-7\r\n").is_err());
        assert!(decode(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(Some((_, used))) = decode(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }
    }
}
