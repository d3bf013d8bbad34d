"""Tests that `cloud.Cloud` calls openstacksdk's real proxy methods with valid arguments.

The proxies are openstacksdk's own autospecced fakes (openstack.test.fakes): a call to a method
that does not exist, or with an argument the real method does not take, fails here.
"""

import base64
import datetime
import functools
import threading
import types
from typing import Any

import pytest
from openstack.compute import compute_service
from openstack.compute.v2 import flavor as _flavor
from openstack.compute.v2 import server as _server
from openstack.image import image_service
from openstack.image.v2 import image as _image
from openstack.network import network_service
from openstack.network.v2 import network as _network
from openstack.network.v2 import security_group as _group
from openstack.test import fakes

from github_runner_image_builder.cloud import client as cloud_module
from github_runner_image_builder.cloud.client import Cloud, CloudClockError, response_date
from github_runner_image_builder.images.revisions import BUILD_ID, group_description


@functools.cache
def _proxies() -> tuple[Any, Any, Any]:
    # Autospeccing the proxies takes about a second each: make them once, reset per test.
    return (
        fakes.generate_fake_proxy(image_service.ImageService, "2"),
        fakes.generate_fake_proxy(compute_service.ComputeService),
        fakes.generate_fake_proxy(network_service.NetworkService),
    )


def fake_conn() -> Any:
    image, compute, network = _proxies()
    for proxy in (image, compute, network):
        proxy.reset_mock(return_value=True, side_effect=True)
    return types.SimpleNamespace(
        image=image, compute=compute, network=network, current_project_id="project-1"
    )


def test_create_server_boots_with_config_drive_encoded_user_data_and_no_key() -> None:
    conn = fake_conn()
    conn.compute.create_server.side_effect = None
    conn.compute.create_server.return_value = fakes.generate_fake_resource(_server.Server, id="s1")
    server_id = Cloud("c", conn).create_server(
        "p-builder-x",
        image_id="i",
        flavor_id="f",
        network_id="n",
        security_group_id="g",
        user_data="#!/bin/bash\necho ü\n",
        metadata={"k": "v"},
    )
    assert server_id == "s1"
    kwargs = conn.compute.create_server.call_args.kwargs
    assert kwargs["config_drive"] is True
    assert base64.b64decode(kwargs["user_data"]).decode() == "#!/bin/bash\necho ü\n"
    assert kwargs["networks"] == [{"uuid": "n"}]
    assert kwargs["security_groups"] == [{"name": "g"}]
    assert "key_name" not in kwargs


def test_security_group_loses_any_ingress_rule() -> None:
    conn = fake_conn()
    conn.network.create_security_group.side_effect = None
    conn.network.create_security_group.return_value = fakes.generate_fake_resource(
        _group.SecurityGroup,
        id="g1",
        security_group_rules=[
            {"id": "r1", "direction": "egress"},
            {"id": "r2", "direction": "ingress"},
        ],
    )
    assert Cloud("c", conn).create_security_group("p-builder-x", "d") == "g1"
    conn.network.delete_security_group_rule.assert_called_once_with("r2", ignore_missing=True)
    conn.network.delete_security_group.assert_not_called()


def test_security_group_whose_ingress_rule_stays_is_deleted() -> None:
    conn = fake_conn()
    conn.network.create_security_group.side_effect = None
    conn.network.create_security_group.return_value = fakes.generate_fake_resource(
        _group.SecurityGroup, id="g1", security_group_rules=[{"id": "r2", "direction": "ingress"}]
    )
    conn.network.delete_security_group_rule.side_effect = RuntimeError("403")
    with pytest.raises(RuntimeError, match="403"):
        Cloud("c", conn).create_security_group("p-builder-x", "d")
    conn.network.delete_security_group.assert_called_once_with("g1", ignore_missing=True)


def test_images_are_the_projects_own() -> None:
    conn = fake_conn()
    conn.image.images.side_effect = None
    conn.image.images.return_value = iter(
        [
            fakes.generate_fake_resource(
                _image.Image,
                id="i1",
                name="n",
                status="active",
                created_at="2026-01-01T00:00:00Z",
                properties={"grib_upstream_sha256": "abc"},
                architecture="aarch64",
                os_distro="ubuntu",
                os_version=None,
            )
        ]
    )
    [image] = Cloud("c", conn).images("n")
    conn.image.images.assert_called_once_with(owner="project-1", name="n")
    assert (image.id, image.status) == ("i1", "active")
    # openstacksdk keeps some properties as attributes of their own: they are properties too.
    assert image.properties == {
        "grib_upstream_sha256": "abc",
        "architecture": "aarch64",
        "os_distro": "ubuntu",
    }


