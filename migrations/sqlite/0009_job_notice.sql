-- What a job's owner should know that did not end the job (its checkpoint was damaged and
-- it trained again from the start), shown as `notice` in its JSON.
ALTER TABLE jobs ADD COLUMN notice TEXT;
