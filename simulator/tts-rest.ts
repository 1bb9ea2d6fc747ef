/** Lightning over HTTP: whole-audio responses (`get_speech`, `/tts`) and SSE (`stream`, `/tts/live`). */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Accounts, type AccountState } from './accounts.ts';
import { base64Chunks, speech } from './audio-encode.ts';
import type { SimContext } from './context.ts';
import { BodyTooLargeError, readBody, sendJson } from './http-util.ts';
import { isInstant, readyAtMs, runPaced, sleep, type Cancellable } from './pacing.ts';
import { RATE_LIMIT_BODY } from './scripting.ts';
import { DEFAULT_TTS_MODEL, parseWith, ttsBodySchema, type TtsBody } from './tts-request.ts';
import { modelRefusal } from './tts-model.ts';

/** Bytes of encoded audio per SSE frame (the live API sends about 1 KB per frame). */
export const SSE_CHUNK_BYTES = 1024;
const MAX_JSON_BODY = 1024 * 1024;
const SSE_DONE = 'data: {"status":"200","done":true}\n\n';

/** Reads, validates and classifies a TTS JSON body; answers the error itself when there is one. */
async function readTtsBody(req: IncomingMessage, res: ServerResponse, pathModel: string | undefined, mode: 'sync' | 'sse'): Promise<TtsBody | undefined> {
  let raw: Buffer;
  try {
    raw = await readBody(req, MAX_JSON_BODY);
  } catch (e) {
    if (e instanceof BodyTooLargeError) sendJson(res, 413, { error: 'Request body too large' });
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    sendJson(res, 400, { error: 'Invalid JSON body' });
    return undefined;
  }
  const bodyModel = json !== null && typeof json === 'object' && typeof (json as { model?: unknown }).model === 'string' ? (json as { model: string }).model : undefined;
  const refusal = modelRefusal(pathModel ?? bodyModel ?? DEFAULT_TTS_MODEL, mode);
  if (refusal) {
    sendJson(res, refusal.status, refusal.body);
    return undefined;
  }
  const parsed = parseWith(ttsBodySchema, json);
  if (!parsed.ok) {
    sendJson(res, 400, { error: parsed.issues });
    return undefined;
  }
  return parsed.value;
}

function responseHeaders(body: TtsBody): Record<string, string> {
  const h: Record<string, string> = { 'X-Session-Id': randomUUID(), 'X-Request-Id': randomUUID() };
  if (body.session_id !== undefined) h['X-External-Session-Id'] = body.session_id;
  if (body.request_id !== undefined) h['X-External-Request-Id'] = body.request_id;
  return h;
}

/**
 * Handles a TTS POST after authentication. Holds one of the key's units from validation until the
 * response is over (or the client left); over the limit it answers 429 at once, never queueing.
 */
export async function handleTtsRest(
  ctx: SimContext,
  req: IncomingMessage,
  res: ServerResponse,
  account: AccountState,
  pathModel: string | undefined,
  mode: 'sync' | 'sse',
  extraDelayMs: number,
): Promise<void> {
  const body = await readTtsBody(req, res, pathModel, mode);
  if (!body) return;
  if (!Accounts.acquireTts(account)) {
    sendJson(res, 429, RATE_LIMIT_BODY);
    return;
  }
  const token: Cancellable = { cancelled: false };
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    Accounts.releaseTts(account);
  };
  res.once('close', () => {
    token.cancelled = true;
    release();
  });
  const audio = speech(body.text, body.sample_rate ?? 44100, body.speed ?? 1, body.output_format ?? 'pcm');
  const headers = responseHeaders(body);

  if (mode === 'sync') {
    await sleep(extraDelayMs + (isInstant(ctx.pacing) ? 0 : readyAtMs(ctx.pacing, audio.seconds)));
    if (token.cancelled) return;
    headers['Content-Type'] = 'audio/wav';
    headers['Content-Length'] = String(audio.bytes.length);
    res.writeHead(200, headers);
    res.end(audio.bytes, release);
    return;
  }

  await sleep(extraDelayMs);
  if (token.cancelled) return;
  headers['Content-Type'] = 'text/event-stream';
  headers['Cache-Control'] = 'no-cache';
  res.writeHead(200, headers);
  const chunks = base64Chunks(audio, SSE_CHUNK_BYTES);
  const total = audio.bytes.length;
  const instant = isInstant(ctx.pacing);
  if (instant) res.cork();
  runPaced(
    ctx.pacing,
    chunks.length,
    (i) => (audio.seconds * Math.min(total, (i + 1) * SSE_CHUNK_BYTES)) / total,
    (i) => {
      res.write(`event: audio\ndata: {"audio":"${chunks[i]!}","done":false,"status":"206"}\n\n`);
    },
    () => {
      res.end(SSE_DONE, release);
      if (instant) res.uncork();
    },
    token,
  );
}
