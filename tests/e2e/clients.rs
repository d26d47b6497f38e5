//! Real PostgreSQL clients against Eddy: psycopg 3, SQLAlchemy (2.x and 1.4) over psycopg2,
//! asyncpg, pgjdbc, psqlODBC and Apache Superset. Each test starts a server and runs one program
//! from `tests/clients/` with `EDDY_PG_PORT` and `EDDY_HTTP_PORT` set; the program asserts
//! answers (values and types) and exits non-zero on the first wrong one.
//! `scripts/install-test-deps.sh` installs the clients: a venv for most, SQLAlchemy 1.4 in a
//! directory of its own (put first on `PYTHONPATH`), and Superset in a venv of its own.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Server, data_dir};

/// How long one client program may run before it is killed (a hung protocol exchange).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

pub(crate) fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The Python with the clients installed: `EDDY_PYTHON`, else the venv that
/// `scripts/install-test-deps.sh` makes, else `python3`.
pub(crate) fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EDDY_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = std::env::var_os("EDDY_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/eddy-venv")));
    if let Some(py) = venv.map(|v| v.join("bin/python")).filter(|p| p.exists()) {
        return py;
    }
    PathBuf::from("python3")
}

/// `$name` if set, else `~/.cache/<default>`: where scripts/install-test-deps.sh puts things.
fn cache_dir(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache").join(default)))
        .unwrap_or_else(|| panic!("set {name} or HOME"))
}

/// The Python of the Superset venv (`EDDY_SUPERSET_VENV`, else `~/.cache/eddy-superset-venv`).
fn superset_python() -> PathBuf {
    let py = cache_dir("EDDY_SUPERSET_VENV", "eddy-superset-venv").join("bin/python");
    assert!(
        py.exists(),
        "no Superset venv at {} (run scripts/install-test-deps.sh)",
        py.display()
    );
    py
}

/// The directory holding SQLAlchemy 1.4 (`EDDY_SQLA14`, else `~/.cache/eddy-venv-sqla14`).
fn sqlalchemy14_dir() -> PathBuf {
    let dir = cache_dir("EDDY_SQLA14", "eddy-venv-sqla14");
    assert!(
        dir.join("sqlalchemy").is_dir(),
        "no SQLAlchemy 1.4 in {} (run scripts/install-test-deps.sh)",
        dir.display()
    );
    dir
}

/// Runs `cmd` to completion (killing it after `CLIENT_TIMEOUT`) and returns its stdout; panics
/// with the exit status, stdout and stderr unless it succeeded.
pub(crate) fn run(what: &str, cmd: &mut Command) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{what}: cannot start {cmd:?}: {e} (run scripts/install-test-deps.sh)")
        });
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let (status, timed_out) = loop {
        if let Some(st) = child.try_wait().expect("wait for client") {
            break (Some(st), false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let ok = status.is_some_and(|s| s.success());
    if !ok {
        let why = if timed_out {
            format!("timed out after {} s", CLIENT_TIMEOUT.as_secs())
        } else {
            format!("exited with {}", status.expect("status"))
        };
        panic!(
            "{what} {why}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}--- end of {what} ---"
        );
    }
    stdout
}

/// Sets the server's ports (and quiet, unbuffered Python) in a client's environment.
pub(crate) fn with_server<'a>(cmd: &'a mut Command, s: &Server) -> &'a mut Command {
    cmd.env("EDDY_PG_PORT", s.pg.to_string())
        .env("EDDY_FLIGHT_PORT", s.flight.to_string())
        .env("EDDY_HTTP_PORT", s.http.to_string())
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
}

/// Starts a fresh server and runs `tests/clients/<script>` with the test Python.
pub(crate) fn run_python_client(script: &str) -> String {
    run_python_client_with(script, &python(), &[])
}

/// Starts a fresh server and runs `tests/clients/<script>` with `python` and extra environment.
fn run_python_client_with(script: &str, python: &Path, env: &[(&str, &OsStr)]) -> String {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join(script));
    for &(k, v) in env {
        cmd.env(k, v);
    }
    let out = run(script, with_server(&mut cmd, &s));
    assert!(
        out.contains("all checks passed"),
        "{script} did not finish its checks:\n{out}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3() {
    run_python_client("psycopg3_test.py");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg2_sqlalchemy() {
    run_python_client_with(
        "psycopg2_sqlalchemy_test.py",
        &python(),
        &[("EDDY_EXPECT_SQLALCHEMY", OsStr::new("2"))],
    );
}

/// The same inspector and query checks under SQLAlchemy 1.4 (what Superset and older
/// applications run), its directory first on `PYTHONPATH`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg2_sqlalchemy14() {
    let sa14 = sqlalchemy14_dir();
    run_python_client_with(
        "psycopg2_sqlalchemy_test.py",
        &python(),
        &[
            ("PYTHONPATH", sa14.as_os_str()),
            ("EDDY_EXPECT_SQLALCHEMY", OsStr::new("1.4")),
        ],
    );
}

/// Apache Superset 6.1's own code (engine spec, dataset sync, chart queries at every time
/// grain, filters) against Eddy, from its own venv.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superset() {
    run_python_client_with("superset_test.py", &superset_python(), &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg() {
    run_python_client("asyncpg_test.py");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odbc() {
    run_python_client("odbc_test.py");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc() {
    let jar = std::env::var_os("EDDY_PGJDBC_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java/postgresql.jar"));
    assert!(
        jar.exists(),
        "pgjdbc not found at {} (run scripts/install-test-deps.sh)",
        jar.display()
    );
    let classes = tempfile::tempdir().expect("tempdir");
    run(
        "javac EddyJdbcTest.java",
        Command::new("javac")
            .arg("-d")
            .arg(classes.path())
            .arg("-cp")
            .arg(&jar)
            .arg(clients_dir().join("jdbc/EddyJdbcTest.java")),
    );

    let dir = data_dir();
    let s = Server::start(dir.path());
    let classpath = std::env::join_paths([classes.path(), jar.as_path()]).expect("classpath");
    let out = run(
        "EddyJdbcTest",
        with_server(
            Command::new("java")
                .arg("-cp")
                .arg(classpath)
                .arg("EddyJdbcTest"),
            &s,
        ),
    );
    assert!(
        out.contains("all checks passed"),
        "EddyJdbcTest did not finish its checks:\n{out}"
    );
}
