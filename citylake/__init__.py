"""CityLake: the ground floor (configuration, the catalogue loader, the one Delta/DuckDB I/O module,
masking, reference data), the sample city, and the roof (the step runner, orchestration, the data
service, the CLI); pyproject.toml's import-linter contracts say which may import which."""
