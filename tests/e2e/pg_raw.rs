//! Postgres frontend messages built byte by byte, for tests that speak the protocol over a
//! raw socket (malformed messages, connections that never finish logging in).

/// A frontend message with a correct length: tag, length (counting itself), body.
pub fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    framed(tag, body.len() as i32 + 4, body)
}

/// A frontend message with whatever length, correct or not.
pub fn framed(tag: u8, len: i32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend(len.to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A packet without a tag (start-up, SSLRequest, CancelRequest) with a correct length.
pub fn packet(body: &[u8]) -> Vec<u8> {
    let mut m = (body.len() as i32 + 4).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

/// `s` with its NUL terminator.
pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A start-up message body: protocol version, then parameters and the final terminator.
pub fn startup_body(protocol: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = protocol.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend(cstr(k));
        body.extend(cstr(v));
    }
    body.push(0);
    body
}

/// A start-up message (protocol 3.0) for `user` and database `eddy`.
pub fn startup(user: &str) -> Vec<u8> {
    packet(&startup_body(
        196608,
        &[("user", user), ("database", "eddy")],
    ))
}
