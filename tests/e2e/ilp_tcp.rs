//! Line protocol over plain TCP (`--ilp-tcp-addr`): lines split across reads at any byte,
//! bad and over-long lines skipped without closing the connection, a truncated last line
//! dropped, concurrent producers, shutdown with producers connected, and the refusal to listen
//! beyond loopback without `--ilp-tcp-allow-remote`. Rows are read back over the Postgres
//! protocol, rejected lines from `/metrics`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Server, data_dir, free_port, refused_with};

/// How long rows may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(30);

/// 2024-01-01T00:00:00Z in nanoseconds.
const T0: i64 = 1_704_067_200_000_000_000;

/// A server with line protocol over TCP on a free loopback port, and that address.
fn start(dir: &Path) -> (Server, SocketAddr) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let arg = addr.to_string();
    let s = Server::start_with(dir, &["--ilp-tcp-addr", arg.as_str()]);
    (s, addr)
}

/// Runs `sql` (one `bigint` result) until it gives `want`; fails after [`ARRIVAL`] with the
/// last answer. Errors (the table does not exist yet) count as not yet.
async fn wait_for(c: &tokio_postgres::Client, sql: &str, want: i64) {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let last = match c.query_one(sql, &[]).await {
            Ok(row) => match row.try_get::<_, Option<i64>>(0) {
                Ok(Some(n)) if n == want => return,
                Ok(v) => format!("{v:?}"),
                Err(e) => format!("error: {e}"),
            },
            Err(e) => format!("error: {e}"),
        };
        assert!(
            Instant::now() < deadline,
            "{sql}: wanted {want} within {ARRIVAL:?}, last got {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the counter `name` for `front_end="ilp_tcp"` in `/metrics`.
async fn ilp_counter(s: &Server, name: &str) -> f64 {
    let r = reqwest::Client::new()
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status().as_u16(), 200);
    let body = r.text().await.expect("metrics body");
    let prefix = format!("{name}{{");
    body.lines()
        .find(|l| l.starts_with(&prefix) && l.contains("front_end=\"ilp_tcp\""))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}{{front_end=\"ilp_tcp\"}} in /metrics:\n{body}"))
}

