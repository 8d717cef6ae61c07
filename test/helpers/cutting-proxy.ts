// A unix-socket proxy in front of the real libvirtd that loses connections on cue, the
// way a daemon restart or a broken hop does, without touching the shared daemon: it
// reads the RPC framing, and when the client calls a chosen procedure it hangs up every
// proxied connection, either before passing the call on or once the daemon has answered
// it (the call took effect; its answer is lost). New connections are accepted again
// (a reconnect works) or refused until told otherwise (reconnects fail).
import net from 'node:net';
import { join } from 'node:path';
import { DAEMON_SOCKET } from './libvirt-fixtures.js';
import { scratchDir } from './scratch.js';

const REMOTE_PROGRAM = 0x20008086;
const CALL = 0;

export interface CutRule {
  /** remote procedure number (src/libvirt/procedures.ts) */
  procedure: number;
  /**
   * 'before': the call never reaches the daemon; 'after-reply': it runs, its reply is
   * dropped; 'mid-stream': the call and `afterBytes` bytes of what the client sends next
   * (an upload's data) pass, then the connection drops in the middle of the stream;
   * 'corrupt-stream': nothing drops, but the byte `afterBytes` into what the client sends
   * after the call is flipped on its way (damage no transport would let through)
   */
  when: 'before' | 'after-reply' | 'mid-stream' | 'corrupt-stream' | 'late';
  /** for 'mid-stream' and 'corrupt-stream' */
  afterBytes?: number;
  /**
   * for 'late': the call (and whatever the client sends after it on that connection) is
   * held `holdMs` before it goes on to the daemon, which then runs it late, as a busy
   * daemon would; the proxy's connection to the daemon stays until the daemon answered it
   */
  holdMs?: number;
  /** for 'late': hang up on the client at once (its answer is lost; the daemon still gets the call later) */
  cutClient?: boolean;
  /** for 'late': hold every call of the procedure, on every connection, until disarmed (a daemon slow at it) */
  every?: boolean;
  /** the Nth call of that procedure (1-based, counted over all connections) */
  nth?: number;
  /** after the cut, refuse new connections (until allow()) */
  thenRefuse?: boolean;
}

export interface CuttingProxy {
  /** config libvirt.uri reaching qemu:///system through the proxy */
  uri: string;
  /** cuts (or corruptions) since the last arm() */
  cuts: number;
  arm(rule: CutRule): void;
  /** drops the armed rule */
  disarm(): void;
  /**
   * For a 'late' rule: resolves once the daemon answered the held call, with whether it
   * succeeded (rejects after `timeoutMs`).
   */
  lateAnswer(timeoutMs: number): Promise<{ ok: boolean }>;
  allow(): void;
  close(): Promise<void>;
}

/** Splits a byte stream into libvirt packets (4-byte big-endian length including itself). */
function framer(onPacket: (p: Buffer) => void): (d: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  return (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0);
      if (buf.length < len) break;
      onPacket(buf.subarray(0, len));
      buf = buf.subarray(len);
    }
  };
}

