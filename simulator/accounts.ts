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
    for (const a of accounts) this.#byKey.set(a.key, { units: a.units, ttsActive: 0, ttsSockets: 0, sttSockets: 0 });
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

  /** Takes one TTS unit; false when every unit of the key is busy (the caller answers 429). */
  static acquireTts(a: AccountState): boolean {
    if (a.ttsActive >= a.units) return false;
    a.ttsActive++;
    return true;
  }

  static releaseTts(a: AccountState): void {
    if (a.ttsActive > 0) a.ttsActive--;
  }
}
