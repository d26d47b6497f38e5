#!/usr/bin/env python3
"""Arrow Flight SQL throughput, side by side with line protocol on the same rows.

1. Loads TSBS cpu-only data (`eddy bench --scale HOSTS` over DAYS days, line protocol over
   HTTP) into a fresh server and keeps its rows/s; restarts it (which flushes) and waits
   until compaction has merged each day into one segment, as a store at rest is.
2. DoGet of `SELECT hostname, time, <10 fields> FROM cpu` (12 columns) over one stream, then
   over the parallel endpoints the server offers, fetched on threads: Arrow bytes/s.
3. The whole table (the same rows, all 21 columns) fetched as Arrow is loaded with ADBC's
   `adbc_ingest` into a second fresh server: rows/s, and its ratio to the line-protocol rate.

Usage (after `cargo build --release` and scripts/install-test-deps.sh):
    ~/.cache/eddy-venv/bin/python scripts/bench-flight.py --hosts 1160 --days 1
(1160 hosts for one day at TSBS's 10 s interval is 10,022,400 rows.)
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight

FIELDS = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
          "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, eddy, data_dir):
        self.eddy, self.data_dir = eddy, data_dir
        self.start()

    def start(self):
        self.http, self.pg, self.flight = free_port(), free_port(), free_port()
        self.proc = subprocess.Popen(
            [self.eddy, "serve", "--data-dir", self.data_dir,
             "--http-addr", f"127.0.0.1:{self.http}",
             "--pg-addr", f"127.0.0.1:{self.pg}",
             "--flight-addr", f"127.0.0.1:{self.flight}",
             "--compaction-quiet-ms", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.flight), 0.2).close()
                socket.create_connection(("127.0.0.1", self.http), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def compacted(port, timeout=600):
    """Waits until every partition of `cpu` is one segment; returns the segments' rows, bytes."""
    sql = ("SELECT count(*), count(DISTINCT partition), sum(rows), sum(bytes) "
           "FROM eddy_segments WHERE table_name = 'cpu'")
    deadline = time.time() + timeout
    while True:
        conn = flightsql.connect(f"grpc://127.0.0.1:{port}")
        cur = conn.cursor()
        cur.execute(sql)
        files, parts, rows, nbytes = cur.fetchone()
        cur.close()
        conn.close()
        if files == parts and files > 0:
            return rows, nbytes
        if time.time() > deadline:
            raise SystemExit(f"not compacted after {timeout} s: {files} segments, {parts} days")
        time.sleep(1)


def do_get(port, ticket, endpoints=None):
    options = flight.FlightCallOptions(
        headers=[(b"x-eddy-endpoints", str(endpoints).encode())] if endpoints else [])
    c = flight.FlightClient(f"grpc://127.0.0.1:{port}")
    reader = c.do_get(ticket, options)
    n_bytes = n_rows = 0
    t = time.perf_counter()
    first = None
    for chunk in reader:
        if first is None:
            first = time.perf_counter() - t
        n_rows += chunk.data.num_rows
        n_bytes += chunk.data.nbytes
    c.close()
    return n_rows, n_bytes, first


def flight_info(port, sql, endpoints):
    c = flight.FlightClient(f"grpc://127.0.0.1:{port}")
    options = flight.FlightCallOptions(headers=[(b"x-eddy-endpoints", str(endpoints).encode())])
    info = c.get_flight_info(flight.FlightDescriptor.for_command(sql.encode()), options)
    c.close()
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eddy", default="target/release/eddy")
    ap.add_argument("--hosts", type=int, default=1160)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--endpoints", type=int, default=2)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="eddy-bench-flight-")
    end_day = 1 + args.days
    try:
        a = Server(args.eddy, os.path.join(tmp, "a"))
        out = subprocess.run(
            [args.eddy, "bench", "--scale", str(args.hosts),
             "--start", "2024-01-01T00:00:00Z", "--end", f"2024-01-{end_day:02d}T00:00:00Z",
             "--connections", "2", "--batch-size", "5000",
             "--url", f"http://127.0.0.1:{a.http}", "--server-pid", str(a.proc.pid)],
            check=True, capture_output=True, text=True).stdout
        m = re.search(r"([\d,]+) rows/s", out)
        lp_rate = float(m.group(1).replace(",", "")) if m else float("nan")
        print(f"line protocol over HTTP: {lp_rate:,.0f} rows/s")
        a.stop()
        a.start()
        t = time.perf_counter()
        rows, nbytes = compacted(a.flight)
        print(f"compacted: {rows:,} rows in {nbytes / 1e6:.1f} MB of segments "
              f"({nbytes / rows / 10:.3f} bytes per field value), "
              f"{time.perf_counter() - t:.1f} s after the restart")

        sql = "SELECT hostname, time, " + ", ".join(FIELDS) + " FROM cpu"
        for run in range(args.runs):
            info = flight_info(a.flight, sql, 1)
            t = time.perf_counter()
            rows, nbytes, first = do_get(a.flight, info.endpoints[0].ticket)
            dt = time.perf_counter() - t
            print(f"DoGet one stream, run {run + 1}: {rows:,} rows, {nbytes / 1e9:.2f} GB "
                  f"in {dt:.2f} s = {nbytes / dt / 1e9:.2f} GB/s, {rows / dt:,.0f} rows/s, "
                  f"first batch after {first:.3f} s")
        for run in range(args.runs):
            info = flight_info(a.flight, sql, args.endpoints)
            t = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(len(info.endpoints)) as pool:
                parts = list(pool.map(lambda e: do_get(a.flight, e.ticket), info.endpoints))
            dt = time.perf_counter() - t
            rows = sum(p[0] for p in parts)
            nbytes = sum(p[1] for p in parts)
            print(f"DoGet {len(info.endpoints)} endpoints in parallel, run {run + 1}: "
                  f"{rows:,} rows, {nbytes / dt / 1e9:.2f} GB/s")

        # The same rows, every column, as Arrow: what adbc_ingest then loads.
        info = flight_info(a.flight, "SELECT * FROM cpu", 1)
        c = flight.FlightClient(f"grpc://127.0.0.1:{a.flight}")
        table = c.do_get(info.endpoints[0].ticket).read_all()
        c.close()
        a.stop()
        print(f"table to ingest: {table.num_rows:,} rows, {table.num_columns} columns, "
              f"{table.nbytes / 1e9:.2f} GB")
        for run in range(args.runs):
            b = Server(args.eddy, os.path.join(tmp, f"b{run}"))
            conn = flightsql.connect(f"grpc://127.0.0.1:{b.flight}")
            cur = conn.cursor()
            t = time.perf_counter()
            n = cur.adbc_ingest("cpu", table, mode="create")
            dt = time.perf_counter() - t
            cur.close()
            conn.close()
            b.stop()
            shutil.rmtree(os.path.join(tmp, f"b{run}"), ignore_errors=True)
            print(f"adbc_ingest, run {run + 1}: {n:,} rows in {dt:.2f} s = "
                  f"{n / dt:,.0f} rows/s, {n / dt / lp_rate:.2f}x line protocol")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
