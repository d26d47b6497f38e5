#!/usr/bin/env python3
"""TSBS cpu-only, side by side: Eddy against DuckDB (queries) and VictoriaMetrics (storage).

1. Generates TSBS cpu-only line protocol with `eddy gen --scale HOSTS` (24 hours at 10 s from
   2024-01-01T00:00:00Z: 100 hosts are 864,000 rows of 10 tags and 10 integer fields).
2. Eddy: loads it with `eddy bench --file` (HTTP line protocol) into a fresh server and keeps
   the rows/s, stops the server with SIGTERM (which flushes), starts it again and waits until
   compaction has left one segment per partition. Storage: sum(bytes) of `eddy_segments` per
   value (rows x 10 fields), and the whole data directory.
3. DuckDB, in process and in memory: the same rows, parsed from the same file in Python, in a
   table `cpu` (time TIMESTAMP, the tags VARCHAR, the fields BIGINT).
4. VictoriaMetrics, when installed (Debian package `victoria-metrics`) and not --no-vm: the same
   file through the same `eddy bench` client (VictoriaMetrics serves /api/v2/write with the
   parser of its /write endpoint; each field becomes a metric `cpu_usage_user`, ...), then
   /internal/force_flush and /internal/force_merge, and its data directory per value. It is a
   storage comparison only: no query runs against it.
5. The TSBS cpu-only query types in SQL, the same text for both engines, with parameters (hosts,
   start times) drawn from a seeded random generator: a warm-up run, then --runs timed runs of
   execute + fetchall each, client side. Eddy is queried over the Postgres protocol with psycopg
   (one connection, no server-side prepared statements), DuckDB in process. When an engine
   refuses a form of a query, the next equivalent form is tried and the table says which form
   ran. The answers of the two engines are compared after normalizing them (rows sorted, floats
   to 6 significant digits, timestamps as ISO strings, columns by name); a mismatch is reported
   with the first differing rows.
6. Prints a Markdown table (median ms per engine, Eddy/DuckDB, answers equal) with the storage
   and load figures; --json FILE keeps every timing and answer check.

Progress goes to stderr, the report to stdout. Every process started here is stopped on exit,
Ctrl-C included; the data lives in a temporary directory unless --keep DIR.

Usage (after `cargo build --release` and scripts/install-test-deps.sh; optionally
`apt-get install victoria-metrics`):
    ~/.cache/eddy-venv/bin/python scripts/bench-tsbs.py --eddy target/release/eddy \\
        --scale 100 --runs 5 --json /tmp/tsbs.json
"""
import argparse
import dataclasses
import datetime
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import duckdb
import psycopg
import pyarrow as pa

FIELDS = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
          "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]
START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
HOURS = 24
HOUR = datetime.timedelta(hours=1)

# Every process this script starts, so that cleanup() can stop what is still running.
PROCS = []


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes, ports, directories


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def spawn(cmd, log_path):
    """Starts cmd in its own session (so Ctrl-C reaches only this script, which then stops it)
    with stdout and stderr to log_path."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    PROCS.append(proc)
    return proc


def stop(proc, sig=signal.SIGTERM, timeout=120):
    """Signals proc and waits for it; SIGKILL after timeout seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {proc.pid} did not stop in {timeout} s after {sig.name}: killing it")
            proc.kill()
            proc.wait()
    if proc in PROCS:
        PROCS.remove(proc)
    return proc.returncode


def cleanup():
    for proc in list(PROCS):
        stop(proc, signal.SIGTERM, 30)


def on_signal(signum, _frame):
    raise SystemExit(f"stopped by signal {signal.Signals(signum).name}")


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def dir_size(path):
    """(apparent bytes of the files, bytes allocated on disk as du counts them) under path."""
    files = alloc = 0
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:  # removed while walking (a merge retiring its inputs)
                continue
            alloc += st.st_blocks * 512
            if name in names:
                files += st.st_size
    return files, alloc


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


# ---------------------------------------------------------------------------------------------
# Data


def generate(eddy, scale, path):
    end = START + HOURS * HOUR
    with open(path, "wb") as out:
        subprocess.run([eddy, "gen", "--scale", str(scale),
                        "--start", START.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "--end", end.strftime("%Y-%m-%dT%H:%M:%SZ")], stdout=out, check=True)
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def parse_field(v):
    if v.endswith("i") or v.endswith("u"):
        return int(v[:-1])
    return float(v)


