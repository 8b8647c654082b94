-- How each call's consent to be recorded and transcribed was obtained (`disclosed`: the caller
-- heard the organization's disclosure before the stream started); NULL: the policy asked for
-- nothing.
ALTER TABLE calls ADD COLUMN consent text;
