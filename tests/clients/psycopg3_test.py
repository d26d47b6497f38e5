#!/usr/bin/env python3
"""Drives Eddy with psycopg 3 (libpq): parameters, binary results, COPY, server-side cursors,
and type lookups with `TypeInfo.fetch` (pg_type by `to_regtype`) and adapters registered
with what it finds.

Reads EDDY_PG_PORT from the environment; prints `ok: <check>` per check and exits non-zero
with a message on the first failure.
"""
import datetime as dt
import os
import sys
import traceback

import psycopg
from psycopg import pq

from common import PORT, T0, check, done, minute, part


def main():
    conn = psycopg.connect(host="127.0.0.1", port=PORT, user="eddy", dbname="eddy",
                           sslmode="disable", connect_timeout=10, autocommit=True)
    check("server_version >= 14", conn.info.server_version >= 140000)
    version = conn.execute("SELECT version()").fetchone()[0]
    check("version() mentions PostgreSQL", "PostgreSQL" in version)

    conn.execute("DROP TABLE IF EXISTS py3_weather")
    conn.execute(
        "CREATE TABLE py3_weather (ts TIMESTAMP NOT NULL, station TEXT, temp DOUBLE PRECISION,"
        " n BIGINT, ok BOOLEAN, PRIMARY KEY (station, ts))")
    cur = conn.execute(
        "INSERT INTO py3_weather (ts, station, temp, n, ok) VALUES"
        " ('2024-01-01T00:00:00', 'oslo', -3.5, 1, true),"
        " ('2024-01-01T00:01:00', 'oslo', -3.0, 2, false),"
        " ('2024-01-01T00:02:00', 'oslo', -2.5, 3, true),"
        " ('2024-01-01T00:00:00', 'lima', 18.25, 4, true),"
        " ('2024-01-01T00:01:00', 'lima', 19.0, 5, false)")
    check("INSERT rowcount", cur.rowcount, 5)

    # Server-side binding: psycopg 3 sends $1.. with typed parameters (extended protocol).
    q = ("SELECT ts, station, temp, n, ok FROM py3_weather"
         " WHERE station = %s AND temp > %s AND n >= %s AND ok = %s AND ts >= %s ORDER BY ts")
    args = ("oslo", -4.0, 1, True, T0)
    want = [(minute(0), "oslo", -3.5, 1, True), (minute(2), "oslo", -2.5, 3, True)]
    for binary in (False, True):
        rows = conn.cursor().execute(q, args, binary=binary).fetchall()
        fmt = "binary" if binary else "text"
        check(f"parameterized SELECT ({fmt} results)", rows, want)
        r = rows[0]
        check(f"result types ({fmt})", tuple(type(v) for v in r),
              (dt.datetime, str, float, int, bool))

    rows = conn.execute("SELECT %s::text, %s::float8, %s::int8, %s::bool, %s::timestamp",
                        ("héllo", 2.5, 2**40, False, minute(7))).fetchall()
    check("parameter round trip", rows, [("héllo", 2.5, 2**40, False, minute(7))])

    cur = conn.cursor()
    cur.execute("SELECT 1 AS a; SELECT 2 AS b, 'x' AS c")
    check("multi-statement: first result", cur.fetchall(), [(1,)])
    check("multi-statement: has second result", cur.nextset(), True)
    check("multi-statement: second result", cur.fetchall(), [(2, "x")])

    cur.execute("")
    check("empty query status", cur.pgresult.status, pq.ExecStatus.EMPTY_QUERY)

    conn.execute("SET TIME ZONE 'UTC'")
    check("SHOW timezone", conn.execute("SHOW timezone").fetchone()[0], "UTC")
    conn.execute("SET application_name = 'eddy-py3'")
    check("SHOW application_name", conn.execute("SHOW application_name").fetchone()[0],
          "eddy-py3")

    with conn.transaction():
        conn.execute("INSERT INTO py3_weather (ts, station, temp, n, ok)"
                     " VALUES (%s, %s, %s, %s, %s)", (minute(3), "oslo", -2.0, 6, True))
    check("insert inside transaction is visible",
          conn.execute("SELECT count(*) FROM py3_weather").fetchone()[0], 6)

    copied = [(minute(m), "bergen", 5.0 + m, 100 + m, m % 2 == 0) for m in range(4)]
    with cur.copy("COPY py3_weather (ts, station, temp, n, ok) FROM STDIN") as copy:
        for row in copied:
            copy.write_row(row)
    check("COPY FROM STDIN rowcount", cur.rowcount, len(copied))
    check("count after COPY FROM STDIN",
          conn.execute("SELECT count(*) FROM py3_weather WHERE station = 'bergen'").fetchone()[0],
          len(copied))

    with cur.copy("COPY (SELECT ts, station, temp, n, ok FROM py3_weather"
                  " WHERE station = 'bergen' ORDER BY ts) TO STDOUT") as copy:
        copy.set_types(["timestamp", "text", "float8", "int8", "bool"])
        back = list(copy.rows())
    check("COPY (SELECT ...) TO STDOUT rows", back, copied)
    with cur.copy("COPY (SELECT station, n FROM py3_weather WHERE station = 'bergen'"
                  " ORDER BY ts) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
        text = b"".join(bytes(b) for b in copy).decode()
    check("COPY TO STDOUT CSV with a header", text,
          "station,n\n" + "".join(f"bergen,{100 + m}\n" for m in range(4)))
    check("COPY TO rowcount leaves the header out", cur.rowcount, 4)

    cols = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = 'py3_weather'"
        " ORDER BY ordinal_position").fetchall()
    check("information_schema.columns", cols, [
        ("ts", "timestamp without time zone"), ("station", "text"),
        ("temp", "double precision"), ("n", "bigint"), ("ok", "boolean")])

    # Named (server-side) cursors: DECLARE with parameters, Describe of the cursor as a portal,
    # then FETCH FORWARD n a page at a time, in text and binary.
    q = "SELECT ts, n FROM py3_weather WHERE station = %s ORDER BY ts"
    every = conn.execute(q, ("oslo",)).fetchall()
    check("oslo has rows to page through", len(every) >= 4, True)
    for binary in (False, True):
        fmt = "binary" if binary else "text"
        with conn.transaction():
            with conn.cursor(name=f"c_{fmt}", binary=binary) as sc:
                sc.execute(q, ("oslo",))
                check(f"named cursor description ({fmt})",
                      [d.name for d in sc.description], ["ts", "n"])
                first = sc.fetchmany(2)
                check(f"named cursor fetchmany(2) ({fmt})", first, every[:2])
                check(f"named cursor fetchone ({fmt})", sc.fetchone(), every[2])
                check(f"named cursor fetchall ({fmt})", sc.fetchall(), every[3:])
                check(f"named cursor at the end ({fmt})", sc.fetchone(), None)
    # Iteration fetches itersize rows per round trip; WITH HOLD works outside a transaction.
    with conn.cursor(name="held", withhold=True) as sc:
        sc.itersize = 2
        sc.execute(q, ("oslo",))
        check("WITH HOLD cursor iterated in pages", list(sc), every)
    # Unknown cursors and backward movement give PostgreSQL's errors.
    try:
        conn.execute("FETCH 1 FROM no_such_cursor")
        sys.exit("FAIL: FETCH from an unknown cursor succeeded")
    except psycopg.errors.InvalidCursorName as e:
        check("FETCH from an unknown cursor: 34000 naming it", "no_such_cursor" in str(e), True)
    # SCROLL cursors move both ways: psycopg's scroll() sends MOVE [ABSOLUTE] n; FETCH and
    # MOVE report PostgreSQL's command tags; pg_cursors lists the session's open cursors.
    with conn.transaction():
        with conn.cursor(name="s", scrollable=True) as sc:
            sc.execute(q, ("oslo",))
            check("SCROLL cursor fetchmany(3)", sc.fetchmany(3), every[:3])
            sc.scroll(-2)
            check("scroll(-2) then fetchone", sc.fetchone(), every[1])
            sc.scroll(0, mode="absolute")
            check("scroll(0, 'absolute') then fetchall", sc.fetchall(), every)
            sc.scroll(-2)
            check("scroll(-2) from the end then fetchone", sc.fetchone(), every[-1])
            raw = conn.cursor()
            check("FETCH BACKWARD 2 returns the nearest row first",
                  raw.execute('FETCH BACKWARD 2 FROM "s"').fetchall(), every[-2:-4:-1])
            check("FETCH command tag", raw.statusmessage, "FETCH 2")
            raw.execute("MOVE 1 FROM s")
            check("MOVE command tag", raw.statusmessage, "MOVE 1")
            check("FETCH LAST", raw.execute("FETCH LAST s").fetchall(), every[-1:])
            check("FETCH ABSOLUTE -2", raw.execute("FETCH ABSOLUTE -2 IN s").fetchall(),
                  every[-2:-1])
            check("FETCH RELATIVE 0 fetches the current row again",
                  raw.execute("FETCH RELATIVE 0 FROM s").fetchall(), every[-2:-1])
            raw.execute("MOVE FORWARD ALL FROM s")
            check("MOVE FORWARD ALL counts the rows passed", raw.statusmessage, "MOVE 1")
            check("pg_cursors lists the cursor",
                  conn.execute("SELECT name, is_holdable, is_binary, is_scrollable,"
                               " starts_with(statement, 'DECLARE \"s\" SCROLL CURSOR'),"
                               " creation_time <= now() FROM pg_cursors").fetchall(),
                  [("s", False, False, True, True, True)])
    check("pg_cursors is empty after COMMIT",
          conn.execute("SELECT count(*) FROM pg_catalog.pg_cursors").fetchone()[0], 0)
    # A cursor without SCROLL refuses to go back, as PostgreSQL's NO SCROLL does, and stays
    # usable where it was.
    with conn.transaction():
        with conn.cursor(name="f") as sc:
            sc.execute(q, ("oslo",))
            check("forward-only cursor fetchone", sc.fetchone(), every[0])
            try:
                with conn.transaction():
                    sc.scroll(-1)
                sys.exit("FAIL: a cursor without SCROLL moved backward")
            except psycopg.errors.ObjectNotInPrerequisiteState as e:
                check("backward MOVE refused with 55000 naming SCROLL", "SCROLL" in str(e), True)
            sc.scroll(1)
            check("forward-only cursor skips ahead", sc.fetchone(), every[2])
    # COMMIT closes cursors declared without WITH HOLD.
    with conn.transaction():
        conn.execute("DECLARE gone CURSOR FOR SELECT 1")
    try:
        conn.execute("FETCH 1 FROM gone")
        sys.exit("FAIL: a cursor outlived its transaction")
    except psycopg.errors.InvalidCursorName:
        check("COMMIT closes cursors without WITH HOLD", True, True)
    check("connection usable after cursor errors",
          conn.execute("SELECT count(*) FROM py3_weather").fetchone()[0] > 0, True)

    with part("TypeInfo.fetch"):
        type_info(conn)
    conn.close()
    done("psycopg3")


