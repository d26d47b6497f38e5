#!/usr/bin/env python3
"""Drives Eddy with asyncpg: binary parameters and results, prepared statements, binary
COPY FROM STDIN, COPY TO STDOUT and portal-backed cursors (Execute with a row limit, and
`forward()`, which sends MOVE naming the portal); type introspection (arrays, set_type_codec);
a connection pool whose release resets each connection (`SELECT pg_advisory_unlock_all();
CLOSE ALL; UNLISTEN *; RESET ALL;`) and keeps it; set_config/current_setting; advisory locks
across connections.

Reads EDDY_PG_PORT from the environment; prints `ok: <check>` per check and exits non-zero
with a message on the first failure.
"""
import asyncio
import datetime as dt
import io
import os

import asyncpg

from common import PORT, T0, check, done, fail, minute, part, run

CONNECT = dict(host="127.0.0.1", port=PORT, user="eddy", database="eddy", ssl=False, timeout=10)


async def main():
    conn = await asyncpg.connect(**CONNECT)
    check("server_version >= 14", conn.get_server_version().major >= 14)
    with part("basics"):
        await basics(conn)
    await conn.close()
    with part("type introspection"):
        await introspection()
    with part("set_config and RESET ALL"):
        await settings()
    with part("advisory locks"):
        await advisory_locks()
    with part("pool"):
        await pool_cycles()
    done("asyncpg")


async def basics(conn):
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


async def introspection():
    """Types without a built-in asyncpg codec make asyncpg look them up in pg_type (its
    introspection query, run with `set_config('jit', 'off', false)` around it)."""
    conn = await asyncpg.connect(**CONNECT)
    jit_before = await conn.fetchval("SELECT current_setting('jit')")
    check("int4[] result (introspected)",
          await conn.fetchval("SELECT ARRAY[1, 2, 3]::int4[]"), [1, 2, 3])
    check("int8[] parameter and result",
          await conn.fetchval("SELECT $1::int8[]", [1, None, 2**40]), [1, None, 2**40])
    check("float8[] parameter and result",
          await conn.fetchval("SELECT $1::float8[]", [0.5, -2.25]), [0.5, -2.25])
    check("text[] of a column",
          await conn.fetchval("SELECT array_agg(s ORDER BY s) FROM"
                              " (VALUES ('b'), ('a')) AS t(s)"), ["a", "b"])
    check("the introspection put jit back", await conn.fetchval("SELECT current_setting('jit')"),
          jit_before)
    # set_type_codec looks the type up by name (pg_type joined with pg_namespace).
    await conn.set_type_codec("numeric", schema="pg_catalog", format="text",
                              encoder=str, decoder=float)
    check("numeric through a custom text codec", await conn.fetchval("SELECT 1.25::numeric"), 1.25)
    check("numeric parameter through the codec",
          await conn.fetchval("SELECT $1::numeric + 1", 2.5), 3.5)
    await conn.reset_type_codec("numeric", schema="pg_catalog")
    check("numeric after reset_type_codec is Decimal",
          type(await conn.fetchval("SELECT 1.25::numeric")).__name__, "Decimal")
    try:
        await conn.set_type_codec("no_such_type", schema="public", encoder=str, decoder=str)
        fail("set_type_codec of an unknown type succeeded")
    except ValueError as e:
        check("set_type_codec of an unknown type: ValueError naming it",
              "no_such_type" in str(e))
    check("connection usable after introspection", await conn.fetchval("SELECT 2::int4"), 2)
    await conn.close()


