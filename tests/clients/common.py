"""What every client program shares: the server's port, the first timestamp of the test rows,
`check`, which prints `ok: <name>` or exits non-zero with what was wrong, and `run`, which runs a
program's `main` and turns any exception into a failure with its traceback."""
import datetime as dt
import os
import sys
import traceback

PORT = int(os.environ["EDDY_PG_PORT"])
T0 = dt.datetime(2024, 1, 1, 0, 0, 0)


def check(name, got, want=True):
    if got != want:
        sys.exit(f"FAIL: {name}: got {got!r}, want {want!r}")
    print(f"ok: {name}")


def minute(m):
    return T0 + dt.timedelta(minutes=m)


def run(main):
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any failure with its traceback
        traceback.print_exc()
        sys.exit(f"FAIL: {type(e).__name__}: {e}")
