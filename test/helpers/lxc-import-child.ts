// A process that imports one container stemcell (createStemcell of the LXC backend) and
// prints its CID: the crash test SIGKILLs it in the middle of the unpacking. Bundled
// with esbuild by the test (see bundleChild below), as bin/cpi is.
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log/logger.js';
import { openHost } from '../../src/driver/shared/host.js';
import { createStemcell } from '../../src/driver/lxc/stemcells.js';

const [configPath, imagePath] = process.argv.slice(2);
const host = await openHost(loadConfig(configPath!), createLogger('warn'));
const cid = await createStemcell(host, imagePath!, {}, {});
process.stdout.write(`${cid}\n`);
await host.conn.close();
