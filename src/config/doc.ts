// Renders docs/CONFIG.md from the config schema, so the reference cannot drift from the code:
// scripts/gen-config-doc.ts writes it, test/unit/config-doc.test.ts fails when it is stale.
// Pure: returns the Markdown text.
import { z } from 'zod';
import { configSchema } from './schema.js';

interface Node {
  type?: string;
  typeLabel?: string;
  description?: string;
  default?: unknown;
  properties?: Record<string, Node>;
  required?: string[];
  items?: Node;
  oneOf?: Node[];
  anyOf?: Node[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  minItems?: number;
  pattern?: string;
}

interface Row {
  path: string;
  type: string;
  default: string;
  description: string;
}

const PREAMBLE = `# Config reference

<!-- Generated from src/config/schema.ts by \`npx tsx scripts/gen-config-doc.ts\`; do not edit by hand.
     test/unit/config-doc.test.ts fails when this file is out of date. -->

Switchyard reads one YAML file (JSON is valid YAML): \`switchyard --config FILE\`, or the file named
by \`SWITCHYARD_CONFIG\`. A commented example: [examples/switchyard.example.yaml](../examples/switchyard.example.yaml).
Check a file without starting the relay: \`npx tsx scripts/validate-config.ts --config FILE\`.

- **Validation.** Every field is checked at start (and on \`SIGHUP\` / \`POST /admin/reload\`). All
  problems are reported at once, one per line, as \`path: message\` in document order, e.g.
  \`accounts[2].concurrency: must be a positive integer\`; the process then exits with status 2
  without listening (a reload keeps the old config). Unknown fields are errors.
- **Secrets.** \`accounts[].apiKey\`, \`clients[].key\` and \`adminKey\` may be written as \`env:NAME\`:
  the value of environment variable \`NAME\` is used, and a variable that is not set (or is empty)
  is an error. \`env:NAME\` is not resolved in any other field. Secret values never appear in
  error messages or logs.
- **Checks across fields.** Account ids are unique; client keys are unique (a \`key\` and a
  \`keySha256\` of the same key count as the same); \`adminKey\` differs from every client key;
  every client's \`group\` has at least one account (accounts in a group no client uses are
  allowed, for staging); \`scheduler.weights\` have a positive sum;
  \`leases.renewIntervalMs\` < \`leases.ttlMs\`.
- **Defaults.** Every optional field has the default below; the validated config is frozen.
  "required" marks fields without a default; "—" marks optional fields that may be left out.
`;

export function renderConfigDoc(): string {
  const root = z.toJSONSchema(configSchema, { io: 'input' }) as Node;
  const sections: string[] = [PREAMBLE];
  const scalars: Row[] = [];
  for (const [key, node] of Object.entries(root.properties ?? {})) {
    const rows = rowsFor(key, node, (root.required ?? []).includes(key), '');
    if (rows.length === 1 && node.type !== 'object') scalars.push(...rows);
    else sections.push(`## \`${key}\`\n\n${node.description ?? ''}\n\n${table(rows)}`);
  }
  sections.push(`## Other top-level fields\n\n${table(scalars)}`);
  return sections.join('\n');
}

function rowsFor(path: string, node: Node, required: boolean, condition: string): Row[] {
  const rows: Row[] = [
    {
      path,
      type: typeOf(node),
      default: defaultOf(node, required),
      description: condition + (node.description ?? variants(node).map((v) => v.description).filter(Boolean).join(' ')),
    },
  ];
  const variantList = variants(node);
  if (variantList.length > 1) {
    // A tagged union (store): list each variant's own fields under "kind: X".
    const seen = new Set<string>();
    for (const variant of variantList) {
      const tag = variant.properties?.kind?.const;
      const when = tag === undefined ? '' : `(kind: ${String(tag)}) `;
      for (const [key, child] of Object.entries(variant.properties ?? {})) {
        const childPath = `${path}.${key}`;
        if (key === 'kind') {
          if (seen.has(childPath)) continue;
          seen.add(childPath);
          const tags = variantList.map((v) => v.properties?.kind?.const).filter((t) => t !== undefined);
          rows.push({
            path: childPath,
            type: tags.map((t) => `\`${String(t)}\``).join(' or '),
            default: 'required',
            description: variantList.map((v) => `\`${String(v.properties?.kind?.const)}\`: ${v.properties?.kind?.description ?? ''}`).join(' '),
          });
          continue;
        }
        rows.push(...rowsFor(childPath, child, (variant.required ?? []).includes(key), when));
      }
    }
    return rows;
  }
  if (node.type === 'object' && node.properties) {
    for (const [key, child] of Object.entries(node.properties)) {
      rows.push(...rowsFor(`${path}.${key}`, child, (node.required ?? []).includes(key), condition));
    }
  }
  if (node.type === 'array' && node.items?.type === 'object' && node.items.properties) {
    for (const [key, child] of Object.entries(node.items.properties)) {
      rows.push(...rowsFor(`${path}[].${key}`, child, (node.items.required ?? []).includes(key), condition));
    }
  }
  return rows;
}

function variants(node: Node): Node[] {
  return node.oneOf ?? node.anyOf ?? [node];
}

function typeOf(node: Node): string {
  if (node.typeLabel) return node.typeLabel;
  if (node.const !== undefined) return `\`${String(node.const)}\``;
  if (node.enum) return `one of ${node.enum.map((v) => `\`${String(v)}\``).join(', ')}`;
  if (variants(node).length > 1) return 'mapping';
  switch (node.type) {
    case 'integer':
    case 'number':
      return numberType(node);
    case 'string':
      if (node.pattern) return `string matching \`${node.pattern}\``;
      return node.minLength !== undefined && node.minLength > 0 ? 'non-empty string' : 'string';
    case 'boolean':
      return 'boolean';
    case 'array':
      return `${node.minItems ? 'non-empty ' : ''}list of ${node.items ? plural(typeOf(node.items)) : 'values'}`;
    case 'object':
      return 'mapping';
    default:
      return node.type ?? 'any';
  }
}