/// Waits until the ilp_tcp counter `name` is `want`; fails after [`ARRIVAL`] with its value.
async fn wait_counter(s: &Server, name: &str, want: f64) {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let got = ilp_counter(s, name).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{{front_end=\"ilp_tcp\"}}: wanted {want} within {ARRIVAL:?}, got {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const REJECTED: &str = "eddy_ingest_rejected_rows_total";
const ROWS: &str = "eddy_ingest_rows_total";

/// Asserts that the server has not closed `stream`: a read neither ends (EOF) nor fails, it
/// waits (the server never sends anything).
async fn assert_open(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await {
        Err(_) => {}
        Ok(Ok(0)) => panic!("the server closed the connection"),
        Ok(Ok(n)) => panic!("the server sent {n} bytes"),
        Ok(Err(e)) => panic!("the connection failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_split_anywhere_across_reads_all_arrive() {
    let dir = data_dir();
    let (s, addr) = start(dir.path());
    let body: String = (0..10_000i64)
        .map(|i| format!("split,host=h{} v={i}i {}\n", i % 10, T0 + i * 1_000_000_000))
        .collect();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // 7,919 bytes at a time (a prime: the cuts fall anywhere in a line), with pauses so the
    // server reads them separately.
    for chunk in body.as_bytes().chunks(7_919) {
        stream.write_all(chunk).await.expect("write a chunk");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stream.shutdown().await.expect("shut down the write half");
    let c = s.pg().await;
    wait_for(&c, "SELECT count(*) FROM split", 10_000).await;
    let row = c
        .query_one(
            "SELECT count(*), sum(v), count(DISTINCT host), min(v), max(v) FROM split",
            &[],
        )
        .await
        .expect("query split");
    assert_eq!(row.get::<_, i64>(0), 10_000);
    assert_eq!(row.get::<_, i64>(1), 49_995_000);
    assert_eq!(row.get::<_, i64>(2), 10);
    assert_eq!(row.get::<_, i64>(3), 0);
    assert_eq!(row.get::<_, i64>(4), 9_999);
    // Each line at its own timestamp, in nanoseconds.
    let t: i64 = c
        .query_one("SELECT CAST(time AS BIGINT) FROM split WHERE v = 1234", &[])
        .await
        .expect("query a row's time")
        .get(0);
    assert_eq!(t, T0 + 1_234_000_000_000);
    wait_counter(&s, ROWS, 10_000.0).await;
    assert_eq!(ilp_counter(&s, REJECTED).await, 0.0);
    // The server closed its side after the producer's end of stream.
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(ARRIVAL, stream.read(&mut byte))
        .await
        .expect("the server closes the connection")
        .expect("read the end of the connection");
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_skipped_and_the_connection_stays_open() {
    let dir = data_dir();
    let (s, addr) = start(dir.path());
    let c = s.pg().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"t v=1 1000\ngood,host=a v=1i 1000\n")
        .await
        .expect("write good lines");
    // Written while the connection stays open: the producer does not have to close it.
    wait_for(&c, "SELECT count(*) FROM good", 1).await;
    wait_for(&c, "SELECT count(*) FROM t", 1).await;

    // A line without fields and a type conflict (t.v is a float), between good lines.
    stream
        .write_all(b"bad line no fields\nt v=\"str\" 2000\ngood,host=a v=2i 2000\n")
        .await
        .expect("write bad and good lines");
    wait_for(&c, "SELECT count(*) FROM good", 2).await;
    wait_counter(&s, REJECTED, 2.0).await;
    assert_open(&mut stream).await;

    // The same connection goes on taking lines.
    stream
        .write_all(b"good,host=a v=3i 3000\ngood,host=b v=4i 3000\n")
        .await
        .expect("write after the bad lines");
    wait_for(&c, "SELECT count(*) FROM good", 4).await;
    let row = c
        .query_one("SELECT sum(v), count(DISTINCT host) FROM good", &[])
        .await
        .expect("query good");
    assert_eq!(row.get::<_, i64>(0), 10);
    assert_eq!(row.get::<_, i64>(1), 2);
    let rows = c
        .query("SELECT CAST(time AS BIGINT), v FROM t", &[])
        .await
        .expect("query t");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 1000);
    assert_eq!(rows[0].get::<_, f64>(1), 1.0);
    assert_open(&mut stream).await;
    // t: 1, good: 4.
    wait_counter(&s, ROWS, 5.0).await;
    assert_eq!(ilp_counter(&s, REJECTED).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_cut_off_by_a_disconnect_is_dropped() {
    let dir = data_dir();
    let (s, addr) = start(dir.path());
    let c = s.pg().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"m,host=a v=1 1000\nm,host=a v=2 2000\nm,host=a v=")
        .await
        .expect("write");
    drop(stream);
    wait_for(&c, "SELECT count(*) FROM m", 2).await;
    // The truncated line is counted as rejected once the server has seen the end.
    wait_counter(&s, REJECTED, 1.0).await;
    let rows = c
        .query("SELECT CAST(time AS BIGINT) AS t, v FROM m ORDER BY t", &[])
        .await
        .expect("query m");
    let got: Vec<(i64, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1000, 1.0), (2000, 2.0)]);

    // The listener still takes new connections.
    let mut stream = TcpStream::connect(addr).await.expect("connect again");
    stream
        .write_all(b"m,host=a v=3 3000\n")
        .await
        .expect("write again");
    stream.shutdown().await.expect("shut down the write half");
    wait_for(&c, "SELECT count(*) FROM m", 3).await;
    let sum: f64 = c
        .query_one("SELECT sum(v) FROM m", &[])
        .await
        .expect("sum m")
        .get(0);
    assert_eq!(sum, 6.0);
    assert_eq!(ilp_counter(&s, REJECTED).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_too_long_is_skipped_and_the_next_one_written() {
    let dir = data_dir();
    let (s, addr) = start(dir.path());
    let c = s.pg().await;
    let mut body = b"pre_long,host=a v=5i 1000\ntoo_long v=\"".to_vec();
    body.extend(std::iter::repeat_n(b'x', eddy_ingest::LINE_BYTES_MAX + 10));
    body.extend_from_slice(b"\" 1000\npost_long,host=a v=7i 1000\n");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(&body).await.expect("write");
    wait_for(&c, "SELECT sum(v) FROM post_long", 7).await;
    wait_for(&c, "SELECT sum(v) FROM pre_long", 5).await;
    wait_counter(&s, REJECTED, 1.0).await;
    // The table of the long line was never created.
    let long: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'too_long'",
            &[],
        )
        .await
        .expect("query the catalog")
        .get(0);
    assert_eq!(long, 0);
    // And the connection goes on.
    assert_open(&mut stream).await;
    stream
        .write_all(b"post_long,host=b v=8i 1000\n")
        .await
        .expect("write after");
    wait_for(&c, "SELECT sum(v) FROM post_long", 15).await;
    wait_counter(&s, ROWS, 3.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_all_arrive() {
    let dir = data_dir();
    let (s, addr) = start(dir.path());
    let producers: Vec<_> = (0..8)
        .map(|k| {
            tokio::spawn(async move {
                let body: String = (0..2_000i64)
                    .map(|i| format!("conc,conn=c{k} v={i}i {}\n", T0 + i))
                    .collect();
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                for chunk in body.as_bytes().chunks(4_096) {
                    stream.write_all(chunk).await.expect("write");
                }
                stream.shutdown().await.expect("shut down the write half");
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer");
    }
    let c = s.pg().await;
    wait_for(&c, "SELECT count(*) FROM conc", 16_000).await;
    let rows = c
        .query(
            "SELECT conn, count(*), sum(v) FROM conc GROUP BY conn ORDER BY conn",
            &[],
        )
        .await
        .expect("query conc");
    let got: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want: Vec<(String, i64, i64)> = (0..8)
        .map(|k| (format!("c{k}"), 2_000, 1_999_000))
        .collect();
    assert_eq!(got, want);
    wait_counter(&s, ROWS, 16_000.0).await;
    assert_eq!(ilp_counter(&s, REJECTED).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_producers_and_keeps_their_rows() {
    let dir = data_dir();
    let (mut s, addr) = start(dir.path());
    let c = s.pg().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"idle,host=a v=1i 1000\nidle,host=a v=2i 2000\n")
        .await
        .expect("write");
    wait_for(&c, "SELECT count(*) FROM idle", 2).await;
    drop(c);
    // A producer that keeps its connection open does not hold shutdown up.
    assert_eq!(s.stop(), Some(0), "SIGTERM must stop the server cleanly");
    let mut byte = [0u8; 1];
    match tokio::time::timeout(ARRIVAL, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("the server sent {n} bytes"),
        Err(_) => panic!("the connection is still open after shutdown"),
    }
    s.restart();
    let c = s.pg().await;
    let sum: i64 = c
        .query_one("SELECT sum(v) FROM idle", &[])
        .await
        .expect("sum idle")
        .get(0);
    assert_eq!(sum, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_beyond_loopback_needs_the_allow_remote_flag() {
    let dir = data_dir();
    let anywhere = format!("0.0.0.0:{}", free_port());
    let err = refused_with(dir.path(), &["--ilp-tcp-addr", anywhere.as_str()]);
    assert!(
        err.contains(&format!(
            "refusing to listen for line protocol over TCP on {anywhere}"
        )) && err.contains("no authentication")
            && err.contains("--ilp-tcp-allow-remote"),
        "{err}"
    );

    let port = free_port();
    let anywhere = format!("0.0.0.0:{port}");
    let s = Server::start_with(
        dir.path(),
        &[
            "--ilp-tcp-addr",
            anywhere.as_str(),
            "--ilp-tcp-allow-remote",
        ],
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(b"remote,host=a v=1i 1000\n")
        .await
        .expect("write");
    stream.shutdown().await.expect("shut down the write half");
    let c = s.pg().await;
    wait_for(&c, "SELECT count(*) FROM remote", 1).await;
}
