/**
 * The voice catalogue of Lightning: voices per model and the key's cloned voices, in the shapes
 * npm `smallestai`'s generated client declares (`GetWavesVoices200Response`,
 * `GetClonedVoices200Response`, `AddVoiceToModel200Response`, `DeleteVoiceClone200Response`).
 * Paths as that client calls them: `GET {model}/get_voices`, `GET lightning-large/get_cloned_voices`,
 * `POST lightning-large/add_voice` (multipart `displayName`, `file`), `DELETE lightning-large`
 * (JSON `{"voiceId"}`). Error bodies and status codes other than 200 are guesses.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AccountState } from './accounts.ts';
import { BodyTooLargeError, readBody, sendJson } from './http-util.ts';
import { lookupTtsModel, VOICES } from './tts-request.ts';

export type VoiceOp = 'list' | 'cloned_list' | 'clone' | 'delete';

interface ClonedVoice {
  readonly voiceId: string;
  readonly displayName: string;
  readonly model: string;
  readonly status: string;
  readonly createdAt: string;
  readonly tags: string[];
}

/** Tags of the built-in voices; `meher` is the Pro voice of smallest-api.md. */
const FEMALE = new Set(['sophia', 'rachel', 'avery', 'emily', 'jasmine', 'mithali', 'aditi', 'ishika', 'karen', 'meher']);
const INDIAN = new Set(['meher', 'arman', 'mithali', 'aravind', 'raj', 'arnav', 'aditi', 'ishika']);

/** Largest upload `add_voice` takes (a guess; the provider documents none). */
const MAX_CLONE_BYTES = 25 * 1024 * 1024;

/** Cloned voices per key, as the provider keeps them per account. */
const cloned = new WeakMap<AccountState, Map<string, ClonedVoice>>();

function clonesOf(account: AccountState): Map<string, ClonedVoice> {
  let m = cloned.get(account);
  if (!m) cloned.set(account, (m = new Map()));
  return m;
}

function builtInVoices(): Array<{ voiceId: string; displayName: string; tags: { language: string[]; accent: string; gender: string } }> {
  return [...VOICES].map((id) => ({
    voiceId: id,
    displayName: id[0]!.toUpperCase() + id.slice(1),
    tags: {
      language: INDIAN.has(id) ? ['english', 'hindi'] : ['english'],
      accent: INDIAN.has(id) ? 'indian' : 'american',
      gender: FEMALE.has(id) ? 'female' : 'male',
    },
  }));
}

/** Serves one voice-catalogue request of an authenticated key. */
export async function handleVoices(req: IncomingMessage, res: ServerResponse, account: AccountState, op: VoiceOp, model: string): Promise<void> {
  if (lookupTtsModel(model) === 'unknown') {
    req.resume();
    return sendJson(res, 404, { status: 'error', error: 'Model not found', message: `Model '${model}' not found` });
  }
  const voices = clonesOf(account);
  switch (op) {
    case 'list':
      req.resume();
      return sendJson(res, 200, { voices: builtInVoices() });
    case 'cloned_list':
      req.resume();
      return sendJson(res, 200, { voices: [...voices.values()] });
    case 'clone':
      return clone(req, res, voices, model);
    case 'delete':
      return remove(req, res, voices);
  }
}

async function clone(req: IncomingMessage, res: ServerResponse, voices: Map<string, ClonedVoice>, model: string): Promise<void> {
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(type)) {
    req.resume();
    return sendJson(res, 400, { error: 'Bad Request', message: 'Expected multipart/form-data with displayName and file' });
  }
  let form: FormData;
  try {
    const body = await readBody(req, MAX_CLONE_BYTES);
    // undici's multipart parser (Node 20): the same one `fetch` uses for `Response.formData()`.
    form = await new Response(body, { headers: { 'content-type': type } }).formData();
  } catch (err) {
    if (err instanceof BodyTooLargeError) return sendJson(res, 413, { error: 'Payload Too Large', message: 'The audio file is too large' });
    return sendJson(res, 400, { error: 'Bad Request', message: 'Malformed multipart body' });
  }
  const displayName = form.get('displayName');
  const file = form.get('file');
  if (typeof displayName !== 'string' || displayName.trim() === '') {
    return sendJson(res, 400, { error: 'Bad Request', message: 'displayName is required' });
  }
  if (file === null || typeof file === 'string' || file.size === 0) {
    return sendJson(res, 400, { error: 'Bad Request', message: 'file is required' });
  }
  const voice: ClonedVoice = {
    voiceId: `voice_${randomUUID().replaceAll('-', '').slice(0, 12)}`,
    displayName,
    model,
    status: 'completed',
    createdAt: new Date().toISOString(),
    tags: [],
  };
  voices.set(voice.voiceId, voice);
  return sendJson(res, 200, { message: 'Voice cloned successfully', data: { voiceId: voice.voiceId, model, status: voice.status } });
}

async function remove(req: IncomingMessage, res: ServerResponse, voices: Map<string, ClonedVoice>): Promise<void> {
  let voiceId: unknown;
  try {
    voiceId = (JSON.parse((await readBody(req, 64 * 1024)).toString('utf8')) as { voiceId?: unknown } | null)?.voiceId;
  } catch {
    return sendJson(res, 400, { error: 'Bad Request', message: 'Expected a JSON body {"voiceId": "…"}' });
  }
  if (typeof voiceId !== 'string' || voiceId === '') {
    return sendJson(res, 400, { error: 'Bad Request', message: 'voiceId is required' });
  }
  if (!voices.delete(voiceId)) return sendJson(res, 404, { error: 'Not Found', message: `Voice '${voiceId}' not found` });
  return sendJson(res, 200, { success: true, voiceId });
}