def parse_line_protocol(path, batch_rows=100_000):
    """The file as an Arrow table: time (ns), then tags (strings), then fields (int64 when
    every value has the `i` suffix, else float64), in the order they first appear. Only the
    plain line protocol `eddy gen` writes: one measurement, no escapes, no quoted strings."""
    batches, measurements = [], set()
    tags, fields = [], []
    cols = {}
    times = []

    def flush():
        n = len(times)
        for name, values in cols.items():
            if len(values) != n:
                raise SystemExit(f"column {name} is missing on some lines: the parser here "
                                 "only reads lines that all have the same tags and fields")
        arrays = [pa.array(times, pa.timestamp("ns"))]
        arrays += [pa.array(cols[t], pa.string()) for t in tags]
        for f in fields:
            arrays.append(pa.array(cols[f], pa.int64() if all(type(v) is int for v in cols[f])
                                   else pa.float64()))
        batches.append(pa.RecordBatch.from_arrays(arrays, ["time"] + tags + fields))
        times.clear()
        for values in cols.values():
            values.clear()

    intern = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            if "\\" in line or '"' in line:
                raise SystemExit("escaped or quoted line protocol is not handled here")
            series, field_set, ts = line.split(" ")
            parts = series.split(",")
            measurements.add(parts[0])
            for kv in parts[1:]:
                k, _, v = kv.partition("=")
                values = cols.get(k)
                if values is None:
                    values = cols[k] = []
                    tags.append(k)
                values.append(intern.setdefault(v, v))
            for kv in field_set.split(","):
                k, _, v = kv.partition("=")
                values = cols.get(k)
                if values is None:
                    values = cols[k] = []
                    fields.append(k)
                values.append(parse_field(v))
            times.append(int(ts))
            if len(times) >= batch_rows:
                flush()
    if times:
        flush()
    if len(measurements) != 1:
        raise SystemExit(f"expected one measurement, found {sorted(measurements)}")
    # Batches parsed before a column first appeared would lack it; eddy gen never does that.
    schema = batches[-1].schema
    if any(b.schema != schema for b in batches):
        raise SystemExit("the batches differ in their columns or types")
    return measurements.pop(), pa.Table.from_batches(batches), tags, fields


# ---------------------------------------------------------------------------------------------
# Eddy


class Eddy:
    """`eddy serve` on free ports, with its log next to its data directory."""

    def __init__(self, binary, data_dir, log_path):
        self.binary, self.data_dir, self.log_path = binary, data_dir, log_path
        for attempt in range(3):
            self.http, self.pg, self.flight = free_port(), free_port(), free_port()
            self.proc = spawn(
                [binary, "serve", "--data-dir", data_dir,
                 "--http-addr", f"127.0.0.1:{self.http}",
                 "--pg-addr", f"127.0.0.1:{self.pg}",
                 "--flight-addr", f"127.0.0.1:{self.flight}",
                 "--compaction-quiet-ms", "1000"], log_path)
            deadline = time.time() + 120
            while time.time() < deadline and self.proc.poll() is None:
                if port_open(self.pg) and port_open(self.http):
                    return
                time.sleep(0.1)
            stop(self.proc)
            if "Address already in use" not in tail(log_path, 5):
                break
            log("a port was taken meanwhile; trying other ports")
        raise SystemExit(f"eddy serve did not start; its log:\n{tail(log_path)}")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http}"

    def connect(self):
        return psycopg.connect(host="127.0.0.1", port=self.pg, user="eddy", dbname="eddy",
                               autocommit=True, prepare_threshold=None)

    def stop(self):
        rc = stop(self.proc, signal.SIGTERM)
        if rc not in (0, -signal.SIGTERM):
            log(f"eddy serve exited with status {rc}; its log:\n{tail(self.log_path)}")


