// A request nested 100,000 deep overflowed the stack after parsing (zod, and the error
// message quoting the value) and came back as CpiError "Unexpected error: Maximum call
// stack size exceeded". bin/cpi refuses it up front, naming where it is too deep, and
// still writes exactly one JSON response.
import { describe, expect, it } from 'vitest';
import { runCpi } from '../helpers/cpi.js';
import { MAX_REQUEST_DEPTH, tooDeep } from '../../src/bosh-protocol/depth.js';

const DEEP = 100_000;
const arrays = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
const objects = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
const envelope = (method: string, args: string, context = '{}') => `{"method":${JSON.stringify(method)},"arguments":${args},"context":${context},"api_version":2}`;

describe('tooDeep', () => {
  it('passes a request at the limit and names the field of one past it', () => {
    // the request object is level 1, `arguments` level 2, its first element level 3
    expect(tooDeep(envelope('create_vm', `[${arrays(MAX_REQUEST_DEPTH - 2)}]`))).toBeUndefined();
    expect(tooDeep(envelope('create_vm', `["a", ${arrays(MAX_REQUEST_DEPTH - 1)}]`))).toEqual({ where: 'arguments[1]', depth: MAX_REQUEST_DEPTH + 1 });
    expect(tooDeep(envelope('info', '[]', `{"director_uuid":"x","cfg":${objects(70)}}`))).toEqual({ where: 'context.cfg', depth: 72 });
  });

  it('does not count brackets inside strings, escaped quotes included', () => {
    const s = JSON.stringify({ method: 'create_vm', arguments: ['[[[[{{{{'.repeat(50), 'x\\"[[[['.repeat(50)], context: {} });
    expect(tooDeep(s)).toBeUndefined();
    expect(tooDeep(`{"k\\"ey":${arrays(80)}}`)?.where).toBe('k"ey[0]');
  });

  it('scans text that is not JSON at all without failing', () => {
    expect(tooDeep('[{'.repeat(DEEP))?.depth).toBe(2 * DEEP);
    expect(tooDeep('"unterminated [[[[')).toBeUndefined();
  });
});

describe('bin/cpi with a request nested 100,000 levels deep', () => {
  it.each([
    ['in an argument (create_stemcell cloud_properties)', envelope('create_stemcell', `["/tmp/image", ${arrays(DEEP)}]`), 'arguments[1]'],
    ['in an argument (create_vm env)', envelope('create_vm', `["agent", "sc", {}, {}, [], ${objects(DEEP)}]`), 'arguments[5]'],
    ['in the context (cpi-config properties)', envelope('has_vm', '["vm-x"]', `{"props":${objects(DEEP)}}`), 'context.props'],
    ['in info\'s context (the fast path)', envelope('info', '[]', `{"vm":${objects(DEEP)}}`), 'context.vm'],
  ])('%s: one JSON line, a CpiError naming where', async (_label, input, where) => {
    const run = await runCpi(input);
    expect(run.code).toBe(0);
    expect(run.response.result).toBeNull();
    expect(run.response.error?.type).toBe('Bosh::Clouds::CpiError');
    expect(run.response.error?.message).toBe(
      `Invalid request: ${where} nests arrays and objects ${DEEP + 2} levels deep (counting the request itself), expected at most ${MAX_REQUEST_DEPTH}; no CPI call needs more`,
    );
  }, 60_000);
});
