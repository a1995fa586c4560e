/** The benchmark's summaries of its samples: percentiles (nearest rank), medians, a timed median. */

/** The p-th percentile of ascending `sorted` samples. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The median of `samples`, in any order. */
export function median(samples: number[]): number {
  return percentile([...samples].sort((a, b) => a - b), 50);
}

/** Timed starts of many runs (start_flow, start_flows, the start floor): the median is reported. */
export const START_ROUNDS = 3;

/**
 * The median time of `rounds` runs of `body`, ms (one statement of a second on a shared machine
 * is a noisy sample); `between`, untimed, runs between two of them.
 */
export async function medianMs(
  rounds: number,
  body: () => Promise<unknown>,
  between?: () => Promise<unknown>,
): Promise<number> {
  const times: number[] = [];
  for (let round = 0; round < rounds; round++) {
    if (round > 0) await between?.();
    const began = performance.now();
    await body();
    times.push(performance.now() - began);
  }
  return median(times);
}