def bench_load(eddy, path, url, server_pid):
    """Sends the file with `eddy bench` (2 connections, 5000 lines a request): rows/s, seconds,
    the server's peak RSS, bench's own output."""
    r = subprocess.run([eddy, "bench", "--file", path, "--url", url, "--connections", "2",
                        "--batch-size", "5000", "--server-pid", str(server_pid)],
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    m = re.search(r"requests:\s+\d+ \((\d+) failed\)", out)
    if r.returncode != 0 or not m or m.group(1) != "0":
        raise RuntimeError(f"eddy bench against {url} failed:\n{out}")
    rate = float(re.search(r"throughput:\s+([\d.]+) rows/s", out).group(1))
    secs = float(re.search(r"elapsed:\s+([\d.]+) s", out).group(1))
    m = re.search(r"server peak RSS:\s+([\d.]+) MiB", out)
    return {"rows_per_s": rate, "seconds": secs,
            "server_peak_rss_mib": float(m.group(1)) if m else None, "output": out.strip()}


def wait_compaction(conn, table, timeout=1800, settle=3.0):
    """Polls eddy_segments until the table has exactly one segment per partition, and still
    has after `settle` seconds. Returns (seconds waited, segments, partitions)."""
    t0 = time.time()
    ok_since = None
    sql = (f"SELECT count(*), count(DISTINCT partition) FROM eddy_segments "
           f"WHERE table_name = '{table}'")
    while True:
        segments, partitions = conn.execute(sql).fetchone()
        if segments > 0 and segments == partitions:
            ok_since = ok_since or time.time()
            if time.time() - ok_since >= settle:
                return ok_since - t0, segments, partitions
        else:
            ok_since = None
        if time.time() - t0 > timeout:
            raise SystemExit(f"compaction not done after {timeout} s: "
                             f"{segments} segments in {partitions} partitions")
        time.sleep(0.5)


def run_eddy_load(args, lp_path, n_lines, measurement, work):
    """Load, restart, compaction; returns (a running Eddy, facts for the report)."""
    data_dir = os.path.join(work, "eddy")
    log_path = os.path.join(work, "eddy.log")
    server = Eddy(args.eddy, data_dir, log_path)
    log(f"eddy: loading {n_lines:,} rows")
    load = bench_load(args.eddy, lp_path, server.url, server.proc.pid)
    log(f"eddy: {load['rows_per_s']:,.0f} rows/s; stopping it (SIGTERM flushes)")
    server.stop()
    server = Eddy(args.eddy, data_dir, log_path)
    log("eddy: restarted; waiting for compaction")
    with server.connect() as conn:
        waited, segments, partitions = wait_compaction(conn, measurement)
        seg_rows, seg_bytes = conn.execute(
            "SELECT sum(rows), sum(bytes) FROM eddy_segments "
            f"WHERE table_name = '{measurement}'").fetchone()
        count = conn.execute(f"SELECT count(*) FROM {measurement}").fetchone()[0]
    files, alloc = dir_size(data_dir)
    n_fields = len(FIELDS)
    facts = {
        "load": load,
        "compaction_wait_s": waited, "segments": segments, "partitions": partitions,
        "segment_rows": int(seg_rows), "segment_bytes": int(seg_bytes), "count": count,
        "bytes_per_value": seg_bytes / (seg_rows * n_fields),
        "dir_bytes": files, "dir_bytes_allocated": alloc,
        "dir_bytes_per_value": files / (count * n_fields),
    }
    log(f"eddy: compacted into {segments} segment(s) after {waited:.1f} s; {seg_bytes:,} bytes "
        f"= {facts['bytes_per_value']:.3f} bytes/value; count(*) = {count:,}")
    if count != n_lines or seg_rows != n_lines:
        log(f"WARNING: eddy holds {count:,} rows ({seg_rows:,} in segments), "
            f"the file has {n_lines:,}")
    return server, facts


# ---------------------------------------------------------------------------------------------
# DuckDB


def load_duckdb(measurement, table, tags, fields):
    con = duckdb.connect(":memory:")
    cols = ["time TIMESTAMP"] + [f"{t} VARCHAR" for t in tags]
    cols += [f"{f} {'BIGINT' if table.schema.field(f).type == pa.int64() else 'DOUBLE'}"
             for f in fields]
    con.execute(f"CREATE TABLE {measurement} ({', '.join(cols)})")
    con.register("lp_arrow", table)
    t = time.perf_counter()
    con.execute(f"INSERT INTO {measurement} SELECT * FROM lp_arrow")
    secs = time.perf_counter() - t
    con.unregister("lp_arrow")
    count = con.execute(f"SELECT count(*) FROM {measurement}").fetchone()[0]
    return con, {"insert_seconds": secs, "count": count, "threads":
                 con.execute("SELECT current_setting('threads')").fetchone()[0]}


# ---------------------------------------------------------------------------------------------
# VictoriaMetrics


def vm_metrics(port):
    """Parses /metrics into {name{labels}: value}."""
    out = {}
    for line in http_get(f"http://127.0.0.1:{port}/metrics").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def vm_stored_samples(metrics):
    return sum(v for k, v in metrics.items() if k.startswith('vm_rows{type="storage/'))


def post_write(url, path, lines_per_request=5000):
    """Fallback loader: POST the file to VictoriaMetrics' /write in chunks."""
    t = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        while True:
            chunk = b"".join(line for _, line in zip(range(lines_per_request), f))
            if not chunk:
                break
            n += chunk.count(b"\n")
            req = urllib.request.Request(f"{url}/write", data=chunk, method="POST")
            urllib.request.urlopen(req, timeout=120).read()
    secs = time.perf_counter() - t
    return {"rows_per_s": n / secs, "seconds": secs, "server_peak_rss_mib": None,
            "output": "POST /write from Python, one connection"}


def vm_version(binary):
    """`-version`, or the Debian package's version when the build left it empty."""
    r = subprocess.run([binary, "-version"], capture_output=True, text=True)
    version = (r.stdout + r.stderr).strip()
    if not version:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "victoria-metrics"],
                           capture_output=True, text=True)
        version = r.stdout.strip() if r.returncode == 0 else "(version unknown)"
    return version


