import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const script = join(root, '.ci/lint-dockerfile.sh');
const realDockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'sy-dockerfile-lint-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let seq = 0;
function lint(text: string, dockerignore?: string): { status: number | null; out: string } {
  const sub = join(dir, String(seq++));
  mkdirSync(sub, { recursive: true });
  const file = join(sub, 'Dockerfile');
  writeFileSync(file, text);
  if (dockerignore !== undefined) writeFileSync(join(sub, '.dockerignore'), dockerignore);
  const r = spawnSync('bash', [script, file], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** The real Dockerfile with one line-level change, so each case breaks exactly one rule. */
function mutate(find: RegExp, replace: string): string {
  expect(realDockerfile).toMatch(find);
  return realDockerfile.replace(find, replace);
}

const GOOD_MINIMAL = [
  'FROM node:20.20.2-bookworm-slim AS build',
  'WORKDIR /app',
  'RUN npm ci && npm run build',
  'FROM node:20.20.2-bookworm-slim',
  'WORKDIR /app',
  'RUN npm ci --omit=dev',
  'COPY --from=build /app/dist ./dist',
  'USER node',
  'EXPOSE 8080',
  'HEALTHCHECK CMD node -e "process.exit(0)"',
];

describe('.ci/lint-dockerfile.sh', () => {
  it('passes the repository Dockerfile', () => {
    const r = spawnSync('bash', [script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/ok/);
  });

  it('passes a minimal correct multi-stage file and a pruned node_modules copy', () => {
    expect(lint(GOOD_MINIMAL.join('\n')).status).toBe(0);
    const pruned = [
      'ARG NODE_VERSION=20.20.2',
      'FROM node:${NODE_VERSION}-bookworm-slim AS build',
      'WORKDIR /app',
      'RUN npm ci \\',
      '  && npm run build \\',
      '  && npm prune --omit=dev',
      'FROM node:${NODE_VERSION}-bookworm-slim',
      'COPY --from=build /app/node_modules ./node_modules',
      'USER node:node',
      'EXPOSE 8080',
      'HEALTHCHECK CMD ["node", "-e", "0"]',
    ];
    const r = lint(pruned.join('\n'));
    expect(r.out).toMatch(/ok/);
    expect(r.status).toBe(0);
  });

  it.each([
    ['a latest tag', /node:20\.20\.2-bookworm-slim AS build/, 'node:latest AS build', /uses 'latest'/],
    ['no tag at all', /node:20\.20\.2-bookworm-slim AS runtime/, 'node AS runtime', /has no tag/],
    ['a bare major version', /node:20\.20\.2-bookworm-slim AS runtime/, 'node:20-bookworm-slim AS runtime', /not pinned to an exact version/],
    ['a major.minor version', /node:20\.20\.2-bookworm-slim AS build/, 'node:20.20 AS build', /not pinned to an exact version/],
    ['no USER in the final stage', /^USER node\n/m, '', /has no USER/],
    ['USER root in the final stage', /^USER node$/m, 'USER root', /runs as root/],
    ['USER 0 in the final stage', /^USER node$/m, 'USER 0:0', /runs as root/],
    ['no HEALTHCHECK', /^HEALTHCHECK[^]*?\]\n/m, '', /no HEALTHCHECK/],
    ['no EXPOSE', /^EXPOSE 8080\n/m, '', /no EXPOSE/],
    ['dev dependencies installed in the final stage', /npm ci --omit=dev/, 'npm ci', /installs dev dependencies/],
    [
      'node_modules copied from the build stage',
      /^COPY --from=build \/app\/dist\/src \.\/dist\/src$/m,
      'COPY --from=build /app/dist/src ./dist/src\nCOPY --from=build /app/node_modules ./node_modules',
      /copies '\/app\/node_modules' from stage 'build'/,
    ],
    ['the whole build stage copied', /^COPY --from=build \/app\/dist\/src \.\/dist\/src$/m, 'COPY --from=build /app /app', /copies '\/app' from stage 'build'/],
  ])('fails on %s', (_name, find, replace, message) => {
    const r = lint(mutate(find, replace));
    expect(r.status).toBe(1);
    expect(r.out).toMatch(message);
    expect(r.out).toMatch(/Dockerfile:\d+: /);
  });

  it('fails when the final stage has no production dependencies at all', () => {
    const r = lint(GOOD_MINIMAL.filter((l) => l !== 'RUN npm ci --omit=dev').join('\n'));
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/installs no production dependencies/);
  });

  it('fails on HEALTHCHECK NONE and on a base image variable without a default', () => {
    const none = lint(GOOD_MINIMAL.map((l) => (l.startsWith('HEALTHCHECK') ? 'HEALTHCHECK NONE' : l)).join('\n'));
    expect(none.status).toBe(1);
    expect(none.out).toMatch(/disables the HEALTHCHECK/);
    const unresolved = lint(GOOD_MINIMAL.map((l, i) => (i === 0 ? 'FROM node:${NODE} AS build' : l)).join('\n'));
    expect(unresolved.status).toBe(1);
    expect(unresolved.out).toMatch(/variable without a default/);
  });

  it('fails when the whole build context is copied without .dockerignore excluding node_modules', () => {
    const text = [...GOOD_MINIMAL, 'COPY . .'].join('\n');
    expect(lint(text, 'dist\n').out).toMatch(/does not exclude node_modules/);
    expect(lint(text, 'node_modules\ndist\n').status).toBe(0);
  });

  it('reports every problem at once', () => {
    const r = lint('FROM node\nRUN npm install\n');
    expect(r.status).toBe(1);
    for (const m of [/no tag/, /no USER/, /no HEALTHCHECK/, /no EXPOSE/, /installs dev dependencies/]) expect(r.out).toMatch(m);
  });

  it('exits 2 on a missing file', () => {
    expect(spawnSync('bash', [script, join(dir, 'nope')], { encoding: 'utf8' }).status).toBe(2);
  });
});
