// The README's configuration reference, generated from ConfigSchema so the docs
// cannot drift from the code (test/unit/config.test.ts compares them).
import { ConfigSchema } from './schema.js';

interface Node {
  def?: { type?: string; innerType?: Node; defaultValue?: unknown; entries?: Record<string, string>; element?: Node };
  shape?: Record<string, Node>;
  description?: string;
}

export function configReference(): string {
  const rows = ['| key | type | default | description |', '|---|---|---|---|'];
  walk(ConfigSchema as unknown as Node, '', rows, undefined);
  return rows.join('\n');
}

function walk(node: Node, path: string, rows: string[], inheritedDefault: unknown): void {
  let n = node;
  let dflt = inheritedDefault;
  let required = true;
  const description = node.description;
  while (n.def && (n.def.type === 'default' || n.def.type === 'optional') && n.def.innerType) {
    if (n.def.type === 'default') dflt = typeof n.def.defaultValue === 'function' ? (n.def.defaultValue as () => unknown)() : n.def.defaultValue;
    required = false;
    n = n.def.innerType;
  }
  if (n.def?.type === 'object' && n.shape && path !== 'agent.blobstore.options') {
    for (const [k, v] of Object.entries(n.shape)) walk(v, path ? `${path}.${k}` : k, rows, undefined);
    return;
  }
  const type = typeName(n);
  const d = dflt === undefined ? (required ? '**required**' : '—') : `\`${JSON.stringify(dflt)}\``;
  rows.push(`| \`${path}\` | ${type} | ${d} | ${(description ?? n.description ?? '').replace(/\|/g, '\\|')} |`);
}

function typeName(n: Node): string {
  switch (n.def?.type) {
    case 'enum':
      return Object.values(n.def.entries ?? {}).map((e) => `\`${e}\``).join(' \\| ');
    case 'array':
      return `array of ${n.def.element ? typeName(n.def.element) : 'values'}`;
    case 'record':
      return 'object';
    default:
      return n.def?.type ?? 'value';
  }
}
