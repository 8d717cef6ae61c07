// How deeply a request nests arrays and objects, read from its text before it is parsed.
// JSON.parse copes with any depth, but much of what follows a parse recurses (zod,
// JSON.stringify of the agent settings, error messages quoting a value): a request
// nested 100,000 deep overflowed the stack somewhere in there and came back as a bare
// "Maximum call stack size exceeded". No BOSH request comes near MAX_REQUEST_DEPTH, so
// anything deeper is refused up front, naming where it goes too deep. Kept free of
// imports: the `info` fast path in the entry bundle uses it too.

/** Levels of arrays and objects a request may have, the request object itself included. */
export const MAX_REQUEST_DEPTH = 64;

export interface TooDeep {
  /** where the limit is first passed, e.g. `arguments[1]` or `context.x` (the top two levels) */
  where: string;
  /** the deepest level the text reaches */
  depth: number;
}

/**
 * Scans JSON text (valid or not) for brackets outside strings. Returns undefined when no
 * point goes deeper than `max` levels; otherwise where it first does and how deep it gets.
 * Iterative and linear: safe on any input.
 */
export function tooDeep(text: string, max: number = MAX_REQUEST_DEPTH): TooDeep | undefined {
  let depth = 0;
  let deepest = 0;
  let where: string | undefined;
  // The path of the top two levels: the request's key, and an index or key below it.
  let topKey = '';
  let secondIsArray = false;
  let secondIndex = 0;
  let secondKey = '';
  let lastString = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i + 1;
      for (i = start; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      // Only keys of the top two levels are ever shown; others need not be decoded.
      if (depth <= 2 && where === undefined) lastString = decodeKey(text.slice(start, i));
    } else if (c === 0x3a /* : */) {
      if (depth === 1) topKey = lastString;
      else if (depth === 2 && !secondIsArray) secondKey = lastString;
    } else if (c === 0x2c /* , */) {
      if (depth === 2 && secondIsArray) secondIndex++;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      depth++;
      if (depth === 2) {
        secondIsArray = c === 0x5b;
        secondIndex = 0;
        secondKey = '';
      }
      if (depth > deepest) deepest = depth;
      if (depth > max && where === undefined) where = pathOf(topKey, secondIsArray, secondIndex, secondKey, depth);
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      if (depth > 0) depth--;
    }
  }
  return where === undefined ? undefined : { where, depth: deepest };
}

function pathOf(topKey: string, secondIsArray: boolean, index: number, key: string, depth: number): string {
  if (depth <= 2) return topKey || 'the request';
  const top = topKey || '?';
  return secondIsArray ? `${top}[${index}]` : `${top}.${key}`;
}

function decodeKey(raw: string): string {
  if (raw.length > 100) return `${raw.slice(0, 97)}...`;
  try {
    return JSON.parse(`"${raw}"`) as string;
  } catch {
    return raw;
  }
}

/** The request's error message for a too deep request. */
export function tooDeepMessage(t: TooDeep, max: number = MAX_REQUEST_DEPTH): string {
  return `Invalid request: ${t.where} nests arrays and objects ${t.depth} levels deep (counting the request itself), expected at most ${max}; no CPI call needs more`;
}
