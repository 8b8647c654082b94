-- A call's post-call summary (see the Postgres migration of the same name), as JSON text.
ALTER TABLE calls ADD COLUMN summary TEXT;
