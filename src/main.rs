//! The `eddy` binary: `serve` runs the database; `check` verifies a data directory offline;
//! `gen` writes TSBS-shaped line protocol; `bench` sends line protocol to a server (over HTTP,
//! TCP, Kafka or MQTT) and reports throughput.

mod config;
mod serve;

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eddy::{bench, generator};

/// Eddy: a time-series streaming database.
#[derive(Debug, Parser)]
#[command(name = "eddy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up; the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(config::ServeArgs),
    /// Verify a data directory offline (with the server stopped): every checksum, and that the
    /// catalog, manifest, WAL and segments agree. Exit status 1 when damage is found.
    Check(CheckArgs),
    /// Write TSBS cpu-only line protocol to stdout.
    Gen(GenArgs),
    /// Send line protocol to a server (HTTP, TCP, Kafka or MQTT) and report rows/s, MB/s and,
    /// over HTTP, latency.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct CheckArgs {
    /// The data directory to verify.
    #[arg(long, env = "EDDY_DATA_DIR")]
    data_dir: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
struct GenArgs {
    /// Number of hosts.
    #[arg(long, default_value_t = 10)]
    scale: usize,
    /// Interval between readings of a host, e.g. 10s, 1m, 500ms.
    #[arg(long, default_value = "10s")]
    interval: String,
    /// First timestamp (RFC 3339).
    #[arg(long, default_value = "2024-01-01T00:00:00Z")]
    start: String,
    /// End timestamp, exclusive (RFC 3339).
    #[arg(long, default_value = "2024-01-02T00:00:00Z")]
    end: String,
    /// Random seed.
    #[arg(long, default_value_t = 123)]
    seed: u64,
}

#[derive(Debug, Clone, clap::Args)]
struct BenchArgs {
    /// Line protocol file to send; without it, data is generated in memory first.
    #[arg(long)]
    file: Option<PathBuf>,
    #[command(flatten)]
    data: GenArgs,
    /// Where to send the data. The stream targets (tcp, kafka, mqtt) time until every row is
    /// readable, counted over the Postgres protocol (--pg-addr).
    #[arg(long, value_enum, default_value_t = BenchTarget::Http)]
    target: BenchTarget,
    /// Base URL of the server's HTTP API (--target http).
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    url: String,
    /// Concurrent connections (HTTP, TCP or MQTT clients).
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Lines per HTTP request, per TCP batch, per Kafka or MQTT message.
    #[arg(long, default_value_t = 5000)]
    batch_size: usize,
    /// Gzip request bodies (--target http only).
    #[arg(long)]
    gzip: bool,
    /// PID of the server process, to report its peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's line-protocol TCP address, its --ilp-tcp-addr (required for --target tcp).
    #[arg(long, value_name = "HOST:PORT")]
    tcp_addr: Option<String>,
    /// Partitions of the mock cluster's topic (--target kafka).
    #[arg(long, default_value_t = 4)]
    kafka_partitions: i32,
    /// The MQTT broker, for the server's source and for the publishers (--target mqtt).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    mqtt_url: String,
    /// QoS of the MQTT messages and subscription: 0 or 1 (--target mqtt).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    mqtt_qos: u8,
    /// The server's Postgres address, to create sources and count rows (stream targets).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5433")]
    pg_addr: String,
    /// Postgres user (stream targets).
    #[arg(long, default_value = "eddy")]
    pg_user: String,
    /// Postgres password, when the server asks for one (stream targets).
    #[arg(long, env = "PGPASSWORD", hide_env_values = true)]
    pg_password: Option<String>,
    /// Seconds the stream targets wait for every row to arrive before giving up.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// Where `eddy bench` sends the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchTarget {
    /// POST /api/v2/write; timed until the last response.
    Http,
    /// Plain TCP to --tcp-addr (the server's --ilp-tcp-addr).
    Tcp,
    /// A Kafka source reading a mock cluster run by the bench process.
    Kafka,
    /// An MQTT source subscribed to --mqtt-url, which the bench publishes to.
    Mqtt,
}

