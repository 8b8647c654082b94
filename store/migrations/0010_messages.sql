-- Messages (SMS, email) to and from an organization's people. An inbound message's row is made
-- when its webhook first arrives (the provider's id is the key, so a redelivery finds it) and
-- gets its analysed body, sealed, when the store writer applies its `message` event.
CREATE TABLE messages (
    organization_id text NOT NULL REFERENCES organizations (id),
    id              text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('sms', 'email')),
    direction       text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    person_id       text,
    agent_id        text,
    received_ms     bigint NOT NULL,
    body_ciphertext bytea,
    body_key_id     text,
    sentiment       text CHECK (sentiment IN ('negative', 'neutral', 'positive')),
    sentiment_score real,
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX messages_of_person ON messages (organization_id, person_id, received_ms DESC, id DESC);

ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON messages
    USING (organization_id = current_organization())
    WITH CHECK (organization_id = current_organization());
GRANT SELECT, INSERT, UPDATE, DELETE ON messages TO winnerr_service;
