//! A minimal RESP2 (Redis serialization protocol) encoder and incremental parser.
//!
//! The parser never panics on what a socket may deliver: a partial frame is `Ok(None)` (read
//! more), anything malformed or oversized is a typed [`RespError`].

use bytes::{Bytes, BytesMut};

/// Longest bulk string accepted (Redis's own `proto-max-bulk-len` default).
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// Most elements in one array.
pub const MAX_ARRAY: usize = 1 << 20;
/// Deepest nesting of arrays.
pub const MAX_DEPTH: usize = 8;
/// Longest line of a simple string, error or integer.
pub const MAX_LINE: usize = 64 * 1024;

/// One RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the null bulk string (`$-1`).
    Bulk(Option<Bytes>),
    /// `None` is the null array (`*-1`).
    Array(Option<Vec<Value>>),
}

/// Malformed input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("unknown RESP type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("a line is not terminated by CRLF")]
    MissingCrLf,
    #[error("line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("'{0}' is not a RESP integer")]
    BadInteger(String),
    #[error("invalid length {0}")]
    BadLength(i64),
    #[error("length {0} is over the limit")]
    TooLarge(i64),
    #[error("arrays nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("a simple string or error is not UTF-8")]
    NotUtf8,
}

/// Encodes a command as an array of bulk strings.
pub fn encode_command(args: &[&[u8]], out: &mut BytesMut) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one value from the start of `buf`: `Ok(Some((value, bytes used)))`, or `Ok(None)`
/// when `buf` holds only part of it.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

/// The line starting at `pos` (without CRLF) and the position after it.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = buf.get(pos..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\n') {
        None if rest.len() > MAX_LINE => Err(RespError::LineTooLong),
        None => Ok(None),
        Some(nl) if nl > MAX_LINE => Err(RespError::LineTooLong),
        Some(0) => Err(RespError::MissingCrLf),
        Some(nl) if rest[nl - 1] != b'\r' => Err(RespError::MissingCrLf),
        Some(nl) => Ok(Some((&rest[..nl - 1], pos + nl + 1))),
    }
}

fn integer(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| RespError::BadInteger(String::from_utf8_lossy(text).into_owned()))
}

/// A length field: -1 (null), or `0..=max`.
fn length(text: &[u8], max: usize) -> Result<Option<usize>, RespError> {
    match integer(text)? {
        -1 => Ok(None),
        n if n < -1 => Err(RespError::BadLength(n)),
        n => match usize::try_from(n) {
            Ok(len) if len <= max => Ok(Some(len)),
            _ => Err(RespError::TooLarge(n)),
        },
    }
}

