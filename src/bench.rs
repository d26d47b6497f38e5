//! `eddy bench`: a load generator that posts line protocol over HTTP and reports throughput
//! and latency, so anyone can reproduce the published ingest figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// What to send and how.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// Base URL of the HTTP API.
    pub url: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Lines per request.
    pub batch_size: usize,
    /// Timestamp precision of the data.
    pub precision: String,
    /// Gzip the request bodies.
    pub gzip: bool,
    /// PID of the server, to report its peak memory.
    pub server_pid: Option<u32>,
}

/// Splits line protocol into request bodies of `batch_size` lines each.
pub fn batches(data: &[u8], batch_size: usize) -> Vec<(bytes::Bytes, usize)> {
    let data = bytes::Bytes::copy_from_slice(data);
    let mut out = Vec::new();
    let mut start = 0;
    let mut lines = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            lines += 1;
            if lines == batch_size {
                out.push((data.slice(start..=i), lines));
                start = i + 1;
                lines = 0;
            }
        }
    }
    if start < data.len() {
        let tail = data.slice(start..);
        let n = tail
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        out.push((tail, n));
    }
    out
}

/// Runs the load and prints the report.
pub async fn run(spec: BenchSpec, data: Vec<u8>) -> Result<(), String> {
    let total_bytes = data.len();
    let mut bodies = batches(&data, spec.batch_size.max(1));
    drop(data);
    if spec.gzip {
        for (b, _) in &mut bodies {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(b).map_err(|e| e.to_string())?;
            *b = bytes::Bytes::from(enc.finish().map_err(|e| e.to_string())?);
        }
    }
    let total_rows: usize = bodies.iter().map(|(_, n)| n).sum();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(spec.connections)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!(
        "{}/api/v2/write?bucket=eddy&precision={}",
        spec.url.trim_end_matches('/'),
        spec.precision
    );
    let bar = ProgressBar::new(total_rows as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .map_err(|e| e.to_string())?,
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..spec.connections.max(1) {
        let (bodies, next, client, url, bar, gzip) = (
            bodies.clone(),
            next.clone(),
            client.clone(),
            url.clone(),
            bar.clone(),
            spec.gzip,
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((body, rows)) = bodies.get(i) else {
                    break;
                };
                let t = Instant::now();
                let mut req = client.post(&url).body(body.clone());
                if gzip {
                    req = req.header("Content-Encoding", "gzip");
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        failures += 1;
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        first_error.get_or_insert(format!("HTTP {status}: {text}"));
                    }
                    Err(e) => {
                        failures += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
                latencies.push(t.elapsed());
                bar.inc(*rows as u64);
            }
            (latencies, failures, first_error)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut failures = 0;
    let mut first_error = None;
    for t in tasks {
        let (l, f, e) = t.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        failures += f;
        if first_error.is_none() {
            first_error = e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!("rows:            {total_rows}");
    println!("requests:        {} ({failures} failed)", latencies.len());
    println!("elapsed:         {elapsed:.2} s");
    println!("throughput:      {:.0} rows/s", total_rows as f64 / elapsed);
    println!(
        "                 {:.1} MB/s of line protocol",
        total_bytes as f64 / elapsed / 1e6
    );
    println!("latency p50:     {:.1} ms", pct(0.50));
    println!("latency p99:     {:.1} ms", pct(0.99));
    if let Some(pid) = spec.server_pid {
        match peak_rss(pid) {
            Some(kb) => println!("server peak RSS: {:.0} MiB", kb as f64 / 1024.0),
            None => println!("server peak RSS: unavailable for pid {pid}"),
        }
    }
    if let Some(e) = first_error {
        return Err(format!("{failures} requests failed; first error: {e}"));
    }
    Ok(())
}

/// Peak resident memory of a process in KiB (`VmHWM` of /proc/PID/status).
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
