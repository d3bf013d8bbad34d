"""Talking to OpenStack: the openstacksdk wrapper, retries, polling, servers, sweeps."""
