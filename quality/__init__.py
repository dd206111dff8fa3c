"""Great Expectations gates: one suite per table (suites/), generated from its contract or metadata
file, run by the runner; the delivery reports, freshness and the quarantine reason codes."""
