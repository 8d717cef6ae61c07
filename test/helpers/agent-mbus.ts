// A client of the real BOSH agent's HTTPS mbus (the `create-env` style `agent.mbus`:
// https://user:password@0.0.0.0:6868): POST /agent with basic auth and a JSON body
// {"method", "arguments", "reply_to"}; the agent answers {"value": …} or
// {"exception": {"message": …}}. Asynchronous actions (mount_disk, add_persistent_disk,
// …) answer {"value": {"agent_task_id", "state": "running"}}; get_task polls them.
// The agent serves TLS only with the certificate create_vm's env gives it
// (env.bosh.mbus.cert): makeMbusCert makes a throwaway one.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';

export interface MbusCert {
  ca: string;
  certificate: string;
  private_key: string;
}

/** A self-signed RSA certificate for the agent's mbus (env.bosh.mbus.cert). */
export function makeMbusCert(dir: string): MbusCert {
  const key = join(dir, 'mbus.key');
  const crt = join(dir, 'mbus.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=bosh-agent-mbus', '-keyout', key, '-out', crt], { stdio: 'pipe' });
  const certificate = readFileSync(crt, 'utf8');
  return { ca: certificate, certificate, private_key: readFileSync(key, 'utf8') };
}

export class AgentError extends Error {}

export class AgentClient {
  constructor(
    /** host address (IPv4 or IPv6) */
    readonly address: string,
    private readonly cert: MbusCert,
    private readonly user = 'mbus',
    private readonly password = 'mbus-password',
    readonly port = 6868,
  ) {}

  /** One request; resolves with the agent's `value`, rejects with its exception. */
  send(method: string, args: unknown[] = [], timeoutMs = 15_000): Promise<unknown> {
    const body = JSON.stringify({ method, arguments: args, reply_to: 'test-host' });
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.address,
          port: this.port,
          path: '/agent',
          method: 'POST',
          auth: `${this.user}:${this.password}`,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          ca: this.cert.ca,
          // the certificate names no address: trust is pinned to its CA
          checkServerIdentity: () => undefined,
          timeout: timeoutMs,
          // a fresh connection each time: a kept-alive one from before a reboot hangs
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (res.statusCode !== 200) return reject(new AgentError(`${method}: HTTP ${res.statusCode}: ${text}`));
            try {
              const doc = JSON.parse(text) as { value?: unknown; exception?: { message?: string } };
              if (doc.exception) return reject(new AgentError(`${method}: ${doc.exception.message ?? JSON.stringify(doc.exception)}`));
              resolve(doc.value);
            } catch {
              reject(new AgentError(`${method}: not JSON: ${text.slice(0, 500)}`));
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method}: no answer from ${this.address}:${this.port} in ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /**
   * get_state as the director asks it: patiently, and again after a timeout. The agent
   * answers only after asking monit for the jobs' state, and its monit client retries a
   * refused or failing request 20 times, 1 s apart (bosh-agent
   * jobsupervisor/monit/provider.go): right after a boot, before runit has monit up, one
   * get_state can take 20 s and more. The director retries get_state on a timeout
   * (director/lib/director/agent_client.rb: retry_methods get_state => 2).
   */
  async getState(args: unknown[] = [], timeoutMs = 45_000, retries = 2): Promise<unknown> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.send('get_state', args, timeoutMs);
      } catch (e) {
        if (e instanceof AgentError || attempt >= retries) throw e;
      }
    }
  }

  /** An action, waited for when the agent runs it as a task (get_task until done). */
  async run(method: string, args: unknown[] = [], timeoutMs = 120_000): Promise<unknown> {
    let value = await this.send(method, args);
    const deadline = Date.now() + timeoutMs;
    let lastPollError: unknown;
    while (isRunningTask(value)) {
      if (Date.now() > deadline) {
        throw new AgentError(`${method}: task ${value.agent_task_id} still running after ${timeoutMs} ms` + (lastPollError ? `; last poll: ${(lastPollError as Error).message}` : ''));
      }
      await new Promise((r) => setTimeout(r, 500));
      const task = value;
      // get_task only reads: a poll lost to a busy guest (TCG, mkfs running) is asked again
      value = await this.send('get_task', [task.agent_task_id], 30_000).catch((e: unknown) => {
        if (e instanceof AgentError) throw e; // the agent answered: its answer stands
        lastPollError = e;
        return task;
      });
    }
    return value;
  }

  /** Polls `ping` until the agent answers "pong"; the error names the last failure. */
  async waitForPing(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const v = await this.send('ping', [], 5_000);
        if (v === 'pong') return;
        last = `answered ${JSON.stringify(v)}`;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) throw new AgentError(`the agent at ${this.address}:${this.port} did not answer ping in ${timeoutMs} ms; last: ${String(last)}`);
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
}

function isRunningTask(v: unknown): v is { agent_task_id: string; state: string } {
  return typeof v === 'object' && v !== null && 'agent_task_id' in v && (v as { state?: string }).state === 'running';
}
