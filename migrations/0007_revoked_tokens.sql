-- Agent and observer tokens revoked one by one, by the id each version 2 token carries.
CREATE TABLE revoked_tokens (
    id          TEXT PRIMARY KEY,
    revoked_ms  BIGINT NOT NULL,
    reason      TEXT NOT NULL
);
