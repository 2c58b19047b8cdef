-- Seal certificates (电子印章证书) registered by issuing departments through the gateway, beside
-- those in the seals directory: a document check accepts a seal whose certificate is one of
-- its department's registered and not retired. A certificate is retired, never deleted, so
-- that the trail of which seal was recognised when stays whole.
CREATE TABLE seal_certificates (
    department_code TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    certificate TEXT NOT NULL,
    subject TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    registered_by TEXT NOT NULL,
    retired_at TEXT,
    retired_by TEXT,
    PRIMARY KEY (department_code, fingerprint)
);
