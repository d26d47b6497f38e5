//! Real Arrow Flight clients against Eddy: pyarrow.flight (plain Flight), ADBC's Flight SQL
//! driver and polars over it. Each test starts a server and runs one program from
//! `tests/clients/` with `EDDY_FLIGHT_PORT` set (and, for the authenticated runs, a user, its
//! password and the server's TLS certificate); the program asserts answers and exits non-zero
//! on the first wrong one. `scripts/install-test-deps.sh` installs the clients.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::clients::{clients_dir, python, run, with_server};
use crate::common::{Server, data_dir};

/// Runs `tests/clients/<script>` against `s` with extra environment, and checks it finished.
fn run_against(s: &Server, script: &str, env: &[(&str, &OsStr)]) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(clients_dir().join(script));
    for &(k, v) in env {
        cmd.env(k, v);
    }
    let out = run(script, with_server(&mut cmd, s));
    assert!(
        out.contains("all checks passed"),
        "{script} did not finish its checks:\n{out}"
    );
    out
}

/// A self-signed certificate for `localhost` and its key, written into `dir`.
fn self_signed(dir: &Path) -> (String, String) {
    let cert = dir.join("flight-cert.pem");
    let key = dir.join("flight-key.pem");
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(st.success(), "openssl could not make a certificate");
    (
        cert.to_str().expect("utf-8 path").to_string(),
        key.to_str().expect("utf-8 path").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_flight() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    run_against(&s, "flight_pyarrow.py", &[]);
}

/// With users configured and TLS on: pyarrow logs in with the basic-token handshake over TLS,
/// and a wrong password is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_flight_with_a_password_over_tls() {
    let dir = data_dir();
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(certs.path());
    let s = Server::start_with(
        dir.path(),
        &[
            "--pg-user",
            "alice:s3cret",
            "--pg-tls-cert",
            &cert,
            "--pg-tls-key",
            &key,
        ],
    );
    run_against(
        &s,
        "flight_pyarrow.py",
        &[
            ("EDDY_FLIGHT_USER", OsStr::new("alice")),
            ("EDDY_FLIGHT_PASSWORD", OsStr::new("s3cret")),
            ("EDDY_FLIGHT_TLS_CERT", OsStr::new(&cert)),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_flight_sql() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    run_against(&s, "flight_adbc.py", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_flight_sql_with_a_password() {
    let dir = data_dir();
    let s = Server::start_with(dir.path(), &["--pg-user", "alice:s3cret"]);
    run_against(
        &s,
        "flight_adbc.py",
        &[
            ("EDDY_FLIGHT_USER", OsStr::new("alice")),
            ("EDDY_FLIGHT_PASSWORD", OsStr::new("s3cret")),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polars_over_adbc() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    run_against(&s, "flight_polars.py", &[]);
}
