#!/usr/bin/env python3
"""Drives Eddy with psqlODBC (Debian's odbc-postgresql) through unixODBC and pyodbc: the
driver's connection start-up, a parameterized SELECT (server-side prepare) and typed values.

Reads EDDY_PG_PORT from the environment; prints `ok: <check>` per check and exits non-zero
with a message on the first failure.
"""
import configparser
import datetime as dt
import os

import pyodbc

from common import PORT, T0, check, minute, run

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
    conn = pyodbc.connect(
        f"Driver={{{DRIVER}}};Server=127.0.0.1;Port={PORT};Database=eddy;Uid=eddy;Pwd=;"
        "SSLmode=disable;BoolsAsChar=0;",
        autocommit=True, timeout=10)
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

    conn.close()
    print("odbc: all checks passed")


if __name__ == "__main__":
    run(main)
