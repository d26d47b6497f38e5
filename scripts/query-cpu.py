#!/usr/bin/env python3
"""Server CPU, wall time and minor page faults per query, read from /proc around N runs.

Used for the A/B figures in docs/benchmarks.md (alternate two binaries on the same data
directory, a few rounds each): CPU time and page faults of the server process move far less
with this machine's noise than wall time does.

Usage (server already running, e.g. on a --keep directory of scripts/bench-tsbs.py):
    ~/.cache/eddy-venv/bin/python scripts/query-cpu.py --pid $(pgrep -f 'eddy serve') \\
        --port 5433 "SELECT ..." 20
The query may also be a file name ending in .sql.
"""
import argparse
import os
import time

import psycopg


def stat(pid):
    """(user + system CPU seconds, minor page faults) of process `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pid", type=int, required=True, help="the server's process id")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5433)
    p.add_argument("query", help="SQL text, or a .sql file")
    p.add_argument("runs", type=int, help="timed runs, after one warm-up")
    a = p.parse_args()
    sql = open(a.query).read() if a.query.endswith(".sql") else a.query
    conn = psycopg.connect(host=a.host, port=a.port, user="eddy", dbname="eddy",
                           autocommit=True, prepare_threshold=None)
    conn.execute(sql).fetchall()
    cpu0, faults0 = stat(a.pid)
    t0 = time.perf_counter()
    for _ in range(a.runs):
        conn.execute(sql).fetchall()
    wall = (time.perf_counter() - t0) / a.runs * 1000
    cpu1, faults1 = stat(a.pid)
    cpu = (cpu1 - cpu0) / a.runs * 1000
    print(f"faults {(faults1 - faults0) / a.runs:.0f}/query, wall {wall:.1f} ms/query, "
          f"server cpu {cpu:.1f} ms/query, cores busy {cpu / wall:.2f}")


if __name__ == "__main__":
    main()
