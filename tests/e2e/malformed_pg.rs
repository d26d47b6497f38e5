//! Malformed Postgres messages (issue 14 item 6). Every frontend message type, the start-up
//! packet, SSLRequest, CancelRequest and the SASL messages are sent truncated, with huge
//! counts, impossible lengths or missing terminators, over raw TCP. Each time the connection
//! gets a FATAL 08P01 ErrorResponse and is closed, the server keeps serving, and its log shows
//! no panic. Messages that are well framed but hostile (format codes that do not match the
//! parameters or columns, negative `max_rows`, invalid UTF-8) get an error or an answer and
//! leave the connection usable. A seeded random pass then mutates 2,000 valid extended-query
//! exchanges.
//!
//! The decoding fixes live in vendor/pgwire (see vendor/pgwire/EDDY-PATCHES.md).

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Server, data_dir};
use crate::pg_raw::{cstr, framed, msg, packet, startup, startup_body};

/// How long the server gets to answer and close a connection.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A server of this test's own, logging connection errors to a file: a panic in a connection
/// task is printed there ("thread '...' panicked at ..."), not seen by the client.
fn start_eddy(dir: &Path, extra: &[&str]) -> Server {
    Server::start_logged_at(
        &dir.join("data"),
        extra,
        &dir.join("eddy.log"),
        // Connections that end with an error are logged at debug.
        Some("warn,eddy_pg=debug"),
    )
}

/// The body of a Parse message.
fn parse(name: &str, sql: &str, oids: &[u32]) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.extend((oids.len() as u16).to_be_bytes());
    for oid in oids {
        b.extend(oid.to_be_bytes());
    }
    b
}

/// The body of a Bind message.
fn bind(
    portal: &str,
    stmt: &str,
    formats: &[i16],
    params: &[Option<&[u8]>],
    results: &[i16],
) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(cstr(stmt));
    b.extend((formats.len() as u16).to_be_bytes());
    for f in formats {
        b.extend(f.to_be_bytes());
    }
    b.extend((params.len() as u16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend((v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
            None => b.extend((-1i32).to_be_bytes()),
        }
    }
    b.extend((results.len() as u16).to_be_bytes());
    for f in results {
        b.extend(f.to_be_bytes());
    }
    b
}

/// The body of an Execute message.
fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(max_rows.to_be_bytes());
    b
}

/// An ErrorResponse's severity, SQLSTATE and message.
#[derive(Debug)]
struct PgErr {
    severity: String,
    code: String,
    message: String,
}

/// The backend messages received on a connection, and whether the server closed it.
#[derive(Debug)]
struct Answer {
    messages: Vec<(u8, Vec<u8>)>,
    closed: bool,
}

impl Answer {
    fn has(&self, tag: u8) -> bool {
        self.messages.iter().any(|(t, _)| *t == tag)
    }

    fn count(&self, tag: u8) -> usize {
        self.messages.iter().filter(|(t, _)| *t == tag).count()
    }

    fn errors(&self) -> Vec<PgErr> {
        self.messages
            .iter()
            .filter(|(t, _)| *t == b'E')
            .map(|(_, body)| {
                let mut e = PgErr {
                    severity: String::new(),
                    code: String::new(),
                    message: String::new(),
                };
                let mut rest: &[u8] = body;
                while let Some((&field, tail)) = rest.split_first() {
                    if field == 0 {
                        break;
                    }
                    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
                    let value = String::from_utf8_lossy(&tail[..end]).into_owned();
                    match field {
                        b'S' => e.severity = value,
                        b'C' => e.code = value,
                        b'M' => e.message = value,
                        _ => {}
                    }
                    rest = tail.get(end + 1..).unwrap_or(&[]);
                }
                e
            })
            .collect()
    }

    /// Whether a FATAL 08P01 (protocol_violation) error was received.
    fn has_protocol_violation(&self) -> bool {
        self.errors()
            .iter()
            .any(|e| e.code == "08P01" && e.severity == "FATAL")
    }
}

/// The complete backend messages at the start of `bytes`.
fn split_messages(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        if len < 4 || bytes.len() < 1 + len as usize {
            break;
        }
        out.push((bytes[0], bytes[5..1 + len as usize].to_vec()));
        bytes = &bytes[1 + len as usize..];
    }
    out
}

