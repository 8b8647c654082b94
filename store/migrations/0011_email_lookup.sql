-- A person is found by email as by phone: a keyed hash of the normalized address (trimmed, lower
-- case) beside its ciphertext. Set when a person is created or changed; rows written before this
-- migration get it at their next change.
ALTER TABLE people ADD COLUMN email_lookup bytea;
CREATE INDEX people_by_email ON people (organization_id, email_lookup);
