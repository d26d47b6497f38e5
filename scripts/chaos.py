#!/usr/bin/env python3
"""Chaos run: kill -9 Eddy at random moments of ingest, flush, compaction, view maintenance and start-up,
many rounds in a row, and check after every restart that

  - every acknowledged batch is present exactly once: each of its rows, no duplicate, none missing;
  - every batch that was in flight at the kill is all there or all absent, and stays that way
    after later restarts;
  - no row is there that was never sent;
  - every continuous aggregate equals its defining query run over the raw table, and a view
    whose CREATE (DROP) was acknowledged exists (does not).

One table `chaos` (tags `series` and `src`, fields `b` = batch number, `id` = row number unique
in the data directory, `v`) gets rows from concurrent writers: two over HTTP line protocol and one
over the Postgres protocol (psql running INSERT ... VALUES and COPY FROM STDIN, alternately). Row
`id` has the time `sec * 1e9 + id` nanoseconds, so every row has its own key and deduplication
never merges two rows; `sec` is mostly the round's "now", sometimes hours or days earlier (late
rows, which make view maintenance recompute old buckets). `v = (id % 1000) / 8`, so float sums
are exact in any order.

Each round starts the writers, kills the server with SIGKILL in one of these ways, restarts it on
the same data directory and checks:

  ingest           after 0 to 3 s of writes (sometimes at once);
  flush            as a segment file appears under data/ (then 0 to 30 ms later), sometimes
                   after letting one or two flushes end;
  compaction       while manifest.json lists a compaction in progress (its output is being
                   written), 0 to 40 ms after it was seen; a kill aimed at a flush that saw a
                   segment file disappear (compaction retiring its inputs) counts here too;
  view:refresh     during REFRESH MATERIALIZED VIEW;
  view:drop        during DROP MATERIALIZED VIEW, before the same view is created again;
  view:backfill    during CREATE MATERIALIZED VIEW over the existing data, until it is ready;
  view:checkpoint  as a view checkpoint file appears under views/;
  startup          after a short burst of writes and a kill, again while the server recovers
                   (`startup:ready` when that second kill came after it was ready).

A kill that was aimed at a phase but came after it ended counts as `ingest`. The data directory
is replaced by a fresh one every --rounds-per-dir rounds so that the checks, which read the whole
table and every view each round, cost the same in round 1,000 as in round 1.

Needs python3 (standard library only) and psql. Prints one line per round and a summary; exits 1
on any violation, printing the seed to reproduce the same sequence of choices (the timing of a
real kill cannot be replayed exactly).

Usage: python3 scripts/chaos.py --binary target/release/eddy --rounds 1000 --seed 1
"""

import argparse
import http.client
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

# 2024-01-01T00:00:00Z: rows of round r are near T0 + r * ROUND_SECONDS.
T0_SECONDS = 1704067200
ROUND_SECONDS = 600
SERIES = 8
# Row ids are the nanoseconds below the second of the row's time.
ID_LIMIT = 1_000_000_000
# How long a start-up, a psql command or an HTTP request may take before the run fails.
READY_TIMEOUT_S = 180
PSQL_TIMEOUT_S = 300
HTTP_TIMEOUT_S = 60
# Most problem lines printed when a round fails.
PROBLEMS_SHOWN_MAX = 40
# How long a kill aimed at a flush or a checkpoint waits for one before killing anyway.
WATCH_TIMEOUT_S = 4.0
# Longest pause of a writer between two batches: keeps a round near 10,000 rows.
WRITER_PAUSE_S_MAX = 0.08
# Largest line-protocol batch: about 1.4 MB, so one write and all-or-nothing (under 4 MiB).
LP_BATCH_ROWS_MAX = 20_000

TABLE = (
    "CREATE TABLE chaos (time TIMESTAMP NOT NULL, series TEXT, src TEXT, b BIGINT, id BIGINT, "
    "v DOUBLE PRECISION, PRIMARY KEY (series, src, time))"
)
COLUMNS = "time, series, src, b, id, v"