/// Reads backend messages until `done` holds for them, the server closes the connection
/// (end of file or a reset), or `ANSWER_TIMEOUT` passes.
async fn read_until(stream: &mut TcpStream, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let answer = Answer {
            messages: split_messages(&bytes),
            closed: false,
        };
        if done(&answer) {
            return answer;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Answer {
                    messages: split_messages(&bytes),
                    closed: true,
                };
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => return answer,
        }
    }
}

/// Reads until the server closes the connection (or the timeout).
async fn read_to_close(stream: &mut TcpStream) -> Answer {
    read_until(stream, |_| false).await
}

/// Reads until ReadyForQuery (or the server closes the connection, or the timeout).
async fn read_to_ready(stream: &mut TcpStream) -> Answer {
    read_until(stream, |a| a.has(b'Z')).await
}

/// A raw connection that has logged in as `eddy` (trust) and is ready for queries.
async fn logged_in(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("open a TCP connection");
    s.write_all(&startup("eddy"))
        .await
        .expect("send the start-up message");
    let answer = read_to_ready(&mut s).await;
    assert!(
        answer.has(b'Z') && !answer.closed,
        "no ReadyForQuery after login: {answer:?}"
    );
    s
}

/// Sends `bytes` and expects a FATAL 08P01 ErrorResponse, then the connection closed.
async fn expect_protocol_violation(case: &str, mut stream: TcpStream, bytes: &[u8]) {
    // The server may close the connection before it has read all of it.
    let _ = stream.write_all(bytes).await;
    let answer = read_to_close(&mut stream).await;
    assert!(
        answer.has_protocol_violation(),
        "{case}: no FATAL 08P01 error: {:?} ({answer:?})",
        answer.errors()
    );
    assert!(answer.closed, "{case}: the connection was left open");
}

/// Sends `bytes`, ends the stream, and expects the server to close the connection.
async fn expect_closed_at_end_of_stream(case: &str, mut stream: TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let answer = read_to_close(&mut stream).await;
    assert!(answer.closed, "{case}: the connection was left open");
}

/// A fresh tokio-postgres connection logs in with `params` and runs a query.
async fn assert_serves(port: u16, params: &str) {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} dbname=eddy {params}"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("a fresh connection logs in");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let n: i64 = client
        .query_one("SELECT 41::bigint + 1", &[])
        .await
        .expect("a query on a fresh connection")
        .get(0);
    assert_eq!(n, 42);
}

