-- Leases in the store: each running attempt's lease, renewed by its instance's heartbeats,
-- so that several orchestrator nodes can later share who holds what (PostgreSQL).
ALTER TABLE attempts ADD COLUMN lease_until_ms BIGINT;

-- Operators' cordons and drains, kept across restarts of the server.
CREATE TABLE instance_controls (
    instance  TEXT PRIMARY KEY,
    control   TEXT NOT NULL,
    ts_ms     BIGINT NOT NULL
);
