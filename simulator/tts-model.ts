/** Model checks shared by the TTS REST, SSE and WebSocket routes. */
import { lookupTtsModel } from './tts-request.ts';
import type { TtsMode } from './routes.ts';

const RECOMMENDED: Record<TtsMode, string> = {
  sync: '/waves/v1/lightning-v3.1/get_speech',
  sse: '/waves/v1/lightning-v3.1/stream',
  ws: '/waves/v1/lightning-v3.1/get_speech/stream',
};

/** A refusal for a model name, or undefined when the model is served. */
export function modelRefusal(model: string, mode: TtsMode): { status: number; body: Record<string, string> } | undefined {
  const kind = lookupTtsModel(model);
  if (kind === 'current') return undefined;
  if (kind === 'retired') {
    return {
      status: 410,
      body: {
        status: 'error',
        error_code: 'MODEL_DEPRECATED',
        message: `The model '${model}' has been deprecated and is no longer available. Please migrate to lightning-v3.1.`,
        recommended_endpoint: RECOMMENDED[mode],
      },
    };
  }
  return { status: 404, body: { status: 'error', error: 'Model not found', message: `Model '${model}' not found` } };
}
