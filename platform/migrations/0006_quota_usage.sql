-- Calls of each grant's daily quota taken, per Beijing calendar day. Gateways take calls from
-- here in small leases (about a second's worth) and count them down in memory, so the quota
-- an approval set holds across every gateway on the store and across restarts, while a data
-- call touches the store at most once a second per grant. `last_lease` is how many calls the
-- last lease got, computed in the same statement that took them.
CREATE TABLE quota_usage (
    grant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    used BIGINT NOT NULL,
    last_lease BIGINT NOT NULL,
    PRIMARY KEY (grant_id, day)
);
