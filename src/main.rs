//! The `eddy` binary: `serve` runs the database; `gen` writes TSBS-shaped line protocol;
//! `bench` posts line protocol at a server and reports throughput and latency.

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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(config::ServeArgs),
    /// Write TSBS cpu-only line protocol to stdout.
    Gen(GenArgs),
    /// Post line protocol to a server and report rows/s, MB/s and latency.
    Bench(BenchArgs),
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
    /// Base URL of the server's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    batch_size: usize,
    /// Gzip request bodies.
    #[arg(long)]
    gzip: bool,
    /// PID of the server process, to report its peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
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
            config::Config::resolve(&args).and_then(|c| runtime()?.block_on(serve::run(c)))
        }
        Command::Gen(args) => args.spec().and_then(|spec| {
            let stdout = std::io::stdout();
            let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
            generator::generate(&spec, &mut out)
                .and_then(|_| out.flush())
                .map_err(|e| format!("writing output: {e}"))
        }),
        Command::Bench(args) => (|| {
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
                url: args.url.clone(),
                connections: args.connections,
                batch_size: args.batch_size,
                precision: "ns".into(),
                gzip: args.gzip,
                server_pid: args.server_pid,
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

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
}
