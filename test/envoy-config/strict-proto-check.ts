import protobuf from 'protobufjs';
import { typeNameFromUrl } from './envoy-proto-root.ts';

/** One reason a config document is not a valid instance of a message type. */
export interface StrictIssue {
  /** Where, e.g. `static_resources.clusters[0].type`. */
  path: string;
  message: string;
}

/** Result of a strict check: the issues and the document rewritten in protobufjs `fromObject` form. */
export interface StrictResult {
  issues: StrictIssue[];
  /** Durations as {seconds, nanos}, Structs as {fields}, wrappers as {value}; Anys keep `@type`. */
  normalized: unknown;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const WRAPPERS: Record<string, string> = {
  'google.protobuf.DoubleValue': 'double',
  'google.protobuf.FloatValue': 'float',
  'google.protobuf.Int64Value': 'int64',
  'google.protobuf.UInt64Value': 'uint64',
  'google.protobuf.Int32Value': 'int32',
  'google.protobuf.UInt32Value': 'uint32',
  'google.protobuf.BoolValue': 'bool',
  'google.protobuf.StringValue': 'string',
  'google.protobuf.BytesValue': 'bytes',
};

const INT_RANGES: Record<string, [bigint, bigint]> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

// Proto3 JSON: up to nine fractional digits, a trailing `s`.
const DURATION = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}

/**
 * Checks a parsed YAML/JSON document against a protobuf message type the way Envoy's strict
 * proto3-JSON loader does, and more strictly where YAML mistakes hide: every key must be a field
 * (by its .proto name), enums must name a value, a oneof may hold at most one member, `Any` values
 * must name a loaded type and are checked as that type, well-known types must use their JSON form
 * (`0.2s`, plain numbers for wrappers), deprecated fields are refused, and the protoc-gen-validate
 * rules Envoy enforces at load (required messages and oneofs, string length, numeric bounds) hold.
 *
 * @example
 *   const { issues } = checkStrict(root, 'envoy.config.bootstrap.v3.Bootstrap', yamlObject);
 */
export function checkStrict(root: protobuf.Root, typeName: string, value: unknown): StrictResult {
  const issues: StrictIssue[] = [];
  const type = root.lookupType(typeName);
  const normalized = checkMessage(root, type, value, '', issues);
  return { issues, normalized };
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

function checkMessage(
  root: protobuf.Root,
  type: protobuf.Type,
  value: unknown,
  path: string,
  issues: StrictIssue[],
): unknown {
  const special = checkWellKnown(root, type, value, path, issues);
  if (special.handled) return special.normalized;
  if (!isPlainObject(value)) {
    issues.push({ path, message: `expected an object for ${type.fullName.slice(1)}, got ${describe(value)}` });
    return {};
  }
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    const field = type.fields[key];
    const at = join(path, key);
    if (!field) {
      issues.push({ path: at, message: `unknown field "${key}" in ${type.fullName.slice(1)}` });
      continue;
    }
    if (field.options?.['deprecated'] === true) {
      issues.push({ path: at, message: `deprecated field "${key}"` });
    }
    out[key] = checkField(root, field, item, at, issues);
  }
  checkOneofs(type, value, path, issues);
  checkRequired(type, value, path, issues);
  return out;
}

function checkOneofs(type: protobuf.Type, value: Record<string, unknown>, path: string, issues: StrictIssue[]): void {
  for (const oneof of type.oneofsArray) {
    const set = oneof.oneof.filter((name) => value[name] !== undefined);
    if (set.length > 1) {
      issues.push({ path, message: `oneof "${oneof.name}" has ${set.length} members set: ${set.join(', ')}` });
    }
    if (set.length === 0 && oneof.options?.['(validate.required)'] === true) {
      issues.push({ path, message: `oneof "${oneof.name}" requires one of: ${oneof.oneof.join(', ')}` });
    }
  }
}

function checkRequired(type: protobuf.Type, value: Record<string, unknown>, path: string, issues: StrictIssue[]): void {
  for (const field of type.fieldsArray) {
    // PGV applies a rule on a oneof member only when that member is the one chosen.
    if (field.partOf) continue;
    if (field.options?.['(validate.rules).message.required'] === true && value[field.name] === undefined) {
      issues.push({ path: join(path, field.name), message: `required field "${field.name}" is missing` });
    }
  }
}

