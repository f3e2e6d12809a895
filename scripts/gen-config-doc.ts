// Regenerates docs/CONFIG.md from the config schema:
//   npx tsx scripts/gen-config-doc.ts           write the file
//   npx tsx scripts/gen-config-doc.ts --check   exit 1 when the file is out of date
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderConfigDoc } from '../src/config/doc.js';

const target = fileURLToPath(new URL('../docs/CONFIG.md', import.meta.url));
const text = renderConfigDoc();

if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    // A missing file is simply out of date.
  }
  if (current !== text) {
    process.stderr.write('docs/CONFIG.md is out of date: run npx tsx scripts/gen-config-doc.ts\n');
    process.exit(1);
  }
  process.stdout.write('docs/CONFIG.md is up to date\n');
} else {
  writeFileSync(target, text);
  process.stdout.write(`wrote ${target}\n`);
}
