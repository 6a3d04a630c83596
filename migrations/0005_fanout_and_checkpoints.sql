-- Fan-out: a shard is a task of its own (own handle, attempts and manifest) that names its
-- parent and its index; the parent's state is derived from its shards'.
ALTER TABLE tasks ADD COLUMN parent TEXT REFERENCES tasks (id);
ALTER TABLE tasks ADD COLUMN shard INTEGER;
CREATE INDEX tasks_by_parent ON tasks (parent, shard);

-- Recovery checkpoints: every reschedule, fence, re-attach and retry of a task, with the
-- instances it moved between and the epoch (attempt key) it concerned.
CREATE TABLE checkpoints (
    id             INTEGER PRIMARY KEY,
    task_id        TEXT NOT NULL REFERENCES tasks (id),
    ts_ms          BIGINT NOT NULL,
    action         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    from_instance  TEXT,
    to_instance    TEXT,
    attempt_no     INTEGER NOT NULL,
    epoch          BIGINT NOT NULL
);
CREATE INDEX checkpoints_by_task ON checkpoints (task_id, id);
