-- Release 002: no schema change. The engine files that follow carry what changed since 001:
-- complete_task_and_claim returns each claimed task's "attempt" (1 = the first), so a handler
-- knows which attempt it is on every claiming path (issue 9, finding 8).
select 1;
