-- The control plane's verdict on each accepted request (schema, version, mode, outcome,
-- errors), shown in its manifest; and the idempotency keys of submissions.
ALTER TABLE tasks ADD COLUMN validation TEXT;

CREATE TABLE idempotency_keys (
    idempotency_key  TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL REFERENCES tasks (id)
);
