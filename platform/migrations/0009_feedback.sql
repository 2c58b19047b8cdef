-- What consuming departments say back about the data they receive: objections to one item of
-- an answer (数据纠错) and monthly ratings of a grant's service (好差评). Each record is a JSON
-- document (tongban_policy::feedback) with the columns lists filter and sort on beside it.

CREATE TABLE objections (
    id TEXT PRIMARY KEY,
    exchange_id TEXT NOT NULL,
    item TEXT NOT NULL,
    consumer_department TEXT NOT NULL,
    supplier_department TEXT NOT NULL,
    resource_code TEXT NOT NULL,
    state TEXT NOT NULL,
    -- The supplier's last day to answer (YYYY-MM-DD).
    deadline TEXT NOT NULL,
    filed_at TEXT NOT NULL,
    -- Bumped on every change; an answer names the version it read, so none is lost.
    version BIGINT NOT NULL,
    body TEXT NOT NULL
);

-- One objection per item of one answer.
CREATE UNIQUE INDEX objections_one_per_item ON objections (exchange_id, item);
CREATE INDEX objections_by_supplier ON objections (supplier_department, state, deadline);
CREATE INDEX objections_by_consumer ON objections (consumer_department, state);

CREATE TABLE ratings (
    id TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    -- The month rated (YYYY-MM).
    period TEXT NOT NULL,
    consumer_department TEXT NOT NULL,
    supplier_department TEXT NOT NULL,
    resource_code TEXT NOT NULL,
    score INTEGER NOT NULL,
    -- 'none' (a good score), 'open' or 'answered': the rectification task's state.
    task TEXT NOT NULL,
    -- The rectification task's deadline (YYYY-MM-DD), when there is one.
    deadline TEXT,
    rated_at TEXT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL
);

-- One rating per grant and month: a department rates a service once per period.
CREATE UNIQUE INDEX ratings_one_per_period ON ratings (grant_id, period);
CREATE INDEX ratings_by_supplier ON ratings (supplier_department, task, deadline);
CREATE INDEX ratings_by_period ON ratings (period, resource_code);