impl BenchArgs {
    /// The target with its options; an error when a required one is missing.
    fn target(&self) -> Result<bench::Target, String> {
        Ok(match self.target {
            BenchTarget::Http => bench::Target::Http,
            BenchTarget::Tcp => bench::Target::Tcp {
                addr: self.tcp_addr.clone().ok_or(
                    "--target tcp needs --tcp-addr HOST:PORT (the server's --ilp-tcp-addr)",
                )?,
            },
            BenchTarget::Kafka => bench::Target::Kafka {
                partitions: self.kafka_partitions,
            },
            BenchTarget::Mqtt => bench::Target::Mqtt {
                url: self.mqtt_url.clone(),
                qos: self.mqtt_qos,
            },
        })
    }
}

fn parse_time(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| {
            format!("invalid time \"{s}\": {e} (expected RFC 3339, e.g. 2024-01-01T00:00:00Z)")
        })?
        .timestamp_nanos_opt()
        .ok_or_else(|| format!("time \"{s}\" is out of range"))
}

impl GenArgs {
    fn spec(&self) -> Result<generator::GenSpec, String> {
        Ok(generator::GenSpec {
            scale: self.scale,
            start_ns: parse_time(&self.start)?,
            end_ns: parse_time(&self.end)?,
            interval_ns: eddy_storage::time::parse_span_ns(&self.interval)?,
            seed: self.seed,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => {
            keep_freed_memory();
            config::Config::resolve(&args).and_then(|c| runtime()?.block_on(serve::run(c)))
        }
        Command::Check(args) => return check(&args),
        Command::Gen(args) => args.spec().and_then(|spec| {
            let stdout = std::io::stdout();
            let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
            generator::generate(&spec, &mut out)
                .and_then(|_| out.flush())
                .map_err(|e| format!("writing output: {e}"))
        }),
        Command::Bench(args) => (|| {
            // Checked before the data is read or generated, which may take a while.
            let target = args.target()?;
            let data = match &args.file {
                Some(f) => {
                    std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?
                }
                None => {
                    let spec = args.data.spec()?;
                    let mut v = Vec::with_capacity(spec.rows() as usize * 350);
                    generator::generate(&spec, &mut v).map_err(|e| e.to_string())?;
                    v
                }
            };
            let spec = bench::BenchSpec {
                target,
                url: args.url.clone(),
                connections: args.connections,
                batch_size: args.batch_size,
                precision: "ns".into(),
                gzip: args.gzip,
                server_pid: args.server_pid,
                pg: bench::PgSpec {
                    addr: args.pg_addr.clone(),
                    user: args.pg_user.clone(),
                    password: args.pg_password.clone(),
                },
                timeout: std::time::Duration::from_secs(args.timeout_s),
            };
            runtime()?.block_on(bench::run(spec, data))
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `eddy check`: one line per damaged or unexpected file, then a summary. Exit status 0 when
/// no damage is found (warnings allowed), 1 when some is, 2 when the directory cannot be read.
fn check(args: &CheckArgs) -> ExitCode {
    let options = eddy_storage::check::CheckOptions {
        views_format_version: eddy_query::continuous::VIEWS_FORMAT_VERSION,
        checkpoint_format_version: eddy_query::continuous::CHECKPOINT_FORMAT_VERSION,
    };
    let report = match eddy_storage::check::check(&args.data_dir, &options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: cannot check {}: {e}", args.data_dir.display());
            return ExitCode::from(2);
        }
    };
    for finding in &report.findings {
        println!("{finding}");
    }
    println!(
        "{}: {} files checked ({} segments, {} rows, {} WAL records): {} damaged, {} warnings",
        args.data_dir.display(),
        report.files_checked,
        report.segments_checked,
        report.rows_checked,
        report.wal_records_checked,
        report.damaged(),
        report.warnings()
    );
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Tells glibc's allocator to keep freed memory for reuse instead of handing it back to the
/// kernel at once. With its defaults, every scan buffer over 128 KiB (a column chunk of a
/// segment, a decoded batch) came from fresh pages that the kernel had to fault in and zero:
/// about 9,500 page faults and a fifth of the server's CPU for one TSBS double-groupby-all query
/// (docs/benchmarks.md), against 260-364 with these settings. Freed memory above 64 MiB
/// per arena is still returned.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
    // exists, and a refused setting (return value 0) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        // Statements are planned and run on the query engine's own threads; this margin is
        // for the little walking of a statement a front end does before handing it over.
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
}
