-- A person found by email (see the Postgres migration of the same name).
ALTER TABLE people ADD COLUMN email_lookup BLOB;
CREATE INDEX people_by_email ON people (organization_id, email_lookup);