class View:
    """A view: its name, its defining SELECT, the same result computed from the raw table, and
    how many leading columns form its key (bucket and groups)."""

    def __init__(self, name, select, raw=None, key_columns=2):
        self.name = name
        self.select = select
        self.raw = raw or select
        self.key_columns = key_columns

    def create_sql(self):
        return f"CREATE MATERIALIZED VIEW {self.name} AS {self.select}"


VIEWS = [
    View(
        "chaos_1m",
        "SELECT time_bucket('1 minute', time) AS bucket, series, count(*) AS n, count(v) AS nv, "
        "sum(id) AS sid, min(id) AS lo, max(id) AS hi, sum(v) AS sv, avg(v) AS av, "
        "min(v) AS vmin, max(v) AS vmax, first(v, time) AS fv, last(v, time) AS lv "
        "FROM chaos GROUP BY bucket, series",
    ),
    View(
        "chaos_src_10m",
        "SELECT time_bucket('10 minutes', time) AS bucket, src, count(*) AS n, sum(v) AS sv, "
        "max(id) AS hi, stddev(v) AS sd, count(*) FILTER (WHERE v > 60) AS big "
        "FROM chaos WHERE series <> 's0' GROUP BY bucket, src",
    ),
    # A view over a view, compared with the same aggregates computed from the raw table.
    View(
        "chaos_1h",
        "SELECT time_bucket('1 hour', bucket) AS hour, series, sum(n) AS n, sum(sid) AS sid, "
        "min(lo) AS lo, max(hi) AS hi, sum(sv) AS sv FROM chaos_1m GROUP BY hour, series",
        raw="SELECT time_bucket('1 hour', time) AS hour, series, count(*) AS n, sum(id) AS sid, "
        "min(id) AS lo, max(id) AS hi, sum(v) AS sv FROM chaos GROUP BY hour, series",
    ),
]
# Dropped and created again over the existing data by `view:backfill` kills: it may or may not
# exist after a restart, and is checked when it does.
SCRATCH = View(
    "chaos_scratch",
    "SELECT time_bucket('5 minutes', time) AS bucket, src, series, count(*) AS n, "
    "sum(id) AS sid, max(v) AS vmax FROM chaos GROUP BY bucket, src, series",
    key_columns=3,
)
REFRESHABLE = ["chaos_1m", "chaos_src_10m"]

# How long each view action took the last time it ran to the end (starting guesses): kills are
# aimed at a random moment within it.
ACTION_SECONDS = {"view:refresh": 0.1, "view:backfill": 0.3, "startup": 0.3}

MODES = ["ingest", "flush", "compaction", "view:refresh", "view:backfill", "view:checkpoint",
         "startup"]
MODE_WEIGHTS = [30, 20, 15, 10, 10, 10, 10]


