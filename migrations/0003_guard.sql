-- The guard's record of each attempt: the mode and level it ran under, and the evidence
-- (policy approval, overrides) it acted on.
CREATE TABLE guard_runs (
    task_id          TEXT NOT NULL REFERENCES tasks (id),
    attempt_no       INTEGER NOT NULL,
    mode             TEXT NOT NULL,
    level            TEXT NOT NULL,
    policy_approval  TEXT,
    overrides        TEXT NOT NULL,
    decisions        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, attempt_no)
);

-- One decision of the guard about one value: never the value, only its short digest.
CREATE TABLE guard_decisions (
    id            INTEGER PRIMARY KEY,
    task_id       TEXT NOT NULL REFERENCES tasks (id),
    attempt_no    INTEGER NOT NULL,
    stream        TEXT NOT NULL,
    rule          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    action        TEXT NOT NULL,
    mode          TEXT NOT NULL,
    applied       INTEGER NOT NULL,
    digest        TEXT NOT NULL,
    start_offset  BIGINT NOT NULL,
    end_offset    BIGINT NOT NULL,
    allowed_by    TEXT,
    ts_ms         BIGINT NOT NULL
);
CREATE INDEX guard_decisions_by_task ON guard_decisions (task_id, id);
