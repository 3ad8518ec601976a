"""servers - real PostgreSQL and Redis servers for Keel's tests (SPEC section 7).

Both run on loopback, on free ports, in temporary directories that are
removed at teardown (also when a test fails, the interpreter exits, or the
test runner sends SIGTERM on a timeout). Python 3 standard library only.

    from servers import PgCluster, Redis

    with PgCluster(replicas=1) as pg, Redis() as rd:
        pg.url                  # postgres://keel@127.0.0.1:P/keel  (primary)
        pg.replica_urls[0]      # postgres://keel@127.0.0.1:Q/keel  (streaming replica)
        pg.psql("SELECT 1")     # -> "1"
        pg.pause_replay(0); ...; pg.resume_replay(0)
        pg.restart_primary()
        rd.url                  # redis://127.0.0.1:R/0
        rd.stop(); rd.start()   # same port

PgCluster: `initdb` a primary (trust auth on 127.0.0.1, superuser `keel`,
database `keel`, wal_level=replica, fsync=off for speed, synchronous_commit
left at its default), then one `pg_basebackup -R -X stream` copy per
replica (hot standby, streaming from the primary). PostgreSQL refuses to
run as root: as root, every server-side command runs as the `postgres`
system user (runuser) on directories owned by it; otherwise directly.
Unix sockets live in the temporary directory, never in /var/run.

Redis: `redis-server` with no persistence (no RDB, no AOF).

Both work as context managers, or with start()/close() from unittest's
setUpClass/tearDownClass, or from the benchmark scripts.
"""

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PG_BIN = os.environ.get("KEEL_PG_BIN", "/usr/lib/postgresql/15/bin")
REDIS_SERVER = os.environ.get("KEEL_REDIS_SERVER", "/usr/bin/redis-server")

_live = set()
_live_lock = threading.Lock()


class ServerSetupError(Exception):
    pass


def have_postgres():
    return all(os.access(os.path.join(PG_BIN, b), os.X_OK)
               for b in ("initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"))


def have_redis():
    return os.access(REDIS_SERVER, os.X_OK)


