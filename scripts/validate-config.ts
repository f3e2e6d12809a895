// Checks a config file the way `switchyard` does at start, without listening:
//   tsx scripts/validate-config.ts --config FILE   (or SWITCHYARD_CONFIG=FILE)
// Prints every problem on its own line to stderr and exits 2, or prints `config OK` and exits 0.
// An entry point like main.ts, so it is allowed to read process.env (for env:NAME secrets).
import { isHelpRequest, loadConfigFile, parseArgs, USAGE } from '../src/config/load.js';

const argv = process.argv.slice(2);
if (isHelpRequest(argv)) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const args = parseArgs(argv, process.env);
if ('error' in args) {
  process.stderr.write(`${args.error}\n${USAGE}\n`);
  process.exit(2);
}
const result = loadConfigFile(args.configPath, process.env);
if (!result.ok) {
  process.stderr.write(result.errors.map((e) => `${e}\n`).join(''));
  process.exit(2);
}
process.stdout.write('config OK\n');
