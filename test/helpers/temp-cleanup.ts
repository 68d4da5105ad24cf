// A setup file (vitest.config.ts, every project): runs before each test file, so its afterAll
// is registered first and runs last, after the file's own afterAll hooks have stopped the
// servers and processes that used the folders.
import { removeTempDirsAfterAll } from './temp.js';

removeTempDirsAfterAll();
