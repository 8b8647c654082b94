-- Call events the store writer could not store, set aside with the reason (see the Postgres
-- migration of the same name).
CREATE TABLE dead_letters (
    organization_id    TEXT NOT NULL REFERENCES organizations (id),
    event_id           TEXT NOT NULL,
    call_id            TEXT NOT NULL,
    kind               TEXT NOT NULL,
    reason             TEXT NOT NULL,
    payload_ciphertext BLOB NOT NULL,
    payload_key_id     TEXT NOT NULL,
    set_aside_at       INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (organization_id, event_id)
) STRICT;