fn text(t: &[u8]) -> Result<String, RespError> {
    String::from_utf8(t.to_vec()).map_err(|_| RespError::NotUtf8)
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Value, usize)>, RespError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(RespError::UnknownType(kind));
    }
    let Some((head, after)) = line(buf, pos + 1)? else {
        return Ok(None);
    };
    let value = match kind {
        b'+' => Value::Simple(text(head)?),
        b'-' => Value::Error(text(head)?),
        b':' => Value::Integer(integer(head)?),
        b'$' => match length(head, MAX_BULK)? {
            None => Value::Bulk(None),
            Some(len) => {
                let end = after + len;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(RespError::MissingCrLf);
                }
                let data = Bytes::copy_from_slice(&buf[after..end]);
                return Ok(Some((Value::Bulk(Some(data)), end + 2)));
            }
        },
        b'*' => match length(head, MAX_ARRAY)? {
            None => Value::Array(None),
            Some(n) => {
                if depth >= MAX_DEPTH {
                    return Err(RespError::TooDeep);
                }
                let mut items = Vec::with_capacity(n.min(1024));
                let mut at = after;
                for _ in 0..n {
                    match parse_at(buf, at, depth + 1)? {
                        None => return Ok(None),
                        Some((v, next)) => {
                            items.push(v);
                            at = next;
                        }
                    }
                }
                return Ok(Some((Value::Array(Some(items)), at)));
            }
        },
        other => return Err(RespError::UnknownType(other)),
    };
    Ok(Some((value, after)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn whole(s: &[u8]) -> Value {
        match parse(s) {
            Ok(Some((v, used))) if used == s.len() => v,
            other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(s)),
        }
    }

    #[test]
    fn parses_every_type() {
        assert_eq!(whole(b"+OK\r\n"), Value::Simple("OK".into()));
        assert_eq!(whole(b"-ERR no\r\n"), Value::Error("ERR no".into()));
        assert_eq!(whole(b":-42\r\n"), Value::Integer(-42));
        assert_eq!(
            whole(b"$3\r\na\r\n\r\n"),
            Value::Bulk(Some(Bytes::from_static(b"a\r\n")))
        );
        assert_eq!(whole(b"$-1\r\n"), Value::Bulk(None));
        assert_eq!(whole(b"*-1\r\n"), Value::Array(None));
        assert_eq!(
            whole(b"*2\r\n$1\r\nk\r\n*1\r\n:1\r\n"),
            Value::Array(Some(vec![
                Value::Bulk(Some(Bytes::from_static(b"k"))),
                Value::Array(Some(vec![Value::Integer(1)])),
            ]))
        );
    }

    #[test]
    fn encodes_commands() {
        let mut out = BytesMut::new();
        encode_command(&[b"SET", b"k", b""], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        assert_eq!(
            whole(&out),
            Value::Array(Some(vec![
                Value::Bulk(Some(Bytes::from_static(b"SET"))),
                Value::Bulk(Some(Bytes::from_static(b"k"))),
                Value::Bulk(Some(Bytes::new())),
            ]))
        );
    }

    #[test]
    fn partial_input_asks_for_more() {
        let full = b"*2\r\n$5\r\nhello\r\n:7\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(parse(full), Ok(Some((_, n))) if n == full.len()));
    }

    #[test]
    fn hostile_input_is_a_typed_error() {
        assert_eq!(parse(b"?x\r\n"), Err(RespError::UnknownType(b'?')));
        assert_eq!(parse(b"+OK\n"), Err(RespError::MissingCrLf));
        assert_eq!(parse(b"\n"), Err(RespError::UnknownType(b'\n')));
        assert_eq!(parse(b"+\n"), Err(RespError::MissingCrLf));
        assert!(matches!(parse(b":12x\r\n"), Err(RespError::BadInteger(_))));
        assert!(matches!(
            parse(b":99999999999999999999\r\n"),
            Err(RespError::BadInteger(_))
        ));
        assert_eq!(parse(b"$-2\r\n"), Err(RespError::BadLength(-2)));
        assert_eq!(parse(b"*-7\r\n"), Err(RespError::BadLength(-7)));
        assert!(matches!(
            parse(b"$9223372036854775807\r\n"),
            Err(RespError::TooLarge(_))
        ));
        assert!(matches!(
            parse(b"*99999999\r\n"),
            Err(RespError::TooLarge(_))
        ));
        assert_eq!(parse(b"$1\r\nabc\r\n"), Err(RespError::MissingCrLf));
        assert_eq!(parse(b"+\xff\r\n"), Err(RespError::NotUtf8));
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert_eq!(parse(deep.as_bytes()), Err(RespError::TooDeep));
        let long = vec![b'+'; MAX_LINE + 10];
        assert_eq!(parse(&long), Err(RespError::LineTooLong));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn resp_looking_bytes_never_panic(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b":".to_vec()),
                    Just(b"+".to_vec()), Just(b"\r\n".to_vec()), Just(b"-1".to_vec()),
                    Just(b"3".to_vec()), Just(b"abc".to_vec()),
                ],
                0..40,
            )
        ) {
            let bytes: Vec<u8> = parts.concat();
            if let Ok(Some((_, used))) = parse(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }

        #[test]
        fn encoded_commands_round_trip(args in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40), 1..6)
        ) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut out = BytesMut::new();
            encode_command(&refs, &mut out);
            let expect = Value::Array(Some(
                args.iter().map(|a| Value::Bulk(Some(Bytes::copy_from_slice(a)))).collect(),
            ));
            prop_assert_eq!(parse(&out), Ok(Some((expect, out.len()))));
        }
    }
}