/// Malformed messages sent after login, each on its own connection.
fn after_login_cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("Parse, empty body", msg(b'P', b"")),
        ("Parse, no type oid count", msg(b'P', b"\0SELECT 1\0")),
        ("Parse, 65535 type oids", msg(b'P', b"\0SELECT 1\0\xff\xff")),
        (
            "Parse, 2 type oids, 1 sent",
            msg(b'P', b"\0SELECT 1\0\0\x02\0\0\0\x14"),
        ),
        ("Parse, no NUL terminators", msg(b'P', b"stmtSELECT 1")),
        (
            "Parse, bytes after the body",
            msg(b'P', b"\0SELECT 1\0\0\0junk"),
        ),
        ("Parse, length i32::MAX", framed(b'P', i32::MAX, b"")),
        ("Bind, empty body", msg(b'B', b"")),
        ("Bind, 1 format code, none sent", msg(b'B', b"\0\0\0\x01")),
        ("Bind, 65535 format codes", msg(b'B', b"\0\0\xff\xff")),
        ("Bind, 65535 parameters", msg(b'B', b"\0\0\0\0\xff\xff")),
        (
            "Bind, value of 100 bytes, 3 sent",
            msg(b'B', b"\0\0\0\0\0\x01\0\0\0\x64abc\0\0"),
        ),
        (
            "Bind, value length -5",
            msg(b'B', b"\0\0\0\0\0\x01\xff\xff\xff\xfb\0\0"),
        ),
        (
            "Bind, value length i32::MAX",
            msg(b'B', b"\0\0\0\0\0\x01\x7f\xff\xff\xffabc\0\0"),
        ),
        ("Bind, no result format count", msg(b'B', b"\0\0\0\0\0\0")),
        (
            "Bind, 65535 result format codes",
            msg(b'B', b"\0\0\0\0\0\0\xff\xff"),
        ),
        ("Bind, length -2", framed(b'B', -2, b"")),
        ("Describe, empty body", msg(b'D', b"")),
        ("Describe, name without NUL", msg(b'D', b"Sname")),
        ("Describe, unknown target type", msg(b'D', b"Z\0")),
        ("Describe, length 10001", framed(b'D', 10_001, b"")),
        ("Execute, empty body", msg(b'E', b"")),
        ("Execute, short max_rows", msg(b'E', b"\0\0\0")),
        ("Execute, length 2", framed(b'E', 2, b"")),
        ("Close, empty body", msg(b'C', b"")),
        ("Close, name without NUL", msg(b'C', b"Sname")),
        ("FunctionCall", msg(b'F', b"\0\0\0\x01\0\0\0\0\0\0")),
        ("CopyData, length 0", framed(b'd', 0, b"")),
        ("CopyData, length 3", framed(b'd', 3, b"")),
        (
            "CopyFail, bytes after the message",
            msg(b'f', b"oops\0junk"),
        ),
        ("CopyDone with a body", msg(b'c', b"x")),
        ("Flush with a body", msg(b'H', b"x")),
        ("Sync with a body", msg(b'S', b"xyz")),
        ("Query without NUL", msg(b'Q', b"SELECT 1")),
        ("Query, length 0", framed(b'Q', 0, b"")),
        ("Query, length 3", framed(b'Q', 3, b"")),
        ("Query, length -1", framed(b'Q', -1, b"SELECT 1\0")),
        (
            "Query, length 1 GiB",
            framed(b'Q', 0x4000_0000, b"SELECT 1\0"),
        ),
        ("Terminate with a body", msg(b'X', b"x")),
        ("password message, length 2", framed(b'p', 2, b"")),
        ("password message, length -1", framed(b'p', -1, b"")),
        ("unknown message type", msg(b'z', b"")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_after_login_get_a_protocol_violation_and_are_closed() {
    let dir = data_dir();
    let mut eddy = start_eddy(dir.path(), &[]);
    for (case, bytes) in after_login_cases() {
        let stream = logged_in(eddy.pg).await;
        expect_protocol_violation(case, stream, &bytes).await;
        eddy.assert_no_panic();
        assert_serves(eddy.pg, "user=eddy").await;
    }
    // A message cut short by the end of the stream: nothing to answer, the connection closes.
    let stream = logged_in(eddy.pg).await;
    expect_closed_at_end_of_stream(
        "Query of 100 bytes, 10 sent",
        stream,
        &framed(b'Q', 100, b"SELECT 1\0\0"),
    )
    .await;
    assert_serves(eddy.pg, "user=eddy").await;
    // The connection's end is logged (at debug), with the reason.
    eddy.wait_log("insufficient data left in message");
    eddy.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_packets_get_a_protocol_violation_and_are_closed() {
    let dir = data_dir();
    let mut eddy = start_eddy(dir.path(), &[]);
    let user = [("user", "eddy"), ("database", "eddy")];
    let mut cancel_300 = vec![0u8, 0, 1, 0x2c, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1];
    cancel_300.resize(300, 7);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("start-up, length 4", vec![0, 0, 0, 4, 0, 3, 0, 0]),
        ("start-up, length 0", vec![0, 0, 0, 0, 0, 3, 0, 0]),
        (
            "start-up, length -1",
            vec![0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0],
        ),
        (
            "start-up, length i32::MAX",
            vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0],
        ),
        ("start-up, length 10001", vec![0, 0, 0x27, 0x11, 0, 3, 0, 0]),
        (
            "start-up, protocol 4.0",
            packet(&startup_body(0x0004_0000, &user)),
        ),
        (
            "start-up, protocol 2.0",
            packet(&startup_body(0x0002_0000, &user)),
        ),
        (
            "start-up, value without NUL",
            packet(b"\0\x03\0\0user\0eddy"),
        ),
        ("start-up, no NUL at all", packet(b"\0\x03\0\0user")),
        (
            "start-up, bytes after the terminator",
            packet(b"\0\x03\0\0user\0eddy\0\0junk"),
        ),
        (
            "SSLRequest, length 16",
            vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "SSLRequest, length 4",
            vec![0, 0, 0, 4, 0x04, 0xd2, 0x16, 0x2f],
        ),
        (
            "GSSENCRequest, length 12",
            vec![0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x30, 0, 0, 0, 0],
        ),
        (
            "CancelRequest, length 8",
            vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2e],
        ),
        (
            "CancelRequest, length 12",
            vec![0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1],
        ),
        ("CancelRequest, key of 288 bytes", cancel_300),
        (
            "CancelRequest, length i32::MAX",
            vec![0x7f, 0xff, 0xff, 0xff, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1],
        ),
        (
            "CancelRequest, length -1",
            vec![0xff, 0xff, 0xff, 0xff, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1],
        ),
    ];
    for (case, bytes) in cases {
        let stream = TcpStream::connect(("127.0.0.1", eddy.pg))
            .await
            .expect("open a TCP connection");
        expect_protocol_violation(case, stream, &bytes).await;
        eddy.assert_no_panic();
        assert_serves(eddy.pg, "user=eddy").await;
    }

    // An SSLRequest is refused (no TLS configured); then a start-up packet of length 0.
    let mut stream = TcpStream::connect(("127.0.0.1", eddy.pg))
        .await
        .expect("open a TCP connection");
    stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .expect("send an SSLRequest");
    let refused = stream.read_u8().await.expect("an answer to the SSLRequest");
    assert_eq!(refused, b'N', "SSL refused");
    expect_protocol_violation(
        "start-up of length 0 after SSL",
        stream,
        &[0, 0, 0, 0, 0, 3, 0, 0],
    )
    .await;

    // Packets cut short by the end of the stream.
    for (case, bytes) in [
        ("start-up, 5 bytes", vec![0u8, 0, 0, 9, 0]),
        ("start-up of 100 bytes, 21 sent", {
            let mut b = vec![0u8, 0, 0, 100, 0, 3, 0, 0];
            b.extend(cstr("user"));
            b.extend(cstr("eddy"));
            b.extend(b"dat");
            b
        }),
    ] {
        let stream = TcpStream::connect(("127.0.0.1", eddy.pg))
            .await
            .expect("open a TCP connection");
        expect_closed_at_end_of_stream(case, stream, &bytes).await;
    }
    assert_serves(eddy.pg, "user=eddy").await;
    eddy.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sasl_messages_get_a_protocol_violation_and_are_closed() {
    let dir = data_dir();
    // A user with a password: logins use SCRAM-SHA-256.
    let mut eddy = start_eddy(dir.path(), &["--pg-user", "alice:s3cret"]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "SASLInitialResponse without data length",
            msg(b'p', b"SCRAM-SHA-256\0"),
        ),
        (
            "SASLInitialResponse, data of 100 bytes, 3 sent",
            msg(b'p', b"SCRAM-SHA-256\0\0\0\0\x64abc"),
        ),
        (
            "SASLInitialResponse, data length -5",
            msg(b'p', b"SCRAM-SHA-256\0\xff\xff\xff\xfb"),
        ),
        (
            "SASLInitialResponse, data length i32::MAX",
            msg(b'p', b"SCRAM-SHA-256\0\x7f\xff\xff\xff"),
        ),
        (
            "SASLInitialResponse without NUL",
            msg(b'p', b"SCRAM-SHA-256"),
        ),
        ("password message, length 3", framed(b'p', 3, b"")),
        ("password message, length 10001", framed(b'p', 10_001, b"")),
    ];
    for (case, bytes) in cases {
        let mut stream = TcpStream::connect(("127.0.0.1", eddy.pg))
            .await
            .expect("open a TCP connection");
        stream
            .write_all(&startup("alice"))
            .await
            .expect("send the start-up message");
        let asked = read_until(&mut stream, |a| a.has(b'R')).await;
        assert!(
            asked.has(b'R') && !asked.closed,
            "{case}: no authentication request: {asked:?}"
        );
        expect_protocol_violation(case, stream, &bytes).await;
        eddy.assert_no_panic();
        assert_serves(eddy.pg, "user=alice password=s3cret").await;
    }
    eddy.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_but_well_framed_extended_queries_leave_the_connection_usable() {
    let dir = data_dir();
    let mut eddy = start_eddy(dir.path(), &[]);
    let int8 = 20;

    // A binary NUMERIC with no digit groups and weight 7 (10^32): rust_decimal panicked
    // decoding it (found by the long fuzzing pass). It is 22003, and the connection goes on.
    let numeric = 1700;
    let mut s = logged_in(eddy.pg).await;
    let mut m = msg(b'P', &parse("", "SELECT $1::numeric AS n", &[numeric]));
    let huge: [u8; 8] = [0, 0, 0, 7, 0, 0, 0, 0];
    m.extend(msg(b'B', &bind("", "", &[1], &[Some(&huge[..])], &[])));
    m.extend(msg(b'E', &execute("", 0)));
    m.extend(msg(b'S', b""));
    s.write_all(&m).await.expect("send");
    let answer = read_to_ready(&mut s).await;
    assert!(
        answer.errors().iter().any(|e| e.code == "22003"),
        "no 22003 for a binary numeric of 10^32: {answer:?}"
    );
    s.write_all(&msg(b'Q', b"SELECT 1\0")).await.expect("send");
    let answer = read_to_ready(&mut s).await;
    assert!(
        answer.has(b'D') && !answer.closed,
        "a query after the refused numeric: {answer:?}"
    );
    eddy.assert_no_panic();
    drop(s);

    // Two parameter format codes for three parameters: PostgreSQL's 08P01 error at Bind.
    let mut s = logged_in(eddy.pg).await;
    let mut m = msg(
        b'P',
        &parse(
            "",
            "SELECT $1::bigint AS a, $2::bigint AS b, $3::bigint AS c",
            &[int8, int8, int8],
        ),
    );
    let values: [Option<&[u8]>; 3] = [Some(&b"1"[..]), Some(&b"2"[..]), Some(&b"3"[..])];
    m.extend(msg(b'B', &bind("", "", &[0, 0], &values, &[])));
    m.extend(msg(b'E', &execute("", 0)));
    m.extend(msg(b'S', b""));
    s.write_all(&m).await.expect("send");
    let answer = read_to_ready(&mut s).await;
    assert!(
        answer.has(b'Z') && !answer.closed,
        "format codes that do not match the parameters: {answer:?}"
    );
    assert!(
        answer
            .errors()
            .iter()
            .any(|e| e.code == "08P01" && e.message.contains("parameter formats")),
        "no 08P01 error for 2 format codes and 3 parameters: {:?}",
        answer.errors()
    );
    // The connection still works.
    s.write_all(&msg(b'Q', b"SELECT 1\0")).await.expect("send");
    let answer = read_to_ready(&mut s).await;
    assert!(
        answer.has(b'D') && !answer.closed,
        "a query after the error: {answer:?}"
    );
    drop(s);

    // Two result format codes for three columns.
    let mut s = logged_in(eddy.pg).await;
    let mut m = msg(
        b'P',
        &parse(
            "",
            "SELECT 1::bigint AS a, 2::bigint AS b, 3::bigint AS c",
            &[],
        ),
    );
    m.extend(msg(b'B', &bind("", "", &[], &[], &[0, 0])));
    m.extend(msg(b'E', &execute("", 0)));
    m.extend(msg(b'S', b""));
    s.write_all(&m).await.expect("send");
    let answer = read_to_ready(&mut s).await;
    assert!(
        answer.has(b'Z') && !answer.closed,
        "result format codes that do not match the columns: {answer:?}"
    );
    drop(s);

    // Execute with a negative or huge max_rows: no limit, or that many at most.
    for max_rows in [-1, i32::MIN, i32::MAX] {
        let mut s = logged_in(eddy.pg).await;
        let mut m = msg(b'P', &parse("", "SELECT 1::bigint AS n", &[]));
        m.extend(msg(b'B', &bind("", "", &[], &[], &[])));
        m.extend(msg(b'E', &execute("", max_rows)));
        m.extend(msg(b'S', b""));
        s.write_all(&m).await.expect("send");
        let answer = read_to_ready(&mut s).await;
        assert!(
            answer.has(b'D') && answer.has(b'C') && answer.has(b'Z') && !answer.closed,
            "Execute with max_rows {max_rows}: {answer:?}"
        );
        eddy.assert_no_panic();
    }

    // Invalid UTF-8: in a query, in a text parameter; wrong-sized binary parameters.
    let mut s = logged_in(eddy.pg).await;
    s.write_all(&msg(b'Q', b"SELECT '\xff\xfe' AS s\0"))
        .await
        .expect("send");
    let answer = read_to_ready(&mut s).await;
    assert!(
        answer.has(b'Z') && !answer.closed,
        "a query with invalid UTF-8: {answer:?}"
    );
    let text: [Option<&[u8]>; 1] = [Some(&b"\xff\xfe"[..])];
    let short: [Option<&[u8]>; 1] = [Some(&b"\0\0\x01"[..])];
    for (what, sql, oid, formats, value) in [
        (
            "invalid UTF-8 text",
            "SELECT $1::text AS v",
            25u32,
            vec![0i16],
            &text,
        ),
        (
            "a 3-byte binary bigint",
            "SELECT $1::bigint AS v",
            int8,
            vec![1i16],
            &short,
        ),
    ] {
        let mut m = msg(b'P', &parse("", sql, &[oid]));
        m.extend(msg(b'B', &bind("", "", &formats, value, &[])));
        m.extend(msg(b'E', &execute("", 0)));
        m.extend(msg(b'S', b""));
        s.write_all(&m).await.expect("send");
        let answer = read_to_ready(&mut s).await;
        assert!(
            answer.has(b'Z') && !answer.closed,
            "a parameter of {what}: {answer:?}"
        );
    }
    drop(s);

    assert_serves(eddy.pg, "user=eddy").await;
    eddy.assert_no_panic();
}

