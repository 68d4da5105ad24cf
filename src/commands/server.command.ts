import { defineCommand, flag, type OptionsFrom } from './declaration.js';

const serverFlags = {
  port: flag.withDefault('--port <port>', 'port to listen on (0: any free port)', '8787'),
  host: flag.withDefault('--host <host>', 'address to listen on', '127.0.0.1'),
  dataDir: flag.value('--data-dir <dir>', 'where state, tarballs and artifacts live (default $XDG_DATA_HOME/cycle/server)'),
  workers: flag.value('--workers <n>', 'tasks run at the same time (default: up to 4, one per CPU)'),
  balance: flag.value('--balance <dollars>', 'opening account balance in dollars: jobs hold their quote, `init` needs $5 (default: unlimited)'),
  projectQuota: flag.value('--project-quota <size>', 'disk the stored pushes of one project may take, e.g. 20g (default 20g); a push past it is refused (507)'),
  serverQuota: flag.value(
    '--server-quota <size>',
    'disk the stored pushes of all projects may take, e.g. 100g (default 100g); a push past it is refused (507)',
  ),
  maxCompressionRatio: flag.value(
    '--max-compression-ratio <n>',
    'a push may expand to at most N times its gzip size, past its first 64 MiB (default 200); a gzip bomb is refused (413)',
  ),
  localWorker: flag.negated('--no-local-worker', 'run no task on this machine: only coordinate the machines of `cycle daemon run`'),
  tlsCert: flag.value('--tls-cert <file>', 'serve HTTPS with this certificate (PEM; with --tls-key): needed for daemons on other machines'),
  tlsKey: flag.value('--tls-key <file>', "the certificate's private key (PEM)"),
  recipes: flag.value(
    '--recipes <dir>',
    'serve the recipes in DIR: one sub-folder per recipe (named as the recipe) holding a Computalot project, recipe.json and payload.schema.json',
  ),
};
export type ServerCommandOptions = OptionsFrom<{}, typeof serverFlags>;

export const server = defineCommand({
  name: 'server',
  summary: 'run a local Computalot-compatible backend that runs jobs in Docker',
  args: {},
  flags: serverFlags,
  notes:
    'The first start creates a bearer token (shown once, kept in <data-dir>/token). State is in SQLite:\na restart, even after kill -9, loses no accepted job. See docs/api.md for the routes.\n' +
    'Recipes (--recipes): each is checked at start (a bad recipe.json, schema or project stops the\nstart, naming the file and field) and built on its first job; docs/api.md, "Recipes", says how.',
  examples: [
    'cycle server',
    'cycle server --port 9000 --workers 8 --data-dir /srv/cycle',
    'cycle server --recipes /srv/recipes',
    'cycle server --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem --no-local-worker',
  ],
  load: () => import('./server.js'),
});