class Violation(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The eddy process: started, killed with SIGKILL, started again on the same directory and
    ports. Its stderr is appended to `log`."""

    def __init__(self, binary, data_dir, log, extra):
        self.binary = binary
        self.data_dir = data_dir
        self.log = log
        self.extra = extra
        self.http = free_port()
        self.pg = free_port()
        self.proc = None
        # Set just before a kill, so a failed request after it is expected.
        self.killing = False

    def spawn(self):
        assert self.proc is None
        with open(self.log, "ab") as log:
            log.write(f"--- chaos.py: start at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
            self.proc = subprocess.Popen(
                [
                    self.binary, "serve",
                    "--data-dir", self.data_dir,
                    "--http-addr", f"127.0.0.1:{self.http}",
                    "--pg-addr", f"127.0.0.1:{self.pg}",
                    "--flight-addr", "127.0.0.1:0",
                    *self.extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        self.killing = False

    def ready(self):
        for port in (self.pg, self.http):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
        return True

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ready():
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise Violation(f"eddy exited during start-up with status {code} (see {self.log})")
            if time.monotonic() > deadline:
                raise Violation(f"eddy did not start within {READY_TIMEOUT_S} s (see {self.log})")
            time.sleep(0.01)

    def start(self):
        self.spawn()
        self.wait_ready()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.proc is None:
            return
        self.killing = True
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        if code is not None:
            raise Violation(f"eddy had exited by itself with status {code} (see {self.log})")

    def stop(self):
        """SIGTERM: a clean stop must exit 0."""
        if self.proc is None:
            return
        self.killing = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = "none within 120 s"
        self.proc = None
        if code != 0:
            raise Violation(f"eddy exited with {code} after SIGTERM (see {self.log})")


def psql(server, sql, stdin=None):
    """Runs one statement with psql; returns (exit code, stdout, stderr)."""
    cmd = [
        "psql", "-h", "127.0.0.1", "-p", str(server.pg), "-U", "eddy", "-d", "eddy",
        "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql,
    ]
    env = dict(os.environ, PGCONNECT_TIMEOUT="10")
    try:
        p = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, env=env, timeout=PSQL_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return None, "", f"psql timed out after {PSQL_TIMEOUT_S} s"
    return p.returncode, p.stdout, p.stderr


def query(server, sql):
    code, out, err = psql(server, sql)
    if code != 0:
        raise Violation(f"query failed ({code}): {sql}\n{err.strip()}")
    return [line.split("\t") for line in out.splitlines()]


class Batch:
    """One write request: rows first_id .. first_id + n - 1, all from one source."""

    __slots__ = ("b", "src", "first_id", "n", "state", "fingerprint")

    def __init__(self, b, src, first_id, n):
        self.b = b
        self.src = src
        self.first_id = first_id
        self.n = n
        # new: not sent yet; pending: sent, no answer; acked: acknowledged; failed: an error or
        # no answer (the kill); present / gone: unacknowledged, and found whole / absent.
        self.state = "new"
        self.fingerprint = None


def row_series(i):
    return i % SERIES


def row_value(i):
    return (i % 1000) / 8


class Ledger:
    """Every batch of the current data directory, and the row ids handed out."""

    def __init__(self):
        self.lock = threading.Lock()
        self.batches = {}
        self.next_b = 1
        self.next_id = 0
        # Whether chaos_scratch must exist: True, False, or None (a DROP or CREATE was in
        # flight at the last kill).
        self.scratch = False
        # Acknowledged so far, for the per-round report.
        self.acked_batches = 0
        self.acked_rows = 0

    def allocate(self, src, n):
        with self.lock:
            b = Batch(self.next_b, src, self.next_id, n)
            self.next_b += 1
            self.next_id += n
            if self.next_id >= ID_LIMIT:
                raise Violation("row ids ran past 1e9: use fewer --rounds-per-dir")
            self.batches[b.b] = b
            return b


def make_rows(batch, rng, now_s):
    """The rows of a batch as (time_ns, series, id, v), with the batch's fingerprint: the
    aggregates the check query computes for it."""
    rows = []
    secs = 0
    series_sum = 0
    for i in range(batch.first_id, batch.first_id + batch.n):
        r = rng.random()
        if r < 0.8:
            sec = now_s + rng.randrange(ROUND_SECONDS)
        elif r < 0.95:
            # Over an hour behind the series' newest row: a possible overwrite to the view.
            sec = now_s - rng.randrange(3600, 6 * 3600)
        else:
            sec = rng.randrange(T0_SECONDS - 3 * 86400, now_s + 1)
        secs += sec
        series_sum += row_series(i)
        rows.append((sec * 1_000_000_000 + i, row_series(i), i, row_value(i)))
    ids = range(batch.first_id, batch.first_id + batch.n)
    batch.fingerprint = (
        batch.n, batch.n, batch.first_id, batch.first_id + batch.n - 1, sum(ids),
        sum(row_value(i) for i in ids), secs, series_sum, batch.src, batch.src,
    )
    return rows


def pg_time(time_ns):
    sec, ns = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec)) + f".{ns:09d}"


class Round:
    """The writers of one round and what they saw."""

    def __init__(self, server, ledger, seed, now_s):
        self.server = server
        self.ledger = ledger
        self.seed = seed
        self.now_s = now_s
        self.stop = threading.Event()
        self.errors = []
        self.threads = []
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self):
        for w, fn in enumerate([self.lp_writer, self.lp_writer, self.pg_writer]):
            t = threading.Thread(target=self.guard, args=(fn, random.Random(self.seed * 31 + w)))
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def guard(self, fn, rng):
        try:
            fn(rng)
        except Exception as e:  # a bug in this script must fail the run, not hang it
            self.errors.append(f"writer crashed: {e!r}")

    def answered(self, batch, ok, detail):
        if ok:
            batch.state = "acked"
            return
        batch.state = "failed"
        if not self.server.killing:
            self.errors.append(f"batch {batch.b} ({batch.src}) failed before the kill: {detail}")

    def lp_writer(self, rng):
        url = f"http://127.0.0.1:{self.server.http}/write?db=eddy&precision=ns"
        while not self.stop.is_set():
            n = rng.randint(1, 200) if rng.random() < 0.99 else rng.randint(2000, LP_BATCH_ROWS_MAX)
            batch = self.ledger.allocate("lp", n)
            body = "".join(
                f"chaos,series=s{s},src=lp b={batch.b}i,id={i}i,v={v!r} {t}\n"
                for t, s, i, v in make_rows(batch, rng, self.now_s)
            ).encode()
            batch.state = "pending"
            req = urllib.request.Request(url, data=body, method="POST")
            try:
                with self.opener.open(req, timeout=HTTP_TIMEOUT_S) as r:
                    status, detail = r.status, ""
            except urllib.error.HTTPError as e:
                status, detail = e.code, e.read()[:300]
            except (OSError, http.client.HTTPException) as e:
                status, detail = None, repr(e)
            self.answered(batch, status == 204, f"HTTP {status} {detail}")
            if status != 204:
                return
            time.sleep(rng.uniform(0, WRITER_PAUSE_S_MAX))

    def pg_writer(self, rng):
        copy = False
        while not self.stop.is_set():
            copy = not copy
            src = "copy" if copy else "ins"
            n = rng.randint(1, 2000) if copy else rng.randint(1, 200)
            batch = self.ledger.allocate(src, n)
            rows = make_rows(batch, rng, self.now_s)
            batch.state = "pending"
            if copy:
                data = "".join(
                    f"{pg_time(t)}\ts{s}\tcopy\t{batch.b}\t{i}\t{v!r}\n" for t, s, i, v in rows
                )
                code, _, err = psql(self.server, f"COPY chaos ({COLUMNS}) FROM STDIN", stdin=data)
            else:
                values = ", ".join(
                    f"('{pg_time(t)}', 's{s}', 'ins', {batch.b}, {i}, {v!r})" for t, s, i, v in rows
                )
                code, _, err = psql(self.server, f"INSERT INTO chaos ({COLUMNS}) VALUES {values}")
            self.answered(batch, code == 0, f"psql exit {code}: {err.strip()[:300]}")
            if code != 0:
                return
            time.sleep(rng.uniform(0, WRITER_PAUSE_S_MAX))


def list_files(root):
    """Every file name under root (relative paths), as a set."""
    out = set()
    for d, _, files in os.walk(root):
        for f in files:
            out.add(os.path.join(d, f))
    return out


def watch(root, until, stop):
    """Waits until a file appears or disappears under root; returns "added", "removed" or None
    (timed out or stopped)."""
    before = list_files(root)
    while time.monotonic() < until and not stop():
        now = list_files(root)
        if now - before:
            return "added"
        if before - now:
            return "removed"
        time.sleep(0.003)
    return None


def compacting(manifest, until, stop):
    """Waits until manifest.json lists a compaction in progress; returns whether it did."""
    while time.monotonic() < until and not stop():
        try:
            with open(manifest, "rb") as f:
                if b'"compacting":' in f.read():
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    return False


def replaced(path, until, stop):
    """Waits until the file at path is replaced or changed; returns whether it was."""
    def stamp():
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    before = stamp()
    while time.monotonic() < until and not stop():
        if stamp() != before:
            return True
        time.sleep(0.003)
    return False


class Action(threading.Thread):
    """A view-maintenance statement run next to the writers; `stage` says what it is doing."""

    def __init__(self, server, kind, rng):
        super().__init__()
        self.server = server
        self.kind = kind
        self.rng = rng
        self.stage = "waiting"
        self.error = None
        self.started = None
        self.seconds = None
        # What became of chaos_scratch: statements sent, and acknowledged.
        self.drop_acked = False
        self.create_sent = False
        self.create_acked = False

    def run(self):
        self.started = time.monotonic()
        try:
            self.steps()
            self.seconds = time.monotonic() - self.started
        except Violation as e:
            if not self.server.killing:
                self.error = str(e)
        self.stage = "done"

    def steps(self):
        if self.kind == "view:refresh":
            self.stage = "view:refresh"
            self.must(f"REFRESH MATERIALIZED VIEW {self.rng.choice(REFRESHABLE)}")
        else:
            self.stage = "view:drop"
            self.must(f"DROP MATERIALIZED VIEW IF EXISTS {SCRATCH.name}")
            self.drop_acked = True
            self.stage = "view:backfill"
            self.create_sent = True
            self.must(SCRATCH.create_sql())
            self.create_acked = True
            while not self.server.killing:
                sql = f"SELECT status FROM eddy_views WHERE name = '{SCRATCH.name}'"
                if query(self.server, sql) == [["ready"]]:
                    break
                time.sleep(0.01)

    def scratch_expected(self):
        """Whether chaos_scratch must exist after the kill: True, False, or None (either)."""
        if self.create_acked:
            return True
        if self.drop_acked and not self.create_sent:
            return False
        return None

    def must(self, sql):
        code, _, err = psql(self.server, sql)
        if code != 0:
            raise Violation(f"{sql}: psql exit {code}: {err.strip()}")


class Stats:
    def __init__(self):
        self.kills = Counter()
        self.acked_batches = 0
        self.acked_rows = 0
        self.unacked_present = 0
        self.unacked_gone = 0
        self.rows_checked = 0
        self.losses = 0
        self.duplicates = 0
        self.partial = 0
        self.unknown_rows = 0
        self.view_checks = 0
        self.view_mismatches = 0


CHECK_SQL = (
    "SELECT b, count(*), count(DISTINCT id), min(id), max(id), sum(id), sum(v), "
    "sum((CAST(time AS BIGINT) - id) / 1000000000), sum(CAST(substr(series, 2) AS BIGINT)), "
    "min(src), max(src) FROM chaos GROUP BY b"
)


def parse_fingerprint(row):
    ints = [int(x) for x in row[1:6]]
    return (*ints, float(row[6]), int(row[7]), int(row[8]), row[9], row[10])


def describe(got, want):
    """What differs between a batch's found and expected aggregates, in words."""
    if got is None:
        return "none of its rows are present"
    n, distinct, lo, hi = got[:4]
    if (n, distinct, lo, hi) != want[:4]:
        return f"{n} rows with {distinct} distinct ids from {lo} to {hi} are present"
    names = ["sum(id)", "sum(v)", "the times", "the series", "src", "src"]
    wrong = [f"{name} {g!r} (want {w!r})" for name, g, w in zip(names, got[4:], want[4:]) if g != w]
    return "its rows are all there but hold other values: " + ", ".join(wrong)


def check_rows(server, ledger, stats):
    """Compares the table with the ledger. Returns (rows in the table, problems)."""
    problems = []
    found = {}
    total = 0
    for row in query(server, CHECK_SQL):
        total += int(row[1])
        if row[0] == "":
            problems.append(f"{row[1]} rows have no batch number")
            stats.unknown_rows += int(row[1])
            continue
        found[int(row[0])] = row
    # count(*) may be answered from segment statistics: another path to the same number.
    (count,), = query(server, "SELECT count(*) FROM chaos")
    if int(count) != total:
        problems.append(f"count(*) is {count} but GROUP BY b counts {total} rows")
    for b, row in found.items():
        batch = ledger.batches.get(b)
        if batch is None or batch.state in ("new", "gone"):
            if batch is None or batch.state == "new":
                what = "was never sent"
            else:
                what = "was absent after an earlier restart"
            problems.append(f"batch {b} {what} but {row[1]} of its rows are present")
            stats.unknown_rows += int(row[1])
    for batch in ledger.batches.values():
        row = found.get(batch.b)
        got = parse_fingerprint(row) if row else None
        want = batch.fingerprint
        if batch.state in ("acked", "present"):
            if got == want:
                continue
            n, distinct = (got[0], got[1]) if got else (0, 0)
            stats.losses += max(0, batch.n - distinct)
            stats.duplicates += n - distinct
            problems.append(
                f"{'acknowledged' if batch.state == 'acked' else 'earlier found'} batch {batch.b} "
                f"({batch.src}, {batch.n} rows, ids {batch.first_id} to "
                f"{batch.first_id + batch.n - 1}): {describe(got, want)}"
            )
        elif batch.state in ("pending", "failed"):
            if got is None:
                batch.state = "gone"
                stats.unacked_gone += 1
            elif got == want:
                batch.state = "present"
                stats.unacked_present += 1
            else:
                stats.partial += 1
                stats.duplicates += got[0] - got[1]
                problems.append(
                    f"unacknowledged batch {batch.b} ({batch.src}, {batch.n} rows, ids "
                    f"{batch.first_id} to {batch.first_id + batch.n - 1}) is not all or nothing: "
                    f"{describe(got, want)}"
                )
        elif batch.state == "new":
            batch.state = "gone"
    stats.rows_checked += total
    return total, problems


def normalize(cell):
    try:
        f = float(cell)
    except ValueError:
        return cell
    return int(cell) if cell.lstrip("-").isdigit() else f


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
            return False
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def keyed(rows, key_columns):
    out = {}
    for r in rows:
        k = tuple(r[:key_columns])
        if k in out:
            return None, f"two rows for key {k}"
        out[k] = [normalize(c) for c in r[key_columns:]]
    return out, None


def check_view(server, view):
    got, e1 = keyed(query(server, f"SELECT * FROM {view.name}"), view.key_columns)
    want, e2 = keyed(query(server, view.raw), view.key_columns)
    if e1 or e2:
        return [f"view {view.name}: {e1 or e2}"]
    problems = []
    for k in sorted(set(got) | set(want)):
        g, w = got.get(k), want.get(k)
        if g is None or w is None or len(g) != len(w) or not all(map(same, g, w)):
            problems.append(
                f"view {view.name} at {k}: the view has {g}, the query over the table gives {w}"
            )
    if problems:
        problems = [f"view {view.name}: {len(problems)} of {len(want)} rows differ"] + problems[:5]
    return problems


def check_views(server, ledger, stats):
    rows = query(server, "SELECT name, status FROM eddy_views")
    present = {r[0]: r[1] for r in rows}
    problems = []
    scratch = SCRATCH.name in present
    if ledger.scratch is not None and ledger.scratch != scratch:
        if ledger.scratch:
            problems.append(f"view {SCRATCH.name} is missing after its CREATE was acknowledged")
        else:
            problems.append(f"view {SCRATCH.name} is back after its DROP was acknowledged")
    ledger.scratch = scratch
    views = [v for v in VIEWS]
    for v in VIEWS:
        if v.name not in present:
            problems.append(f"view {v.name} is missing after the restart")
            views.remove(v)
    if SCRATCH.name in present:
        views.append(SCRATCH)
    for v in views:
        stats.view_checks += 1
        p = check_view(server, v)
        if p:
            stats.view_mismatches += 1
            problems += p
    return problems, len(views)


def create_schema(server):
    for sql in [TABLE] + [v.create_sql() for v in VIEWS]:
        code, _, err = psql(server, sql)
        if code != 0:
            raise Violation(f"{sql}: {err.strip()}")


def kill_round(server, ledger, stats, rng, mode, round_no, seed):
    """Runs the writers, kills the server as `mode` says, and returns (phase, seconds of writes,
    writer errors)."""
    writers = Round(server, ledger, seed, T0_SECONDS + round_no * ROUND_SECONDS)
    started = time.monotonic()
    writers.start()
    phase = "ingest"
    action = None
    try:
        if mode == "ingest":
            time.sleep(rng.uniform(0, 0.1) if rng.random() < 0.15 else rng.uniform(0, 3))
        elif mode == "flush":
            # Sometimes let a flush or two end first (each replaces the manifest), so that kills
            # hit flushes under load, not only the one that follows a restart.
            def dead():
                return not server.alive()

            manifest = os.path.join(server.data_dir, "manifest.json")
            for _ in range(rng.randint(0, 2)):
                if not replaced(manifest, time.monotonic() + WATCH_TIMEOUT_S, dead):
                    break
            seen = watch(os.path.join(server.data_dir, "data"),
                         time.monotonic() + WATCH_TIMEOUT_S, dead)
            if seen is not None:
                time.sleep(rng.uniform(0, 0.03))
                phase = "flush" if seen == "added" else "compaction"
        elif mode == "compaction":
            manifest = os.path.join(server.data_dir, "manifest.json")
            if compacting(manifest, time.monotonic() + WATCH_TIMEOUT_S,
                          lambda: not server.alive()):
                time.sleep(rng.uniform(0, 0.04))
                phase = "compaction"
        elif mode == "view:checkpoint":
            seen = watch(os.path.join(server.data_dir, "views"),
                         time.monotonic() + WATCH_TIMEOUT_S, lambda: not server.alive())
            if seen is not None:
                time.sleep(rng.uniform(0, 0.02))
                phase = "view:checkpoint"
        elif mode in ("view:refresh", "view:backfill"):
            time.sleep(rng.uniform(0, 0.5))
            action = Action(server, mode, random.Random(seed * 7 + 1))
            action.start()
            # A random moment within how long this action took last time it was not killed.
            until = time.monotonic() + rng.uniform(0, 1.2 * ACTION_SECONDS[mode])
            while time.monotonic() < until and action.stage != "done":
                time.sleep(0.001)
            stage = action.stage
            if stage not in ("waiting", "done"):
                phase = stage
        elif mode == "startup":
            time.sleep(rng.uniform(0.1, 1.0))
    finally:
        writes_s = time.monotonic() - started
        stats.kills[phase] += 1
        try:
            server.kill9()
        finally:
            writers.finish()
            if action is not None:
                action.join()
                if action.seconds is not None:
                    ACTION_SECONDS[mode] = action.seconds
                if mode == "view:backfill":
                    ledger.scratch = action.scratch_expected()
    errors = list(writers.errors)
    if action is not None and action.error:
        errors.append(action.error)
    if mode == "startup":
        # Again, while it replays the WAL and restores the views: at a random moment within
        # how long the last start took.
        server.spawn()
        time.sleep(rng.uniform(0, ACTION_SECONDS["startup"]))
        stats.kills["startup" if not server.ready() else "startup:ready"] += 1
        server.kill9()
        phase = "ingest+startup"
    return phase, writes_s, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", required=True, help="the eddy binary")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None, help="default: random, printed")
    ap.add_argument("--data-dir", default=None,
                    help="where the data directories go (must not exist or be empty); "
                    "default: a temporary directory")
    ap.add_argument("--keep", action="store_true",
                    help="keep the data directories after a successful run")
    ap.add_argument("--rounds-per-dir", type=int, default=50,
                    help="start a fresh data directory after this many rounds (default 50)")
    ap.add_argument("--memtable-flush-bytes", type=int, default=262_144,
                    help="small, so that flushes happen every second or so (default 256 KiB)")
    args = ap.parse_args()
    if shutil.which("psql") is None:
        sys.exit("chaos.py: psql is needed (scripts/install-test-deps.sh installs it)")
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    rng = random.Random(seed)
    if args.data_dir:
        base = os.path.abspath(args.data_dir)
        if os.path.exists(base) and os.listdir(base):
            sys.exit(f"chaos.py: {base} is not empty")
        os.makedirs(base, exist_ok=True)
    else:
        base = tempfile.mkdtemp(prefix="eddy-chaos-")
    binary = os.path.abspath(args.binary)
    extra = ["--memtable-flush-bytes", str(args.memtable_flush_bytes)]
    print(f"chaos: seed {seed}, {args.rounds} rounds, data under {base}, binary {binary}",
          flush=True)

    stats = Stats()
    began = time.monotonic()
    server = None
    ledger = None
    failed = None
    dirs = 0
    try:
        for r in range(args.rounds):
            if r % args.rounds_per_dir == 0:
                if server is not None:
                    server.kill9()
                    if not args.keep:
                        shutil.rmtree(server.data_dir, ignore_errors=True)
                dirs += 1
                data_dir = os.path.join(base, f"dir{dirs}")
                server = Server(binary, data_dir, os.path.join(base, f"dir{dirs}.log"), extra)
                server.start()
                create_schema(server)
                ledger = Ledger()
                first_round_of_dir = r
            # The first rounds go through every mode once, so a short run covers them all.
            mode = MODES[r] if r < len(MODES) else rng.choices(MODES, MODE_WEIGHTS)[0]
            phase, writes_s, errors = kill_round(
                server, ledger, stats, rng, mode, r - first_round_of_dir, seed * 100_003 + r
            )
            t_start = time.monotonic()
            server.start()
            t_check = time.monotonic()
            ACTION_SECONDS["startup"] = t_check - t_start
            rows, problems = check_rows(server, ledger, stats)
            view_problems, nviews = check_views(server, ledger, stats)
            t_end = time.monotonic()
            problems = errors + problems + view_problems
            acked = [b for b in ledger.batches.values() if b.state == "acked"]
            new_batches = len(acked) - ledger.acked_batches
            new_rows = sum(b.n for b in acked) - ledger.acked_rows
            ledger.acked_batches += new_batches
            ledger.acked_rows += new_rows
            stats.acked_batches += new_batches
            stats.acked_rows += new_rows
            print(
                f"round {r + 1}/{args.rounds} kill {phase} after {writes_s:.2f} s: "
                f"{new_batches} batches ({new_rows} rows) acknowledged; after restart "
                f"{rows} rows, {nviews} views: {'ok' if not problems else 'VIOLATION'} "
                f"(restart {t_check - t_start:.1f} s, checks {t_end - t_check:.1f} s)",
                flush=True,
            )
            if problems:
                failed = problems
                break
        if failed is None and server is not None:
            # A clean stop must exit 0 and keep everything too.
            server.stop()
            server.start()
            rows, problems = check_rows(server, ledger, stats)
            problems += check_views(server, ledger, stats)[0]
            if problems:
                failed = ["after a clean stop and restart:"] + problems
    except Violation as e:
        failed = [str(e)]
    finally:
        if server is not None and server.proc is not None:
            server.proc.kill()
            server.proc.wait()
    elapsed = time.monotonic() - began
    kills = ", ".join(f"{k} {v}" for k, v in sorted(stats.kills.items()))
    print(
        f"chaos: {r + 1 if args.rounds else 0} rounds in {elapsed:.0f} s, seed {seed}\n"
        f"  kills by phase: {kills}\n"
        f"  acknowledged: {stats.acked_batches} batches, {stats.acked_rows} rows; unacknowledged "
        f"at a kill: {stats.unacked_present} batches present whole, {stats.unacked_gone} absent\n"
        f"  rows checked: {stats.rows_checked} (the whole table after every restart)\n"
        f"  losses {stats.losses}, duplicates {stats.duplicates}, partial batches {stats.partial}, "
        f"rows never sent {stats.unknown_rows}, view mismatches {stats.view_mismatches} "
        f"of {stats.view_checks} view checks",
        flush=True,
    )
    if failed:
        shown = failed[:PROBLEMS_SHOWN_MAX]
        if len(failed) > len(shown):
            shown.append(f"... and {len(failed) - len(shown)} more")
        print("chaos: VIOLATION", *shown, sep="\n  ", flush=True)
        print(f"chaos: data and server logs kept under {base}; reproduce the same choices with "
              f"--seed {seed}", flush=True)
        sys.exit(1)
    if not args.keep:
        # base was empty or new: nothing in it is anyone else's.
        shutil.rmtree(base, ignore_errors=True)
    print("chaos: ok", flush=True)


if __name__ == "__main__":
    main()
