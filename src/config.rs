//! Server configuration: command-line flags override `EDDY_*` environment variables, which
//! override `eddy.toml`, which overrides the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// Flags of `eddy serve` (each also readable from an `EDDY_*` variable).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Configuration file (default: ./eddy.toml when it exists).
    #[arg(long, env = "EDDY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./eddy-data].
    #[arg(long, env = "EDDY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP API address [default: 127.0.0.1:8086].
    #[arg(long, env = "EDDY_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Postgres wire protocol address [default: 127.0.0.1:5433].
    #[arg(long, env = "EDDY_PG_ADDR")]
    pub pg_addr: Option<SocketAddr>,
    /// Arrow Flight SQL (gRPC) address [default: 127.0.0.1:8815].
    #[arg(long, env = "EDDY_FLIGHT_ADDR")]
    pub flight_addr: Option<SocketAddr>,
    /// When writes are acknowledged: `always` (fsync first, default) or `interval`.
    #[arg(long, env = "EDDY_WAL_SYNC")]
    pub wal_sync: Option<String>,
    /// With `--wal-sync interval`: fsync period in milliseconds [default: 100].
    #[arg(long, env = "EDDY_WAL_SYNC_INTERVAL_MS")]
    pub wal_sync_interval_ms: Option<u64>,
    /// Memory the memtables may hold before writers wait for flushes [default: 512 MiB].
    #[arg(long, env = "EDDY_MEMTABLE_BYTES_MAX")]
    pub memtable_bytes_max: Option<usize>,
    /// Memtable size that triggers a flush to Parquet [default: 128 MiB].
    #[arg(long, env = "EDDY_MEMTABLE_FLUSH_BYTES")]
    pub memtable_flush_bytes: Option<usize>,
    /// Age of unflushed data that triggers a flush, in milliseconds [default: 300000].
    #[arg(long, env = "EDDY_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Whether the background compactor merges each partition's segments [default: true].
    #[arg(long, env = "EDDY_COMPACTION")]
    pub compaction: Option<bool>,
    /// Time a partition must go without a new segment before compaction merges it into one
    /// segment, in milliseconds [default: 60000].
    #[arg(long, env = "EDDY_COMPACTION_QUIET_MS")]
    pub compaction_quiet_ms: Option<u64>,
    /// Largest HTTP request body, after decompression [default: 64 MiB].
    #[arg(long, env = "EDDY_REQUEST_BYTES_MAX")]
    pub request_bytes_max: Option<usize>,
    /// Memory all HTTP request bodies may hold together; beyond it, 503 [default: 256 MiB].
    #[arg(long, env = "EDDY_HTTP_INFLIGHT_BYTES_MAX")]
    pub http_inflight_bytes_max: Option<usize>,
    /// Most HTTP connections open at once; more wait to be accepted [default: 1024].
    #[arg(long, env = "EDDY_HTTP_CONNECTIONS_MAX")]
    pub http_connections_max: Option<usize>,
    /// Postgres authentication: trust, password, md5 or scram-sha-256 [default: trust, or
    /// scram-sha-256 when users are configured].
    #[arg(long, env = "EDDY_PG_AUTH")]
    pub pg_auth: Option<String>,
    /// A user as NAME:PASSWORD, for Postgres, HTTP and Flight SQL (repeat the flag, or
    /// comma-separate in the variable).
    #[arg(
        long = "pg-user",
        visible_alias = "user",
        env = "EDDY_PG_USERS",
        value_delimiter = ','
    )]
    pub pg_users: Vec<String>,
    /// PEM certificate chain offered to Postgres clients for TLS (with --pg-tls-key); Flight
    /// SQL then speaks TLS only, with the same certificate.
    #[arg(long, env = "EDDY_PG_TLS_CERT")]
    pub pg_tls_cert: Option<PathBuf>,
    /// PEM private key for --pg-tls-cert.
    #[arg(long, env = "EDDY_PG_TLS_KEY")]
    pub pg_tls_key: Option<PathBuf>,
    /// Most Postgres connections logged in (or logging in) at once [default: 256].
    #[arg(long, env = "EDDY_PG_CONNECTIONS_MAX")]
    pub pg_connections_max: Option<usize>,
    /// Milliseconds a new Postgres connection may stay silent before it is closed
    /// [default: 5000].
    #[arg(long, env = "EDDY_PG_STARTUP_PACKET_TIMEOUT_MS")]
    pub pg_startup_packet_timeout_ms: Option<u64>,
    /// Milliseconds a Postgres client may take to log in, at least 1000 [default: 60000].
    #[arg(long, env = "EDDY_PG_AUTHENTICATION_TIMEOUT_MS")]
    pub pg_authentication_timeout_ms: Option<u64>,
    /// Memory all running queries may use together, in bytes [default: 4 GiB].
    #[arg(long, env = "EDDY_QUERY_MEMORY_BYTES_MAX")]
    pub query_memory_bytes_max: Option<usize>,
    /// Memory for the segment summaries that answer latest-row lookups [default: 64 MiB].
    #[arg(long, env = "EDDY_LATEST_CACHE_BYTES")]
    pub latest_cache_bytes: Option<usize>,
    /// Memory for decoded columns of recently scanned segments; 0 turns the cache off
    /// [default: 512 MiB].
    #[arg(long, env = "EDDY_DECODED_CACHE_BYTES")]
    pub decoded_cache_bytes: Option<usize>,
    /// Address for InfluxDB line protocol over plain TCP, newline-delimited [default: off].
    #[arg(long, env = "EDDY_ILP_TCP_ADDR")]
    pub ilp_tcp_addr: Option<SocketAddr>,
    /// Allow --ilp-tcp-addr beyond loopback: line protocol over TCP has no authentication.
    #[arg(
        long,
        env = "EDDY_ILP_TCP_ALLOW_REMOTE",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub ilp_tcp_allow_remote: bool,
}

