"""One verification check and how it went: the test server prints them, the report carries them.

Standard library only: the local cloud's stand-in hypervisor loads the console protocol
(`guest/marker.py`), which uses it, in a process without pydantic.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Check:
    """One named verification check and how it went."""

    name: str
    ok: bool
    detail: str = ""
