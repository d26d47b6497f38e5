#!/usr/bin/env python3
"""Walks the cpu table through psycopg named cursors (FETCH 10000 at a time, forward-only and
SCROLL), then with a plain SELECT, then MOVE FORWARD ALL. Usage: cursor-walk.py PGPORT."""
import psycopg, time, sys
c = psycopg.connect(host='127.0.0.1', port=int(sys.argv[1]), user='eddy', dbname='eddy', autocommit=True)
q = "SELECT time, hostname, usage_user FROM cpu"
t = time.time(); n = len(c.execute(q).fetchall()); plain = time.time() - t
for scroll in (False, True):
    with c.transaction():
        with c.cursor(name="walk", scrollable=scroll) as cur:
            cur.itersize = 10000
            t = time.time(); cur.execute(q); m = sum(1 for _ in cur); dt = time.time() - t
    print(f"{'SCROLL' if scroll else 'forward-only'} cursor, FETCH 10000 at a time: {m} rows in {dt:.2f} s ({m/dt:,.0f} rows/s)")
print(f"plain SELECT: {n} rows in {plain:.2f} s ({n/plain:,.0f} rows/s)")
with c.transaction():
    with c.cursor(name="skip") as cur:
        cur.execute(q)
        t = time.time(); c.execute("MOVE FORWARD ALL FROM skip"); dt = time.time() - t
        print(f"MOVE FORWARD ALL over {n} rows: {dt:.2f} s")
