"""Real services for tests: PostgreSQL (the machine's, or a throwaway server), moto's S3 server, and a
loopback HTTP server base for the protocol fakes."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid

import psycopg2

DEFAULT_PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable(url: str) -> bool:
    try:
        psycopg2.connect(_dsn(url), connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


class ThrowawayPostgres:
    """initdb + pg_ctl in a temp folder, as the postgres user when running as root."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins and not shutil.which("initdb"):
            raise RuntimeError("no PostgreSQL server binaries (initdb) on this machine")
        self.bin = os.path.dirname(bins[-1]) if bins else os.path.dirname(shutil.which("initdb"))
        self.dir = tempfile.mkdtemp(prefix="eval-pipeline-pg-")
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")

    def start(self) -> str:
        data = os.path.join(self.dir, "data")
        subprocess.run(self._as + [f"{self.bin}/initdb", "-D", data, "-U", "postgres", "-A", "trust"],
                       check=True, capture_output=True)
        opts = f"-c fsync=off -c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}"
        subprocess.run(self._as + [f"{self.bin}/pg_ctl", "-D", data, "-o", opts, "-w", "-l",
                                   os.path.join(self.dir, "log"), "start"], check=True, capture_output=True)
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(self._as + [f"{self.bin}/pg_ctl", "-D", os.path.join(self.dir, "data"), "-m",
                                   "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_server():
    """(admin URL, stopper): EVAL_PIPELINE_TEST_PG, else 127.0.0.1:5432, else a throwaway server."""
    url = os.environ.get("EVAL_PIPELINE_TEST_PG") or DEFAULT_PG
    if _reachable(url):
        return url, lambda: None
    own = ThrowawayPostgres()
    return own.start(), own.stop


def create_database(admin_url: str) -> str:
    name = f"evalp_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(_dsn(admin_url))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = psycopg2.connect(_dsn(admin_url))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def redis_server():
    """(URL, stopper): EVAL_PIPELINE_TEST_REDIS, else 127.0.0.1:6379, else a redis-server of our own on a free
    port, keeping nothing on disk."""
    import redis

    url = os.environ.get("EVAL_PIPELINE_TEST_REDIS") or "redis://127.0.0.1:6379"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        return url, lambda: None
    except redis.ConnectionError:
        pass
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}"
    for _ in range(100):
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            break
        except redis.ConnectionError:
            import time

            time.sleep(0.1)

    def stop():
        proc.terminate()
        proc.wait(timeout=10)

    return url, stop


class LoopbackHTTP:
    """A threaded HTTP server on a free loopback port, serving `handler` while in a `with` block; `url` is
    its base URL with `path` appended."""

    def __init__(self, handler, path: str = ""):
        from http.server import ThreadingHTTPServer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

