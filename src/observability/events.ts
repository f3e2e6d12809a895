// Typed events (DESIGN rule 7): the scheduler and sessions emit; metrics and logs subscribe.
// Emitting is a synchronous loop over listeners; listeners must not throw or block.

export type Layer = 'previous_response_id' | 'session_hash' | 'load_balance';
export type Transport = 'ws' | 'http';

export interface SelectEvent {
  type: 'select';
  layer: Layer;
  result: 'acquired' | 'wait' | 'error';
  durationMs: number;
  candidateCount: number;
  loadSkew: number;
  stickyPreviousHit: boolean;
  stickySessionHit: boolean;
}
export interface SwitchEvent { type: 'switch'; fromAccount: string }
export interface FallbackEvent { type: 'transport_fallback'; reason: string }
export interface TurnEvent {
  type: 'turn';
  account: string;
  transport: Transport;
  /** completed | failed | incomplete | cancelled | error | client_gone | upstream_error | refused */
  outcome: string;
  ttftMs: number | null;
}
export interface AccountStatsEvent { type: 'account_stats'; account: string; errorRate: number; ttftMs: number | null }
export interface CooldownEvent { type: 'cooldown'; account: string; reason: string; active: boolean }
export interface WsMessageEvent { type: 'ws_message'; direction: 'client_in' | 'client_out'; count: number }
export interface GaugeEvent {
  type: 'gauge';
  name: 'ws_sessions_active' | 'upstream_ws_connections' | 'realtime_sessions_active';
  delta: number;
}
export interface StoreErrorEvent { type: 'store_error'; op: string }
/**
 * Realtime relay traffic (SPEC §7), batched by the emitter. `client_in` = frames the client sent
 * (spliced upstream), `client_out` = frames delivered to the client; bytes are payload bytes.
 */
export interface RealtimeTrafficEvent {
  type: 'realtime_traffic';
  direction: 'client_in' | 'client_out';
  frames: number;
  bytes: number;
}

export type RelayEvent =
  | SelectEvent
  | SwitchEvent
  | FallbackEvent
  | TurnEvent
  | AccountStatsEvent
  | CooldownEvent
  | WsMessageEvent
  | GaugeEvent
  | StoreErrorEvent
  | RealtimeTrafficEvent;

export type Listener = (e: RelayEvent) => void;

export class EventBus {
  private listeners: Listener[] = [];
  on(l: Listener): () => void {
    this.listeners.push(l);
    return () => {
      this.listeners = this.listeners.filter((x) => x !== l);
    };
  }
  emit(e: RelayEvent): void {
    for (const l of this.listeners) l(e);
  }
}
