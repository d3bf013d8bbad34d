"""Which job the leader asks for: the build request from the config, the serve schedule."""

import datetime
import logging

import pydantic
import pytest

import job_plan
from catalogue import Catalogue, CatalogueImage
from config import BuildConfig, ProxyConfig, load_config
from image_builder_contract import platforms
from image_builder_contract.spec import BuildSpec
from job import BUILD_TIMEOUT, BuildRequest, Lookup

NOW = datetime.datetime(2026, 11, 23, 14, 2, tzinfo=datetime.timezone.utc)


def _config(**options: str | int | bool) -> BuildConfig:
    values: dict[str, str | int | bool] = {
        "architecture": "amd64",
        "base-image": "jammy,noble@20260715",
        "build-interval": 6,
        "revision-history-limit": 5,
        "openstack-auth-url": "https://keystone.build:5000/v3",
        "openstack-password-secret": "secret:pw",
        "openstack-project-domain-name": "Default",
        "openstack-project-name": "builds",
        "openstack-user-domain-name": "Default",
        "openstack-user-name": "builder",
        "script-secret-id": "secret:script",
        **options,
    }
    secrets = {"secret:pw": {"password": "pw"}, "secret:script": {"api-token": "t0k"}}
    proxy = ProxyConfig(settings={"JUJU_CHARM_HTTP_PROXY": "http://proxy.internal:3128"})
    return load_config(values, secrets.__getitem__, proxy, "image-builder")


def test_the_request_carries_every_option_the_config_decided() -> None:
    options: dict[str, str | int | bool] = {"build-flavor": "m1.large", "verify-images": False}
    config = _config(**options)
    lookup = Lookup(cloud="b_u_2", base="noble", arch="x64", name="image-builder-noble-x64")
    request = job_plan.build_request(
        config, {"b_u_2": 1, "a_u_1": 2}, {"img-9", "img-1"}, "digest", [lookup]
    )
    assert request == BuildRequest(
        spec=BuildSpec.model_validate(
            {
                "image": {
                    "bases": ["jammy", "noble@20260715"],
                    "arches": ["x64"],
                    "prefix": "image-builder",
                    "runner_binary_repo": platforms.UPSTREAM_RUNNER_REPO,
                },
                "site": {"cloud": "builder", "flavor": "m1.large", "timeout": BUILD_TIMEOUT},
                "verify": {"enabled": False},
                # The build cloud first, then the requirers' sorted: the same clouds, one spec.
                "upload": {"clouds": ["builder", "a_u_1", "b_u_2"]},
                "prune": {"keep_revisions": 5, "protect": ["img-1", "img-9"]},
            }
        ),
        script_secrets={"API_TOKEN": pydantic.SecretStr("t0k")},
        proxy=pydantic.SecretStr("http://proxy.internal:3128"),
        fingerprint="digest",
        lookups=(lookup,),
    )
    assert request.script_secrets["API_TOKEN"].get_secret_value() == "t0k"


def test_a_cloud_is_due_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    served_at = {
        "a_u_1": (NOW - datetime.timedelta(minutes=14)).isoformat(),
        "b_u_2": (NOW - job_plan.SERVE_INTERVAL).isoformat(),
    }
    with caplog.at_level(logging.INFO):
        assert job_plan.due(["a_u_1", "b_u_2", "c_u_3"], served_at, NOW) == ["b_u_2", "c_u_3"]
    assert "cloud a_u_1 was served at" in caplog.text


def test_the_interval_is_read_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_plan, "SERVE_INTERVAL", datetime.timedelta(0))
    assert job_plan.due(["a_u_1"], {"a_u_1": NOW.isoformat()}, NOW) == ["a_u_1"]


def test_lookups_ask_for_each_base_a_cloud_lacks() -> None:
    config = _config()
    held = CatalogueImage(cloud="a_u_1", base="jammy", arch="x64", id="img-1")
    lookups = job_plan.lookups(config, Catalogue.of([held]), ["a_u_1", "b_u_2"])
    assert [(lookup.cloud, lookup.base) for lookup in lookups] == [
        ("a_u_1", "noble"),
        ("b_u_2", "jammy"),
        ("b_u_2", "noble"),
    ]
    assert {lookup.name for lookup in lookups} == {
        "image-builder-jammy-x64",
        "image-builder-noble-x64",
    }
    assert job_plan.lookups(config, Catalogue(), []) == []


def test_served_records_when_each_cloud_was_served() -> None:
    before = {"a_u_1": "2026-11-23T13:00:00+00:00"}
    after = job_plan.served(before, ["a_u_1", "b_u_2"], NOW)
    assert after == {"a_u_1": NOW.isoformat(), "b_u_2": NOW.isoformat()}
    assert before == {"a_u_1": "2026-11-23T13:00:00+00:00"}  # a new mapping, for StoredState


def test_an_image_id_that_is_no_safe_word_protects_nothing_and_breaks_nothing() -> None:
    # Peer data and stored state are input: a hostile ID must neither crash the hook nor reach
    # the CLI (it names no image of ours anyway).
    hostile = {"img-1", "-rf", "a,b", "x" * 200, "nul\0", ""}
    request = job_plan.build_request(_config(), {"a_u_1": 1}, hostile, "digest")
    assert request.spec.prune.protect == {"img-1"}