async def settings():
    conn = await asyncpg.connect(**CONNECT)
    initial = await conn.fetchval("SELECT current_setting('application_name')")
    check("application_name is a string", isinstance(initial, str))
    check("set_config returns the new value",
          await conn.fetchval("SELECT set_config('application_name', 'x', false)"), "x")
    check("current_setting after set_config",
          await conn.fetchval("SELECT current_setting('application_name')"), "x")
    check("SHOW after set_config", await conn.fetchval("SHOW application_name"), "x")
    async with conn.transaction():
        check("set_config is_local inside a transaction",
              await conn.fetchval("SELECT set_config('application_name', 'y', true)"), "y")
        check("current_setting inside the transaction",
              await conn.fetchval("SELECT current_setting('application_name')"), "y")
    check("is_local setting ends with the transaction",
          await conn.fetchval("SELECT current_setting('application_name')"), "x")
    check("current_setting(name, missing_ok) of an unknown setting is NULL",
          await conn.fetchval("SELECT current_setting('eddy.no_such_setting', true)"), None)
    await conn.execute("RESET ALL")
    check("RESET ALL restores the session's initial value",
          await conn.fetchval("SELECT current_setting('application_name')"), initial)
    check("RESET ALL keeps the user",
          tuple(await conn.fetchrow("SELECT session_user, current_user")), ("eddy", "eddy"))
    check("the reset query asyncpg sends on release", conn.get_reset_query(),
          "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;")
    check("the reset query runs", await conn.execute(conn.get_reset_query()), "RESET")
    check("user after the reset query",
          tuple(await conn.fetchrow("SELECT session_user, current_user")), ("eddy", "eddy"))
    check("UNLISTEN *", await conn.execute("UNLISTEN *"), "UNLISTEN")
    check("connection usable after UNLISTEN", await conn.fetchval("SELECT 1::int4"), 1)
    await conn.close()


async def eventually(what, probe, want, attempts=200):
    """Polls `probe` (up to `attempts` times, 50 ms apart) until it returns `want`: for what
    the server does after a connection closes."""
    got = None
    for _ in range(attempts):
        got = await probe()
        if got == want:
            break
        await asyncio.sleep(0.05)
    check(what, got, want)


async def advisory_locks():
    a = await asyncpg.connect(**CONNECT)
    b = await asyncpg.connect(**CONNECT)
    lock = "SELECT pg_try_advisory_lock($1::int8)"
    unlock = "SELECT pg_advisory_unlock($1::int8)"
    check("A takes lock 42", await a.fetchval(lock, 42), True)
    check("B cannot take lock 42", await b.fetchval(lock, 42), False)
    check("A takes lock 42 again (locks stack)", await a.fetchval(lock, 42), True)
    check("A unlocks 42 once", await a.fetchval(unlock, 42), True)
    check("B still cannot take 42 (A holds it once more)", await b.fetchval(lock, 42), False)
    check("A unlocks 42 again", await a.fetchval(unlock, 42), True)
    check("B takes lock 42 once A let go", await b.fetchval(lock, 42), True)
    check("A unlocking a lock it does not hold is false", await a.fetchval(unlock, 42), False)
    check("A cannot take 42 from B", await a.fetchval(lock, 42), False)
    check("two-key lock", await a.fetchval("SELECT pg_try_advisory_lock(1, 2)"), True)
    check("two-key lock is another lock than the one-key lock",
          await b.fetchval("SELECT pg_try_advisory_lock(1)"), True)
    check("B cannot take A's two-key lock",
          await b.fetchval("SELECT pg_try_advisory_lock(1, 2)"), False)
    check("A unlocks the two-key lock", await a.fetchval("SELECT pg_advisory_unlock(1, 2)"), True)
    check("pg_advisory_lock (waiting form) returns void",
          await b.fetchval("SELECT pg_advisory_lock(43)"), None)
    check("pg_advisory_unlock_all returns void",
          await b.fetchval("SELECT pg_advisory_unlock_all()"), None)
    check("A takes 42 after B's unlock_all", await a.fetchval(lock, 42), True)
    check("A takes 43 after B's unlock_all", await a.fetchval(lock, 43), True)
    check("A takes 1 after B's unlock_all", await a.fetchval(lock, 1), True)
    await a.execute("SELECT pg_advisory_unlock_all()")
    # Shared locks: any number of shared holders, no exclusive holder beside them.
    check("A takes shared 50", await a.fetchval("SELECT pg_try_advisory_lock_shared(50)"), True)
    check("B takes shared 50", await b.fetchval("SELECT pg_try_advisory_lock_shared(50)"), True)
    check("B cannot take 50 exclusively", await b.fetchval(lock, 50), False)
    check("A unlocks shared 50", await a.fetchval("SELECT pg_advisory_unlock_shared(50)"), True)
    check("B unlocks shared 50", await b.fetchval("SELECT pg_advisory_unlock_shared(50)"), True)
    check("B takes 50 exclusively", await b.fetchval(lock, 50), True)
    check("A cannot take shared 50", await a.fetchval("SELECT pg_try_advisory_lock_shared(50)"),
          False)
    await b.execute("SELECT pg_advisory_unlock_all()")
    # Transaction-level locks end with the transaction.
    async with a.transaction():
        check("A takes xact lock 60",
              await a.fetchval("SELECT pg_try_advisory_xact_lock(60)"), True)
        check("B cannot take 60 while A's transaction runs", await b.fetchval(lock, 60), False)
    check("B takes 60 once A's transaction committed", await b.fetchval(lock, 60), True)
    await b.execute("SELECT pg_advisory_unlock_all()")
    # A lock goes with the connection that held it.
    check("B takes lock 44", await b.fetchval(lock, 44), True)
    check("A cannot take 44", await a.fetchval(lock, 44), False)
    await b.close()
    await eventually("A takes 44 once B's connection closed",
                     lambda: a.fetchval(lock, 44), True)
    check("A unlocks 44", await a.fetchval(unlock, 44), True)
    await a.close()


