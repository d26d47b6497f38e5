#!/usr/bin/env python3
"""Drives Eddy with asyncpg: binary parameters and results, prepared statements, binary
COPY FROM STDIN, COPY TO STDOUT and portal-backed cursors (Execute with a row limit, and
`forward()`, which sends MOVE naming the portal).

Reads EDDY_PG_PORT from the environment; prints `ok: <check>` per check and exits non-zero
with a message on the first failure.
"""
import asyncio
import datetime as dt
import io
import os

import asyncpg

from common import PORT, T0, check, minute, run


async def main():
    conn = await asyncpg.connect(host="127.0.0.1", port=PORT, user="eddy", database="eddy",
                                 ssl=False, timeout=10)
    check("server_version >= 14", conn.get_server_version().major >= 14)

    await conn.execute("DROP TABLE IF EXISTS apg_weather")
    await conn.execute(
        "CREATE TABLE apg_weather (ts TIMESTAMP NOT NULL, station TEXT, temp DOUBLE PRECISION,"
        " n BIGINT, ok BOOLEAN, PRIMARY KEY (station, ts))")
    # executemany: one prepared INSERT, parameters in binary format.
    await conn.executemany(
        "INSERT INTO apg_weather (ts, station, temp, n, ok) VALUES ($1, $2, $3, $4, $5)",
        [(minute(0), "oslo", -3.5, 1, True), (minute(1), "oslo", -3.0, 2, False),
         (minute(2), "oslo", -2.5, 3, True), (minute(3), "oslo", -2.0, 6, True),
         (minute(0), "lima", 18.25, 4, True)])
    check("count after executemany INSERT",
          await conn.fetchval("SELECT count(*) FROM apg_weather"), 5)

    rows = await conn.fetch(
        "SELECT ts, station, temp, n, ok FROM apg_weather"
        " WHERE station = $1 AND temp > $2 AND n >= $3 AND ok = $4 AND ts >= $5 ORDER BY ts",
        "oslo", -4.0, 1, True, T0)
    check("fetch with $1..$5 params", [tuple(r) for r in rows],
          [(minute(0), "oslo", -3.5, 1, True), (minute(2), "oslo", -2.5, 3, True),
           (minute(3), "oslo", -2.0, 6, True)])
    check("result types", tuple(type(v) for v in rows[0]),
          (dt.datetime, str, float, int, bool))
    check("record access by name", (rows[0]["station"], rows[0]["n"]), ("oslo", 1))

    check("fetchval('SELECT 1::int8')", await conn.fetchval("SELECT 1::int8"), 1)
    check("timestamp round trip", await conn.fetchval("SELECT $1::timestamp", minute(7)),
          minute(7))
    check("text round trip", await conn.fetchval("SELECT $1::text", "héllo"), "héllo")

    stmt = await conn.prepare(
        "SELECT count(*) AS c, max(temp) AS hi FROM apg_weather WHERE station = $1")
    check("prepared parameter types", [t.name for t in stmt.get_parameters()], ["text"])
    check("prepared result types", [(a.name, a.type.name) for a in stmt.get_attributes()],
          [("c", "int8"), ("hi", "float8")])
    check("prepared execution #1", tuple(await stmt.fetchrow("oslo")), (4, -2.0))
    check("prepared execution #2", tuple(await stmt.fetchrow("lima")), (1, 18.25))
    check("prepared execution #3", tuple(await stmt.fetchrow("nowhere")), (0, None))

    copied = [(minute(m), "bergen", 5.5 + m, 100 + m, m % 2 == 0) for m in range(4)]
    res = await conn.copy_records_to_table(
        "apg_weather", records=copied, columns=["ts", "station", "temp", "n", "ok"])
    check("copy_records_to_table status", res, f"COPY {len(copied)}")
    check("count after binary COPY FROM STDIN",
          await conn.fetchval("SELECT count(*) FROM apg_weather WHERE station = 'bergen'"),
          len(copied))

    buf = io.BytesIO()
    res = await conn.copy_from_query(
        "SELECT ts, station, temp, n, ok FROM apg_weather WHERE station = 'bergen' ORDER BY ts",
        output=buf, format="csv")
    check("copy_from_query status", res, f"COPY {len(copied)}")
    check("COPY TO STDOUT csv", buf.getvalue().decode().splitlines(), [
        "2024-01-01 00:00:00,bergen,5.5,100,t",
        "2024-01-01 00:01:00,bergen,6.5,101,f",
        "2024-01-01 00:02:00,bergen,7.5,102,t",
        "2024-01-01 00:03:00,bergen,8.5,103,f"])

    # Cursors are portals executed a few rows at a time (Execute with a row limit).
    async with conn.transaction():
        got = [r["n"] async for r in conn.cursor(
            "SELECT n FROM apg_weather WHERE station = $1 ORDER BY ts", "oslo", prefetch=2)]
    check("cursor with prefetch=2 returns every row", got, [1, 2, 3, 6])
    async with conn.transaction():
        cur = await conn.cursor("SELECT n FROM apg_weather WHERE station = $1 ORDER BY ts",
                                "bergen")
        check("cursor.fetch(3)", [r["n"] for r in await cur.fetch(3)], [100, 101, 102])
        check("cursor.fetchrow()", (await cur.fetchrow())["n"], 103)
        check("cursor exhausted", await cur.fetchrow(), None)
    # forward() sends `MOVE FORWARD n <portal>` as a simple query, naming the portal that Bind
    # made: protocol portals and SQL cursors share one namespace, as in PostgreSQL.
    async with conn.transaction():
        cur = await conn.cursor("SELECT n FROM apg_weather WHERE station = $1 ORDER BY ts",
                                "oslo")
        check("cursor.forward(2) before any fetch", await cur.forward(2), 2)
        check("cursor.fetch(1) after forward", [r["n"] for r in await cur.fetch(1)], [3])
        portal = cur._portal_name
        check("MOVE on the portal by name",
              await conn.execute(f"MOVE FORWARD {portal}"), "MOVE 1")
        try:
            await conn.execute(f"MOVE BACKWARD 1 {portal}")
            check("MOVE BACKWARD on a portal is refused", False)
        except asyncpg.exceptions.ObjectNotInPrerequisiteStateError as e:
            check("MOVE BACKWARD on a portal is refused (55000)", "only move forward" in str(e))
    async with conn.transaction():
        cur = await conn.cursor("SELECT n FROM apg_weather WHERE station = $1 ORDER BY ts",
                                "oslo")
        check("cursor.fetch(1)", [r["n"] for r in await cur.fetch(1)], [1])
        check("cursor.forward(5) past the end", await cur.forward(5), 3)
        check("cursor.fetch after the end", await cur.fetch(2), [])

    await conn.close()
    print("asyncpg: all checks passed")


if __name__ == "__main__":
    run(lambda: asyncio.run(main()))
