"""The services' configuration files, rendered from ports, paths and passwords (pure)."""

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Ports:
    """The loopback ports the services listen on."""

    keystone: int
    glance: int
    placement: int
    nova: int
    neutron: int
    # A second Glance process, for the upload clouds: separate clouds have a Glance each, and
    # one process serving a copy's download and its upload at once halves both.
    glance_uploads: int


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where everything lives, and the service users' password."""

    state: Path
    venv: Path
    ports: Ports
    service_password: str

    def url(self, service: str) -> str:
        """Return a service's base URL."""
        return f"http://127.0.0.1:{getattr(self.ports, service)}"

    @property
    def policy_file(self) -> Path:
        """An empty policy file every service reads: the services' default rules apply."""
        return self.state / "policy.yaml"

    @property
    def policy_dir(self) -> Path:
        """An empty policy directory (oslo.policy takes an empty list for a directory)."""
        return self.state / "policy.d"

    def db(self, service: str, name: str) -> str:
        """Return the sqlite URL of one of a service's databases."""
        return f"sqlite:///{self.state / service / name}.db"


def _ini(sections: dict[str, dict[str, object]]) -> str:
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in options.items())
        lines.append("")
    return "\n".join(lines)


def _authtoken(layout: Layout, user: str) -> dict[str, object]:
    keystone = layout.url("keystone")
    return {
        "www_authenticate_uri": f"{keystone}/v3",
        "auth_url": f"{keystone}/v3",
        "auth_type": "password",
        "username": user,
        "password": layout.service_password,
        "project_name": "service",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        "region_name": "RegionOne",
    }


def _client(layout: Layout, user: str) -> dict[str, object]:
    """Credentials a service uses to call another service."""
    options = _authtoken(layout, user)
    del options["www_authenticate_uri"]
    options["valid_interfaces"] = "public"
    return options


def _policy(layout: Layout) -> dict[str, object]:
    # oslo.policy looks for a policy file it has not found, and for a relative policy.d, in
    # every config directory on every check (~5 % of a Neutron request): absolute paths that
    # exist make that a stat or two.
    return {
        "enforce_scope": "false",
        "enforce_new_defaults": "false",
        "policy_file": layout.policy_file,
        "policy_dirs": layout.policy_dir,
    }


def keystone(layout: Layout) -> str:
    """keystone.conf."""
    d = layout.state / "keystone"
    return _ini(
        {
            "DEFAULT": {"log_file": layout.state / "logs" / "keystone-app.log"},
            "database": {"connection": layout.db("keystone", "keystone")},
            "token": {"provider": "fernet", "expiration": 7200},
            "fernet_tokens": {"key_repository": d / "fernet-keys"},
            "fernet_receipts": {"key_repository": d / "receipt-keys"},
            "credential": {"key_repository": d / "credential-keys"},
            # Fast hashing and an in-memory cache: ~15 ms per authenticated call, not ~200 ms.
            "identity": {"password_hash_rounds": 4},
            "cache": {"enabled": "true", "backend": "dogpile.cache.memory"},
            "oslo_policy": _policy(layout),
        }
    )


def glance(layout: Layout, log_name: str = "glance-app") -> str:
    """glance-api.conf (both Glance processes share the database and the image store)."""
    d = layout.state / "glance"
    return _ini(
        {
            "DEFAULT": {
                "log_file": layout.state / "logs" / f"{log_name}.log",
                "enabled_backends": "fs:file",
                "worker_self_reference_url": layout.url("glance"),
            },
            "database": {"connection": layout.db("glance", "glance")},
            "glance_store": {"default_backend": "fs"},
            "fs": {"filesystem_store_datadir": d / "images"},
            "os_glance_staging_store": {"filesystem_store_datadir": d / "staging"},
            "os_glance_tasks_store": {"filesystem_store_datadir": d / "tasks"},
            "keystone_authtoken": _authtoken(layout, "glance"),
            "paste_deploy": {"flavor": "keystone", "config_file": d / "glance-api-paste.ini"},
            "oslo_policy": _policy(layout),
        }
    )


