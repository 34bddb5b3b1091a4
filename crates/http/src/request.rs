//! One HTTP/1.x request head out of the bytes received (httparse), and the bits of the target
//! the API needs: path, query parameters (percent-decoded). Pure: no sockets.

use spindle_types::limits::{HTTP_HEADERS_MAX, HTTP_HEAD_MAX};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// Bytes of the request line and headers.
    pub len: usize,
    pub content_length: usize,
    /// The connection stays open after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before its body.
    pub expect_continue: bool,
}

/// Why a head cannot be served; each has its status code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// 431: the head is longer than `HTTP_HEAD_MAX` or has too many headers.
    TooLarge,
    /// 413: the declared body is over the limit.
    BodyTooLarge,
    /// 501: `Transfer-Encoding` (chunked bodies) is not supported.
    TransferEncoding,
    /// 400.
    Bad(String),
}

/// The head at the start of `buf`: None until it is complete.
pub fn parse_head(buf: &[u8], body_max: usize) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; HTTP_HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > HTTP_HEAD_MAX => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Bad(format!("malformed request: {e}"))),
    };
    if len > HTTP_HEAD_MAX {
        return Err(HeadError::TooLarge);
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let http10 = req.version == Some(0);
    let mut head = Head {
        method,
        path: path.to_string(),
        query: query.to_string(),
        len,
        content_length: 0,
        keep_alive: !http10,
        expect_continue: false,
    };
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = value
                .parse()
                .map_err(|_| HeadError::Bad("bad Content-Length".into()))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::TransferEncoding);
        } else if h.name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                head.keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                head.keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            head.expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    if head.content_length > body_max {
        return Err(HeadError::BodyTooLarge);
    }
    Ok(Some(head))
}

/// The value of query parameter `name`, percent-decoded (`+` stays `+`: base64 uses it).
/// `Err` names a parameter whose encoding is broken.
pub fn query_param(query: &str, name: &str) -> Result<Option<Vec<u8>>, String> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return percent_decode(v)
                .map(Some)
                .ok_or_else(|| format!("{name}: bad percent-encoding"));
        }
    }
    Ok(None)
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_post_head_with_a_body() {
        let req = b"POST /v1/commit HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{}";
        let head = parse_head(req, 100).unwrap().unwrap();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path, "/v1/commit");
        assert_eq!(head.content_length, 12);
        assert!(head.keep_alive);
        assert_eq!(head.len, req.len() - 2);
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_fail() {
        assert_eq!(parse_head(b"GET /v1/version HTTP/1.1\r\n", 10), Ok(None));
        let long = vec![b'a'; HTTP_HEAD_MAX + 1];
        let mut req = b"GET /".to_vec();
        req.extend_from_slice(&long);
        assert_eq!(parse_head(&req, 10), Err(HeadError::TooLarge));
    }

    #[test]
    fn http10_closes_and_connection_close_is_honoured() {
        let h = parse_head(b"GET / HTTP/1.0\r\n\r\n", 0).unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn bodies_over_the_limit_and_chunked_bodies_are_refused() {
        let req = b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(parse_head(req, 10), Err(HeadError::BodyTooLarge));
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(req, 10), Err(HeadError::TransferEncoding));
        let req = b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n";
        assert!(matches!(parse_head(req, 10), Err(HeadError::Bad(_))));
    }

    #[test]
    fn query_params_are_percent_decoded_but_plus_stays() {
        let q = "key=YQ%3D%3D&limit=5&x=a+b";
        assert_eq!(query_param(q, "key"), Ok(Some(b"YQ==".to_vec())));
        assert_eq!(query_param(q, "limit"), Ok(Some(b"5".to_vec())));
        assert_eq!(query_param(q, "x"), Ok(Some(b"a+b".to_vec())));
        assert_eq!(query_param(q, "end"), Ok(None));
        assert!(query_param("key=%4", "key").is_err());
        assert!(query_param("key=%zz", "key").is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_head(&bytes, 1024);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = query_param(text, "key");
            }
        }
    }
}