def free_port():
    """A loopback TCP port nothing listens on (bound then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_open(port, host="127.0.0.1", timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _register(obj):
    with _live_lock:
        _live.add(obj)


def _unregister(obj):
    with _live_lock:
        _live.discard(obj)


def close_all():
    """Tears down every server this process started and has not closed."""
    with _live_lock:
        objs = list(_live)
    for o in objs:
        try:
            o.close()
        except Exception as e:  # teardown must go on
            sys.stderr.write("servers: teardown of %r failed: %s\n" % (o, e))


atexit.register(close_all)


def install_sigterm_cleanup():
    """Makes SIGTERM (a test runner's timeout) and SIGHUP exit through
    sys.exit, so context managers, finally blocks and atexit run and no
    server outlives the test. Call once from a test's entry point."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread
            pass


# --------------------------------------------------------------------------
# PostgreSQL

class PgCluster:
    """A PostgreSQL 15 primary plus `replicas` streaming hot standbys.

    Attributes after start(): url, replica_urls, port, replica_ports, dir.
    Replica indexes are 0-based."""

    USER = "keel"
    DB = "keel"

    def __init__(self, replicas=1, extra_conf=None, log=False):
        self.nreplicas = replicas
        self.extra_conf = dict(extra_conf or {})
        self.log = log
        self.dir = None
        self.port = None
        self.replica_ports = []
        self.url = None
        self.replica_urls = []
        self._as_root = os.geteuid() == 0
        self._started = False
        self._frozen = []

    # -- helpers ---------------------------------------------------------
    def _bin(self, name):
        return os.path.join(PG_BIN, name)

    def _run_server_cmd(self, args, timeout=60, check=True):
        """Runs a server-side command (initdb, pg_ctl, pg_basebackup) as the
        postgres user when we are root."""
        if self._as_root:
            args = ["runuser", "-u", "postgres", "--"] + args
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("PG"):
                del env[k]
        env["LC_ALL"] = "C"
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, cwd=self.dir or "/")
        if check and p.returncode != 0:
            raise ServerSetupError("%s failed (exit %d):\n%s\n%s" % (
                " ".join(args), p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
        return p

    def _chown(self, path):
        if self._as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _mkdir(self, name, mode=0o700):
        path = os.path.join(self.dir, name)
        os.mkdir(path, mode)
        self._chown(path)
        return path

    def _url(self, port, db=None):
        return "postgres://%s@127.0.0.1:%d/%s" % (self.USER, port, db or self.DB)

    def _node(self, i):
        """Data directory and port of node i (None = primary)."""
        if i is None:
            return os.path.join(self.dir, "primary"), self.port
        return os.path.join(self.dir, "replica%d" % i), self.replica_ports[i]

    def _conf(self, port):
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": "'%s'" % os.path.join(self.dir, "sock"),
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "wal_keep_size": "'256MB'",
            "hot_standby": "on",
            "hot_standby_feedback": "on",
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "'32MB'",
            "max_connections": "200",
            "wal_receiver_status_interval": "1s",
            "wal_retrieve_retry_interval": "500ms",
            "checkpoint_timeout": "'30min'",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] '",
        }
        conf.update({k: str(v) for k, v in self.extra_conf.items()})
        return "".join("%s = %s\n" % kv for kv in conf.items())

    def _logfile(self, i):
        return os.path.join(self.dir, "log", "%s.log" % ("primary" if i is None else "replica%d" % i))

    def _pg_ctl_start(self, i):
        data, port = self._node(i)
        self._run_server_cmd([self._bin("pg_ctl"), "-D", data, "-l", self._logfile(i),
                              "-w", "-t", "60", "-o", "-p %d" % port, "start"], timeout=90)

    def _pg_ctl_stop(self, i, mode="fast", check=True):
        data, _ = self._node(i)
        if not os.path.exists(os.path.join(data, "postmaster.pid")):
            return
        self._run_server_cmd([self._bin("pg_ctl"), "-D", data, "-m", mode, "-w", "-t", "60",
                              "stop"], timeout=90, check=check)

    def log_tail(self, i=None, n=40):
        try:
            with open(self._logfile(i), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # -- life ------------------------------------------------------------
    def start(self):
        if not have_postgres():
            raise ServerSetupError("PostgreSQL 15 binaries not found in %s" % PG_BIN)
        _register(self)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self):
        self.dir = tempfile.mkdtemp(prefix="keel-pg-")
        os.chmod(self.dir, 0o755)  # the postgres user must traverse it
        self._chown(self.dir)
        self._mkdir("sock", 0o755)
        self._mkdir("log", 0o755)
        self.port = free_port()
        self.url = self._url(self.port)
        data = self._mkdir("primary")
        self._run_server_cmd([self._bin("initdb"), "-D", data, "-U", self.USER,
                              "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync",
                              "--no-instructions"], timeout=120)
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write("\n# keel tests\n" + self._conf(self.port))
        # initdb --auth=trust already trusts local, 127.0.0.1/32 and ::1
        # for normal and replication connections.
        self._pg_ctl_start(None)
        self._started = True
        self.psql("CREATE DATABASE %s" % self.DB, db="postgres")
        for i in range(self.nreplicas):
            self._add_replica(i)
        for i in range(self.nreplicas):
            self.wait_replica_caught_up(i)

    def _add_replica(self, i):
        port = free_port()
        self.replica_ports.append(port)
        self.replica_urls.append(self._url(port))
        data = self._mkdir("replica%d" % i)
        self._run_server_cmd([self._bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", self.USER, "-D", data, "-R", "-X", "stream", "-c", "fast",
                              "--no-sync"], timeout=120)
        # port via pg_ctl -o; the rest of the conf is the primary's copy
        with open(os.path.join(data, "postgresql.auto.conf"), "a") as f:
            f.write("port = %d\n" % port)
        self._pg_ctl_start(i)
        self._wait_accepting(port)

    def _wait_accepting(self, port, timeout=30):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            p = self._psql_raw("SELECT 1", port, self.DB, timeout=5)
            if p.returncode == 0:
                return
            last = p.stderr
            time.sleep(0.05)
        raise ServerSetupError("PostgreSQL on port %d not accepting: %s" % (port, last))

    def close(self):
        """Stops every node (immediate) and removes the directory."""
        self.thaw_primary()
        try:
            if self.dir and os.path.isdir(self.dir):
                for i in list(range(len(self.replica_ports))) + [None]:
                    try:
                        self._pg_ctl_stop(i, mode="immediate", check=False)
                    except Exception:
                        pass
                    self._kill_leftover(i)
        finally:
            if self.dir:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            self._started = False
            _unregister(self)

    def _kill_leftover(self, i):
        data, _ = self._node(i)
        try:
            with open(os.path.join(data, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # -- psql ------------------------------------------------------------
    def _psql_raw(self, sql, port, db, timeout=30):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGCONNECT_TIMEOUT"] = "3"
        return subprocess.run([self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", "127.0.0.1", "-p", str(port), "-U", self.USER, "-d", db,
                               "-c", sql],
                              env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def psql(self, sql, replica=None, db=None, check=True, timeout=30):
        """Runs sql with psql on the primary (or replica i); returns the
        output (unaligned, tuples only, '|' between columns) stripped.
        Raises ServerSetupError on failure when check."""
        port = self.port if replica is None else self.replica_ports[replica]
        p = self._psql_raw(sql, port, db or self.DB, timeout=timeout)
        if check and p.returncode != 0:
            raise ServerSetupError("psql on port %d failed: %s\nSQL: %s" % (port, p.stderr.strip(), sql))
        return p.stdout.strip()

    def create_database(self, name):
        """Creates an empty database on the primary; returns its URL."""
        self.psql('CREATE DATABASE "%s"' % name.replace('"', ''), db="postgres")
        return self._url(self.port, name)

    def url_for(self, db):
        return self._url(self.port, db)

    # -- primary ---------------------------------------------------------
    def stop_primary(self, mode="fast"):
        """mode: smart | fast (disconnect clients, clean shutdown) |
        immediate (like a crash)."""
        self._pg_ctl_stop(None, mode=mode)

    def start_primary(self):
        self._pg_ctl_start(None)
        self._wait_accepting(self.port)

    def restart_primary(self, mode="fast"):
        self.stop_primary(mode)
        self.start_primary()

    def primary_running(self):
        return port_open(self.port)

    def _pids(self, i=None):
        """The postmaster of node i (None = primary) and all its children."""
        data, _ = self._node(i)
        with open(os.path.join(data, "postmaster.pid")) as f:
            pid = int(f.readline().strip())
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                             text=True).stdout.split()
        return [pid] + [int(x) for x in out]

    def freeze_primary(self):
        """SIGSTOPs every process of the primary: connections stay open (the
        kernel still ACKs on loopback) but nothing answers - a hung server.
        Always pair with thaw_primary() (close() thaws too)."""
        self._frozen = self._pids(None)
        for pid in self._frozen:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass

    def thaw_primary(self):
        for pid in self._frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        self._frozen = []

    # -- replicas --------------------------------------------------------
    def stop_replica(self, i, mode="fast"):
        self._pg_ctl_stop(i, mode=mode)

    def start_replica(self, i):
        self._pg_ctl_start(i)
        self._wait_accepting(self.replica_ports[i])

    def promote_replica(self, i):
        """Promotes replica i to a primary (pg_ctl promote, waits until it
        accepts writes). For failover tests: stop the primary first."""
        data, _ = self._node(i)
        self._run_server_cmd([self._bin("pg_ctl"), "-D", data, "-w", "-t", "60", "promote"], timeout=90)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.psql("SELECT pg_is_in_recovery()", replica=i, check=False) == "f":
                return
            time.sleep(0.05)
        raise ServerSetupError("replica %d still in recovery after promote" % i)

    def multi_host_url(self, read_write=True):
        """A libpq multi-host URI over the primary and every replica."""
        hosts = ",".join("127.0.0.1:%d" % p for p in [self.port] + self.replica_ports)
        return "postgres://%s@%s/%s%s" % (self.USER, hosts, self.DB,
                                          "?target_session_attrs=read-write" if read_write else "")

    def pause_replay(self, i, timeout=10):
        """Pauses WAL replay on replica i and waits until it is paused
        (WAL still streams in; it is just not applied)."""
        self.psql("SELECT pg_wal_replay_pause()", replica=i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.psql("SELECT pg_get_wal_replay_pause_state()", replica=i) == "paused":
                return
            time.sleep(0.02)
        raise ServerSetupError("replica %d did not pause replay" % i)

    def resume_replay(self, i):
        self.psql("SELECT pg_wal_replay_resume()", replica=i)

    def current_lsn(self):
        return self.psql("SELECT pg_current_wal_lsn()")

    def replay_lsn(self, i):
        return self.psql("SELECT pg_last_wal_replay_lsn()", replica=i)

    def wait_replica_caught_up(self, i, timeout=30):
        """Waits until replica i has replayed everything the primary has
        written so far."""
        target = self.current_lsn()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            p = self._psql_raw("SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn" % target,
                               self.replica_ports[i], self.DB, timeout=5)
            last = (p.stdout + p.stderr).strip()
            if p.returncode == 0 and last == "t":
                return
            time.sleep(0.02)
        raise ServerSetupError("replica %d did not reach %s within %ss (last: %s)\n%s" % (
            i, target, timeout, last, self.log_tail(i)))

    def __repr__(self):
        return "PgCluster(port=%s, replicas=%s, dir=%s)" % (self.port, self.replica_ports, self.dir)


# --------------------------------------------------------------------------
# Redis

class Redis:
    """redis-server on 127.0.0.1:<free port>, no persistence. stop() and
    start() keep the port, so clients reconnect to the same URL."""

    def __init__(self, port=None):
        self.port = port
        self.dir = None
        self.proc = None
        self.url = None
        self._logf = None
        self._frozen = False

    def start(self):
        """Starts the server; after stop(), starts it again on the same
        port with the same directory."""
        if not have_redis():
            raise ServerSetupError("redis-server not found at %s" % REDIS_SERVER)
        _register(self)
        try:
            if self.dir is None:
                self.dir = tempfile.mkdtemp(prefix="keel-redis-")
            if self.port is None:
                self.port = free_port()
            self.url = "redis://127.0.0.1:%d/0" % self.port
            self._spawn()
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self, timeout=10):
        if self.proc is not None and self.proc.poll() is None:
            return
        self._logf = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
             "--protected-mode", "no", "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerSetupError("redis-server exited with %s:\n%s" % (
                    self.proc.returncode, self.log_tail()))
            if self.ping():
                return
            time.sleep(0.02)
        raise ServerSetupError("redis-server not answering PING on %d" % self.port)

    def command(self, *args, timeout=2.0):
        """Sends one command (RESP) and returns the raw reply bytes."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(out)
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    def ping(self):
        try:
            return self.command("PING", timeout=0.5).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        """Stops the server (SIGTERM; SIGKILL after 5 s). The port stays
        reserved for start()."""
        self.thaw()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self._logf:
            self._logf.close()
            self._logf = None
        deadline = time.monotonic() + 5
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self):
        self.stop()
        self._spawn()

    def freeze(self):
        """SIGSTOPs redis-server: connects and commands hang instead of
        failing (what a command timeout is for). Pair with thaw()."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)
            self._frozen = True

    def thaw(self):
        if self.proc is not None and self.proc.poll() is None and self._frozen:
            self.proc.send_signal(signal.SIGCONT)
        self._frozen = False

    def log_tail(self, n=20):
        try:
            with open(os.path.join(self.dir, "redis.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except (OSError, TypeError):
            return ""

    def close(self):
        try:
            self.stop()
        finally:
            if self.dir:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            _unregister(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return "Redis(port=%s)" % self.port


if __name__ == "__main__":
    # Smoke test: python3 tests/lib/servers.py
    install_sigterm_cleanup()
    t0 = time.monotonic()
    with PgCluster(replicas=1) as pg, Redis() as rd:
        print("pg up in %.1fs: %s %s" % (time.monotonic() - t0, pg.url, pg.replica_urls))
        pg.psql("CREATE TABLE t (x int)")
        pg.psql("INSERT INTO t VALUES (1)")
        pg.wait_replica_caught_up(0)
        print("replica sees", pg.psql("SELECT count(*) FROM t", replica=0))
        pg.pause_replay(0)
        pg.psql("INSERT INTO t VALUES (2)")
        time.sleep(0.3)
        print("paused replica sees", pg.psql("SELECT count(*) FROM t", replica=0))
        pg.resume_replay(0)
        pg.wait_replica_caught_up(0)
        print("resumed replica sees", pg.psql("SELECT count(*) FROM t", replica=0))
        t1 = time.monotonic()
        pg.restart_primary()
        print("primary restarted in %.1fs" % (time.monotonic() - t1))
        pg.stop_replica(0)
        pg.start_replica(0)
        pg.wait_replica_caught_up(0)
        print("redis", rd.url, rd.ping())
        rd.stop()
        print("redis after stop", rd.ping())
        rd.start()
        print("redis after start", rd.ping())
    print("total %.1fs" % (time.monotonic() - t0))
