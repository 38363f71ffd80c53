import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // 2 cores: a few files at once; each test isolates itself (own schema, own Redis prefix, port 0).
    maxWorkers: 3,
    // Many tests start real processes (chatd nodes, redis-server, PostgreSQL clusters) and wait on
    // them; on a loaded 2-core machine a wait can run out. A failed test is run once more; a test
    // that fails twice fails the run.
    retry: 1,
    reporters: ['default'],
  },
});
