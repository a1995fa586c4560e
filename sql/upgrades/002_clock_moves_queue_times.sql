-- Release 002: advancing the engine's clock also moves the times pgmq stamped on
-- queued and archived messages (enqueued_at, archived_at), so retention judges
-- archived messages by engine time (pgflow._queue_time). Engine functions only.

-- The inspector's list of runs, newest first, paged by (started_at, run_id):
-- each filter the page offers is an index range scan that stops after one page,
-- however many runs there are: all runs, by status, by flow (runs_flow_started_idx
-- gains run_id for the tie-break), by flow and status.
create index runs_started_idx on pgflow.runs (started_at, run_id);
create index runs_status_started_idx on pgflow.runs (status, started_at, run_id);
create index runs_flow_status_started_idx on pgflow.runs (flow_slug, status, started_at, run_id);
drop index pgflow.runs_flow_started_idx;
create index runs_flow_started_idx on pgflow.runs (flow_slug, started_at, run_id);
