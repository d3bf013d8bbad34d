"""The Nova test driver: a hypervisor and a guest played by the test's script.

Service side: imported only inside the Nova process, which registers it as
`nova.virt.grib_guest` (Nova loads drivers relative to `nova.virt`). On spawn it reads the
server's user-data, finds the build's nonce, and plays the scripted guest in a thread: after
the scripted delay it writes the completion marker to the console log exactly as the CLI's
`marker` module makes it, then "powers off" and tells Nova at once (a lifecycle event), so
Nova shows SHUTOFF within a second or two. A server booted from one of the snapshots this
driver made is a verification's test server: it answers with the verification result line
instead, for the checks its user-data names. A snapshot uploads a real qcow2 to Glance whose
payload names the server, its user-data and its base image, so a test can prove provenance.
"""

import base64
import gzip
import hashlib
import importlib.util
import json
import os
import re
import secrets
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from nova import exception
from nova.compute import power_state, task_states
from nova.image import glance
from nova.objects import fields
from nova.virt import event as virtevent
from nova.virt import fake
from oslo_log import log as logging

from lcloud import guest, qcow2

LOG = logging.getLogger(__name__)
STATE_DIR = Path(os.environ["GRIB_LC_STATE"])
SNAPSHOTS_FILE = "our-snapshots.txt"  # every image ID this driver uploaded a snapshot to