/// The `eddy.toml` file: the same settings as the flags, in snake case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    http_addr: Option<SocketAddr>,
    pg_addr: Option<SocketAddr>,
    flight_addr: Option<SocketAddr>,
    wal_sync: Option<String>,
    wal_sync_interval_ms: Option<u64>,
    memtable_bytes_max: Option<usize>,
    memtable_flush_bytes: Option<usize>,
    flush_interval_ms: Option<u64>,
    compaction: Option<bool>,
    compaction_quiet_ms: Option<u64>,
    request_bytes_max: Option<usize>,
    http_inflight_bytes_max: Option<usize>,
    http_connections_max: Option<usize>,
    pg_auth: Option<String>,
    #[serde(default, alias = "users")]
    pg_users: Vec<String>,
    pg_tls_cert: Option<PathBuf>,
    pg_tls_key: Option<PathBuf>,
    pg_connections_max: Option<usize>,
    pg_startup_packet_timeout_ms: Option<u64>,
    pg_authentication_timeout_ms: Option<u64>,
    query_memory_bytes_max: Option<usize>,
    latest_cache_bytes: Option<usize>,
    decoded_cache_bytes: Option<usize>,
    ilp_tcp_addr: Option<SocketAddr>,
    ilp_tcp_allow_remote: Option<bool>,
}

/// Default of `query_memory_bytes_max`.
const QUERY_MEMORY_BYTES_MAX: usize = 4 << 30;

/// The settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Storage settings.
    pub storage: eddy_storage::StorageConfig,
    /// HTTP address.
    pub http_addr: SocketAddr,
    /// Postgres address.
    pub pg_addr: SocketAddr,
    /// Arrow Flight SQL address.
    pub flight_addr: SocketAddr,
    /// HTTP settings.
    pub http: eddy_server::http::HttpConfig,
    /// Postgres authentication, TLS and limits.
    pub pg: eddy_server::pg::PgConfig,
    /// Flight SQL users, TLS and limits.
    pub flight: eddy_server::flight::FlightConfig,
    /// Memory all running queries may use together.
    pub query_memory_bytes_max: usize,
    /// Line protocol over plain TCP: its address, `None` (the default) when it is off.
    pub ilp_tcp_addr: Option<SocketAddr>,
    /// Whether `ilp_tcp_addr` may be beyond loopback (the protocol has no authentication).
    pub ilp_tcp_allow_remote: bool,
}

