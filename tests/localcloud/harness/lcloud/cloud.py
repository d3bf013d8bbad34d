"""Start, provision and stop the local cloud (host side: the test, demo or benchmark process).

    with LocalCloud.start() as cloud:
        env = cloud.cli_env()            # OS_CLIENT_CONFIG_FILE -> cloud.clouds_yaml
        cloud.guests([GuestScript(match="grib-", after=2)])
        ... run the CLI with --os-cloud cloud.BUILD --upload-clouds cloud.RUNNER_A ...

Every service process is started in its own session (process group) and stopped on `stop()`,
at exit, on SIGTERM, and — should this process be SIGKILLed — by itself (each service watches
its parent). The state lives in a temporary directory removed on stop (kept when
GRIB_LOCALCLOUD_KEEP=1, handy for reading the services' logs).
"""

import atexit
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from lcloud import configs, guest, venv
from lcloud.proxy import FaultProxy

HERE = Path(__file__).resolve().parent
MARKER_PY = HERE.parents[3] / "app" / "src" / "github_runner_image_builder" / "guest" / "marker.py"
SERVICE_USERS = ("glance", "nova", "neutron", "placement")
FLAVORS = {"m1.builder": (2, 1024, 20), "m1.tiny": (1, 512, 1)}
NETWORK = "localcloud-net"


class StartError(RuntimeError):
    """The local cloud did not come up; the message names the service and its log."""


@dataclasses.dataclass(frozen=True)
class Account:
    """A project and its user: one cloud in clouds.yaml."""

    cloud: str
    project: str
    user: str
    password: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback URL we built)
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the service is serving
    except OSError:
        return False


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


