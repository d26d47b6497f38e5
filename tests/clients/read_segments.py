"""Reads Eddy segment files with pyarrow and with DuckDB, as an outside engine would.

Usage: read_segments.py FILE...   Prints the rows of all files, one "host,time_ns,a,b" line
each, sorted, after checking that pyarrow and DuckDB read the very same rows.
"""

import sys

import duckdb
import pyarrow.parquet as pq


def fmt(v):
    return "null" if v is None else repr(v)


def main(files):
    arrow_rows = []
    for f in files:
        t = pq.read_table(f)
        times = t.column("time").cast("int64").to_pylist()
        for host, time, a, b in zip(t.column("host").to_pylist(), times,
                                    t.column("a").to_pylist(), t.column("b").to_pylist()):
            arrow_rows.append(f"{host},{time},{fmt(a)},{fmt(b)}")
    con = duckdb.connect()
    duck_rows = []
    for f in files:
        for host, time, a, b in con.execute(
            "SELECT host, epoch_ns(time), a, b FROM read_parquet(?)", [f]
        ).fetchall():
            duck_rows.append(f"{host},{time},{fmt(a)},{fmt(b)}")
    arrow_rows.sort()
    duck_rows.sort()
    if arrow_rows != duck_rows:
        sys.exit(f"pyarrow and DuckDB disagree: {len(arrow_rows)} vs {len(duck_rows)} rows")
    print("\n".join(arrow_rows))


if __name__ == "__main__":
    main(sys.argv[1:])
