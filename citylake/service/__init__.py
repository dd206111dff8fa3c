"""The data service: sharing catalogue, data API, ID verification, Delta Sharing, open data."""