function numberType(node: Node): string {
  const base = node.type === 'integer' ? 'integer' : 'number';
  // The schema's integers are bounded to safe integers; that bound says nothing to an operator.
  const bound = (n: number | undefined) => (n === undefined || Math.abs(n) >= Number.MAX_SAFE_INTEGER ? undefined : n);
  const min = bound(node.minimum);
  const max = bound(node.maximum);
  const exclusiveMin = bound(node.exclusiveMinimum);
  if (min !== undefined && max !== undefined) return `${base} ${min}–${max}`;
  if (exclusiveMin !== undefined) return `${base} > ${exclusiveMin}`;
  if (min !== undefined) return `${base} ≥ ${min}`;
  if (max !== undefined) return `${base} ≤ ${max}`;
  return base;
}

function plural(type: string): string {
  if (type === 'mapping') return 'mappings';
  return type.replace(/^(non-empty )?string/, (m) => `${m}s`);
}

function defaultOf(node: Node, required: boolean): string {
  if (node.default === undefined) return required ? 'required' : '—';
  const d = node.default;
  if (typeof d === 'object' && d !== null && Object.keys(d).length === 0) return '(defaults below)';
  return `\`${formatValue(d)}\``;
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return `[${v.map(formatValue).join(', ')}]`;
  if (typeof v === 'object' && v !== null) {
    return `{ ${Object.entries(v).map(([k, x]) => `${k}: ${formatValue(x)}`).join(', ')} }`;
  }
  return String(v);
}

function table(rows: Row[]): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = ['| field | type | default | meaning |', '|---|---|---|---|'];
  for (const r of rows) lines.push(`| \`${r.path}\` | ${cell(r.type)} | ${cell(r.default)} | ${cell(r.description)} |`);
  return `${lines.join('\n')}\n`;
}
