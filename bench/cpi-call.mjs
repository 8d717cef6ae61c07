// What the create_vm benchmarks share: one timed CPI call through the bundle, as the
// director makes it (a new process, one JSON request on stdin), and the median.
import { spawn } from 'node:child_process';

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** One CPI call; returns { ms, result, stderr } or throws with the CPI's error. `tag` names the bench in request ids. */
export function cpiCall(bundle, config, method, args, tag) {
  return new Promise((resolve, reject) => {
    const req = JSON.stringify({ method, arguments: args, context: { director_uuid: 'bench', request_id: `${tag}-${method}` }, api_version: 2 });
    const t0 = process.hrtime.bigint();
    const child = spawn(process.execPath, [bundle, config], { env: { ...process.env, BOSH_LIBVIRT_CPI_LOG_LEVEL: 'info' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('close', () => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      let res;
      try { res = JSON.parse(out); } catch { return reject(new Error(`${method}: no JSON response: ${out}\n${err.slice(-2000)}`)); }
      if (res.error) return reject(new Error(`${method}: ${res.error.type}: ${res.error.message}\n${err.slice(-2000)}`));
      resolve({ ms, result: res.result, stderr: err });
    });
    child.stdin.end(req);
  });
}