def placement(layout: Layout) -> str:
    """placement.conf."""
    return _ini(
        {
            "DEFAULT": {"log_file": layout.state / "logs" / "placement-app.log"},
            "placement_database": {"connection": layout.db("placement", "placement")},
            "api": {"auth_strategy": "keystone"},
            "keystone_authtoken": _authtoken(layout, "placement"),
            "oslo_policy": _policy(layout),
        }
    )


def nova(layout: Layout) -> str:
    """nova.conf: one process, fake transport, our test driver, fast power-state sync."""
    d = layout.state / "nova"
    return _ini(
        {
            "DEFAULT": {
                "host": "localcloud",
                "my_ip": "127.0.0.1",
                "state_path": d,
                "instances_path": d / "instances",
                "log_file": layout.state / "logs" / "nova-app.log",
                "transport_url": "fake:/",
                "compute_driver": "grib_guest.GuestDriver",
                # Belt and braces: the driver reports power-off at once, this catches the rest.
                "sync_power_state_interval": 2,
                "heal_instance_info_cache_interval": -1,
                "vif_plugging_is_fatal": "false",
                "vif_plugging_timeout": 0,
                "instance_usage_audit": "false",
                "use_rootwrap_daemon": "false",
                "reserved_host_disk_mb": 0,
            },
            # Checking every answer against its JSON schema costs ~5 % of an API call; the
            # client reads the answers either way.
            "api": {"auth_strategy": "keystone", "response_validation": "ignore"},
            "api_database": {"connection": layout.db("nova", "nova_api")},
            "database": {"connection": layout.db("nova", "nova_cell1")},
            "wsgi": {"api_paste_config": d / "api-paste.ini"},
            "keystone_authtoken": _authtoken(layout, "nova"),
            "placement": _client(layout, "placement"),
            "neutron": _client(layout, "neutron"),
            "glance": {"region_name": "RegionOne", "valid_interfaces": "public"},
            "scheduler": {"discover_hosts_in_cells_interval": -1, "workers": 1},
            "conductor": {"workers": 1},
            "service_user": {"send_service_user_token": "false"},
            "oslo_concurrency": {"lock_path": d / "locks"},
            "oslo_policy": _policy(layout),
            "vnc": {"enabled": "false"},
            "cinder": {"os_region_name": "RegionOne"},
            "os_vif_ovs": {"ovsdb_connection": "tcp:127.0.0.1:1"},
        }
    )


def neutron(layout: Layout) -> str:
    """neutron.conf: ML2 only, no agents, no notifications to Nova."""
    d = layout.state / "neutron"
    return _ini(
        {
            "DEFAULT": {
                "log_file": layout.state / "logs" / "neutron-app.log",
                "state_path": d,
                "core_plugin": "ml2",
                "service_plugins": "",
                "auth_strategy": "keystone",
                "api_paste_config": d / "api-paste.ini",
                "notify_nova_on_port_status_changes": "false",
                "notify_nova_on_port_data_changes": "false",
                "dhcp_agent_notification": "false",
                "api_workers": 0,
                "rpc_workers": 0,
                "rpc_state_report_workers": 0,
                "transport_url": "fake:/",
            },
            "database": {"connection": layout.db("neutron", "neutron")},
            "keystone_authtoken": _authtoken(layout, "neutron"),
            "nova": _client(layout, "nova"),
            "oslo_concurrency": {"lock_path": d / "locks"},
            "oslo_policy": _policy(layout),
            "agent": {"root_helper": "true"},
        }
    )


def ml2() -> str:
    """ml2.ini: local networks, bound by our mechanism driver."""
    return _ini(
        {
            "ml2": {
                "type_drivers": "flat,local",
                "tenant_network_types": "local",
                "mechanism_drivers": "grib_bind",
                "extension_drivers": "port_security",
            },
            "ml2_type_flat": {"flat_networks": "*"},
            "securitygroup": {"firewall_driver": "noop"},
        }
    )
