-- A call's talk signals (the voice stage's call_signals event, the latest by its call clock):
-- talk time per side, turns, interruptions, silences, speaking rate, the agent's questions.
ALTER TABLE calls ADD COLUMN signals jsonb;