impl Config {
    /// Resolves flags, environment, file and defaults.
    pub fn resolve(args: &ServeArgs) -> Result<Config, String> {
        let file = match &args.config {
            Some(p) => load(p)?,
            None if Path::new("eddy.toml").exists() => load(Path::new("eddy.toml"))?,
            None => FileConfig::default(),
        };
        let pg = pg_config(args, &file)?;
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("eddy-data"));
        let mut storage = eddy_storage::StorageConfig::new(data_dir);
        let sync = args.wal_sync.clone().or(file.wal_sync);
        let interval = args
            .wal_sync_interval_ms
            .or(file.wal_sync_interval_ms)
            .unwrap_or(100);
        storage.wal_sync = match sync.as_deref() {
            None | Some("always") => eddy_storage::WalSync::Always,
            Some("interval") => eddy_storage::WalSync::IntervalMs(interval),
            Some(other) => {
                return Err(format!(
                    "wal_sync = \"{other}\" is not valid: use \"always\" or \"interval\""
                ));
            }
        };
        if let Some(v) = args.memtable_bytes_max.or(file.memtable_bytes_max) {
            storage.memtable_bytes_max = v;
        }
        if let Some(v) = args.memtable_flush_bytes.or(file.memtable_flush_bytes) {
            storage.memtable_flush_bytes = v;
        }
        if let Some(v) = args.flush_interval_ms.or(file.flush_interval_ms) {
            storage.flush_interval_ms = v;
        }
        if let Some(v) = args.compaction.or(file.compaction) {
            storage.compaction = v;
        }
        if let Some(v) = args.compaction_quiet_ms.or(file.compaction_quiet_ms) {
            storage.compaction_quiet_ms = v;
        }
        if let Some(v) = args.latest_cache_bytes.or(file.latest_cache_bytes) {
            storage.latest_cache_bytes = v;
        }
        if let Some(v) = args.decoded_cache_bytes.or(file.decoded_cache_bytes) {
            storage.decoded_cache_bytes = v;
        }
        if storage.memtable_flush_bytes > storage.memtable_bytes_max {
            return Err(format!(
                "memtable_flush_bytes ({}) must not exceed memtable_bytes_max ({})",
                storage.memtable_flush_bytes, storage.memtable_bytes_max
            ));
        }
        let mut http = eddy_server::http::HttpConfig::default();
        if let Some(v) = args.request_bytes_max.or(file.request_bytes_max) {
            http.request_bytes_max = v;
        }
        if let Some(v) = args
            .http_inflight_bytes_max
            .or(file.http_inflight_bytes_max)
        {
            http.inflight_bytes_max = v;
        }
        if let Some(v) = args.http_connections_max.or(file.http_connections_max) {
            http.connections_max = v;
        }
        // The HTTP API checks the same users as the Postgres front end.
        http.users = pg.users.clone();
        http.check()?;
        // Flight SQL checks the same users, and speaks TLS with the same certificate.
        let flight = eddy_server::flight::FlightConfig {
            users: pg.users.clone(),
            tls: pg.tls.clone(),
            ..eddy_server::flight::FlightConfig::default()
        };
        let default_http: SocketAddr = ([127, 0, 0, 1], 8086).into();
        let default_pg: SocketAddr = ([127, 0, 0, 1], 5433).into();
        let default_flight: SocketAddr = ([127, 0, 0, 1], 8815).into();
        Ok(Config {
            storage,
            http_addr: args.http_addr.or(file.http_addr).unwrap_or(default_http),
            pg_addr: args.pg_addr.or(file.pg_addr).unwrap_or(default_pg),
            flight_addr: args
                .flight_addr
                .or(file.flight_addr)
                .unwrap_or(default_flight),
            http,
            pg,
            flight,
            query_memory_bytes_max: args
                .query_memory_bytes_max
                .or(file.query_memory_bytes_max)
                .unwrap_or(QUERY_MEMORY_BYTES_MAX),
            ilp_tcp_addr: args.ilp_tcp_addr.or(file.ilp_tcp_addr),
            // A flag can only turn it on, so either source turning it on does.
            ilp_tcp_allow_remote: args.ilp_tcp_allow_remote
                || file.ilp_tcp_allow_remote.unwrap_or(false),
        })
    }
}