def test_upload_streams_without_duplicate_check() -> None:
    conn = fake_conn()
    conn.image.create_image.side_effect = None
    conn.image.create_image.return_value = fakes.generate_fake_resource(_image.Image, id="i9")
    conn.image.get_image.side_effect = None
    conn.image.get_image.return_value = fakes.generate_fake_resource(
        _image.Image, id="i9", status="active", properties={}
    )
    data = object()
    info = Cloud("c", conn).upload_image(
        "n", data, disk_format="qcow2", container_format="bare", properties={"a": "b"}
    )
    assert info.id == "i9"
    call = conn.image.create_image.call_args
    assert call.args == ("n",)
    assert call.kwargs["data"] is data
    assert "size" not in call.kwargs
    assert call.kwargs["allow_duplicates"] is True
    assert call.kwargs["validate_checksum"] is False
    assert call.kwargs["a"] == "b"


def test_download_streams_in_chunks_and_closes() -> None:
    conn = fake_conn()
    response = conn.image.download_image.return_value
    response.iter_content.return_value = iter([b"ab", b"c"])
    with Cloud("c", conn).download_image("i1", 1024) as chunks:
        assert b"".join(chunks) == b"abc"
    conn.image.download_image.assert_called_once_with("i1", stream=True, chunk_size=1024)
    response.close.assert_called_once_with()


def test_server_state_console_and_snapshot() -> None:
    conn = fake_conn()
    conn.compute.find_server.side_effect = None
    conn.compute.find_server.return_value = fakes.generate_fake_resource(
        _server.Server, status="ERROR", fault={"message": "No valid host"}
    )
    cloud = Cloud("c", conn)
    state = cloud.server_state("s1")
    assert state is not None and (state.status, state.fault) == ("ERROR", "No valid host")
    conn.compute.find_server.side_effect = None
    conn.compute.find_server.return_value = None
    assert cloud.server_state("s1") is None
    conn.compute.get_server_console_output.side_effect = None
    conn.compute.get_server_console_output.return_value = {"output": "line\n"}
    assert cloud.console_output("s1") == "line\n"
    conn.compute.get_server_console_output.side_effect = None
    conn.compute.get_server_console_output.return_value = {"output": ""}
    assert cloud.console_output("s1") is None