def _load_marker() -> ModuleType:
    """Load the CLI's own marker module by path (the services' venv does not hold the CLI).

    It imports the contract's stdlib-only `checks`: app/src goes on the path for that.
    """
    marker_py = Path(os.environ["GRIB_LC_MARKER"])
    sys.path.append(str(marker_py.parents[2]))
    spec = importlib.util.spec_from_file_location("grib_marker", marker_py)
    if spec is None or spec.loader is None:
        raise RuntimeError("cannot load the CLI's marker module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


marker = _load_marker()


def _ours(image_id: str) -> bool:
    """Whether an image is one of the snapshots this driver made."""
    try:
        return image_id in (STATE_DIR / SNAPSHOTS_FILE).read_text().split()
    except FileNotFoundError:
        return False


def _variable(user_data: str, name: str) -> str:
    """Return a `readonly NAME=value` of the user-data, unquoted ("" when absent)."""
    match = re.search(rf"^readonly {name}='?([^'\n]*)'?$", user_data, re.M)
    return match.group(1) if match else ""


def _user_data(instance: Any) -> str:
    """Return the server's user-data as text (Nova stores it base64; it may be gzipped)."""
    if not instance.user_data:
        return ""
    raw = base64.b64decode(instance.user_data)
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode(errors="replace")


class GuestDriver(fake.FakeDriver):  # type: ignore[misc]
    """Nova's fake driver plus a scripted guest, a console log and real snapshots."""

    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        # One host that runs every architecture the builder supports, so that Nova's image
        # properties filter lets images of each (Glance `architecture`) boot here.
        self.host_status_base["supported_instances"] = [
            (arch, fields.HVType.FAKE, fields.VMMode.HVM)
            for arch in (
                fields.Architecture.X86_64,
                fields.Architecture.AARCH64,
                fields.Architecture.S390X,
                fields.Architecture.PPC64LE,
            )
        ]
        self._consoles: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._images = glance.API()

    def _event(self, kind: str, instance_uuid: str, name: str) -> None:
        """Record what the hypervisor did, for tests that check order (e.g. parallel builds)."""
        record = {"event": kind, "server_id": instance_uuid, "name": name, "time": time.time()}
        with self._lock, (STATE_DIR / "events.jsonl").open("a") as log:
            log.write(json.dumps(record) + "\n")

    def _console(self, uuid: str, line: str) -> None:
        with self._lock:
            self._consoles.setdefault(uuid, []).append(line)
        with (STATE_DIR / "consoles" / f"{uuid}.log").open("a") as log:
            log.write(line + "\n")

    def spawn(
        self,
        context: Any,
        instance: Any,
        image_meta: Any,
        injected_files: Any,
        admin_password: Any,
        allocations: Any,
        network_info: Any = None,
        block_device_info: Any = None,
        power_on: bool = True,
        accel_info: Any = None,
    ) -> None:
        """Boot: start the scripted guest, or fail the boot when the script says `error`."""
        script = guest.script_for(STATE_DIR, instance.display_name or "")
        if script.outcome == "error":
            raise exception.NovaException("scripted guest: boot failed")
        if guest.count_boot(STATE_DIR, script.match) < script.no_valid_host:
            # What a busy cloud's scheduler says; aborted here, so Nova does not reschedule.
            raise exception.BuildAbortException(
                instance_uuid=instance.uuid,
                reason="No valid host was found. There are not enough hosts available.",
            )
        super().spawn(
            context, instance, image_meta, injected_files, admin_password, allocations,
            network_info, block_device_info, power_on, accel_info,
        )  # fmt: skip
        user_data = _user_data(instance)
        # Kept for tests that check what the real CLI rendered for this server.
        (STATE_DIR / "user-data").mkdir(exist_ok=True)
        (STATE_DIR / "user-data" / f"{instance.display_name}.sh").write_text(user_data)
        verifying = _ours(instance.image_ref)
        self._event("verify-spawn" if verifying else "spawn", instance.uuid, instance.display_name)
        self._console(instance.uuid, f"[    0.000000] Linux localcloud {instance.display_name}")
        if verifying:
            threading.Thread(
                target=self._verify,
                args=(instance.uuid, instance.display_name, script, user_data),
                daemon=True,
                name=f"verify-{instance.uuid}",
            ).start()
            return
        for proxy, mode in script.faults_on_boot.items():
            guest.set_fault(STATE_DIR, proxy, mode)
        threading.Thread(
            target=self._play,
            args=(instance.uuid, instance.display_name, script, user_data),
            daemon=True,
            name=f"guest-{instance.uuid}",
        ).start()

    def _play(self, uuid: str, name: str, script: guest.GuestScript, user_data: str) -> None:
        """Be the guest: run for the scripted time, report on the console, power off."""
        nonce = marker.find_nonce(user_data)
        time.sleep(script.after)
        if script.outcome == "hang" or uuid not in self.instances:
            return
        self._console(uuid, "cloud-init: running the builder script")
        if nonce is None:
            self._console(uuid, "cloud-init: no build nonce in user-data")
        elif script.outcome == "succeed":
            version = _variable(user_data, "GRIB_RUNNER_VERSION") or "2.330.0"
            facts = {"machine-id": secrets.token_hex(16), "runner-version": version}
            self._console(uuid, marker.facts_line(nonce, facts))
            self._console(uuid, marker.success_line(nonce))
        else:
            self._console(uuid, marker.failure_line(nonce, script.step))
        self._power_off(uuid, name)

    def _verify(self, uuid: str, name: str, script: guest.GuestScript, user_data: str) -> None:
        """Be the test server: report each check the user-data names, as scripted."""
        nonce = marker.find_nonce(user_data, marker.VERIFY_NONCE_VARIABLE)
        time.sleep(script.verify_after)
        if script.verify == "hang" or uuid not in self.instances:
            return
        self._console(uuid, "grib-verify: verifying this image")
        if nonce is not None and script.verify != "no-marker":
            failures = script.verify_failures if script.verify == "fail" else {}
            checks = tuple(
                marker.Check(c, c not in failures, failures.get(c, ""))
                for c in marker.find_checks(user_data)
            )
            software = {
                "os": "Ubuntu 24.04.3 LTS",
                "kernel": "6.8.0-localcloud",
                "runner": _variable(user_data, "GRIB_RUNNER_VERSION") or "2.330.0",
                "docker": "Docker version 27.5.1, build 27.5.1-0ubuntu3",
                "git": "git version 2.43.0",
            }
            self._console(uuid, marker.verify_line(nonce, marker.VerifyReport(checks, software)))
        self._power_off(uuid, name, "verify-poweroff")

    def _power_off(self, uuid: str, name: str, event: str = "poweroff") -> None:
        self._console(uuid, "reboot: Power down")
        if uuid in self.instances:
            self.instances[uuid].state = power_state.SHUTDOWN
            self._event(event, uuid, name)
            # Tell the compute manager now rather than at its next power-state sync.
            self.emit_event(virtevent.LifecycleEvent(uuid, virtevent.EVENT_LIFECYCLE_STOPPED))

    def get_console_output(self, context: Any, instance: Any) -> str:
        """Return what the guest wrote to its serial console."""
        with self._lock:
            return "\n".join(self._consoles.get(instance.uuid, [])) + "\n"

    def destroy(self, context: Any, instance: Any, *args: Any, **kwargs: Any) -> None:
        """Remove the guest and its console."""
        super().destroy(context, instance, *args, **kwargs)
        with self._lock:
            self._consoles.pop(instance.uuid, None)

    def snapshot(self, context: Any, instance: Any, image_id: str, update_task_state: Any) -> None:
        """Upload a qcow2 derived from the base image and the server's user-data."""
        if instance.uuid not in self.instances:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        self._event("snapshot", instance.uuid, instance.display_name)
        script = guest.script_for(STATE_DIR, instance.display_name or "")
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        if script.snapshot_fails:
            raise exception.NovaException("scripted hypervisor: snapshot failed")
        base = hashlib.sha256()
        for chunk in self._images.download(context, instance.image_ref) or []:
            base.update(chunk)
        user_data = _user_data(instance)
        payload = {
            "server_id": instance.uuid,
            "server_name": instance.display_name,
            "base_image_id": instance.image_ref,
            "base_image_sha256": base.hexdigest(),
            "user_data_sha256": hashlib.sha256(user_data.encode()).hexdigest(),
            "nonce": marker.find_nonce(user_data),
        }
        path = STATE_DIR / "snapshots" / f"{image_id}.qcow2"
        qcow2.write(path, payload, script.image_size)
        with self._lock, (STATE_DIR / SNAPSHOTS_FILE).open("a") as ours:
            ours.write(image_id + "\n")
        update_task_state(
            task_state=task_states.IMAGE_UPLOADING,
            expected_state=task_states.IMAGE_PENDING_UPLOAD,
        )
        metadata = {"disk_format": "qcow2", "container_format": "bare"}
        try:
            with path.open("rb") as data:
                self._images.update(context, image_id, metadata, data, purge_props=False)
        except Exception:
            LOG.exception("uploading snapshot %s failed", image_id)
            raise
        finally:
            path.unlink(missing_ok=True)
