// Client side of the HTTP benchmark: N concurrent streams, each POSTing streaming Responses
// requests back to back for a fixed time. Per SSE event it records the delivery latency from
// the sim's `sim_ts`; per request the time to its first event and whether it ended with
// `response.completed`. Bodies are scanned, never JSON-parsed.
import { Pool } from 'undici';
import { hrMs } from './stats.js';

export interface HttpTarget {
  name: string;
  origin: string;
  path(request: number): string;
  headers(request: number): Record<string, string>;
}

export interface HttpPhaseResult {
  target: string;
  completed: number;
  failed: number;
  elapsedMs: number;
  latencies: number[];
  ttfe: number[];
  firstError: string | null;
}

const SIM_TS = '"sim_ts":';
const COMPLETED = '"type":"response.completed"';
const BODY = JSON.stringify({ model: 'gpt-bench', input: 'Say something long enough to stream.', stream: true, store: false });

/** One streaming request; resolves with null on success or a short error. Never throws. */
async function oneRequest(pool: Pool, t: HttpTarget, n: number, latencies: number[] | null, ttfe: number[] | null): Promise<string | null> {
  const sentAt = hrMs();
  try {
    const res = await pool.request({ path: t.path(n), method: 'POST', headers: { 'content-type': 'application/json', ...t.headers(n) }, body: BODY });
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      return `status ${res.statusCode}: ${text.slice(0, 200)}`;
    }
    let carry = '';
    let first = true;
    let completed = false;
    for await (const chunk of res.body) {
      const now = hrMs();
      if (first) {
        first = false;
        ttfe?.push(now - sentAt);
      }
      const text = carry + (chunk as Buffer).toString('utf8');
      // Only whole events are scanned; a split one waits for the next chunk.
      const end = text.lastIndexOf('\n\n');
      if (end < 0) {
        carry = text;
        continue;
      }
      carry = text.slice(end + 2);
      let at = text.indexOf(SIM_TS);
      while (at >= 0 && at < end) {
        const start = at + SIM_TS.length;
        let stop = start;
        while (stop < text.length && text.charCodeAt(stop) !== 0x7d && text.charCodeAt(stop) !== 0x2c) stop++;
        latencies?.push(now - Number(text.slice(start, stop)));
        at = text.indexOf(SIM_TS, stop);
      }
      if (!completed && text.includes(COMPLETED)) completed = true;
    }
    return completed ? null : 'stream ended without response.completed';
  } catch (err) {
    return `request failed: ${err instanceof Error ? err.message : String(err)}`;
  }
}

export interface HttpPhaseHooks {
  /** Warm-up done; the measured window starts when this resolves. */
  afterWarmup?(): Promise<void>;
  /** Every measured request has ended. */
  afterRequests?(): Promise<void>;
}

/** `streams` workers, each sending requests back to back for `durationMs` (after one warm-up each). */
export async function runHttpPhase(t: HttpTarget, streams: number, durationMs: number, hooks: HttpPhaseHooks = {}): Promise<HttpPhaseResult> {
  const pool = new Pool(t.origin, { connections: streams, pipelining: 1, keepAliveTimeout: 30_000 });
  const latencies: number[] = [];
  const ttfe: number[] = [];
  let completed = 0;
  let failed = 0;
  let firstError: string | null = null;
  let counter = 0;
  try {
    // Warm-up: one request per stream opens the connections, unmeasured.
    await Promise.all(Array.from({ length: streams }, () => oneRequest(pool, t, counter++, null, null)));
    await hooks.afterWarmup?.();
    const started = hrMs();
    const until = started + durationMs;
    let ended = started;
    const worker = async (): Promise<void> => {
      while (hrMs() < until) {
        const err = await oneRequest(pool, t, counter++, latencies, ttfe);
        if (err === null) completed++;
        else {
          failed++;
          firstError ??= err;
        }
        ended = Math.max(ended, hrMs());
      }
    };
    await Promise.all(Array.from({ length: streams }, worker));
    await hooks.afterRequests?.();
    return { target: t.name, completed, failed, elapsedMs: ended - started, latencies, ttfe, firstError };
  } finally {
    await pool.close().catch(() => undefined);
  }
}
