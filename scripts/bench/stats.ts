// Pure statistics for the benchmark drivers: percentiles, medians, rounding. No I/O.

/** Nearest-rank percentile of an already sorted array; NaN when empty. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** Percentiles of an unsorted sample (copied into a Float64Array, so the input is left alone). */
export function percentiles(sample: ArrayLike<number>, ps: number[]): number[] {
  const sorted = Float64Array.from(sample).sort();
  return ps.map((p) => percentileSorted(sorted, p));
}

export function median(values: number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return Number.NaN;
  return percentileSorted(Float64Array.from(finite).sort(), 50);
}

/** Rounds to `digits` decimals; NaN becomes null so JSON output stays valid. */
export function round(v: number, digits = 3): number | null {
  if (!Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** process.hrtime in milliseconds: CLOCK_MONOTONIC, comparable with the sim's `sim_ts` across processes. */
export function hrMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The list started at `by` (mod its length): the order of targets changes from run to run. */
export function rotate<T>(list: readonly T[], by: number): T[] {
  return list.map((_, i) => list[(i + by) % list.length]);
}
