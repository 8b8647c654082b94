-- Call events the store writer could not store (a value the database refuses), set aside with
-- the reason so the rest of their batch, and every later one, is still written. The event's
-- JSON is kept encrypted like transcript text (it may hold the caller's words), for an operator
-- to inspect or replay once the cause is fixed.
CREATE TABLE dead_letters (
    organization_id    text NOT NULL REFERENCES organizations (id),
    event_id           text NOT NULL,
    call_id            text NOT NULL,
    kind               text NOT NULL,
    reason             text NOT NULL,
    payload_ciphertext bytea NOT NULL,
    payload_key_id     text NOT NULL,
    set_aside_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, event_id)
);

ALTER TABLE dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dead_letters
    USING (organization_id = current_organization())
    WITH CHECK (organization_id = current_organization());
GRANT SELECT, INSERT, UPDATE, DELETE ON dead_letters TO winnerr_service;
