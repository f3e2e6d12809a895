// Child side of the benchmark process protocol. Every measured process (simulated upstream, bare
// relay, Switchyard, Portkey) runs in its own process so its CPU and memory are its own; it
// announces itself with one `ready` message and answers numbered commands over the IPC channel.
// Built-in commands: `usage` (CPU µs, RSS, heap, open fds), `gc` (full GC first; needs
// --expose-gc), `exit` (runs the child's own stop first, so --cpu-prof profiles get written).
import { readdirSync } from 'node:fs';

export interface Usage {
  /** User + system CPU time of the whole process, in microseconds. */
  cpuUs: number;
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** Open file descriptors (sockets included). */
  fds: number;
}

export type CommandHandler = (arg: unknown) => unknown;

interface Request {
  id: number;
  cmd: string;
  arg?: unknown;
}

export function usage(): Usage {
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  let fds = -1;
  try {
    fds = readdirSync('/proc/self/fd').length;
  } catch {
    // Not Linux: the figure is only informative.
  }
  return { cpuUs: cpu.user + cpu.system, rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, arrayBuffers: mem.arrayBuffers, fds };
}

function fullGc(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return false;
  // Twice: the first pass runs finalizers that free more on the second.
  gc();
  gc();
  return true;
}

/**
 * Announces `info` to the parent and serves commands until the parent goes away. A child whose
 * parent died (crash, SIGKILL) exits at once, so no benchmark process outlives its driver.
 */
export function serveParent(info: Record<string, unknown>, handlers: Record<string, CommandHandler> = {}, stop?: () => Promise<void>): void {
  const send = process.send?.bind(process);
  if (!send) throw new Error('bench child started without an IPC channel (use the bench drivers)');
  const exit = async (): Promise<void> => {
    try {
      await stop?.();
    } finally {
      process.exit(0);
    }
  };
  process.on('disconnect', () => void exit());
  process.on('message', (m: Request) => {
    void (async () => {
      try {
        let value: unknown;
        if (m.cmd === 'usage') value = usage();
        else if (m.cmd === 'gc') value = { gc: fullGc(), ...usage() };
        else if (m.cmd === 'exit') {
          send({ id: m.id, ok: true, value: null });
          return void exit();
        } else {
          const h = handlers[m.cmd];
          if (!h) throw new Error(`unknown command ${m.cmd}`);
          value = await h(m.arg);
        }
        send({ id: m.id, ok: true, value });
      } catch (err) {
        send({ id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) });
      }
    })();
  });
  send({ type: 'ready', pid: process.pid, ...info });
}
