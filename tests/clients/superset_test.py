#!/usr/bin/env python3
"""Drives Eddy with Apache Superset 6.1's own code, as its web app would, without the web app:
a Superset `Database` pointing at Eddy and a `SqlaTable` dataset kept in a throw-away SQLite
metadata store. Superset generates every statement (its PostgreSQL engine spec's time grains,
`convert_dttm` for time ranges, filters, `select_star`) and runs it through SQLAlchemy 1.4 and
psycopg2, as it does for PostgreSQL.

(a) dataset creation: schema and table lists, `get_table_metadata` (columns, foreign keys,
    indexes, table comment, select-star SQL), the inspector's primary key and constraints, a
    continuous aggregate listed as a view, `fetch_metadata` (column types, temporal column,
    default metric) and the data preview;
(b) a time-series chart at every time grain Superset offers for PostgreSQL, over a time range,
    with bucket averages and counts checked against buckets computed here;
(c) filters: IN, NOT IN, =, <>, LIKE, ILIKE, NOT LIKE, IS NULL, IS NOT NULL, boolean columns
    (as Superset compares them, and in custom SQL with 't'/'f' literals), LIKE ... ESCAPE.

Rows are written over HTTP line protocol first. Run with the Superset venv's Python
(scripts/install-test-deps.sh makes it); reads EDDY_PG_PORT and EDDY_HTTP_PORT.
"""
import datetime as dt
import logging
import os
import shutil
import tempfile
import urllib.request

from common import HTTP_PORT, PORT, check, check_close, done, fail, part, run

TABLE = "ss_cpu"
HOSTS = ["web_1", "webx1", "db-1", "db-2"]
REGIONS = ["eu", "us", None]
EPOCH = dt.datetime(1970, 1, 1)


def make_rows():
    """240 rows in 20 bursts of 12 a few days apart (crossing a year, quarter, month and week
    boundaries), each burst seconds to minutes apart with millisecond fractions, so every grain
    from a second to a year has buckets of one and of several rows."""
    state = 20240101

    def rnd(n):
        nonlocal state
        state = (state * 1103515245 + 12345) % 2**31
        return state % n

    rows = []
    seen = set()
    start = dt.datetime(2023, 12, 24, 5, 0, 0)
    for burst in range(20):
        t = start + dt.timedelta(days=5 * burst + rnd(3), hours=rnd(24), minutes=rnd(60))
        for _ in range(12):
            t += dt.timedelta(seconds=rnd(90), milliseconds=rnd(1000))
            host = HOSTS[rnd(len(HOSTS))]
            region = REGIONS[rnd(len(REGIONS))]
            if (host, region, t) in seen:
                continue
            seen.add((host, region, t))
            rows.append({"time": t, "host": host, "region": region,
                         "usage": rnd(400) / 4.0, "up": rnd(3) != 0})
    return rows


def line_protocol(rows):
    out = []
    for r in rows:
        tags = f",host={r['host']}" + (f",region={r['region']}" if r["region"] else "")
        ns = round((r["time"] - EPOCH).total_seconds() * 1000) * 1_000_000
        out.append(f"{TABLE}{tags} usage={r['usage']},up={'t' if r['up'] else 'f'} {ns}")
    return ("\n".join(out) + "\n").encode()


