-- PostgreSQL twin of migrations/sqlite/0012_roles_and_class.sql.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'student'
    CHECK (role IN ('student', 'instructor', 'admin'));
UPDATE users SET role = 'admin' WHERE is_admin;
ALTER TABLE users DROP COLUMN is_admin;

ALTER TABLE sweeps ADD COLUMN preset TEXT;
UPDATE sweeps SET preset = definition::jsonb ->> 'preset'
    WHERE jsonb_typeof(definition::jsonb -> 'preset') = 'string';
CREATE INDEX sweeps_by_preset ON sweeps (preset, owner_id, seq);
