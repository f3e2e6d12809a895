// Pure: the HTTP bridge's memory of a session (SPEC §6). Over HTTP/SSE there is no upstream
// socket holding a `store:false` chain, so the bridge keeps each response's input and output
// items and replays the whole chain when a turn names its `previous_response_id`. Bounded in
// bytes: past the bound the oldest responses are forgotten, and a chain through them is gone.

export type Item = Record<string, unknown>;

export interface TranscriptEntry {
  id: string;
  /** The response this one chained from (null = a fresh conversation). */
  parent: string | null;
  /** The turn's own new input items (not the replayed history). */
  input: Item[];
  /** Output items as `response.output_item.done` delivered them. */
  output: Item[];
  /** Minted by the relay (a warm-up answered locally): no upstream knows this id. */
  local: boolean;
}

const isItem = (v: unknown): v is Item => v !== null && typeof v === 'object' && !Array.isArray(v);

/** `input` as an item list: a string is one user message, as the API reads it. */
export function normaliseInput(input: unknown): Item[] {
  if (typeof input === 'string') return [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: input }] }];
  return Array.isArray(input) ? input.filter(isItem) : [];
}

/**
 * An item as it may be replayed in a stateless (`store:false`) request, the way Codex sends its
 * own HTTP history: item ids dropped (nothing was persisted under them, and the API refuses
 * references to unpersisted items), reasoning kept only when it carries its encrypted content.
 * Returns null for an item that must be left out.
 */
export function replayItem(item: Item): Item | null {
  if (item.type === 'item_reference') return item;
  if (item.type === 'reasoning' && typeof item.encrypted_content !== 'string') return null;
  if (!('id' in item)) return item;
  const { id: _id, ...rest } = item;
  return rest;
}

export function replayItems(items: readonly Item[]): Item[] {
  const out: Item[] = [];
  for (const i of items) {
    const r = replayItem(i);
    if (r !== null) out.push(r);
  }
  return out;
}

function sizeOf(e: TranscriptEntry): number {
  return JSON.stringify(e.input).length + JSON.stringify(e.output).length + e.id.length + 64;
}

export class Transcript {
  private readonly entries = new Map<string, TranscriptEntry & { bytes: number }>();
  private total = 0;

  /** `maxBytes` is read on every add, so a config reload applies to live sessions. */
  constructor(private readonly maxBytes: () => number) {}

  has(id: string): boolean {
    return this.entries.has(id);
  }

  get bytes(): number {
    return this.total;
  }

  get size(): number {
    return this.entries.size;
  }

  add(entry: TranscriptEntry): void {
    const old = this.entries.get(entry.id);
    if (old) {
      this.total -= old.bytes;
      this.entries.delete(entry.id);
    }
    const bytes = sizeOf(entry);
    this.entries.set(entry.id, { ...entry, bytes });
    this.total += bytes;
    const max = this.maxBytes();
    // Oldest first (Map keeps insertion order); the newest entry always stays.
    for (const [id, e] of this.entries) {
      if (this.total <= max || id === entry.id) break;
      this.entries.delete(id);
      this.total -= e.bytes;
    }
  }

  /** The chain ending at `id`, oldest first; null when a link is missing (forgotten or never seen). */
  chain(id: string): TranscriptEntry[] | null {
    const out: TranscriptEntry[] = [];
    let cur: string | null = id;
    while (cur !== null) {
      const e = this.entries.get(cur);
      // A cycle cannot come from real ids, but the walk must end whatever the input.
      if (!e || out.length > this.entries.size) return null;
      out.push(e);
      cur = e.parent;
    }
    return out.reverse();
  }

  /** Every item of the chain ending at `id` (inputs, then outputs, per response), or null. */
  history(id: string): Item[] | null {
    const chain = this.chain(id);
    if (!chain) return null;
    const items: Item[] = [];
    for (const e of chain) items.push(...e.input, ...e.output);
    return items;
  }

  /** True when the chain ending at `id` has a relay-minted link that no upstream could resolve. */
  hasLocalLink(id: string): boolean {
    let cur: string | null = id;
    for (let n = 0; cur !== null && n <= this.entries.size; n++) {
      const e = this.entries.get(cur);
      if (!e) return false;
      if (e.local) return true;
      cur = e.parent;
    }
    return false;
  }
}