def write_rows(rows):
    req = urllib.request.Request(
        f"http://127.0.0.1:{HTTP_PORT}/api/v2/write?bucket=eddy&precision=ns",
        data=line_protocol(rows), method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        check("line protocol write accepted (204)", resp.status, 204)


def bucket(grain, t):
    """What PostgreSQL's DATE_TRUNC-based expression for `grain` gives for timestamp `t`."""
    if grain is None:
        return t
    if grain == "PT1S":
        return t.replace(microsecond=0)
    if grain in ("PT5S", "PT30S"):
        n = int(grain[2:-1])
        return t.replace(second=t.second // n * n, microsecond=0)
    if grain == "PT1M":
        return t.replace(second=0, microsecond=0)
    if grain in ("PT5M", "PT10M", "PT15M", "PT30M"):
        n = int(grain[2:-1])
        return t.replace(minute=t.minute // n * n, second=0, microsecond=0)
    if grain == "PT1H":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if grain == "P1D":
        return day
    if grain == "P1W":
        return day - dt.timedelta(days=day.weekday())
    if grain == "P1M":
        return day.replace(day=1)
    if grain == "P3M":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if grain == "P1Y":
        return day.replace(month=1, day=1)
    raise AssertionError(f"no expected buckets for time grain {grain!r}")


def expected_series(rows, grain, by_host=False):
    groups = {}
    for r in rows:
        key = (bucket(grain, r["time"]), r["host"]) if by_host else bucket(grain, r["time"])
        groups.setdefault(key, []).append(r["usage"])
    return {k: (sum(v) / len(v), len(v)) for k, v in groups.items()}


def to_datetime(v):
    """A pandas Timestamp (or datetime) from a Superset result frame as a naive datetime."""
    if hasattr(v, "to_pydatetime"):
        v = v.to_pydatetime()
    if v.tzinfo is not None:
        v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return v


def frame_rows(df, columns):
    return [tuple(row) for row in df[columns].itertuples(index=False, name=None)]


def superset_app(workdir):
    """Superset's Flask app with a SQLite metadata store in `workdir` and no caches."""
    cfg = os.path.join(workdir, "superset_config.py")
    with open(cfg, "w") as f:
        f.write(
            "import logging\n"
            "SECRET_KEY = 'eddy-superset-test-only-0123456789abcdef'\n"
            f"SQLALCHEMY_DATABASE_URI = 'sqlite:///{workdir}/superset.db'\n"
            "_NO_CACHE = {'CACHE_TYPE': 'NullCache'}\n"
            "CACHE_CONFIG = DATA_CACHE_CONFIG = FILTER_STATE_CACHE_CONFIG = _NO_CACHE\n"
            "EXPLORE_FORM_DATA_CACHE_CONFIG = THUMBNAIL_CACHE_CONFIG = _NO_CACHE\n"
            "LOG_LEVEL = logging.WARNING\n")
    os.environ["SUPERSET_CONFIG_PATH"] = cfg
    logging.basicConfig(level=logging.WARNING)
    from superset.app import create_app

    app = create_app()
    for name in ("superset", "alembic", "flask_appbuilder"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return app


def main():
    rows = make_rows()
    write_rows(rows)
    workdir = tempfile.mkdtemp(prefix="eddy-superset-")
    try:
        app = superset_app(workdir)
        with app.app_context():
            checks(rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    done("superset")


def checks(rows):
    import sqlalchemy as sa
    from flask_appbuilder import Model
    from superset.connectors.sqla.models import SqlaTable, TableColumn
    from superset.databases.utils import get_table_metadata
    from superset.db_engine_specs.postgres import PostgresEngineSpec
    from superset.extensions import db as metadata_db
    from superset.models.core import Database
    from superset.sql.parse import Table

    check("SQLAlchemy is Superset's 1.4", sa.__version__.startswith("1.4."))
    Model.metadata.create_all(metadata_db.engine)
    database = Database(
        database_name="eddy",
        sqlalchemy_uri=f"postgresql+psycopg2://eddy@127.0.0.1:{PORT}/eddy"
                       "?sslmode=disable&connect_timeout=10")
    metadata_db.session.add(database)
    metadata_db.session.commit()
    check("Superset picks its PostgreSQL engine spec", database.db_engine_spec, PostgresEngineSpec)
    table = Table(TABLE, "public")

    # (a) Dataset creation: what the "add dataset" page lists and reads.
    with part("schemas and tables"):
        schemas = database.get_all_schema_names()
        check("schema list has public", "public" in schemas)
        check("schema list leaves pg_catalog out", "pg_catalog" in schemas, False)
        names = {t for t, _, _ in database.get_all_table_names_in_schema(catalog=None,
                                                                       schema="public")}
        check(f"table list has {TABLE}", TABLE in names)
        check(f"has_table({TABLE})", database.has_table(table))

    with part("table metadata"):
        meta = get_table_metadata(database, table)
        types = {c["name"]: c["type"] for c in meta["columns"]}
        check("metadata column names", sorted(types),
              sorted(["time", "host", "region", "usage", "up"]))
        check("metadata column types", types, {
            "time": "TIMESTAMP", "host": "TEXT", "region": "TEXT",
            "usage": "DOUBLE_PRECISION", "up": "BOOLEAN"})
        check("metadata foreign keys", meta["foreignKeys"], [])
        check("metadata indexes (SQLAlchemy leaves the primary key's out)", meta["indexes"], [])
        check("metadata table comment", meta["comment"], None)
        select_star = " ".join(meta["selectStar"].split())
        check("metadata select star", select_star,
              f"SELECT time, host, region, usage, up FROM public.{TABLE} LIMIT 100")

    with part("inspector"):
        with database.get_inspector(schema="public") as insp:
            pk = insp.get_pk_constraint(TABLE, "public")
            check("primary key columns", sorted(pk["constrained_columns"]),
                  ["host", "region", "time"])
            check("primary key name", pk["name"], f"{TABLE}_pkey")
            check("unique constraints", insp.get_unique_constraints(TABLE, "public"), [])
            check("check constraints", insp.get_check_constraints(TABLE, "public"), [])
            check("table comment", insp.get_table_comment(TABLE, "public"), {"text": None})
            check("view list", database.get_all_view_names_in_schema(catalog=None,
                                                                     schema="public"), set())
    with part("a continuous aggregate is a materialized view"):
        with database.get_sqla_engine() as engine, engine.begin() as conn:
            conn.execute(sa.text(
                f"CREATE MATERIALIZED VIEW {TABLE}_1h AS SELECT date_bin('1 hour', time,"
                " TIMESTAMP '2000-01-01') AS bucket, host, avg(usage) AS usage"
                f" FROM {TABLE} GROUP BY bucket, host"))
        # SQLAlchemy 1.4's PostgreSQL dialect lists plain and materialized views together.
        check("view list has the materialized view",
              database.get_all_view_names_in_schema(catalog=None, schema="public"),
              {(f"{TABLE}_1h", "public", None)})
        check(f"has_view({TABLE}_1h)", database.has_view(Table(f"{TABLE}_1h", "public")))
        rollup = get_table_metadata(database, Table(f"{TABLE}_1h", "public"))
        check("materialized view columns", [(c["name"], c["type"]) for c in rollup["columns"]],
              [("bucket", "TIMESTAMP"), ("host", "TEXT"), ("usage", "DOUBLE_PRECISION")])
        df = database.get_df(f"SELECT count(*) AS n FROM {TABLE}_1h", None, "public")
        check("materialized view rows", int(df["n"][0]),
              len({(bucket("PT1H", r["time"]), r["host"]) for r in rows}))

    dataset = SqlaTable(table_name=TABLE, schema="public", database=database)
    metadata_db.session.add(dataset)
    metadata_db.session.commit()
    with part("dataset sync"):
        result = dataset.fetch_metadata()
        metadata_db.session.commit()
        check("sync adds every column", sorted(result.added),
              sorted(["time", "host", "region", "usage", "up"]))
        synced = {c.column_name: (c.type, bool(c.is_dttm)) for c in dataset.columns}
        check("synced column types and temporal flag", synced, {
            "time": ("TIMESTAMP WITHOUT TIME ZONE", True), "host": ("TEXT", False),
            "region": ("TEXT", False), "usage": ("DOUBLE PRECISION", False),
            "up": ("BOOLEAN", False)})
        check("main temporal column", dataset.main_dttm_col, "time")
        check("default metric", [(m.metric_name, m.expression) for m in dataset.metrics],
              [("count", "COUNT(*)")])

    # The chart dataset: the columns a sync gives (declared here too, so that the chart checks
    # run whatever the sync above found).
    chart = SqlaTable(table_name=TABLE, schema="public", database=database,
                      main_dttm_col="time")
    chart.columns = [
        TableColumn(column_name="time", type="TIMESTAMP WITHOUT TIME ZONE", is_dttm=True),
        TableColumn(column_name="host", type="TEXT"),
        TableColumn(column_name="region", type="TEXT"),
        TableColumn(column_name="usage", type="DOUBLE PRECISION"),
        TableColumn(column_name="up", type="BOOLEAN")]

    with part("data preview"):
        preview = database.select_star(table, limit=50, show_cols=True, indent=True,
                                       latest_partition=True,
                                       cols=[{"column_name": c.column_name, "name": c.column_name,
                                              "type": c.type} for c in chart.columns])
        df = database.get_df(preview, None, "public")
        check("preview columns", list(df.columns), ["time", "host", "region", "usage", "up"])
        check("preview row count (LIMIT 50)", len(df), 50)
        check("preview times are timestamps",
              all(isinstance(to_datetime(v), dt.datetime) for v in df["time"]))
        sample = df.iloc[0]
        mine = {(r["host"], r["time"]) for r in rows}
        check("a preview row is one that was written",
              (sample["host"], to_datetime(sample["time"])) in mine)

    # (b) Time-series charts at every grain, over a time range whose ends are row timestamps.
    ordered = sorted(rows, key=lambda r: r["time"])
    since, until = ordered[17]["time"], ordered[-23]["time"]
    in_range = [r for r in rows if since <= r["time"] < until]
    check("the range has rows and leaves some out", 0 < len(in_range) < len(rows))
    conv = PostgresEngineSpec.convert_dttm("TIMESTAMP WITHOUT TIME ZONE", since)
    check("convert_dttm uses TO_TIMESTAMP with microseconds", conv,
          f"TO_TIMESTAMP('{since:%Y-%m-%d %H:%M:%S.%f}', 'YYYY-MM-DD HH24:MI:SS.US')")

    avg = {"expressionType": "SIMPLE", "column": {"column_name": "usage"},
           "aggregate": "AVG", "label": "avg_usage"}
    count = {"expressionType": "SQL", "sqlExpression": "COUNT(*)", "label": "n"}

    def query(what, **query_obj):
        """Runs a Superset query object; returns (result frame, SQL)."""
        base = dict(granularity="time", from_dttm=since, to_dttm=until, is_timeseries=False,
                    metrics=[avg, count], columns=[], groupby=[], filter=[], extras={},
                    row_limit=10000)
        base.update(query_obj)
        result = chart.query(base)
        if result.status != "success":
            fail(f"{what}: Superset query failed: {result.error_message}\n{result.query}")
            return None, result.query
        return result.df, result.query

    grains = [g.duration for g in database.grains()]
    check("Superset offers PostgreSQL's 14 time grains",
          grains, ["PT1S", "PT5S", "PT30S", "PT1M", "PT5M", "PT10M", "PT15M", "PT30M", "PT1H",
                   "P1D", "P1W", "P1M", "P3M", "P1Y"])
    expressions = PostgresEngineSpec.get_time_grain_expressions()
    for grain in [None] + grains:
        with part(f"time grain {grain}"):
            # The legacy form: the grain expression AS __timestamp, GROUP BY it.
            df, sql = query(f"grain {grain}", is_timeseries=True,
                            extras={"time_grain_sqla": grain},
                            orderby=[(avg, False)], row_limit=5000)
            if df is None:
                continue
            expr = expressions[grain].format(col="time")
            check(f"grain {grain}: SQL groups by {expr}",
                  f"{expr} AS __timestamp" in sql and f"GROUP BY {expr}" in sql, True)
            got = {to_datetime(ts): (a, int(n)) for ts, a, n in
                   frame_rows(df, ["__timestamp", "avg_usage", "n"])}
            want = expected_series(in_range, grain)
            check(f"grain {grain}: buckets", sorted(got), sorted(want))
            check_close(f"grain {grain}: averages",
                        [got[k][0] for k in sorted(want) if k in got],
                        [want[k][0] for k in sorted(want)])
            check(f"grain {grain}: counts", [got.get(k, (0, 0))[1] for k in sorted(want)],
                  [want[k][1] for k in sorted(want)])
            avgs = list(df["avg_usage"])
            check(f"grain {grain}: ORDER BY the metric DESC",
                  all(a >= b for a, b in zip(avgs, avgs[1:])), True)

    # The ECharts form: the x-axis column with its grain, a series per host, a row limit.
    for grain in ("PT15M", "P1D", "P1M"):
        with part(f"x-axis chart {grain}"):
            x_axis = {"timeGrain": grain, "columnType": "BASE_AXIS", "sqlExpression": "time",
                      "label": "time", "expressionType": "SQL"}
            df, sql = query(f"x-axis {grain}", columns=[x_axis, "host"],
                            series_columns=["host"], orderby=[(avg, False)])
            if df is None:
                continue
            got = {(to_datetime(ts), h): (a, int(n)) for ts, h, a, n in
                   frame_rows(df, ["time", "host", "avg_usage", "n"])}
            want = expected_series(in_range, grain, by_host=True)
            check(f"x-axis {grain} by host: series", sorted(got), sorted(want))
            check_close(f"x-axis {grain} by host: averages",
                        [got[k][0] for k in sorted(want) if k in got],
                        [want[k][0] for k in sorted(want)])
            check(f"x-axis {grain} by host: counts",
                  [got.get(k, (0, 0))[1] for k in sorted(want)],
                  [want[k][1] for k in sorted(want)])
    with part("row limit"):
        df, sql = query("row limit", columns=["host"], orderby=[(count, False)], row_limit=2)
        if df is not None:
            per_host = {}
            for r in in_range:
                per_host[r["host"]] = per_host.get(r["host"], 0) + 1
            top = sorted(per_host.values(), reverse=True)[:2]
            check("LIMIT 2 ordered by COUNT(*) DESC", [int(n) for n in df["n"]], top)

    # (c) Filters, as the filter bar and adhoc filters send them, counted per host.
    def per_host(selected):
        out = {}
        for r in selected:
            out[r["host"]] = out.get(r["host"], 0) + 1
        return out

    def filtered(what, want_rows, filters=(), where=None):
        with part(f"filter {what}"):
            extras = {"where": where} if where else {}
            df, sql = query(f"filter {what}", columns=["host"], metrics=[count],
                            filter=list(filters), extras=extras, orderby=[(count, False)])
            if df is None:
                return
            got = {h: int(n) for h, n in frame_rows(df, ["host", "n"])}
            if not check(f"filter {what}: rows per host", got, per_host(want_rows)):
                print(sql)

    r_ = in_range
    filtered("host IN", [r for r in r_ if r["host"] in ("web_1", "db-2")],
             [{"col": "host", "op": "IN", "val": ["web_1", "db-2"]}])
    filtered("host NOT IN", [r for r in r_ if r["host"] not in ("web_1", "db-2")],
             [{"col": "host", "op": "NOT IN", "val": ["web_1", "db-2"]}])
    filtered("host =", [r for r in r_ if r["host"] == "webx1"],
             [{"col": "host", "op": "==", "val": "webx1"}])
    filtered("host <>", [r for r in r_ if r["host"] != "webx1"],
             [{"col": "host", "op": "!=", "val": "webx1"}])
    filtered("host LIKE", [r for r in r_ if r["host"].startswith("web")],
             [{"col": "host", "op": "LIKE", "val": "web%"}])
    filtered("host LIKE with _", [r for r in r_ if r["host"] in ("web_1", "webx1")],
             [{"col": "host", "op": "LIKE", "val": "web_1"}])
    filtered("host ILIKE", [r for r in r_ if r["host"].startswith("db")],
             [{"col": "host", "op": "ILIKE", "val": "DB-%"}])
    filtered("host NOT LIKE", [r for r in r_ if not r["host"].startswith("db")],
             [{"col": "host", "op": "NOT LIKE", "val": "db%"}])
    filtered("region IS NULL", [r for r in r_ if r["region"] is None],
             [{"col": "region", "op": "IS NULL"}])
    filtered("region IS NOT NULL", [r for r in r_ if r["region"] is not None],
             [{"col": "region", "op": "IS NOT NULL"}])
    filtered("region IN with <NULL>", [r for r in r_ if r["region"] in ("eu", None)],
             [{"col": "region", "op": "IN", "val": ["eu", "<NULL>"]}])
    filtered("up = true", [r for r in r_ if r["up"]],
             [{"col": "up", "op": "==", "val": True}])
    filtered("up = false", [r for r in r_ if not r["up"]],
             [{"col": "up", "op": "==", "val": False}])
    filtered("up <> true", [r for r in r_ if not r["up"]],
             [{"col": "up", "op": "!=", "val": True}])
    filtered("up IN (false)", [r for r in r_ if not r["up"]],
             [{"col": "up", "op": "IN", "val": [False]}])
    filtered("up IS TRUE", [r for r in r_ if r["up"]],
             [{"col": "up", "op": "IS TRUE"}])
    filtered("up IS FALSE", [r for r in r_ if not r["up"]],
             [{"col": "up", "op": "IS FALSE"}])
    filtered("two filters together",
             [r for r in r_ if r["host"] != "db-1" and r["up"] and r["region"] is not None],
             [{"col": "host", "op": "!=", "val": "db-1"}, {"col": "up", "op": "==", "val": True},
              {"col": "region", "op": "IS NOT NULL"}])
    # Custom SQL filters, typed by hand: PostgreSQL's boolean literals and LIKE ... ESCAPE.
    filtered("custom SQL up = 'f'", [r for r in r_ if not r["up"]], where="up = 'f'")
    filtered("custom SQL up = 't'", [r for r in r_ if r["up"]], where="up = 't'")
    filtered("custom SQL up <> 'f'", [r for r in r_ if r["up"]], where="up <> 'f'")
    filtered("custom SQL up IN ('f')", [r for r in r_ if not r["up"]], where="up IN ('f')")
    filtered("custom SQL up = 'false'", [r for r in r_ if not r["up"]], where="up = 'false'")
    filtered("custom SQL LIKE ESCAPE '^'", [r for r in r_ if r["host"] == "web_1"],
             where="host LIKE 'web^_%' ESCAPE '^'")
    filtered("custom SQL NOT LIKE ESCAPE '^'", [r for r in r_ if r["host"] != "web_1"],
             where="host NOT LIKE 'web^_%' ESCAPE '^'")
    filtered("custom SQL time range TO_TIMESTAMP",
             [r for r in r_ if r["time"] >= dt.datetime(2024, 2, 1)],
             where="time >= TO_TIMESTAMP('2024-02-01 00:00:00.000000', "
                   "'YYYY-MM-DD HH24:MI:SS.US')")

    # Superset's SQLAlchemy engine, used directly: LIKE with an escape character.
    with part("SQLAlchemy LIKE escape"):
        with database.get_sqla_engine() as engine, engine.connect() as conn:
            t = sa.table(TABLE, sa.column("host"), schema="public")
            stmt = sa.select(sa.func.count()).select_from(t).where(
                t.c.host.like("web^_%", escape="^"))
            check("like(..., escape='^')", conn.execute(stmt).scalar(),
                  sum(1 for r in rows if r["host"] == "web_1"))
            stmt = sa.select(sa.func.count()).select_from(t).where(
                t.c.host.contains("_", autoescape=True))
            check("contains('_', autoescape=True)", conn.execute(stmt).scalar(),
                  sum(1 for r in rows if "_" in r["host"]))


if __name__ == "__main__":
    run(main)
