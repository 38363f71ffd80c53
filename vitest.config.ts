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
    // No retries: a test that fails once is a bug to fix (its waits are for events, not for time).
    reporters: ['default'],
  },
});
