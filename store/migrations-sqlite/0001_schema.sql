-- The CRM's records in the embedded SQLite database: the same tables as the Postgres schema
-- (../migrations), with what SQLite has instead of Postgres types. SQLite has no row-level
-- security: every statement the store runs here names its organization (`organization_id = $1`).
--
-- Times are integer milliseconds since the Unix epoch (the `*_at` columns too), JSON is text,
-- binary values are blobs.

CREATE TABLE organizations (
    id              TEXT PRIMARY KEY,
    name            TEXT,
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;

CREATE TABLE users (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    id              TEXT NOT NULL,
    name            TEXT NOT NULL,
    email_ciphertext BLOB,
    email_key_id    TEXT,
    role            TEXT NOT NULL CHECK (role IN ('agent', 'manager', 'admin')),
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (organization_id, id)
) STRICT;

CREATE TABLE people (
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    id               TEXT NOT NULL,
    first_name       TEXT NOT NULL,
    last_name        TEXT NOT NULL DEFAULT '',
    email_ciphertext BLOB,
    email_key_id     TEXT,
    phone_ciphertext BLOB,
    phone_key_id     TEXT,
    phone_lookup     BLOB,
    source           TEXT,
    preferences      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(preferences)),
    location         TEXT,
    budget_min       INTEGER,
    budget_max       INTEGER,
    owner_user_id    TEXT,
    created_at       INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    updated_at       INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (organization_id, id)
) STRICT;
CREATE INDEX people_phone_lookup ON people (organization_id, phone_lookup);

CREATE TABLE properties (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    id              TEXT NOT NULL,
    address         TEXT NOT NULL,
    location        TEXT,
    price           INTEGER,
    bedrooms        INTEGER,
    status          TEXT NOT NULL DEFAULT 'active',
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (organization_id, id)
) STRICT;

CREATE TABLE deals (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    id              TEXT NOT NULL,
    person_id       TEXT NOT NULL,
    property_id     TEXT,
    stage           TEXT NOT NULL CHECK (stage IN ('lead', 'qualified', 'showing', 'offer', 'under_contract', 'won', 'lost')),
    amount          INTEGER,
    commission      INTEGER,
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    closed_at       INTEGER,
    PRIMARY KEY (organization_id, id),
    FOREIGN KEY (organization_id, person_id) REFERENCES people (organization_id, id)
) STRICT;

CREATE TABLE calls (
    organization_id   TEXT NOT NULL REFERENCES organizations (id),
    id                TEXT NOT NULL,
    stream_sid        TEXT,
    account_sid       TEXT,
    agent_id          TEXT,
    lead_id           TEXT,
    property_id       TEXT,
    direction         TEXT NOT NULL DEFAULT 'inbound',
    status            TEXT NOT NULL CHECK (status IN ('live', 'completed', 'abandoned', 'rejected', 'shutdown')),
    started_at        INTEGER,
    started_ms        INTEGER NOT NULL DEFAULT 0,
    ended_at          INTEGER,
    duration_ms       INTEGER,
    inbound_talk_ms   INTEGER NOT NULL DEFAULT 0,
    outbound_talk_ms  INTEGER NOT NULL DEFAULT 0,
    dtmf_digits       TEXT NOT NULL DEFAULT '',
    stream_stats      TEXT CHECK (stream_stats IS NULL OR json_valid(stream_stats)),
    PRIMARY KEY (organization_id, id)
) STRICT;
CREATE INDEX calls_by_start ON calls (organization_id, started_ms DESC, id DESC);
CREATE INDEX calls_by_agent ON calls (organization_id, agent_id, started_ms DESC);
CREATE INDEX calls_by_lead ON calls (organization_id, lead_id, started_ms DESC);

CREATE TABLE utterances (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    call_id         TEXT NOT NULL,
    id              TEXT NOT NULL,
    track           TEXT NOT NULL CHECK (track IN ('inbound', 'outbound')),
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    text_ciphertext BLOB NOT NULL,
    text_key_id     TEXT NOT NULL,
    sentiment       TEXT CHECK (sentiment IN ('negative', 'neutral', 'positive')),
    sentiment_score REAL,
    PRIMARY KEY (organization_id, call_id, id),
    FOREIGN KEY (organization_id, call_id) REFERENCES calls (organization_id, id)
) STRICT;
CREATE INDEX utterances_in_order ON utterances (organization_id, call_id, start_ms, id);

CREATE TABLE lead_scores (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    person_id       TEXT NOT NULL,
    scored_at       INTEGER NOT NULL,
    score           INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    factors         TEXT NOT NULL CHECK (json_valid(factors)),
    model_version   TEXT NOT NULL,
    PRIMARY KEY (organization_id, person_id, scored_at)
) STRICT;

CREATE TABLE activity (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    id              INTEGER PRIMARY KEY,
    person_id       TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('website_visit', 'property_view', 'email_open')),
    property_id     TEXT,
    at              INTEGER NOT NULL
) STRICT;
CREATE INDEX activity_by_person ON activity (organization_id, person_id, at DESC);

CREATE TABLE applied_events (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    event_id        BLOB NOT NULL,
    applied_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (organization_id, event_id)
) STRICT;

CREATE TABLE audit_log (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    seq             INTEGER NOT NULL,
    at_ms           INTEGER NOT NULL,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    detail          TEXT NOT NULL DEFAULT '{}',
    prev_hash       BLOB NOT NULL,
    hash            BLOB NOT NULL,
    PRIMARY KEY (organization_id, seq)
) STRICT;

-- The audit log is append-only for the engine, as the Postgres grants make it there.
CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE lead_models (
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    version         TEXT NOT NULL,
    model           TEXT NOT NULL CHECK (json_valid(model)),
    examples        INTEGER NOT NULL,
    held_out_auc    REAL,
    trained_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (organization_id, version)
) STRICT;
CREATE INDEX lead_models_newest ON lead_models (organization_id, trained_at DESC);