/** `upstream`: the daemon socket to proxy (default: the first daemon's). */
export async function startCuttingProxy(upstreamSocket: string = DAEMON_SOCKET): Promise<CuttingProxy> {
  const path = join(scratchDir('t-crash-proxy-'), 'libvirt.sock');
  const sockets = new Set<net.Socket>();
  let rule: (CutRule & { seen: number }) | null = null;
  let refusing = false;
  const state = { cuts: 0 };
  let late: { answered?: { ok: boolean }; waiters: Array<(a: { ok: boolean }) => void> } = { waiters: [] };
  const lateAnswered = (a: { ok: boolean }) => {
    late.answered = a;
    for (const w of late.waiters.splice(0)) w(a);
  };
  const cutAll = () => {
    state.cuts++;
    rule = null;
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  const server = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = net.createConnection({ path: upstreamSocket });
    sockets.add(client);
    sockets.add(upstream);
    let awaitedSerial: number | null = null;
    let streamBytesLeft: number | null = null;
    let corruptAt: number | null = null;
    let held: Buffer[] | null = null;
    let lateSerial: number | null = null;
    let clientGone = false;
    client.on('data', framer((p) => {
      if (held) {
        held.push(p);
        return;
      }
      if (corruptAt !== null) {
        if (corruptAt < p.length) {
          p = Buffer.from(p);
          p[corruptAt] = p[corruptAt]! ^ 0xff;
          corruptAt = null;
          state.cuts++;
        } else {
          corruptAt -= p.length;
        }
      }
      if (streamBytesLeft !== null) {
        streamBytesLeft -= p.length;
        if (streamBytesLeft < 0) {
          streamBytesLeft = null;
          cutAll();
          return;
        }
      }
      if (rule && p.length >= 28 && p.readUInt32BE(4) === REMOTE_PROGRAM && p.readInt32BE(12) === rule.procedure && p.readInt32BE(16) === CALL) {
        rule.seen++;
        if (rule.seen === (rule.nth ?? 1)) {
          if (rule.thenRefuse) refusing = true;
          if (rule.when === 'before') {
            cutAll();
            return;
          }
          if (rule.when === 'late') {
            // The daemon gets the call (and what follows it) only after holdMs.
            const holding: Buffer[] = [p];
            held = holding;
            lateSerial = p.readUInt32BE(20);
            const { holdMs = 5000, cutClient = false, every = false } = rule;
            if (every) rule.seen = 0;
            else rule = null;
            state.cuts++;
            setTimeout(() => {
              held = null;
              // A client that went away meanwhile said goodbye (CONNECT_CLOSE) after the held
              // call: passing that on too lets the daemon drop the connection before it
              // answers the held call, which the test waits for.
              for (const q of clientGone ? holding.slice(0, 1) : holding) if (!upstream.destroyed) upstream.write(q);
            }, holdMs);
            if (cutClient) {
              sockets.delete(client);
              client.destroy();
            }
            return;
          }
          if (rule.when === 'mid-stream' || rule.when === 'corrupt-stream') {
            if (rule.when === 'mid-stream') streamBytesLeft = rule.afterBytes ?? 0;
            else corruptAt = rule.afterBytes ?? 0;
            rule = null;
            upstream.write(p);
            return;
          } else {
            awaitedSerial = p.readUInt32BE(20);
          }
        }
      }
      upstream.write(p);
    }));
    upstream.on('data', framer((p) => {
      if (lateSerial !== null && p.length >= 28 && p.readUInt32BE(20) === lateSerial && p.readInt32BE(16) !== CALL) {
        lateSerial = null;
        lateAnswered({ ok: p.readInt32BE(24) === 0 });
        if (clientGone) {
          end();
          return;
        }
      }
      if (awaitedSerial !== null && p.length >= 28 && p.readUInt32BE(20) === awaitedSerial && p.readInt32BE(16) !== CALL) {
        cutAll();
        return;
      }
      client.write(p);
    }));
    const end = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    // While a held call is on its way to the daemon, the client going away does not take
    // the daemon's connection with it (a daemon runs a call it has read to its end).
    const clientEnd = () => {
      clientGone = true;
      if (held === null && lateSerial === null) end();
      else client.destroy();
    };
    client.on('close', clientEnd);
    client.on('error', clientEnd);
    upstream.on('close', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return {
    uri: `qemu+unix:///system?socket=${path}`,
    get cuts() { return state.cuts; },
    arm: (r) => { rule = { ...r, seen: 0 }; state.cuts = 0; late = { waiters: [] }; },
    disarm: () => { rule = null; },
    lateAnswer: (timeoutMs) => new Promise((resolve, reject) => {
      if (late.answered) return resolve(late.answered);
      const t = setTimeout(() => reject(new Error(`the daemon did not answer the held call within ${timeoutMs} ms`)), timeoutMs);
      late.waiters.push((a) => { clearTimeout(t); resolve(a); });
    }),
    allow: () => { refusing = false; },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
