-- Licences revoked (撤销) by their issuing department through the gateway, over what the
-- register says: a check reads the register's status and this list, and a revocation here
-- holds at once on every gateway on the store, before the register's next update carries it.
CREATE TABLE licence_revocations (
    resource_code TEXT NOT NULL,
    licence_number TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (resource_code, licence_number)
);
