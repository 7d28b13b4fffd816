"""A real PostgreSQL driver (psycopg 3, Debian's python3-psycopg) against
`laminar serve`'s sql address, for bin/tests/pg.rs. Each command prints
one JSON object; the Rust test asserts on it.

  pg_client.py PORT select SQL            rows of one query (extended protocol)
  pg_client.py PORT concurrent N SECONDS  N clients querying at once
  pg_client.py PORT subscribe STREAM ROWS  COPY (SUBSCRIBE …) until ROWS rows, then cancel
  pg_client.py PORT stalled STREAM         subscribe, read nothing until told, then read
  pg_client.py PORT password USER PASS     connect with SCRAM and run SHOW SOURCES
  pg_client.py PORT binary SQL             one query with text and with binary results
"""

import json
import os
import sys
import threading
import time

import psycopg


def connect(port, user=None, password=None):
    user = user or os.environ.get("PGUSER", "laminar")
    password = password or os.environ.get("PGPASSWORD")
    return psycopg.connect(
        host="127.0.0.1", port=port, user=user, password=password, dbname="laminar",
        sslmode="disable", autocommit=True, connect_timeout=30,
    )


def select(port, sql):
    with connect(port) as conn:
        cur = conn.execute(sql)
        cols = [d.name for d in cur.description]
        rows = [[None if v is None else str(v) for v in r] for r in cur.fetchall()]
    print(json.dumps({"columns": cols, "rows": rows}))


def concurrent(port, clients, seconds):
    """Each client reads SHOW CHECKPOINTS and one auction's row in a loop;
    a client's counts never go down (each read is a later checkpoint)."""
    errors, queries, regressions = [], [0], [0]
    lock = threading.Lock()
    stop = time.time() + seconds

    def client(i):
        try:
            with connect(port) as conn:
                last = -1
                while time.time() < stop:
                    conn.execute("SHOW CHECKPOINTS").fetchall()
                    row = conn.execute(f"SELECT bids FROM per_auction WHERE auction = {i % 40}").fetchone()
                    bids = int(row[0]) if row else 0
                    with lock:
                        queries[0] += 2
                        if bids < last:
                            regressions[0] += 1
                    last = bids
        except Exception as e:  # noqa: BLE001 - reported to the test
            with lock:
                errors.append(f"client {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"queries": queries[0], "errors": errors, "regressions": regressions[0]}))


def subscribe(port, stream, want):
    """Reads rows of the subscription until `want`, then cancels it."""
    rows, error = [], None
    conn = connect(port)
    try:
        with conn.cursor() as cur:
            with cur.copy(f"COPY (SUBSCRIBE {stream}) TO STDOUT") as copy:
                # The server answered the COPY: its tap is in place.
                print(json.dumps({"subscribed": True}), flush=True)
                for row in copy.rows():
                    rows.append(list(row))
                    if len(rows) == want:
                        conn.cancel()
    except psycopg.Error as e:
        error = {"sqlstate": e.sqlstate, "message": str(e)}
    print(json.dumps({"rows": rows, "error": error}))


def stalled(port, stream):
    """Subscribes, reads nothing until a line arrives on stdin, then reads
    everything there is: the subscription ends with the cut."""
    conn = connect(port)
    rows, error = 0, None
    with conn.cursor() as cur:
        try:
            with cur.copy(f"COPY (SUBSCRIBE {stream}) TO STDOUT") as copy:
                print(json.dumps({"subscribed": True}), flush=True)
                sys.stdin.readline()
                for data in copy:
                    rows += data.count(b"\n")
        except psycopg.Error as e:
            error = {"sqlstate": e.sqlstate, "message": str(e)}
    print(json.dumps({"rows": rows, "error": error}))


def as_text(v):
    """A value as laminar writes it in text, whatever format it came in."""
    import datetime
    if v is None:
        return None
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, datetime.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S.") + f"{v.microsecond // 1000:03d}"
    return str(v)


def binary(port, sql):
    out = {}
    with connect(port) as conn:
        for name, is_binary in (("text", False), ("binary", True)):
            with conn.cursor(binary=is_binary) as cur:
                cur.execute(sql)
                rows = cur.fetchall()
                out[name] = [[as_text(v) for v in r] for r in rows]
                out[name + "_types"] = sorted({type(v).__name__ for r in rows for v in r})
    print(json.dumps(out))


def password(port, user, pw):
    try:
        with connect(port, user=user, password=pw) as conn:
            n = len(conn.execute("SHOW SOURCES").fetchall())
        print(json.dumps({"ok": True, "sources": n}))
    except psycopg.Error as e:
        print(json.dumps({"ok": False, "sqlstate": e.sqlstate, "message": str(e)}))


def main():
    port, command, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if command == "select":
        select(port, args[0])
    elif command == "concurrent":
        concurrent(port, int(args[0]), float(args[1]))
    elif command == "subscribe":
        subscribe(port, args[0], int(args[1]))
    elif command == "stalled":
        stalled(port, args[0])
    elif command == "binary":
        binary(port, args[0])
    elif command == "password":
        password(port, args[0], args[1])
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
