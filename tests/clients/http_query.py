"""The HTTP query API, /api/v3/query_sql, read the way Python programs read it: Arrow IPC and
Parquet with pyarrow, CSV and JSON with the standard library. It writes a few rows over the
line-protocol API, then asks for them in every format, by GET and by POST, with parameters, and
checks the errors. Run by tests/e2e/http_query.rs against a fresh server.
"""
import csv
import io
import json
import urllib.error
import urllib.parse
import urllib.request

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

from common import HTTP_PORT, check, done, part, run

BASE = f"http://127.0.0.1:{HTTP_PORT}"
API = "/api/v3/query_sql"
LP = (
    'weather,station=oslo temp=-3.5,rain=1i,ok=true,note="cold, \\"very\\"" 1704067200000000000\n'
    "weather,station=bergen temp=4.5,rain=12i,ok=false 1704070800000000000\n"
)
SQL = "SELECT station, time, temp, rain, ok, note FROM weather ORDER BY time"
COLUMNS = ["station", "time", "temp", "rain", "ok", "note"]
T0_NS = 1704067200000000000
HOUR_NS = 3600 * 10**9
JSON_ROWS = [
    {"station": "oslo", "time": "2024-01-01T00:00:00", "temp": -3.5, "rain": 1, "ok": True,
     "note": 'cold, "very"'},
    # A null is left out of its row.
    {"station": "bergen", "time": "2024-01-01T01:00:00", "temp": 4.5, "rain": 12, "ok": False},
]


def request(method, path, body=None, headers=None):
    """(status, headers, body) of a request; an error status is returned, not raised."""
    req = urllib.request.Request(BASE + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get(params, accept=None):
    headers = {"Accept": accept} if accept else {}
    return request("GET", API + "?" + urllib.parse.urlencode(params), headers=headers)


def post(body):
    return request("POST", API, json.dumps(body).encode(),
                   {"Content-Type": "application/json"})


def ok(name, answer, content_type):
    """Checks a 200 answer's content type; returns its body."""
    status, headers, body = answer
    check(f"{name}: status", status, 200) or print(body[:500])
    check(f"{name}: content type", headers.get("Content-Type"), content_type)
    return body


def check_table(name, table):
    """The weather rows as pyarrow reads them, types included."""
    check(f"{name}: columns", table.column_names, COLUMNS)
    types = {f.name: f.type for f in table.schema}
    check(f"{name}: time type", types["time"], pa.timestamp("ns"))
    check(f"{name}: temp type", types["temp"], pa.float64())
    check(f"{name}: rain type", types["rain"], pa.int64())
    check(f"{name}: ok type", types["ok"], pa.bool_())
    check(f"{name}: station type", str(types["station"]) in ("string", "string_view"), True)
    check(f"{name}: station", table.column("station").to_pylist(), ["oslo", "bergen"])
    check(f"{name}: time", table.column("time").cast(pa.int64()).to_pylist(),
          [T0_NS, T0_NS + HOUR_NS])
    check(f"{name}: temp", table.column("temp").to_pylist(), [-3.5, 4.5])
    check(f"{name}: rain", table.column("rain").to_pylist(), [1, 12])
    check(f"{name}: ok", table.column("ok").to_pylist(), [True, False])
    check(f"{name}: note", table.column("note").to_pylist(), ['cold, "very"', None])


def check_error(name, answer, status, kind):
    got_status, headers, body = answer
    check(f"{name}: status", got_status, status)
    check(f"{name}: content type", headers.get("Content-Type"), "application/json")
    error = json.loads(body)
    check(f"{name}: kind", error.get("kind"), kind)
    check(f"{name}: has a message", bool(error.get("error")), True)
    return error.get("error", "")


def main():
    with part("write"):
        status, _, body = request("POST", "/api/v2/write?bucket=eddy&precision=ns", LP.encode())
        check("line protocol written", status, 204) or print(body)

    with part("json"):
        body = ok("json", get({"db": "eddy", "q": SQL}), "application/json")
        check("json rows", json.loads(body), JSON_ROWS)

    with part("jsonl"):
        body = ok("jsonl", get({"q": SQL, "format": "jsonl"}), "application/jsonl")
        check("jsonl rows", [json.loads(line) for line in body.decode().splitlines()], JSON_ROWS)

    with part("csv"):
        body = ok("csv", get({"q": SQL, "format": "csv"}), "text/csv")
        rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
        check("csv rows", rows, [
            COLUMNS,
            ["oslo", "2024-01-01T00:00:00", "-3.5", "1", "true", 'cold, "very"'],
            ["bergen", "2024-01-01T01:00:00", "4.5", "12", "false", ""],
        ])

    with part("pretty"):
        body = ok("pretty", get({"q": SQL, "format": "pretty"}), "text/plain; charset=utf-8")
        lines = [line for line in body.decode().splitlines() if line.startswith("|")]
        cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
        check("pretty header", cells[0], COLUMNS)
        check("pretty first row", cells[1][:3], ["oslo", "2024-01-01T00:00:00", "-3.5"])

    with part("arrow"):
        stream = "application/vnd.apache.arrow.stream"
        body = ok("arrow", get({"q": SQL}, accept=stream), stream)
        check_table("arrow", pa.ipc.open_stream(body).read_all())
        body = ok("arrow by name", get({"q": SQL, "format": "arrow"}), stream)
        check_table("arrow by name", pa.ipc.open_stream(body).read_all())

    with part("parquet"):
        body = ok("parquet", post({"q": SQL, "format": "parquet"}),
                  "application/vnd.apache.parquet")
        check_table("parquet", pq.read_table(io.BytesIO(body)))

    with part("parameters"):
        body = ok("positional", post({
            "db": "eddy",
            "q": "SELECT station, rain FROM weather WHERE temp > $1 AND station <> $2",
            "params": [-10, "oslo"],
        }), "application/json")
        check("positional parameters", json.loads(body), [{"station": "bergen", "rain": 12}])
        body = ok("named", post({
            "q": "SELECT station FROM weather WHERE time < $before",
            "params": {"before": "2024-01-01T00:30:00"},
            "format": "csv",
        }), "text/csv")
        check("named parameters", body.decode(), "station\noslo\n")

    with part("errors"):
        check_error("syntax", get({"q": "SELEC 1"}), 400, "syntax")
        check_error("unknown table", get({"q": "SELECT * FROM nosuchtable"}), 400,
                    "table_not_found")
        message = check_error("missing q", get({"db": "eddy"}), 400, "invalid_request")
        check("missing q names the parameter", '"q"' in message, True)
        check_error("unknown database", post({"db": "nope", "q": SQL}), 404, "database_not_found")
        message = check_error("unknown format", get({"q": SQL, "format": "xml"}), 400,
                              "invalid_request")
        check("unknown format lists the formats", "jsonl" in message and "parquet" in message,
              True)

    done("http_query.py")


if __name__ == "__main__":
    run(main)
