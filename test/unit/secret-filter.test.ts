import path from 'node:path';
import fc from 'fast-check';
import ignore from 'ignore';
import { describe, expect, it } from 'vitest';
import { isSecret, SECRET_ALLOWED, SECRET_PATTERNS } from '../../src/pack/select.js';

/** The rule without the quick pre-check: what isSecret must agree with on every path. */
const matcher = ignore().add(SECRET_PATTERNS);
const slowIsSecret = (testPath: string): boolean => !SECRET_ALLOWED.includes(path.posix.basename(testPath.replace(/\/$/, ''))) && matcher.ignores(testPath);

// Names as a folder listing gives them (never . or ..). Pieces of the patterns, in any case, among ordinary names: paths near every rule's edge.
const pieces = [
  '.env',
  '.ENV',
  '.env.local',
  '.env.example',
  'env',
  'key.pem',
  'KEY.PEM',
  'a.pem.bak',
  'x.p12',
  'cert.PFX',
  'pem',
  'id_rsa',
  'ID_RSA.pub',
  'id_ed25519',
  'myid_rsa',
  '.netrc',
  '_netrc',
  '_NETRC',
  'netrc',
  '.git-credentials',
  '.pypirc',
  '.npmrc',
  '.aws',
  'credentials',
  '.azure',
  '.config',
  'gcloud',
  'application_default_credentials.json',
  'client_secret_1.json',
  'Client_Secret.json',
  'service-account-x.json',
  '.docker',
  'config.json',
  '.kube',
  'config',
  'data',
  'src',
  'main.py',
  'f1.bin',
  'README.md',
  'ſecret',
  'İd_rsa',
  'a.b',
  '.cycleswap',
  '.envrc',
  '.Kube',
];
const component = fc.oneof(
  fc.constantFrom(...pieces),
  fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/).filter((name) => name !== '.' && name !== '..'),
);
const testPath = fc.tuple(fc.array(component, { minLength: 1, maxLength: 4 }), fc.boolean()).map(([parts, dir]) => parts.join('/') + (dir ? '/' : ''));

describe('isSecret', () => {
  it('agrees with the secret patterns on every path (the quick pre-check never hides a secret)', () => {
    fc.assert(
      fc.property(testPath, (p) => {
        expect(isSecret(p)).toBe(slowIsSecret(p));
      }),
      { numRuns: 5000 },
    );
  });

  it('finds the usual secrets anywhere, in any case, and not their shared templates', () => {
    for (const p of ['.env', 'app/.env.prod', 'KEYS/server.PEM', 'home/.ssh/id_rsa', '.aws/credentials', 'x/.azure/token', 'client_secret_9.json'])
      expect(isSecret(p), p).toBe(true);
    for (const p of ['.env.example', 'src/main.py', 'data/f1.bin', 'pem/readme.txt', 'env/config']) expect(isSecret(p), p).toBe(false);
  });
});
