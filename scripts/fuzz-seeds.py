#!/usr/bin/env python3
"""Writes the binary seed inputs of the fuzzers: COPY binary streams (fuzz/corpus/copy_binary/)
and PostgreSQL client message streams (fuzz/corpus/pg_frontend/). The text seeds (line
protocol, COPY text and CSV) are plain files in their corpus directories, written by hand.

Each seed starts with the control byte the fuzz target reads first (see eddy_pg::fuzzing):
for COPY, bits 0-3 are the CopyData chunk size (0: one chunk); for messages, bits 0-1 are
where the connection starts (0: before the SSL request, 1: before the startup message, 2:
after it), bit 2 the protocol version (3.0 or 3.2) and bits 3-7 the size of the reads.

Run from anywhere: python3 scripts/fuzz-seeds.py. It rewrites only the files it names and
leaves the inputs the fuzzers added alone.
"""

import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"

# ---------------------------------------------------------------------------------------------
# COPY binary. The target table: time timestamp NOT NULL, host text, usage float8, count int8,
# ucount int8 (unsigned in Eddy), ok bool, msg text.

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
PG_EPOCH_MICROS = 946_684_800_000_000  # 1970-01-01 to 2000-01-01
TS_2024 = 1_704_067_200_000_000 - PG_EPOCH_MICROS  # 2024-01-01, micros since 2000


def header(flags=0, extension=b""):
    return SIGNATURE + struct.pack(">ii", flags, len(extension)) + extension


def field(data):
    return b"\xff\xff\xff\xff" if data is None else struct.pack(">i", len(data)) + data


def tuple_(*fields):
    return struct.pack(">h", len(fields)) + b"".join(field(f) for f in fields)


TRAILER = struct.pack(">h", -1)


def i8(v):
    return struct.pack(">q", v)


def i4(v):
    return struct.pack(">i", v)


def i2(v):
    return struct.pack(">h", v)


def f8(v):
    return struct.pack(">d", v)


def f4(v):
    return struct.pack(">f", v)


def row(ts=TS_2024, host=b"host1", usage=f8(0.5), count=i8(3), ucount=i8(7), ok=b"\x01",
        msg=b"hello"):
    return tuple_(i8(ts) if isinstance(ts, int) else ts, host, usage, count, ucount, ok, msg)


def copy_binary_seeds():
    one = header() + row() + TRAILER
    two = header() + row() + row(TS_2024 + 1_000_000, b"host2", f8(-1.25), i8(-4), i8(0),
                                  b"\x00", None) + TRAILER
    return {
        "one-row": b"@" + one,
        "two-rows": b"@" + two,
        "two-rows-chunks-of-1": b"A" + two,
        "two-rows-chunks-of-5": b"E" + two,
        "two-rows-chunks-of-15": b"O" + two,
        "nulls": b"@" + header() + row(host=None, usage=None, count=None, ucount=None, ok=None,
                                        msg=None) + TRAILER,
        "null-time": b"@" + header() + row(ts=None) + TRAILER,
        "integer-widths": b"@" + header() + row(count=i4(-7), ucount=i4(9)) +
        row(count=i2(-32768), ucount=i2(32767), usage=f4(2.5)) + TRAILER,
        "extremes": b"@" + header() + row(count=i8(-(2**63)), ucount=i8(2**63 - 1),
                                           usage=f8(float("nan"))) +
        row(usage=f8(float("-inf")), ts=0) + TRAILER,
        "timestamp-overflow": b"@" + header() + row(ts=2**63 - 1) + TRAILER,
        "timestamp-min": b"@" + header() + row(ts=-(2**63)) + TRAILER,
        "header-extension": b"@" + header(extension=b"skip me") + row() + TRAILER,
        "no-trailer": b"@" + header() + row(),
        "zero-rows": b"@" + header() + TRAILER,
        "header-only": b"@" + header(),
        "truncated-tuple": b"@" + header() + row()[:-3],
        "truncated-header": b"@" + header()[:15],
        "data-after-trailer": b"@" + one + b"junk",
        "wrong-field-count": b"@" + header() + tuple_(i8(TS_2024), b"h") + TRAILER,
        "negative-unsigned": b"@" + header() + row(ucount=i8(-5)) + TRAILER,
        "wrong-widths": b"@" + header() + row(ok=b"\x01\x00", usage=b"\x00" * 3,
                                               count=b"\x00" * 5) + TRAILER,
        "invalid-field-size": b"@" + header() + i2(7) + i4(-2) + TRAILER,
        "huge-field-size": b"@" + header() + i2(7) + i4(0x7FFFFFFF) + b"\x00" * 8,
        "invalid-utf8": b"@" + header() + row(host=b"\xff\xfe", msg=b"\xc3\x28") + TRAILER,
        "unicode": b"@" + header() + row(host="東京".encode(), msg="naïve ☀".encode()) + TRAILER,
        "bad-signature": b"@" + b"PGCOPY\n\xff\r\n\x01" + b"\x00" * 8 + row() + TRAILER,
        "with-oids-flag": b"@" + header(flags=1 << 16) + row() + TRAILER,
        "critical-flags": b"@" + header(flags=1 << 20) + row() + TRAILER,
        "negative-extension": b"@" + SIGNATURE + i4(0) + i4(-1) + row() + TRAILER,
        "empty": b"@",
    }


