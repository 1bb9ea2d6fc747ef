import protobuf from 'protobufjs';
import { typeNameFromUrl } from './envoy-proto-root.ts';

/** What the binary round trip found: problems, and every `Any` payload type it decoded. */
export interface RoundTripResult {
  errors: string[];
  /** Fully qualified type names of every `Any` decoded from the wire bytes, with repeats. */
  anyTypes: string[];
}

/**
 * The second, independent check: protobufjs builds the message from the normalized document
 * (`fromObject`), `verify` accepts it, it encodes to Envoy's wire format, decodes back to the same
 * bytes, and every `Any` inside decodes and verifies as the type its URL names.
 */
export function roundTrip(root: protobuf.Root, typeName: string, normalized: unknown): RoundTripResult {
  const type = root.lookupType(typeName);
  const errors: string[] = [];
  const anyTypes: string[] = [];
  const message = type.fromObject(normalized as Record<string, unknown>);
  const problem = type.verify(message);
  if (problem) errors.push(`verify: ${problem}`);
  const bytes = type.encode(message).finish();
  const decoded = type.decode(bytes);
  const again = type.encode(decoded).finish();
  if (Buffer.compare(Buffer.from(bytes), Buffer.from(again)) !== 0) errors.push('re-encoding changed the bytes');
  walkAnys(root, type, decoded, typeName, errors, anyTypes);
  return { errors, anyTypes };
}

function walkAnys(
  root: protobuf.Root,
  type: protobuf.Type,
  message: protobuf.Message,
  path: string,
  errors: string[],
  anyTypes: string[],
): void {
  const record = message as unknown as Record<string, unknown>;
  for (const field of type.fieldsArray) {
    const child = field.resolvedType;
    if (!(child instanceof protobuf.Type)) continue;
    const raw = record[field.name];
    if (raw === undefined || raw === null) continue;
    const items: unknown[] = field.map ? Object.values(raw) : field.repeated ? (raw as unknown[]) : [raw];
    for (const item of items) {
      const at = `${path}.${field.name}`;
      if (child.fullName === '.google.protobuf.Any') {
        decodeAny(root, item as { type_url: string; value: Uint8Array }, at, errors, anyTypes);
      } else {
        walkAnys(root, child, item as protobuf.Message, at, errors, anyTypes);
      }
    }
  }
}

function decodeAny(
  root: protobuf.Root,
  any: { type_url: string; value: Uint8Array },
  path: string,
  errors: string[],
  anyTypes: string[],
): void {
  let inner: protobuf.Type;
  try {
    inner = root.lookupType(typeNameFromUrl(any.type_url));
  } catch {
    errors.push(`${path}: Any names unknown type ${any.type_url}`);
    return;
  }
  const message = inner.decode(any.value);
  const problem = inner.verify(message);
  if (problem) errors.push(`${path} (${any.type_url}): ${problem}`);
  anyTypes.push(inner.fullName.slice(1));
  walkAnys(root, inner, message, path, errors, anyTypes);
}
