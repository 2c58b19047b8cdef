-- The purpose a grant serves: department, system (or any of the department's), resource and
-- service item, as a JSON array. One grant at most stands (is active or suspended) per
-- purpose; a later approval replaces the earlier grant in the same write. The column is
-- filled for older grants, overlapping ones are resolved, and the unique index that keeps it
-- so is made, by `Store::one_grant_per_purpose` when the platform opens the store, because
-- the values are read from the grants' JSON documents.
ALTER TABLE grants ADD COLUMN purpose TEXT;
