/** Provider keys, their concurrency units and what each key is using right now. */

/** One API key the simulator accepts and the units bought for it. */
export interface SimulatorAccount {
  key: string;
  units: number;
}

/** Live usage of one key (mutated in place by the handlers). */
export interface AccountState {
  readonly units: number;
  /** TTS syntheses in progress (sync, SSE and WebSocket requests share them). */
  ttsActive: number;
  /** Open TTS WebSockets. */
  ttsSockets: number;
  /** Open STT streaming WebSockets. */
  sttSockets: number;
  /** The most of each the key ever had at once, and the refusals it had to make for being over a cap. */
  readonly peak: { tts: number; ttsSockets: number; sttSockets: number };
  refusals: number;
}

/** What a key went through, as tests read it: the key itself appears only as its last four characters. */
export interface UnitUsage {
  readonly keyLast4: string;
  readonly units: number;
  readonly peakTts: number;
  readonly peakTtsSockets: number;
  readonly peakSttSockets: number;
  /** Over-limit answers the simulator had to give (REST 429, TTS error frame or upgrade 429, STT 1008). */
  readonly refusals: number;
}

export type AuthResult =
  | { readonly ok: true; readonly account: AccountState }
  | { readonly ok: false; readonly body: Readonly<Record<string, string>> };

/** 401 bodies as the live API sends them. */
export const NO_TOKEN_BODY = Object.freeze({ message: 'Unauthorized: No tokens provided' });
export const BAD_TOKEN_BODY = Object.freeze({ error: 'unauthorized' });

export class Accounts {
  readonly #byKey = new Map<string, AccountState>();

  constructor(accounts: readonly SimulatorAccount[]) {
    this.add(accounts);
  }

  /**
   * Accepts more keys (the gateway's control plane added an account in development). A key it
   * already has keeps its state: live usage must not reset under open exchanges.
   */
  add(accounts: readonly SimulatorAccount[]): void {
    for (const a of accounts) {
      if (!this.#byKey.has(a.key)) {
        this.#byKey.set(a.key, { units: a.units, ttsActive: 0, ttsSockets: 0, sttSockets: 0, peak: { tts: 0, ttsSockets: 0, sttSockets: 0 }, refusals: 0 });
      }
    }
  }

  /**
   * Authenticates by `Authorization: Bearer <key>`, or by `queryToken` (WebSocket `?token=`,
   * only when the caller enabled it). The key itself never appears in the result.
   */
  authenticate(authorization: string | undefined, queryToken?: string): AuthResult {
    let token: string | undefined;
    const header = authorization?.trim();
    if (header) {
      const m = /^Bearer(?:\s+(\S*))?$/i.exec(header);
      // another scheme (Basic, a bare key…) is a credential the API does not accept
      if (!m) return { ok: false, body: BAD_TOKEN_BODY };
      token = m[1];
    } else {
      token = queryToken;
    }
    if (!token) return { ok: false, body: NO_TOKEN_BODY };
    const account = this.#byKey.get(token);
    return account ? { ok: true, account } : { ok: false, body: BAD_TOKEN_BODY };
  }

  /** Every key's peaks and refusals since start. */
  usage(): UnitUsage[] {
    return [...this.#byKey].map(([key, a]) => ({
      keyLast4: key.slice(-4),
      units: a.units,
      peakTts: a.peak.tts,
      peakTtsSockets: a.peak.ttsSockets,
      peakSttSockets: a.peak.sttSockets,
      refusals: a.refusals,
    }));
  }

  /** Takes one TTS unit; false when every unit of the key is busy (the caller answers 429). */
  static acquireTts(a: AccountState): boolean {
    if (a.ttsActive >= a.units) {
      a.refusals++;
      return false;
    }
    a.ttsActive++;
    a.peak.tts = Math.max(a.peak.tts, a.ttsActive);
    return true;
  }

  static openTtsSocket(a: AccountState): void {
    a.ttsSockets++;
    a.peak.ttsSockets = Math.max(a.peak.ttsSockets, a.ttsSockets);
  }

  static openSttSocket(a: AccountState): void {
    a.sttSockets++;
    a.peak.sttSockets = Math.max(a.peak.sttSockets, a.sttSockets);
  }

  static releaseTts(a: AccountState): void {
    if (a.ttsActive > 0) a.ttsActive--;
  }
}
