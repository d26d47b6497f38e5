"""polars over ADBC's Flight SQL driver against Eddy: DataFrame.write_database (adbc_ingest,
creating then appending), pl.read_database on an ADBC connection with and without parameters,
cursor.fetch_polars, and DuckDB querying an Arrow table fetched through ADBC. Run by tests/e2e/flight_clients.rs against a fresh server.
"""
import datetime as dt
import os

import adbc_driver_flightsql.dbapi as flightsql
import polars as pl

from common import check, done, part, run

FLIGHT_PORT = int(os.environ["EDDY_FLIGHT_PORT"])
USER = os.environ.get("EDDY_FLIGHT_USER")
PASSWORD = os.environ.get("EDDY_FLIGHT_PASSWORD")
URI = f"grpc://127.0.0.1:{FLIGHT_PORT}"


def connect():
    db_kwargs = {"username": USER, "password": PASSWORD} if USER else None
    # Eddy has no transactions: every statement commits on its own.
    return flightsql.connect(URI, db_kwargs=db_kwargs, autocommit=True)


def main():
    with connect() as conn:
        with part("write_database creates, then appends"):
            df = pl.DataFrame({
                # A categorical column arrives dictionary-encoded: it becomes a tag.
                "host": pl.Series(["a", "b", "a"], dtype=pl.Categorical),
                "time": [dt.datetime(2024, 1, 1, 0, 0), dt.datetime(2024, 1, 1, 0, 0),
                         dt.datetime(2024, 1, 1, 0, 1)],
                "usage": [1.5, 2.5, 3.5],
                "note": ["x", None, "z"],
            })
            n = df.write_database("metrics", conn, engine="adbc", if_table_exists="fail")
            check("rows written on create", n, 3)
            more = pl.DataFrame({
                "host": pl.Series(["b"], dtype=pl.Categorical),
                "time": [dt.datetime(2024, 1, 1, 0, 1)],
                "usage": [4.5],
                "note": ["w"],
            })
            n = more.write_database("metrics", conn, engine="adbc", if_table_exists="append")
            check("rows written on append", n, 1)

        with part("read_database on the ADBC connection"):
            got = pl.read_database(
                "SELECT host, time, usage, note FROM metrics ORDER BY time, host", conn)
            check("columns", got.columns, ["host", "time", "usage", "note"])
            check("dtypes", [str(t) for t in got.dtypes],
                  ["String", "Datetime(time_unit='ns', time_zone=None)", "Float64", "String"])
            check("rows", got.rows(), [
                ("a", dt.datetime(2024, 1, 1, 0, 0), 1.5, "x"),
                ("b", dt.datetime(2024, 1, 1, 0, 0), 2.5, None),
                ("a", dt.datetime(2024, 1, 1, 0, 1), 3.5, "z"),
                ("b", dt.datetime(2024, 1, 1, 0, 1), 4.5, "w"),
            ])
            got = pl.read_database(
                "SELECT host, sum(usage) AS total FROM metrics WHERE usage > $1 "
                "GROUP BY host ORDER BY host",
                conn, execute_options={"parameters": (2.0,)})
            check("a parameter", got.rows(), [("a", 3.5), ("b", 7.0)])

        with part("cursor.fetch_polars"):
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) AS n, max(usage) AS top FROM metrics")
                got = cur.fetch_polars()
                check("aggregate", got.rows(), [(4, 4.5)])

        with part("DuckDB over an Arrow table fetched with ADBC (docs/flight.md's example)"):
            import duckdb
            with conn.cursor() as cur:
                cur.execute("SELECT host, time, usage FROM metrics WHERE time >= '2024-01-01T00:00:00'")
                tbl = cur.fetch_arrow_table()
            got = duckdb.sql(
                "SELECT host, avg(usage) AS avg FROM tbl GROUP BY host ORDER BY host").fetchall()
            check("DuckDB's averages", got, [("a", 2.5), ("b", 3.5)])

    done("flight_polars")


if __name__ == "__main__":
    run(main)
