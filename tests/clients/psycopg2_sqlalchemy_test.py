#!/usr/bin/env python3
"""Drives Eddy with SQLAlchemy over psycopg2: dialect start-up, reflection through the
Inspector (pg_catalog queries: schemas, tables, views, a continuous aggregate as a
materialized view, columns and types, primary key, indexes, foreign keys, unique and check
constraints), Core table reflection and text() queries with bound parameters.

Runs with SQLAlchemy 2 from the venv, and again with SQLAlchemy 1.4 put first on PYTHONPATH
(scripts/install-test-deps.sh installs it apart); EDDY_EXPECT_SQLALCHEMY names the version
(`1.4` or `2`) the program must be running under, so that the run cannot silently use the
other one. Reads EDDY_PG_PORT from the environment; prints `ok: <check>` per check and exits
non-zero with a message on the first failure.
"""
import datetime as dt
import os

import sqlalchemy as sa
from sqlalchemy import inspect, text
from sqlalchemy import types as sqltypes

from common import PORT, T0, check, done, minute, part, run

SA14 = sa.__version__.startswith("1.4.")


def main():
    print(f"SQLAlchemy {sa.__version__} from {os.path.dirname(sa.__file__)}")
    want = os.environ.get("EDDY_EXPECT_SQLALCHEMY")
    if want:
        check(f"running under SQLAlchemy {want}", sa.__version__.startswith(want + "."))
    engine = sa.create_engine(
        f"postgresql+psycopg2://eddy@127.0.0.1:{PORT}/eddy",
        connect_args={"sslmode": "disable", "connect_timeout": 10},
        **({"future": True} if SA14 else {}))

    # The first connection runs the dialect's start-up queries (version, current_schema, ...).
    with engine.connect() as conn:
        check("server version >= 14", engine.dialect.server_version_info[0] >= 14)
        check("current_schema()", conn.execute(text("SELECT current_schema()")).scalar(),
              "public")

    with engine.begin() as conn:
        conn.execute(text("DROP MATERIALIZED VIEW IF EXISTS sa_weather_1m"))
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

    with engine.begin() as conn:
        # A continuous aggregate: a materialized view to the catalog.
        conn.execute(text(
            "CREATE MATERIALIZED VIEW sa_weather_1m AS SELECT date_bin('1 minute', ts,"
            " TIMESTAMP '2000-01-01') AS bucket, station, avg(temp) AS avg_temp,"
            " count(*) AS n FROM sa_weather GROUP BY bucket, station"))

    insp = inspect(engine)
    with part("inspector catalog"):
        inspector_catalog(insp)
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
    done("psycopg2_sqlalchemy")


def inspector_catalog(insp):
    schemas = insp.get_schema_names()
    check("get_schema_names() has public and information_schema",
          {"public", "information_schema"} <= set(schemas), True)
    check("get_schema_names() leaves pg_* schemas out",
          [s for s in schemas if s.startswith("pg_")], [])
    check("default schema", insp.default_schema_name, "public")
    tables = insp.get_table_names()
    check("get_table_names() has sa_weather", "sa_weather" in tables)
    check("get_table_names() leaves the materialized view out", "sa_weather_1m" in tables, False)
    check("get_table_names(schema='public') is the same list",
          sorted(insp.get_table_names(schema="public")), sorted(tables))
    if SA14:
        # 1.4 lists plain and materialized views unless told otherwise.
        check("get_view_names() (1.4: plain and materialized)",
              "sa_weather_1m" in insp.get_view_names())
        check("get_view_names(include=('plain',))",
              "sa_weather_1m" in insp.get_view_names(include=("plain",)), False)
        check("get_view_names(include=('materialized',))",
              "sa_weather_1m" in insp.get_view_names(include=("materialized",)))
    else:
        check("get_view_names() (2.x: plain views only)",
              "sa_weather_1m" in insp.get_view_names(), False)
        check("get_materialized_view_names()",
              "sa_weather_1m" in insp.get_materialized_view_names())
    check("has_table(sa_weather_1m) (a view is a table to has_table)",
          insp.has_table("sa_weather_1m"), True)
    check("has_table(sa_weather, schema='public')", insp.has_table("sa_weather", "public"))
    check("has_table in another schema", insp.has_table("sa_weather", "information_schema"),
          False)

    cols = insp.get_columns("sa_weather")
    check("get_columns order", [c["name"] for c in cols], ["ts", "station", "temp", "n", "ok"])
    # Unlike PostgreSQL's, a primary key column other than time may be NULL in Eddy: the key
    # names the tags, and a line of line protocol may leave a tag out.
    check("get_columns nullable", {c["name"]: c["nullable"] for c in cols},
          {"ts": False, "station": True, "temp": True, "n": True, "ok": True})
    check("get_columns defaults", [c["default"] for c in cols], [None] * 5)
    check("get_columns autoincrement off", [c.get("autoincrement") for c in cols],
          [False] * 5)
    pg = insp.dialect
    check("get_columns types as PostgreSQL names them",
          [c["type"].compile(dialect=pg) for c in cols],
          ["TIMESTAMP WITHOUT TIME ZONE", "TEXT", "DOUBLE PRECISION", "BIGINT", "BOOLEAN"])
    view_cols = insp.get_columns("sa_weather_1m")
    check("materialized view columns",
          [(c["name"], c["type"].compile(dialect=pg)) for c in view_cols],
          [("bucket", "TIMESTAMP WITHOUT TIME ZONE"), ("station", "TEXT"),
           ("avg_temp", "DOUBLE PRECISION"), ("n", "BIGINT")])

    pk = insp.get_pk_constraint("sa_weather")
    check("get_pk_constraint", (pk["name"], pk["constrained_columns"]),
          ("sa_weather_pkey", ["station", "ts"]))
    check("get_indexes (the primary key's index is not listed)", insp.get_indexes("sa_weather"),
          [])
    check("get_foreign_keys", insp.get_foreign_keys("sa_weather"), [])
    check("get_unique_constraints", insp.get_unique_constraints("sa_weather"), [])
    check("get_check_constraints", insp.get_check_constraints("sa_weather"), [])
    check("get_table_comment", insp.get_table_comment("sa_weather"), {"text": None})
    check("get_pk_constraint of the materialized view",
          insp.get_pk_constraint("sa_weather_1m")["constrained_columns"], [])
    check("get_indexes of the materialized view", insp.get_indexes("sa_weather_1m"), [])
    check("get_foreign_keys of the materialized view", insp.get_foreign_keys("sa_weather_1m"),
          [])
    if not SA14:
        # 2.x reflects a whole schema in one round of queries per kind of object.
        multi = insp.get_multi_columns(filter_names=["sa_weather"])
        check("get_multi_columns", [c["name"] for c in multi[(None, "sa_weather")]],
              ["ts", "station", "temp", "n", "ok"])
        multi = insp.get_multi_pk_constraint(filter_names=["sa_weather"])
        check("get_multi_pk_constraint",
              multi[(None, "sa_weather")]["constrained_columns"], ["station", "ts"])


if __name__ == "__main__":
    run(main)