# ---------------------------------------------------------------------------------------------
# PostgreSQL client messages.

SSL_REQUEST = struct.pack(">ii", 8, 80877103)
GSS_REQUEST = struct.pack(">ii", 8, 80877104)


def msg(kind, body=b""):
    return kind + struct.pack(">i", len(body) + 4) + body


def cstr(s):
    return (s.encode() if isinstance(s, str) else s) + b"\x00"


def startup(params, minor=0):
    body = struct.pack(">hh", 3, minor)
    for k, v in params:
        body += cstr(k) + cstr(v)
    body += b"\x00"
    return struct.pack(">i", len(body) + 4) + body


def cancel(pid=1234, key=b"\x00\x00\x16\x2e"):
    body = struct.pack(">ii", 80877102, pid) + key
    return struct.pack(">i", len(body) + 4) + body


def query(sql):
    return msg(b"Q", cstr(sql))


def parse(name, sql, oids=()):
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack(">h", len(oids)) +
               b"".join(struct.pack(">I", o) for o in oids))


def bind(portal, stmt, params, formats=(), results=()):
    body = cstr(portal) + cstr(stmt) + struct.pack(">h", len(formats))
    body += b"".join(struct.pack(">h", f) for f in formats)
    body += struct.pack(">h", len(params))
    for p in params:
        body += field(p)
    body += struct.pack(">h", len(results)) + b"".join(struct.pack(">h", f) for f in results)
    return msg(b"B", body)


def describe(kind, name):
    return msg(b"D", kind + cstr(name))


def execute(portal, max_rows=0):
    return msg(b"E", cstr(portal) + struct.pack(">i", max_rows))


def close(kind, name):
    return msg(b"C", kind + cstr(name))


SYNC = msg(b"S")
FLUSH = msg(b"H")
TERMINATE = msg(b"X")

# Type OIDs.
BOOL, BYTEA, CHAR, INT8, INT2, INT4, TEXT = 16, 17, 18, 20, 21, 23, 25
FLOAT4, FLOAT8, VARCHAR, DATE, TIMESTAMP, TIMESTAMPTZ, NUMERIC = 700, 701, 1043, 1082, 1114, 1184, 1700
INT8_ARRAY, TEXT_ARRAY, UUID, JSONB, INTERVAL = 1016, 1009, 2950, 3802, 1186


def numeric(digits, weight, sign, dscale):
    return struct.pack(">hhHH", len(digits), weight, sign, dscale) + \
        b"".join(struct.pack(">h", d) for d in digits)


