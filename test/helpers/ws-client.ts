// A small Responses WebSocket test client over `ws`: send frames, read events, run whole turns.
import WebSocket from 'ws';

export interface TurnResult {
  events: Record<string, unknown>[];
  terminal: Record<string, unknown>;
  responseId: string | null;
  text: string;
}

const TERMINAL = new Set(['response.completed', 'response.failed', 'response.incomplete', 'response.cancelled', 'error']);

export class TestWsClient {
  readonly ws: WebSocket;
  private queue: Record<string, unknown>[] = [];
  private waiters: Array<(e: Record<string, unknown> | null) => void> = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;
  /** Status of a refused upgrade, if any. */
  refusedStatus: number | null = null;
  private isClosed = false;

  constructor(url: string, opts: { key?: string; headers?: Record<string, string>; protocols?: string[] } = {}) {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.key) headers.authorization = `Bearer ${opts.key}`;
    this.ws = new WebSocket(url, opts.protocols ?? [], { headers, perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => {
        this.refusedStatus = res.statusCode ?? null;
        res.resume();
        reject(new Error(`upgrade refused: ${res.statusCode}`));
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.isClosed = true;
        for (const w of this.waiters.splice(0)) w(null);
        resolve({ code, reason: reason.toString() });
      });
    });
    this.ws.on('error', () => {});
    this.ws.on('message', (data, isBinary) => {
      const ev = isBinary ? { type: '__binary__', bytes: (data as Buffer).length } : (JSON.parse(data.toString()) as Record<string, unknown>);
      const w = this.waiters.shift();
      if (w) w(ev);
      else this.queue.push(ev);
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame));
  }

  /** Next event, or null once the socket is closed. Rejects after timeoutMs. */
  next(timeoutMs = 10_000): Promise<Record<string, unknown> | null> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.isClosed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(new Error('timed out waiting for an event'));
      }, timeoutMs);
      const done = (e: Record<string, unknown> | null) => {
        clearTimeout(t);
        resolve(e);
      };
      this.waiters.push(done);
    });
  }

  /** Reads events until a terminal one. */
  async readTurn(timeoutMs = 15_000): Promise<TurnResult> {
    const events: Record<string, unknown>[] = [];
    for (;;) {
      const e = await this.next(timeoutMs);
      if (e === null) throw new Error(`socket closed mid-turn after ${events.length} events`);
      events.push(e);
      if (TERMINAL.has(String(e.type))) {
        const resp = e.response as { id?: string } | undefined;
        const text = events
          .filter((x) => x.type === 'response.output_text.delta')
          .map((x) => String(x.delta))
          .join('');
        return { events, terminal: e, responseId: resp?.id ?? null, text };
      }
    }
  }

  async turn(frame: Record<string, unknown>, timeoutMs?: number): Promise<TurnResult> {
    this.send({ type: 'response.create', ...frame });
    return this.readTurn(timeoutMs);
  }

  close(code = 1000): void {
    this.ws.close(code);
  }
}

export async function connect(url: string, opts: ConstructorParameters<typeof TestWsClient>[1] = {}): Promise<TestWsClient> {
  const c = new TestWsClient(url, opts);
  await c.opened;
  return c;
}

/** What the simulated upstream sends for a default text answer (3 deltas), in order. */
export const TEXT_TURN_EVENTS: readonly string[] = [
  'response.created',
  'response.in_progress',
  'response.output_item.added',
  'response.content_part.added',
  'response.output_text.delta',
  'response.output_text.delta',
  'response.output_text.delta',
  'response.output_text.done',
  'response.content_part.done',
  'response.output_item.done',
  'response.completed',
];

export const userMessage = (text: string) => [{ type: 'message', role: 'user', content: [{ type: 'input_text', text }] }];
