"""Print `<version> <listed> <sha256>` for a GitHub release of the runner (run in the builder).

stdin: the release as the GitHub API returns it (JSON); argv[1]: the runner architecture word
(x64, arm64 ...). `listed` is yes when the release has the tarball of that architecture (or
lists no assets at all); the SHA-256 is the digest of that asset, else the one the release notes
carry, else empty. Standard library only, Python 3.8 (focal) and later. No apostrophes in this
file: the builder script holds it in single quotes, where each costs five bytes.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any


def summary(release: dict[str, Any], arch: str) -> str:
    """Return the version, whether the tarball of `arch` is listed, its SHA-256 ("" if none)."""
    tag = release.get("tag_name") or ""
    version = tag[1:] if tag.startswith("v") else tag
    name = f"actions-runner-linux-{arch}-{version}.tar.gz"
    sha = ""
    assets = release.get("assets") or []
    listed = "yes" if not assets else "no"
    for asset in assets:
        digest = asset.get("digest") or ""
        if asset.get("name") == name:
            listed = "yes"
            if digest.startswith("sha256:"):
                sha = digest[len("sha256:") :]
    if not sha:
        found = re.search(
            f"<!-- BEGIN SHA linux-{re.escape(arch)} -->([0-9a-f]{{64}})<!-- END SHA",
            release.get("body") or "",
        )
        sha = found.group(1) if found else ""
    return f"{version} {listed} {sha}"


if __name__ == "__main__":
    print(summary(json.load(sys.stdin), sys.argv[1]))
