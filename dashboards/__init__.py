"""The Superset bundle (YAML with fixed UUIDs), its configuration and its provisioning."""
