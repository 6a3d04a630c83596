-- One row per try of a task on one instance; its id is the attempt key on the agent wire.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks (id),
    attempt_no  INTEGER NOT NULL,
    instance    TEXT NOT NULL,
    state       TEXT NOT NULL,
    started_ms  BIGINT NOT NULL,
    ended_ms    BIGINT,
    exit_code   INTEGER,
    signal      INTEGER,
    detail      TEXT,
    UNIQUE (task_id, attempt_no)
);
