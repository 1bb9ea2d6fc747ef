/**
 * WebSocket relay with `ws`: the upstream handshake happens first (with the injected credential and
 * the caller's subprotocols); only when it opens does the caller get its 101, so an upstream
 * rejection (401, 429…) reaches the caller as that very HTTP answer. Frames keep their type, close
 * codes and reasons cross both ways, and a slow reader pauses the fast side instead of growing memory.
 * On TTS sessions every client frame is checked against the session's model before it is relayed
 * (core/decision/tts-frame.ts): a refused frame never reaches the provider, the caller gets the
 * provider's error-frame shape and close code 1008.
 *
 * Every open session is in a registry: on each snapshot swap it is decided again
 * (core/decision/recheck.ts) with the identity it was admitted with, and it ends on time when its
 * token expires or its maximum lifetime runs out, however active it is. An ended session gets, on
 * TTS, the provider's error frame; on both kinds, close 1008 with a reason; its span says why.
 */
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import { isWebSocketHandshakeHeader, relayRawHeaders } from '../../core/exchange/headers.ts';
import { startIdleTimer } from './idle-timer.ts';
import type { LocalResponse } from '../../core/exchange/responses.ts';
import { gatewayError } from '../../core/exchange/responses.ts';
import type { GuardedObserver } from '../../core/exchange/safe-observer.ts';
import type { UpstreamPlan } from '../../core/exchange/upstream-plan.ts';
import type { Snapshot } from '../../core/config/snapshot.ts';
import type { Allow } from '../../core/decision/types.ts';
import { FRAME_REFUSED_CLOSE_CODE, ttsErrorFrame, ttsFrameGuard, type TtsFrameGuard } from '../../core/decision/tts-frame.ts';
import type { SynthesisGate } from '../../core/limits/synthesis.ts';
import { sessionCloseReason, SESSION_ENDED_CLOSE_CODE, type SessionEndReason } from '../../core/decision/recheck.ts';
import type { ExchangeEndSide } from '../../core/exchange/exchange-observer.ts';
import {
  admissionOf,
  createSessionRegistry,
  DEFAULT_MAX_SESSION_MS,
  DEFAULT_SESSION_TOKEN_GRACE_MS,
  type SessionAdmission,
  type SessionRegistry,
} from './sessions.ts';

/** Pause the reading side above this many bytes queued on the writing side… */
export const DEFAULT_HIGH_WATER_BYTES = 1 << 20;
/** …and resume once the queue drains below this. */
export const DEFAULT_LOW_WATER_BYTES = 256 << 10;
/** The provider refuses messages over 16 MiB; so does the edge, before buffering more. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 16 << 20;
export { DEFAULT_MAX_SESSION_MS, DEFAULT_SESSION_TOKEN_GRACE_MS };
/** Largest upstream rejection body relayed to the caller. */
const MAX_REJECTION_BODY = 64 << 10;

export interface WebSocketProxyOptions {
  readonly logger: Logger;
  readonly highWaterBytes?: number;
  readonly lowWaterBytes?: number;
  /** Largest message either leg accepts; larger closes that leg with 1009. Default 16 MiB. */
  readonly maxPayloadBytes?: number;
  /** Longest a session may last, however active; default {@link DEFAULT_MAX_SESSION_MS}. */
  readonly maxSessionMs?: number;
  /** How long a session may outlive its token; default {@link DEFAULT_SESSION_TOKEN_GRACE_MS}. */
  readonly sessionTokenGraceMs?: number;
  /**
   * The edge's registry of governed sessions (shared with SSE streams); when given, it owns the
   * time bounds and `maxSessionMs` / `sessionTokenGraceMs` here are ignored. Default: one of its own.
   */
  readonly sessions?: SessionRegistry;
}

export interface WebSocketExchange {
  readonly req: IncomingMessage;
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly plan: UpstreamPlan;
  readonly observer: GuardedObserver;
  /** The allow the session was opened with: on TTS sessions client frames are checked against it. */
  readonly decision: Allow;
  /** The exchange's snapshot, whose model names (aliases) the frame check resolves. */
  readonly snapshot: Snapshot;
  /**
   * Envoy's route `timeout` (0 on every WebSocket route, `timeout: 0s`). When set, it bounds the
   * upstream opening handshake; a session, once open, is bounded only by {@link idleTimeoutMs}.
   */
  readonly routeTimeoutMs: number;
  /**
   * After the handshake: close both legs with 1001 when no frame (data, ping or pong) crossed in
   * either direction for this long (envoy.yaml's route `idle_timeout`); 0 disables it.
   */
  readonly idleTimeoutMs: number;
  /** TTS sessions: each synthesis takes a unit of the limits (edge/limits.ts) before it is relayed. */
  readonly frameGate?: SynthesisGate;
}

