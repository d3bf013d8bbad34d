"""Charm library for the `github_runner_image_v0` interface (image IDs for runner charms)."""

# The unique Charmhub library identifier, never change it.
LIBID = "5d0f6a1c8b2e4c3fa9d7e1b04c6a2f18"
# Increment this major API version when introducing breaking changes.
LIBAPI = 0
# Increment this PATCH version before using `charmcraft publish-lib` or reset to 0 if you are
# raising the major API version.
LIBPATCH = 1
