-- Each organization's keyterms: the words its calls are expected to hold, given to the
-- recognizer, in the organization's order (most important first).
CREATE TABLE keyterms (
    organization_id text NOT NULL REFERENCES organizations (id),
    position        integer NOT NULL,
    term            text NOT NULL,
    PRIMARY KEY (organization_id, position)
);

ALTER TABLE keyterms ENABLE ROW LEVEL SECURITY;
ALTER TABLE keyterms FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON keyterms
    USING (organization_id = current_organization())
    WITH CHECK (organization_id = current_organization());
GRANT SELECT, INSERT, UPDATE, DELETE ON keyterms TO winnerr_service;