def run_vm(args, lp_path, n_lines, work):
    binary = args.vm or shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not os.access(binary, os.X_OK):
        log("VictoriaMetrics is not installed (apt-get install victoria-metrics); skipping it")
        return None
    version = vm_version(binary)
    data_dir = os.path.join(work, "vm")
    log_path = os.path.join(work, "vm.log")
    port = free_port()
    proc = spawn([binary, "-storageDataPath", data_dir, "-httpListenAddr", f"127.0.0.1:{port}",
                  "-retentionPeriod", "100y"], log_path)
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"victoria-metrics did not start; its log:\n{tail(log_path)}")
            try:
                if http_get(f"http://127.0.0.1:{port}/health", 1).strip() == "OK":
                    break
            except OSError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        log(f"victoria-metrics ({version}): loading {n_lines:,} rows")
        try:
            load = bench_load(args.eddy, lp_path, url, proc.pid)
            load["endpoint"] = "/api/v2/write (eddy bench)"
        except RuntimeError as e:
            log(f"{e}\nfalling back to POST /write")
            load = post_write(url, lp_path)
            load["endpoint"] = "/write"
        log(f"victoria-metrics: {load['rows_per_s']:,.0f} rows/s; force_flush, force_merge")
        notes = []
        for path in ("/internal/force_flush",
                     f"/internal/force_merge?partition_prefix={START:%Y_%m}"):
            try:
                http_get(url + path, 600)
            except OSError as e:
                notes.append(f"{path}: {e}")
        # force_merge runs in the background: wait for it to end, then for the directory to
        # stop changing (merged-away parts are deleted after the merge).
        deadline = time.time() + 1800
        last, stable_since = None, time.time()
        while time.time() < deadline:
            metrics = vm_metrics(port)
            size = dir_size(data_dir)
            if size != last or metrics.get("vm_active_force_merges", 0) > 0:
                last, stable_since = size, time.time()
            elif time.time() - stable_since >= 5:
                break
            time.sleep(0.5)
        samples = vm_stored_samples(metrics)
        files, alloc = dir_size(data_dir)
        parts = {d: dir_size(os.path.join(data_dir, d))[0] for d in ("data", "indexdb")}
        rss = peak_rss_mib(proc.pid)
    finally:
        stop(proc, signal.SIGINT)
    facts = {"version": version, "load": load, "stored_samples": samples,
             "dir_bytes": files, "dir_bytes_allocated": alloc,
             "data_bytes": parts["data"], "indexdb_bytes": parts["indexdb"],
             "bytes_per_value": files / samples if samples else float("nan"),
             "data_bytes_per_value": parts["data"] / samples if samples else float("nan"),
             "peak_rss_mib": rss, "notes": notes}
    if samples != n_lines * len(FIELDS):
        log(f"WARNING: victoria-metrics stores {samples:,.0f} samples, expected "
            f"{n_lines * len(FIELDS):,}")
    log(f"victoria-metrics: {files:,} bytes = {facts['bytes_per_value']:.3f} bytes/value")
    return facts


