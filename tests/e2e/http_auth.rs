//! HTTP authentication: with users configured, writes need a user's password, sent as InfluxDB
//! clients send it (Basic, `Token`, `Bearer`, or `u`/`p` on `/write`); `/health` and `/ping`
//! answer anyone; and the HTTP API may then listen beyond loopback.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Server, data_dir, free_port};

const V2: &str = "/api/v2/write?bucket=eddy&precision=ns";

/// Posts `body` to `path` with an optional `Authorization` header; returns the status, the
/// `WWW-Authenticate` header and the body.
async fn post(
    s: &Server,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, Option<String>, String) {
    let mut r = reqwest::Client::new()
        .post(s.url(path))
        .body(body.to_string());
    if let Some(a) = authorization {
        r = r.header("Authorization", a);
    }
    let r = r.send().await.expect("http request");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, challenge, r.text().await.unwrap_or_default())
}

fn assert_unauthorized(status: u16, challenge: Option<String>, body: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge.as_deref(), Some("Basic realm=\"eddy\""));
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON error");
    assert_eq!(json["code"], "unauthorized", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_a_configured_users_password() {
    let dir = data_dir();
    // bob's password contains ':', as a password may.
    let s = Server::start_with(
        dir.path(),
        &["--pg-user", "alice:s3cret", "--user", "bob:0ther:pw"],
    );

    // No credentials, wrong ones, an unknown scheme.
    let (status, challenge, body) = post(&s, V2, None, "a v=1 1").await;
    assert_unauthorized(status, challenge, &body);
    for wrong in [
        "Token wrong",
        "Bearer wrong",
        "Token alice:wrong",
        "Token bob:s3cret",
        "Basic YWxpY2U6d3Jvbmc=", // alice:wrong
        "Basic not-base64!",
        "Digest username=\"alice\"",
    ] {
        let (status, challenge, body) = post(&s, V2, Some(wrong), "a v=1 1").await;
        assert_unauthorized(status, challenge, &body);
    }
    let r = reqwest::Client::new()
        .post(s.url(V2))
        .basic_auth("alice", Some("wrong"))
        .body("a v=1 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (status, challenge, body) =
        post(&s, "/write?db=eddy&u=alice&p=wrong", None, "a v=1 1").await;
    assert_unauthorized(status, challenge, &body);
    let (status, challenge, body) = post(&s, "/api/v3/write_lp?db=eddy", None, "a v=1 1").await;
    assert_unauthorized(status, challenge, &body);

    // Every form clients use, each writing its own row.
    let accepted = [
        (V2, Some("Token s3cret")),
        (V2, Some("Token alice:s3cret")),
        (V2, Some("Token 0ther:pw")),
        (V2, Some("Token bob:0ther:pw")),
        ("/api/v3/write_lp?db=eddy", Some("Bearer s3cret")),
        ("/api/v3/write_lp?db=eddy", Some("Bearer bob:0ther:pw")),
        ("/write?db=eddy", Some("Basic YWxpY2U6czNjcmV0")), // alice:s3cret
        ("/write?db=eddy&u=bob&p=0ther%3Apw", None),
    ];
    for (i, (path, authorization)) in accepted.iter().enumerate() {
        let (status, _, body) =
            post(&s, path, *authorization, &format!("a,n=n{i} v=1 {i}\n")).await;
        assert_eq!(status, 204, "{path} {authorization:?}: {body}");
    }
    let r = reqwest::Client::new()
        .post(s.url(V2))
        .basic_auth("bob", Some("0ther:pw"))
        .body("a,n=basic v=1 100\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    // /health and /ping need nothing.
    let health = reqwest::get(s.url("/health")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ping = reqwest::get(s.url("/ping")).await.unwrap();
    assert_eq!(ping.status().as_u16(), 204);

    // The rows are there, read by the same user over the Postgres protocol.
    let (c, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=alice password=s3cret dbname=eddy",
            s.pg
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("log in over the postgres protocol");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let n: i64 = c
        .query_one("SELECT count(*) FROM a", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, accepted.len() + 1);
}

/// A server process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listens_beyond_loopback_only_with_users() {
    let dir = data_dir();
    let (http, pg) = (free_port(), free_port());
    let serve = |users: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
        cmd.args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--http-addr", &format!("0.0.0.0:{http}")])
            .args(["--pg-addr", &format!("127.0.0.1:{pg}")])
            .args(["--flight-addr", "127.0.0.1:0"])
            .args(users)
            .env("RUST_LOG", "warn");
        cmd
    };

    // Without users: refused at start-up.
    let out = serve(&[]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen for HTTP on 0.0.0.0")
            && stderr.contains("requires authentication"),
        "{stderr}"
    );

    // With a user: it listens on every address and asks for the password.
    let child = serve(&["--pg-user", "alice:s3cret"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        if let Ok(Some(status)) = running.0.try_wait() {
            panic!("eddy exited during start-up: {status}");
        }
        assert!(Instant::now() < deadline, "eddy did not start within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("http://127.0.0.1:{http}{V2}");
    let r = reqwest::Client::new()
        .post(&url)
        .body("b v=1 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = reqwest::Client::new()
        .post(&url)
        .header("Authorization", "Token s3cret")
        .body("b v=1 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(running.0.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = running.0.try_wait() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "eddy did not stop within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