async def pool_cycles():
    pool = await asyncpg.create_pool(**CONNECT, min_size=2, max_size=4)
    async with pool.acquire() as c:
        initial = await c.fetchval("SELECT current_setting('application_name')")
    seen = {}  # underlying connection object id -> backend pid
    cycles = 0

    async def worker(w):
        nonlocal cycles
        for i in range(30):
            async with pool.acquire() as c:
                con = c._con
                pid = await c.fetchval("SELECT pg_backend_pid()")
                if seen.setdefault(id(con), (con, pid))[1] != pid:
                    fail(f"pooled connection changed its backend pid to {pid}")
                n = w * 1000 + i
                got = await c.fetchval("SELECT $1::int8 * 2 + 1", n)
                if got != 2 * n + 1:
                    fail(f"pooled query: got {got!r}, want {2 * n + 1}")
                # What the last user set was reset on release.
                app = await c.fetchval("SELECT current_setting('application_name')")
                if app != initial:
                    fail(f"application_name after release and acquire: {app!r}")
                user = tuple(await c.fetchrow("SELECT session_user, current_user"))
                if user != ("eddy", "eddy"):
                    fail(f"user after release and acquire: {user!r}")
                await c.fetchval("SELECT set_config('application_name', $1, false)", f"w{n}")
                if i % 5 == 0:
                    # The worker's last lock went with the reset of the connection it was on.
                    if not await c.fetchval("SELECT pg_try_advisory_lock($1::int8)", 7000 + w):
                        fail(f"worker {w}: advisory lock {7000 + w} still held after release")
                cycles += 1

    await asyncio.gather(*(worker(w) for w in range(8)))
    check("pool acquire/release cycles", cycles, 240)
    cons = [con for con, _ in seen.values()]
    check("the pool never opened more than max_size connections", len(cons) <= 4, True)
    check("pooled connections were kept (none closed)",
          [con.is_closed() for con in cons], [False] * len(cons))
    pids = sorted(pid for _, pid in seen.values())
    check("each pooled connection its own backend", len(set(pids)), len(pids))
    holders = {id(h._con) for h in pool._holders if h._con is not None}
    check("the pool still holds the connections it used", set(seen) <= holders, True)
    # The reset on release unlocked the advisory locks the workers took.
    other = await asyncpg.connect(**CONNECT)
    got = [await other.fetchval("SELECT pg_try_advisory_lock($1::int8)", 7000 + w)
           for w in range(8)]
    check("release unlocked the pooled sessions' advisory locks", got, [True] * 8)
    await other.close()
    async with pool.acquire() as c:
        check("session_user after many resets", await c.fetchval("SELECT session_user"), "eddy")
    await pool.close()


if __name__ == "__main__":
    run(lambda: asyncio.run(main()))
