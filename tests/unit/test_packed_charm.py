"""The packed charm's layout imports the shared rules without the CLI (no charmcraft pack here).

The layout is made by the tools charmcraft itself runs: its charm builder links the project's
files as the `charm` part does, and craft-parts runs charmcraft.yaml's `contract` part. The charm
is then imported the way `dispatch` starts it: PYTHONPATH from the dispatch file, src/ first,
and no site-packages processing, so nothing installed for the tests (the editable CLI) leaks in.
"""

import gc
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]

IMPORT_CHECK = """
import importlib.util, json, sys
sys.path.insert(0, "src")  # dispatch runs ./src/charm.py
import charm, job
from config import ConfigValidationError, ProxyConfig, load_config
import image_builder_contract
config = {"script-url": "https://user:pw@example.com/s.sh", "build-flavor": "--help"}
try:
    load_config(config, lambda _: {}, ProxyConfig(), "app")
except ConfigValidationError as errors:
    problems = [str(e) for e in errors.errors]
print(json.dumps({
    "contract": image_builder_contract.__file__,
    "cli_importable": importlib.util.find_spec("github_runner_image_builder") is not None,
    "problems": problems,
}))
"""


def _prime_contract_part(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run charmcraft.yaml's `contract` part with craft-parts; return its prime directory."""
    import craft_parts.packages
    from craft_parts import LifecycleManager, Step
    from craft_parts.packages.base import DummyRepository

    # The part installs no packages; this Debian host has no python-apt for craft-parts' probe.
    monkeypatch.setattr(
        craft_parts.packages, "_get_repository_for_platform", lambda: DummyRepository
    )
    monkeypatch.chdir(ROOT)  # craft-parts resolves a local `source` from the project directory
    parts: dict[str, Any] = yaml.safe_load((ROOT / "charmcraft.yaml").read_text())["parts"]
    manager = LifecycleManager(
        {"parts": {"contract": parts["contract"]}},
        application_name="charmcraft",
        cache_dir=work / "cache",
        work_dir=work,
    )
    # craft-parts leaves its script's pipes and its snapd socket unclosed (ResourceWarning, an
    # error under our filterwarnings); not ours to fix, so ignored here only, collected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with manager.action_executor() as executor:
            executor.execute(manager.plan(Step.PRIME))
        gc.collect()
    return work / "prime"


def _link_charm_part(prime: Path) -> None:
    """Link the project's files into `prime` as charmcraft's `charm` plugin does."""
    from charmcraft.charm_builder import CharmBuilder

    builder = CharmBuilder(builddir=ROOT, installdir=prime, entrypoint=ROOT / "src" / "charm.py")
    builder.handle_dispatcher(builder.handle_generic_paths())


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as monkeypatch:
        contract = _prime_contract_part(tmp_path_factory.mktemp("parts"), monkeypatch)
    prime = tmp_path_factory.mktemp("charm")
    _link_charm_part(prime)
    # Staging merges the parts; craft-parts refuses two parts that ship the same file.
    for path in sorted(contract.rglob("*")):
        target = prime / path.relative_to(contract)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            assert not target.exists(), f"parts charm and contract both ship {target}"
            shutil.copy2(path, target)
    # The charm plugin's venv holds requirements.txt; this environment's packages stand in.
    (prime / "venv").symlink_to(sysconfig.get_paths()["purelib"])
    return prime


def test_contract_part_puts_only_the_rules_in_lib(packed: Path) -> None:
    shipped = sorted(p.name for p in (packed / "lib" / "image_builder_contract").iterdir())
    assert shipped == [
        "__init__.py",
        "checks.py",
        "cli_args.py",
        "names.py",
        "platforms.py",
        "py.typed",
        "report.py",
        "rules.py",
        "spec.py",
        "text.py",
    ]
    assert (packed / "lib" / "charms" / "github_runner_image_builder").is_dir()  # the charm part
    assert not (packed / "app").exists()  # .jujuignore: the CLI ships as wheels only


def test_packed_charm_imports_the_rules_from_lib_without_the_cli(packed: Path) -> None:
    dispatch = (packed / "dispatch").read_text()
    found = re.search(r"PYTHONPATH=(\S+)", dispatch)
    assert found, dispatch
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": found.group(1)}
    done = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_CHECK],
        cwd=packed,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert Path(answer["contract"]).resolve().is_relative_to(packed / "lib")
    assert answer["cli_importable"] is False
    # The rules work there: the CLI's script-URL rule refuses credentials.
    assert any(
        p.startswith("script-url: invalid script URL: it carries") for p in answer["problems"]
    )
