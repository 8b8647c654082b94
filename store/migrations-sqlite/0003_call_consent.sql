-- How each call's consent was obtained (see the Postgres migration of the same name).
ALTER TABLE calls ADD COLUMN consent TEXT;