/// A deterministic xorshift64* generator: the random pass is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
}

/// One frontend message of the exchange the random pass mutates; `len` overrides the length.
#[derive(Clone, Debug)]
struct Frame {
    tag: u8,
    len: Option<i32>,
    body: Vec<u8>,
}

impl Frame {
    fn new(tag: u8, body: Vec<u8>) -> Frame {
        Frame {
            tag,
            len: None,
            body,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        framed(
            self.tag,
            self.len.unwrap_or(self.body.len() as i32 + 4),
            &self.body,
        )
    }
}

/// A valid extended-query exchange: Parse, Bind, Describe, Execute, Close, Sync. The parameter
/// is sent as text or as binary.
fn valid_exchange(binary: bool) -> Vec<Frame> {
    let (format, value) = if binary {
        (1i16, 41i64.to_be_bytes().to_vec())
    } else {
        (0i16, b"41".to_vec())
    };
    vec![
        Frame::new(b'P', parse("s", "SELECT $1::bigint + 1 AS n", &[20])),
        Frame::new(
            b'B',
            bind("p", "s", &[format], &[Some(value.as_slice())], &[0]),
        ),
        Frame::new(b'D', b"Pp\0".to_vec()),
        Frame::new(b'E', execute("p", 0)),
        Frame::new(b'C', b"Ss\0".to_vec()),
        Frame::new(b'S', Vec::new()),
    ]
}

/// Applies one random mutation to one message of `frames`; returns what it did.
fn mutate(rng: &mut Rng, frames: &mut [Frame]) -> String {
    // Parse, Bind and Execute most often.
    let i = rng.pick(&[0usize, 0, 0, 1, 1, 1, 1, 2, 3, 3, 4]);
    let f = &mut frames[i];
    let tag = f.tag as char;
    let n = f.body.len();
    match rng.below(9) {
        0 if n > 0 => {
            let (p, bit) = (rng.below(n), rng.below(8));
            f.body[p] ^= 1u8 << bit;
            format!("{tag}: flip bit {bit} of byte {p}")
        }
        1 if n > 0 => {
            let (p, v) = (rng.below(n), rng.pick(&[0u8, 1, 0x7f, 0x80, 0xfe, 0xff]));
            f.body[p] = v;
            format!("{tag}: byte {p} = {v:#x}")
        }
        2 => {
            let p = rng.below(n + 1);
            f.body.truncate(p);
            format!("{tag}: truncate to {p} bytes")
        }
        3 => {
            let p = rng.below(n + 1);
            let k = 1 + rng.below(8);
            for _ in 0..k {
                let b = rng.next() as u8;
                f.body.insert(p, b);
            }
            format!("{tag}: insert {k} bytes at {p}")
        }
        4 if n >= 2 => {
            let p = rng.below(n - 1);
            let v = rng.pick(&[0u16, 1, 2, 0x7fff, 0x8000, 0xfffe, 0xffff]);
            f.body[p..p + 2].copy_from_slice(&v.to_be_bytes());
            format!("{tag}: u16 at {p} = {v:#x}")
        }
        5 if n >= 4 => {
            let p = rng.below(n - 3);
            let v = rng.pick(&[0i32, 1, -1, -2, 100, 0x1_0000, i32::MAX, i32::MIN]);
            f.body[p..p + 4].copy_from_slice(&v.to_be_bytes());
            format!("{tag}: i32 at {p} = {v}")
        }
        6 => {
            let real = n as i32 + 4;
            let v = rng.pick(&[
                0,
                1,
                3,
                4,
                real - 1,
                real + 1,
                real + 1000,
                10_001,
                0x3fff_fffe,
                i32::MAX,
                -1,
                i32::MIN,
            ]);
            f.len = Some(v);
            format!("{tag}: length {v} (real {real})")
        }
        7 => {
            let t = rng.pick(&b"PBDECFdfcHSQXpz\0\xff"[..]);
            f.tag = t;
            format!("{tag}: tag {t:#x}")
        }
        _ => {
            if n > 0 {
                let p = rng.below(n);
                f.body.remove(p);
                format!("{tag}: remove byte {p}")
            } else {
                format!("{tag}: unchanged")
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_mutations_of_extended_queries_never_panic() {
    let dir = data_dir();
    let mut eddy = start_eddy(dir.path(), &[]);

    // The exchanges are valid before they are mutated.
    let mut s = logged_in(eddy.pg).await;
    let mut bytes = Vec::new();
    for binary in [false, true] {
        for f in valid_exchange(binary) {
            bytes.extend(f.bytes());
        }
    }
    s.write_all(&bytes).await.expect("send");
    let _ = s.shutdown().await;
    let answer = read_to_close(&mut s).await;
    assert!(
        answer.errors().is_empty() && answer.count(b'D') == 2 && answer.count(b'Z') == 2,
        "the valid exchanges failed: {:?} ({answer:?})",
        answer.errors()
    );

    // 2,000 mutated exchanges, 5 per connection. Each connection ends its stream after the
    // last one, so a length that promises more bytes than were sent cannot stall the pass.
    const EXCHANGES: usize = 2_000;
    const PER_CONNECTION: usize = 5;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for batch in 0..EXCHANGES / PER_CONNECTION {
        let mut bytes = Vec::new();
        let mut done = Vec::new();
        for _ in 0..PER_CONNECTION {
            let mut frames = valid_exchange(rng.below(2) == 1);
            done.push(mutate(&mut rng, &mut frames));
            // One in four exchanges gets a second mutation.
            if rng.below(4) == 0 {
                done.push(mutate(&mut rng, &mut frames));
            }
            for f in &frames {
                bytes.extend(f.bytes());
            }
        }
        let mut s = logged_in(eddy.pg).await;
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
        let answer = read_to_close(&mut s).await;
        assert!(
            answer.closed,
            "batch {batch} ({done:?}): the server did not close the connection"
        );
        if batch % 40 == 39 {
            eddy.assert_no_panic();
        }
    }
    eddy.assert_no_panic();
    assert_serves(eddy.pg, "user=eddy").await;
    eddy.assert_no_panic();
}
