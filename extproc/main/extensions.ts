/**
 * What a caller of `main()` may add: development-only commands and the upstream simulator
 * (dev/wiring.ts provides both; the production CLI never imports the simulator), and the
 * process's streams and environment, which tests replace.
 */
export interface ExtensionCommand {
  /** One line for `voicegate --help`. */
  readonly summary: string;
  /** Printed for `voicegate <command> --help`. */
  readonly usage: string;
  run(args: string[], signal: AbortSignal): Promise<number>;
}

export interface UpstreamSimulatorOptions {
  readonly host: string;
  readonly port: number;
  readonly profile: 'realistic' | 'instant';
  readonly accounts: Array<{ key: string; units: number }>;
}

/** A local stand-in for the provider API, started by `voicegate start` when the upstream is loopback. */
export interface UpstreamSimulator {
  start(opts: UpstreamSimulatorOptions): Promise<{
    readonly url: string;
    /** Accepts the keys of accounts added after start (the control plane's, in development). */
    addAccounts(accounts: Array<{ key: string; units: number }>): void;
    close(): Promise<void>;
  }>;
}

export interface MainExtensions {
  readonly commands?: Readonly<Record<string, ExtensionCommand>>;
  readonly upstreamSimulator?: UpstreamSimulator;
  readonly stdout?: (text: string) => void;
  readonly stderr?: (text: string) => void;
  /** What `-` reads (`voicegate admin accounts set-token NAME --provider-token-file -`); default process.stdin. */
  readonly stdin?: AsyncIterable<Uint8Array | string>;
  readonly env?: Readonly<Record<string, string | undefined>>;
}
