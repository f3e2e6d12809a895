// Child-process driver for the `openai` SDK's OpenAIRealtimeWS (CLIENTS.md §5.3). It runs in its
// own process because the SDK always dials wss:// and trusts only what the process was started
// with: NODE_EXTRA_CA_CERTS is read at startup, so the test sets it in this child's environment.
//
// Env: RT_BASE_URL (https://127.0.0.1:PORT/v1), RT_API_KEY, RT_MODEL.
// Stdout: one JSON line per event: {"open":true}, then {"type": …} per server event, then {"closed": code}.
// Exit 0 after response.done; 1 on an error; 2 on timeout.
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';

const baseURL = process.env.RT_BASE_URL;
const apiKey = process.env.RT_API_KEY;
const model = process.env.RT_MODEL ?? 'gpt-realtime';
if (!baseURL || !apiKey) {
  process.stderr.write('RT_BASE_URL and RT_API_KEY are required\n');
  process.exit(1);
}

const out = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
const timer = setTimeout(() => {
  out({ timeout: true });
  process.exit(2);
}, 15_000);

const rt = new OpenAIRealtimeWS({ model }, new OpenAI({ apiKey, baseURL }));
rt.on('error', (err) => {
  out({ error: err.message });
  process.exit(1);
});
rt.socket.on('open', () => {
  out({ open: true, url: rt.url.toString() });
  rt.send({ type: 'session.update', session: { type: 'realtime', instructions: 'Be brief.' } });
  rt.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Say hello' }] } });
  rt.send({ type: 'response.create' });
});
rt.on('event', (e) => {
  out({ type: e.type });
  if (e.type === 'response.done') rt.close({ code: 1000, reason: 'done' });
});
rt.socket.on('close', (code: number) => {
  out({ closed: code });
  clearTimeout(timer);
  process.exit(0);
});