export interface WebSocketProxy {
  proxy(x: WebSocketExchange): void;
  /**
   * Decides every open session again against `next` (call it on each snapshot swap): a session no
   * longer entitled ends at once with 1008. Resolves nothing; returns how many it ended.
   */
  recheck(next: Snapshot): number;
  /** Ends every live session (code 1001, going away), terminating laggards after a second. */
  close(): Promise<void>;
}

/**
 * RFC 6455 §7.4.1: 1005 and 1006 are never sent on the wire, and 1004/1015 or out-of-range codes
 * are not valid in a close frame; map them to what a peer may receive.
 */
export function sendableCloseCode(code: number): number {
  if (code === 1005) return 1000;
  if (code === 1006) return 1011;
  const valid = (code >= 1000 && code <= 1014 && code !== 1004) || (code >= 3000 && code <= 4999);
  return valid ? code : 1011;
}

/** Writes a plain HTTP/1.1 answer on a socket that asked to upgrade, then closes it. */
export function writeRawResponse(socket: Duplex, r: LocalResponse | { status: number; rawHeaders: string[]; body: Buffer }): void {
  if (socket.destroyed) return;
  const body = Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body);
  const lines = [`HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? ''}`];
  const raw = 'rawHeaders' in r ? r.rawHeaders : Object.entries(r.headers).flat();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name === 'content-length' || name === 'connection') continue;
    lines.push(`${raw[i]}: ${raw[i + 1]}`);
  }
  lines.push(`content-length: ${body.length}`, 'connection: close', '', '');
  socket.end(Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), body]));
  socket.once('finish', () => socket.destroy());
}

