// create_vm's undo log. Each step is recorded *before* its call: a call whose answer
// was lost with the connection may have taken effect in libvirtd all the same, so its
// undo runs too (every undo tolerates a missing object). Undo steps survive a lost
// connection by reconnecting (bounded); whatever still cannot be undone is named, so the
// error never claims that nothing exists when something does.
import type { Host } from './host.js';
import { isConnectionLost, reconnect } from './reconnect.js';

export interface UndoStep {
  what: string;
  /** false when there was nothing to remove */
  run: () => Promise<boolean | void>;
  /** the call that made it returned (otherwise it may or may not exist) */
  done: boolean;
}

export interface UndoOutcome {
  removed: string[];
  left: string[];
}

export class UndoLog {
  private readonly steps: UndoStep[] = [];

  /** Records the undo of a step about to run; call the returned function once it succeeded. */
  begin(what: string, run: UndoStep['run']): () => void {
    const step: UndoStep = { what, run, done: false };
    this.steps.push(step);
    return () => {
      step.done = true;
    };
  }

  /**
   * Runs every undo, newest first. A lost connection is re-opened (bounded, at most
   * twice in all); once that fails, what remains is reported as left, not attempted.
   */
  async run(host: Host): Promise<UndoOutcome> {
    const out: UndoOutcome = { removed: [], left: [] };
    let reconnects = 0;
    let lost = false;
    for (const step of [...this.steps].reverse()) {
      const label = step.done ? step.what : `${step.what} (its creation was interrupted, so it may exist)`;
      for (;;) {
        if (lost) {
          out.left.push(label);
          break;
        }
        try {
          await this.runOne(host, step, out);
          break;
        } catch (e) {
          host.log.error({ err: String(e), what: step.what }, 'undo after a failed create_vm failed');
          if (!isConnectionLost(e)) {
            out.left.push(label);
            break;
          }
          lost = reconnects >= 2 || !(await reconnect(host).then(() => true, () => false));
          reconnects++;
        }
      }
    }
    return out;
  }

  private async runOne(host: Host, step: UndoStep, out: UndoOutcome): Promise<void> {
    const r = await step.run();
    if (r === false) return; // it never existed
    out.removed.push(step.done || r === true ? step.what : `${step.what} (if it had been made)`);
  }
}
