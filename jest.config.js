// Jest runs in its native ESM mode (npm test passes --experimental-vm-modules):
// NestJS 12 ships as ES modules, and Jest on Node 20 cannot require() them.
const tsJest = [
  'ts-jest',
  { useESM: true, tsconfig: 'tsconfig.json', diagnostics: { warnOnly: false } },
];
const shared = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': tsJest },
  // Source imports carry ".js" extensions (NodeNext); map them back to the .ts files.
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
};

export default {
  // A global setting (Jest ignores it inside a project): e2e tests and their hooks
  // start servers and wait on databases; 5 s is not always enough on 2 cores.
  testTimeout: 60_000,
  // Two test files at a time, even on 2 cores (Jest's default there is one): an e2e
  // file spends much of its time waiting on PostgreSQL and on child processes, and
  // each has a database of its own. npm test: 313 s with one worker, 201-226 s with two.
  maxWorkers: 2,
  // Jest waits 500 ms for a worker to exit once its files are done, then kills it
  // ("A worker process has failed to exit gracefully"). Ours exit on their own, with no
  // handle left open, but take 350-530 ms to do it: tearing down the heap that 20-odd
  // e2e files leave behind, each with its own modules. Measured on 7 December 2026.
  workerGracefulExitTimeout: 3_000,
  projects: [
    {
      ...shared,
      displayName: 'unit',
      roots: ['<rootDir>/src', '<rootDir>/client/src'],
      testMatch: ['**/*.spec.ts'],
    },
    {
      ...shared,
      displayName: 'e2e',
      roots: ['<rootDir>/test'],
      testMatch: ['**/*.e2e-spec.ts'],
      globalSetup: '<rootDir>/test/support/global-setup.js',
      globalTeardown: '<rootDir>/test/support/global-teardown.js',
      setupFilesAfterEnv: ['<rootDir>/test/support/contract-fetch.ts'],
    },
  ],
};
