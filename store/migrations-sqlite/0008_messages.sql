-- Messages (SMS, email): see the Postgres migration of the same name.
CREATE TABLE messages (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    id              TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    person_id       TEXT,
    agent_id        TEXT,
    received_ms     INTEGER NOT NULL,
    body_ciphertext BLOB,
    body_key_id     TEXT,
    sentiment       TEXT CHECK (sentiment IN ('negative', 'neutral', 'positive')),
    sentiment_score REAL,
    PRIMARY KEY (organization_id, id)
) STRICT;
CREATE INDEX messages_of_person ON messages (organization_id, person_id, received_ms DESC, id DESC);
