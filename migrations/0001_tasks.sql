-- Tasks and their attempts. Portable SQL: the same statements run on PostgreSQL later.
CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    handle        TEXT NOT NULL UNIQUE,
    run_id        TEXT NOT NULL,
    request       TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    instance      TEXT,
    exit_code     INTEGER,
    signal        INTEGER,
    reason        TEXT,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL,
    finished_ms   BIGINT
);

CREATE INDEX tasks_by_state ON tasks (state, created_ms);
