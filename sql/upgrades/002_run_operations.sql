-- Advancing the engine's clock also moves the times pgmq stamped on
-- queued and archived messages (enqueued_at, archived_at), so retention judges
-- archived messages by engine time (pgflow._queue_time). Engine functions only.

-- Release 002: operating runs (cancel_run, resume_run, restart_run in
-- sql/engine/run_operations.sql). A run, its open steps and their open tasks
-- can end 'cancelled'; a run remembers which run it restarts.
-- Columns are added "if not exists" and constraints replaced whole, so this
-- file composes with other upgrades that touch the same statuses.

alter table pgflow.runs
  add column if not exists cancelled_at timestamptz,
  -- Pruning the original keeps its restarts: the link is cleared, not the run.
  add column if not exists restart_of_run_id uuid references pgflow.runs (run_id) on delete set null;

alter table pgflow.runs
  drop constraint if exists runs_status_is_known,
  add constraint runs_status_is_known check (status in ('started', 'completed', 'failed', 'cancelled')),
  drop constraint if exists runs_cancelled_at_matches,
  add constraint runs_cancelled_at_matches check ((status = 'cancelled') = (cancelled_at is not null));

create index if not exists runs_restart_of_idx on pgflow.runs (restart_of_run_id)
  where restart_of_run_id is not null;

-- Retention scans finished runs by age; a cancelled run is finished at cancelled_at.
drop index if exists pgflow.runs_finished_idx;
create index runs_finished_idx on pgflow.runs (coalesce(completed_at, failed_at, cancelled_at))
  where status <> 'started';

alter table pgflow.step_states
  add column if not exists cancelled_at timestamptz,
  drop constraint if exists step_states_status_is_known,
  add constraint step_states_status_is_known
    check (status in ('created', 'started', 'completed', 'failed', 'cancelled'));

alter table pgflow.step_tasks
  add column if not exists cancelled_at timestamptz,
  drop constraint if exists step_tasks_status_is_known,
  add constraint step_tasks_status_is_known
    check (status in ('queued', 'started', 'completed', 'failed', 'cancelled'));
