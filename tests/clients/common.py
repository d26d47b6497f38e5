"""What every client program shares: the server's ports, the first timestamp of the test rows,
`check`, which prints `ok: <name>` or exits non-zero with what was wrong, and `run`, which runs a
program's `main` and turns any exception into a failure with its traceback.

EDDY_KEEP_GOING=1 is for developing a program against a server that lacks some feature: a wrong
answer, or an exception inside a `part`, is printed as a failure and the program goes on; it
still exits non-zero at `done` (which alone prints "all checks passed", and only when nothing
failed). The end-to-end tests never set it.
"""
import contextlib
import datetime as dt
import os
import sys
import traceback

PORT = int(os.environ["EDDY_PG_PORT"])
HTTP_PORT = int(os.environ.get("EDDY_HTTP_PORT", "0"))
T0 = dt.datetime(2024, 1, 1, 0, 0, 0)
KEEP_GOING = os.environ.get("EDDY_KEEP_GOING") == "1"
FAILURES = []


def fail(message):
    """Fails the program at once, or (EDDY_KEEP_GOING=1) records the failure and goes on."""
    if not KEEP_GOING:
        sys.exit(f"FAIL: {message}")
    FAILURES.append(message)
    print(f"FAIL: {message}", flush=True)


def short(value, limit=1500):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def check(name, got, want=True):
    if got != want:
        fail(f"{name}: got {short(got)}, want {short(want)}")
        return False
    print(f"ok: {name}")
    return True


def check_close(name, got, want, tol=1e-9):
    """Like `check` for floats (and equal-length sequences of them): within `tol`."""
    if isinstance(want, (list, tuple)):
        ok = (isinstance(got, (list, tuple)) and len(got) == len(want)
              and all(g is not None and abs(g - w) <= tol for g, w in zip(got, want)))
    else:
        ok = got is not None and abs(got - want) <= tol
    if not ok:
        fail(f"{name}: got {short(got)}, want {short(want)} (within {tol})")
        return False
    print(f"ok: {name}")
    return True


@contextlib.contextmanager
def part(name):
    """A group of checks. An exception inside fails the program, or with EDDY_KEEP_GOING=1 is
    printed and recorded as a failure, and the program goes on after the group."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - report any failure with its traceback
        if not KEEP_GOING:
            raise
        traceback.print_exc()
        fail(f"{name}: {type(e).__name__}: {e}")


def done(program):
    """Ends a program: prints `<program>: all checks passed`, or exits non-zero with every
    failure recorded under EDDY_KEEP_GOING=1."""
    if FAILURES:
        sys.exit(f"FAIL: {program}: {len(FAILURES)} failed:\n  " + "\n  ".join(
            f.splitlines()[0] for f in FAILURES))
    print(f"{program}: all checks passed")


def minute(m):
    return T0 + dt.timedelta(minutes=m)


def run(main):
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - report any failure with its traceback
        traceback.print_exc()
        sys.exit(f"FAIL: {type(e).__name__}: {e}")