# ---------------------------------------------------------------------------------------------
# Queries


@dataclasses.dataclass
class Query:
    name: str
    forms: list  # [(label, sql)], tried in order until an engine accepts one


def ts(t):
    return t.strftime("'%Y-%m-%dT%H:%M:%SZ'")


def build_queries(measurement, hosts, seed):
    """The TSBS cpu-only query types with parameters from random.Random(seed); hosts is the
    sorted list of hostnames in the data."""
    rng = random.Random(seed)
    end = START + HOURS * HOUR

    def window(hours):
        span = int((end - START).total_seconds()) - hours * 3600
        t0 = START + datetime.timedelta(seconds=rng.randrange(span + 1))
        return f"time >= {ts(t0)} AND time < {ts(t0 + hours * HOUR)}"

    def host_filter(n):
        return "hostname IN (" + ", ".join(f"'{h}'" for h in rng.sample(hosts, n)) + ")"

    # Each query text is a template over {bucket_minute} / {bucket_hour}; the forms differ only
    # in how they write the bucket. date_trunc is the first: both engines have it.
    buckets = [
        ("date_trunc", "date_trunc('minute', time)", "date_trunc('hour', time)"),
        ("time_bucket", "time_bucket(INTERVAL '1 minute', time)",
         "time_bucket(INTERVAL '1 hour', time)"),
        ("date_bin", "date_bin(INTERVAL '1 minute', time)", "date_bin(INTERVAL '1 hour', time)"),
    ]

    def bucketed(template):
        return [(label, template.format(bucket_minute=m, bucket_hour=h))
                for label, m, h in buckets]

    queries = []
    for m, h, t in [(1, 1, 1), (1, 1, 12), (1, 8, 1), (5, 1, 1), (5, 1, 12), (5, 8, 1)]:
        aggs = ", ".join(f"max({f}) AS max_{f}" for f in FIELDS[:m])
        sql = (f"SELECT {{bucket_minute}} AS minute, {aggs} FROM {measurement} "
               f"WHERE {host_filter(h)} AND {window(t)} GROUP BY minute ORDER BY minute")
        queries.append(Query(f"single-groupby-{m}-{h}-{t}", bucketed(sql)))
    for h in (1, 8):
        aggs = ", ".join(f"max({f}) AS max_{f}" for f in FIELDS)
        sql = (f"SELECT {{bucket_hour}} AS hour, {aggs} FROM {measurement} "
               f"WHERE {host_filter(h)} AND {window(8)} GROUP BY hour ORDER BY hour")
        queries.append(Query(f"cpu-max-all-{h}", bucketed(sql)))
    for label, m in (("1", 1), ("5", 5), ("all", len(FIELDS))):
        aggs = ", ".join(f"avg({f}) AS mean_{f}" for f in FIELDS[:m])
        sql = (f"SELECT {{bucket_hour}} AS hour, hostname, {aggs} FROM {measurement} "
               f"WHERE {window(12)} GROUP BY hour, hostname ORDER BY hour, hostname")
        queries.append(Query(f"double-groupby-{label}", bucketed(sql)))
    for label, h in (("1", 1), ("all", None)):
        hf = f" AND {host_filter(h)}" if h else ""
        sql = f"SELECT * FROM {measurement} WHERE usage_user > 90 AND {window(12)}{hf}"
        queries.append(Query(f"high-cpu-{label}", [("where", sql)]))
    # TSBS: the 5 latest minutes before a random end time, with no lower bound on time.
    t_end = START + HOUR + datetime.timedelta(
        seconds=rng.randrange(int((end - START - HOUR).total_seconds()) + 1))
    sql = (f"SELECT {{bucket_minute}} AS minute, max(usage_user) AS max_usage_user "
           f"FROM {measurement} WHERE time < {ts(t_end)} "
           f"GROUP BY minute ORDER BY minute DESC LIMIT 5")
    queries.append(Query("groupby-orderby-limit", bucketed(sql)))
    queries.append(Query("lastpoint", [
        ("DISTINCT ON",
         f"SELECT DISTINCT ON (hostname) * FROM {measurement} ORDER BY hostname, time DESC"),
        ("row_number",
         f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY hostname ORDER BY time DESC)"
         f" AS rn FROM {measurement}) AS t WHERE rn = 1"),
        ("join max(time)",
         f"SELECT c.* FROM {measurement} AS c JOIN (SELECT hostname, max(time) AS time FROM "
         f"{measurement} GROUP BY hostname) AS l ON c.hostname = l.hostname "
         f"AND c.time = l.time"),
    ]))
    return queries


