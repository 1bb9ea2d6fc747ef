/**
 * Typed failures of the control-plane store and of secrets at rest. The admin API maps each class
 * to one HTTP answer (404, 409, 412, 400); anything else stays a generic 500. Messages name the
 * resource and field, never a secret value.
 */

/** The resources of the control plane, as they appear in errors and audit events. */
export type ResourceKind =
  | 'account'
  | 'account_secret'
  | 'collaborator'
  | 'model'
  | 'team'
  | 'team_member'
  | 'service_account'
  | 'service_key';

export abstract class ControlError extends Error {
  /** Stable snake_case reason for logs, metrics and problem+json `type`. */
  abstract readonly code: string;
}

/** No such resource (or its parent does not exist). */
export class NotFoundError extends ControlError {
  override readonly name = 'NotFoundError';
  readonly code = 'not_found';
  constructor(readonly resource: ResourceKind, readonly key: string) {
    super(`${resource} ${JSON.stringify(key)} does not exist`);
  }
}

/** Optimistic concurrency: the caller's row version is not the stored one (HTTP 412). */
export class VersionConflictError extends ControlError {
  override readonly name = 'VersionConflictError';
  readonly code = 'version_conflict';
  constructor(
    readonly resource: ResourceKind,
    readonly key: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super(`${resource} ${JSON.stringify(key)} is at version ${actualVersion}, not ${expectedVersion}`);
  }
}

/** A unique field already holds this value with different content (HTTP 409). */
export class DuplicateError extends ControlError {
  override readonly name = 'DuplicateError';
  readonly code = 'duplicate';
  constructor(readonly resource: ResourceKind, readonly field: string, readonly value: string) {
    super(`${resource} with ${field} ${JSON.stringify(value)} already exists`);
  }
}

/** The operation does not apply to the resource as it is now, e.g. rotating a revoked key (HTTP 409). */
export class InvalidStateError extends ControlError {
  override readonly name = 'InvalidStateError';
  readonly code = 'invalid_state';
  constructor(readonly resource: ResourceKind, readonly key: string, readonly reason: string) {
    super(`${resource} ${JSON.stringify(key)}: ${reason}`);
  }
}

/** Input the store refuses (HTTP 400); `field` is the path of the offending field (`price.per_minute`). */
export class InvalidInputError extends ControlError {
  override readonly name = 'InvalidInputError';
  readonly code = 'invalid_input';
  constructor(readonly field: string, readonly reason: string) {
    super(`${field || 'input'}: ${reason}`);
  }
}

/** A pagination cursor that this store did not issue (HTTP 400). */
export class InvalidCursorError extends ControlError {
  override readonly name = 'InvalidCursorError';
  readonly code = 'invalid_cursor';
  constructor() {
    super('the cursor is not one this list issued');
  }
}

/** `VOICEGATE_KEK` (or its file) is missing or malformed. The message never quotes key material. */
export class KekConfigError extends ControlError {
  override readonly name = 'KekConfigError';
  readonly code = 'kek_invalid';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export type SecretDecryptReason =
  /** The secret was wrapped by a KEK whose id is not in the keyring. */
  | 'unknown_kek'
  /** The data key did not unwrap: the KEK with that id is not the one that wrapped it, or the wrapped key was altered. */
  | 'wrong_kek_or_tampered_key'
  /** The data key unwrapped but the ciphertext, its nonce or tag, or the account/version binding was altered. */
  | 'tampered_ciphertext';

/**
 * A stored secret that cannot be opened. Raised instead of ever returning an empty or partial
 * key, so a pod never injects garbage as a provider credential.
 */
export class SecretDecryptError extends ControlError {
  override readonly name = 'SecretDecryptError';
  readonly code = 'secret_undecryptable';
  constructor(
    readonly reason: SecretDecryptReason,
    readonly accountId: string,
    readonly secretVersion: number,
    readonly kekId: string,
    options?: { cause?: unknown },
  ) {
    super(
      `secret version ${secretVersion} of account ${accountId} cannot be opened: ` +
        {
          unknown_kek: `it was wrapped by KEK "${kekId}", which VOICEGATE_KEK does not contain`,
          wrong_kek_or_tampered_key: `KEK "${kekId}" does not unwrap its data key (wrong key-encryption key, or the wrapped key was altered)`,
          tampered_ciphertext: 'the ciphertext or its binding to this account and version was altered',
        }[reason],
      options,
    );
  }
}