function toWebSocketUrl(url: URL): string {
  const u = new URL(url.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

/** A JWT (three base64url segments) or a `vg_` service key offered as a subprotocol: a credential. */
const JWT_SHAPE = /^(?:[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|vg_[A-Za-z0-9_-]{43})$/;
/** Markers browsers put before a token offered as a subprotocol (`bearer, <jwt>`). */
const TOKEN_MARKERS = new Set(['bearer', 'access_token', 'authorization']);

/**
 * The marker a browser offered with its token (`bearer`), echoed back when the provider selected
 * nothing: browsers fail a handshake that offered subprotocols and got none.
 */
function tokenMarker(header: string | undefined): string | false {
  const offered = (header ?? '').split(',').map((p) => p.trim());
  if (!offered.some((p) => JWT_SHAPE.test(p))) return false;
  return offered.find((p) => TOKEN_MARKERS.has(p.toLowerCase())) ?? false;
}

/**
 * The caller's subprotocols as offered upstream: anything shaped like a JWT (three base64url
 * segments) or a `vg_` service key is a credential smuggled past header-less browser APIs, not a protocol, and never
 * reaches the provider; nor does the marker naming it.
 */
export function upstreamProtocols(header: string | undefined): string[] {
  if (!header) return [];
  const offered = header
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  const hasToken = offered.some((p) => JWT_SHAPE.test(p));
  return offered.filter((p) => !JWT_SHAPE.test(p) && !(hasToken && TOKEN_MARKERS.has(p.toLowerCase())));
}

function asBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** `send` options, shared by every frame. */
const BINARY = Object.freeze({ binary: true });
const TEXT = Object.freeze({ binary: false });

/** Module-level so that the listener left on a caller's socket closes over nothing. */
function ignoreError(): void {}

/**
 * Limits on an open TTS socket, after the model check: a synthesis that gets no unit is answered
 * with the provider's error frame and never relayed; the socket stays open, as the provider leaves
 * it when over its own limit.
 */
function limitedFrames(
  admitted: FrameAdmission,
  gate: SynthesisGate | undefined,
  client: WebSocket,
): FrameAdmission {
  if (!gate) return admitted;
  return (data, isBinary) => {
    const ok = admitted(data, isBinary);
    if (ok === false) return false;
    // The model guard's parse of the frame, when it read one: the gate reuses it.
    const verdict = gate.client(data, isBinary, ok === true ? undefined : ok);
    if (verdict.kind === 'forward') return true;
    if (client.readyState === WebSocket.OPEN) client.send(verdict.frame);
    return false;
  };
}

/**
 * Whether a frame may be relayed: false when refused; otherwise true, or the frame's JSON object
 * when the check parsed it (so a later reader of the frame does not parse it again).
 */
type FrameAdmission = (data: Buffer, isBinary: boolean) => boolean | Record<string, unknown>;

/** One open session: what shutdown (every session closed with 1001) needs. */
interface LiveSession {
  readonly client: WebSocket;
  readonly upstream: WebSocket;
  /** Marks the session as ended by the gateway (shutdown), before its legs are closed. */
  readonly goingAway: () => void;
}

/** What the caller's 101 must carry over from the upstream's 101. */
interface PendingHandshake {
  readonly protocol: string | false;
  readonly headers: readonly string[];
}

export function createWebSocketProxy(opts: WebSocketProxyOptions): WebSocketProxy {
  const high = opts.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
  const low = opts.lowWaterBytes ?? DEFAULT_LOW_WATER_BYTES;
  const maxPayload = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  const pending = new WeakMap<IncomingMessage, PendingHandshake>();
  const live = new Set<LiveSession>();
  const sessions =
    opts.sessions ??
    createSessionRegistry({
      ...(opts.maxSessionMs !== undefined ? { maxSessionMs: opts.maxSessionMs } : {}),
      ...(opts.sessionTokenGraceMs !== undefined ? { sessionTokenGraceMs: opts.sessionTokenGraceMs } : {}),
    });

  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    // Frames pass through untouched; compressing on one leg only would cost CPU for nothing.
    perMessageDeflate: false,
    maxPayload,
    handleProtocols: (_offered, request) => pending.get(request)?.protocol ?? false,
  });
  wss.on('headers', (headers, request) => {
    const extra = pending.get(request)?.headers ?? [];
    for (let i = 0; i + 1 < extra.length; i += 2) headers.push(`${extra[i]}: ${extra[i + 1]}`);
  });

  /**
   * Relays messages one way; pauses `from` while `to` has more than `high` bytes queued. Every frame
   * `from` delivers, control frames included, is `activity`: Envoy's idle timer counts any bytes on
   * the stream, so a keep-alive ping keeps a session open there too.
   */
  function relay(
    from: WebSocket,
    to: WebSocket,
    report: (data: Buffer, isBinary: boolean) => void,
    activity: () => void,
    admitted: FrameAdmission = () => true,
  ): void {
    // One callback for every frame of this direction (it reads no per-frame state): no closure per
    // frame, and Node batches the after-write ticks of equal callbacks.
    const sent = (): void => {
      if (from.isPaused && to.bufferedAmount <= low) from.resume();
    };
    from.on('message', (data, isBinary) => {
      activity();
      const buf = asBuffer(data);
      // Checked before it is reported: a refused frame is neither relayed nor metered.
      if (admitted(buf, isBinary) === false) return;
      report(buf, isBinary);
      if (to.readyState !== WebSocket.OPEN) return;
      to.send(buf, isBinary ? BINARY : TEXT, sent);
      if (to.bufferedAmount > high && !from.isPaused) from.pause();
    });
    from.on('ping', (data) => {
      activity();
      if (to.readyState === WebSocket.OPEN) to.ping(data);
    });
    from.on('pong', activity);
  }

  /**
   * Takes only what a live session needs: every closure made here lives as long as the session, and
   * a V8 closure keeps its whole enclosing scope, so the handshake's request, plan and timer must not
   * be in reach (they were a sizeable part of an idle session's memory).
   */
  function bridge(
    observer: GuardedObserver,
    client: WebSocket,
    upstream: WebSocket,
    idleTimeoutMs: number,
    guard: TtsFrameGuard | undefined,
    admission: SessionAdmission,
    gate?: SynthesisGate,
  ): void {
    /**
     * Who ended the session (the span's `endedBy`): the gateway or policy when it acted first,
     * otherwise the leg whose close arrived first.
     */
    let endedBy: ExchangeEndSide | undefined;
    const session: LiveSession = { client, upstream, goingAway: () => void (endedBy ??= 'gateway') };
    live.add(session);
    let codeToClient: number | undefined;
    let clientClosed = false;
    let upstreamClosed = false;
    let idledOut = false;
    let upstreamTooBig = false;
    const idle = startIdleTimer(idleTimeoutMs, () => {
      idledOut = true;
      endedBy ??= 'gateway';
      codeToClient = 1001;
      if (client.readyState === WebSocket.OPEN) client.close(1001, 'idle timeout');
      if (upstream.readyState === WebSocket.OPEN) upstream.close(1001, 'idle timeout');
    });
    let policyEnd: SessionEndReason | undefined;
    // Assigned at the end of bridge, before any event can call finish.
    let governed: { release(): void } | undefined;
    const finish = (clientCode: number) => {
      if (!clientClosed || !upstreamClosed) return;
      idle.stop();
      governed?.release();
      live.delete(session);
      const error = policyEnd ?? (idledOut ? 'idle_timeout' : undefined);
      observer.end({ status: 101, closeCode: codeToClient ?? clientCode, ...(error ? { error } : {}), ...(endedBy ? { endedBy } : {}) });
    };
    let lastClientCode = 1005;
    let refused = false;
    /**
     * The first refused frame ends the session: the caller learns why in the provider's error
     * shape and gets 1008; the upstream is closed at once, so whatever the caller still sends
     * before its closing handshake completes is dropped too.
     */
    const admitted = (data: Buffer, isBinary: boolean): boolean | Record<string, unknown> => {
      if (refused) return false;
      if (!guard) return true;
      const { verdict, message } = guard.inspect(data, isBinary);
      if (verdict.kind === 'forward') return message ?? true;
      refused = true;
      endedBy ??= 'policy';
      codeToClient = FRAME_REFUSED_CLOSE_CODE;
      opts.logger.info({ reason: verdict.reason, model: guard.model }, 'tts websocket frame refused');
      if (client.readyState === WebSocket.OPEN) {
        client.send(ttsErrorFrame(verdict.message));
        client.close(FRAME_REFUSED_CLOSE_CODE, 'frame refused by gateway policy');
      }
      if (upstream.readyState === WebSocket.OPEN) upstream.close(1000, 'session ended by the gateway');
      return false;
    };

    /**
     * Ends a session its admission no longer covers (revoked, expired, too long): the caller learns
     * why (TTS: the provider's error frame) and gets 1008; the upstream is closed at once and what
     * the caller sends meanwhile is dropped (`refused`), so the provider receives nothing more.
     * What was relayed until now is metered and billed as usual (the span's status stays 101).
     */
    const endOnPolicy = (reason: SessionEndReason, message: string): boolean => {
      if (refused || client.readyState !== WebSocket.OPEN) return false;
      refused = true;
      policyEnd = reason;
      endedBy ??= 'policy';
      codeToClient = SESSION_ENDED_CLOSE_CODE;
      opts.logger.info({ reason, user: admission.metadata.user, model: admission.metadata.model }, 'websocket session ended by the gateway');
      if (guard) client.send(ttsErrorFrame(message));
      client.close(SESSION_ENDED_CLOSE_CODE, sessionCloseReason(reason));
      if (upstream.readyState === WebSocket.OPEN) upstream.close(1000, 'session ended by the gateway');
      return true;
    };

    relay(client, upstream, (d, b) => observer.clientMessage(d, b), idle.touch, limitedFrames(admitted, gate, client));
    relay(upstream, client, (d, b) => (gate?.upstream(d, b), observer.upstreamMessage(d, b)), idle.touch);

    client.on('close', (code, reason) => {
      clientClosed = true;
      endedBy ??= 'client';
      lastClientCode = code;
      if (upstream.readyState === WebSocket.OPEN) upstream.close(sendableCloseCode(code), reason);
      else if (upstream.readyState === WebSocket.CONNECTING) upstream.terminate();
      upstream.resume();
      finish(code);
    });
    upstream.on('close', (code, reason) => {
      upstreamClosed = true;
      endedBy ??= 'upstream';
      if (client.readyState === WebSocket.OPEN) {
        // ws closed the upstream leg itself for an oversized message: the caller learns 1009 too.
        codeToClient = upstreamTooBig ? 1009 : sendableCloseCode(code);
        client.close(codeToClient, reason);
      }
      client.resume();
      finish(lastClientCode);
    });
    client.on('error', (err) => observer.ended || opts.logger.debug({ err }, 'client websocket error'));
    upstream.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') upstreamTooBig = true;
      opts.logger.debug({ err }, 'upstream websocket error');
    });
    // Registered last: a swap while this session was being decided or handshaking found it not
    // yet registered, so the registry decides it against that newer snapshot now, before the
    // caller can send anything.
    governed = sessions.open(admission, endOnPolicy);
  }

  function proxy(x: WebSocketExchange): void {
    const { req, socket, plan, observer } = x;
    // Built before the handshake, from the decision alone, so a session is never relayed unchecked.
    const guard = ttsFrameGuard(x.decision.metadata, x.snapshot);
    const admission: SessionAdmission = admissionOf(x.decision.metadata, req.headers, req.url ?? '/', x.snapshot);
    let settled = false;
    const fail = (r: LocalResponse, error: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      upstream.terminate();
      writeRawResponse(socket, r);
      observer.end({ status: r.status, error });
    };

    const upstream = new WebSocket(toWebSocketUrl(plan.url), upstreamProtocols(req.headers['sec-websocket-protocol']), {
      maxPayload,
      headers: Object.fromEntries(Object.entries(plan.headers).filter(([n]) => !isWebSocketHandshakeHeader(n))),
      perMessageDeflate: false,
      followRedirects: false,
    });
    // Without a route timeout Envoy's idle bound is what ends a handshake nobody answers: no byte moves.
    const handshakeMs = x.routeTimeoutMs > 0 ? x.routeTimeoutMs : x.idleTimeoutMs;
    const timer =
      handshakeMs > 0
        ? setTimeout(() => fail(gatewayError('upstream_timeout', 'The provider did not answer in time.'), 'upstream_timeout'), handshakeMs)
        : undefined;

    const onClientGone = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      upstream.terminate();
      observer.end({ status: 0, error: 'client_aborted' });
    };
    socket.on('error', ignoreError);
    socket.once('close', onClientGone);

    let upgradeHeaders: string[] = [];
    upstream.once('upgrade', (res) => {
      observer.responseStart(101, res.headers);
      upgradeHeaders = relayRawHeaders(res.rawHeaders, isWebSocketHandshakeHeader);
    });

    upstream.on('unexpected-response', (upReq, upRes) => {
      // The provider refused the upgrade: relay its status, headers and (bounded) body verbatim.
      clearTimeout(timer);
      observer.responseStart(upRes.statusCode ?? 502, upRes.headers);
      const chunks: Buffer[] = [];
      let size = 0;
      upRes.on('data', (c: Buffer) => {
        if (size < MAX_REJECTION_BODY) chunks.push(c);
        size += c.length;
      });
      const done = () => {
        if (settled) return;
        settled = true;
        socket.off('close', onClientGone);
        const status = upRes.statusCode ?? 502;
        const body = Buffer.concat(chunks).subarray(0, MAX_REJECTION_BODY);
        writeRawResponse(socket, {
          status,
          rawHeaders: relayRawHeaders(upRes.rawHeaders, (n) => n === 'content-length'),
          body,
        });
        observer.end({ status });
        upReq.destroy();
      };
      upRes.on('end', done);
      upRes.on('error', done);
    });

    const onHandshakeError = (err: Error) => {
      if (settled) return;
      opts.logger.debug({ err, requestId: plan.headers['x-request-id'] }, 'upstream websocket failed');
      fail(gatewayError('upstream_unreachable', 'The provider could not be reached.'), 'upstream_unreachable');
    };
    upstream.on('error', onHandshakeError);

    upstream.once('open', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('close', onClientGone);
      // Past the handshake: drop the listeners that close over this exchange (see bridge).
      upstream.off('error', onHandshakeError);
      upstream.on('error', ignoreError);
      upstream.removeAllListeners('unexpected-response');
      if (socket.destroyed) {
        upstream.terminate();
        observer.end({ status: 0, error: 'client_aborted' });
        return;
      }
      pending.set(req, { protocol: upstream.protocol || tokenMarker(req.headers['sec-websocket-protocol']), headers: upgradeHeaders });
      let bridged = false;
      // Synchronous without `verifyClient`; when ws refuses the socket it never calls back.
      wss.handleUpgrade(req, socket, x.head, (client) => {
        bridged = true;
        upstream.off('error', ignoreError);
        bridge(observer, client, upstream, x.idleTimeoutMs, guard, admission, x.frameGate);
      });
      pending.delete(req);
      if (!bridged) {
        upstream.terminate();
        observer.end({ status: 0, error: 'client_aborted' });
      }
    });
  }

  return {
    proxy,
    recheck: (next) => sessions.recheck(next),
    async close() {
      for (const { client, upstream, goingAway } of [...live]) {
        goingAway();
        if (client.readyState === WebSocket.OPEN) client.close(1001, 'gateway shutting down');
        if (upstream.readyState === WebSocket.OPEN) upstream.close(1001, 'gateway shutting down');
      }
      // Give closing handshakes a moment, then cut whatever has not answered.
      const deadline = Date.now() + 1000;
      while (live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const { client, upstream } of live) {
        client.terminate();
        upstream.terminate();
      }
    },
  };
}
