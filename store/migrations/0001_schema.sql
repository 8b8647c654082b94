-- The CRM's records. Every tenant table carries organization_id and is under row-level security:
-- the service role sees and writes only the rows of the organization set for its transaction
-- (`SET LOCAL app.current_organization`), whatever its queries say.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'winnerr_service') THEN
        -- The role the engine runs as: it owns nothing, so row-level security always applies.
        CREATE ROLE winnerr_service LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

-- The organization of the current transaction; NULL (no rows) when unset.
CREATE FUNCTION current_organization() RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.current_organization', true), '') $$;

CREATE TABLE organizations (
    id              text PRIMARY KEY,
    name            text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    organization_id text NOT NULL REFERENCES organizations (id),
    id              text NOT NULL,
    name            text NOT NULL,
    email_ciphertext bytea,
    email_key_id    text,
    role            text NOT NULL CHECK (role IN ('agent', 'manager', 'admin')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);

-- Leads and clients. Contact details are encrypted (AES-256-GCM, key id beside each value);
-- phone_lookup is a keyed hash, so a person can be found by phone without the plaintext.
CREATE TABLE people (
    organization_id  text NOT NULL REFERENCES organizations (id),
    id               text NOT NULL,
    first_name       text NOT NULL,
    last_name        text NOT NULL DEFAULT '',
    email_ciphertext bytea,
    email_key_id     text,
    phone_ciphertext bytea,
    phone_key_id     text,
    phone_lookup     bytea,
    source           text,
    preferences      jsonb NOT NULL DEFAULT '{}',
    location         text,
    budget_min       bigint,
    budget_max       bigint,
    owner_user_id    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX people_phone_lookup ON people (organization_id, phone_lookup);

CREATE TABLE properties (
    organization_id text NOT NULL REFERENCES organizations (id),
    id              text NOT NULL,
    address         text NOT NULL,
    location        text,
    price           bigint,
    bedrooms        smallint,
    status          text NOT NULL DEFAULT 'active',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE deals (
    organization_id text NOT NULL REFERENCES organizations (id),
    id              text NOT NULL,
    person_id       text NOT NULL,
    property_id     text,
    stage           text NOT NULL CHECK (stage IN ('lead', 'qualified', 'showing', 'offer', 'under_contract', 'won', 'lost')),
    amount          bigint,
    commission      bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    PRIMARY KEY (organization_id, id),
    FOREIGN KEY (organization_id, person_id) REFERENCES people (organization_id, id)
);

-- Calls as the voice stage reports them. agent_id and lead_id are the ids the stream carried.
CREATE TABLE calls (
    organization_id   text NOT NULL REFERENCES organizations (id),
    id                text NOT NULL,
    stream_sid        text,
    account_sid       text,
    agent_id          text,
    lead_id           text,
    property_id       text,
    direction         text NOT NULL DEFAULT 'inbound',
    status            text NOT NULL CHECK (status IN ('live', 'completed', 'abandoned', 'rejected', 'shutdown')),
    started_at        timestamptz,
    -- started_at in ms since the epoch (0 when unknown): the key calls are listed and paged by.
    started_ms        bigint NOT NULL DEFAULT 0,
    ended_at          timestamptz,
    duration_ms       bigint,
    inbound_talk_ms   bigint NOT NULL DEFAULT 0,
    outbound_talk_ms  bigint NOT NULL DEFAULT 0,
    dtmf_digits       text NOT NULL DEFAULT '',
    stream_stats      jsonb,
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX calls_by_start ON calls (organization_id, started_ms DESC, id DESC);
CREATE INDEX calls_by_agent ON calls (organization_id, agent_id, started_at DESC);
CREATE INDEX calls_by_lead ON calls (organization_id, lead_id, started_at DESC);

CREATE TABLE utterances (
    organization_id text NOT NULL REFERENCES organizations (id),
    call_id         text NOT NULL,
    id              text NOT NULL,
    track           text NOT NULL CHECK (track IN ('inbound', 'outbound')),
    start_ms        bigint NOT NULL,
    end_ms          bigint NOT NULL,
    text_ciphertext bytea NOT NULL,
    text_key_id     text NOT NULL,
    sentiment       text CHECK (sentiment IN ('negative', 'neutral', 'positive')),
    sentiment_score real,
    PRIMARY KEY (organization_id, call_id, id),
    FOREIGN KEY (organization_id, call_id) REFERENCES calls (organization_id, id)
);
CREATE INDEX utterances_in_order ON utterances (organization_id, call_id, start_ms, id);

CREATE TABLE lead_scores (
    organization_id text NOT NULL REFERENCES organizations (id),
    person_id       text NOT NULL,
    scored_at       timestamptz NOT NULL,
    score           smallint NOT NULL CHECK (score BETWEEN 0 AND 100),
    factors         jsonb NOT NULL,
    model_version   text NOT NULL,
    PRIMARY KEY (organization_id, person_id, scored_at)
);

CREATE TABLE activity (
    organization_id text NOT NULL REFERENCES organizations (id),
    id              bigint GENERATED ALWAYS AS IDENTITY,
    person_id       text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('website_visit', 'property_view', 'email_open')),
    property_id     text,
    at              timestamptz NOT NULL,
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX activity_by_person ON activity (organization_id, person_id, at DESC);

-- Events already applied by the store writer: replays and redeliveries change nothing.
CREATE TABLE applied_events (
    organization_id text NOT NULL REFERENCES organizations (id),
    event_id        uuid NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, event_id)
);

-- Sensitive operations, each row chained by hash to the one before it in its organization.
CREATE TABLE audit_log (
    organization_id text NOT NULL REFERENCES organizations (id),
    seq             bigint NOT NULL,
    -- Milliseconds since the epoch, and detail as the exact JSON text: both go into the hash.
    at_ms           bigint NOT NULL,
    actor           text NOT NULL,
    action          text NOT NULL,
    subject         text NOT NULL,
    detail          text NOT NULL DEFAULT '{}',
    prev_hash       bytea NOT NULL,
    hash            bytea NOT NULL,
    PRIMARY KEY (organization_id, seq)
);

DO $$
DECLARE
    tenant_table text;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY['users', 'people', 'properties', 'deals', 'calls', 'utterances',
                                       'lead_scores', 'activity', 'applied_events', 'audit_log']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (organization_id = current_organization()) '
            'WITH CHECK (organization_id = current_organization())', tenant_table);
    END LOOP;
END
$$;

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations
    USING (id = current_organization()) WITH CHECK (id = current_organization());

GRANT USAGE ON SCHEMA public TO winnerr_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO winnerr_service;
-- The audit log is append-only for the service.
REVOKE UPDATE, DELETE ON audit_log FROM winnerr_service;
GRANT EXECUTE ON FUNCTION current_organization() TO winnerr_service;
