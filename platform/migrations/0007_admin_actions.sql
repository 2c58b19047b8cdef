-- The trail of management actions: who made, changed or stopped which department, system or
-- account, and when. Each row is written in the transaction of the change it describes, so a
-- change and its record are kept or lost together. Workflow actions have their own trail
-- (demand_transitions, grant_versions); data exchanges have the exchange log.
CREATE TABLE admin_actions (
    -- UUIDv7: ids sort in the order the actions were taken.
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    -- Who acted, named as in the workflow's histories: user:NAME; or bootstrap, or seed (the
    -- demo's seed data).
    actor TEXT NOT NULL,
    -- What was done, as `subject.verb` (user.created, system.api_key_replaced, ...).
    action TEXT NOT NULL,
    -- What it was done to: a username, a system id or a department's credit code.
    target TEXT NOT NULL,
    -- A JSON object of what changed, never a secret (key prefixes and certificate digests,
    -- not keys or passwords).
    detail TEXT NOT NULL
);
CREATE INDEX admin_actions_target ON admin_actions (target, id);
