#!/usr/bin/env python3
"""Drives Eddy with psqlODBC (Debian's odbc-postgresql) through unixODBC and pyodbc: the
driver's connection start-up, a parameterized SELECT (server-side prepare) and typed values;
statement reuse (many executions with parameters on one cursor, the same SQL on new cursors,
cursors closed, which makes the driver close its server-side statements), with the driver's
default, UseServerSidePrepare=1 and UseServerSidePrepare=0; `DEALLOCATE` of an unknown name.

Reads EDDY_PG_PORT from the environment; prints `ok: <check>` per check and exits non-zero
with a message on the first failure.
"""
import configparser
import datetime as dt
import os

import pyodbc

from common import PORT, T0, check, done, fail, minute, part, run

ODBCINST = os.environ.get("ODBCSYSINI", "/etc") + "/odbcinst.ini"
DRIVER = "PostgreSQL Unicode"


def main():
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ODBCINST)
    print(f"odbcinst.ini drivers: {ini.sections()}")
    check(f"{DRIVER!r} registered in {ODBCINST}", DRIVER in ini.sections())
    print(f"driver library: {ini[DRIVER].get('Driver')}")
    check(f"{DRIVER!r} visible to unixODBC", DRIVER in pyodbc.drivers())

    # BoolsAsChar=0: report bool columns as SQL_BIT (Python bool) rather than '1'/'0' strings.
    conn = connect()
    check("SQL_DBMS_NAME", conn.getinfo(pyodbc.SQL_DBMS_NAME), "PostgreSQL")
    ver = conn.getinfo(pyodbc.SQL_DBMS_VER)
    check(f"SQL_DBMS_VER {ver!r} >= 14", int(ver.split(".")[0]) >= 14)

    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS odbc_weather")
    cur.execute(
        "CREATE TABLE odbc_weather (ts TIMESTAMP NOT NULL, station TEXT, temp DOUBLE PRECISION,"
        " n BIGINT, ok BOOLEAN, PRIMARY KEY (station, ts))")
    cur.execute(
        "INSERT INTO odbc_weather (ts, station, temp, n, ok) VALUES"
        " ('2024-01-01T00:00:00', 'oslo', -3.5, 1, true),"
        " ('2024-01-01T00:01:00', 'oslo', -3.0, 2, false),"
        " ('2024-01-01T00:02:00', 'oslo', -2.5, 3, true),"
        " ('2024-01-01T00:00:00', 'lima', 18.25, 4, true)")
    check("INSERT rowcount", cur.rowcount, 4)

    cur.execute(
        "SELECT ts, station, temp, n, ok FROM odbc_weather"
        " WHERE station = ? AND temp > ? AND n >= ? AND ts >= ? ORDER BY ts",
        "oslo", -3.2, 2, T0)
    rows = [tuple(r) for r in cur.fetchall()]
    check("parameterized SELECT", rows,
          [(minute(1), "oslo", -3.0, 2, False), (minute(2), "oslo", -2.5, 3, True)])
    check("result types", tuple(type(v) for v in rows[0]), (dt.datetime, str, float, int, bool))
    check("description type codes", [d[1] for d in cur.description],
          [dt.datetime, str, float, int, bool])

    cur.execute("SELECT count(*) FROM odbc_weather WHERE station = ?", "lima")
    check("count with a text parameter", cur.fetchone()[0], 1)

    for options in ("", "UseServerSidePrepare=1;", "UseServerSidePrepare=0;"):
        with part(f"statement reuse [{options or 'driver default'}]"):
            statement_reuse(options)
    with part("DEALLOCATE an unknown name"):
        deallocate_unknown(conn)
    conn.close()
    done("odbc")


def connect(options=""):
    return pyodbc.connect(
        f"Driver={{{DRIVER}}};Server=127.0.0.1;Port={PORT};Database=eddy;Uid=eddy;Pwd=;"
        f"SSLmode=disable;BoolsAsChar=0;{options}",
        autocommit=True, timeout=10)


