"""ADBC's Flight SQL driver (the DB-API of adbc_driver_flightsql) against Eddy: DDL and INSERT
through cursor.execute, queries fetched as Arrow and as pandas, parameters ($1), executemany,
adbc_get_objects, adbc_get_table_schema, adbc_get_table_types, adbc_get_info, and
adbc_ingest in create, append and create_append modes read back with SQL; with a wrong
password refused when the server has users. Run by tests/e2e/flight_clients.rs against a fresh
server.
"""
import datetime as dt
import os

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa

from common import check, done, part, run

FLIGHT_PORT = int(os.environ["EDDY_FLIGHT_PORT"])
USER = os.environ.get("EDDY_FLIGHT_USER")
PASSWORD = os.environ.get("EDDY_FLIGHT_PASSWORD")
URI = f"grpc://127.0.0.1:{FLIGHT_PORT}"
UTC = dt.timezone.utc


def connect(password=None):
    db_kwargs = None
    if USER:
        db_kwargs = {"username": USER, "password": password or PASSWORD}
    return flightsql.connect(URI, db_kwargs=db_kwargs)


def find_table(objects, name):
    for catalog in objects:
        for schema in catalog["catalog_db_schemas"] or []:
            for table in schema["db_schema_tables"] or []:
                if table["table_name"] == name:
                    return catalog["catalog_name"], schema["db_schema_name"], table
    return None


def main():
    if USER:
        with part("credentials"):
            try:
                with connect(password="wrong") as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchall()
                check("a wrong password fails", False)
            except adbc_driver_manager.Error as e:
                check("a wrong password is refused", "authentication failed" in str(e))

    with connect() as conn, conn.cursor() as cur:
        with part("DDL and INSERT through cursor.execute"):
            cur.execute("CREATE TABLE weather (time TIMESTAMP NOT NULL, station TEXT, "
                        "temp DOUBLE PRECISION, rain BIGINT, PRIMARY KEY (station, time))")
            cur.execute("INSERT INTO weather VALUES "
                        "('2024-01-01T00:00:00', 'oslo', -3.5, 1), "
                        "('2024-01-01T01:00:00', 'bergen', 4.5, 12)")
            cur.execute("SELECT count(*) AS n FROM weather")
            check("rows inserted", cur.fetchall(), [(2,)])

        with part("a query as Arrow, pandas and rows"):
            sql = "SELECT station, time, temp, rain FROM weather ORDER BY time"
            cur.execute(sql)
            table = cur.fetch_arrow_table()
            check("Arrow types", [str(t) for t in table.schema.types],
                  ["string", "timestamp[ns]", "double", "int64"])
            check("Arrow values", table.column("station").to_pylist(), ["oslo", "bergen"])
            cur.execute(sql)
            df = cur.fetch_df()
            check("pandas columns", list(df.columns), ["station", "time", "temp", "rain"])
            check("pandas values", df["temp"].tolist(), [-3.5, 4.5])
            cur.execute(sql)
            check("DB-API rows", cur.fetchall(), [
                ("oslo", dt.datetime(2024, 1, 1, 0, 0), -3.5, 1),
                ("bergen", dt.datetime(2024, 1, 1, 1, 0), 4.5, 12),
            ])
            check("description", [d[0] for d in cur.description],
                  ["station", "time", "temp", "rain"])

        with part("parameters"):
            sql = "SELECT station FROM weather WHERE temp > $1 ORDER BY station"
            cur.execute(sql, (0,))
            check("one parameter", cur.fetchall(), [("bergen",)])
            cur.execute(sql, (-10.0,))
            check("bound again", cur.fetchall(), [("bergen",), ("oslo",)])
            cur.executemany(
                "INSERT INTO weather (time, station, temp, rain) VALUES ($1, $2, $3, $4)",
                [(dt.datetime(2024, 1, 1, 2, 0), "tromso", -9.0, 0),
                 (dt.datetime(2024, 1, 1, 3, 0), "bodo", -1.0, 3)])
            cur.execute("SELECT station, rain FROM weather WHERE temp < -5")
            check("executemany wrote every row", cur.fetchall(), [("tromso", 0)])

        with part("metadata"):
            objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
            found = find_table(objects, "weather")
            check("get_objects finds the table", found is not None, True)
            catalog, schema, table = found
            check("its catalog and schema", (catalog, schema), ("eddy", "public"))
            check("its type", table["table_type"], "BASE TABLE")
            check("its columns", [c["column_name"] for c in table["table_columns"]],
                  ["time", "station", "temp", "rain"])
            schema = conn.adbc_get_table_schema("weather")
            check("get_table_schema", [(f.name, str(f.type)) for f in schema], [
                ("time", "timestamp[ns]"), ("station", "string"), ("temp", "double"),
                ("rain", "int64")])
            check("get_table_types", sorted(conn.adbc_get_table_types()),
                  ["BASE TABLE", "SYSTEM TABLE", "VIEW"])
            info = conn.adbc_get_info()
            check("get_info names the server", info.get("vendor_name"), "eddy")

        with part("adbc_ingest"):
            readings = pa.table({
                "host": pa.array(["a", "b"]).dictionary_encode(),
                "time": pa.array([dt.datetime(2024, 1, 1, tzinfo=UTC)] * 2,
                                 pa.timestamp("us", tz="UTC")),
                "usage": pa.array([1.5, 2.5]),
            })
            check("create", cur.adbc_ingest("readings", readings, mode="create"), 2)
            more = pa.table({
                "host": pa.array(["a"]).dictionary_encode(),
                "time": pa.array([dt.datetime(2024, 1, 1, 0, 1, tzinfo=UTC)],
                                 pa.timestamp("us", tz="UTC")),
                "usage": pa.array([3.5]),
            })
            check("append", cur.adbc_ingest("readings", more, mode="append"), 1)
            try:
                cur.adbc_ingest("readings", more, mode="create")
                check("create over an existing table fails", False)
            except adbc_driver_manager.Error as e:
                check("create over an existing table is refused", "already exists" in str(e))
            wrong = pa.table({
                "time": pa.array([dt.datetime(2024, 1, 1, tzinfo=UTC)],
                                 pa.timestamp("us", tz="UTC")),
                "usage": pa.array(["high"]),
            })
            try:
                cur.adbc_ingest("readings", wrong, mode="append")
                check("text into a float column fails", False)
            except adbc_driver_manager.Error as e:
                message = str(e)
                check("the error names the column and both types",
                      all(w in message for w in ['"usage"', "Float64", "Utf8"]), True)
            check("create_append creates",
                  cur.adbc_ingest("readings2", readings, mode="create_append"), 2)
            check("create_append appends",
                  cur.adbc_ingest("readings2", more, mode="create_append"), 1)
            cur.execute("SELECT host, usage FROM readings ORDER BY time, host")
            check("read back", cur.fetchall(), [("a", 1.5), ("b", 2.5), ("a", 3.5)])
            cur.execute("SELECT count(*) FROM readings2")
            check("read back the second table", cur.fetchall(), [(3,)])
            schema = conn.adbc_get_table_schema("readings")
            check("the dictionary column became a tag (text)", str(schema.field("host").type),
                  "string")

    done("flight_adbc")


if __name__ == "__main__":
    run(main)
