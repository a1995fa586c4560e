-- Nothing in schema pgflow is reachable by a role that was not granted it.
-- README.md ("Grants") lists what a client role needs to start and watch runs.
--
-- Every release runs this file, so it only takes from PUBLIC what PostgreSQL
-- gives PUBLIC by default (EXECUTE on new functions): the grants a project
-- made to its own roles survive upgrades. Supabase's anon and authenticated
-- roles were stripped once, by release 001; since then they hold what the
-- project granted them, nothing more.
revoke all on schema pgflow from public;

revoke all on all tables in schema pgflow from public;

revoke all on all sequences in schema pgflow from public;

revoke all on all functions in schema pgflow from public;

-- Functions created later by the same role are not executable by PUBLIC either.
alter default privileges in schema pgflow revoke execute on functions from public;
