//! Connections that do not log in, and running out of file descriptors: idle sockets take no
//! connection slot and are closed after `pg_startup_packet_timeout_ms`, a client stuck in
//! authentication is closed after `pg_authentication_timeout_ms`, the limit on connections
//! still logging in sheds a flood at once, and an accept loop out of file descriptors backs
//! off instead of spinning.

use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Server, data_dir};
use crate::pg_raw::{msg, startup};

/// Opens `n` TCP connections to `port` that send nothing.
async fn silent(port: u16, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("open a TCP connection"),
        );
    }
    out
}

/// Whether the server still holds `socket` open: nothing (not even end of file) arrives on
/// it for a while.
async fn still_open(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buf))
        .await
        .is_err()
}

/// Reads until the server closes `socket` (end of file, or a reset), for at most `limit`;
/// panics if it stays open that long.
async fn wait_closed(socket: &mut TcpStream, limit: Duration) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept the connection open for {limit:?}"
    );
}

/// A tokio-postgres login with `params` (user, password).
async fn login(port: u16, params: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} dbname=eddy {params}"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Logs in and runs a query, retrying for up to 30 s while the server frees what closed
/// connections held (it does so asynchronously).
async fn login_and_query(port: u16, params: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(30), async {
            let c = login(port, params).await?;
            c.query_one("SELECT 41::bigint + 1", &[])
                .await
                .map(|r| r.get::<_, i64>(0))
        })
        .await;
        match attempt {
            Ok(Ok(n)) => {
                assert_eq!(n, 42);
                return;
            }
            Ok(Err(e)) => {
                assert!(
                    Instant::now() < deadline,
                    "could not log in and query within 30 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => panic!("a login hung for 30 s"),
        }
    }
}

