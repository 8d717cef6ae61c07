// A CPI method: its name, its positional argument schemas and its handler.
import type { CallContext } from './context.js';
import { parseArgs, type ArgSpec, type ArgValues } from './args.js';

export interface MethodDef {
  name: string;
  args: readonly ArgSpec[];
  /** validates raw arguments, then runs the handler */
  invoke(ctx: CallContext, rawArgs: unknown[]): Promise<unknown>;
}

export function defineMethod<const A extends readonly ArgSpec[]>(
  name: string,
  args: A,
  run: (ctx: CallContext, ...values: ArgValues<A>) => unknown,
): MethodDef {
  return {
    name,
    args,
    async invoke(ctx, rawArgs) {
      const values = parseArgs(name, args, rawArgs);
      return run(ctx, ...values);
    },
  };
}
