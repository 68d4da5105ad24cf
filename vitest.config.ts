import { defineConfig } from 'vitest/config';

// Unit tests are fast and run in parallel; e2e tests drive the real Docker daemon and the real
// binary, one file at a time (they share the daemon and the base image). Security regression
// tests (attacks on the server and the client) may use Docker too, so they get the e2e setup.
// Every project makes its temp folders under one root per run and removes them
// (test/helpers/temp.ts): the root comes from temp-root.ts, the per-file cleanup from temp-cleanup.ts.
const tempFolders = { globalSetup: ['test/helpers/temp-root.ts'], setupFiles: ['test/helpers/temp-cleanup.ts'] };

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 20_000,
          ...tempFolders,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          ...tempFolders,
          globalSetup: [...tempFolders.globalSetup, 'test/e2e/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        // The web page in Debian's chromium (playwright-core), on the real server and Docker.
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          ...tempFolders,
          globalSetup: [...tempFolders.globalSetup, 'test/e2e/global-setup.ts'],
          testTimeout: 240_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'security',
          include: ['test/security/**/*.test.ts'],
          ...tempFolders,
          globalSetup: [...tempFolders.globalSetup, 'test/e2e/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
