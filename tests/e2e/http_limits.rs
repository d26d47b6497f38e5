//! Memory under bursts of HTTP writes: request bodies share one budget
//! (`http_inflight_bytes_max`), a request that finds it spent is answered 503 with
//! `Retry-After` before its body is read, a client that stalls in the middle of a huge body holds
//! at most one chunk, and a large body is written as it streams in, plain or gzip, with its
//! line numbers counted across chunks.

use std::io::Write as _;
use std::time::{Duration, Instant};

use eddy_server::http::CHUNK_BYTES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Server, data_dir, eddy_gen};

const WRITE_PATH: &str = "/api/v2/write?bucket=eddy&precision=ns";

/// An HTTP answer read off a raw connection.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut tmp = [0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut tmp))
        .await
        .expect("an answer within 60 s")
        .expect("read the answer");
    buf.extend_from_slice(&tmp[..n]);
    n
}

/// Reads the next answer: its head, and its body up to its Content-Length (a `100 Continue`
/// has none).
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = read_some(stream, &mut buf).await;
        assert!(
            n > 0,
            "connection closed before an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
    };
    let mut body = buf.split_off(end);
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head:?}"));
    if status != 100 {
        let len: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while body.len() < len && read_some(stream, &mut body).await > 0 {}
    }
    Answer {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

enum Start {
    /// `100 Continue`: the server took the request's share of the budget; send the body.
    Admitted(TcpStream),
    /// Answered at once, before any of the body was sent.
    Refused(Answer),
}

/// Sends the head of a write of `length` bytes with `Expect: 100-continue`, as curl does for
/// large bodies, and reads whether the server admits it.
async fn start_write(port: u16, length: usize) -> Start {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect over HTTP");
    let head = format!(
        "POST {WRITE_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n\
         Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("send the head");
    let answer = read_answer(&mut s).await;
    if answer.status == 100 {
        Start::Admitted(s)
    } else {
        Start::Refused(answer)
    }
}

fn assert_busy(a: &Answer) {
    assert_eq!(a.status, 503, "{}{}", a.head, a.body);
    assert_eq!(header(&a.head, "retry-after"), Some("1"), "{}", a.head);
    let json: serde_json::Value = serde_json::from_str(&a.body).expect("a JSON error");
    assert_eq!(json["code"], "unavailable", "{}", a.body);
    let message = json["message"].as_str().expect("a message");
    assert!(message.contains("http_inflight_bytes_max"), "{message}");
}

/// Lines of `table` with distinct keys, at least `bytes` long, and how many.
fn lines(table: &str, bytes: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(bytes + 64);
    let mut n = 0usize;
    while out.len() < bytes {
        writeln!(out, "{table},k=k{} v={n} {}", n % 100, n + 1).unwrap();
        n += 1;
    }
    (out, n)
}

/// Comment lines, which the server reads and skips, `bytes` long.
fn comments(bytes: usize) -> Vec<u8> {
    let line = format!("# {}\n", "x".repeat(1021));
    line.as_bytes().repeat(bytes.div_ceil(line.len()))
}

/// Resident memory of a process in MiB (`VmRSS` of /proc/PID/status).
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_share_one_budget_and_give_it_back() {
    const BUDGET: usize = 64 << 20;
    const DECLARED: usize = 60_000_000;
    const CLIENTS: usize = 40;
    let dir = data_dir();
    let s = Server::start_with(
        dir.path(),
        &["--http-inflight-bytes-max", &BUDGET.to_string()],
    );
    // A body larger than a chunk holds one chunk of the budget while it streams in.
    let fit = BUDGET / CHUNK_BYTES;
    assert_eq!(
        BUDGET % CHUNK_BYTES,
        0,
        "the budget is a whole number of chunks"
    );
    assert!(
        (5..CLIENTS).contains(&fit),
        "the test needs 4 < {fit} < {CLIENTS}"
    );
    // Each stalled client sends 20 MiB of its 60 MB before it stalls: held whole, 40 of them
    // would take 800 MiB.
    let sent = comments(20 << 20);
    let rss_before = rss_mib(s.pid());

    // Clients that send part of a 60 MB body and stall take most of the budget...
    let mut stalled = Vec::new();
    for _ in 0..fit - 4 {
        match start_write(s.http, DECLARED).await {
            Start::Admitted(mut c) => {
                c.write_all(&sent).await.expect("send part of the body");
                stalled.push(c);
            }
            Start::Refused(a) => panic!("refused with room left: {}{}", a.head, a.body),
        }
    }
    // ...and a small write still goes through meanwhile.
    let (status, body) = s.write_lp("small,k=a v=1 1\n").await;
    assert_eq!(status, 204, "{body}");

    // More of them, up to 40: the rest of the budget goes, then each is refused at once.
    let mut refused = 0;
    for _ in stalled.len()..CLIENTS {
        match start_write(s.http, DECLARED).await {
            Start::Admitted(mut c) => {
                c.write_all(&sent).await.expect("send part of the body");
                stalled.push(c);
            }
            Start::Refused(a) => {
                assert_busy(&a);
                refused += 1;
            }
        }
    }
    assert_eq!(stalled.len(), fit, "clients admitted");
    assert_eq!(refused, CLIENTS - fit, "clients refused");

    // Memory follows the budget, not what the clients announced or sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_mib(s.pid());
    assert!(
        rss < 600,
        "server RSS is {rss} MiB (it was {rss_before} MiB) while {} clients stall in 60 MB \
         bodies with a budget of 64 MiB",
        stalled.len()
    );

    // With the budget spent, even a small write is refused before its body is sent.
    match start_write(s.http, 16).await {
        Start::Refused(a) => assert_busy(&a),
        Start::Admitted(_) => panic!("a write was admitted with the budget spent"),
    }

    // The stalled clients go away; their shares come back, all of them.
    drop(stalled);
    let (big, big_lines) = lines("big", 2 * CHUNK_BYTES + 12_345);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut admitted = Vec::new();
    while admitted.len() < fit {
        match start_write(s.http, big.len()).await {
            Start::Admitted(c) => admitted.push(c),
            Start::Refused(a) => {
                assert_busy(&a);
                assert!(
                    Instant::now() < deadline,
                    "the budget did not come back within 30 s of the clients leaving"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    match start_write(s.http, big.len()).await {
        Start::Refused(a) => assert_busy(&a),
        Start::Admitted(_) => panic!("admitted beyond the budget"),
    }
    // A big request runs to completion, written in chunks as it streams in.
    let mut c = admitted.pop().expect("an admitted request");
    c.write_all(&big).await.expect("send the body");
    let a = read_answer(&mut c).await;
    assert_eq!(a.status, 204, "{}{}", a.head, a.body);
    drop(admitted);
    let n: i64 = s
        .pg()
        .await
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, big_lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_is_written_as_it_streams_in_with_absolute_line_numbers() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let data = eddy_gen(&[
        "--scale",
        "100",
        "--start",
        "2024-01-01T00:00:00Z",
        "--end",
        "2024-01-01T03:00:00Z",
    ]);
    assert!(
        data.len() > 6 * CHUNK_BYTES,
        "{} bytes generated",
        data.len()
    );
    let good: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();

    // Bad lines: one after the first chunks, one longer than a chunk further on, and one that
    // ends the body without a newline.
    let long_line = format!("toolong v=\"{}\" 1", "x".repeat(CHUNK_BYTES + (1 << 20)));
    let mut body = Vec::with_capacity(data.len() + long_line.len() + 100);
    let mut line = 0usize;
    let mut bad = Vec::new();
    for l in &good {
        if bad.is_empty() && body.len() >= 2 * CHUNK_BYTES {
            body.extend_from_slice(b"cpu,hostname=bad usage_user=oops 1\n");
            line += 1;
            bad.push(line);
        }
        if bad.len() == 1 && body.len() >= 5 * CHUNK_BYTES {
            body.extend_from_slice(long_line.as_bytes());
            body.push(b'\n');
            line += 1;
            bad.push(line);
        }
        body.extend_from_slice(l);
        body.push(b'\n');
        line += 1;
    }
    body.extend_from_slice(b"cpu,hostname=last usage_user= 5");
    line += 1;
    bad.push(line);
    assert_eq!(bad.len(), 3);

    let check = |status: u16, resp: &str| {
        assert_eq!(status, 400, "{}", &resp[..resp.len().min(2000)]);
        let json: serde_json::Value = serde_json::from_str(resp).expect("a JSON answer");
        assert_eq!(json["lines_written"], good.len(), "{resp}");
        assert_eq!(json["lines_rejected"], 3, "{resp}");
        let errors = json["errors"].as_array().expect("errors");
        let lines: Vec<usize> = errors
            .iter()
            .map(|e| e["line"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(lines, bad, "{resp}");
        let message = |i: usize| errors[i]["message"].as_str().unwrap().to_string();
        assert!(message(0).contains("double-quoted"), "{resp}");
        assert_eq!(
            message(1),
            format!("line is {} bytes; the maximum is 1048576", long_line.len())
        );
        assert!(message(2).contains("missing value"), "{resp}");
    };
    let (status, resp) = s.write_lp(body.clone()).await;
    check(status, &resp);
    let c = s.pg().await;
    let count = |c: tokio_postgres::Client| async move {
        let n: i64 = c
            .query_one("SELECT count(*) FROM cpu", &[])
            .await
            .unwrap()
            .get(0);
        (c, n as usize)
    };
    let (c, n) = count(c).await;
    assert_eq!(n, good.len());

    // The same body gzipped is decompressed as it streams in: the same answer, and the same
    // rows (written again, as upserts).
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&body).unwrap();
    let r = reqwest::Client::new()
        .post(s.url(WRITE_PATH))
        .header("Content-Encoding", "gzip")
        .body(enc.finish().unwrap())
        .send()
        .await
        .expect("http request");
    let status = r.status().as_u16();
    check(status, &r.text().await.unwrap());
    let (_c, n) = count(c).await;
    assert_eq!(n, good.len());
}