class LocalCloud:
    """A running local cloud and the handles a test needs."""

    BUILD = "localcloud-build"
    RUNNER_A = "localcloud-runner-a"
    RUNNER_B = "localcloud-runner-b"
    RUNNER_C = "localcloud-runner-c"  # a third upload cloud, for the benchmark's matrix
    UPLOAD_CLOUDS = (RUNNER_A, RUNNER_B, RUNNER_C)
    ADMIN = "localcloud-admin"

    def __init__(self, state: Path) -> None:
        self.state = state
        self.clouds_yaml = state / "clouds.yaml"
        self.timings: dict[str, float] = {}
        self.accounts: dict[str, Account] = {}
        self.proxies: dict[str, FaultProxy] = {}
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._lock = threading.Lock()
        self._stopped = False
        self._python = Path()
        self._layout: configs.Layout | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator["LocalCloud"]:
        """Install (if needed), start and provision the cloud; stop it when the block ends."""
        cloud = cls(Path(tempfile.mkdtemp(prefix="grib-localcloud-")))
        atexit.register(cloud.stop)
        if (
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
            and threading.current_thread() is threading.main_thread()
        ):
            # Turn SIGTERM into SystemExit so finally-blocks and atexit stop the services.
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            cloud._boot()
            yield cloud
        finally:
            cloud.stop()

    def stop(self) -> None:
        """Stop every process we started (whole process groups), then remove the state."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            processes = list(reversed(self._processes))
        for proxy in self.proxies.values():
            proxy.close()
        for _, process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if os.environ.get("GRIB_LOCALCLOUD_KEEP") != "1":
            shutil.rmtree(self.state, ignore_errors=True)

    # --- what tests use --------------------------------------------------------------------

    def guests(self, scripts: list[guest.GuestScript]) -> None:
        """Script the guests of servers spawned from now on (first matching name prefix)."""
        guest.write_scripts(self.state, scripts)

    def set_fault(self, proxy: str, mode: str | None) -> None:
        """Switch a fault on a proxy on ("down", "503", "reset", maybe counted: "503 2") or off.

        Proxies: "keystone", "glance-<cloud>", "nova-<build cloud>", "neutron-<build cloud>".
        """
        guest.set_fault(self.state, proxy, mode)

    def cli_env(self) -> dict[str, str]:
        """Return an environment for running the CLI against this cloud."""
        env = dict(os.environ)
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        for key in list(env):
            if key.startswith("OS_") and key != "OS_CLIENT_CONFIG_FILE":
                del env[key]
        return env

    def connect(self, cloud: str | None = None) -> Any:
        """Return an openstacksdk connection to one of our clouds (admin by default)."""
        import openstack

        return openstack.connect(
            load_yaml_config=False, load_envvars=False, **self._cloud_config(cloud)
        )

    def events(self) -> list[dict[str, Any]]:
        """Return what the hypervisor recorded: spawn and poweroff, with server and time."""
        path = self.state / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def pids(self) -> list[int]:
        """Return the ids of the service processes still running."""
        with self._lock:
            return [p.pid for _, p in self._processes if p.poll() is None]

    def service_logs(self) -> Path:
        """Return the directory holding every service's log."""
        return self.state / "logs"

    # --- booting ---------------------------------------------------------------------------

    def _boot(self) -> None:
        started = time.monotonic()
        self._python, self.timings["install"] = venv.ensure()
        boot_started = time.monotonic()
        ports = configs.Ports(*(_free_port() for _ in range(6)))
        layout = configs.Layout(
            self.state, self._python.parent.parent, ports, secrets.token_urlsafe(16)
        )
        self._layout = layout
        self._admin_password = secrets.token_urlsafe(16)
        self._write_configs(layout)
        self.proxies["keystone"] = self._proxy("keystone", ports.keystone)
        self.proxies[f"glance-{self.BUILD}"] = self._proxy(f"glance-{self.BUILD}", ports.glance)
        for cloud in self.UPLOAD_CLOUDS:
            self.proxies[f"glance-{cloud}"] = self._proxy(f"glance-{cloud}", ports.glance_uploads)
        # The build cloud alone sees Nova and Neutron through proxies of its own: the services'
        # own calls to each other stay direct, so a fault hits only the CLI.
        self.proxies[f"nova-{self.BUILD}"] = self._proxy(f"nova-{self.BUILD}", ports.nova)
        self.proxies[f"neutron-{self.BUILD}"] = self._proxy(f"neutron-{self.BUILD}", ports.neutron)

        keystone_ready = threading.Event()
        placement_ready = threading.Event()
        errors: list[BaseException] = []

        def chain(name: str, body: Callable[[], None]) -> threading.Thread:
            def run() -> None:
                try:
                    body()
                except BaseException as error:  # reported after join
                    errors.append(error)
                    keystone_ready.set()
                    placement_ready.set()

            thread = threading.Thread(target=run, name=f"boot-{name}", daemon=True)
            thread.start()
            return thread

        def keystone() -> None:
            url = f"{layout.url('keystone')}/v3"
            self._run("keystone-init", [*self._serve("keystone-init"), url])
            self._server("keystone", ports.keystone, "/v3")
            self._provision_identity(layout)
            keystone_ready.set()

        def glance() -> None:
            conf = str(self.state / "glance" / "glance-api.conf")
            self._run("glance-db", [self._bin("glance-manage"), "--config-file", conf, "db_sync"])
            uploads = chain("glance-uploads", lambda: self._server(
                "glance-uploads", ports.glance_uploads, "/"
            ))  # fmt: skip
            self._server("glance", ports.glance, "/")
            uploads.join()

        def placement() -> None:
            conf = str(self.state / "placement" / "placement.conf")
            manage = [self._bin("placement-manage"), "--config-file", conf]
            self._run("placement-db", [*manage, "db", "sync"])
            self._server("placement", ports.placement, "/")
            placement_ready.set()

        def nova() -> None:
            conf = str(self.state / "nova" / "nova.conf")
            manage = [self._bin("nova-manage"), "--config-file", conf]
            self._run("nova-api-db", [*manage, "api_db", "sync"])
            cell0 = layout.db("nova", "nova_cell0")
            self._run(
                "nova-cell0", [*manage, "cell_v2", "map_cell0", "--database_connection", cell0]
            )
            self._run("nova-cell1", [*manage, "cell_v2", "create_cell", "--name", "cell1"])
            self._run("nova-db", [*manage, "db", "sync"])
            keystone_ready.wait()
            placement_ready.wait()
            if errors:
                return
            # The compute service reports to Placement as it starts: both must be up first.
            self._server("nova", ports.nova, "/")

        def neutron() -> None:
            self._run("neutron-db", self._serve("neutron-init"))
            conf = self.state / "neutron"
            self._run(
                "neutron-stamp",
                [
                    self._bin("neutron-db-manage"), "--config-file", str(conf / "neutron.conf"),
                    "--config-file", str(conf / "ml2.ini"), "stamp", "heads",
                ],
            )  # fmt: skip
            self._server("neutron", ports.neutron, "/")

        threads = [
            chain(name, body)
            for name, body in (
                ("keystone", keystone),
                ("glance", glance),
                ("placement", placement),
                ("nova", nova),
                ("neutron", neutron),
            )
        ]
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        self.timings["services_up"] = time.monotonic() - boot_started
        self._provision_resources()
        self.timings["cold_start"] = time.monotonic() - boot_started
        self.timings["total_start"] = time.monotonic() - started

    def _bin(self, name: str) -> str:
        return str(self._python.parent / name)

    def _serve(self, *args: str) -> list[str]:
        return [str(self._python), "-m", "lcloud.serve", *args]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "PYTHON"))}
        env.update(
            PYTHONPATH=str(HERE.parent),
            GRIB_LC_STATE=str(self.state),
            GRIB_LC_PARENT_PID=str(os.getpid()),
            GRIB_LC_MARKER=str(MARKER_PY),
            GRIB_LC_ADMIN_PASSWORD=self._admin_password,
            OS_KEYSTONE_CONFIG_DIR=str(self.state / "keystone"),
            OS_GLANCE_CONFIG_DIR=str(self.state / "glance"),
            OS_PLACEMENT_CONFIG_DIR=str(self.state / "placement"),
            OS_NOVA_CONFIG_DIR=str(self.state / "nova"),
            OS_NEUTRON_CONFIG_DIR=str(self.state / "neutron"),
            OS_NEUTRON_CONFIG_FILES="neutron.conf;ml2.ini",
        )
        return env

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._stopped:
                raise StartError("the local cloud was stopped while starting")
            log = (self.state / "logs" / f"{name}.log").open("ab")
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                cwd=self.state,
                start_new_session=True,  # its own process group: stop() kills it whole
            )
            log.close()
            self._processes.append((name, process))
            return process

    def _run(self, name: str, argv: list[str]) -> None:
        """Run a setup step to completion."""
        began = time.monotonic()
        code = self._spawn(name, argv).wait()
        self.timings[name] = time.monotonic() - began
        if code:
            log = self.state / "logs" / f"{name}.log"
            tail = log.read_text(errors="replace")[-1500:]
            raise StartError(f"local cloud setup step {name} failed (exit {code}); {log}:\n{tail}")

    def _server(self, name: str, port: int, path: str, timeout: float = 120) -> None:
        """Start a service and wait until it answers HTTP."""
        began = time.monotonic()
        process = self._spawn(name, self._serve(name, str(port)))
        while not _answers(f"http://127.0.0.1:{port}{path}"):
            if process.poll() is not None or time.monotonic() - began > timeout:
                log = self.state / "logs" / f"{name}.log"
                app_log = self.state / "logs" / f"{name}-app.log"
                tail = "".join(
                    p.read_text(errors="replace")[-1500:] for p in (log, app_log) if p.exists()
                )
                raise StartError(f"local cloud service {name} did not come up; {log}:\n{tail}")
            time.sleep(0.2)
        self.timings[f"{name}_up"] = time.monotonic() - began

    def _proxy(self, name: str, upstream: int) -> FaultProxy:
        return FaultProxy(upstream, lambda: guest.take_fault(self.state, name))

    def _write_configs(self, layout: configs.Layout) -> None:
        s = self.state
        for sub in (
            "logs", "consoles", "snapshots", "faults",
            "keystone/fernet-keys", "keystone/receipt-keys", "keystone/credential-keys",
            "glance/images", "glance/staging", "glance/tasks",
            "placement", "nova/instances", "nova/locks", "neutron/locks",
        ):  # fmt: skip
            (s / sub).mkdir(parents=True, exist_ok=True)
        layout.policy_file.write_text("{}\n")
        layout.policy_dir.mkdir()
        (s / "keystone" / "keystone.conf").write_text(configs.keystone(layout))
        (s / "glance" / "glance-api.conf").write_text(configs.glance(layout))
        (s / "placement" / "placement.conf").write_text(configs.placement(layout))
        (s / "nova" / "nova.conf").write_text(configs.nova(layout))
        (s / "neutron" / "neutron.conf").write_text(configs.neutron(layout))
        (s / "neutron" / "ml2.ini").write_text(configs.ml2())
        etc = layout.venv / "etc"
        shutil.copy(etc / "glance" / "glance-api-paste.ini", s / "glance")
        (s / "glance-uploads").mkdir(exist_ok=True)
        (s / "glance-uploads" / "glance-api.conf").write_text(
            configs.glance(layout, "glance-uploads-app")
        )
        shutil.copy(etc / "nova" / "api-paste.ini", s / "nova")
        shutil.copy(etc / "neutron" / "api-paste.ini", s / "neutron")

    # --- provisioning ----------------------------------------------------------------------

    def _cloud_config(self, cloud: str | None) -> dict[str, Any]:
        config: dict[str, Any] = self._clouds()["clouds"][cloud or self.ADMIN]
        return config

    def _clouds(self) -> dict[str, Any]:
        keystone = f"http://127.0.0.1:{self.proxies['keystone'].port}/v3"
        clouds: dict[str, Any] = {}
        admin = Account(self.ADMIN, "admin", "admin", self._admin_password)
        for account in (admin, *self.accounts.values()):
            entry: dict[str, Any] = {
                "auth": {
                    "auth_url": keystone,
                    "username": account.user,
                    "password": account.password,
                    "project_name": account.project,
                    "user_domain_name": "Default",
                    "project_domain_name": "Default",
                },
                "region_name": "RegionOne",
                "identity_api_version": 3,
                "interface": "public",
            }
            # This cloud sees a service through its own proxy, so a fault can hit it alone.
            for service, key, path in (
                ("glance", "image_endpoint_override", ""),
                ("nova", "compute_endpoint_override", "/v2.1"),
                ("neutron", "network_endpoint_override", "/v2.0"),
            ):
                proxy = self.proxies.get(f"{service}-{account.cloud}")
                if proxy:
                    entry[key] = f"http://127.0.0.1:{proxy.port}{path}"
            clouds[account.cloud] = entry
        return {"clouds": clouds}

    def _provision_identity(self, layout: configs.Layout) -> None:
        """Service users, the catalog, and the three projects the clouds stand for."""
        began = time.monotonic()
        conn = self.connect()
        identity = conn.identity
        roles = {role.name: role for role in identity.roles()}
        for name in ("service", "member"):
            if name not in roles:
                roles[name] = identity.create_role(name=name)
        service_project = identity.create_project(name="service", domain_id="default")
        for user_name in SERVICE_USERS:
            user = identity.create_user(
                name=user_name, password=layout.service_password, domain_id="default"
            )
            for role in ("admin", "service"):
                # keystonemiddleware wants the service role on service tokens.
                identity.assign_project_role_to_user(service_project, user, roles[role])
        catalog = {
            "image": ("glance", layout.url("glance")),
            "placement": ("placement", layout.url("placement")),
            "compute": ("nova", f"{layout.url('nova')}/v2.1"),
            "network": ("neutron", layout.url("neutron")),
        }
        for service_type, (name, url) in catalog.items():
            service = identity.create_service(name=name, type=service_type)
            for interface in ("public", "internal"):
                identity.create_endpoint(
                    service_id=service.id, interface=interface, url=url, region_id="RegionOne"
                )
        for cloud in (self.BUILD, *self.UPLOAD_CLOUDS):
            name = cloud.removeprefix("localcloud-")
            account = Account(cloud, name, name, secrets.token_urlsafe(16))
            project = identity.create_project(name=name, domain_id="default")
            user = identity.create_user(name=name, password=account.password, domain_id="default")
            identity.assign_project_role_to_user(project, user, roles["member"])
            self.accounts[cloud] = account
        self.clouds_yaml.write_text(yaml.safe_dump(self._clouds(), sort_keys=False))
        self.clouds_yaml.chmod(0o600)
        self.timings["provision_identity"] = time.monotonic() - began

    def _provision_resources(self) -> None:
        """Flavors, the network, and a compute host that Placement and the cell both know."""
        began = time.monotonic()
        conn = self.connect()
        for name, (vcpus, ram, disk) in FLAVORS.items():
            conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=True)
        network = conn.network.create_network(name=NETWORK, is_shared=True)
        conn.network.create_subnet(
            network_id=network.id,
            name=f"{NETWORK}-subnet",
            ip_version=4,
            cidr="10.20.0.0/24",
            is_dhcp_enabled=False,
        )
        deadline = time.monotonic() + 60
        while True:
            providers = list(conn.placement.resource_providers())
            hypervisors = list(conn.compute.hypervisors())
            if providers and hypervisors:
                break
            if time.monotonic() > deadline:
                raise StartError(
                    f"Nova's compute host never reached Placement; see {self.state / 'logs'}"
                )
            time.sleep(0.5)
        self.timings["provision_resources"] = time.monotonic() - began

    def describe(self) -> dict[str, Any]:
        """Return a JSON-able summary (clouds, ports, timings) without any password."""
        return {
            "clouds_yaml": str(self.clouds_yaml),
            "clouds": sorted(self.accounts),
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


def dump(cloud: LocalCloud) -> str:
    """Return `describe()` as indented JSON."""
    return json.dumps(cloud.describe(), indent=2)