class EddyEngine:
    name = "eddy"

    def __init__(self, server, timeout):
        self.server, self.timeout = server, timeout
        self.conn = server.connect()

    def run(self, sql):
        """(seconds, column names, rows); execute + fetchall, cancelled after the timeout."""
        if self.conn.closed:
            if self.server.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.server.proc.returncode}); its log:"
                                   f"\n{tail(self.server.log_path)}")
            self.conn = self.server.connect()
        timer = threading.Timer(self.timeout, self.conn.cancel)
        timer.start()
        try:
            t = time.perf_counter()
            cur = self.conn.execute(sql)
            rows = cur.fetchall()
            secs = time.perf_counter() - t
        finally:
            timer.cancel()
        return secs, [d.name for d in cur.description], rows

    def close(self):
        self.conn.close()


class DuckEngine:
    name = "duckdb"

    def __init__(self, con):
        self.con = con

    def run(self, sql):
        t = time.perf_counter()
        cur = self.con.execute(sql)
        rows = cur.fetchall()
        secs = time.perf_counter() - t
        return secs, [d[0] for d in cur.description], rows

    def close(self):
        pass


def pick_form(engine, forms, first=None):
    """Warm-up: the first form the engine runs (trying `first` before the others), with its
    answer, and the errors of the forms it refused."""
    order = sorted(forms, key=lambda f: f[0] != first)
    errors = {}
    for label, sql in order:
        try:
            _, columns, rows = engine.run(sql)
            return label, sql, columns, rows, errors
        except Exception as e:  # noqa: BLE001 - any refusal means: try the next form
            errors[label] = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
            log(f"  {engine.name} refused the {label} form: {errors[label]}")
    return None, None, None, None, errors


