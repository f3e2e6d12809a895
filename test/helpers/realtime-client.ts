// A small Realtime API test client over `ws`: server events as parsed JSON, binary frames as
// buffers, in arrival order; plus a probe for upgrades the relay refuses with plain HTTP.
import WebSocket from 'ws';

/** What the simulated upstream answers a default `response.create` with, through `response.done`. */
export const REALTIME_RESPONSE_EVENTS: readonly string[] = [
  'response.created',
  'response.output_item.added',
  'response.output_text.delta',
  'response.output_text.delta',
  'response.output_text.delta',
  'response.output_audio.delta',
  'response.output_audio.delta',
  'response.output_text.done',
  'response.output_audio.done',
  'response.output_item.done',
  'response.done',
];

export type RtEvent = Record<string, unknown> & { type: string };
export type RtFrame = { kind: 'text'; ev: RtEvent } | { kind: 'binary'; data: Buffer };

export interface RtOptions {
  key?: string;
  headers?: Record<string, string>;
  protocols?: string[];
  ca?: Buffer;
}

export class RtClient {
  readonly frames: RtFrame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];
  private read = 0;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.frames.push(isBinary ? { kind: 'binary', data } : { kind: 'text', ev: JSON.parse(data.toString('utf8')) as RtEvent });
      for (const w of this.waiters.splice(0)) w();
    });
    ws.on('error', () => {});
    this.closed = new Promise((resolve) => {
      ws.on('close', (code: number, reason: Buffer) => {
        for (const w of this.waiters.splice(0)) w();
        resolve({ code, reason: reason.toString('utf8') });
      });
    });
  }

  static open(url: string, o: RtOptions = {}): Promise<RtClient> {
    const headers = { ...(o.headers ?? {}) };
    if (o.key) headers.authorization = `Bearer ${o.key}`;
    const ws = new WebSocket(url, o.protocols ?? [], { headers, perMessageDeflate: false, ca: o.ca });
    const c = new RtClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        reject(new Error(`upgrade refused: ${res.statusCode}`));
      });
      ws.once('error', reject);
    });
  }

  /** The next unread frame; rejects after timeoutMs or when the socket closes first. */
  async next(timeoutMs = 10_000): Promise<RtFrame> {
    const deadline = Date.now() + timeoutMs;
    while (this.read >= this.frames.length) {
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error('socket closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no frame in time');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.frames[this.read++];
  }

  /** The next text event (fails on a binary frame). */
  async event(timeoutMs?: number): Promise<RtEvent> {
    const f = await this.next(timeoutMs);
    if (f.kind !== 'text') throw new Error('expected a text event, got a binary frame');
    return f.ev;
  }

  /** Reads events until one of `type` (inclusive); returns them all. */
  async until(type: string, timeoutMs?: number): Promise<RtEvent[]> {
    const out: RtEvent[] = [];
    for (;;) {
      const ev = await this.event(timeoutMs);
      out.push(ev);
      if (ev.type === type) return out;
    }
  }

  send(ev: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(ev));
  }
}

export interface RefusedUpgrade {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { error?: { code?: string; type?: string; message?: string } };
}

/** Opens an upgrade that is expected to be refused; resolves with the HTTP answer. */
export function refusedUpgrade(url: string, o: RtOptions = {}): Promise<RefusedUpgrade> {
  const headers = { ...(o.headers ?? {}) };
  if (o.key) headers.authorization = `Bearer ${o.key}`;
  const ws = new WebSocket(url, o.protocols ?? [], { headers, perMessageDeflate: false, ca: o.ca });
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('upgrade was accepted'));
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => {
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : {} });
      });
    });
    // After a refusal is resolved, the error from terminating the handshake is a no-op here.
    ws.on('error', reject);
  });
}