def statement_reuse(options):
    tag = options or "default; "
    conn = connect(options)
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS odbc_reuse")
    cur.execute("CREATE TABLE odbc_reuse (ts TIMESTAMP NOT NULL, k TEXT, v BIGINT,"
                " PRIMARY KEY (k, ts))")
    # One cursor, one INSERT executed many times with parameters.
    rows = [(minute(i), f"k{i % 3}", i) for i in range(60)]
    for r in rows:
        cur.execute("INSERT INTO odbc_reuse (ts, k, v) VALUES (?, ?, ?)", *r)
    cur.executemany("INSERT INTO odbc_reuse (ts, k, v) VALUES (?, ?, ?)",
                    [(minute(100 + i), "k9", 100 + i) for i in range(20)])
    cur.execute("SELECT count(*), sum(v) FROM odbc_reuse")
    check(f"{tag}rows after 60 executions and an executemany of 20",
          tuple(cur.fetchone()), (80, sum(range(60)) + sum(range(100, 120))))
    # One cursor, one SELECT executed many times with different parameters.
    q = "SELECT count(*), max(v) FROM odbc_reuse WHERE k = ? AND v >= ?"
    wrong = []
    for i in range(60):
        k, lo = f"k{i % 3}", i
        want = [r[2] for r in rows if r[1] == k and r[2] >= lo]
        got = tuple(cur.execute(q, k, lo).fetchone())
        if got != (len(want), max(want) if want else None):
            wrong.append((k, lo, got))
    check(f"{tag}60 executions of one prepared SELECT on one cursor", wrong, [])
    # The same SQL on new cursors, each closed after use (the driver closes its statement).
    wrong = []
    for i in range(40):
        c = conn.cursor()
        got = c.execute("SELECT v FROM odbc_reuse WHERE k = ? ORDER BY ts LIMIT 1",
                        f"k{i % 3}").fetchone()[0]
        if got != i % 3:
            wrong.append((i, got))
        c.close()
    check(f"{tag}the same SQL on 40 new cursors, each closed", wrong, [])
    # Several cursors open at once, with different statements, closed out of order.
    a, b, c = conn.cursor(), conn.cursor(), conn.cursor()
    a.execute("SELECT v FROM odbc_reuse WHERE k = ? ORDER BY ts", "k1")
    b.execute("SELECT count(*) FROM odbc_reuse WHERE v < ?", 10)
    c.execute("SELECT max(ts) FROM odbc_reuse WHERE k = ?", "k9")
    check(f"{tag}second cursor", b.fetchone()[0], 10)
    b.close()
    check(f"{tag}third cursor", c.fetchone()[0], minute(119))
    check(f"{tag}first cursor, after the others ran",
          [r[0] for r in a.fetchall()], [v for _, k, v in rows if k == "k1"])
    a.close()
    c.close()
    # Prepared statements re-prepared after the ones before were closed.
    for i in range(3):
        with conn.cursor() as d:
            d.execute("SELECT ?::int8 * 2", i)
            check(f"{tag}re-prepared after closing, round {i}", d.fetchone()[0], 2 * i)
    cur.execute("SELECT count(*) FROM odbc_reuse")
    check(f"{tag}connection still usable", cur.fetchone()[0], 80)
    cur.close()
    conn.close()


def deallocate_unknown(conn):
    cur = conn.cursor()
    try:
        cur.execute("DEALLOCATE nosuch")
        fail("DEALLOCATE nosuch succeeded")
    except pyodbc.Error as e:
        print(f"DEALLOCATE nosuch: {e}")
        check("DEALLOCATE nosuch: SQLSTATE 26000", e.args[0], "26000")
        check("DEALLOCATE nosuch: names the statement", "nosuch" in str(e))
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM odbc_weather WHERE station = ?", "oslo")
    check("the next statement after the failed DEALLOCATE", cur.fetchone()[0], 3)
    cur.execute("SELECT ?::text || 'b'", "a")
    check("a prepared statement after the failed DEALLOCATE", cur.fetchone()[0], "ab")


if __name__ == "__main__":
    run(main)
