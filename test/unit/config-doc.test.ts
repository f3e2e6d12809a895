import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderConfigDoc } from '../../src/config/doc.js';

const docPath = new URL('../../docs/CONFIG.md', import.meta.url);

describe('docs/CONFIG.md', () => {
  it('is what the schema generates (run npx tsx scripts/gen-config-doc.ts after changing the schema)', () => {
    expect(readFileSync(docPath, 'utf8')).toBe(renderConfigDoc());
  });

  it('describes every field with a type, a default column and a meaning', () => {
    const rows = renderConfigDoc()
      .split('\n')
      .filter((line) => line.startsWith('| `'));
    expect(rows.length).toBeGreaterThan(60);
    for (const row of rows) {
      const cells = row.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
      expect(cells, row).toHaveLength(4);
      for (const cell of cells) expect(cell, row).not.toBe('');
    }
  });

  it('lists the fields the contract fixes, with their defaults', () => {
    const doc = renderConfigDoc();
    expect(doc).toContain('| `accounts[].concurrency` | integer > 0 | `4` |');
    expect(doc).toContain('| `scheduler.weights.queue` | number ≥ 0 | `0.7` |');
    expect(doc).toContain('| `scheduler.fallbackWait.maxWaiting` | integer ≥ 0 | `100` |');
    expect(doc).toContain('| `store` | mapping | `{ kind: memory }` |');
    expect(doc).toContain('| `accounts[].apiKey` | non-empty string | required |');
  });
});
