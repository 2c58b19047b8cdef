-- Departments, their systems, people and sessions; the versioned catalog; service items;
-- grants with their version history. Portable between SQLite and PostgreSQL, like 0001.

CREATE TABLE departments (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    -- JSON array of tongban_policy::org::DepartmentRole.
    roles TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE systems (
    id TEXT PRIMARY KEY,
    department_code TEXT NOT NULL REFERENCES departments (code),
    name TEXT NOT NULL,
    -- SHA-256 of the API key; the key itself is shown once and never stored.
    api_key_hash TEXT NOT NULL UNIQUE,
    -- The key's first characters, so people can tell their keys apart.
    api_key_prefix TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (department_code, name)
);

CREATE TABLE users (
    username TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    department_code TEXT NOT NULL REFERENCES departments (code),
    -- JSON array of tongban_policy::org::UserRole.
    roles TEXT NOT NULL,
    -- Argon2id PHC string.
    password_hash TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the bearer token.
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users (username),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE service_items (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    ministry TEXT NOT NULL,
    body TEXT NOT NULL
);

-- Every version of every catalog resource; the newest is current. Versions are never
-- rewritten, because grants name the version they were approved on.
CREATE TABLE resource_versions (
    code TEXT NOT NULL,
    version BIGINT NOT NULL,
    supplier TEXT NOT NULL REFERENCES departments (code),
    name TEXT NOT NULL,
    -- tongban_policy::catalog::Resource as JSON.
    body TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (code, version)
);

ALTER TABLE demands ADD COLUMN supplier_department TEXT;
ALTER TABLE demands ADD COLUMN resource_version BIGINT;
CREATE INDEX demands_by_supplier ON demands (supplier_department, state);

-- Grants as they stand, with a version bumped on each change like demands.
CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    demand_id TEXT NOT NULL UNIQUE REFERENCES demands (id),
    consumer_department TEXT NOT NULL,
    resource_code TEXT NOT NULL,
    status TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- tongban_policy::grant::Grant as JSON.
    body TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX grants_by_consumer ON grants (consumer_department, status);

-- Every version of every grant, with who changed it and why. Insert-only: its row count
-- also tells other gateway instances that grants changed.
CREATE TABLE grant_versions (
    grant_id TEXT NOT NULL REFERENCES grants (id),
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    reason TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (grant_id, version)
);
