-- Each organization's keyterms (see the Postgres migration of the same name).
CREATE TABLE keyterms (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    position        INTEGER NOT NULL,
    term            TEXT NOT NULL,
    PRIMARY KEY (organization_id, position)
) STRICT;