def normalize_value(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return float(f"{v:.6g}") if math.isfinite(v) else v
    if hasattr(v, "is_finite"):  # Decimal
        return float(f"{float(v):.6g}")
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.isoformat()
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    return str(v)


def sort_key(row):
    return tuple((2, "") if v is None else (0, v) if isinstance(v, (int, float)) else (1, str(v))
                 for v in row)


def normalize(columns, rows):
    """Columns in name order (when the names are unique), values normalized, rows sorted."""
    order = sorted(range(len(columns)), key=lambda i: columns[i]) \
        if len(set(columns)) == len(columns) else list(range(len(columns)))
    out = [tuple(normalize_value(r[i]) for i in order) for r in rows]
    return [columns[i] for i in order], sorted(out, key=sort_key)


def compare(a, b, show=3):
    """None when the answers agree, else a description with the first differing rows."""
    (ca, ra), (cb, rb) = normalize(*a), normalize(*b)
    if ca != cb:
        return f"columns differ: eddy {ca}, duckdb {cb}"
    if ra == rb:
        return None
    lines = [f"eddy {len(ra):,} rows, duckdb {len(rb):,} rows (sorted, normalized); columns "
             f"{ca}"]
    diffs = [i for i in range(max(len(ra), len(rb)))
             if i >= len(ra) or i >= len(rb) or ra[i] != rb[i]]
    lines.append(f"{len(diffs):,} positions differ; the first:")
    for i in diffs[:show]:
        lines.append(f"  row {i}: eddy   {ra[i] if i < len(ra) else '(none)'}")
        lines.append(f"  row {i}: duckdb {rb[i] if i < len(rb) else '(none)'}")
    only_a = set(ra) - set(rb)
    only_b = set(rb) - set(ra)
    if only_a or only_b:
        lines.append(f"{len(only_a):,} rows only in eddy, {len(only_b):,} only in duckdb")
    return "\n".join(lines)


def run_queries(queries, engines, runs):
    results = []
    for q in queries:
        log(f"query {q.name}")
        res = {"name": q.name}
        answers = {}
        chosen = None
        for engine in engines:
            # The second engine tries the form the first one ran before the others.
            label, sql, columns, rows, errors = pick_form(engine, q.forms, chosen)
            chosen = chosen or label
            r = {"form": label, "sql": sql, "refused": errors, "times_ms": [],
                 "rows": len(rows) if rows is not None else None}
            if label is not None:
                answers[engine.name] = (columns, rows)
                for _ in range(runs):
                    try:
                        r["times_ms"].append(engine.run(sql)[0] * 1000)
                    except Exception as e:  # noqa: BLE001 - report it, go on with the others
                        r["error"] = f"{type(e).__name__}: {e}"
                        log(f"  {engine.name} failed a timed run: {r['error']}")
                        break
                if r["times_ms"]:
                    r["median_ms"] = statistics.median(r["times_ms"])
                    log(f"  {engine.name}: {label} form, {r['rows']:,} rows, "
                        f"median {r['median_ms']:.1f} ms")
            res[engine.name] = r
        if len(answers) == 2:
            diff = compare(answers["eddy"], answers["duckdb"])
            res["equal"] = diff is None
            res["mismatch"] = diff
            if diff:
                log(f"  ANSWERS DIFFER:\n{diff}")
        else:
            res["equal"] = None
        results.append(res)
    return results


# ---------------------------------------------------------------------------------------------
# Report


def fmt_ms(r):
    if r.get("median_ms") is None:
        return "error" if r.get("form") is None or r.get("error") else "-"
    return f"{r['median_ms']:.1f}"


def report(args, n_lines, eddy, duck, vm, results):
    out = [f"## TSBS cpu-only, scale {args.scale} ({n_lines:,} rows), "
           f"median of {args.runs} runs\n",
           "| query | Eddy ms | DuckDB ms | Eddy/DuckDB | answers equal | form |",
           "|---|---:|---:|---:|:---:|---|"]
    for r in results:
        e, d = r["eddy"], r["duckdb"]
        ratio = (f"{e['median_ms'] / d['median_ms']:.2f}"
                 if e.get("median_ms") and d.get("median_ms") else "-")
        equal = {True: "yes", False: "**no**", None: "n/a"}[r["equal"]]
        form = e["form"] or "none ran"
        if d["form"] != e["form"]:
            form += f" (DuckDB: {d['form'] or 'none ran'})"
        if e["refused"]:
            form += "; Eddy refused " + ", ".join(e["refused"])
        out.append(f"| {r['name']} | {fmt_ms(e)} | {fmt_ms(d)} | {ratio} | {equal} | {form} |")
    v = len(FIELDS)
    out.append("")
    out.append(f"Storage ({n_lines:,} rows x {v} fields = {n_lines * v:,} values):")
    out.append(f"- Eddy: {eddy['segment_bytes']:,} bytes in {eddy['segments']} segment(s) = "
               f"**{eddy['bytes_per_value']:.3f} bytes/value**; whole data directory "
               f"{eddy['dir_bytes']:,} bytes ({eddy['dir_bytes_per_value']:.3f} bytes/value, "
               f"{eddy['dir_bytes_allocated']:,} allocated)")
    if vm:
        out.append(f"- VictoriaMetrics {vm['version']}: data directory "
                   f"{vm['dir_bytes']:,} bytes = **{vm['bytes_per_value']:.3f} bytes/value** "
                   f"({vm['dir_bytes_allocated']:,} allocated; data/ {vm['data_bytes']:,} = "
                   f"{vm['data_bytes_per_value']:.3f} bytes/value, indexdb/ "
                   f"{vm['indexdb_bytes']:,}; {vm['stored_samples']:,.0f} samples stored)")
    else:
        out.append("- VictoriaMetrics: not run")
    out.append("- DuckDB: n/a (in-memory table)")
    out.append("")
    out.append("Load (`eddy bench --file`, 2 connections, 5000 lines a request):")
    ld = eddy["load"]
    out.append(f"- Eddy: **{ld['rows_per_s']:,.0f} rows/s** ({ld['seconds']:.2f} s, server peak "
               f"RSS {ld['server_peak_rss_mib'] or float('nan'):.0f} MiB); compaction done "
               f"{eddy['compaction_wait_s']:.1f} s after the restart")
    if vm:
        ld = vm["load"]
        out.append(f"- VictoriaMetrics ({ld['endpoint']}): {ld['rows_per_s']:,.0f} rows/s "
                   f"({ld['seconds']:.2f} s)")
    out.append(f"- DuckDB: INSERT from Arrow {duck['insert_seconds']:.2f} s "
               f"({n_lines / duck['insert_seconds']:,.0f} rows/s), not comparable (in process)")
    mismatches = [r for r in results if r["equal"] is False]
    failed = [r for r in results if r["eddy"]["form"] is None or r["eddy"].get("error")]
    if mismatches or failed:
        out.append("")
        out.append("### Problems")
        for r in failed:
            out.append(f"- {r['name']}: Eddy could not run it: "
                       f"{r['eddy'].get('error') or r['eddy']['refused']}")
        for r in mismatches:
            out.append(f"- {r['name']}: answers differ\n```\n{r['mismatch']}\n```")
    out.append("")
    out.append(f"Eddy over the Postgres protocol (psycopg {psycopg.__version__}, one connection, "
               f"client-side wall time of execute + fetchall); DuckDB {duckdb.__version__} in "
               f"process ({duck['threads']} threads). Parameters: seed {args.seed}.")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eddy", default="target/release/eddy", help="the eddy binary")
    ap.add_argument("--scale", type=int, default=100, help="hosts (24 hours at 10 s each)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per query and engine")
    ap.add_argument("--seed", type=int, default=1, help="seed of the query parameters")
    ap.add_argument("--keep", metavar="DIR", help="keep the data in DIR (new or empty)")
    ap.add_argument("--no-vm", action="store_true", help="skip VictoriaMetrics")
    ap.add_argument("--vm", metavar="BINARY", help="victoria-metrics binary (default: on PATH "
                    "or /usr/bin/victoria-metrics)")
    ap.add_argument("--query-timeout", type=float, default=600,
                    help="seconds before an Eddy query is cancelled")
    ap.add_argument("--json", metavar="FILE", help="write the raw results here")
    args = ap.parse_args()
    args.eddy = os.path.abspath(args.eddy)
    if not os.access(args.eddy, os.X_OK):
        raise SystemExit(f"no eddy binary at {args.eddy}")

    if args.keep:
        work = os.path.abspath(args.keep)
        os.makedirs(work, exist_ok=True)
        if os.listdir(work):
            raise SystemExit(f"--keep {work}: the directory is not empty")
    else:
        work = tempfile.mkdtemp(prefix="eddy-bench-tsbs-")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    engines = []
    try:
        lp_path = os.path.join(work, "cpu.lp")
        log(f"generating scale {args.scale} into {lp_path}")
        n_lines = generate(args.eddy, args.scale, lp_path)
        log(f"{n_lines:,} lines, {os.path.getsize(lp_path):,} bytes")

        t = time.perf_counter()
        measurement, table, tags, fields = parse_line_protocol(lp_path)
        log(f"parsed into Arrow in {time.perf_counter() - t:.1f} s: {table.num_rows:,} rows, "
            f"measurement {measurement}, {len(tags)} tags, {len(fields)} fields")
        if fields != FIELDS:
            raise SystemExit(f"unexpected fields {fields}")
        hosts = sorted(set(table.column("hostname").to_pylist()))

        server, eddy_facts = run_eddy_load(args, lp_path, n_lines, measurement, work)
        con, duck_facts = load_duckdb(measurement, table, tags, fields)
        del table
        log(f"duckdb: {duck_facts['count']:,} rows in {duck_facts['insert_seconds']:.2f} s")

        vm_facts = None if args.no_vm else run_vm(args, lp_path, n_lines, work)

        queries = build_queries(measurement, hosts, args.seed)
        engines = [EddyEngine(server, args.query_timeout), DuckEngine(con)]
        results = run_queries(queries, engines, args.runs)
        text = report(args, n_lines, eddy_facts, duck_facts, vm_facts, results)
        print(text, flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"scale": args.scale, "rows": n_lines, "runs": args.runs,
                           "seed": args.seed, "eddy": eddy_facts, "duckdb": duck_facts,
                           "victoria_metrics": vm_facts, "queries": results}, f, indent=2)
            log(f"raw results in {args.json}")
    finally:
        for engine in engines:
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - closing is best effort on the way out
                pass
        cleanup()
        if args.keep:
            log(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
