-- Demands (需求清单 entries) and their transitions. The SQL is portable between SQLite and
-- PostgreSQL: times are ISO 8601 text, which sorts in time order in both.

CREATE TABLE demands (
    id TEXT PRIMARY KEY,
    applicant_department TEXT NOT NULL,
    applicant_system TEXT,
    resource_code TEXT NOT NULL,
    service_item TEXT NOT NULL,
    purpose TEXT NOT NULL,
    legal_basis TEXT NOT NULL,
    state TEXT NOT NULL,
    -- The running review stage's deadline (YYYY-MM-DD); NULL while no clock runs.
    deadline TEXT,
    -- Bumped on every change; updates name the version they read, so none is lost.
    version BIGINT NOT NULL,
    -- The workflow (tongban_policy::workflow::Demand) as JSON.
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX demands_by_state ON demands (state, deadline);
CREATE INDEX demands_by_applicant ON demands (applicant_department, state);

CREATE TABLE demand_transitions (
    demand_id TEXT NOT NULL REFERENCES demands (id),
    seq BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (demand_id, seq)
);
