-- The organizations there are, for tasks that run for each of them (retention's scheduled purge):
-- the service role sees only the organization of its transaction, so this function runs as the
-- schema's owner and returns ids only.
CREATE FUNCTION organization_ids() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT id FROM organizations ORDER BY id $$;
REVOKE ALL ON FUNCTION organization_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION organization_ids() TO winnerr_service;
