"""Load for the prepared point query of issue 4: CONNECTIONS asyncpg connections each run
`SELECT * FROM cpu WHERE hostname = $1 ORDER BY time DESC LIMIT 1` with a random host of
`eddy gen` (host_0 .. host_{HOSTS-1}) for SECONDS, then print the rate.

Usage: python scripts/point-query.py PG_PORT [CONNECTIONS [SECONDS [HOSTS]]]
"""

import asyncio
import random
import sys
import time

import asyncpg

SQL = "SELECT * FROM cpu WHERE hostname = $1 ORDER BY time DESC LIMIT 1"

async def worker(port, hosts, deadline, counts):
    c = await asyncpg.connect(host="127.0.0.1", port=port, user="eddy", database="eddy")
    stmt = await c.prepare(SQL)
    n = 0
    while time.monotonic() < deadline:
        row = await stmt.fetchrow(f"host_{random.randrange(hosts)}")
        if row is None:
            raise SystemExit("no row: load the data with eddy bench or eddy gen first")
        n += 1
    counts.append(n)
    await c.close()

async def main(port, conns, seconds, hosts):
    counts = []
    start = time.monotonic()
    await asyncio.gather(*(worker(port, hosts, start + seconds, counts) for _ in range(conns)))
    elapsed = time.monotonic() - start
    total = sum(counts)
    print(
        f"{total} queries in {elapsed:.1f} s over {conns} connections: "
        f"{total / elapsed:.0f} queries/s"
    )

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    asyncio.run(
        main(
            int(args[0]),
            int(args[1]) if len(args) > 1 else 4,
            float(args[2]) if len(args) > 2 else 10.0,
            int(args[3]) if len(args) > 3 else 100,
        )
    )
