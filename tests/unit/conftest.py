"""Shared fixtures of the charm unit tests."""

import os

# charmcraft warns on every import without a private runtime directory.
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
