-- Each organization's do-not-call list (see the Postgres migration of the same name).
CREATE TABLE do_not_call (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    phone_lookup    BLOB NOT NULL,
    last4           TEXT NOT NULL,
    reason          TEXT,
    added_by        TEXT NOT NULL,
    added_at        INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (organization_id, phone_lookup)
) STRICT;
