"""The bridge to the user-data template (`userdata.py`): one request type, one render call."""

import dataclasses
import importlib
from collections.abc import Callable, Mapping

from github_runner_image_builder import platforms


@dataclasses.dataclass(frozen=True)
class UserDataRequest:
    """The user-data options of one build: the fields of `userdata.UserDataOptions`."""

    base: platforms.Base
    arch: platforms.Arch
    nonce: str
    runner_version: str | None = None
    script_url: str | None = None
    script_secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    proxy: str | None = None


Renderer = Callable[[UserDataRequest], str]


def render(request: UserDataRequest) -> str:
    """Return the cloud-init user-data script for `request`, rendered by `userdata.py`."""
    # Imported by name so this module does not depend on the template's own imports (jinja2).
    module = importlib.import_module("github_runner_image_builder.userdata")
    fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    return str(module.render_user_data(module.UserDataOptions(**fields)))
