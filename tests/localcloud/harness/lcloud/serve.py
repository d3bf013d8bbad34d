"""Run one OpenStack service, or one setup task, inside the services' virtual environment.

Service side: `python -m lcloud.serve SERVICE PORT` with the state directory in GRIB_LC_STATE.
Every service runs its WSGI app in waitress; Nova runs its API, conductor, scheduler and
compute in this one process (the fake message transport only works in-process).
GRIB_LC_REQUEST_LOG=1 in the host's environment makes every service log its requests' cost to
logs/SERVICE-requests.log (for profiling the harness).
"""

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

STATE = Path(os.environ.get("GRIB_LC_STATE", "."))


def _serialise_sqlite() -> None:
    """Make a thread's outermost sqlite transaction take the write lock up front.

    A deferred transaction that reads and then writes while another connection writes gets
    "database is locked" at once, without waiting: sqlite cannot let it upgrade. Nova's
    threads do exactly that. Taking the lock at BEGIN (BEGIN IMMEDIATE) lets the busy timeout
    queue them instead; this is SQLAlchemy's documented recipe for pysqlite.

    A transaction that a thread opens while it already holds one on the same database is
    different: it can only be an independent reader (Placement re-reads a resource provider
    in one when two allocation writes race). Were it IMMEDIATE, it would wait for the write
    lock its own thread holds, time out after the busy timeout, and Placement would answer
    500, which Nova reports as "No valid host was found". It starts deferred instead: a
    reader may read while another connection holds the write lock.
    """
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    open_here = threading.local()  # database URL -> transactions this thread has open on it

    def _depths() -> dict[str, int]:
        if not hasattr(open_here, "depths"):
            open_here.depths = {}
        depths: dict[str, int] = open_here.depths
        return depths

    def _connect(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.isolation_level = None  # SQLAlchemy's begin event issues BEGIN
            dbapi_connection.execute("PRAGMA busy_timeout = 60000")
            # The state is thrown away after the run: no fsync per commit. In WAL mode readers
            # do not wait for a writer's commit, nor a writer for readers.
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            dbapi_connection.execute("PRAGMA synchronous = OFF")

    # oslo.db emits its own deferred BEGIN unless conn.info says a transaction is open; ours
    # runs first (class-level listeners precede the engine's own) and sets that marker.
    def _begin(connection: Any) -> None:
        if connection.dialect.name == "sqlite" and "in_transaction" not in connection.info:
            database = str(connection.engine.url)
            depths = _depths()
            nested = depths.get(database, 0) > 0
            connection.exec_driver_sql("BEGIN" if nested else "BEGIN IMMEDIATE")
            connection.info["in_transaction"] = database
            depths[database] = depths.get(database, 0) + 1

    def _end(connection: Any) -> None:
        _forget(connection.info)

    def _forget(info: dict[str, Any]) -> None:
        database = info.pop("in_transaction", None)
        if database is not None:
            depths = _depths()
            depths[database] = max(0, depths.get(database, 0) - 1)

    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        # A connection returned to the pool mid-transaction (an error path) ends it too.
        if record is not None:
            _forget(record.info)

    event.listen(Pool, "connect", _connect)
    event.listen(Pool, "checkin", _checkin)
    event.listen(Engine, "begin", _begin)
    event.listen(Engine, "commit", _end)
    event.listen(Engine, "rollback", _end)


def _pool_sqlite() -> None:
    """Keep sqlite connections open in a pool instead of opening one per transaction.

    oslo.db gives sqlite files a NullPool, so every transaction opened a connection and sqlite
    parsed the whole schema again on its first statement (~2 ms for Neutron's 350 tables and
    indexes, several times per request). A pooled connection keeps its parsed schema and
    prepared statements. Each is used by one thread at a time, so sharing across threads is
    safe.
    """
    from oslo_db.sqlalchemy import engines
    from sqlalchemy import pool

    original = engines._init_connection_args

    def init_connection_args(url: Any, engine_args: dict[str, Any], kw: dict[str, Any]) -> None:
        original(url, engine_args, kw)
        if engine_args.get("poolclass") is pool.NullPool:
            engine_args["poolclass"] = pool.QueuePool
            engine_args["pool_size"] = 20
            engine_args["max_overflow"] = -1
            engine_args["connect_args"]["check_same_thread"] = False

    engines._init_connection_args = init_connection_args


def _watch_parent() -> None:
    """Exit when the process that started us is gone (even if it was SIGKILLed)."""
    parent = int(os.environ.get("GRIB_LC_PARENT_PID", "0"))

    def watch() -> None:
        while True:
            if parent and os.getppid() != parent:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))


def _request_log(app: Any) -> Any:
    """Wrap a WSGI app to log each request's method, path, wall and CPU seconds (profiling).

    CPU is the serving thread's own (`thread_time`): exact for Neutron (one thread), a lower
    bound for Nova, whose conductor and compute work runs in other threads.
    """
    name = sys.argv[0].removeprefix("localcloud-")
    log = (STATE / "logs" / f"{name}-requests.log").open("a", buffering=1)

    def logged(environ: dict[str, Any], start_response: Any) -> Any:
        wall, cpu = time.monotonic(), time.thread_time()
        try:
            return list(app(environ, start_response))
        finally:
            path = environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", "")
            log.write(
                f"{time.time():.3f} {environ['REQUEST_METHOD']} {path}"
                f" wall={time.monotonic() - wall:.3f} cpu={time.thread_time() - cpu:.3f}\n"
            )

    return logged