def int8_array(values):
    out = struct.pack(">iiiii", 1, 0, INT8, len(values), 1)
    return out + b"".join(field(i8(v)) for v in values)


def control(state, protocol_3_2=False, read=0):
    return bytes([state | (4 if protocol_3_2 else 0) | (read << 3)])


def pg_frontend_seeds():
    login = startup([("user", "eddy"), ("database", "eddy"), ("application_name", "fuzz"),
                     ("client_encoding", "UTF8"), ("options", "-c search_path=public")])
    insert = "INSERT INTO cpu (time, host, usage, count, ok, msg) VALUES ($1, $2, $3, $4, $5, $6)"
    typed_params = [i8(TS_2024), b"host1", f8(0.5), i8(3), b"\x01", b"hello"]
    extended_binary = (
        parse("s1", insert, [TIMESTAMP, TEXT, FLOAT8, INT8, BOOL, TEXT]) +
        describe(b"S", "s1") +
        bind("p1", "s1", typed_params, formats=[1], results=[1]) +
        describe(b"P", "p1") + execute("p1") + close(b"P", "p1") + close(b"S", "s1") + SYNC
    )
    extended_text = (
        parse("", "SELECT $1, $2, $3, $4, $5, $6") +
        bind("", "", [b"42", b"3.5", b"true", b"2024-01-01 00:00:00", None, b"text"]) +
        execute("", 10) + SYNC
    )
    all_types = [BOOL, BYTEA, CHAR, INT8, INT2, INT4, TEXT, FLOAT4, FLOAT8, VARCHAR, DATE,
                 TIMESTAMP, TIMESTAMPTZ, NUMERIC, INT8_ARRAY, TEXT_ARRAY, UUID, JSONB, INTERVAL]
    binary_values = [b"\x01", b"\x00\xff", b"x", i8(-1), i2(7), i4(1 << 30), b"text",
                     f4(1.5), f8(-2.25), b"varchar", i4(8766), i8(TS_2024), i8(-TS_2024),
                     numeric([1, 2345, 6780], 1, 0, 3), int8_array([1, 2, 3]),
                     struct.pack(">iiiii", 1, 1, TEXT, 1, 1) + field(None),
                     bytes(range(16)), b"\x01{}", struct.pack(">qii", 1_000_000, 2, 3)]
    text_values = [b"t", b"\\x00ff", b"x", b"-1", b"7", b"1073741824", b"text", b"1.5",
                   b"-2.25", b"varchar", b"2024-01-01", b"2024-01-01 00:00:00",
                   b"2024-01-01 00:00:00+00", b"12345.678", b"{1,2,3}", b"{a,NULL}",
                   b"00010203-0405-0607-0809-0a0b0c0d0e0f", b"{}", b"1 day"]
    typed_statement = parse("all", "SELECT " + ", ".join(f"${i + 1}" for i in range(19)),
                            all_types)
    untyped = parse("u", "SELECT $1, $2, $3, $4, $5, $6, $7")
    seeds = {
        "ssl-startup-query": control(0) + SSL_REQUEST + login + query("SELECT 1") + TERMINATE,
        "gss-startup-query": control(0) + GSS_REQUEST + login + query("SHOW server_version") + TERMINATE,
        "startup-no-ssl": control(0) + login + query("SELECT * FROM cpu LIMIT 1; SELECT 2"),
        "startup-password": control(1) + login + msg(b"p", cstr("secret")) + query("SELECT 1"),
        "startup-scram": control(1) + login +
        msg(b"p", cstr("SCRAM-SHA-256") + struct.pack(">i", 32) + b"n,,n=,r=rOprNGfwEbeRWgbNEkqO") +
        msg(b"p", b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        "startup-3.2": control(1, True) + startup([("user", "eddy")], minor=2) + query("SELECT 1"),
        "startup-3.9999": control(1) + startup([("user", "eddy"), ("_pq_.x", "1")], minor=9999),
        "cancel-3.0": control(1) + cancel(),
        "cancel-3.2": control(1, True) + cancel(key=bytes(range(32))),
        "ssl-then-cancel": control(0) + SSL_REQUEST + cancel(),
        "extended-binary": control(2) + extended_binary,
        "extended-binary-reads-of-1": control(2, read=1) + extended_binary,
        "extended-binary-reads-of-7": control(2, read=7) + extended_binary,
        "extended-text": control(2) + extended_text,
        "extended-text-3.2": control(2, True, read=3) + extended_text,
        "all-types-binary": control(2) + typed_statement +
        bind("", "all", binary_values, formats=[1]) + execute("") + SYNC,
        "all-types-text": control(2) + typed_statement + bind("", "all", text_values) + SYNC,
        "mixed-formats": control(2) + parse("m", "SELECT $1, $2, $3", [INT8, TEXT, FLOAT8]) +
        bind("", "m", [i8(1), b"two", f8(3.0)], formats=[1, 0, 1]) + SYNC,
        "format-count-mismatch": control(2) + parse("m", "SELECT $1, $2, $3", [INT8, TEXT, INT8]) +
        bind("", "m", [i8(1), b"two", i8(3)], formats=[1, 0]) + SYNC,
        "untyped-parameters": control(2) + untyped +
        bind("", "u", [b"1", b"2.5", b"x", b"t", b"18446744073709551615", b"2024-01-01", None]) + SYNC,
        "untyped-binary-parameters": control(2) + untyped +
        bind("", "u", [i8(1), f8(2.5), b"x", b"\x01", i8(-1), i8(TS_2024), None], formats=[1]) + SYNC,
        "numeric-extremes": control(2) + parse("n", "SELECT $1, $2, $3", [NUMERIC] * 3) +
        bind("", "n", [numeric([9999] * 10, 100, 0, 0), numeric([], 0, 0xC000, 0),
                       numeric([1], -50, 0x4000, 16383)], formats=[1]) + SYNC,
        "copy-in": control(2) + query("COPY cpu FROM STDIN") +
        msg(b"d", b"2024-01-01 00:00:00\thost1\t0.5\n") + msg(b"d", b"") + msg(b"c"),
        "copy-fail": control(2) + query("COPY cpu FROM STDIN (FORMAT csv)") +
        msg(b"d", b"a,b\n") + msg(b"f", cstr("client gave up")) + SYNC,
        "flush-sync-terminate": control(2) + FLUSH + SYNC + FLUSH + TERMINATE + query("after"),
        "bad-length": control(2) + b"Q" + struct.pack(">i", 3) + b"x\x00",
        "huge-length": control(2) + b"Q" + struct.pack(">i", 0x7FFFFFFF) + b"SELECT 1\x00",
        "negative-length": control(2) + b"B" + struct.pack(">i", -1),
        "unknown-type": control(2) + msg(b"Z", b"\x00") + SYNC,
        "missing-terminator": control(2) + msg(b"Q", b"SELECT 1") + SYNC,
        "short-bind": control(2) + msg(b"B", b"\x00\x00\x00\x02\x00\x01") + SYNC,
        "bind-huge-param-length": control(2) + msg(b"B", b"\x00\x00\x00\x00\x00\x01" +
                                                  struct.pack(">i", 0x7FFFFFFF) + b"\x00\x00"),
        "parse-huge-oid-count": control(2) + msg(b"P", b"\x00SELECT 1\x00\x7f\xff"),
        "startup-without-final-nul": control(1) + struct.pack(">ihh", 17, 3, 0) + b"user\x00eddy\x00",
        "startup-bad-version": control(1) + struct.pack(">ihh", 9, 2, 0) + b"\x00",
        "ssl-truncated": control(0) + SSL_REQUEST[:6],
        "empty": control(2),
    }
    return seeds


def main():
    for target, seeds in (("copy_binary", copy_binary_seeds()),
                          ("pg_frontend", pg_frontend_seeds())):
        out = ROOT / target
        out.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (out / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
