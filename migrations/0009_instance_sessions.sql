-- Every connection of an instance: what it offered, when it came and went, and when it
-- was last heard from (written with lease renewals, and at most every five heartbeats
-- while it runs nothing). A new pid on the next session of an instance is a restart.
CREATE TABLE instance_sessions (
    id             INTEGER PRIMARY KEY,
    instance       TEXT NOT NULL,
    conn           INTEGER NOT NULL,
    pid            INTEGER NOT NULL,
    slots          INTEGER NOT NULL,
    capabilities   TEXT NOT NULL,
    connected_ms   BIGINT NOT NULL,
    last_heard_ms  BIGINT NOT NULL,
    left_ms        BIGINT
);
CREATE INDEX instance_sessions_by_instance ON instance_sessions (instance, connected_ms);
CREATE INDEX attempts_by_instance ON attempts (instance, started_ms);
-- The admin task pages: newest first, from a cursor.
CREATE INDEX tasks_by_created ON tasks (created_ms, id);
