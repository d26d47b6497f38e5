"""Plain Arrow Flight with pyarrow.flight against Eddy: an upload with DoPut to a path, SQL text
as a ticket and as a command descriptor, ListFlights, GetSchema, errors, and (when the server
has users) the basic-token login; over TLS when EDDY_FLIGHT_TLS_CERT names the server's
certificate. Run by tests/e2e/flight_clients.rs against a fresh server.
"""
import datetime as dt
import os

import pyarrow as pa
import pyarrow.flight as flight

from common import check, done, part, run

FLIGHT_PORT = int(os.environ["EDDY_FLIGHT_PORT"])
USER = os.environ.get("EDDY_FLIGHT_USER")
PASSWORD = os.environ.get("EDDY_FLIGHT_PASSWORD")
TLS_CERT = os.environ.get("EDDY_FLIGHT_TLS_CERT")
UTC = dt.timezone.utc


def client():
    if TLS_CERT:
        with open(TLS_CERT, "rb") as f:
            root = f.read()
        # The test certificate is self-signed for "localhost".
        return flight.FlightClient(f"grpc+tls://localhost:{FLIGHT_PORT}", tls_root_certs=root)
    return flight.FlightClient(f"grpc://127.0.0.1:{FLIGHT_PORT}")


def record_count(buf):
    """`record_count` of a DoPutUpdateResult (protobuf field 1, a varint)."""
    data = buf.to_pybytes()
    if not data or data[0] != 0x08:
        return None
    n, shift = 0, 0
    for b in data[1:]:
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return n


def main():
    c = client()
    options = flight.FlightCallOptions()
    if USER:
        with part("credentials"):
            anonymous = client()
            try:
                anonymous.do_get(flight.Ticket(b"SELECT 1")).read_all()
                check("a call without credentials fails", False)
            except flight.FlightUnauthenticatedError as e:
                check("a call without credentials is unauthenticated",
                      "authentication required" in str(e))
            try:
                client().authenticate_basic_token(USER, "wrong")
                check("a wrong password fails", False)
            except flight.FlightUnauthenticatedError as e:
                check("a wrong password is unauthenticated", "authentication failed" in str(e))
            header = c.authenticate_basic_token(USER, PASSWORD)
            check("the token comes as an authorization header",
                  (header[0].lower(), header[1][:7]), (b"authorization", b"Bearer "))
            options = flight.FlightCallOptions(headers=[header])

    with part("DoPut to a path creates the table"):
        table = pa.table({
            "station": pa.array(["oslo", "bergen"]).dictionary_encode(),
            "time": pa.array([dt.datetime(2024, 1, 1, 0, 0, tzinfo=UTC),
                              dt.datetime(2024, 1, 1, 1, 0, tzinfo=UTC)],
                             pa.timestamp("us", tz="UTC")),
            "temp": pa.array([-3.5, 4.5], pa.float64()),
            "rain": pa.array([1, 12], pa.int32()),
        })
        writer, reader = c.do_put(flight.FlightDescriptor.for_path("weather"), table.schema,
                                  options=options)
        writer.write_table(table)
        writer.done_writing()
        result = reader.read()
        writer.close()
        check("DoPut answers the rows written", record_count(result), 2)

    with part("a ticket of SQL text"):
        got = c.do_get(flight.Ticket(b"SELECT station, time, temp, rain FROM weather ORDER BY time"),
                       options=options).read_all()
        check("column names", got.column_names, ["station", "time", "temp", "rain"])
        check("time type", got.schema.field("time").type, pa.timestamp("ns"))
        check("rows", got.to_pylist(), [
            {"station": "oslo", "time": dt.datetime(2024, 1, 1, 0, 0), "temp": -3.5, "rain": 1},
            {"station": "bergen", "time": dt.datetime(2024, 1, 1, 1, 0), "temp": 4.5, "rain": 12},
        ])

    with part("GetFlightInfo of SQL text"):
        info = c.get_flight_info(
            flight.FlightDescriptor.for_command(b"SELECT count(*) AS n FROM weather"),
            options=options)
        check("one endpoint", len(info.endpoints), 1)
        check("schema", info.schema.names, ["n"])
        got = c.do_get(info.endpoints[0].ticket, options=options).read_all()
        check("count", got.column("n").to_pylist(), [2])

    with part("a path names a table"):
        schema = c.get_schema(flight.FlightDescriptor.for_path("weather"), options=options).schema
        check("GetSchema of a path", schema.names, ["station", "time", "temp", "rain"])
        info = c.get_flight_info(flight.FlightDescriptor.for_path("weather"), options=options)
        got = c.do_get(info.endpoints[0].ticket, options=options).read_all()
        check("the path's ticket reads the table", got.num_rows, 2)

    with part("ListFlights lists the tables"):
        paths = [f.descriptor.path for f in c.list_flights(options=options)]
        check("weather is listed", [b"weather"] in paths, True)
        check("system tables are listed", [b"eddy_queries"] in paths, True)

    with part("errors"):
        try:
            c.do_get(flight.Ticket(b"SELECT nope FROM weather"), options=options).read_all()
            check("an unknown column fails", False)
        except pa.ArrowInvalid as e:
            check("an unknown column is invalid and named", "nope" in str(e))
        try:
            c.do_get(flight.Ticket(b"\xff\xfe\x00"), options=options).read_all()
            check("a garbage ticket fails", False)
        except pa.ArrowInvalid as e:
            check("a garbage ticket is invalid", "ticket" in str(e))
        got = c.do_get(flight.Ticket(b"SELECT 42 AS answer"), options=options).read_all()
        check("the server goes on", got.to_pylist(), [{"answer": 42}])

    done("flight_pyarrow")


if __name__ == "__main__":
    run(main)
