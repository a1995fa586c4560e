-- The last step of taking over a pgflow installation (sql/upgrades/002): the
-- grants pgflow's objects had are given on edgeflow's objects of the same name
-- (a function by its argument types, else the only function of that name).
-- Runs after privileges.sql, so the release's revokes do not undo them. What
-- has no counterpart is named in a warning. The table goes once applied.
do $$
declare
  v_grant record;
  v_target text;
begin
  if to_regclass('pgflow.switch_grants') is null then
    return;
  end if;
  for v_grant in select * from pgflow.switch_grants order by object_kind, object_name, grantee loop
    v_target := case v_grant.object_kind
      when 'schema' then 'schema pgflow'
      when 'table' then 'table ' || to_regclass(v_grant.object_name)::text
      when 'sequence' then 'sequence ' || to_regclass(v_grant.object_name)::text
      when 'function' then 'function ' || coalesce(
        to_regprocedure(v_grant.object_name)::text,
        (select min(p.oid::regprocedure::text) from pg_catalog.pg_proc p
         where p.pronamespace = 'pgflow'::regnamespace
           and p.proname = split_part(split_part(v_grant.object_name, '.', 2), '(', 1)
         having count(*) = 1))
    end;
    if v_target is null then
      raise warning 'pgflow''s grant of % on % to % has no counterpart in edgeflow; not granted',
        v_grant.privilege, v_grant.object_name, v_grant.grantee;
      continue;
    end if;
    execute format('grant %s on %s to %I%s', v_grant.privilege, v_target, v_grant.grantee,
                   case when v_grant.grantable then ' with grant option' else '' end);
  end loop;
  drop table pgflow.switch_grants;
end
$$;
