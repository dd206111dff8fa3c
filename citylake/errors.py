"""The errors CityLake raises on purpose. Each is a problem in the data or the configuration, not a
transient fault: the CLI prints it without a stack trace, and the orchestration does not retry it."""


class CityLakeError(Exception):
    """Base of every deliberate CityLake error; its message names the file, row and column."""