function checkField(
  root: protobuf.Root,
  field: protobuf.Field,
  value: unknown,
  path: string,
  issues: StrictIssue[],
): unknown {
  if (field.map) {
    if (!isPlainObject(value)) {
      issues.push({ path, message: `expected a map (object), got ${describe(value)}` });
      return {};
    }
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      out[key] = checkSingle(root, field, item, `${path}[${JSON.stringify(key)}]`, issues);
    }
    return out;
  }
  if (field.repeated) {
    if (!Array.isArray(value)) {
      issues.push({ path, message: `expected a list, got ${describe(value)}` });
      return [];
    }
    const minItems = field.options?.['(validate.rules).repeated.min_items'];
    if (typeof minItems === 'number' && value.length < minItems) {
      issues.push({ path, message: `needs at least ${minItems} items` });
    }
    return value.map((item, i) => checkSingle(root, field, item, `${path}[${i}]`, issues));
  }
  return checkSingle(root, field, value, path, issues);
}

function checkSingle(
  root: protobuf.Root,
  field: protobuf.Field,
  value: unknown,
  path: string,
  issues: StrictIssue[],
): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return checkMessage(root, resolved, value, path, issues);
  if (resolved instanceof protobuf.Enum) return checkEnum(resolved, value, path, issues);
  const normalized = checkScalar(field.type, value, path, issues);
  checkScalarRules(field, value, path, issues);
  return normalized;
}

function checkEnum(type: protobuf.Enum, value: unknown, path: string, issues: StrictIssue[]): unknown {
  if (typeof value === 'string' && Object.hasOwn(type.values, value)) return value;
  if (typeof value === 'number' && Object.values(type.values).includes(value)) return value;
  issues.push({
    path,
    message: `${describe(value)} is not a value of enum ${type.name} (${Object.keys(type.values).join(', ')})`,
  });
  return value;
}

function checkScalar(scalar: string, value: unknown, path: string, issues: StrictIssue[]): unknown {
  const bad = (expected: string): unknown => {
    issues.push({ path, message: `expected ${expected} (${scalar}), got ${describe(value)}` });
    return value;
  };
  switch (scalar) {
    case 'string':
      return typeof value === 'string' ? value : bad('a string');
    case 'bool':
      return typeof value === 'boolean' ? value : bad('true or false');
    case 'bytes':
      return typeof value === 'string' && BASE64.test(value) ? value : bad('base64 text');
    case 'double':
    case 'float':
      if (typeof value === 'number') return value;
      return value === 'NaN' || value === 'Infinity' || value === '-Infinity' ? value : bad('a number');
    default: {
      const range = INT_RANGES[scalar];
      if (!range) return bad('a known scalar');
      const text = typeof value === 'number' && Number.isInteger(value) ? String(value) : value;
      if (typeof text !== 'string' || !/^-?\d+$/.test(text)) return bad('an integer');
      const n = BigInt(text);
      if (n < range[0] || n > range[1]) return bad(`an integer in [${range[0]}, ${range[1]}]`);
      return scalar.endsWith('64') ? text : Number(text);
    }
  }
}

function checkScalarRules(field: protobuf.Field, value: unknown, path: string, issues: StrictIssue[]): void {
  const options = field.options ?? {};
  const minLen = options['(validate.rules).string.min_len'];
  if (typeof minLen === 'number' && typeof value === 'string' && value.length < minLen) {
    issues.push({ path, message: `string shorter than ${minLen}` });
  }
  if (typeof value !== 'number') return;
  for (const [key, bound] of Object.entries(options)) {
    const m = /^\(validate\.rules\)\.[a-z0-9]+\.(gt|gte|lt|lte)$/.exec(key);
    if (!m || typeof bound !== 'number') continue;
    const ok = { gt: value > bound, gte: value >= bound, lt: value < bound, lte: value <= bound }[m[1] as 'gt'];
    if (!ok) issues.push({ path, message: `${value} violates ${m[1]} ${bound}` });
  }
}