/// The SQLSTATE of a failed login.
fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_take_no_slot() {
    let dir = data_dir();
    // The idle sockets stay open for the whole test: nothing here depends on timing.
    let s = Server::start_with(
        dir.path(),
        &[
            "--pg-connections-max",
            "8",
            "--pg-startup-packet-timeout-ms",
            "60000",
        ],
    );
    // Three times the connection limit in idle sockets (within the 4 x limit that may be
    // logging in at once).
    let mut idle = silent(s.pg, 24).await;
    // All 8 slots are still there for clients that log in.
    let mut clients = Vec::new();
    for i in 0..8 {
        let c = login(s.pg, "user=eddy")
            .await
            .unwrap_or_else(|e| panic!("login {i} with 24 idle sockets open: {e}"));
        let n: i64 = c.query_one("SELECT 7::bigint", &[]).await.unwrap().get(0);
        assert_eq!(n, 7);
        clients.push(c);
    }
    // The ninth is refused as before, with a reason.
    let e = match login(s.pg, "user=eddy").await {
        Ok(_) => panic!("a ninth client logged in over pg_connections_max = 8"),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&e), "53300", "{e}");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("too many clients"), "{e}: {message}");
    // A cancel request needs no slot: with all of them taken it still stops a running query.
    let long = "SELECT count(*) FROM generate_series(1, 100000000000) AS t(x) WHERE x % 7 = 3";
    let token = clients[0].cancel_token();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let err = clients[0]
        .simple_query(long)
        .await
        .expect_err("the query was cancelled");
    cancel.await.unwrap().unwrap();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
    // The idle sockets were open all along.
    for (i, socket) in idle.iter_mut().enumerate() {
        assert!(still_open(socket).await, "idle socket {i} was closed early");
    }
    // A client that leaves gives its slot back.
    clients.pop();
    login_and_query(s.pg, "user=eddy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_startup_packet_timeout() {
    let dir = data_dir();
    let s = Server::start_with(
        dir.path(),
        &[
            "--pg-connections-max",
            "8",
            "--pg-startup-packet-timeout-ms",
            "1000",
        ],
    );
    let opened = Instant::now();
    let mut idle = silent(s.pg, 20).await;
    // Without the start-up timeout, pgwire's own (60 s) would hold them past this bound.
    for socket in idle.iter_mut() {
        wait_closed(socket, Duration::from_secs(30)).await;
    }
    // Never before the timeout: the server accepted each one after it was opened.
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "idle sockets closed after {:?}, before the 1 s timeout",
        opened.elapsed()
    );
    // What they held is free again.
    login_and_query(s.pg, "user=eddy").await;
    // A client that sends its start-up message in time is not affected.
    let mut raw = TcpStream::connect(("127.0.0.1", s.pg)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.write_all(&startup("eddy")).await.unwrap();
    let tag = raw
        .read_u8()
        .await
        .expect("an answer to the start-up message");
    assert_eq!(tag, b'R', "authentication message expected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_that_do_not_finish_are_closed_after_the_authentication_timeout() {
    let dir = data_dir();
    let s = Server::start_with(
        dir.path(),
        &[
            "--pg-user",
            "alice:s3cret",
            "--pg-authentication-timeout-ms",
            "2000",
        ],
    );
    let opened = Instant::now();
    // Sends its start-up message, gets the SCRAM request, and never answers it.
    let mut stuck = TcpStream::connect(("127.0.0.1", s.pg)).await.unwrap();
    stuck.write_all(&startup("alice")).await.unwrap();
    let tag = stuck.read_u8().await.expect("the password request");
    assert_eq!(tag, b'R', "an authentication request expected");
    // Sends nothing at all: the authentication timeout is shorter than the start-up packet
    // timeout (5 s by default), so it applies.
    let mut idle = TcpStream::connect(("127.0.0.1", s.pg)).await.unwrap();
    // A client that logs in is not affected by the timeout afterwards.
    let alice = login(s.pg, "user=alice password=s3cret")
        .await
        .expect("alice logs in");
    wait_closed(&mut stuck, Duration::from_secs(30)).await;
    assert!(
        opened.elapsed() >= Duration::from_millis(1900),
        "closed after {:?}, before the 2 s authentication timeout",
        opened.elapsed()
    );
    wait_closed(&mut idle, Duration::from_secs(30)).await;
    let since = opened.elapsed();
    if since < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_secs(3) - since).await;
    }
    let n: i64 = alice
        .query_one("SELECT 3::bigint", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    // Wrong passwords still get their error.
    let e = match login(s.pg, "user=alice password=wrong").await {
        Ok(_) => panic!("a wrong password was accepted"),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&e), "28P01", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_login_queue_are_closed_at_once() {
    let dir = data_dir();
    // One slot, so at most 4 connections may be logging in at once.
    let s = Server::start_with(
        dir.path(),
        &[
            "--pg-connections-max",
            "1",
            "--pg-startup-packet-timeout-ms",
            "60000",
        ],
    );
    // The harness's readiness probes connect and close at once; let the server finish them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut queue = silent(s.pg, 4).await;
    // The fifth is closed as soon as it is accepted, not after the 60 s timeout.
    let mut fifth = TcpStream::connect(("127.0.0.1", s.pg)).await.unwrap();
    wait_closed(&mut fifth, Duration::from_secs(30)).await;
    // It was the one shed: the four before it are still waiting.
    for (i, socket) in queue.iter_mut().enumerate() {
        assert!(still_open(socket).await, "queued socket {i} was closed");
    }
    // Once the queue has gone, clients log in again.
    drop(queue);
    login_and_query(s.pg, "user=eddy").await;
}

/// File descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// User plus system CPU time process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which may hold spaces) start at field 3, the state;
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// Clock ticks per second of /proc/PID/stat.
fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_backs_off_instead_of_spinning() {
    let dir = data_dir();
    // Idle sockets stay open (and hold their descriptors) for the whole test.
    let eddy = Server::start_logged(
        &dir.path().join("data"),
        &["--pg-startup-packet-timeout-ms", "60000"],
        &dir.path().join("eddy.log"),
    );
    // Let start-up settle, then leave the server only a few descriptors to spare.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let limit = open_fds(eddy.pid()) + 8;
    let st = Command::new("prlimit")
        .arg("--pid")
        .arg(eddy.pid().to_string())
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(st.success(), "prlimit failed");
    let limited_at = Instant::now();
    // Fewer than `limit` descriptors can be allocated below it, so at least 64 of these
    // cannot be accepted; they wait in the listen queue while accept fails with EMFILE.
    let idle = silent(eddy.pg, limit + 64).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !eddy
        .log_text()
        .contains("cannot accept Postgres connections")
    {
        assert!(
            Instant::now() < deadline,
            "no accept failure was logged within 30 s: {}",
            eddy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It is EMFILE (os error 24, "Too many open files").
    assert!(
        eddy.log_text().contains("os error 24"),
        "{}",
        eddy.log_text()
    );
    // While accept keeps failing, the server is nearly idle: a spinning accept loop would
    // use a whole core (2 s of CPU in these 2 s).
    let ticks = clock_ticks_per_second();
    let before = cpu_ticks(eddy.pid());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(eddy.pid()) - before;
    assert!(
        used * 4 < ticks * 2,
        "the server used {used} clock ticks ({ticks}/s) of CPU in 2 s while out of descriptors"
    );
    // And its log is not flooded: one warning per 10 s at most.
    let log = eddy.log_text();
    let warnings = log.matches("cannot accept Postgres connections").count() as u64;
    let allowed = 1 + limited_at.elapsed().as_secs() / 10;
    assert!(
        warnings <= allowed,
        "{warnings} accept warnings in {:?}: {log}",
        limited_at.elapsed()
    );
    assert!(log.len() < 64 * 1024, "the log grew to {} bytes", log.len());
    // Once the idle sockets go, descriptors are free again and clients log in.
    drop(idle);
    login_and_query(eddy.pg, "user=eddy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_runs_for_a_client_whose_login_failed() {
    let dir = data_dir();
    let s = Server::start_with(
        dir.path(),
        &["--pg-user", "alice:s3cret", "--pg-auth", "password"],
    );
    let mut raw = TcpStream::connect(("127.0.0.1", s.pg)).await.unwrap();
    raw.write_all(&startup("alice")).await.unwrap();
    assert_eq!(raw.read_u8().await.unwrap(), b'R', "a password request");
    // A wrong password, then statements as if the login had worked: the simple protocol and
    // the extended one.
    let mut sneak = msg(b'p', b"wrong\0");
    sneak.extend(msg(
        b'Q',
        b"CREATE TABLE sneaky (time TIMESTAMP NOT NULL, PRIMARY KEY (time))\0",
    ));
    sneak.extend(msg(
        b'P',
        b"\0CREATE TABLE sneaky2 (time TIMESTAMP NOT NULL, PRIMARY KEY (time))\0\0\0",
    ));
    sneak.extend(msg(b'B', b"\0\0\0\0\0\0\0\0"));
    sneak.extend(msg(b'E', b"\0\0\0\0\0"));
    sneak.extend(msg(b'S', b""));
    // The server may close the socket before reading all of it.
    let _ = raw.write_all(&sneak).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await;
    assert!(!answer.is_empty(), "no answer to a wrong password");
    assert!(
        String::from_utf8_lossy(&answer).contains("28P01"),
        "the wrong password was not reported: {answer:?}"
    );
    let alice = login(s.pg, "user=alice password=s3cret")
        .await
        .expect("alice logs in");
    let rows = alice
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'sneaky%'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        rows.is_empty(),
        "a client that failed to log in created a table"
    );
}
