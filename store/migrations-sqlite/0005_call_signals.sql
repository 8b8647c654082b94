-- A call's talk signals (see the Postgres migration of the same name), as JSON text.
ALTER TABLE calls ADD COLUMN signals TEXT;
