//! `multipart/mixed` bodies for reads with siblings: one part per version with its own
//! headers. The parser is the inverse, for clients and tests.

/// One part of a multipart body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A boundary that occurs in none of the bodies (a fresh random one, re-drawn on the
/// astronomically unlikely collision; bounded attempts, then a longer one).
pub fn choose_boundary(bodies: &[&[u8]]) -> String {
    let clear = |b: &str| !bodies.iter().any(|body| contains(body, b.as_bytes()));
    for _ in 0..8 {
        let b = format!("riftkv-{}", uuid::Uuid::new_v4().simple());
        if clear(&b) {
            return b;
        }
    }
    let mut b = String::from("riftkv");
    for _ in 0..8 {
        b.push('-');
        b.push_str(&uuid::Uuid::new_v4().simple().to_string());
        if clear(&b) {
            break;
        }
    }
    b
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Renders parts with the given boundary (CRLF line ends, closing delimiter at the end).
pub fn render(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &p.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    out
}

/// The boundary parameter of a `multipart/...; boundary=...` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let media = params.next()?.trim();
    if !media.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("boundary") {
            Some(v.trim().trim_matches('"').to_string())
        } else {
            None
        }
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("no boundary in the content type")]
    NoBoundary,
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
}

/// Parses a multipart body rendered with `boundary`.
pub fn parse(boundary: &str, body: &[u8]) -> Result<Vec<Part>, MultipartError> {
    let delim = format!("--{boundary}").into_bytes();
    let sep = format!("\r\n--{boundary}").into_bytes();
    if !body.starts_with(&delim) {
        return Err(MultipartError::Malformed(
            "body does not start with the boundary",
        ));
    }
    let mut rest = &body[delim.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or(MultipartError::Malformed("no line end after a boundary"))?;
        let end = find(rest, &sep).ok_or(MultipartError::Malformed("unterminated part"))?;
        let part = &rest[..end];
        rest = &rest[end + sep.len()..];
        let (head, content) = match find(part, b"\r\n\r\n") {
            Some(i) => (&part[..i], &part[i + 4..]),
            None if part.ends_with(b"\r\n") || part.is_empty() => (part, &[][..]),
            None => return Err(MultipartError::Malformed("part without a blank line")),
        };
        let mut headers = Vec::new();
        let head = std::str::from_utf8(head)
            .map_err(|_| MultipartError::Malformed("part headers are not UTF-8"))?;
        for line in head.split("\r\n").filter(|l| !l.is_empty()) {
            let (n, v) = line
                .split_once(':')
                .ok_or(MultipartError::Malformed("header line without a colon"))?;
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        parts.push(Part {
            headers,
            body: content.to_vec(),
        });
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn part(ct: &str, body: &[u8]) -> Part {
        Part {
            headers: vec![
                ("content-type".into(), ct.into()),
                ("etag".into(), "\"x\"".into()),
            ],
            body: body.to_vec(),
        }
    }

    #[test]
    fn render_then_parse() {
        let parts = vec![
            part("text/plain", b"hello"),
            Part {
                headers: vec![("x-riftkv-deleted".into(), "true".into())],
                body: Vec::new(),
            },
            part(
                "application/octet-stream",
                b"\r\n--not-the-boundary\r\n\x00\xff",
            ),
        ];
        let b = choose_boundary(&parts.iter().map(|p| p.body.as_slice()).collect::<Vec<_>>());
        let body = render(&b, &parts);
        let ct = format!("multipart/mixed; boundary={b}");
        let b2 = boundary_of(&ct).unwrap();
        assert_eq!(parse(&b2, &body).unwrap(), parts);
    }

    #[test]
    fn boundary_avoids_the_bodies() {
        let b = choose_boundary(&[b"abc"]);
        assert!(b.starts_with("riftkv-"));
        assert!(boundary_of("text/plain; boundary=x").is_none());
        assert_eq!(
            boundary_of("multipart/mixed; boundary=\"q\"").as_deref(),
            Some("q")
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(parse("b", b"garbage").is_err());
        assert!(parse("b", b"--b\r\nno-end").is_err());
        assert_eq!(parse("b", b"--b--\r\n").unwrap(), vec![]);
    }

    proptest! {
        #[test]
        fn any_bodies_round_trip(bodies in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 1..5)) {
            let parts: Vec<Part> = bodies.iter().map(|b| part("a/b", b)).collect();
            let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
            let boundary = choose_boundary(&refs);
            let body = render(&boundary, &parts);
            prop_assert_eq!(parse(&boundary, &body).unwrap(), parts);
        }
    }
}
