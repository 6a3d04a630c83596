-- Every observer's session on a task's output: when it joined and left, from where, what
-- it was sent, its lag policy and why it left (NULL while it is connected).
CREATE TABLE observer_sessions (
    id           TEXT PRIMARY KEY,
    task_id      TEXT NOT NULL,
    joined_ms    BIGINT NOT NULL,
    left_ms      BIGINT,
    from_offset  BIGINT NOT NULL,
    last_offset  BIGINT NOT NULL,
    frames       BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    policy       TEXT NOT NULL,
    reason       TEXT
);
CREATE INDEX observer_sessions_by_task ON observer_sessions (task_id, joined_ms);
