-- Roles: a student sees and manages their own jobs; an instructor also reads everyone's
-- jobs, sweeps, reports and events (the class view), but manages only their own; an admin
-- manages everything and everyone. `is_admin` becomes `role = 'admin'`.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'student'
    CHECK (role IN ('student', 'instructor', 'admin'));
UPDATE users SET role = 'admin' WHERE is_admin;
ALTER TABLE users DROP COLUMN is_admin;

-- A sweep's preset (an assignment), so a class's sweeps of it are found by index.
ALTER TABLE sweeps ADD COLUMN preset TEXT;
UPDATE sweeps SET preset = json_extract(definition, '$.preset')
    WHERE json_type(definition, '$.preset') = 'text';
CREATE INDEX sweeps_by_preset ON sweeps (preset, owner_id, seq);
