"""How a caller writes the CLI's command line: every option as one `--flag=value` word.

Joined to its flag, no value (a flavor named `--help`, a network `-x`) can be read as an option.
"""

from collections.abc import Mapping


def option(flag: str, value: str) -> str:
    """Return one option as a single argv word; raise ValueError for what no argv can carry."""
    if not flag.startswith("--") or "=" in flag:
        raise ValueError(f"{flag!r} is not a long option name")
    check_value(value)
    return f"{flag}={value}"


def check_value(value: str) -> None:
    """Raise ValueError when a value cannot travel in a command line (a NUL byte)."""
    if "\0" in value:
        raise ValueError("it contains a NUL byte, which no command line can carry")


def command_line(cloud: str, command: str, options: Mapping[str, str]) -> tuple[str, ...]:
    """Return `--os-cloud=CLOUD COMMAND --flag=value …`, leaving out options with no value."""
    return (
        option("--os-cloud", cloud),
        command,
        *(option(flag, value) for flag, value in options.items() if value),
    )
