// Small real-socket clients for the sim's own tests: a WebSocket probe that queues what it
// receives, an upgrade prober for refusals, and an SSE reader.
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';

export type Ev = Record<string, any>;

export const BETA = { 'openai-beta': 'responses_websockets=2026-02-06' };
export const TERMINAL = new Set(['response.completed', 'response.failed', 'response.incomplete', 'error']);

export class WsProbe {
  readonly events: Ev[] = [];
  readonly binaries: Buffer[] = [];
  private cursor = 0;
  private waiters: (() => void)[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(
    readonly ws: WebSocket,
    readonly upgrade: IncomingMessage,
  ) {
    ws.on('message', (data, isBinary) => {
      if (isBinary) this.binaries.push(data as Buffer);
      else this.events.push(JSON.parse((data as Buffer).toString('utf8')) as Ev);
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        for (const w of this.waiters.splice(0)) w();
      });
    });
  }

  static open(url: string, headers: Record<string, string> = {}, protocols?: string[]): Promise<WsProbe> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols, { headers });
      // Listeners must exist before the first frame: the realtime sim speaks before the client.
      let probe: WsProbe | null = null;
      ws.once('upgrade', (res) => {
        probe = new WsProbe(ws, res);
      });
      ws.once('open', () => resolve(probe!));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected status ${res.statusCode}`)));
    });
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** Next event (after the previous `next`) matching `pred`. */
  async next(pred: (e: Ev) => boolean = () => true, timeoutMs = 5000): Promise<Ev> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.events.length) {
        const e = this.events[this.cursor++];
        if (pred(e)) return e;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.ws.readyState === WebSocket.CLOSED) throw new Error('no matching event');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Events up to and including the next terminal one. */
  async turn(timeoutMs = 5000): Promise<Ev[]> {
    const start = this.cursor;
    await this.next((e) => TERMINAL.has(e.type), timeoutMs);
    return this.events.slice(start, this.cursor);
  }

  async create(frame: Ev, timeoutMs = 5000): Promise<Ev[]> {
    this.send({ type: 'response.create', model: 'gpt-5.5', store: false, ...frame });
    return this.turn(timeoutMs);
  }

  close(): void {
    this.ws.close(1000);
  }
}

export interface Refusal {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** Attempts an upgrade that is expected to be refused; resolves with the HTTP answer. */
export function refusedUpgrade(url: string, headers: Record<string, string> = {}): Promise<Refusal> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('upgrade unexpectedly accepted'));
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : null });
        ws.terminate();
      });
    });
    ws.once('error', () => undefined);
  });
}

export interface Sse {
  status: number;
  headers: Headers;
  /** `event:` line and parsed `data:` of every block. */
  blocks: { event: string | null; data: Ev }[];
  /** Set when the stream broke before its end. */
  broken: boolean;
}

export async function postSse(url: string, key: string, body: Ev): Promise<Sse> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ stream: true, ...body }),
  });
  // Read chunk by chunk so a stream cut mid-way still yields what arrived before the cut.
  let text = '';
  let broken = false;
  const decoder = new TextDecoder();
  const reader = res.body!.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    broken = true;
  }
  const blocks = text
    .split('\n\n')
    .filter((b) => b.trim() !== '')
    .map((b) => {
      const lines = b.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? null;
      const data = JSON.parse(lines.find((l) => l.startsWith('data: '))!.slice(6)) as Ev;
      return { event, data };
    });
  return { status: res.status, headers: res.headers, blocks, broken };
}

/** The user message shape codex sends. */
export function userMessage(text: string): Ev {
  return { type: 'message', role: 'user', content: [{ type: 'input_text', text }] };
}

export const types = (evs: Ev[]): string[] => evs.map((e) => e.type as string);

/** Polls `cond` until it holds; throws after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
