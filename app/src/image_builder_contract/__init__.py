"""The rules the charm and the CLI share, each defined once: words, names, option rules, argv.

Standard library, and pydantic for the build spec and the report. The CLI ships it in its
wheel; the charm ships a copy on its PYTHONPATH (the `contract` part in charmcraft.yaml puts it
in the packed charm's lib/), because the charm cannot import the CLI's package, which needs
openstacksdk.
"""
