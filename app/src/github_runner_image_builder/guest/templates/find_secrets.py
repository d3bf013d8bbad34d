"""Print the files that hold a script secret, found by salted SHA-256 (run in the test server).

argv: salt, `<length>:<digest>` items separated by spaces, then the folders to search. A
candidate is a whole line, a whitespace-separated token, or what follows `=` or `:` in either,
with quotes stripped; only candidates of a secret's length are hashed. Standard library only,
Python 3.8 (focal) and later.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator, Sequence

SKIP = ("/proc", "/sys", "/dev", "/run", "/snap", "/var/lib/snapd/snaps", "/var/lib/docker")
MAX_FILE = 8 * 2**20
QUOTES = "\"'"


def candidates(text: str) -> Iterator[str]:
    """Yield every string of `text` that could be a secret's whole value."""
    for line in text.splitlines():
        yield line
        yield line.strip()
        for part in re.split(r"[=:]\s*", line, maxsplit=1)[1:]:
            yield part.strip().strip(QUOTES)
        for token in line.split():
            yield token
            yield token.strip(QUOTES)
            for part in re.split(r"[=:,;]", token, maxsplit=1)[1:]:
                yield part.strip(QUOTES)


def main(salt: bytes, digests: str, roots: Sequence[str]) -> list[str]:
    """Return the paths whose text holds a value with one of `digests`."""
    wanted: dict[int, set[str]] = {}
    for item in digests.split():
        length, digest = item.split(":")
        wanted.setdefault(int(length), set()).add(digest)
    found: set[str] = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in SKIP]
            for name in files:
                path = os.path.join(folder, name)
                try:
                    if os.path.islink(path) or os.path.getsize(path) > MAX_FILE:
                        continue
                    with open(path, "rb") as handle:
                        text = handle.read().decode("utf-8", "replace")
                except OSError:
                    continue
                for value in candidates(text):
                    encoded = value.encode()
                    hashes = wanted.get(len(encoded))
                    if hashes and hashlib.sha256(salt + encoded).hexdigest() in hashes:
                        found.add(path)
                        break
    return sorted(found)


if __name__ == "__main__":
    # Nothing at all when nothing is found: the script takes any output for a path.
    for found_path in main(sys.argv[1].encode(), sys.argv[2], sys.argv[3:]):
        print(found_path)
