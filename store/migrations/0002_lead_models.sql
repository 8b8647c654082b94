-- Lead-score models trained per organization (`winnerr scoring train --org`): the newest one
-- scores the organization's leads; until it has one, the built-in prior does.
CREATE TABLE lead_models (
    organization_id text NOT NULL REFERENCES organizations (id),
    version         text NOT NULL,
    model           jsonb NOT NULL,
    examples        integer NOT NULL,
    held_out_auc    real,
    trained_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, version)
);
CREATE INDEX lead_models_newest ON lead_models (organization_id, trained_at DESC);

ALTER TABLE lead_models ENABLE ROW LEVEL SECURITY;
ALTER TABLE lead_models FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lead_models
    USING (organization_id = current_organization())
    WITH CHECK (organization_id = current_organization());
GRANT SELECT, INSERT, UPDATE, DELETE ON lead_models TO winnerr_service;