fn pg_config(args: &ServeArgs, file: &FileConfig) -> Result<eddy_server::pg::PgConfig, String> {
    use eddy_server::pg::{AuthMethod, PgConfig};
    let mut pg = PgConfig::default();
    let users = if args.pg_users.is_empty() {
        &file.pg_users
    } else {
        &args.pg_users
    };
    for u in users {
        let (name, password) = u
            .split_once(':')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
            .ok_or_else(|| format!("pg user \"{u}\" must be NAME:PASSWORD"))?;
        pg.users.push((name.to_string(), password.to_string()));
    }
    pg.auth = match args.pg_auth.as_deref().or(file.pg_auth.as_deref()) {
        Some(m) => m.parse::<AuthMethod>()?,
        None if pg.users.is_empty() => AuthMethod::Trust,
        None => AuthMethod::ScramSha256,
    };
    let cert = args.pg_tls_cert.clone().or(file.pg_tls_cert.clone());
    let key = args.pg_tls_key.clone().or(file.pg_tls_key.clone());
    pg.tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("TLS needs both pg_tls_cert and pg_tls_key".to_string()),
    };
    if let Some(n) = args.pg_connections_max.or(file.pg_connections_max) {
        if n == 0 {
            return Err("pg_connections_max must be at least 1".to_string());
        }
        pg.connections_max = n;
    }
    let startup_ms = args
        .pg_startup_packet_timeout_ms
        .or(file.pg_startup_packet_timeout_ms);
    if let Some(ms) = startup_ms {
        if ms == 0 {
            return Err("pg_startup_packet_timeout_ms must be at least 1".to_string());
        }
        pg.startup_packet_timeout = Duration::from_millis(ms);
    }
    let authentication_ms = args
        .pg_authentication_timeout_ms
        .or(file.pg_authentication_timeout_ms);
    if let Some(ms) = authentication_ms {
        if ms < 1000 {
            return Err("pg_authentication_timeout_ms must be at least 1000 (1 s)".to_string());
        }
        pg.authentication_timeout = Duration::from_millis(ms);
    }
    Ok(pg)
}