/** JSON forms of the well-known types, as proto3 JSON (and Envoy's YAML) spell them. */
function checkWellKnown(
  root: protobuf.Root,
  type: protobuf.Type,
  value: unknown,
  path: string,
  issues: StrictIssue[],
): { handled: boolean; normalized?: unknown } {
  const name = type.fullName.slice(1);
  const wrapped = WRAPPERS[name];
  if (wrapped) return { handled: true, normalized: { value: checkScalar(wrapped, value, path, issues) } };
  switch (name) {
    case 'google.protobuf.Duration':
      return { handled: true, normalized: checkDuration(value, path, issues) };
    case 'google.protobuf.Timestamp': {
      const ms = typeof value === 'string' ? Date.parse(value) : NaN;
      if (Number.isNaN(ms)) issues.push({ path, message: `expected an RFC 3339 timestamp, got ${describe(value)}` });
      return { handled: true, normalized: { seconds: String(Math.floor(ms / 1000) || 0), nanos: 0 } };
    }
    case 'google.protobuf.FieldMask':
      if (typeof value !== 'string') issues.push({ path, message: `expected a field mask string, got ${describe(value)}` });
      return { handled: true, normalized: { paths: typeof value === 'string' && value ? value.split(',') : [] } };
    case 'google.protobuf.Empty':
      if (!isPlainObject(value) || Object.keys(value).length > 0) issues.push({ path, message: 'expected {}' });
      return { handled: true, normalized: {} };
    case 'google.protobuf.Struct':
      if (!isPlainObject(value)) {
        issues.push({ path, message: `expected an object (Struct), got ${describe(value)}` });
        return { handled: true, normalized: {} };
      }
      return { handled: true, normalized: structOf(value as Record<string, Json>, path, issues) };
    case 'google.protobuf.Value':
      return { handled: true, normalized: valueOf(value as Json, path, issues) };
    case 'google.protobuf.ListValue':
      if (!Array.isArray(value)) issues.push({ path, message: `expected a list, got ${describe(value)}` });
      return { handled: true, normalized: { values: (Array.isArray(value) ? value : []).map((v, i) => valueOf(v as Json, `${path}[${i}]`, issues)) } };
    case 'google.protobuf.Any':
      return { handled: true, normalized: checkAny(root, value, path, issues) };
    default:
      return { handled: false };
  }
}

function checkDuration(value: unknown, path: string, issues: StrictIssue[]): unknown {
  const m = typeof value === 'string' ? DURATION.exec(value) : null;
  if (!m) {
    issues.push({ path, message: `expected a duration like "0.2s", got ${describe(value)}` });
    return {};
  }
  const sign = m[1] ? -1 : 1;
  const nanos = Number((m[3] ?? '').padEnd(9, '0')) * sign;
  return { seconds: `${m[1] ?? ''}${m[2]}`, nanos };
}

function structOf(value: Record<string, Json>, path: string, issues: StrictIssue[]): unknown {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) fields[k] = valueOf(v, join(path, k), issues);
  return { fields };
}

function valueOf(value: Json, path: string, issues: StrictIssue[]): unknown {
  if (value === null) return { null_value: 'NULL_VALUE' };
  if (typeof value === 'number') return { number_value: value };
  if (typeof value === 'string') return { string_value: value };
  if (typeof value === 'boolean') return { bool_value: value };
  if (Array.isArray(value)) return { list_value: { values: value.map((v, i) => valueOf(v, `${path}[${i}]`, issues)) } };
  if (isPlainObject(value)) return { struct_value: structOf(value, path, issues) };
  issues.push({ path, message: `not a JSON value: ${describe(value)}` });
  return {};
}

function checkAny(root: protobuf.Root, value: unknown, path: string, issues: StrictIssue[]): unknown {
  if (!isPlainObject(value) || typeof value['@type'] !== 'string') {
    issues.push({ path, message: 'expected an Any with a "@type"' });
    return {};
  }
  const typeUrl = value['@type'];
  if (!typeUrl.startsWith('type.googleapis.com/')) {
    issues.push({ path: join(path, '@type'), message: `type URL must start with type.googleapis.com/: ${typeUrl}` });
  }
  let inner: protobuf.Type;
  try {
    inner = root.lookupType(typeNameFromUrl(typeUrl));
  } catch {
    issues.push({ path: join(path, '@type'), message: `unknown @type ${typeUrl}` });
    return {};
  }
  const { '@type': _url, ...rest } = value;
  // Well-known types inside an Any carry their JSON form under `value`.
  const isWellKnown = inner.fullName.startsWith('.google.protobuf.');
  const body = checkMessage(root, inner, isWellKnown ? rest['value'] : rest, path, issues);
  return { '@type': typeUrl, ...(body as Record<string, unknown>) };
}
