/**
 * The client over supabase-js, in a browser or on a server: the two client functions through
 * PostgREST (`supabase.schema("pgflow").rpc(...)`; schema `pgflow` must be exposed and the role
 * granted EXECUTE, see "Grants") and a run's events through Realtime broadcast on channel
 * `pgflow:run:<run_id>` (the SQL core sends them with `realtime.send`).
 */
import type { SupabaseClient } from "@supabase/supabase-js";
import type { ClientTransport, RunEvent, RunWithStates } from "./types.ts";

/** A supabase-js client (`createClient(url, key)` from `@supabase/supabase-js`). */
export type SupabaseLike = Pick<SupabaseClient, "schema" | "channel" | "removeChannel">;

/** How long to wait for Realtime to confirm a channel, in ms. */
const SUBSCRIBE_TIMEOUT_MS = 10_000;

export function supabaseTransport(supabase: SupabaseLike): ClientTransport {
  const rpc = async (name: string, args: Record<string, unknown>): Promise<RunWithStates> => {
    const { data, error } = await supabase.schema("pgflow").rpc(name, args);
    if (error) {
      const detail = [error.message, error.details, error.hint].filter(Boolean).join("; ");
      throw new Error(`pgflow.${name} failed: ${detail}${error.code ? ` (${error.code})` : ""}`);
    }
    return data as RunWithStates;
  };
  return {
    startFlowWithStates: (flowSlug, input, runId) =>
      rpc("start_flow_with_states", { flow_slug: flowSlug, input, run_id: runId }),
    getRunWithStates: (runId) => rpc("get_run_with_states", { run_id: runId }),
    async subscribe(runId, onEvent) {
      const topic = `pgflow:run:${runId}`;
      const channel = supabase.channel(topic).on(
        "broadcast",
        { event: "*" },
        (message: { event: string; payload?: Record<string, unknown> }) => {
          const payload = message.payload ?? {};
          onEvent({ ...payload, event: message.event } as RunEvent);
        },
      );
      await new Promise<void>((resolve, reject) => {
        channel.subscribe((status: string, error?: Error) => {
          if (status === "SUBSCRIBED") resolve();
          else if (status === "CHANNEL_ERROR" || status === "TIMED_OUT" || status === "CLOSED") {
            reject(
              new Error(
                `Realtime channel ${topic}: ${status}${error ? ` (${error.message})` : ""}`,
              ),
            );
          }
        }, SUBSCRIBE_TIMEOUT_MS);
      }).catch(async (error) => {
        await supabase.removeChannel(channel);
        throw error;
      });
      return async () => {
        await supabase.removeChannel(channel);
      };
    },
  };
}
