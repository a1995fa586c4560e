/** Percentiles of the benchmark's samples (nearest rank). */

/** The p-th percentile of ascending `sorted` samples. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The median of `samples`, in any order. */
export function median(samples: number[]): number {
  return percentile([...samples].sort((a, b) => a - b), 50);
}
