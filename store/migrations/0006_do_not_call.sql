-- Each organization's do-not-call list. A number is kept only as the keyed hash people's phones
-- are found by (phone_lookup, of the E.164 form) and its last four digits, to show the list.
CREATE TABLE do_not_call (
    organization_id text NOT NULL REFERENCES organizations (id),
    phone_lookup    bytea NOT NULL,
    last4           text NOT NULL,
    reason          text,
    added_by        text NOT NULL,
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, phone_lookup)
);

ALTER TABLE do_not_call ENABLE ROW LEVEL SECURITY;
ALTER TABLE do_not_call FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON do_not_call
    USING (organization_id = current_organization())
    WITH CHECK (organization_id = current_organization());
GRANT SELECT, INSERT, UPDATE, DELETE ON do_not_call TO winnerr_service;
