/**
 * `google.protobuf.Struct` as @grpc/proto-loader reads and writes it (`oneofs: true`): each value
 * is `{ kind, stringValue | numberValue | boolValue | … }`.
 */
export interface ProtoValue {
  kind?: string;
  stringValue?: string;
  numberValue?: number;
  boolValue?: boolean;
  nullValue?: string | number;
  structValue?: ProtoStruct;
  listValue?: { values?: ProtoValue[] };
}
export interface ProtoStruct {
  fields?: Record<string, ProtoValue>;
}

/** Flat string/number/boolean record → Struct; undefined values are dropped. */
export function toStruct(record: Readonly<Record<string, string | number | boolean | undefined>>): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const [k, v] of Object.entries(record)) {
    if (typeof v === 'string') fields[k] = { kind: 'stringValue', stringValue: v };
    else if (typeof v === 'number') fields[k] = { kind: 'numberValue', numberValue: v };
    else if (typeof v === 'boolean') fields[k] = { kind: 'boolValue', boolValue: v };
  }
  return { fields };
}

/** Struct → plain JSON-like value (nested structs and lists included). */
export function fromStruct(s: ProtoStruct | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = fromValue(v);
  return out;
}

function fromValue(v: ProtoValue): unknown {
  switch (v.kind) {
    case 'stringValue':
      return v.stringValue;
    case 'numberValue':
      return v.numberValue;
    case 'boolValue':
      return v.boolValue;
    case 'structValue':
      return fromStruct(v.structValue);
    case 'listValue':
      return (v.listValue?.values ?? []).map(fromValue);
    default:
      return v.stringValue ?? v.numberValue ?? v.boolValue ?? null;
  }
}
