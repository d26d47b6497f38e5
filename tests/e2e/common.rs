//! Test harness: starts the real `eddy` binary on free loopback ports with its own data
//! directory, and talks to it over HTTP and the Postgres wire protocol.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server process.
pub struct Server {
    child: Option<Child>,
    /// Data directory.
    pub dir: PathBuf,
    /// HTTP port.
    pub http: u16,
    /// Postgres port.
    pub pg: u16,
    /// Arrow Flight SQL port.
    pub flight: u16,
    extra: Vec<String>,
    cwd: Option<PathBuf>,
    /// File the server's stderr is appended to (every start), instead of the test's stderr.
    log: Option<PathBuf>,
    /// `RUST_LOG` for the server; `None` leaves it unset (Eddy's default level).
    log_filter: Option<String>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The port of a `--flight-addr` among `extra` flags, if one is given.
fn flight_port_in(extra: &[&str]) -> Option<u16> {
    let i = extra.iter().position(|a| *a == "--flight-addr")?;
    extra
        .get(i + 1)?
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.port())
}

/// `--flight-addr 127.0.0.1:<port>`, unless `extra` names a Flight address of its own.
fn flight_arg(extra: &[impl AsRef<str>], port: u16) -> Vec<String> {
    if extra.iter().any(|a| a.as_ref() == "--flight-addr") {
        return Vec::new();
    }
    vec!["--flight-addr".to_string(), format!("127.0.0.1:{port}")]
}

impl Server {
    /// A server not yet started, logging at `warn` to the test's stderr.
    fn new(dir: &Path, extra: &[&str]) -> Server {
        Server {
            child: None,
            dir: dir.to_path_buf(),
            http: free_port(),
            pg: free_port(),
            // Tests run in parallel: each server gets its own Flight port, not the default,
            // unless the test names one.
            flight: flight_port_in(extra).unwrap_or_else(free_port),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            cwd: None,
            log: None,
            log_filter: Some("warn".to_string()),
        }
    }

    /// Starts a server on `dir` with extra `serve` flags.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
        let mut s = Server::new(dir, extra);
        s.spawn();
        s
    }

    /// Starts a server on `dir` with extra `serve` flags, appending its stderr (its log, and
    /// any panic message) to `log` on this and every later start.
    pub fn start_logged(dir: &Path, extra: &[&str], log: &Path) -> Server {
        Self::start_logged_at(dir, extra, log, Some("warn"))
    }

    /// Like `start_logged`, with `RUST_LOG` set to `filter` (`None`: Eddy's default level).
    pub fn start_logged_at(dir: &Path, extra: &[&str], log: &Path, filter: Option<&str>) -> Server {
        let mut s = Server::new(dir, extra);
        s.log = Some(log.to_path_buf());
        s.log_filter = filter.map(str::to_string);
        s.spawn();
        s
    }

    /// Starts a server in working directory `cwd` with the default, relative data directory.
    pub fn start_in(cwd: &Path) -> Server {
        let mut s = Server::new(Path::new("eddy-data"), &[]);
        s.cwd = Some(cwd.to_path_buf());
        s.spawn();
        s
    }

    /// Starts a server on `dir` with default settings.
    pub fn start(dir: &Path) -> Server {
        Self::start_with(dir, &[])
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let stderr = match &self.log {
            Some(log) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .expect("open the server log"),
            ),
            None => Stdio::inherit(),
        };
        match &self.log_filter {
            Some(filter) => cmd.env("RUST_LOG", filter),
            None => cmd.env_remove("RUST_LOG"),
        };
        let child = cmd
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{}", self.http))
            .arg("--pg-addr")
            .arg(format!("127.0.0.1:{}", self.pg))
            .args(flight_arg(self.extra.as_slice(), self.flight))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn eddy");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.pg)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.http)).is_ok()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("eddy exited during start-up: {status}: {}", self.log_text());
            }
            assert!(Instant::now() < deadline, "eddy did not start within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM and returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("eddy did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same directory and ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.spawn();
    }

    /// What the server has logged so far (empty unless started with a log file).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| std::fs::read(l).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Panics if the server process died or anything in it panicked (as its log shows).
    pub fn assert_no_panic(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("eddy exited: {status}: {}", self.log_text());
        }
        let log = self.log_text();
        assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    }

    /// Waits up to 10 s for the log to contain `text`.
    pub fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the log does not mention {text:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// Posts line protocol to `/api/v2/write` and returns (status, body).
    pub async fn write_lp(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        self.post(&self.url("/api/v2/write?bucket=eddy&precision=ns"), body)
            .await
    }

    pub async fn post(&self, url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(url)
            .body(body)
            .send()
            .await
            .expect("http request");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// A tokio-postgres connection.
    pub async fn pg(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=eddy dbname=eddy", self.pg),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect over the postgres protocol");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Runs psql (no -A/-t) with `args` and returns its stdout; panics with stderr on failure.
    pub fn psql_out(&self, args: &[&str]) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.pg.to_string(),
                "-U",
                "eddy",
                "-d",
                "eddy",
                "-X",
            ])
            .args(args)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run psql (install postgresql-client)");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `psql -At -c sql` and returns its stdout; panics with stderr on failure.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_out(&["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
    }

    /// Waits until `sql` (one `bigint`) answers `want`, failing with the last answer and the
    /// server's log after `secs`; an error (a table not created yet) counts as no answer.
    pub async fn wait_for(&self, sql: &str, want: i64, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = match self.pg().await.query_one(sql, &[]).await {
                Ok(r) => r.get::<_, i64>(0),
                Err(_) => -1,
            };
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{sql}: still {got} after {secs} s, want {want}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A `cpu` table of three rows and its one-minute continuous aggregate `cpu_1m`: what the
    /// BI tools' catalog tests (Metabase, DBeaver) browse.
    pub fn create_cpu_and_rollup(&self) {
        self.psql(
            "CREATE TABLE cpu (time TIMESTAMP NOT NULL, hostname TEXT, \
             usage_user DOUBLE PRECISION, PRIMARY KEY (hostname, time))",
        );
        self.psql(
            "INSERT INTO cpu VALUES ('2024-01-01T00:00:00', 'host_b', 1.5), \
             ('2024-01-01T00:01:00', 'host_a', 2.5), ('2024-01-01T00:02:00', 'host_b', 3.5)",
        );
        self.psql(
            "CREATE MATERIALIZED VIEW cpu_1m AS SELECT time_bucket('1 minute', time) AS bucket, \
             hostname, avg(usage_user) AS usage FROM cpu GROUP BY 1, 2",
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A fresh temporary data directory.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Runs `eddy gen` and returns its output.
pub fn eddy_gen(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("gen")
        .args(args)
        .output()
        .expect("run eddy gen");
    assert!(
        out.status.success(),
        "eddy gen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `eddy serve` on `dir` and expects it to refuse to start; returns what it printed.
pub fn refused(dir: &Path) -> String {
    refused_with(dir, &[])
}

/// Like `refused`, with extra `serve` flags.
pub fn refused_with(dir: &Path, extra: &[&str]) -> String {
    let log = dir.with_extension("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--pg-addr")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(flight_arg(extra, free_port()))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn eddy");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("eddy started on {} instead of refusing it", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "eddy exited with {status}");
    std::fs::read_to_string(&log).expect("stderr")
}
