#!/usr/bin/env python3
"""Drives Eddy with SQLAlchemy 2 over psycopg2: dialect start-up, reflection through the
Inspector (pg_catalog queries), Core table reflection and text() queries with bound parameters.

Reads EDDY_PG_PORT from the environment; prints `ok: <check>` per check and exits non-zero
with a message on the first failure.
"""
import datetime as dt
import os

import sqlalchemy as sa
from sqlalchemy import inspect, text
from sqlalchemy import types as sqltypes

from common import PORT, T0, check, minute, run


def main():
    engine = sa.create_engine(
        f"postgresql+psycopg2://eddy@127.0.0.1:{PORT}/eddy",
        connect_args={"sslmode": "disable", "connect_timeout": 10})

    # The first connection runs the dialect's start-up queries (version, current_schema, ...).
    with engine.connect() as conn:
        check("server version >= 14", engine.dialect.server_version_info[0] >= 14)
        check("current_schema()", conn.execute(text("SELECT current_schema()")).scalar(),
              "public")

    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS sa_weather"))
        conn.execute(text(
            "CREATE TABLE sa_weather (ts TIMESTAMP NOT NULL, station TEXT,"
            " temp DOUBLE PRECISION, n BIGINT, ok BOOLEAN, PRIMARY KEY (station, ts))"))
        conn.execute(
            text("INSERT INTO sa_weather (ts, station, temp, n, ok)"
                 " VALUES (:ts, :station, :temp, :n, :ok)"),
            [{"ts": minute(0), "station": "oslo", "temp": -3.5, "n": 1, "ok": True},
             {"ts": minute(1), "station": "oslo", "temp": -3.0, "n": 2, "ok": False},
             {"ts": minute(2), "station": "oslo", "temp": -2.5, "n": 3, "ok": True},
             {"ts": minute(0), "station": "lima", "temp": 18.25, "n": 4, "ok": True}])

    insp = inspect(engine)
    check("has_table(sa_weather)", insp.has_table("sa_weather"), True)
    check("has_table(no_such_table)", insp.has_table("no_such_table"), False)
    check("get_table_names() contains sa_weather", "sa_weather" in insp.get_table_names())

    cols = {c["name"]: c["type"] for c in insp.get_columns("sa_weather")}
    check("get_columns names", sorted(cols), sorted(["ts", "station", "temp", "n", "ok"]))
    check("ts is TIMESTAMP without time zone",
          isinstance(cols["ts"], sqltypes.TIMESTAMP) and not cols["ts"].timezone)
    check("station is TEXT/VARCHAR", isinstance(cols["station"], sqltypes.String))
    check("temp is DOUBLE_PRECISION/FLOAT", isinstance(cols["temp"], sqltypes.Float))
    check("n is BIGINT", isinstance(cols["n"], sqltypes.BigInteger))
    check("ok is BOOLEAN", isinstance(cols["ok"], sqltypes.Boolean))

    pk = insp.get_pk_constraint("sa_weather")
    check("get_pk_constraint constrained_columns", pk["constrained_columns"], ["station", "ts"])
    check("get_indexes returns a list", isinstance(insp.get_indexes("sa_weather"), list))

    # Core reflection builds on the same Inspector queries.
    table = sa.Table("sa_weather", sa.MetaData(), autoload_with=engine)
    check("reflected Table primary key", [c.name for c in table.primary_key.columns],
          ["station", "ts"])

    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT ts, station, temp, n, ok FROM sa_weather"
                 " WHERE station = :s AND temp > :t AND n >= :n AND ok = :ok AND ts >= :ts"
                 " ORDER BY ts"),
            {"s": "oslo", "t": -4.0, "n": 1, "ok": True, "ts": T0}).all()
        check("text() query with bound params", [tuple(r) for r in rows],
              [(minute(0), "oslo", -3.5, 1, True), (minute(2), "oslo", -2.5, 3, True)])
        check("result types", tuple(type(v) for v in rows[0]),
              (dt.datetime, str, float, int, bool))

        n = conn.execute(
            sa.select(sa.func.count()).select_from(table).where(table.c.station == "lima")
        ).scalar_one()
        check("Core select() on reflected table", n, 1)

        rows = conn.execute(
            sa.select(table.c.station, sa.func.max(table.c.temp).label("hi"))
            .group_by(table.c.station).order_by(table.c.station)).all()
        check("Core GROUP BY on reflected table", [tuple(r) for r in rows],
              [("lima", 18.25), ("oslo", -2.5)])

        # stream_results: psycopg2's named cursor (DECLARE ... CURSOR WITHOUT HOLD, then
        # FETCH FORWARD n), a page of yield_per rows at a time.
        every = conn.execute(
            sa.select(table.c.ts, table.c.n).order_by(table.c.station, table.c.ts)).all()
        streamed = conn.execution_options(stream_results=True, yield_per=2).execute(
            sa.select(table.c.ts, table.c.n).order_by(table.c.station, table.c.ts))
        pages = [[tuple(r) for r in page] for page in streamed.partitions()]
        check("stream_results pages of yield_per rows", [len(p) for p in pages][:1], [2])
        check("stream_results rows", [r for p in pages for r in p], [tuple(r) for r in every])

    engine.dispose()
    print("psycopg2_sqlalchemy: all checks passed")


if __name__ == "__main__":
    run(main)