def type_info(conn):
    from psycopg.types import TypeInfo
    from psycopg.types.numeric import FloatLoader

    want = {  # name asked for: (typname, oid, array oid, regtype)
        "int4": ("int4", 23, 1007, "integer"),
        "integer": ("int4", 23, 1007, "integer"),
        "text": ("text", 25, 1009, "text"),
        "timestamptz": ("timestamptz", 1184, 1185, "timestamp with time zone"),
        "timestamp": ("timestamp", 1114, 1115, "timestamp without time zone"),
        "float8": ("float8", 701, 1022, "double precision"),
        "bool": ("bool", 16, 1000, "boolean"),
        "numeric": ("numeric", 1700, 1231, "numeric"),
        "int4[]": ("_int4", 1007, 0, "integer[]"),
        "pg_catalog.text": ("text", 25, 1009, "text"),
    }
    for name, (typname, oid, array_oid, regtype) in want.items():
        info = TypeInfo.fetch(conn, name)
        check(f"TypeInfo.fetch({name!r})",
              None if info is None else (info.name, info.oid, info.array_oid, info.regtype),
              (typname, oid, array_oid, regtype))
    check("TypeInfo.fetch('int4').delimiter", TypeInfo.fetch(conn, "int4").delimiter, ",")
    check("TypeInfo.fetch('nosuchtype') is None", TypeInfo.fetch(conn, "nosuchtype"), None)
    check("TypeInfo.fetch('public.nosuchtype') is None",
          TypeInfo.fetch(conn, "public.nosuchtype"), None)
    check("to_regtype of an unknown name is NULL, without an error",
          conn.execute("SELECT to_regtype('nosuchtype') IS NULL,"
                       " to_regtype('integer')::oid::int8").fetchone(), (True, 23))
    check("pg_type_is_visible(int4)", conn.execute("SELECT pg_type_is_visible(23)").fetchone()[0],
          True)

    # Register what was found on a connection of its own, and use it: numeric loaded as float,
    # and numeric[] through the array type the TypeInfo names.
    with psycopg.connect(host="127.0.0.1", port=PORT, user="eddy", dbname="eddy",
                         sslmode="disable", connect_timeout=10, autocommit=True) as c2:
        info = TypeInfo.fetch(c2, "numeric")
        info.register(c2)
        check("registered TypeInfo is found by name", c2.adapters.types["numeric"].oid, 1700)
        check("registered TypeInfo is found by oid", c2.adapters.types[1700].name, "numeric")
        c2.adapters.register_loader(info.oid, FloatLoader)  # a text-format loader
        row = c2.execute("SELECT 1.25::numeric, %s::numeric + 1, ARRAY[0.5, 2]::numeric[]",
                         ("2.5",)).fetchone()
        check("numeric through the registered loader", row, (1.25, 3.5, [0.5, 2.0]))
        check("numeric loaded as float", [type(row[0]), type(row[2][0])], [float, float])
        info = TypeInfo.fetch(c2, "int4")
        info.register(c2)
        rows = c2.execute("SELECT %s::int4[], ARRAY[1, NULL, 3]::int4[]", ([4, 5],)).fetchone()
        check("int4[] round trip after register", rows, ([4, 5], [1, None, 3]))


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except psycopg.Error as e:
        traceback.print_exc()
        diag = getattr(e, "diag", None)
        code = diag.sqlstate if diag is not None else None
        sys.exit(f"FAIL: {type(e).__name__} (SQLSTATE {code}): {e}")