fn load(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_cache_bytes_comes_from_the_flag_then_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("eddy.toml");
        std::fs::write(&file, "latest_cache_bytes = 1024\n").expect("write eddy.toml");
        let mut args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let from_file = Config::resolve(&args).expect("resolve");
        assert_eq!(from_file.storage.latest_cache_bytes, 1024);
        args.latest_cache_bytes = Some(0);
        let from_flag = Config::resolve(&args).expect("resolve");
        assert_eq!(from_flag.storage.latest_cache_bytes, 0);
        args.config = None;
        args.latest_cache_bytes = None;
        let default = Config::resolve(&args).expect("resolve");
        assert_eq!(default.storage.latest_cache_bytes, 64 << 20);
    }

    #[test]
    fn decoded_cache_bytes_comes_from_the_flag_then_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("eddy.toml");
        std::fs::write(&file, "decoded_cache_bytes = 4096\n").expect("write eddy.toml");
        let mut args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        assert_eq!(
            Config::resolve(&args)
                .expect("resolve")
                .storage
                .decoded_cache_bytes,
            4096
        );
        args.decoded_cache_bytes = Some(0);
        assert_eq!(
            Config::resolve(&args)
                .expect("resolve")
                .storage
                .decoded_cache_bytes,
            0
        );
        args.config = None;
        args.decoded_cache_bytes = None;
        assert_eq!(
            Config::resolve(&args)
                .expect("resolve")
                .storage
                .decoded_cache_bytes,
            512 << 20
        );
    }

    #[test]
    fn ilp_tcp_is_off_by_default_and_comes_from_the_flag_then_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("eddy.toml");
        std::fs::write(
            &file,
            "ilp_tcp_addr = \"127.0.0.1:9009\"\nilp_tcp_allow_remote = true\n",
        )
        .expect("write eddy.toml");
        let mut args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let from_file = Config::resolve(&args).expect("resolve");
        let file_addr: SocketAddr = ([127, 0, 0, 1], 9009).into();
        assert_eq!(from_file.ilp_tcp_addr, Some(file_addr));
        assert!(from_file.ilp_tcp_allow_remote);
        let flag_addr: SocketAddr = ([127, 0, 0, 1], 19009).into();
        args.ilp_tcp_addr = Some(flag_addr);
        let from_flag = Config::resolve(&args).expect("resolve");
        assert_eq!(from_flag.ilp_tcp_addr, Some(flag_addr));
        args.config = None;
        args.ilp_tcp_addr = None;
        let default = Config::resolve(&args).expect("resolve");
        assert_eq!(default.ilp_tcp_addr, None);
        assert!(!default.ilp_tcp_allow_remote);
        args.ilp_tcp_allow_remote = true;
        assert!(
            Config::resolve(&args)
                .expect("resolve")
                .ilp_tcp_allow_remote
        );
    }

    #[test]
    fn flight_addr_comes_from_the_flag_then_the_file_and_flight_shares_users_and_tls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("eddy.toml");
        std::fs::write(
            &file,
            "flight_addr = \"127.0.0.1:18815\"\nusers = [\"alice:s3cret\"]\n",
        )
        .expect("write eddy.toml");
        let mut args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let from_file = Config::resolve(&args).expect("resolve");
        let file_addr: SocketAddr = ([127, 0, 0, 1], 18815).into();
        assert_eq!(from_file.flight_addr, file_addr);
        assert_eq!(
            from_file.flight.users,
            [("alice".to_string(), "s3cret".to_string())]
        );
        assert!(from_file.flight.requires_password());
        let flag_addr: SocketAddr = ([127, 0, 0, 1], 28815).into();
        args.flight_addr = Some(flag_addr);
        assert_eq!(
            Config::resolve(&args).expect("resolve").flight_addr,
            flag_addr
        );
        args.config = None;
        args.flight_addr = None;
        args.pg_tls_cert = Some(PathBuf::from("cert.pem"));
        args.pg_tls_key = Some(PathBuf::from("key.pem"));
        let default = Config::resolve(&args).expect("resolve");
        let default_addr: SocketAddr = ([127, 0, 0, 1], 8815).into();
        assert_eq!(default.flight_addr, default_addr);
        assert!(!default.flight.requires_password());
        assert_eq!(
            default.flight.tls,
            Some((PathBuf::from("cert.pem"), PathBuf::from("key.pem")))
        );
    }

    #[test]
    fn pg_timeouts_come_from_the_flag_then_the_file_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("eddy.toml");
        std::fs::write(
            &file,
            "pg_startup_packet_timeout_ms = 1500\npg_authentication_timeout_ms = 2000\n",
        )
        .expect("write eddy.toml");
        let mut args = ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        };
        let from_file = Config::resolve(&args).expect("resolve");
        assert_eq!(
            from_file.pg.startup_packet_timeout,
            Duration::from_millis(1500)
        );
        assert_eq!(from_file.pg.authentication_timeout, Duration::from_secs(2));
        args.pg_startup_packet_timeout_ms = Some(250);
        args.pg_authentication_timeout_ms = Some(30_000);
        let from_flag = Config::resolve(&args).expect("resolve");
        assert_eq!(
            from_flag.pg.startup_packet_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(from_flag.pg.authentication_timeout, Duration::from_secs(30));
        args.config = None;
        args.pg_startup_packet_timeout_ms = None;
        args.pg_authentication_timeout_ms = None;
        let default = Config::resolve(&args).expect("resolve");
        assert_eq!(default.pg.startup_packet_timeout, Duration::from_secs(5));
        assert_eq!(default.pg.authentication_timeout, Duration::from_secs(60));
        // PostgreSQL's authentication_timeout is at least one second; so is Eddy's.
        args.pg_authentication_timeout_ms = Some(999);
        let e = Config::resolve(&args).expect_err("under 1 s");
        assert!(e.contains("pg_authentication_timeout_ms"), "{e}");
        args.pg_authentication_timeout_ms = None;
        args.pg_startup_packet_timeout_ms = Some(0);
        let e = Config::resolve(&args).expect_err("zero");
        assert!(e.contains("pg_startup_packet_timeout_ms"), "{e}");
        // The file is checked too.
        std::fs::write(&file, "pg_authentication_timeout_ms = 10\n").expect("write eddy.toml");
        args.config = Some(file);
        args.pg_startup_packet_timeout_ms = None;
        let e = Config::resolve(&args).expect_err("under 1 s in the file");
        assert!(e.contains("pg_authentication_timeout_ms"), "{e}");
    }
}
