// create_vm's undo log. Each step is recorded *before* its call: a call whose answer
// was lost with the connection may have taken effect in libvirtd all the same, so its
// undo runs too (every undo tolerates a missing object). Undo steps survive a lost
// connection by reconnecting (bounded); whatever still cannot be undone is named, so the
// error never claims that nothing exists when something does.
import type { Host } from './host.js';
import { isConnectionLost, reconnect } from './reconnect.js';
import { CallTimeoutError } from '../../libvirt/index.js';

/** What an undo step is told about the failure, when its own call is the one that failed. */
export interface UndoContext {
  /**
   * The step's call got no answer (the connection dropped, or the daemon answered later
   * than the call timeout): the daemon may still run it, later. The undo must settle
   * that (a fence) rather than only look.
   */
  answerLost: boolean;
  /** the call timed out: its connection is alive but stuck behind it; settle on a new one */
  timedOut: boolean;
}

/** A step's undo: false when there was nothing to remove, `{ settled }` when it did something else than remove (said in words). */
export type UndoResult = boolean | void | { settled: string };

export interface UndoStep {
  what: string;
  run: (ctx: UndoContext) => Promise<UndoResult>;
  /** the call that made it returned (otherwise it may or may not exist) */
  done: boolean;
  /** when this undo fails, the older steps are not undone either (their objects stay with what may still appear) */
  keepOlderIfUnsettled?: boolean;
}

export interface UndoOutcome {
  removed: string[];
  /** what was made sure never to appear, instead of removed */
  settled: string[];
  left: string[];
}

export class UndoLog {
  private readonly steps: UndoStep[] = [];

  /** Records the undo of a step about to run; call the returned function once it succeeded. */
  begin(what: string, run: UndoStep['run'], opts: { keepOlderIfUnsettled?: boolean } = {}): () => void {
    const step: UndoStep = { what, run, done: false, ...opts };
    this.steps.push(step);
    return () => {
      step.done = true;
    };
  }

  /**
   * Runs every undo, newest first. A lost connection is re-opened (bounded, at most
   * twice in all); once that fails, what remains is reported as left, not attempted.
   */
  async run(host: Host, cause?: unknown): Promise<UndoOutcome> {
    const out: UndoOutcome = { removed: [], settled: [], left: [] };
    const timedOut = cause instanceof CallTimeoutError;
    const ctx: UndoContext = { answerLost: isConnectionLost(cause) || timedOut, timedOut };
    let reconnects = 0;
    let lost = false;
    let keep = false;
    for (const step of [...this.steps].reverse()) {
      const label = step.done ? step.what : `${step.what} (its creation was interrupted, so it may exist)`;
      for (;;) {
        if (lost || keep) {
          out.left.push(label);
          break;
        }
        try {
          await this.runOne(host, step, step.done ? { answerLost: false, timedOut: false } : ctx, out);
          break;
        } catch (e) {
          host.log.error({ err: String(e), what: step.what }, 'undo after a failed create_vm failed');
          if (!isConnectionLost(e)) {
            out.left.push(`${label}: ${(e as Error).message ?? e}`);
            if (step.keepOlderIfUnsettled) keep = true;
            break;
          }
          lost = reconnects >= 2 || !(await reconnect(host).then(() => true, () => false));
          reconnects++;
        }
      }
    }
    return out;
  }

  private async runOne(_host: Host, step: UndoStep, ctx: UndoContext, out: UndoOutcome): Promise<void> {
    const r = await step.run(ctx);
    if (r === false) return; // it never existed
    if (typeof r === 'object') {
      out.settled.push(r.settled);
      return;
    }
    out.removed.push(step.done || r === true ? step.what : `${step.what} (if it had been made)`);
  }
}