def test_a_snapshot_is_started_without_fetching_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hypervisor that fails at once has deleted the image before any fetch could see it."""
    asked = []

    def create_image(server: Any, session: Any, name: str, metadata: Any = None) -> str:
        asked.append((server.id, session, name, metadata))
        return "snap"

    monkeypatch.setattr(_server.Server, "create_image", create_image)
    conn = fake_conn()
    assert Cloud("c", conn).snapshot_server("s1", "p-noble-x64", {"a": "b"}) == "snap"
    assert asked == [("s1", conn.compute, "p-noble-x64", {"a": "b"})]
    conn.compute.create_server_image.assert_not_called()


def test_flavors_and_networks_become_plain_records() -> None:
    conn = fake_conn()
    conn.compute.flavors.side_effect = None
    conn.compute.flavors.return_value = iter(
        [
            fakes.generate_fake_resource(
                _flavor.Flavor, id="f", name="m", vcpus=2, ram=2048, disk=20
            )
        ]
    )
    conn.network.networks.side_effect = None
    conn.network.networks.return_value = iter(
        [fakes.generate_fake_resource(_network.Network, id="n", name="net", subnet_ids=["s"])]
    )
    cloud = Cloud("c", conn)
    [flavor] = cloud.flavors()
    assert (flavor.vcpus, flavor.ram, flavor.disk) == (2, 2048, 20)
    [network] = cloud.networks()
    assert network.subnet_ids == ("s",)


def _http(status: int) -> Exception:
    from openstack import exceptions

    error = exceptions.HttpException(f"HTTP {status}")
    error.status_code = status
    return error


def test_one_list_call_answers_for_every_server_and_image() -> None:
    conn = fake_conn()
    conn.compute.servers.side_effect = None
    conn.compute.servers.return_value = iter(
        [
            fakes.generate_fake_resource(_server.Server, id="s1", status="SHUTOFF", fault=None),
            fakes.generate_fake_resource(
                _server.Server, id="s2", status="ERROR", fault={"message": "No valid host"}
            ),
        ]
    )
    conn.image.images.side_effect = None
    conn.image.images.return_value = iter(
        [fakes.generate_fake_resource(_image.Image, id="i1", status="active")]
    )
    cloud = Cloud("c", conn)
    states = cloud.server_states("^p-")
    assert {k: (v.status, v.fault) for k, v in states.items()} == {
        "s1": ("SHUTOFF", None),
        "s2": ("ERROR", "No valid host"),
    }
    # The oldest microversion: status and fault are all the poller reads (Nova's 2.1 view has
    # them; the local-cloud tier's "No valid host" retries read the fault through it).
    conn.compute.servers.assert_called_once_with(details=True, name="^p-", microversion="2.1")
    assert cloud.image_statuses(["i1", "i2"]) == {"i1": "active"}
    conn.image.images.assert_called_once_with(id="in:i1,i2")


def test_a_retried_create_adopts_the_server_an_earlier_attempt_made() -> None:
    conn = fake_conn()
    conn.compute.create_server.side_effect = [_http(503)]
    conn.compute.servers.side_effect = None
    conn.compute.servers.return_value = iter(
        [fakes.generate_fake_resource(_server.Server, id="made-anyway")]
    )
    pauses: list[float] = []
    cloud = Cloud("c", conn, sleep=pauses.append)
    server_id = cloud.create_server(
        "p-builder-x.1",
        image_id="i",
        flavor_id="f",
        network_id="n",
        security_group_id="g",
        user_data="",
        metadata={},
    )
    assert server_id == "made-anyway"
    assert conn.compute.create_server.call_count == 1
    conn.compute.servers.assert_called_once_with(name="^p\\-builder\\-x\\.1$")
    assert len(pauses) == 1


def test_reads_ride_out_a_5xx_but_not_a_404() -> None:
    conn = fake_conn()
    found = fakes.generate_fake_resource(_server.Server, status="ACTIVE", fault=None)
    conn.compute.find_server.side_effect = [_http(502), _http(500), found]
    cloud = Cloud("c", conn, sleep=lambda s: None)
    state = cloud.server_state("s1")
    assert state is not None and state.status == "ACTIVE"
    conn.compute.get_server_console_output.side_effect = [_http(404)]
    with pytest.raises(Exception, match="HTTP 404"):
        cloud.console_output("s1")


def test_the_clouds_clock_is_the_date_of_a_keystone_response() -> None:
    conn = fake_conn()
    asked: list[tuple[str, dict[str, object]]] = []

    def get(url: str, **kwargs: object) -> Any:
        asked.append((url, kwargs))
        return types.SimpleNamespace(headers={"Date": "Thu, 01 Jan 2026 09:00:00 GMT"})

    conn.identity = types.SimpleNamespace(get=get)
    now = Cloud("c", conn).now()
    assert now == datetime.datetime(2026, 1, 1, 9, 0, tzinfo=datetime.timezone.utc)
    assert asked == [("/", {"authenticated": False, "raise_exc": False})]


@pytest.mark.parametrize("headers", [{}, {"Date": "yesterday"}])
def test_a_response_without_a_readable_date_is_an_error(headers: dict[str, str]) -> None:
    with pytest.raises(CloudClockError, match="no readable Date header"):
        response_date(headers)


def test_servers_and_groups_carry_their_build_id() -> None:
    conn = fake_conn()
    conn.compute.servers.side_effect = None
    conn.compute.servers.return_value = [
        types.SimpleNamespace(
            id="s1", name="p-builder-a", created_at="t", metadata={BUILD_ID: "r1"}
        ),
        types.SimpleNamespace(id="s2", name="p-builder-b", created_at=None, metadata=None),
    ]
    conn.network.security_groups.side_effect = None
    conn.network.security_groups.return_value = [
        types.SimpleNamespace(
            id="g1", name="p-builder-a", created_at="t", description=group_description("x", "r1")
        ),
        types.SimpleNamespace(id="g2", name="default", created_at="", description=None),
    ]
    cloud = Cloud("c", conn)
    assert [(s.id, s.build_id) for s in cloud.servers()] == [("s1", "r1"), ("s2", "")]
    assert [(g.id, g.build_id) for g in cloud.security_groups()] == [("g1", "r1"), ("g2", "")]


def test_connections_to_one_cloud_share_one_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """One token per cloud and run, however many threads connect."""
    config = tmp_path / "clouds.yaml"
    auth = "auth: {auth_url: 'http://127.0.0.1:9/v3', username: u, password: p, project_name: x}"
    config.write_text(f"clouds:\n  a:\n    {auth}\n  b:\n    {auth}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(config))
    monkeypatch.setattr(cloud_module, "_auths", {})
    sessions: list[Any] = []

    def connect() -> None:
        sessions.append(Cloud("a").conn.session)

    threads = [threading.Thread(target=connect) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A session and a configuration each (discovery writes into it), one auth plugin.
    assert len({id(s) for s in sessions}) == 8
    assert all(s.auth is sessions[0].auth for s in sessions)
    assert Cloud("b").conn.session.auth is not sessions[0].auth
