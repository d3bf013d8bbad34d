"""A real OpenStack (Keystone, Glance, Placement, Nova, Neutron) on 127.0.0.1 for tests.

Host side (the test or demo process): `cloud.LocalCloud`. Service side (run by the services'
own virtual environment): `serve`, `nova_driver`. `qcow2` and `guest` are plain standard library
and shared by both sides. Nothing here may import openstacksdk or the services at import time.
"""
