-- A call's post-call summary (the call_summary event): its talk signals at the end, each
-- side's sentiment start and end, the alerts raised by kind.
ALTER TABLE calls ADD COLUMN summary jsonb;
