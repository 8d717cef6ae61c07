// bin/bosh-libvirt-cpi: the operator's CLI next to bin/cpi (which is for the director).
// Commands: doctor, call, render vm, orphans, import-stemcell. Results go to stdout,
// progress, notes and errors to stderr; exit 0 on success, 1 when the command found or
// hit a failure, 2 for usage errors.
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { CONFIG_ENV } from '../config/load.js';
import { CpiError } from '../errors.js';
import { CliError, cliLogger, configPath, readConfig, toJson } from './common.js';
import type { OrphanReport } from './orphans.js';

function withExamples<T>(y: Argv<T>, examples: Array<[string, string]>): Argv<T> {
  for (const [cmd, what] of examples) y.example(cmd, what);
  return y;
}

async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const cli = yargs(argv)
    .scriptName('bosh-libvirt-cpi')
    .usage('$0 <command> [options]\n\nOperator tools for bosh-libvirt-cpi. Every command reads the CPI\'s cpi.json.')
    .option('config', { alias: 'c', type: 'string', describe: `path of cpi.json (default: $${CONFIG_ENV}; one of them is required)`, global: true })
    .option('json', { type: 'boolean', default: false, describe: 'machine-readable output', global: true })
    .option('log-level', { type: 'string', default: 'warn', describe: 'level of the CPI\'s pino log lines on stderr', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], global: true })
    // Arguments of `call` are JSON or strings; yargs must not turn "007" into 7.
    .parserConfiguration({ 'parse-positional-numbers': false })
    .command(
      'doctor',
      'check that the libvirt host is ready for the CPI as configured (read-only)',
      (y) =>
        withExamples(y, [
          ['$0 doctor --config /var/vcap/jobs/libvirt_cpi/config/cpi.json', 'one OK/WARN/FAIL line per check; exit 1 when any FAIL'],
          ['$0 doctor --json', 'the checks as JSON: {"ok": bool, "checks": [{name, status, message}]}'],
        ]),
      async (a) => {
        const { path, config } = readConfig(a);
        const { doctor } = await import('./doctor.js');
        exitCode = await doctor(config, path, a.json);
      },
    )
    .command(
      'hosts',
      'each libvirt host\'s memory, what this CPI placed there and its pool\'s free space (read-only)',
      (y) =>
        withExamples(y, [
          ['$0 hosts', 'one line per host in cpi.json (the top-level host when there is no hosts list); exit 1 when one is down'],
          ['$0 hosts --json', 'the same as JSON'],
        ]),
      async (a) => {
        const { config } = readConfig(a);
        const { hostRows, printHosts } = await import('./hosts.js');
        const rows = await hostRows(config);
        if (a.json) process.stdout.write(`${toJson(rows)}\n`);
        else printHosts(rows);
        exitCode = rows.some((r) => r.down !== null) ? 1 : 0;
      },
    )
    .command(
      'call <method> [args..]',
      'run one CPI method through bin/cpi and pretty-print its response (exit 1 when it has an error)',
      (y) =>
        withExamples(
          y
            .positional('method', { type: 'string', describe: 'CPI method, e.g. info, has_vm, create_disk' })
            .positional('args', { type: 'string', array: true, describe: 'arguments; each is parsed as JSON when it parses, else taken as a string' })
            .option('context', { type: 'string', describe: 'JSON object merged into the request context (e.g. cpi-config properties)' })
            .option('api-version', { type: 'number', default: 2, describe: 'the request\'s api_version' })
            .option('dry-run', { type: 'boolean', default: false, describe: 'print the request instead of running it' })
            .option('raw', { type: 'boolean', default: false, describe: 'print bin/cpi\'s stdout exactly as it was written' })
            .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'show the CPI\'s log lines (stderr)' }),
          [
            ['$0 call info', 'what the CPI reports to the director'],
            ['$0 call has_vm vm-5f0c…', 'a bare word is a string argument'],
            ['$0 call create_disk 1024 \'{}\' null', 'numbers, objects and null are JSON'],
            ['$0 call delete_vm \'"123"\'', 'quote JSON strings that would otherwise parse as numbers'],
            ['$0 call create_vm --dry-run agent-1 sc-… \'{}\' \'{"default":{"type":"dynamic"}}\' null \'{}\'', 'only print the request'],
          ],
        ),
      async (a) => {
        let context: Record<string, unknown> = {};
        if (a.context !== undefined) {
          try {
            context = JSON.parse(a.context) as Record<string, unknown>;
          } catch (e) {
            throw new CliError(`--context is not JSON: ${(e as Error).message}`, 2);
          }
          if (typeof context !== 'object' || context === null || Array.isArray(context)) throw new CliError('--context must be a JSON object', 2);
        }
        const { call } = await import('./call.js');
        exitCode = await call({
          method: String(a.method),
          args: (a.args ?? []).map(String),
          context,
          apiVersion: a['api-version'],
          configPath: a['dry-run'] ? '' : configPath(a),
          raw: a.raw,
          dryRun: a['dry-run'],
          logLevel: a['log-level'],
          verbose: a.verbose,
        });
      },
    )
    .command('render', 'print what the CPI would give libvirt, without touching libvirt', (y) =>
      y
        .command(
          'vm <request>',
          'the domain XML create_vm would define for a create_vm request file',
          (yy) =>
            withExamples(
              yy
                .positional('request', { type: 'string', demandOption: true, describe: 'JSON file: {"method":"create_vm","arguments":[...]} or just the arguments array' })
                .option('vm-cid', { type: 'string', describe: 'VM CID to render with (default: <name_prefix>vm-00000000-…)' })
                .option('domain-type', { choices: ['kvm', 'qemu'] as const, describe: 'domain type when domain_type is auto (default qemu)' })
                .option('out', { alias: 'o', type: 'string', describe: 'write the XML to this file instead of stdout' }),
              [
                ['$0 render vm create_vm.json', 'the <domain> XML on stdout, notes on stderr'],
                ['$0 render vm create_vm.json -o vm.xml && virt-xml-validate vm.xml domain', 'validate it against libvirt\'s schema'],
                ['$0 render vm create_vm.json --json', 'the DomainSpec, XML and notes as JSON'],
              ],
            ),
          async (a) => {
            const { renderVm } = await import('./render.js');
            const r = await renderVm(configPath(a), a.request, { vmCid: a['vm-cid'], domainType: a['domain-type'] });
            const text = a.json ? `${toJson(r)}\n` : r.xml.endsWith('\n') ? r.xml : `${r.xml}\n`;
            if (a.out) {
              const { writeFileSync } = await import('node:fs');
              writeFileSync(a.out, text);
            } else process.stdout.write(text);
            if (!a.json) for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
          },
        )
        .demandCommand(1, 'render what? (render vm <request.json>)'),
    )
    .command(
      'orphans',
      'list (and with --delete remove) volumes and domains with the CPI\'s names that nothing references',
      (y) =>
        withExamples(
          y
            .option('delete', { type: 'boolean', default: false, describe: 'delete what is listed, reporting each' })
            .option('min-age', { type: 'number', default: 600, describe: 'seconds a volume must have been unchanged to count (a create_vm may be mid-way; below 120 a running call\'s lock counts too: use small values only while no CPI call runs); also the age of a create_vm mark made on another host, whose process cannot be checked' }),
          [
            ['$0 orphans', 'list orphans: VM volumes whose domain is gone, .meta sidecars whose resource is gone, VM-named domains without bosh metadata, unfinished create_vm domains, stemcells and snapshots'],
            ['$0 orphans --delete', 'remove them; persistent disks, finished snapshots and stemcells are never touched'],
            ['$0 orphans --json --min-age 0', 'include volumes changed just now, as JSON'],
          ],
        ),
      async (a) => {
        const { config } = readConfig(a);
        const { findOrphans, printReport } = await import('./orphans.js');
        const opts = { delete: a.delete, minAgeSeconds: a['min-age'] };
        if (config.hosts === undefined) {
          const report = await findOrphans(config, cliLogger(a), opts);
          if (a.json) process.stdout.write(`${toJson(report)}\n`);
          else printReport(report, a.delete);
          exitCode = report.failed.length ? 1 : 0;
          return;
        }
        // every host of a multi-host config, each with its own sections
        const { resolveHosts } = await import('../config/hosts.js');
        const { hostScopedConfig } = await import('../hosts/driver.js');
        const { addCrossHostOrphans } = await import('./orphans-hosts.js');
        const hosts = resolveHosts(config).map((h) => ({ name: h.name, uri: h.libvirt.uri, config: hostScopedConfig(config, h) }));
        const reports: Record<string, OrphanReport | { error: string }> = {};
        for (const h of hosts) {
          try {
            reports[h.name] = await findOrphans(h.config, cliLogger(a), opts);
          } catch (e) {
            reports[h.name] = { error: (e as Error).message };
          }
        }
        // what only other hosts can judge: forwarding records, verified copies of moves
        await addCrossHostOrphans(hosts, reports, cliLogger(a), opts);
        for (const h of hosts) {
          const report = reports[h.name]!;
          if ('error' in report || report.failed.length) exitCode = 1;
          if (a.json) continue;
          process.stdout.write(`== host ${h.name} (${h.uri})\n`);
          if ('error' in report) process.stdout.write(`not checked: ${report.error}\n`);
          else printReport(report, a.delete);
        }
        if (a.json) process.stdout.write(`${toJson(reports)}\n`);
      },
    )
    .command(
      'import-stemcell <tarball>',
      'import a full stemcell tarball (stemcell.MF + image) as create_stemcell would; prints the stemcell CID',
      (y) =>
        withExamples(
          y
            .positional('tarball', { type: 'string', demandOption: true, describe: 'the stemcell .tgz as downloaded from bosh.io' })
            .option('tag', { type: 'string', array: true, default: [], describe: 'key=value tag stored with the stemcell (repeatable)' }),
          [
            ['$0 import-stemcell bosh-stemcell-1.506-openstack-kvm-ubuntu-jammy-go_agent.tgz', 'progress on stderr, the CID on stdout'],
            ['$0 import-stemcell stemcell.tgz --tag owner=ops --json', '{"stemcell_cid", "name", "version"}'],
          ],
        ),
      async (a) => {
        const tags: Record<string, string> = {};
        for (const t of a.tag) {
          const i = t.indexOf('=');
          if (i <= 0) throw new CliError(`--tag ${JSON.stringify(t)} is not key=value`, 2);
          tags[t.slice(0, i)] = t.slice(i + 1);
        }
        const { config } = readConfig(a);
        const { importStemcell } = await import('./import-stemcell.js');
        exitCode = await importStemcell(config, cliLogger(a), a.tarball, { tags, json: a.json });
      },
    )
    .demandCommand(1, 'Name a command: doctor, call, render vm, orphans or import-stemcell')
    .strict()
    .help()
    .alias('h', 'help')
    .version(false)
    .wrap(null)
    .fail((msg, err, y) => {
      if (err) throw err;
      y.showHelp('error');
      throw new CliError(`\n${msg}`, 2);
    });
  await cli.parseAsync();
  return exitCode;
}

function finish(code: number): void {
  // Wait for stdout to drain (a pipe to `less` or `jq`) before leaving.
  process.stdout.write('', () => process.exit(code));
}

main(hideBin(process.argv)).then(finish, (err: unknown) => {
  if (err instanceof CliError || err instanceof CpiError) {
    process.stderr.write(`error: ${err.message.replace(/^\n/, '')}\n`);
    finish(err instanceof CliError ? err.exitCode : 1);
  } else {
    process.stderr.write(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    finish(1);
  }
});
