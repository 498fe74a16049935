"""Jobs: what workers run. Schemas, queries, routes, the state machine, claims and leases."""