def _serve(app: Any, port: int, threads: int = 8) -> None:
    import waitress

    if os.environ.get("GRIB_LC_REQUEST_LOG") == "1":
        app = _request_log(app)

    waitress.serve(
        app,
        host="127.0.0.1",
        port=port,
        threads=threads,
        ident="localcloud",
        max_request_body_size=1 << 40,  # waitress refuses bodies over 1 GiB by default
        _quiet=True,
    )


def keystone(port: int) -> None:
    """Serve Keystone."""
    from keystone.server import wsgi

    _serve(wsgi.initialize_public_application(), port)


def keystone_init(url: str) -> None:
    """Create Keystone's schema, keys and admin in one process (4 keystone-manage calls)."""
    import keystone.conf
    from keystone.cmd import cli

    conf = str(STATE / "keystone" / "keystone.conf")
    password = os.environ["GRIB_LC_ADMIN_PASSWORD"]  # never in argv
    for args in (
        ["db_sync"],
        ["fernet_setup", "--keystone-user", "root", "--keystone-group", "root"],
        ["credential_setup", "--keystone-user", "root", "--keystone-group", "root"],
        [
            # `=`: a random password may start with `-`, which argparse would read as an option.
            "bootstrap", f"--bootstrap-password={password}", "--bootstrap-region-id", "RegionOne",
            "--bootstrap-admin-url", url, "--bootstrap-public-url", url,
            "--bootstrap-internal-url", url,
        ],
    ):  # fmt: skip
        cli.main(["keystone-manage", "--config-file", conf, *args])
        keystone.conf.CONF.reset()
        keystone.conf.CONF.unregister_opt(cli.command_opt)


def glance(port: int) -> None:
    """Serve Glance (the build cloud's, and the catalogue's: Nova's snapshots land here)."""
    from glance.common import wsgi_app

    _serve(wsgi_app.init_app(), port)


def glance_uploads(port: int) -> None:
    """Serve the upload clouds' Glance: the same database and store, a process of its own."""
    os.environ["OS_GLANCE_CONFIG_DIR"] = str(STATE / "glance-uploads")
    glance(port)


def placement(port: int) -> None:
    """Serve Placement."""
    from placement import wsgi

    _serve(wsgi.init_application(), port)


def neutron_init() -> None:
    """Create Neutron's tables from its models (its migrations need ALTER, which sqlite lacks)."""
    import sqlalchemy
    from neutron.db.migration.models import head

    engine = sqlalchemy.create_engine(f"sqlite:///{STATE / 'neutron' / 'neutron.db'}")
    head.get_metadata().create_all(engine)


def neutron(port: int) -> None:
    """Serve Neutron's API (ML2 with our binding driver; no agents, no RPC workers)."""
    import neutron.server
    from neutron.server import api

    # One request at a time: Neutron was written for green threads, and with two real threads
    # a member's create_security_group was sometimes refused by policy (a lazy-init race).
    _serve(neutron.server.boot_server(api.api_server), port, threads=1)


def nova(port: int) -> None:
    """Serve Nova: API in waitress, conductor, scheduler and compute as threads beside it."""
    from nova import monkey_patch

    monkey_patch.patch(backend="threading")
    import os_vif
    from nova import context, objects, service
    from nova.api.openstack import wsgi_app
    from nova.compute import rpcapi as compute_rpcapi
    from nova.objects import host_mapping

    from lcloud import nova_driver

    sys.modules["nova.virt.grib_guest"] = nova_driver
    app = wsgi_app.init_application("osapi_compute", "nova-api")
    objects.register_all()
    os_vif.initialize()
    for binary, topic in (("nova-conductor", "conductor"), ("nova-scheduler", "scheduler")):
        service.Service.create(binary=binary, topic=topic).start()
    service.Service.create(
        binary="nova-compute",
        topic=compute_rpcapi.RPC_TOPIC,
        topic_alt=compute_rpcapi.RPC_TOPIC_ALT,
    ).start()
    # Map the compute host into its cell now, so the first boot finds a valid host.
    ctxt = context.get_admin_context()
    for _ in range(120):
        if host_mapping.discover_hosts(ctxt):
            break
        time.sleep(0.5)
    _serve(app, port)


def main() -> None:
    """Dispatch: `serve.py SERVICE [ARGS...]`."""
    name, args = sys.argv[1], sys.argv[2:]
    # oslo.config parses sys.argv: leave it only the program name.
    sys.argv = [f"localcloud-{name}"]
    _watch_parent()
    _serialise_sqlite()
    _pool_sqlite()
    if name == "keystone-init":
        keystone_init(args[0])
    elif name == "neutron-init":
        neutron_init()
    else:
        services = {
            "keystone": keystone,
            "glance": glance,
            "glance-uploads": glance_uploads,
            "placement": placement,
            "neutron": neutron,
            "nova": nova,
        }
        services[name](int(args[0]))


if __name__ == "__main__":
    main()
