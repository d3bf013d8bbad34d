"""Build GitHub self-hosted runner images on OpenStack."""
