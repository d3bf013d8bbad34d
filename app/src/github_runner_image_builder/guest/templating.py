"""How the guest scripts are rendered: the quoting guard, the shared parts, the checks after.

Both cloud-init scripts (the builder's `user-data.sh.j2`, the test server's `verify.sh.j2`)
render in one Jinja2 environment that refuses to output any value that did not pass through the
`shquote` filter, in a template or in anything it includes (`shared.sh.j2`), so no option or
secret can inject shell. The Python programs a guest runs are files beside the templates
(`program`), handed to the script as one quoted value. A rendered script is checked before any
VM gets it: every step or check it lists has its shell function, and Nova accepts its size.
"""

import base64
import dataclasses
import importlib.resources
import re
import shlex
from collections.abc import Mapping, Sequence

import jinja2

_PACKAGE = "github_runner_image_builder.guest"
_FOLDER = "templates"
# Nova rejects user-data longer than 65535 bytes once base64-encoded.
MAX_USER_DATA_BASE64 = 65535
# What shared-run.sh.j2 calls: every script defines them.
RUN_FUNCTIONS: tuple[str, ...] = ("main", "grib_finish")
# A shell function definition as the templates write them: `name() {` on a line of its own.
_FUNCTION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\(\) \{$", re.M)


class ScriptError(Exception):
    """A rendered script is unusable: a template and the list it renders disagree (a bug)."""


class _Quoted(str):
    """A value already made safe for the shell by `shquote`."""

    __slots__ = ()


def shquote(value: object) -> str:
    """Quote a string for bash so it is always one inert word."""
    if not isinstance(value, str):
        raise TypeError(f"shquote takes strings, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError("a NUL byte cannot be passed to the shell")
    return _Quoted(shlex.quote(value))


def _only_quoted(value: object) -> object:
    """Refuse to render any `{{ }}` value that did not pass through `shquote`."""
    if not isinstance(value, _Quoted):
        raise TypeError(
            f"template output {value!r} is not shell-quoted: pipe it through | shquote"
        )
    return value


def environment(loader: jinja2.BaseLoader | None = None) -> jinja2.Environment:
    """Return the environment the guest scripts render in (from the package's templates).

    `finalize` applies to every `{{ }}` of every template the environment loads, included ones
    too. A macro's output is a plain string, so `{{ some_macro() }}` is refused as well: shared
    parts are `{% include %}`d, and take their parameters from the render's values.
    """
    # A bash script, not HTML: `shquote` and `_only_quoted` do the escaping.
    env = jinja2.Environment(
        loader=loader or jinja2.PackageLoader(_PACKAGE, _FOLDER),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_only_quoted,
    )
    env.filters["shquote"] = shquote
    return env


def program(name: str) -> str:
    """Return the source of a program shipped beside the templates (e.g. `find_secrets.py`)."""
    return (importlib.resources.files(_PACKAGE) / _FOLDER / name).read_text()


@dataclasses.dataclass(frozen=True)
class Script:
    """One guest script to render: its template, its values, the functions it must define.

    Attributes:
        template: the template's name in the templates folder.
        values: what the template renders from (each one still passes through `shquote`).
        functions: the shell functions the script must define: one per step or check it runs.

    """

    template: str
    values: Mapping[str, object]
    functions: Sequence[str]


def render(script: Script, env: jinja2.Environment | None = None) -> str:
    """Return the rendered script; raise ScriptError if a listed function is not defined."""
    text = (env or environment()).get_template(script.template).render(**script.values)
    check_functions(text, (*script.functions, *RUN_FUNCTIONS), script.template)
    check_length(text)
    return text


def check_functions(text: str, functions: Sequence[str], template: str) -> None:
    """Raise ScriptError naming each of `functions` that the script does not define."""
    defined = set(_FUNCTION.findall(text))
    missing = [name for name in functions if name not in defined]
    if missing:
        raise ScriptError(
            f"{template} lists {', '.join(missing)} but defines no such shell function: "
            "add the function to the template or drop the item from its list"
        )


def check_length(text: str) -> None:
    """Raise ValueError when Nova would refuse this user-data as too long."""
    encoded = len(base64.b64encode(text.encode()))
    if encoded > MAX_USER_DATA_BASE64:
        raise ValueError(
            f"the user-data is {encoded} bytes base64-encoded, more than the "
            f"{MAX_USER_DATA_BASE64} Nova accepts; shorten the script secrets"
        )


def step_function(step: str) -> str:
    """Return the shell function the builder's script runs a step with: `step_<step>`."""
    return f"step_{step.replace('-', '_')}"


def check_function(check: str) -> str:
    """Return the shell function the test server runs a check with: `check_<check>`."""
    return f"check_{check.replace('-', '_')}"
