"""The steps on silver's floor: ingest (landing → bronze), standardize (bronze → silver and
quarantine), publish (gate-passed gold → the serving files), open data, and the ops tables."""
